"""The throwaway-server tool the tests and benchmarks rely on."""

from __future__ import annotations

from pathlib import Path

import pytest
from reelrank_clickhouse import ClickHouseConfig, connect
from reelrank_clickhouse.testing import ClickHouseServer, ClickHouseServerError
from sqlalchemy import text

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_the_config_keeps_everything_under_the_directory(
    clickhouse_server: ClickHouseServer,
) -> None:
    config = (clickhouse_server.directory / "config.xml").read_text(encoding="utf-8")
    assert "<yandex>" in config
    assert "<listen_host>127.0.0.1</listen_host>" in config
    assert f"<tcp_port>{clickhouse_server.tcp_port}</tcp_port>" in config
    assert "<timezone>UTC</timezone>" in config
    assert (clickhouse_server.directory / "data").is_dir()
    # The server reads naive times as UTC (it reports the zone as "Etc/UTC").
    epoch = clickhouse_server.execute("SELECT toUnixTimestamp(toDateTime('2026-01-01 00:00:00'))")
    assert int(epoch) == 1_767_225_600


def test_pause_resume_and_stop(fault_server: ClickHouseServer) -> None:
    assert fault_server.running
    with pytest.raises(ClickHouseServerError):
        fault_server.start()
    fault_server.pause()
    try:
        # A frozen server accepts the connection (the kernel does) but never answers.
        with pytest.raises(OSError):
            fault_server.execute("SELECT 1", timeout=0.5)
    finally:
        fault_server.resume()
    assert fault_server.execute("SELECT 1").strip() == "1"
    fault_server.stop()
    assert not fault_server.running
    assert fault_server.pid is None
    with pytest.raises(ClickHouseServerError):
        fault_server.pause()


def test_another_server_on_the_ports_is_not_taken_for_this_one(
    clickhouse_server: ClickHouseServer, tmp_path: Path
) -> None:
    # As when another server grabbed the ports between free_port() and this one's bind.
    impostor = ClickHouseServer(tmp_path / "never-started")
    impostor.tcp_port = clickhouse_server.tcp_port
    impostor.http_port = clickhouse_server.http_port
    assert not impostor._answers()
    assert clickhouse_server._answers()


def test_a_query_log_records_another_clients_queries(
    clickhouse_server: ClickHouseServer, tmp_path: Path
) -> None:
    # The session's server is started without one: there is no table to read.
    assert "query_log" not in clickhouse_server.execute("SHOW TABLES FROM system").split()
    with ClickHouseServer(tmp_path / "logged", query_log=True) as logged:
        engine = connect(ClickHouseConfig(port=logged.tcp_port))
        try:
            with engine.connect() as conn:  # another client: the adapter's engine
                assert conn.execute(text("SELECT count() FROM numbers(12345)")).scalar() == 12345
        finally:
            engine.dispose()
        logged.execute("SYSTEM FLUSH LOGS")
        rows = logged.execute(
            "SELECT read_rows FROM system.query_log "
            "WHERE type = 2 AND query LIKE '%numbers(12345)%' AND query NOT LIKE '%query_log%'"
        )
        assert rows.split() == ["12345"]
