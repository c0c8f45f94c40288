"""reelrank-postgres: PostgreSQL and SQLite stores for reelrank, through SQLAlchemy 2.

Every store takes a built :class:`~sqlalchemy.engine.Engine` (see
:func:`connect`) on a database migrated with :func:`migrate`; the catalog, event store,
model registry and search index also take an optional ``read_engine`` on a replica
(see :func:`connect_read`). :class:`SqlFeedCache` is a shared feed-cache level for
deployments without Redis, :class:`SqlTrendingSnapshotStore` the trending snapshots every
process shares, and :func:`bulk_load` loads a catalog in one transaction
(``COPY`` on PostgreSQL).
"""

from importlib.metadata import PackageNotFoundError, version

from ._bulk import BulkLoadCounts, BulkProgress, bulk_load
from ._catalog import SqlCatalog
from ._config import SqlStoreConfig, connect, connect_read
from ._engagement_log import SqlEngagementLog
from ._errors import SchemaVersionError, store_errors
from ._event_store import SqlEventStore
from ._feed_cache import SqlFeedCache
from ._migrations import check_schema, downgrade, migrate, schema_revision
from ._registry import SqlModelRegistry, SqlProgressStore
from ._schema import HEAD_REVISION
from ._search import SqlSearchIndex
from ._seen_store import SqlSeenStore
from ._trending import SqlTrendingSnapshotStore

try:
    __version__ = version("reelrank-postgres")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "HEAD_REVISION",
    "BulkLoadCounts",
    "BulkProgress",
    "SchemaVersionError",
    "SqlCatalog",
    "SqlEngagementLog",
    "SqlEventStore",
    "SqlFeedCache",
    "SqlModelRegistry",
    "SqlProgressStore",
    "SqlSearchIndex",
    "SqlSeenStore",
    "SqlStoreConfig",
    "SqlTrendingSnapshotStore",
    "__version__",
    "bulk_load",
    "check_schema",
    "connect",
    "connect_read",
    "downgrade",
    "migrate",
    "schema_revision",
    "store_errors",
]
