"""Real ``clickhouse-server`` processes for the adapter's tests.

``clickhouse_server`` is one server for the whole session (``clickhouse_cluster`` a
2-shard cluster); every test that asks for
``clickhouse_engine`` gets a database of its own with a fresh schema, so tests never
see each other's rows. Fault tests start a separate server (``fault_server``) that they
are free to pause.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from reelrank_clickhouse import ClickHouseConfig, connect, create_schema
from reelrank_clickhouse.testing import ClickHouseCluster, ClickHouseServer, find_clickhouse_server
from sqlalchemy.engine import Engine

_databases = itertools.count()


def _require_clickhouse_server() -> None:
    if find_clickhouse_server() is None:
        pytest.skip("clickhouse-server is not installed (scripts/test.sh installs it)")


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseServer]:
    """One throwaway server for the session."""
    _require_clickhouse_server()
    with ClickHouseServer(tmp_path_factory.mktemp("clickhouse")) as server:
        yield server


@pytest.fixture
def clickhouse_config(clickhouse_server: ClickHouseServer) -> ClickHouseConfig:
    """Settings pointing at a new, empty database of the session server.

    The reply timeout is relaxed so a busy machine cannot fail a functional test; the
    fault tests set short ones themselves.
    """
    database = f"test_{next(_databases)}"
    clickhouse_server.execute(f"CREATE DATABASE {database}")
    return ClickHouseConfig(
        port=clickhouse_server.tcp_port, database=database, send_receive_timeout_seconds=30.0
    )


@pytest.fixture
def clickhouse_engine(clickhouse_config: ClickHouseConfig) -> Iterator[Engine]:
    """An engine built by the adapter's own factory on a database with the schema."""
    engine = connect(clickhouse_config)
    create_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def fault_server(tmp_path: Path) -> Iterator[ClickHouseServer]:
    """A server of the test's own, free to be paused."""
    _require_clickhouse_server()
    with ClickHouseServer(tmp_path / "fault-clickhouse") as server:
        yield server


@pytest.fixture(scope="session")
def clickhouse_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseCluster]:
    """Two servers forming a 2-shard ``remote_servers`` cluster, for the session."""
    _require_clickhouse_server()
    with ClickHouseCluster(tmp_path_factory.mktemp("clickhouse-cluster"), shards=2) as cluster:
        yield cluster


@pytest.fixture
def cluster_config(clickhouse_cluster: ClickHouseCluster) -> Iterator[ClickHouseConfig]:
    """Sharded-mode settings on a new database of the cluster, with the schema on both
    shards (made by the adapter, connecting to each)."""
    database = f"test_{next(_databases)}"
    clickhouse_cluster.execute_everywhere(f"CREATE DATABASE {database}")
    config = clickhouse_cluster.config(database, send_receive_timeout_seconds=30.0)
    engine = connect(config)
    create_schema(engine, config)
    engine.dispose()
    yield config


@pytest.fixture
def cluster_engine(cluster_config: ClickHouseConfig) -> Iterator[Engine]:
    """An engine entering the cluster through its first server."""
    engine = connect(cluster_config)
    yield engine
    engine.dispose()


@pytest.fixture(params=["server", "cluster"])
def deployment(request: pytest.FixtureRequest) -> tuple[Engine, ClickHouseConfig]:
    """One server, then the 2-shard cluster: an engine with the schema, and its settings."""
    if request.param == "server":
        config = request.getfixturevalue("clickhouse_config")
        return request.getfixturevalue("clickhouse_engine"), config
    return request.getfixturevalue("cluster_engine"), request.getfixturevalue("cluster_config")
