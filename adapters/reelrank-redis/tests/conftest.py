"""Real ``redis-server`` processes for the adapter's tests.

``redis_server`` is one server for the whole session; every test gets a fresh key
prefix on a flushed database through ``redis_config`` / ``redis_client``. Tests that
pause or kill a server use ``fault_server``, a separate instance of their own.

``redis_cluster`` is a three-master Redis Cluster for the session, reached through
``cluster_config`` / ``cluster_client``; ``any_config`` / ``any_client`` run a test
once on the single server and once on the cluster.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from reelrank_redis import RedisClient, RedisConfig, connect
from reelrank_redis.testing import RedisClusterServer, RedisServer, find_redis_server

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


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServer]:
    """One three-master cluster for the session."""
    _require_redis_server()
    with RedisClusterServer(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture
def cluster_config(redis_cluster: RedisClusterServer) -> RedisConfig:
    """Settings pointing at the session cluster (flushed), with a prefix of the test's own."""
    redis_cluster.flush()
    return RedisConfig(
        url=redis_cluster.url,
        cluster=True,
        prefix=f"test{next(_prefixes)}",
        socket_timeout_seconds=2.0,
        connect_timeout_seconds=2.0,
    )


@pytest.fixture
def cluster_client(cluster_config: RedisConfig) -> Iterator[RedisClient]:
    """A cluster client built by the adapter's own factory, closed after the test."""
    client = connect(cluster_config)
    yield client
    client.close()


@pytest.fixture(params=["standalone", "cluster"])
def any_config(request: pytest.FixtureRequest) -> RedisConfig:
    """``redis_config`` or ``cluster_config``: the test runs on both."""
    name = "redis_config" if request.param == "standalone" else "cluster_config"
    config: RedisConfig = request.getfixturevalue(name)
    return config


@pytest.fixture
def any_client(any_config: RedisConfig) -> Iterator[RedisClient]:
    """A client of ``any_config`` built by the adapter's factory, closed after the test."""
    client = connect(any_config)
    yield client
    client.close()
