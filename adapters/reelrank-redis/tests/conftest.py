"""Real ``redis-server`` processes for the adapter's tests.

``redis_server`` is one server for the whole session; every test gets a fresh key
prefix on a flushed database through ``redis_config`` / ``redis_client``. Tests that
pause or kill a server use ``fault_server``, a separate instance of their own.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from reelrank_redis import RedisConfig, connect
from reelrank_redis.testing import RedisServer, find_redis_server

_prefixes = itertools.count()


def _require_redis_server() -> None:
    if find_redis_server() is None:
        pytest.skip("redis-server is not installed (scripts/test.sh installs it)")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One throwaway server for the session."""
    _require_redis_server()
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_config(redis_server: RedisServer) -> Iterator[RedisConfig]:
    """Settings pointing at the session server, with a prefix no other test uses.

    The socket timeout is relaxed so a busy machine cannot fail a functional test; the
    fault tests set the short request-path timeouts themselves.
    """
    admin = redis_server.client()
    admin.flushdb()
    admin.close()
    yield RedisConfig(
        url=redis_server.url,
        prefix=f"test{next(_prefixes)}",
        socket_timeout_seconds=2.0,
        connect_timeout_seconds=2.0,
    )


@pytest.fixture
def redis_client(redis_config: RedisConfig) -> Iterator[redis.Redis]:
    """A client built by the adapter's own factory, closed after the test."""
    client = connect(redis_config)
    yield client
    client.close()


@pytest.fixture
def fault_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of the test's own, free to be paused, killed and restarted."""
    _require_redis_server()
    server = RedisServer(tmp_path / "fault-redis")
    server.start()
    yield server
    server.stop()
