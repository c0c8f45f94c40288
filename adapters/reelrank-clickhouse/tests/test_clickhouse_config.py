"""The config model, the engine factory, error mapping and the server tool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from clickhouse_driver import Client
from pydantic import BaseModel
from reelrank_clickhouse import (
    ClickHouseConfig,
    ClickHouseEventStore,
    ClickHouseTables,
    connect,
    create_schema,
)
from reelrank_clickhouse._client import (
    DriverClients,
    id_frame,
    id_table,
    numpy_columns,
    ping_when_idle,
)
from reelrank_clickhouse.testing import ClickHouseServer

from reelrank import ConfigError, StoreError


def test_config_forbids_unknown_fields_and_names_bad_ones() -> None:
    with pytest.raises(ConfigError) as info:
        ClickHouseConfig(url="clickhouse://x")  # type: ignore[call-arg]
    assert info.value.field == "url"
    with pytest.raises(ConfigError) as info:
        ClickHouseConfig(send_receive_timeout_seconds=0)
    assert info.value.field == "send_receive_timeout_seconds"
    with pytest.raises(ConfigError) as info:
        ClickHouseConfig(database="no-dashes")
    assert info.value.field == "database"
    for rows in (0, 63, 65_537):
        with pytest.raises(ConfigError) as info:
            ClickHouseConfig(aggregates_index_granularity=rows)
        assert info.value.field == "aggregates_index_granularity"
    assert ClickHouseConfig().aggregates_index_granularity == 1024


def test_every_config_field_is_documented() -> None:
    models: list[type[BaseModel]] = [ClickHouseConfig, ClickHouseTables]
    for model in models:
        for name, field in model.model_fields.items():
            assert field.description, (model.__name__, name)


def test_modes_and_table_names_are_checked() -> None:
    with pytest.raises(ConfigError) as info:
        ClickHouseConfig(replicated=True)
    assert "cluster" in info.value.reason
    with pytest.raises(ConfigError) as info:
        ClickHouseConfig(cluster="two words")
    assert info.value.field == "cluster"
    with pytest.raises(ConfigError) as info:
        ClickHouseConfig(tables={"events": "events; DROP TABLE x"})
    assert info.value.field == "tables.events"
    with pytest.raises(ConfigError):
        ClickHouseTables(corrections="events")
    assert ClickHouseConfig(cluster="reelrank", replicated=True).replicated


def test_the_driver_gets_the_bounded_timeouts(clickhouse_config: ClickHouseConfig) -> None:
    config = clickhouse_config.model_copy(
        update={
            "connect_timeout_seconds": 0.5,
            "send_receive_timeout_seconds": 1.5,
            "sync_request_timeout_seconds": 0.25,
            "max_execution_seconds": 7,
        }
    )
    engine = connect(config)
    try:
        raw = engine.raw_connection()
        try:
            client = raw.dbapi_connection.transport  # type: ignore[union-attr]
            connection = client.connection
            assert connection.connect_timeout == 0.5
            assert connection.send_receive_timeout == 1.5
            assert connection.sync_request_timeout == 0.25
            assert client.settings["max_execution_time"] == "7"
        finally:
            raw.close()
    finally:
        engine.dispose()


def test_the_password_is_kept_out_of_reprs() -> None:
    config = ClickHouseConfig(port=9123, database="feeds", password="s3cret")
    assert "s3cret" not in repr(config)
    assert "s3cret" not in str(connect(config).url)


def test_a_missing_database_is_a_store_error(clickhouse_server: ClickHouseServer) -> None:
    engine = connect(ClickHouseConfig(port=clickhouse_server.tcp_port, database="absent"))
    try:
        with pytest.raises(StoreError) as info:
            create_schema(engine)
        assert info.value.__cause__ is not None
        store = ClickHouseEventStore(engine)
        with pytest.raises(StoreError) as info:
            store.get_stats([1])
        assert info.value.store == "events"
    finally:
        engine.dispose()


def _counting_pings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the pings clickhouse-driver sends from now on (one entry per ping)."""
    from clickhouse_driver.connection import Connection

    sent: list[int] = []
    ping = Connection.ping

    def counted(self: Connection) -> bool | None:
        sent.append(1)
        return ping(self)

    monkeypatch.setattr(Connection, "ping", counted)
    return sent


@pytest.mark.parametrize(("idle_seconds", "pings"), [(1.0, 1), (0.0, 4)])
def test_a_client_in_steady_use_is_not_pinged_before_every_query(
    clickhouse_engine: Any,
    clickhouse_config: ClickHouseConfig,
    monkeypatch: pytest.MonkeyPatch,
    idle_seconds: float,
    pings: int,
) -> None:
    sent = _counting_pings(monkeypatch)
    engine = connect(clickhouse_config.model_copy(update={"ping_idle_seconds": idle_seconds}))
    try:
        clients = DriverClients(engine)
        # The first query connects (no ping); the driver pings before each later one,
        # unless the connection started a query within ping_idle_seconds.
        for _ in range(5):
            with clients.reader() as client:
                assert client.execute("SELECT 1") == [(1,)]
    finally:
        engine.dispose()
    assert len(sent) == pings


def test_an_idle_connection_is_pinged_again(
    clickhouse_engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = _counting_pings(monkeypatch)
    now = [0.0]
    (dsn,), _ = clickhouse_engine.dialect.create_connect_args(clickhouse_engine.url)
    client = ping_when_idle(Client.from_url(dsn), 1.0, clock=lambda: now[0])
    assert ping_when_idle(client, 1.0) is client  # applied once
    try:
        for at in (0.0, 0.0, 0.5, 1.4, 2.5, 2.6):
            now[0] = at
            assert client.execute("SELECT 1") == [(1,)]
        # 0.0 connects; 0.0 pings (no query started before); 0.5 and 1.4 started within
        # 1 s of the previous query; 2.5 is 1.1 s after it; 2.6 is not.
        assert len(sent) == 2
        client.disconnect()
        now[0] = 2.7
        assert client.execute("SELECT 1") == [(1,)]  # reconnects, without a ping
        assert len(sent) == 2
    finally:
        client.disconnect()


def test_a_connection_whose_server_restarted_is_pinged_and_reconnects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restart closes the connection's socket: the next query, however soon, pings
    (finding the socket dead, the driver reconnects) instead of failing once."""
    server = ClickHouseServer(tmp_path / "restarted")
    server.start()
    client: Client | None = None
    try:
        sent = _counting_pings(monkeypatch)
        now = [0.0]  # the clock stands still: every query is within ping_idle_seconds
        client = ping_when_idle(
            Client(host="127.0.0.1", port=server.tcp_port), 1.0, clock=lambda: now[0]
        )
        for _ in range(3):
            assert client.execute("SELECT 1") == [(1,)]
        # The first query connects, the second pings (no query started on the
        # connection before), the third is in steady use.
        assert len(sent) == 1
        server.kill()
        server.restart()
        assert client.execute("SELECT 1") == [(1,)]
        assert len(sent) == 2
    finally:
        if client is not None:
            client.disconnect()
        server.stop()


def test_numpy_columns_reads_what_the_row_form_reads_as_arrays(clickhouse_engine: Any) -> None:
    """Ids sent as one numpy column and the reply read as arrays give the values of the
    tuple-per-id form, as numpy arrays, over several reply blocks; the client reads its
    next plain query as before; no rows are ``[]``."""
    ids = np.array([7, 1, 2**40, 3, 7], dtype=np.int64)
    query = """SELECT id, toUInt8(id % 3) AS part, toInt64(id) - 5 AS shifted,
        toFloat64(id) / 4 AS quarter, toString(id) AS text
    FROM ids WHERE id != 3 ORDER BY id"""
    settings = {"max_block_size": 2}  # so the reply arrives in several blocks
    (dsn,), _ = clickhouse_engine.dialect.create_connect_args(clickhouse_engine.url)
    client = Client.from_url(dsn)
    try:
        client.settings.update(settings)
        by_rows = client.execute(
            query, external_tables=[id_table("ids", "id", "UInt64", ids.tolist())], columnar=True
        )
        columns = numpy_columns(
            client, query, external_tables=[id_frame("ids", "id", "UInt64", ids)]
        )
        assert all(isinstance(column, np.ndarray) for column in columns)
        assert [column.tolist() for column in columns] == [list(column) for column in by_rows]
        assert columns[0].tolist() == [1, 7, 7, 2**40]
        assert client.execute("SELECT 1", columnar=True) == [(1,)]
        no_rows = numpy_columns(
            client,
            query.replace("!= 3", "= 4"),
            external_tables=[id_frame("ids", "id", "UInt64", ids)],
        )
        assert no_rows == []
    finally:
        client.disconnect()
