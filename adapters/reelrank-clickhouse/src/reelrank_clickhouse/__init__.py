"""reelrank-clickhouse: ClickHouse engagement events, materialized-view aggregates and
engagement log for reelrank."""

from ._config import ClickHouseConfig, create_engine
from ._engagement_log import ClickHouseEngagementLog
from ._event_store import ClickHouseEventStore
from ._schema import create_schema, drop_schema

__version__ = "0.1.0"

__all__ = [
    "ClickHouseConfig",
    "ClickHouseEngagementLog",
    "ClickHouseEventStore",
    "__version__",
    "create_engine",
    "create_schema",
    "drop_schema",
]
