"""Sharded mode on a 2-shard cluster of real servers: the core contract suites through
``Distributed`` tables, the schema on every shard, events sharded by user (so a
redelivery reaches the original's shard), and synchronous distributed inserts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from reelrank_clickhouse import (
    ClickHouseConfig,
    ClickHouseEngagementLog,
    ClickHouseEventStore,
    connect,
    create_schema,
)
from reelrank_clickhouse.testing import ClickHouseCluster
from sqlalchemy import text
from sqlalchemy.engine import Engine

from reelrank import ConfigError
from reelrank.testing import EngagementLogContract, EventStoreContract, make_event

pytestmark = pytest.mark.integration


class TestShardedEventStore(EventStoreContract):
    @pytest.fixture
    def event_store(
        self, cluster_engine: Engine, cluster_config: ClickHouseConfig
    ) -> Iterator[ClickHouseEventStore]:
        store = ClickHouseEventStore(cluster_engine, tables=cluster_config.tables)
        yield store
        store.close(timeout=30)  # its background reads, before the engine goes


class TestShardedEngagementLog(EngagementLogContract):
    @pytest.fixture
    def engagement_log(
        self, cluster_engine: Engine, cluster_config: ClickHouseConfig
    ) -> ClickHouseEngagementLog:
        return ClickHouseEngagementLog(cluster_engine, tables=cluster_config.tables)


_SYNC = "SELECT value FROM system.settings WHERE name = 'insert_distributed_sync'"


def test_distributed_inserts_are_synchronous_on_every_connection(
    cluster_engine: Engine, cluster_config: ClickHouseConfig
) -> None:
    with cluster_engine.connect() as conn:
        assert conn.execute(text(_SYNC)).scalar_one() == "1"
    store = ClickHouseEventStore(cluster_engine, tables=cluster_config.tables)
    assert store._clients.writer().execute(_SYNC) == [("1",)]
    with store._clients.reader() as client:
        assert client.execute(_SYNC) == [("1",)]
    # The server's default is asynchronous: the setting comes from the adapter.
    assert ClickHouseConfig().url().query["insert_distributed_sync"] == "1"


def _rows_per_shard(cluster: ClickHouseCluster, database: str, where: str) -> list[int]:
    return [
        int(server.execute(f"SELECT count() FROM {database}.events_local WHERE {where}"))
        for server in cluster.servers
    ]


def test_events_are_sharded_by_user_and_a_redelivery_reaches_the_same_shard(
    clickhouse_cluster: ClickHouseCluster,
    cluster_engine: Engine,
    cluster_config: ClickHouseConfig,
) -> None:
    store = ClickHouseEventStore(cluster_engine, tables=cluster_config.tables)
    events = [make_event("watch", completion=0.5, user_id=user) for user in range(1, 41)]
    assert store.append_many([(event, 7) for event in events]) == 40
    database = cluster_config.database
    per_shard = _rows_per_shard(clickhouse_cluster, database, "1")
    assert sum(per_shard) == 40 and min(per_shard) > 0  # both shards hold some
    for user in range(1, 41):
        holders = _rows_per_shard(clickhouse_cluster, database, f"user_id = {user}")
        assert sorted(holders) == [0, 1]
    # A redelivery through the other server is refused: the check asks both shards.
    other = connect(
        cluster_config.model_copy(update={"port": clickhouse_cluster.servers[1].tcp_port})
    )
    try:
        again = ClickHouseEventStore(other, tables=cluster_config.tables)
        assert again.append_many([(event, 7) for event in events]) == 0
        assert again.get_stats([1])[1].views == 40
    finally:
        other.dispose()
    assert sum(_rows_per_shard(clickhouse_cluster, database, "1")) == 40


def test_the_schema_is_on_every_shard(
    clickhouse_cluster: ClickHouseCluster, cluster_config: ClickHouseConfig
) -> None:
    for server in clickhouse_cluster.servers:
        tables = set(server.execute(f"SHOW TABLES FROM {cluster_config.database}").split())
        former = cluster_config.tables.engagement_log_ids  # no longer made
        for name in cluster_config.tables.model_dump().values():
            shard_tables = {name, name + cluster_config.local_suffix}
            assert not shard_tables & tables if name == former else shard_tables <= tables
        engine = server.execute(
            f"SELECT engine FROM system.tables WHERE database = '{cluster_config.database}' "
            f"AND name = '{cluster_config.tables.events}'"
        )
        assert engine.strip() == "Distributed"
        aggregates = server.execute(
            f"SELECT engine_full FROM system.tables WHERE database = '{cluster_config.database}' "
            f"AND name = '{cluster_config.tables.aggregates}{cluster_config.local_suffix}'"
        )
        assert aggregates.startswith("AggregatingMergeTree")
        assert "index_granularity = 1024" in aggregates


def test_an_unknown_cluster_is_a_config_error(cluster_config: ClickHouseConfig) -> None:
    config = cluster_config.model_copy(update={"cluster": "absent"})
    engine = connect(config)
    try:
        with pytest.raises(ConfigError) as info:
            create_schema(engine, config)
        assert info.value.field == "cluster"
    finally:
        engine.dispose()
