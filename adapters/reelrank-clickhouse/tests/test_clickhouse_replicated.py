"""Replicated mode: one shard of two ``ReplicatedMergeTree`` replicas coordinated by a
standalone ZooKeeper (Debian's package), all started here. A replica is killed in the
middle of a batch (during its insert, and right after the insert returned, before the
batch is acknowledged) and restarted; after the documented recovery, ``reconcile``
alone, every acknowledged event is present exactly once, and reads on either replica's
own tables agree with the in-memory reference. Another test checks that ``reconcile``
writes nothing while a replica cannot catch up, two migrate version-1 and version-2
tables and read a roll-up on each replica, and one gives a replica that stopped fetching
a late part in a bucket a store reading it holds.

The tests wait on nothing but the servers' own answers: ``restart`` returns once the
victim answers, and ``reconcile`` once every replica has synced and holds the
corrections (``SYSTEM SYNC REPLICA``, up to its 300 s default per table).

Marked ``replicated`` (its own nox session): 7 to 12 s a test at load 5 to 8, plus
starting ZooKeeper's JVM and the servers and stopping them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ch_support import (
    Pair,
    assert_refused_then_migrated,
    assert_same_statistics,
    reference_of,
    workload,
)
from reelrank_clickhouse import (
    ClickHouseConfig,
    ClickHouseEventStore,
    ClickHouseTables,
    connect,
    create_schema,
)
from reelrank_clickhouse._rows import event_columns
from reelrank_clickhouse.testing import (
    ClickHouseCluster,
    ClickHouseServer,
    ZooKeeperServer,
    find_zookeeper,
    older_aggregates_view,
)

from reelrank import StoreError, StoreTimeoutError
from reelrank.testing import EPOCH

pytestmark = [pytest.mark.integration, pytest.mark.replicated, pytest.mark.timeout(300)]


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[ClickHouseCluster]:
    if find_zookeeper() is None:
        pytest.skip("zookeeper is not installed (scripts/test.sh installs it)")
    with (
        ZooKeeperServer(tmp_path / "zookeeper") as zookeeper,
        ClickHouseCluster(
            tmp_path / "clickhouse", shards=1, replicas=2, zookeeper=zookeeper.address
        ) as cluster,
    ):
        yield cluster


def _local(config: ClickHouseConfig, port: int) -> tuple[ClickHouseConfig, ClickHouseTables]:
    """Settings reading one replica's own tables."""
    tables = ClickHouseTables(
        **{key: name + config.local_suffix for key, name in config.tables.model_dump().items()}
    )
    return config.model_copy(update={"port": port, "cluster": None, "replicated": False}), tables


def _kill_at_the_insert(
    store: ClickHouseEventStore, victim: ClickHouseServer, when: str
) -> list[threading.Thread]:
    """Kill ``victim`` at the next insert of ``store``: ``"during"`` it (a thread kills
    the server as the insert starts: it lands inside the insert or right after it) or
    ``"after"`` it (the insert returned, so the server holds the batch, and the call
    fails in its second check: never acknowledged). Returns the list that receives the
    killing thread, for the caller to join."""
    client = store._clients.writer()
    execute = client.execute
    killers: list[threading.Thread] = []

    def kill_at_insert(query: str, *args: Any, **kwargs: Any) -> Any:
        if not query.startswith("INSERT INTO events"):
            return execute(query, *args, **kwargs)
        client.execute = execute  # once
        if when == "during":
            killers.append(threading.Thread(target=victim.kill))
            killers[0].start()
            return execute(query, *args, **kwargs)
        result = execute(query, *args, **kwargs)
        victim.kill()
        return result

    client.execute = kill_at_insert
    return killers


@pytest.mark.parametrize("when", ["during", "after"])
def test_a_replica_killed_in_the_middle_of_a_batch_loses_and_doubles_nothing(
    replicas: ClickHouseCluster, when: str
) -> None:
    """``"after"`` always leaves the batch on the victim unacknowledged and, with the
    survivor's fetches stopped, unseen by the redelivery through the survivor, which
    stores it again: ``reconcile`` must find both copies and correct them on both
    replicas. ``"during"`` leaves a copy on the victim or not, depending on where the
    kill lands and how fast the survivor fetches."""
    replicas.execute_everywhere("CREATE DATABASE feeds")
    survivor, victim = replicas.servers
    config = replicas.config("feeds", send_receive_timeout_seconds=30.0)
    engines = {
        server.tcp_port: connect(config.model_copy(update={"port": server.tcp_port}))
        for server in replicas.servers
    }
    create_schema(engines[victim.tcp_port], config)
    # The client writes through the victim (whose Distributed table writes its local
    # replica) and fails over to the survivor when a call fails.
    store = ClickHouseEventStore(engines[victim.tcp_port], tables=config.tables)
    acknowledged: list[list[Pair]] = []
    failed: list[int] = []
    for number in range(6):
        batch = workload(f"batch-{number}", 5_000)
        if number == 2:
            if when == "after":
                # Replication lag, made certain: the survivor does not fetch the
                # victim's part before the redelivery's check, which would find it.
                survivor.execute("SYSTEM STOP FETCHES")
            killers = _kill_at_the_insert(store, victim, when)
        while True:  # the caller redelivers until the batch is acknowledged
            try:
                store.append_many(batch)
                break
            except StoreError:
                failed.append(number)
                store = ClickHouseEventStore(engines[survivor.tcp_port], tables=config.tables)
        acknowledged.append(batch)
        if number == 2:
            for killer in killers:
                killer.join()
            survivor.execute("SYSTEM START FETCHES")
        if number == 3:
            victim.restart()
    assert failed == [2]  # the kill failed batch 2's first delivery, and nothing else
    # The documented recovery, and nothing else: reconcile brings every replica up to
    # date, corrects the copies no writer saw, and returns once every replica holds
    # the corrections.
    raced = store.reconcile(since=EPOCH)
    if when == "after":
        assert raced == len(acknowledged[2])
    reference = reference_of(acknowledged)
    for server in replicas.servers:
        local_config, local_tables = _local(config, server.tcp_port)
        local_engine = connect(local_config)
        try:
            local = ClickHouseEventStore(local_engine, tables=local_tables)
            assert_same_statistics(local, reference, range(1, 6), range(1, 7), [10, 11, 12])
        finally:
            local_engine.dispose()
    for engine in engines.values():
        engine.dispose()


def test_reconcile_writes_nothing_while_a_replica_cannot_catch_up(
    replicas: ClickHouseCluster,
) -> None:
    """A replica that has not fetched every part may hold fewer copies than the
    others: ``reconcile`` fails rather than write a correction from a partial view, and
    corrects every replica once they all catch up."""
    replicas.execute_everywhere("CREATE DATABASE feeds")
    lagging, writer = replicas.servers
    config = replicas.config("feeds", send_receive_timeout_seconds=30.0)
    engine = connect(config.model_copy(update={"port": writer.tcp_port}))
    create_schema(engine, config)
    store = ClickHouseEventStore(engine, tables=config.tables)
    batch = workload("lagging", 300)
    lagging.execute("SYSTEM STOP FETCHES")
    for seq in (1, 1_000):  # two copies no writer saw, as the killed-replica test leaves
        _insert_copies(store, batch, seq)
    with pytest.raises(StoreTimeoutError):
        store.reconcile(since=EPOCH, sync_timeout_seconds=1.0)
    corrections = f"SELECT count() FROM feeds.{config.tables.corrections}{config.local_suffix}"
    assert [server.execute(corrections).strip() for server in replicas.servers] == ["0", "0"]
    lagging.execute("SYSTEM START FETCHES")
    assert store.reconcile(since=EPOCH) == len(batch)
    reference = reference_of([batch])
    for server in replicas.servers:
        local_config, local_tables = _local(config, server.tcp_port)
        local_engine = connect(local_config)
        try:
            local = ClickHouseEventStore(local_engine, tables=local_tables)
            assert_same_statistics(local, reference, range(1, 6), range(1, 7), [10, 11, 12])
        finally:
            local_engine.dispose()
    engine.dispose()


def _insert_copies(store: ClickHouseEventStore, pairs: list[Pair], seq: int) -> None:
    """Insert ``pairs`` past every check, as a writer that died before its second
    check would leave them."""
    columns = event_columns([event for event, _ in pairs], seq)
    columns.append([creator_id for _, creator_id in pairs])
    with store._write_lock:
        store._clients.writer().execute(store._queries.insert, columns, columnar=True)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_migration_and_roll_up_on_replicas(replicas: ClickHouseCluster, version: int) -> None:
    """Replicated tables of an older schema version are refused, migrate to the current
    one once per shard (the backfill on the first replica, fetched by the other), and a
    roll-up of the events from before and after the migration, written through the
    Distributed table, is read, held by the store, with the reference's statistics from
    each replica's own tables."""
    replicas.execute_everywhere("CREATE DATABASE feeds")
    config = replicas.config("feeds", send_receive_timeout_seconds=30.0)
    engine = connect(config)
    try:
        create_schema(engine, config)
        for server in replicas.servers:  # the older release's view on each replica
            server.execute("DROP TABLE feeds.event_aggregates_local_mv")
            server.execute(
                older_aggregates_view(
                    version, aggregates="feeds.event_aggregates_local", events="feeds.events_local"
                )
            )
        store = ClickHouseEventStore(engine, tables=config.tables)
        batch = workload("before", 200)
        store.append_many(batch)
        assert_refused_then_migrated(engine, config, version)
        later = workload("after", 50)
        store.append_many(later)
        assert store.fold_stats(until=datetime.now(UTC) + timedelta(minutes=3)) > 0
        reference = reference_of([batch, later])
        for server in replicas.servers:
            aggregates = server.execute(
                "SELECT engine_full FROM system.tables "
                "WHERE database = 'feeds' AND name = 'event_aggregates_local'"
            )
            assert aggregates.startswith("ReplicatedAggregatingMergeTree")
            assert "index_granularity = 1024" in aggregates
            for table in ("events", "event_aggregates", "event_stats_rollup"):
                server.execute(f"SYSTEM SYNC REPLICA feeds.{table}_local")
            local_config, local_tables = _local(config, server.tcp_port)
            local_engine = connect(local_config)
            try:
                local = ClickHouseEventStore(local_engine, tables=local_tables)
                with local._clients.reader() as client:
                    ids = np.arange(1, 6, dtype=np.int64)
                    assert local._folded_stats(client, ids) is not None
                assert_same_statistics(local, reference, range(1, 6), range(1, 7), [10, 11, 12])
                assert local._held is not None  # the roll-up's rows, held
            finally:
                local_engine.dispose()
    finally:
        engine.dispose()


def test_a_lagging_replicas_late_part_makes_the_held_store_read_again(
    replicas: ClickHouseCluster,
) -> None:
    """A store reading one replica's own tables holds what arrived since a roll-up;
    that replica stops fetching, the other gets a batch in a bucket the store holds,
    and the store's counts stay those of the parts its replica has. Once the replica
    fetches the late part, the bucket's total on the server differs from the held one:
    the store drops its since-sums, reads again, and counts the batch exactly once."""
    from ch_support import batch_of, deliver
    from test_clickhouse_held_arrivals import _buckets, _fold, _settled
    from test_clickhouse_held_arrivals import _store as _held_store

    from reelrank import InMemoryEventStore

    replicas.execute_everywhere("CREATE DATABASE feeds")
    config = replicas.config("feeds", send_receive_timeout_seconds=30.0)
    engine = connect(config)
    create_schema(engine, config)
    engine.dispose()
    writing, lagging = replicas.servers
    engines = [connect(_local(config, server.tcp_port)[0]) for server in (writing, lagging)]
    local_tables = _local(config, writing.tcp_port)[1]
    local_config = config.model_copy(update={"tables": local_tables})
    tables = ("events", "event_aggregates", "event_stats_rollup")

    def synced() -> None:
        # A fetch retried after STOP FETCHES waits out the replica's back-off first,
        # which on a loaded machine has taken longer than the default 10 s.
        for table in tables:
            lagging.execute(f"SYSTEM SYNC REPLICA feeds.{table}_local", timeout=120.0)

    try:
        writer = _held_store(engines[0], local_config)
        reader = _held_store(engines[1], local_config)
        buckets = _buckets(writer)
        reference = InMemoryEventStore()
        deliver(writer, reference, batch_of(("watch", 1, 1), ("share", 1, 2)))
        _fold(writer)
        held = buckets.bucket  # the roll-up's watermark, as a fine bucket
        deliver(writer, reference, batch_of(("watch", 2, 1), ("comment", 2, 2)))
        buckets.next_fine()
        deliver(writer, reference, batch_of(("watch", 3, 1)))
        synced()
        assert_same_statistics(reader, reference, [1, 2], [1, 2, 3, 4], [10])
        _settled(reader)
        assert reader._since is not None and reader._since.unheld == held + 2
        before_the_late_part = reader.get_stats([1, 2])
        for table in tables:
            lagging.execute(f"SYSTEM STOP FETCHES feeds.{table}_local")
        # A batch with the arrival number of a bucket the reader holds, on the other
        # replica only.
        buckets.late = held
        deliver(writer, reference, batch_of(("watch", 4, 1), ("share", 4, 2)))
        buckets.late = None
        queued = "SELECT count() FROM system.replication_queue WHERE database = 'feeds' AND "
        queued += "table = 'event_aggregates_local' AND type = 'GET_PART'"
        deadline = time.monotonic() + 30.0
        while not int(lagging.execute(queued)) and time.monotonic() < deadline:
            time.sleep(0.05)  # the replica has not read the other's log entry yet
        assert int(lagging.execute(queued))  # the late part: queued, not fetched
        assert reader.get_stats([1, 2]) == before_the_late_part
        for table in tables:
            lagging.execute(f"SYSTEM START FETCHES feeds.{table}_local")
        synced()
        held_since = reader._since
        assert_same_statistics(reader, reference, [1, 2], [1, 2, 3, 4], [10])
        assert reader.get_stats([1])[1].views == 4
        assert reader._since is not held_since  # dropped for the late part
        _settled(reader)  # rebuilt from the server, with the late batch
        assert reader._since is not None and reader._since.unheld == held + 2
        assert_same_statistics(reader, reference, [1, 2], [1, 2, 3, 4], [10])
    finally:
        for each in engines:
            each.dispose()
