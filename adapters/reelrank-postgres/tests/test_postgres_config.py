"""The config model, the engine factory's bounded waits, and how driver failures surface."""

from __future__ import annotations

import ast
import inspect
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy
from pg_support import sqlite_engine
from reelrank_postgres import (
    SqlCatalog,
    SqlEventStore,
    SqlSeenStore,
    SqlStoreConfig,
    connect,
    connect_read,
    migrate,
)
from reelrank_postgres.testing import PostgresServer, free_port
from sqlalchemy import Engine, text

from reelrank import ConfigError, InvalidInputError, ProcessingState, StoreError, StoreTimeoutError
from reelrank.testing import EPOCH, make_creator, make_event, make_video

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_every_field_is_documented() -> None:
    tree = ast.parse(inspect.getsource(SqlStoreConfig))
    body = tree.body[0].body  # type: ignore[attr-defined]
    documented = {
        node.target.id
        for node, after in itertools.pairwise(body)
        if isinstance(node, ast.AnnAssign)
        and isinstance(after, ast.Expr)
        and isinstance(after.value, ast.Constant)
        and isinstance(node.target, ast.Name)
    }
    assert documented == set(SqlStoreConfig.model_fields)
    for name, field in SqlStoreConfig.model_fields.items():
        assert field.description, name


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ConfigError) as info:
        SqlStoreConfig(dsn="postgresql://")  # type: ignore[call-arg]
    assert info.value.field == "dsn"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("connect_timeout_seconds", 0),
        ("statement_timeout_seconds", 0),
        ("pool_timeout_seconds", float("inf")),
        ("pool_size", 0),
        ("application_name", "has space"),
        ("url", ""),
        ("sqlite_mmap_size_bytes", -1),
    ],
)
def test_bad_values_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        SqlStoreConfig.model_validate({field: value})
    assert info.value.field == field


@pytest.mark.parametrize(
    "url", ["not a url", "mysql+pymysql://u@h/db", "sqlite://", "sqlite:///:memory:"]
)
def test_the_factory_refuses_other_databases(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        connect(SqlStoreConfig(url=url))
    assert info.value.field == "url"


def test_the_password_in_the_url_stays_out_of_reprs_and_errors() -> None:
    config = SqlStoreConfig(url="postgresql+psycopg://feeds:hunter2@db-host:5432/feeds")
    assert "hunter2" not in repr(config)
    assert "hunter2" not in config.model_dump_json()
    for unparsable in (
        "postgresql+psycopg://feeds:hunter2@db-host:port/feeds",  # a port that is no number
        "feeds:hunter2 at db-host",  # no URL at all
    ):
        with pytest.raises(ConfigError) as info:
            connect(SqlStoreConfig(url=unparsable))
        assert info.value.field == "url"
        assert "hunter2" not in str(info.value)
        assert info.value.__cause__ is None  # SQLAlchemy's own message quotes the URL
    with pytest.raises(ConfigError) as info:
        SqlStoreConfig(url="x" * 2049 + "hunter2")
    assert info.value.field == "url"
    assert "hunter2" not in str(info.value)


class _Captured(Exception):
    pass


def test_libpq_gets_the_connect_timeout_in_whole_seconds_rounded_up() -> None:
    engine = connect(
        SqlStoreConfig(
            url="postgresql+psycopg://feeds@db-host:5432/feeds", connect_timeout_seconds=2.5
        )
    )
    captured: dict[str, object] = {}

    def capture(dialect: object, record: object, cargs: object, cparams: dict[str, object]) -> None:
        captured.update(cparams)
        raise _Captured  # stop before any connection attempt

    sqlalchemy.event.listen(engine, "do_connect", capture)
    try:
        with pytest.raises(_Captured):
            engine.connect()
    finally:
        engine.dispose()
    assert captured["connect_timeout"] == 3


def test_stores_take_only_an_engine() -> None:
    with pytest.raises(InvalidInputError) as info:
        SqlCatalog("sqlite:///x.db")  # type: ignore[arg-type]
    assert info.value.field == "engine"


def test_postgres_sessions_carry_the_configured_bounds(postgres_server: PostgresServer) -> None:
    config = SqlStoreConfig(
        url=postgres_server.url,
        statement_timeout_seconds=1.234,
        lock_timeout_seconds=0.567,
        application_name="bounds-test",
    )
    engine = connect(config)
    try:
        with engine.connect() as connection:
            show = {
                name: connection.execute(text(f"SHOW {name}")).scalar_one()
                for name in ("statement_timeout", "lock_timeout", "TimeZone", "application_name")
            }
    finally:
        engine.dispose()
    assert show == {
        "statement_timeout": "1234ms",
        "lock_timeout": "567ms",
        "TimeZone": "UTC",
        "application_name": "bounds-test",
    }


@pytest.fixture
def bounded_postgres(postgres_engine: Engine, postgres_server: PostgresServer) -> Iterator[Engine]:
    """An engine on the session cluster with short server-side timeouts."""
    with postgres_engine.begin() as connection:
        connection.execute(text("TRUNCATE videos, creators CASCADE"))
    engine = connect(
        SqlStoreConfig(
            url=postgres_server.url, statement_timeout_seconds=0.3, lock_timeout_seconds=0.1
        )
    )
    yield engine
    engine.dispose()


def test_a_lock_held_past_lock_timeout_raises_store_timeout(bounded_postgres: Engine) -> None:
    catalog = SqlCatalog(bounded_postgres)
    catalog.put_creator(make_creator(1))
    catalog.put_video(make_video(1, 1, state="queued"))
    with bounded_postgres.connect() as holder:
        holder.execute(text("SELECT 1 FROM videos WHERE video_id = 1 FOR UPDATE"))
        with pytest.raises(StoreTimeoutError) as info:
            catalog.set_state(1, ProcessingState.TRANSCODING)
        holder.rollback()
    assert info.value.store == "catalog"
    assert isinstance(info.value.__cause__, sqlalchemy.exc.OperationalError)
    assert isinstance(info.value.__cause__.orig, psycopg.errors.LockNotAvailable)
    assert catalog.get_video(1).state == "queued"


def test_a_statement_past_statement_timeout_raises_store_timeout(
    bounded_postgres: Engine, postgres_server: PostgresServer
) -> None:
    catalog = SqlCatalog(bounded_postgres)
    catalog.put_creator(make_creator(1))
    # A lock wait longer than the statement timeout: the statement timeout fires first.
    patient = connect(
        SqlStoreConfig(
            url=postgres_server.url, statement_timeout_seconds=0.3, lock_timeout_seconds=60.0
        )
    )
    try:
        with bounded_postgres.connect() as holder:
            holder.execute(text("LOCK TABLE creators IN ACCESS EXCLUSIVE MODE"))
            with pytest.raises(StoreTimeoutError) as info:
                SqlCatalog(patient).get_creators([1])
            holder.rollback()
    finally:
        patient.dispose()
    cause = info.value.__cause__
    assert isinstance(cause, sqlalchemy.exc.OperationalError)
    assert isinstance(cause.orig, psycopg.errors.QueryCanceled)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_an_exhausted_pool_raises_store_timeout(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if dialect == "sqlite":
        url = f"sqlite:///{tmp_path / 'pool.db'}"
    else:
        url = request.getfixturevalue("postgres_server").url
    engine = connect(SqlStoreConfig(url=url, pool_size=1, max_overflow=0, pool_timeout_seconds=0.2))
    migrate(engine)
    try:
        store = SqlSeenStore(engine)
        with engine.connect(), pytest.raises(StoreTimeoutError) as info:
            store.seen_among(1, [1], since=EPOCH)
        assert isinstance(info.value.__cause__, sqlalchemy.exc.TimeoutError)
        assert store.seen_among(1, [1], since=EPOCH) == set()
    finally:
        engine.dispose()


def test_a_busy_sqlite_database_raises_store_timeout(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    engine = sqlite_engine(path)
    migrate(engine)
    impatient = connect(SqlStoreConfig(url=f"sqlite:///{path}", sqlite_busy_timeout_seconds=0.1))
    try:
        with engine.connect() as holder:
            holder.exec_driver_sql("BEGIN IMMEDIATE")
            with pytest.raises(StoreTimeoutError) as info:
                SqlEventStore(impatient).append(make_event("like"), creator_id=1)
            holder.rollback()
        assert info.value.store == "events"
        assert SqlEventStore(impatient).get_stats([1])[1].likes == 0
    finally:
        impatient.dispose()
        engine.dispose()


@pytest.mark.parametrize("size", [0, 1 << 20, 2_147_418_112])
def test_every_sqlite_connection_maps_the_configured_bytes(tmp_path: Path, size: int) -> None:
    """``PRAGMA mmap_size`` is per connection: each one the pool opens gets the setting."""
    engine = connect(
        SqlStoreConfig(url=f"sqlite:///{tmp_path / 'mapped.db'}", sqlite_mmap_size_bytes=size)
    )
    try:
        with engine.connect() as first, engine.connect() as second:
            for connection in (first, second):
                assert connection.exec_driver_sql("PRAGMA mmap_size").scalar() == size
    finally:
        engine.dispose()


def test_a_server_that_is_not_there_raises_store_error() -> None:
    engine = connect(
        SqlStoreConfig(url=f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/postgres")
    )
    try:
        with pytest.raises(StoreError) as info:
            SqlCatalog(engine)
    finally:
        engine.dispose()
    assert not isinstance(info.value, StoreTimeoutError)
    assert info.value.store == "schema"
    assert isinstance(info.value.__cause__, sqlalchemy.exc.OperationalError)


def test_the_read_url_is_a_secret_and_must_name_postgres(tmp_path: Path) -> None:
    assert connect_read(SqlStoreConfig()) is None
    config = SqlStoreConfig(read_url="postgresql+psycopg://feeds:hunter2@replica:5432/feeds")
    assert "hunter2" not in repr(config)
    assert "hunter2" not in config.model_dump_json()
    for url in (f"sqlite:///{tmp_path / 'x.db'}", "feeds:hunter2 at replica"):
        with pytest.raises(ConfigError) as info:
            connect_read(SqlStoreConfig(read_url=url))
        assert info.value.field == "read_url"
        assert "hunter2" not in str(info.value)


def _connect_params(engine: Engine) -> dict[str, object]:
    captured: dict[str, object] = {}

    def capture(dialect: object, record: object, cargs: object, cparams: dict[str, object]) -> None:
        captured.update(cparams)
        raise _Captured  # stop before any connection attempt

    sqlalchemy.event.listen(engine, "do_connect", capture)
    try:
        with pytest.raises(_Captured):
            engine.connect()
    finally:
        engine.dispose()
    return captured


def test_transaction_pooling_prepares_no_statements_and_sends_no_options() -> None:
    url = "postgresql+psycopg://feeds@pooler:6432/feeds"
    direct = _connect_params(connect(SqlStoreConfig(url=url)))
    assert "prepare_threshold" not in direct  # psycopg's default: prepare after 5 runs
    assert "-c statement_timeout=2000" in str(direct["options"])
    pooled = SqlStoreConfig(url=url, read_url=url, transaction_pooling=True)
    for engine in (connect(pooled), connect_read(pooled)):
        assert engine is not None
        params = _connect_params(engine)
        assert params["prepare_threshold"] is None
        assert "options" not in params
        assert params["connect_timeout"] == 2


def test_read_engine_sessions_are_read_only_with_the_same_bounds(
    postgres_server: PostgresServer,
) -> None:
    engine = connect_read(
        SqlStoreConfig(read_url=postgres_server.url, statement_timeout_seconds=1.5)
    )
    assert engine is not None
    try:
        with engine.connect() as connection:
            show = {
                name: connection.execute(text(f"SHOW {name}")).scalar_one()
                for name in ("default_transaction_read_only", "statement_timeout", "TimeZone")
            }
    finally:
        engine.dispose()
    assert show == {
        "default_transaction_read_only": "on",
        "statement_timeout": "1500ms",
        "TimeZone": "UTC",
    }


def test_a_read_engine_must_be_an_engine_of_the_same_dialect(
    postgres_engine: Engine, tmp_path: Path
) -> None:
    sqlite = sqlite_engine(tmp_path / "store.db")
    migrate(sqlite)
    try:
        for wrong in (postgres_engine, "sqlite:///x.db"):
            with pytest.raises(InvalidInputError) as info:
                SqlCatalog(sqlite, read_engine=wrong)  # type: ignore[arg-type]
            assert info.value.field == "read_engine"
        assert SqlCatalog(sqlite, read_engine=sqlite).read_engine is sqlite
        assert SqlCatalog(sqlite).read_engine is sqlite
    finally:
        sqlite.dispose()


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_only_connections_idle_past_the_threshold_are_pinged(
    postgres_server: PostgresServer, postgres_engine: Engine
) -> None:
    idle_seconds = 0.2
    engine = connect(
        SqlStoreConfig(
            url=postgres_server.url, pool_size=1, pool_pre_ping_idle_seconds=idle_seconds
        )
    )
    pings: list[object] = []
    ping = engine.dialect.do_ping

    def counted_ping(dbapi_connection: object) -> bool:
        pings.append(dbapi_connection)
        return ping(dbapi_connection)

    engine.dialect.do_ping = counted_ping  # type: ignore[method-assign]
    try:
        first = _backend_pid(engine)  # a new connection: not pinged
        assert _backend_pid(engine) == first  # back to back: not pinged
        assert pings == []
        # The server ends the pooled connection while it is idle (as a restart would).
        with postgres_engine.connect() as admin:
            assert admin.execute(text(f"SELECT pg_terminate_backend({first})")).scalar_one()
        time.sleep(idle_seconds * 1.5)
        # Idle past the threshold: pinged, found dead, replaced; the call succeeds.
        second = _backend_pid(engine)
        assert len(pings) == 1
        assert second != first
        assert _backend_pid(engine) == second
        assert len(pings) == 1
    finally:
        engine.dispose()


def test_a_zero_threshold_pings_every_checkout_as_sqlalchemy_does(
    postgres_server: PostgresServer,
) -> None:
    engine = connect(SqlStoreConfig(url=postgres_server.url, pool_pre_ping_idle_seconds=0.0))
    try:
        assert engine.pool._pre_ping  # type: ignore[attr-defined]
        _backend_pid(engine)
    finally:
        engine.dispose()
    idle_engine = connect(SqlStoreConfig(url=postgres_server.url))
    try:
        assert not idle_engine.pool._pre_ping  # type: ignore[attr-defined]
    finally:
        idle_engine.dispose()


def test_postgres_reads_run_outside_a_transaction_block(
    postgres_engine: Engine, postgres_server: PostgresServer
) -> None:
    """A read in a transaction block costs psycopg's BEGIN and the pool's ROLLBACK, two
    round trips besides the statement; the catalog's reads run in autocommit, except
    ``followed_videos``, whose ``SET LOCAL`` needs the block."""
    with postgres_engine.begin() as connection:
        connection.execute(text("TRUNCATE videos, creators CASCADE"))
    engine = connect(SqlStoreConfig(url=postgres_server.url))
    autocommit: list[tuple[str, bool]] = []

    def before(conn: sqlalchemy.Connection, cursor: Any, statement: str, *_: Any) -> None:
        autocommit.append((statement.split()[0], conn.connection.dbapi_connection.autocommit))  # type: ignore[union-attr]

    sqlalchemy.event.listen(engine, "before_cursor_execute", before)
    try:
        catalog = SqlCatalog(engine)
        catalog.put_creator(make_creator(1))
        catalog.put_video(make_video(1, 1))
        autocommit.clear()
        assert catalog.get_video(1).video_id == 1
        assert set(catalog.get_videos([1])) == {1}
        assert [flag for _, flag in autocommit] == [True, True]
        autocommit.clear()
        catalog.followed_videos(7, limit=5)
        assert autocommit and not any(flag for _, flag in autocommit)
    finally:
        engine.dispose()
