"""Connection settings of the SQL stores and the engine factory built from them."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import orjson
from pydantic import Field, SecretStr
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError
from sqlalchemy.pool import ConnectionPoolEntry

from reelrank.stores.adapter import AdapterSettings, ConfigError

__all__ = ["SqlStoreConfig", "connect", "connect_read"]


class SqlStoreConfig(AdapterSettings):
    """How :func:`connect` connects to PostgreSQL or SQLite.

    Every wait has an upper bound, because the stores sit on the request path: a new
    connection gives up after ``connect_timeout_seconds``, a statement is cancelled by
    the server after ``statement_timeout_seconds``, a checkout from a full pool fails after
    ``pool_timeout_seconds``, and TCP keepalives notice a peer that vanished. None of
    them fires while the server process is *paused* (its kernel still acknowledges
    packets and the server never runs the cancel), so the feed service's per-store
    deadline remains the guard of the request.
    """

    url: SecretStr = Field(
        default=SecretStr("postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
        min_length=1,
        max_length=2048,
    )
    """SQLAlchemy URL: ``postgresql+psycopg://user:password@host:port/db`` or
    ``sqlite:///path.db``.

    A secret, because it may carry the password: it is masked in reprs and errors.
    """
    read_url: SecretStr | None = Field(default=None, min_length=1, max_length=2048)
    """PostgreSQL: URL of a streaming replica of ``url`` for the reads that tolerate lag
    (see :func:`connect_read`), or ``None`` to read everything from ``url``. A secret,
    like ``url``."""
    transaction_pooling: bool = False
    """PostgreSQL: a pooler in transaction mode (pgbouncer's ``pool_mode = transaction``)
    sits between the stores and the servers. The engines then prepare no statements
    (psycopg's ``prepare_threshold=None``: a prepared statement lives on one server
    connection, and the next transaction may run on another) and send no ``options``
    start-up parameter, which pgbouncer refuses: ``statement_timeout``, ``lock_timeout``
    and ``TimeZone`` must then be set on the database role (``ALTER ROLE ... SET``)."""
    connect_timeout_seconds: float = Field(default=2.0, ge=1.0, le=600.0, allow_inf_nan=False)
    """PostgreSQL: seconds libpq waits for a new connection. libpq counts whole seconds,
    so a fraction is rounded up (and libpq itself rounds 1 up to 2)."""
    statement_timeout_seconds: float = Field(default=2.0, ge=0.001, le=3_600.0, allow_inf_nan=False)
    """PostgreSQL: the server cancels any statement running longer (``statement_timeout``,
    sent in whole milliseconds)."""
    lock_timeout_seconds: float = Field(default=1.0, ge=0.001, le=3_600.0, allow_inf_nan=False)
    """PostgreSQL: the server gives up waiting for a row or table lock after this long
    (``lock_timeout``, sent in whole milliseconds)."""
    keepalives_idle_seconds: int = Field(default=10, ge=1, le=7_200)
    """PostgreSQL: idle seconds before the first TCP keepalive probe."""
    keepalives_interval_seconds: int = Field(default=5, ge=1, le=600)
    """PostgreSQL: seconds between unanswered TCP keepalive probes."""
    keepalives_count: int = Field(default=3, ge=1, le=100)
    """PostgreSQL: unanswered probes after which the connection is considered dead."""
    pool_size: int = Field(default=8, ge=1, le=1_000)
    """Connections the pool keeps open."""
    max_overflow: int = Field(default=8, ge=0, le=1_000)
    """Connections opened beyond ``pool_size`` under load, closed when returned."""
    pool_timeout_seconds: float = Field(default=1.0, gt=0.0, le=600.0, allow_inf_nan=False)
    """Seconds a call waits for a free pooled connection before it fails."""
    pool_recycle_seconds: int = Field(default=1_800, ge=1, le=86_400)
    """Connections older than this are replaced on checkout."""
    pool_pre_ping: bool = True
    """Test a connection on checkout (see :attr:`pool_pre_ping_idle_seconds`), so a
    server restart costs no failed call."""
    pool_pre_ping_idle_seconds: float = Field(default=1.0, ge=0.0, le=3_600.0, allow_inf_nan=False)
    """With :attr:`pool_pre_ping`, only a connection that has sat in the pool at least
    this long is tested on checkout; ``0`` tests every checkout (SQLAlchemy's own
    ``pool_pre_ping``). A connection in steady use is not pinged: the ping was one
    round trip per store call. A server that went away while a connection was in use
    fails that call, and SQLAlchemy then discards every connection opened before, so
    only a restart completed within this many seconds of a connection's last use can
    reach a stale connection (and costs that one call)."""
    sqlite_busy_timeout_seconds: float = Field(default=1.0, gt=0.0, le=600.0, allow_inf_nan=False)
    """SQLite: seconds a writer waits for another connection's lock."""
    sqlite_mmap_size_bytes: int = Field(default=2_147_418_112, ge=0, le=2**40)
    """SQLite: bytes of the database file each connection reads through a memory map
    (``PRAGMA mmap_size``), ``0`` for none. Mapped pages are read in place from the
    operating system's page cache instead of being copied into SQLite's own (2 MB by
    default), which halves the cost of a search's index descents. The map takes address
    space, not memory of its own: the pages it touches are the page cache's, shared by
    every connection and process and given back under memory pressure, though they count
    in the process's resident size. An I/O error on a mapped page kills the process with
    ``SIGBUS`` instead of raising. SQLite caps the value at its compile-time limit
    (``SQLITE_MAX_MMAP_SIZE``, this default on most builds)."""
    application_name: str = Field(default="reelrank", pattern=r"^[A-Za-z0-9_.\-]{1,63}$")
    """PostgreSQL: name shown in ``pg_stat_activity``."""


def connect(config: SqlStoreConfig) -> Engine:
    """Build an :class:`~sqlalchemy.engine.Engine` for ``config.url`` with bounded waits.

    The stores take a built engine, so an application may pass its own; it should set
    the same bounds itself. Raises :class:`~reelrank.ConfigError` (field ``url``) for a
    URL that is neither PostgreSQL nor SQLite.
    """
    url = _parse("url", config.url)
    backend = url.get_backend_name()
    if backend == "postgresql":
        return _postgres_engine(url, config, read_only=False)
    if backend == "sqlite":
        if url.database in (None, "", ":memory:"):
            # Every pooled connection would get a database of its own, without the schema.
            raise ConfigError("url", config.url, "SQLite needs a database file, not :memory:")
        engine = create_engine(
            url,
            connect_args={"timeout": config.sqlite_busy_timeout_seconds},
            json_deserializer=_json_loads,
            pool_size=config.pool_size,
            max_overflow=config.max_overflow,
            pool_timeout=config.pool_timeout_seconds,
            pool_pre_ping=_engine_pre_ping(config),
        )
        event.listen(engine, "connect", _enable_sqlite_foreign_keys)
        event.listen(engine, "connect", _sqlite_memory_map(config.sqlite_mmap_size_bytes))
        return _ping_idle_connections(engine, config)
    raise ConfigError("url", config.url, "must be a postgresql or sqlite URL")


def connect_read(config: SqlStoreConfig) -> Engine | None:
    """Build the engine of ``config.read_url`` (a replica), or ``None`` when it is unset.

    Pass it as ``read_engine`` to the stores that take one. It has the same bounds and
    pool settings as :func:`connect`'s engine, and its sessions are read-only
    (``default_transaction_read_only``), so a write sent to it by mistake fails even when
    ``read_url`` names the primary (with ``transaction_pooling`` that setting is not
    sent; a replica refuses writes by itself). Raises :class:`~reelrank.ConfigError` (field
    ``read_url``) for a URL that is not PostgreSQL: SQLite has no replicas.
    """
    if config.read_url is None:
        return None
    url = _parse("read_url", config.read_url)
    if url.get_backend_name() != "postgresql":
        raise ConfigError("read_url", config.read_url, "must be a postgresql URL")
    return _postgres_engine(url, config, read_only=True)


def _parse(field: str, value: SecretStr) -> URL:
    try:
        return make_url(value.get_secret_value())
    except (ArgumentError, ValueError):
        # An unparsable URL (ArgumentError) or port (ValueError). SQLAlchemy's message may
        # quote the URL, password and all, so it is not chained.
        raise ConfigError(field, value, "not a database URL") from None


def _postgres_engine(url: URL, config: SqlStoreConfig, *, read_only: bool) -> Engine:
    connect_args: dict[str, Any] = {
        "connect_timeout": math.ceil(config.connect_timeout_seconds),
        "keepalives": 1,
        "keepalives_idle": config.keepalives_idle_seconds,
        "keepalives_interval": config.keepalives_interval_seconds,
        "keepalives_count": config.keepalives_count,
        "application_name": config.application_name,
    }
    if config.transaction_pooling:
        # A prepared statement lives on one server connection, and the pooler may run the
        # next transaction on another; the role carries the session settings instead.
        connect_args["prepare_threshold"] = None
    else:
        settings = [
            f"statement_timeout={_milliseconds(config.statement_timeout_seconds)}",
            f"lock_timeout={_milliseconds(config.lock_timeout_seconds)}",
            "TimeZone=UTC",
        ]
        if read_only:
            settings.append("default_transaction_read_only=on")
        connect_args["options"] = " ".join(f"-c {setting}" for setting in settings)
    engine = create_engine(
        url,
        connect_args=connect_args,
        json_deserializer=_json_loads,
        pool_size=config.pool_size,
        max_overflow=config.max_overflow,
        pool_timeout=config.pool_timeout_seconds,
        pool_recycle=config.pool_recycle_seconds,
        pool_pre_ping=_engine_pre_ping(config),
    )
    return _ping_idle_connections(engine, config)


_IDLE_SINCE = "reelrank_idle_since"
"""Key, in a pooled connection's ``info``, of when it was last returned to the pool."""


def _engine_pre_ping(config: SqlStoreConfig) -> bool:
    """Whether SQLAlchemy itself pings on every checkout (no idle threshold)."""
    return config.pool_pre_ping and config.pool_pre_ping_idle_seconds == 0.0


def _ping_idle_connections(engine: Engine, config: SqlStoreConfig) -> Engine:
    """Ping, on checkout, the connections idle for ``pool_pre_ping_idle_seconds`` or more.

    SQLAlchemy's documented pessimistic handling with pool events: a ``checkout``
    listener that raises :class:`~sqlalchemy.exc.DisconnectionError` makes the pool
    discard that connection and check out another (three attempts). A connection
    opened for this checkout has no ``idle since`` yet and is not pinged.
    """
    if not config.pool_pre_ping or _engine_pre_ping(config):
        return engine
    idle_seconds = config.pool_pre_ping_idle_seconds
    dialect = engine.dialect

    def checked_in(dbapi_connection: Any, entry: ConnectionPoolEntry) -> None:
        entry.info[_IDLE_SINCE] = time.monotonic()

    def checked_out(dbapi_connection: Any, entry: ConnectionPoolEntry, proxy: Any) -> None:
        idle_since = entry.info.get(_IDLE_SINCE)
        if idle_since is None or time.monotonic() - idle_since < idle_seconds:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError(f"pooled connection failed its ping: {exc}") from exc

    event.listen(engine, "checkin", checked_in)
    event.listen(engine, "checkout", checked_out)
    return engine


def _json_loads(document: str | bytes) -> Any:
    # Every video row carries two JSON columns; the standard library's decoder took about
    # 3 us a value on the followed-videos read of a cache-miss feed (200 rows), orjson a
    # fraction of that, with the same result types for what the stores write.
    return orjson.loads(document)


def _milliseconds(seconds: float) -> int:
    # PostgreSQL takes whole milliseconds; the field's lower bound keeps this >= 1.
    return max(1, round(seconds * 1000))


def _enable_sqlite_foreign_keys(dbapi_connection: Any, connection_record: Any) -> None:
    # SQLite enforces the schema's foreign keys only when each connection asks for it.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_memory_map(size: int) -> Callable[[Any, Any], None]:
    def set_mmap_size(dbapi_connection: Any, connection_record: Any) -> None:
        # A per-connection setting, like foreign_keys.
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA mmap_size={int(size)}")
        cursor.close()

    return set_mmap_size
