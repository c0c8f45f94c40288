"""The throwaway-server tooling the tests and benchmarks rely on."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from reelrank_redis.testing import RedisServer, RedisServerError, find_redis_server

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _needs_redis_server() -> None:
    if find_redis_server() is None:
        pytest.skip("redis-server is not installed (scripts/test.sh installs it)")


def test_a_server_answers_until_it_is_stopped(tmp_path: Path) -> None:
    with RedisServer(tmp_path) as server:
        assert server.running
        client = server.client(socket_timeout=1.0)
        assert client.ping()
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
        assert client.config_get("bind") == {"bind": "127.0.0.1"}
    assert not server.running
    with pytest.raises(redis.exceptions.ConnectionError):
        client.ping()


def test_restart_reuses_the_port_and_starts_empty(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    try:
        port = server.port
        server.client().set("key", "value")
        server.kill()
        assert not server.running
        server.restart()
        assert server.port == port
        assert server.client().get("key") is None
    finally:
        server.stop()


def test_a_paused_server_stops_cleanly(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    server.pause()
    with pytest.raises(redis.exceptions.TimeoutError):
        server.client(socket_timeout=0.2).ping()
    server.stop()
    assert not server.running


def test_extra_arguments_reach_the_server(tmp_path: Path) -> None:
    with RedisServer(tmp_path, extra_args=["--maxmemory", "5mb"]) as server:
        assert server.client().config_get("maxmemory") == {"maxmemory": str(5 * 2**20)}


def test_a_server_that_cannot_start_raises(tmp_path: Path) -> None:
    with pytest.raises(RedisServerError, match="did not answer PING"):
        RedisServer(tmp_path, extra_args=["--no-such-option", "1"]).start()
    with pytest.raises(RedisServerError, match="cannot run"):
        RedisServer(tmp_path, executable=str(tmp_path / "missing")).start()
