"""reelrank-postgres: PostgreSQL and SQLite stores for reelrank, through SQLAlchemy 2.

Every store takes a built :class:`~sqlalchemy.engine.Engine` (see
:func:`create_engine_from_config`) on a database migrated with :func:`migrate`.
"""

from ._catalog import SqlCatalog
from ._config import SqlStoreConfig, create_engine_from_config
from ._errors import SchemaVersionError
from ._events import SqlEventStore, SqlSeenStore
from ._log import SqlEngagementLog
from ._migrations import check_schema, downgrade, migrate, schema_revision
from ._registry import SqlModelRegistry, SqlProgressStore
from ._schema import HEAD_REVISION
from ._search import SqlSearchIndex

__version__ = "0.1.0"

__all__ = [
    "HEAD_REVISION",
    "SchemaVersionError",
    "SqlCatalog",
    "SqlEngagementLog",
    "SqlEventStore",
    "SqlModelRegistry",
    "SqlProgressStore",
    "SqlSearchIndex",
    "SqlSeenStore",
    "SqlStoreConfig",
    "__version__",
    "check_schema",
    "create_engine_from_config",
    "downgrade",
    "migrate",
    "schema_revision",
]
