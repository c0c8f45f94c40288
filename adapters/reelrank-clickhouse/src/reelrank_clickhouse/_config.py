"""Connection settings of the ClickHouse stores and the engine factory."""

from __future__ import annotations

from typing import Any

import sqlalchemy
from pydantic import Field, SecretStr, model_validator
from sqlalchemy.engine import URL, Engine

from reelrank.stores.adapter import AdapterSettings

from ._client import PING_IDLE_OPTION

__all__ = ["ClickHouseConfig", "ClickHouseTables", "connect"]

_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"


class ClickHouseTables(AdapterSettings):
    """The names of the tables the stores read and write.

    In sharded mode (:attr:`ClickHouseConfig.cluster` set) these are the
    ``Distributed`` tables the stores query, and each shard keeps its rows in a table
    of the same name plus :attr:`ClickHouseConfig.local_suffix`.
    """

    events: str = Field(default="events", pattern=_IDENTIFIER)
    """Every applied event with its creator and arrival number (the insert target)."""
    aggregates: str = Field(default="event_aggregates", pattern=_IDENTIFIER)
    """The aggregate states and the per-id copy counts, fed by one materialized view."""
    corrections: str = Field(default="event_corrections", pattern=_IDENTIFIER)
    """The extra copies of events that writers delivered at the same moment, subtracted
    on read."""
    stats_rollup: str = Field(default="event_stats_rollup", pattern=_IDENTIFIER)
    """Per-video statistics folded up to an arrival watermark by
    :meth:`~reelrank_clickhouse.ClickHouseEventStore.fold_stats`, which reads start
    from (schema version 2)."""
    engagement_log: str = Field(default="engagement_log", pattern=_IDENTIFIER)
    """The engagement log's events."""
    engagement_log_ids: str = Field(default="engagement_log_ids", pattern=_IDENTIFIER)
    """The table (and its view, this name plus ``_mv``) that kept the engagement log's
    ids up to 0.1.0, for its duplicate check, which now reads the log itself:
    :func:`~reelrank_clickhouse.migrate_schema` and
    :func:`~reelrank_clickhouse.drop_schema` drop them by this name, and no other table
    may take it."""

    @model_validator(mode="after")
    def _distinct(self) -> ClickHouseTables:
        names = list(self.model_dump().values())
        if len(set(names)) != len(names):
            raise ValueError("every table needs a name of its own")
        return self


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
    database: str = Field(default="default", pattern=_IDENTIFIER)
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
    ping_idle_seconds: float = Field(default=1.0, ge=0.0, le=3_600.0, allow_inf_nan=False)
    """The driver pings the server before a query only on a connection that has not
    started a query for this long, to reconnect one the server closed while it sat
    idle; one in steady use is not pinged (the ping is a round trip per query). 0 pings
    before every query, as clickhouse-driver does by default."""
    tables: ClickHouseTables = Field(default_factory=ClickHouseTables)
    """The names of the stores' tables."""
    cluster: str | None = Field(default=None, pattern=_IDENTIFIER)
    """Name of a ``remote_servers`` cluster in the servers' config: sharded mode.

    :func:`~reelrank_clickhouse.create_schema` then creates the per-shard tables on
    every server the cluster lists (connecting to each) and, on each of them,
    ``Distributed`` tables over those, sharded by ``user_id``, under the names of
    :attr:`tables`. ``None``: one server."""
    replicated: bool = False
    """In sharded mode, keep each shard's tables in ``Replicated*MergeTree`` engines
    (needs ZooKeeper and the ``shard`` and ``replica`` macros in each server's config)."""
    local_suffix: str = Field(default="_local", pattern=r"^[A-Za-z0-9_]{1,16}$")
    """In sharded mode, what each shard's table adds to the name of its ``Distributed``
    table."""
    aggregates_index_granularity: int = Field(default=1024, ge=64, le=65_536)
    """Rows per index granule (``index_granularity``) of the aggregate table (each
    shard's, in sharded mode), which the stores read a few keys at a time: a read reads
    at least one whole granule per key range in every part. Applied by
    :func:`~reelrank_clickhouse.create_schema` when it creates the table; a table that
    exists keeps the granularity it was created with (ClickHouse cannot change it in
    place; see *Index granularity* in the adapter's docs for adopting a new one)."""

    @model_validator(mode="after")
    def _replicated_needs_a_cluster(self) -> ClickHouseConfig:
        if self.replicated and self.cluster is None:
            raise ValueError("replicated tables need a cluster")
        return self

    def url(self) -> URL:
        """The SQLAlchemy URL of this config (``clickhouse+native://...``).

        The driver's timeouts and the server settings travel in the query string:
        clickhouse-sqlalchemy 0.3.2's native dialect builds the driver's client from the
        URL alone and drops ``connect_args``. ``insert_distributed_sync=1`` is always
        set: an insert into a ``Distributed`` table then returns only once every shard
        holds its rows, which the stores' duplicate checks rely on (on one server it
        changes nothing).
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
                "insert_distributed_sync": "1",
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
        "execution_options": {PING_IDLE_OPTION: config.ping_idle_seconds},
    }
    options.update(engine_options)
    return sqlalchemy.create_engine(config.url(), **options)
