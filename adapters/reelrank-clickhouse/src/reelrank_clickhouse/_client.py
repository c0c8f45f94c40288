"""clickhouse-driver clients for the stores: one kept for writes, pooled ones for reads."""

from __future__ import annotations

import math
import select
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import numpy as np
import pandas as pd
from clickhouse_driver import Client
from clickhouse_driver.numpy.result import NumpyQueryResult
from sqlalchemy.engine import Engine

__all__ = [
    "DEFAULT_PING_IDLE_SECONDS",
    "NUMPY_COLUMNS",
    "ONE_BLOCK",
    "PING_IDLE_OPTION",
    "DriverClients",
    "id_frame",
    "id_table",
    "numpy_columns",
    "ping_when_idle",
    "server_client",
]

ONE_BLOCK = {"min_insert_block_size_rows": 1 << 40, "min_insert_block_size_bytes": 1 << 50}
"""Settings of an ``INSERT ... SELECT`` whose rows the server squashes into one block,
written as one part per table (per shard), whole or not at all."""


PING_IDLE_OPTION = "reelrank_ping_idle_seconds"
"""The engine execution option that carries :attr:`ClickHouseConfig.ping_idle_seconds
<reelrank_clickhouse.ClickHouseConfig.ping_idle_seconds>` to the stores' clients."""
DEFAULT_PING_IDLE_SECONDS = 1.0
"""``ping_idle_seconds`` of an engine not made by :func:`~reelrank_clickhouse.connect`."""
_PINGS_WHEN_IDLE = "_reelrank_pings_when_idle"


def ping_when_idle(
    client: Client, idle_seconds: float, clock: Callable[[], float] = time.monotonic
) -> Client:
    """Have ``client`` ping the server before a query only when its connection has not
    started a query for ``idle_seconds``; returns ``client``.

    clickhouse-driver pings an open connection before every query (a round trip, and
    its answer waited for, before the query's own), to reconnect one the server closed
    while it sat idle. A connection that started a query moments ago and did not fail
    is still open: the driver closes a connection on any error, and the next query
    then connects afresh without a ping. A server that went away since (killed or
    restarted) has closed the socket, which then reads as ready: such a connection is
    pinged whatever its last query, so the driver reconnects it, as it would have.
    ``idle_seconds <= 0`` keeps the driver's ping before every query. Applying it twice
    to a client changes nothing.
    """
    if idle_seconds <= 0 or getattr(client, _PINGS_WHEN_IDLE, False):
        return client
    connections = list(client.connections)
    if hasattr(client, "connection"):
        connections.append(client.connection)
    for connection in connections:
        connection.ping = _ping_if_idle(connection, idle_seconds, clock)
    setattr(client, _PINGS_WHEN_IDLE, True)
    return client


def _ping_if_idle(
    connection: Any, idle_seconds: float, clock: Callable[[], float]
) -> Callable[[], bool | None]:
    # The driver calls ping only on a connected connection, at the start of a query.
    ping: Callable[[], bool | None] = connection.ping
    last_query = -math.inf

    def ping_if_idle() -> bool | None:
        nonlocal last_query
        now = clock()
        if now - last_query < idle_seconds and not _closed_by_peer(connection):
            last_query = now
            return True
        alive = ping()
        if alive:
            last_query = now
        return alive

    return ping_if_idle


def _closed_by_peer(connection: Any) -> bool:
    """Whether the connection's socket reads as ready between queries: the server closed
    it (end of file or reset), or sent something unasked. A zero-timeout ``select``, no
    round trip; a socket that cannot be checked counts as closed, so it is pinged."""
    sock = getattr(connection, "socket", None)
    if sock is None:
        return True
    try:
        ready, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(ready)


def id_table(name: str, column: str, column_type: str, values: Any) -> dict[str, Any]:
    """An external table of one column for ``execute(..., external_tables=[...])``.

    Ids sent this way travel as native blocks, not SQL text, so any number of them
    stays under the server's ``max_query_size``, and the server reads them without
    parsing.
    """
    # Rows as tuples: the driver would turn dicts into tuples first.
    return {"name": name, "structure": [(column, column_type)], "data": [(v,) for v in values]}


NUMPY_COLUMNS = {"use_numpy": True}
"""Settings of a query whose external tables are :func:`id_frame` tables (the driver
then also decodes the reply's blocks into numpy arrays; :func:`numpy_columns` returns
them as arrays)."""


def id_frame(name: str, column: str, column_type: str, values: Any) -> dict[str, Any]:
    """:func:`id_table` as one numpy column, for a query run with
    ``settings=NUMPY_COLUMNS``.

    The driver writes the column whole instead of building a tuple per id and turning
    the rows back into a column: for the 10,000 ids of a batch's duplicate check, the
    check took 0.82x the time (0.90x for 50,000; see *Ingest* in the adapter's docs).
    The driver takes numpy external tables as pandas frames only. A numpy array of
    integers (ids for a ``UInt64`` column) is sent as it is, without an object per id;
    anything else (strings) as an object column.
    """
    array = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)
    frame = pd.DataFrame({column: array}, copy=False)
    return {"name": name, "structure": [(column, column_type)], "data": frame}


PLAIN_ID_CHECK_LIMIT = 1_000
"""Most ids :func:`id_check_columns` sends as plain rows rather than a numpy frame."""


def id_check_columns(
    client: Client, query: str, params: Any, *, table: str, ids: list[str]
) -> list[Any]:
    """:func:`numpy_columns` of ``query`` with the string ``ids`` as the external table
    ``table`` (one ``event_id String`` column): one numpy array per column, ``[]`` for
    no rows.

    Up to :data:`PLAIN_ID_CHECK_LIMIT` ids go as plain rows and the reply is decoded
    without numpy: building the pandas frame and decoding numpy blocks costs more than
    the check itself for the few ids of a group commit's batch (one id a batch under
    light load). Measured on the duplicate checks of a write, the plain path took
    0.39x the CPU of the numpy path for 1 id, 0.46x for 64 and 0.43x for 1,000 (load
    about 12); the numpy path stays for the large batches of an ingest, where it was
    the faster one. The arrays hold Python objects either way (``tolist`` gives
    ``str`` and ``int``).
    """
    if len(ids) > PLAIN_ID_CHECK_LIMIT:
        return numpy_columns(
            client, query, params, external_tables=[id_frame(table, "event_id", "String", ids)]
        )
    columns = client.execute(
        query, params, external_tables=[id_table(table, "event_id", "String", ids)], columnar=True
    )
    return [np.asarray(column, dtype=object) for column in columns]


def numpy_columns(
    client: Client,
    query: str,
    params: Any = None,
    *,
    external_tables: list[dict[str, Any]] | None = None,
) -> list[Any]:
    """``client.execute(query, params, external_tables=..., settings=NUMPY_COLUMNS,
    columnar=True)`` with the reply as one numpy array per column (``[]`` for no rows).

    ``use_numpy`` given per query makes the driver decode each block into numpy
    arrays, but the client then collects them with the result class it chose when it
    was made (without numpy): every value becomes a numpy scalar in a tuple, costlier
    than the plain reply for many rows. The client collects this query's blocks with
    the driver's numpy result class instead (numpy blocks joined with
    ``np.concatenate``). A client serves one query at a time, so the swap is not seen
    by another.
    """
    collecting = client.query_result_cls
    client.query_result_cls = NumpyQueryResult
    try:
        columns: list[Any] = client.execute(
            query,
            params,
            external_tables=external_tables,
            settings=NUMPY_COLUMNS,
            columnar=True,
        )
    finally:
        client.query_result_cls = collecting
    return columns


def server_client(engine: Engine, host: str, port: int, wait_seconds: float) -> Client:
    """A driver client for another server of the engine's cluster: the engine's URL
    (user, password, database, settings) with ``host`` and ``port`` replaced, for
    statements that may wait on the server up to ``wait_seconds``.

    ``SYSTEM SYNC REPLICA`` on 18.16 waits until the replica's queue is empty, however
    long that takes, so the socket timeout is what bounds it (the server's
    ``receive_timeout``, which later releases honour for it, is set too).
    """
    seconds = max(1, math.ceil(wait_seconds))
    url = engine.url.set(host=host, port=port).update_query_dict(
        {
            "send_receive_timeout": repr(float(wait_seconds)),
            "receive_timeout": str(seconds),
            "max_execution_time": str(seconds),
        }
    )
    (dsn,), _ = engine.dialect.create_connect_args(url)
    return Client.from_url(dsn)


class DriverClients:
    """The driver clients of one store, all made from the engine's URL (same server,
    database, timeouts and settings, ``insert_distributed_sync`` included).

    Through SQLAlchemy, clickhouse-sqlalchemy's DB-API layer makes a new driver client,
    and so a new connection, for every cursor, and rows pass as dicts; the stores talk
    to the driver directly: columnar inserts, and ids as external tables. Every client
    pings the server only when idle (:func:`ping_when_idle`, the engine's
    :data:`PING_IDLE_OPTION`).
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._writer: Client | None = None
        options = engine.get_execution_options()
        self._ping_idle_seconds = float(options.get(PING_IDLE_OPTION, DEFAULT_PING_IDLE_SECONDS))

    def writer(self) -> Client:
        """The store's write client, made on first use; call it under the store's write
        lock (a driver client serves one query at a time). The driver reconnects it on
        the next call after a failure."""
        if self._writer is None:
            (dsn,), _ = self._engine.dialect.create_connect_args(self._engine.url)
            self._writer = ping_when_idle(Client.from_url(dsn), self._ping_idle_seconds)
        return self._writer

    @contextmanager
    def reader(self) -> Iterator[Client]:
        """A client from the engine's pool (bounded by its size and pool timeout), for
        one read."""
        connection = self._engine.raw_connection()
        try:
            dbapi: Any = connection.dbapi_connection  # clickhouse-sqlalchemy's Connection
            yield ping_when_idle(cast(Client, dbapi.transport), self._ping_idle_seconds)
        finally:
            connection.close()
