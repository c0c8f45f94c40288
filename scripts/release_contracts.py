"""reelrank's contract suite against the stores of the installed distributions.

``scripts/release_check.py`` copies this module into an empty directory outside the
repository and runs it with the pytest of a virtual environment that holds only the
built wheels, so it checks what users install: the in-memory stores of ``reelrank``, the
SQL stores of ``reelrank-postgres`` on SQLite (which also runs the migrations shipped in
its wheel), and, when their variables are set, the stores on real servers:

* ``REELRANK_REDIS_URL``: ``redis://host:port/db``; every test uses a key prefix of its
  own, nothing is flushed.
* ``REELRANK_POSTGRES_URL``: a SQLAlchemy URL (``postgresql+psycopg://...``) of a
  throwaway database: it is migrated, and every table is emptied before each test.
* ``REELRANK_CLICKHOUSE_URL``: ``clickhouse://host:port`` (native protocol); every test
  creates a database of its own and drops it afterwards.
"""

from __future__ import annotations

import itertools
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from reelrank import (
    InMemoryCatalog,
    InMemoryEngagementLog,
    InMemoryEventStore,
    InMemoryFeedCache,
    InMemoryModelRegistry,
    InMemoryProgressStore,
    InMemorySearchIndex,
    InMemorySeenStore,
    InMemoryTrendingSnapshotStore,
)
from reelrank.testing import (
    CatalogContract,
    EngagementLogContract,
    EventStoreContract,
    FeedCacheContract,
    ModelRegistryContract,
    ProgressStoreContract,
    SearchIndexContract,
    SeenStoreContract,
    TrendingSnapshotStoreContract,
)

REDIS_URL = os.environ.get("REELRANK_REDIS_URL")
POSTGRES_URL = os.environ.get("REELRANK_POSTGRES_URL")
CLICKHOUSE_URL = os.environ.get("REELRANK_CLICKHOUSE_URL")

_names = itertools.count()


# -- reelrank: the in-memory stores -------------------------------------------------------


class TestInMemoryCatalog(CatalogContract):
    @pytest.fixture
    def catalog(self) -> InMemoryCatalog:
        return InMemoryCatalog()


class TestInMemoryEventStore(EventStoreContract):
    @pytest.fixture
    def event_store(self) -> InMemoryEventStore:
        return InMemoryEventStore()


class TestInMemoryEngagementLog(EngagementLogContract):
    @pytest.fixture
    def engagement_log(self) -> InMemoryEngagementLog:
        return InMemoryEngagementLog()


class TestInMemorySeenStore(SeenStoreContract):
    @pytest.fixture
    def seen_store(self) -> InMemorySeenStore:
        return InMemorySeenStore()


class TestInMemoryFeedCache(FeedCacheContract):
    @pytest.fixture
    def feed_cache(self) -> InMemoryFeedCache:
        return InMemoryFeedCache()


class TestInMemoryModelRegistry(ModelRegistryContract):
    @pytest.fixture
    def model_registry(self) -> InMemoryModelRegistry:
        return InMemoryModelRegistry()


class TestInMemoryProgressStore(ProgressStoreContract):
    @pytest.fixture
    def progress_store(self) -> InMemoryProgressStore:
        return InMemoryProgressStore()


class TestInMemorySearchIndex(SearchIndexContract):
    @pytest.fixture
    def search_index(self) -> InMemorySearchIndex:
        return InMemorySearchIndex()


class TestInMemoryTrendingSnapshotStore(TrendingSnapshotStoreContract):
    @pytest.fixture
    def trending_snapshot_store(self) -> InMemoryTrendingSnapshotStore:
        return InMemoryTrendingSnapshotStore()


# -- reelrank-postgres: SQLite always, PostgreSQL when given ------------------------------


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once by the wheel's migrations; each test gets a copy."""
    from reelrank_postgres import SqlStoreConfig, connect, migrate

    path = tmp_path_factory.mktemp("sqlite") / "migrated.db"
    sql_engine = connect(SqlStoreConfig(url=f"sqlite:///{path}"))
    migrate(sql_engine)
    sql_engine.dispose()
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A migrated, empty database: a new SQLite file, or the emptied PostgreSQL one."""
    from reelrank_postgres import SqlStoreConfig, connect, migrate
    from sqlalchemy import inspect, text

    if request.param == "sqlite":
        shutil.copy(request.getfixturevalue("migrated_sqlite"), tmp_path / "store.db")
        url = f"sqlite:///{tmp_path / 'store.db'}"
    elif POSTGRES_URL is None:
        pytest.skip("REELRANK_POSTGRES_URL is not set")
    else:
        url = POSTGRES_URL
    sql_engine = connect(SqlStoreConfig(url=url))
    if request.param == "postgresql":
        migrate(sql_engine)
        tables = [t for t in inspect(sql_engine).get_table_names() if t != "alembic_version"]
        with sql_engine.begin() as connection:
            connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY"))
    yield sql_engine
    sql_engine.dispose()


class TestSqlCatalog(CatalogContract):
    @pytest.fixture
    def catalog(self, engine: Any) -> Any:
        from reelrank_postgres import SqlCatalog

        return SqlCatalog(engine)


class TestSqlEventStore(EventStoreContract):
    @pytest.fixture
    def event_store(self, engine: Any) -> Any:
        from reelrank_postgres import SqlEventStore

        return SqlEventStore(engine)


class TestSqlSeenStore(SeenStoreContract):
    @pytest.fixture
    def seen_store(self, engine: Any) -> Any:
        from reelrank_postgres import SqlSeenStore

        return SqlSeenStore(engine)


class TestSqlModelRegistry(ModelRegistryContract):
    @pytest.fixture
    def model_registry(self, engine: Any) -> Any:
        from reelrank_postgres import SqlModelRegistry

        return SqlModelRegistry(engine)


class TestSqlProgressStore(ProgressStoreContract):
    @pytest.fixture
    def progress_store(self, engine: Any) -> Any:
        from reelrank_postgres import SqlProgressStore

        return SqlProgressStore(engine)


class TestSqlSearchIndex(SearchIndexContract):
    @pytest.fixture
    def search_index(self, engine: Any) -> Any:
        from reelrank_postgres import SqlSearchIndex

        return SqlSearchIndex(engine)


class TestSqlEngagementLog(EngagementLogContract):
    @pytest.fixture
    def engagement_log(self, engine: Any) -> Any:
        from reelrank_postgres import SqlEngagementLog

        return SqlEngagementLog(engine)


# -- reelrank-redis, when REELRANK_REDIS_URL is set ----------------------------------------


@pytest.fixture
def redis_stores() -> Iterator[tuple[Any, Any]]:
    """A client and a config whose key prefix no other test (or run) uses."""
    if REDIS_URL is None:
        pytest.skip("REELRANK_REDIS_URL is not set")
    from reelrank_redis import RedisConfig, connect

    config = RedisConfig(
        url=REDIS_URL,
        prefix=f"release{uuid.uuid4().hex[:12]}",
        socket_timeout_seconds=2.0,
        connect_timeout_seconds=2.0,
    )
    client = connect(config)
    yield client, config
    client.close()


class TestRedisFeedCache(FeedCacheContract):
    @pytest.fixture
    def feed_cache(self, redis_stores: tuple[Any, Any]) -> Any:
        from reelrank_redis import RedisFeedCache

        return RedisFeedCache(*redis_stores)


class TestRedisSeenStore(SeenStoreContract):
    @pytest.fixture
    def seen_store(self, redis_stores: tuple[Any, Any]) -> Any:
        from reelrank_redis import RedisSeenStore

        return RedisSeenStore(*redis_stores)


class TestRedisEventStore(EventStoreContract):
    @pytest.fixture
    def event_store(self, redis_stores: tuple[Any, Any]) -> Any:
        from reelrank_redis import RedisEventStore

        return RedisEventStore(*redis_stores)


# -- reelrank-clickhouse, when REELRANK_CLICKHOUSE_URL is set ------------------------------


@pytest.fixture
def clickhouse_engine() -> Iterator[Any]:
    """An engine on a new database with the adapter's schema, dropped afterwards."""
    if CLICKHOUSE_URL is None:
        pytest.skip("REELRANK_CLICKHOUSE_URL is not set")
    from reelrank_clickhouse import ClickHouseConfig, connect, create_schema
    from sqlalchemy import text

    address = urlsplit(CLICKHOUSE_URL)
    server = ClickHouseConfig(
        host=address.hostname or "127.0.0.1",
        port=address.port or 9000,
        send_receive_timeout_seconds=30.0,
    )
    database = f"release_{uuid.uuid4().hex[:12]}_{next(_names)}"
    admin = connect(server)
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {database}"))
    engine = connect(server.model_copy(update={"database": database}))
    create_schema(engine)
    yield engine
    engine.dispose()
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE {database}"))
    admin.dispose()


class TestClickHouseEventStore(EventStoreContract):
    @pytest.fixture
    def event_store(self, clickhouse_engine: Any) -> Any:
        from reelrank_clickhouse import ClickHouseEventStore

        return ClickHouseEventStore(clickhouse_engine)


class TestClickHouseEngagementLog(EngagementLogContract):
    @pytest.fixture
    def engagement_log(self, clickhouse_engine: Any) -> Any:
        from reelrank_clickhouse import ClickHouseEngagementLog

        return ClickHouseEngagementLog(clickhouse_engine)
