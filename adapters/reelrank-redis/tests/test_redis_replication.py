"""Acknowledging events only once replicas hold them (``min_replicas_acked``): the
setting's checks, a standalone master with a replica, and a Redis Cluster failover in
which every acknowledged event survives and a retry of everything sent counts each once."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.crc import key_slot
from reelrank_redis import RedisConfig, RedisEventStore, ReplicationError, connect
from reelrank_redis._keys import BUCKETS, KeyLayout
from reelrank_redis.testing import RedisClusterServer, RedisServer, find_redis_server

from reelrank import ConfigError, EngagementKind, StoreError, affinity, affinity_credit
from reelrank.testing.factories import make_event


def _require_redis_server() -> None:
    if find_redis_server() is None:
        pytest.skip("redis-server is not installed (scripts/test.sh installs it)")


# -- the settings (no server) ----------------------------------------------------------------


def test_the_replication_timeout_must_end_before_the_socket_timeout() -> None:
    assert RedisConfig().min_replicas_acked == 0
    RedisConfig(min_replicas_acked=1)  # 0.05 s of WAIT within the 0.2 s socket timeout
    # Without waiting, the timeout is not used and not checked against the socket's.
    RedisConfig(replication_timeout_seconds=1.0)
    with pytest.raises(ConfigError) as caught:
        RedisConfig(min_replicas_acked=1, replication_timeout_seconds=0.2)
    assert caught.value.field == "replication_timeout_seconds"
    with pytest.raises(ConfigError) as caught:
        RedisConfig(min_replicas_acked=-1)
    assert caught.value.field == "min_replicas_acked"


def test_the_replication_error_names_the_setting_and_pickles() -> None:
    error = ReplicationError("events", "append", 1, 0)
    assert isinstance(error, StoreError) and error.store == "events"
    assert (error.field, error.required, error.acknowledged) == ("min_replicas_acked", 1, 0)
    assert "0 of the 1 replicas required by min_replicas_acked" in str(error)
    restored = pickle.loads(pickle.dumps(error))
    assert vars(restored) == vars(error) and str(restored) == str(error)


# -- one master, one replica -------------------------------------------------------------------


@pytest.fixture
def master_and_replica(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer]]:
    _require_redis_server()
    # No delay before the first full sync, which would otherwise hold the replica 5 s.
    with RedisServer(tmp_path / "master", extra_args=["--repl-diskless-sync-delay", "0"]) as master:
        replica = RedisServer(
            tmp_path / "replica", extra_args=["--replicaof", master.host, str(master.port)]
        )
        with replica:
            replica.wait_until_synced(replica=True)
            yield master, replica


def _config(url: str, **fields: object) -> RedisConfig:
    return RedisConfig(
        url=url,
        prefix="replicated",
        socket_timeout_seconds=2.0,
        connect_timeout_seconds=2.0,
        **fields,  # type: ignore[arg-type]
    )


@pytest.mark.integration
def test_a_standalone_append_returns_once_the_replica_has_the_event(
    master_and_replica: tuple[RedisServer, RedisServer],
) -> None:
    master, replica = master_and_replica
    config = _config(master.url, min_replicas_acked=1, replication_timeout_seconds=1.5)
    client = connect(config)
    events = RedisEventStore(client, config)
    # Read straight from the replica: the acknowledged event is already there.
    on_replica = RedisEventStore(replica.client(), config)
    try:
        like = make_event("like", user_id=3, video_id=8)
        assert events.append(like, creator_id=2) is True
        assert on_replica.get_stats([8])[8].likes == 1

        replica.pause()  # connected, but acknowledging nothing
        try:
            share = make_event("share", user_id=3, video_id=8)
            with pytest.raises(ReplicationError) as caught:
                events.append(share, creator_id=2)
            assert caught.value.acknowledged == 0 and caught.value.required == 1
            # The master applied it; a retry, even from a client whose connections never
            # wrote it, waits for the replica again instead of trusting the duplicate.
            assert events.get_stats([8])[8].shares == 1
            other_client = connect(config)
            try:
                with pytest.raises(ReplicationError):
                    RedisEventStore(other_client, config).append(share, creator_id=2)
            finally:
                other_client.close()
            # Without the setting the same store acknowledges at once.
            unsafe = RedisEventStore(client, _config(master.url))
            assert unsafe.append(make_event("comment", user_id=3, video_id=8), creator_id=2)
        finally:
            replica.resume()
        # The retry after the replica caught up: counted once, acknowledged.
        assert events.append(share, creator_id=2) is False
        assert on_replica.get_stats([8])[8].shares == 1
        assert events.append(share, creator_id=2) is False
        assert events.get_stats([8])[8].shares == 1
        credit = (
            affinity_credit(EngagementKind.LIKE, None)
            + affinity_credit(EngagementKind.SHARE, None)
            + affinity_credit(EngagementKind.COMMENT, None)
        )
        assert events.get_affinities(3, [2]) == {2: pytest.approx(affinity(credit, credit))}
    finally:
        client.close()


# -- a cluster failover ------------------------------------------------------------------------


@pytest.fixture
def replicated_cluster(tmp_path: Path) -> Iterator[RedisClusterServer]:
    """Three masters with a replica each, of the test's own."""
    _require_redis_server()
    with RedisClusterServer(tmp_path / "cluster", replicas=1) as cluster:
        yield cluster


def _slot(key: str) -> int:
    return key_slot(key.encode())


@pytest.mark.integration
def test_a_failover_loses_no_acknowledged_event_when_appends_wait_for_a_replica(
    replicated_cluster: RedisClusterServer,
) -> None:
    """Every event whose append returned survives the death of its master; events whose
    append failed may or may not have survived, and a retry of everything sent leaves
    each event counted exactly once."""
    config = RedisConfig(
        url=replicated_cluster.url,
        cluster=True,
        prefix="waits",
        socket_timeout_seconds=2.0,
        connect_timeout_seconds=2.0,
        min_replicas_acked=1,
        replication_timeout_seconds=0.2,
    )
    client = connect(config)
    events = RedisEventStore(client, config)
    # Appends that should be acknowledged wait longer: the short wait of `events` only
    # makes the appends that must fail fail fast, and a loaded machine can take longer
    # than 0.2 s to acknowledge even with every replica up.
    patient_config = RedisConfig(**{**config.model_dump(), "replication_timeout_seconds": 1.5})
    patient = RedisEventStore(client, patient_config)
    keys = KeyLayout(config.prefix)
    user = 5
    slot = _slot(keys.affinity(user))
    master = replicated_cluster.node_serving(slot)
    # Videos whose halves live on the user's master and on another one.
    near = next(
        video
        for video in range(1, BUCKETS + 1)
        if replicated_cluster.node_serving(_slot(keys.video_counters(video))) is master
    )
    far = next(
        video
        for video in range(1, BUCKETS + 1)
        if replicated_cluster.node_serving(_slot(keys.video_counters(video))) is not master
    )
    sent = [make_event("watch", user_id=user, video_id=v) for v in (near, far, near, far)]
    acknowledged = [event for event in sent if patient.append(event, creator_id=1)]
    assert acknowledged == sent  # every replica is up: all of them

    # The master's replica stops acknowledging; appends touching the master now fail.
    replica = replicated_cluster.replicas_of(master)[0]
    replica.pause()
    admin = master.client()
    admin.client_kill_filter(_type="replica")
    admin.close()
    late = [make_event("watch", user_id=user, video_id=v) for v in (near, far)]
    for event in late:
        with pytest.raises(ReplicationError):
            events.append(event, creator_id=1)
    sent += late
    master.kill()
    replica.resume()
    replicated_cluster.wait_for_failover(slot, master)

    # Nothing acknowledged was lost (read through a client that learns the new
    # topology). The late watch of `far` had its video half replicated on a surviving
    # master before its user half failed.
    survivor = replicated_cluster.running_nodes()[0]
    reader_config = RedisConfig(**{**config.model_dump(), "url": survivor.url})
    reader_client = connect(reader_config)
    reader = RedisEventStore(reader_client, reader_config)
    assert reader.get_stats([near])[near].views == 2
    assert reader.get_stats([far])[far].views == 3
    reader_client.close()
    # The writer's slot table still names the dead master: the append's connection
    # error refreshes it and reaches the promoted replica, which has no replica of its
    # own yet, so nothing touching it can be acknowledged (durability over
    # availability) until the old master rejoins. Its video half is applied, unreplicated.
    with pytest.raises(ReplicationError):
        events.append(late[0], creator_id=1)
    assert events.get_stats([near])[near].views == 3
    master.restart()  # comes back as a replica of the promoted node, and syncs
    master.wait_until_synced(replica=True)
    # Retrying everything sent: acknowledged events are duplicates, the rest count once.
    assert [patient.append(event, creator_id=1) for event in sent] == [False] * 4 + [True] * 2
    assert patient.get_stats([near])[near].views == 3
    assert patient.get_stats([far])[far].views == 3
    assert [patient.append(event, creator_id=1) for event in sent] == [False] * len(sent)
    credit = 6 * affinity_credit(EngagementKind.WATCH, 1.0)
    assert patient.get_affinities(user, [1]) == {1: pytest.approx(affinity(credit, credit))}
    client.close()


@pytest.mark.integration
def test_appends_that_wait_follow_a_moved_slot(
    replicated_cluster: RedisClusterServer,
) -> None:
    config = RedisConfig(
        url=replicated_cluster.url,
        cluster=True,
        prefix="moves",
        socket_timeout_seconds=2.0,
        connect_timeout_seconds=2.0,
        min_replicas_acked=1,
        replication_timeout_seconds=1.5,
    )
    client = connect(config)
    events = RedisEventStore(client, config)
    user, video = 8, 3
    keys = KeyLayout(config.prefix)
    slot = _slot(keys.affinity(user))
    assert events.append(make_event("share", user_id=user, video_id=video), creator_id=4)
    source = replicated_cluster.node_serving(slot)
    target = next(node for node in replicated_cluster.master_nodes() if node is not source)
    replicated_cluster.begin_slot_migration(slot, target)
    replicated_cluster.move_slot_keys(slot, source, target)
    # The user's keys are on the target, the slot still the source's: ASK.
    second = make_event("share", user_id=user, video_id=video)
    with pytest.raises(StoreError):
        # Creating a key in a half-moved slot is refused with TRYAGAIN until it is assigned.
        events.append(second, creator_id=4)
    replicated_cluster.assign_slot(slot, target)
    # The client's slot table is stale: MOVED, followed, and the write replicated there.
    assert events.append(second, creator_id=4) is True
    assert events.append(second, creator_id=4) is False
    assert events.get_stats([video])[video].shares == 2
    client.close()
