"""Databases for the adapter's tests: SQLite files and real PostgreSQL 15 clusters.

``engine`` is parametrized over both dialects, so every test that takes it runs on each:
a fresh migrated SQLite file per test, and the session's PostgreSQL cluster with every
table emptied before the test. ``engines`` adds two deployments with a replica for the
reads: a primary whose commits wait for its streaming replica to apply them, directly
and through pgbouncer in transaction mode. Tests that pause a server start a cluster of
their own (``fault_server``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_support import (
    DEPLOYMENTS,
    DIALECTS,
    TRUNCATE_ALL,
    Engines,
    require_pgbouncer,
    require_postgres,
    sqlite_engine,
)
from reelrank_postgres import SqlStoreConfig, connect, connect_read, migrate
from reelrank_postgres.testing import PgBouncer, PostgresReplica, PostgresServer
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
    yield from _dialect_engine(request, request.param, tmp_path)


def _dialect_engine(
    request: pytest.FixtureRequest, dialect: str, tmp_path: Path
) -> Iterator[Engine]:
    if dialect == "sqlite":
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


@pytest.fixture(scope="session")
def replicated_servers() -> Iterator[tuple[PostgresServer, PostgresReplica]]:
    """A primary and its streaming replica; a commit returns once the replica applied it,
    so the replica reads every earlier write, as the contract suites expect."""
    require_postgres()
    with (
        PostgresServer(settings=PostgresReplica.SYNCHRONOUS_PRIMARY_SETTINGS) as primary,
        PostgresReplica(primary) as replica,
    ):
        yield primary, replica


@pytest.fixture(scope="session")
def pgbouncer(replicated_servers: tuple[PostgresServer, PostgresReplica]) -> Iterator[PgBouncer]:
    """pgbouncer in transaction mode in front of the replicated pair."""
    require_pgbouncer()
    primary, replica = replicated_servers
    with PgBouncer({"primary": primary, "replica": replica}) as pooler:
        yield pooler


def _engines(config: SqlStoreConfig) -> Iterator[Engines]:
    engine = connect(config)
    read_engine = connect_read(config)
    assert read_engine is not None
    migrate(engine)
    yield Engines(engine, read_engine)
    read_engine.dispose()
    engine.dispose()


@pytest.fixture(scope="session")
def replica_engines(
    replicated_servers: tuple[PostgresServer, PostgresReplica],
) -> Iterator[Engines]:
    """Engines on the replicated pair, migrated."""
    primary, replica = replicated_servers
    yield from _engines(SqlStoreConfig(url=primary.url, read_url=replica.url))


@pytest.fixture(scope="session")
def pgbouncer_engines(pgbouncer: PgBouncer) -> Iterator[Engines]:
    """Engines on the replicated pair through pgbouncer, migrated through it."""
    yield from _engines(
        SqlStoreConfig(
            url=pgbouncer.url("primary"),
            read_url=pgbouncer.url("replica"),
            transaction_pooling=True,
        )
    )


@pytest.fixture(params=DEPLOYMENTS)
def engines(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engines]:
    """Empty, migrated databases of every deployment (``engine``'s two plus the two with
    a replica for the reads)."""
    if request.param in DIALECTS:
        for engine in _dialect_engine(request, request.param, tmp_path):
            yield Engines(engine, None)
        return
    found: Engines = request.getfixturevalue(f"{request.param}_engines")
    with found.engine.begin() as connection:
        connection.execute(text(TRUNCATE_ALL))
    yield found
