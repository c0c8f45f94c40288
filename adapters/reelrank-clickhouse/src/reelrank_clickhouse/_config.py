"""Connection settings of the ClickHouse stores and the engine factory."""

from __future__ import annotations

from typing import Any

import sqlalchemy
from pydantic import Field, SecretStr
from sqlalchemy.engine import URL, Engine

from reelrank.stores.adapter import AdapterSettings

__all__ = ["ClickHouseConfig", "connect"]


class ClickHouseConfig(AdapterSettings):
    """How the ClickHouse stores connect over the native protocol (``clickhouse-driver``).

    The timeouts are bounded on purpose: clickhouse-driver's defaults wait 10 s for a
    connection and 300 s for a reply, so a paused server would hold a caller's thread
    for minutes. The feed service gives up on a slow store after its own deadline; these
    timeouts bound how long the abandoned call keeps a worker thread.
    """

    host: str = Field(default="127.0.0.1", min_length=1, max_length=255)
    """Server host name or address."""
    port: int = Field(default=9000, ge=1, le=65_535)
    """Native-protocol TCP port of the server (``tcp_port`` in its config)."""
    database: str = Field(default="default", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    """Database holding the reelrank tables; it must exist (``CREATE DATABASE``)."""
    user: str = Field(default="default", min_length=1, max_length=128)
    """User name."""
    password: SecretStr = Field(default=SecretStr(""))
    """Password of ``user`` (empty for none); kept out of reprs and logs."""
    connect_timeout_seconds: float = Field(default=1.0, gt=0.0, le=60.0, allow_inf_nan=False)
    """Seconds to wait for a TCP connection to open."""
    send_receive_timeout_seconds: float = Field(
        default=2.0, gt=0.0, le=3_600.0, allow_inf_nan=False
    )
    """Seconds to wait on a socket read or write before the call fails with
    ``StoreTimeoutError``; bounds every query and insert on a hung server."""
    sync_request_timeout_seconds: float = Field(default=1.0, gt=0.0, le=60.0, allow_inf_nan=False)
    """Seconds to wait for the server's reply to the driver's ping."""
    max_execution_seconds: int = Field(default=10, ge=1, le=86_400)
    """Server-side limit of one query's run time (the ``max_execution_time`` setting)."""
    pool_size: int = Field(default=8, ge=1, le=1_000)
    """Connections kept open in the engine's pool."""
    pool_timeout_seconds: float = Field(default=1.0, gt=0.0, le=60.0, allow_inf_nan=False)
    """Seconds to wait for a free pooled connection before the call fails."""

    def url(self) -> URL:
        """The SQLAlchemy URL of this config (``clickhouse+native://...``).

        The driver's timeouts and the ``max_execution_time`` setting travel in the
        query string: clickhouse-sqlalchemy 0.3.2's native dialect builds the driver's
        client from the URL alone and drops ``connect_args``.
        """
        return URL.create(
            "clickhouse+native",
            username=self.user,
            password=self.password.get_secret_value() or None,
            host=self.host,
            port=self.port,
            # The database goes in the URL: clickhouse-sqlalchemy creates materialized
            # views in ``default`` when a ``schema=`` is used instead.
            database=self.database,
            query={
                "connect_timeout": repr(self.connect_timeout_seconds),
                "send_receive_timeout": repr(self.send_receive_timeout_seconds),
                "sync_request_timeout": repr(self.sync_request_timeout_seconds),
                "max_execution_time": str(self.max_execution_seconds),
            },
        )


def connect(config: ClickHouseConfig, **engine_options: Any) -> Engine:
    """Build a SQLAlchemy engine for ``config`` with its timeouts and pool settings.

    The stores take a ready engine, so an application may also pass its own; it should
    then bound the driver's timeouts itself. ``engine_options`` go to
    :func:`sqlalchemy.create_engine` (``echo=True``, for example).
    """
    options: dict[str, Any] = {
        "pool_size": config.pool_size,
        "max_overflow": 0,
        "pool_timeout": config.pool_timeout_seconds,
    }
    options.update(engine_options)
    return sqlalchemy.create_engine(config.url(), **options)
