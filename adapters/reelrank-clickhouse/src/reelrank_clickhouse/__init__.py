"""reelrank-clickhouse: ClickHouse engagement events, materialized-view aggregates and
engagement log for reelrank."""

from importlib.metadata import PackageNotFoundError, version

from ._config import ClickHouseConfig, ClickHouseTables, connect
from ._engagement_log import ClickHouseEngagementLog
from ._event_store import ClickHouseEventStore
from ._schema import SCHEMA_VERSION, SchemaVersionError, create_schema, drop_schema, migrate_schema

try:
    __version__ = version("reelrank-clickhouse")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "SCHEMA_VERSION",
    "SchemaVersionError",
    "ClickHouseConfig",
    "ClickHouseEngagementLog",
    "ClickHouseEventStore",
    "ClickHouseTables",
    "__version__",
    "connect",
    "create_schema",
    "drop_schema",
    "migrate_schema",
]
