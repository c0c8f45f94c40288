"""Databases for the adapter's tests: SQLite files and one real PostgreSQL 15 cluster.

``engine`` is parametrized over both dialects, so every test that takes it runs on each:
a fresh migrated SQLite file per test, and the session's PostgreSQL cluster with every
table emptied before the test. Tests that pause a server start a cluster of their own
(``fault_server``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_support import DIALECTS, TRUNCATE_ALL, require_postgres, sqlite_engine
from reelrank_postgres import SqlStoreConfig, connect, migrate
from reelrank_postgres.testing import PostgresServer
from sqlalchemy import Engine, text


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway cluster for the session."""
    require_postgres()
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_engine(postgres_server: PostgresServer) -> Iterator[Engine]:
    """An engine on the session cluster, migrated to the newest revision."""
    engine = connect(SqlStoreConfig(url=postgres_server.url))
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture(params=DIALECTS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated, empty database of each dialect."""
    if request.param == "sqlite":
        sqlite = sqlite_engine(tmp_path / "store.db")
        migrate(sqlite)
        yield sqlite
        sqlite.dispose()
        return
    postgres: Engine = request.getfixturevalue("postgres_engine")
    with postgres.begin() as connection:
        connection.execute(text(TRUNCATE_ALL))
    yield postgres


@pytest.fixture
def fault_server() -> Iterator[PostgresServer]:
    """A cluster of the test's own, free to be paused and stopped."""
    require_postgres()
    server = PostgresServer()
    server.start()
    yield server
    server.stop()
