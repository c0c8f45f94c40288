"""Connection settings of the SQL stores and the engine factory built from them."""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field, SecretStr
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from reelrank.stores.adapter import AdapterSettings, ConfigError

__all__ = ["SqlStoreConfig", "connect"]


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
    connect_timeout_seconds: float = Field(default=2.0, ge=1.0, le=600.0, allow_inf_nan=False)
    """PostgreSQL: seconds libpq waits for a new connection. libpq counts whole seconds,
    so a fraction is rounded up (and libpq itself rounds 1 up to 2)."""
    statement_timeout_seconds: float = Field(
        default=2.0, ge=0.001, le=3_600.0, allow_inf_nan=False
    )
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
    """Test each connection on checkout, so a server restart costs no failed call."""
    sqlite_busy_timeout_seconds: float = Field(
        default=1.0, gt=0.0, le=600.0, allow_inf_nan=False
    )
    """SQLite: seconds a writer waits for another connection's lock."""
    application_name: str = Field(default="reelrank", pattern=r"^[A-Za-z0-9_.\-]{1,63}$")
    """PostgreSQL: name shown in ``pg_stat_activity``."""


def connect(config: SqlStoreConfig) -> Engine:
    """Build an :class:`~sqlalchemy.engine.Engine` for ``config.url`` with bounded waits.

    The stores take a built engine, so an application may pass its own; it should set
    the same bounds itself. Raises :class:`~reelrank.ConfigError` (field ``url``) for a
    URL that is neither PostgreSQL nor SQLite.
    """
    try:
        url = make_url(config.url.get_secret_value())
    except (ArgumentError, ValueError):
        # An unparsable URL (ArgumentError) or port (ValueError). SQLAlchemy's message may
        # quote the URL, password and all, so it is not chained.
        raise ConfigError("url", config.url, "not a database URL") from None
    backend = url.get_backend_name()
    if backend == "postgresql":
        options = " ".join(
            (
                f"-c statement_timeout={_milliseconds(config.statement_timeout_seconds)}",
                f"-c lock_timeout={_milliseconds(config.lock_timeout_seconds)}",
                "-c TimeZone=UTC",
            )
        )
        connect_args: dict[str, Any] = {
            "connect_timeout": math.ceil(config.connect_timeout_seconds),
            "options": options,
            "keepalives": 1,
            "keepalives_idle": config.keepalives_idle_seconds,
            "keepalives_interval": config.keepalives_interval_seconds,
            "keepalives_count": config.keepalives_count,
            "application_name": config.application_name,
        }
        return create_engine(
            url,
            connect_args=connect_args,
            pool_size=config.pool_size,
            max_overflow=config.max_overflow,
            pool_timeout=config.pool_timeout_seconds,
            pool_recycle=config.pool_recycle_seconds,
            pool_pre_ping=config.pool_pre_ping,
        )
    if backend == "sqlite":
        if url.database in (None, "", ":memory:"):
            # Every pooled connection would get a database of its own, without the schema.
            raise ConfigError("url", config.url, "SQLite needs a database file, not :memory:")
        engine = create_engine(
            url,
            connect_args={"timeout": config.sqlite_busy_timeout_seconds},
            pool_size=config.pool_size,
            max_overflow=config.max_overflow,
            pool_timeout=config.pool_timeout_seconds,
            pool_pre_ping=config.pool_pre_ping,
        )
        event.listen(engine, "connect", _enable_sqlite_foreign_keys)
        return engine
    raise ConfigError("url", config.url, "must be a postgresql or sqlite URL")


def _milliseconds(seconds: float) -> int:
    # PostgreSQL takes whole milliseconds; the field's lower bound keeps this >= 1.
    return max(1, round(seconds * 1000))


def _enable_sqlite_foreign_keys(dbapi_connection: Any, connection_record: Any) -> None:
    # SQLite enforces the schema's foreign keys only when each connection asks for it.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
