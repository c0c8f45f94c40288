"""clickhouse-driver clients for the stores: one kept for writes, pooled ones for reads."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import numpy as np
import pandas as pd
from clickhouse_driver import Client
from sqlalchemy.engine import Engine

__all__ = ["NUMPY_COLUMNS", "ONE_BLOCK", "DriverClients", "id_frame", "id_table", "server_client"]

ONE_BLOCK = {"min_insert_block_size_rows": 1 << 40, "min_insert_block_size_bytes": 1 << 50}
"""Settings of an ``INSERT ... SELECT`` whose rows the server squashes into one block,
written as one part per table (per shard), whole or not at all."""


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
then also reads the reply's columns into numpy arrays)."""


def id_frame(name: str, column: str, column_type: str, values: Any) -> dict[str, Any]:
    """:func:`id_table` as one numpy column, for a query run with
    ``settings=NUMPY_COLUMNS``.

    The driver writes the column whole instead of building a tuple per id and turning
    the rows back into a column: for the 10,000 ids of a batch's duplicate check, the
    check took 0.82x the time (0.90x for 50,000; see *Ingest* in the adapter's docs).
    The driver takes numpy external tables as pandas frames only.
    """
    frame = pd.DataFrame({column: np.asarray(values, dtype=object)}, copy=False)
    return {"name": name, "structure": [(column, column_type)], "data": frame}


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
    to the driver directly: columnar inserts, and ids as external tables.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._writer: Client | None = None

    def writer(self) -> Client:
        """The store's write client, made on first use; call it under the store's write
        lock (a driver client serves one query at a time). The driver reconnects it on
        the next call after a failure."""
        if self._writer is None:
            (dsn,), _ = self._engine.dialect.create_connect_args(self._engine.url)
            self._writer = Client.from_url(dsn)
        return self._writer

    @contextmanager
    def reader(self) -> Iterator[Client]:
        """A client from the engine's pool (bounded by its size and pool timeout), for
        one read."""
        connection = self._engine.raw_connection()
        try:
            dbapi: Any = connection.dbapi_connection  # clickhouse-sqlalchemy's Connection
            yield cast(Client, dbapi.transport)
        finally:
            connection.close()
