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
from reelrank_postgres import SqlStoreConfig, create_engine_from_config, migrate
from reelrank_postgres.testing import PostgresServer, find_postgres_bin
from sqlalchemy import Engine, text

DIALECTS = ("sqlite", "postgresql")

_TABLES = (
    "search_documents, processing_progress, model_scores, model_versions, seen_videos, "
    "affinity_totals, affinity_credits, video_likes, video_stats, engagement_events, "
    "follows, videos, creators"
)


def require_postgres() -> None:
    if find_postgres_bin() is None:
        pytest.skip("PostgreSQL server binaries are not installed (scripts/test.sh installs them)")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway cluster for the session."""
    require_postgres()
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_engine(postgres_server: PostgresServer) -> Iterator[Engine]:
    """An engine on the session cluster, migrated to the newest revision."""
    engine = create_engine_from_config(SqlStoreConfig(url=postgres_server.url))
    migrate(engine)
    yield engine
    engine.dispose()


def sqlite_engine(path: Path) -> Engine:
    """An engine on a new SQLite file built by the adapter's own factory."""
    return create_engine_from_config(SqlStoreConfig(url=f"sqlite:///{path}"))


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
        connection.execute(text(f"TRUNCATE {_TABLES} RESTART IDENTITY"))
    yield postgres


@pytest.fixture
def fault_server() -> Iterator[PostgresServer]:
    """A cluster of the test's own, free to be paused and stopped."""
    require_postgres()
    server = PostgresServer()
    server.start()
    yield server
    server.stop()
