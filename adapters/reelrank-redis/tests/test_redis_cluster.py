"""Redis Cluster specifics: the factory's cluster client and its call bounds, one slot per
script, event recording split in two halves, a slot migration in the middle of a
workload, and a master failover (what survives and what may be lost)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.retry import Retry
from reelrank_redis import (
    RedisClient,
    RedisConfig,
    RedisEventStore,
    RedisFeedCache,
    RedisSeenStore,
    client_bounds_calls,
    connect,
)
from reelrank_redis._keys import BUCKETS, KeyLayout
from reelrank_redis.testing import RedisClusterServer, find_redis_server

from reelrank import (
    EngagementKind,
    PageRequest,
    StoreError,
    StoreTimeoutError,
    affinity,
    affinity_credit,
)
from reelrank.testing.factories import EPOCH, make_event, make_snapshot

_ids = st.integers(min_value=1, max_value=2**63 - 1)
_SECOND = timedelta(seconds=1)


def _slot(key: str) -> int:
    return key_slot(key.encode())


# -- the key layout (no server) -------------------------------------------------------------


@given(
    user_id=_ids,
    video_id=_ids,
    event_id=st.uuids().map(str),
    variant=st.sampled_from([None, "a", "treatment", "page-0123456789abcdef0123456789abcdef"]),
)
def test_each_scripts_keys_hash_to_one_slot(
    user_id: int, video_id: int, event_id: str, variant: str | None
) -> None:
    keys = KeyLayout("app")
    user_keys = [
        keys.feed(user_id, variant),
        keys.feed_variants(user_id),
        keys.seen(user_id),
        keys.affinity(user_id),
        keys.event_credited(user_id, event_id),
    ]
    video_keys = [
        keys.event_counted(video_id, event_id),
        keys.video_counters(video_id),
        keys.likers(video_id),
        keys.popular(keys.bucket_of(video_id)),
    ]
    assert len({_slot(key) for key in user_keys}) == 1
    assert len({_slot(key) for key in video_keys}) == 1


@given(
    kind=st.sampled_from(["sound", "hashtag"]),
    window=st.floats(min_value=1.0, max_value=168.0),
)
def test_a_trending_snapshot_and_its_lease_share_a_slot(kind: str, window: float) -> None:
    keys = KeyLayout("app")
    assert _slot(keys.trending(kind, window)) == _slot(keys.trending_lease(kind, window))
    assert keys.trending(kind, 24) == keys.trending(kind, 24.0)


def test_the_buckets_spread_over_every_master_of_a_three_way_split() -> None:
    keys = KeyLayout("app")
    slots = {_slot(keys.popular(bucket)) for bucket in range(BUCKETS)}
    assert len(slots) == BUCKETS
    # redis-cli --cluster create splits the 16,384 slots at 5,461 and 10,923.
    thirds = [
        sum(1 for slot in slots if low <= slot < high)
        for low, high in [(0, 5_461), (5_461, 10_923), (10_923, 16_384)]
    ]
    assert min(thirds) >= BUCKETS // 6


def _record_script_keys(client: Any, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []
    original = client.evalsha

    def recording(sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        calls.append((sha, keys_and_args[:numkeys]))
        return original(sha, numkeys, *keys_and_args)

    monkeypatch.setattr(client, "evalsha", recording)
    return calls


@pytest.mark.integration
def test_every_script_call_declares_keys_of_one_slot(
    redis_client: redis.Redis, redis_config: RedisConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _record_script_keys(redis_client, monkeypatch)
    cache = RedisFeedCache(redis_client, redis_config)
    seen = RedisSeenStore(redis_client, redis_config)
    events = RedisEventStore(redis_client, redis_config)
    for variant in (None, "a", "b"):
        cache.put(make_snapshot(4, variant=variant), ttl_seconds=60)
    assert cache.invalidate_user(4) == 3
    assert seen.take_unseen(4, [1, 2, 3], limit=2, since=EPOCH, at=EPOCH) == [1, 2]
    page = PageRequest(
        record_key=(4, "page-0123"),
        snapshot=make_snapshot(4, [1, 2, 3, 5]),
        start=0,
        limit=2,
        since=EPOCH,
        at=EPOCH,
        ttl_seconds=60,
        pin="snap",
        end_tag="end",
    )
    assert seen.take_page(cache, page).rows == (2, 3)
    assert seen.take_page(cache, page).recalled is not None
    for kind in ("watch", "like", "unlike", "share", "comment"):
        assert events.append(make_event(kind, user_id=4, video_id=77), creator_id=9)
    # invalidate_user, take_unseen, take_page and the two halves of an event
    assert len({sha for sha, _ in calls}) == 5
    # On a single server, as here, take_page also declares the feed cache's statistics
    # bucket to count the record's lookup; on a cluster it leaves it out (a test on the
    # cluster itself runs it), so the rest must be one slot.
    stats_bucket = KeyLayout(redis_config.prefix).feed_stats(4 % BUCKETS)
    for _, keys in calls:
        assert len({_slot(key) for key in keys if key != stats_bucket}) == 1, keys


# -- the factory's cluster client -------------------------------------------------------------


@pytest.mark.integration
def test_the_factory_builds_a_cluster_client_that_bounds_its_calls(
    cluster_config: RedisConfig, cluster_client: RedisClient
) -> None:
    assert isinstance(cluster_client, RedisCluster)
    assert client_bounds_calls(cluster_client, cluster_config)
    for store in (
        RedisFeedCache(cluster_client, cluster_config),
        RedisSeenStore(cluster_client, cluster_config),
        RedisEventStore(cluster_client, cluster_config),
    ):
        assert store.bounds_own_calls is True
    assert not client_bounds_calls(cluster_client, RedisConfig(socket_timeout_seconds=0.1))
    # redis-py's own cluster client retries after a timeout: not bounded.
    own = RedisCluster.from_url(
        cluster_config.url.get_secret_value(),
        socket_timeout=0.2,
        socket_connect_timeout=0.2,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        assert not client_bounds_calls(own, cluster_config)
    finally:
        own.close()


@pytest.mark.integration
def test_a_paused_master_fails_a_call_after_one_timeout_and_it_recovers(
    redis_cluster: RedisClusterServer, cluster_config: RedisConfig
) -> None:
    config = RedisConfig(**{**cluster_config.model_dump(), "socket_timeout_seconds": 0.5})
    client = connect(config)
    seen = RedisSeenStore(client, config)
    seen.mark_seen(3, [1], EPOCH)
    master = redis_cluster.node_serving(_slot(KeyLayout(config.prefix).seen(3)))
    master.pause()
    try:
        started = time.monotonic()
        with pytest.raises(StoreTimeoutError):
            seen.seen_among(3, [1], since=EPOCH)
        elapsed = time.monotonic() - started
    finally:
        master.resume()
    # One timeout; a retried one would take at least 1.0 s.
    assert 0.5 <= elapsed < 0.95
    assert seen.seen_among(3, [1], since=EPOCH) == {1}
    client.close()


# -- the two halves of an event -----------------------------------------------------------


@pytest.mark.integration
def test_a_crash_between_the_halves_is_repaired_by_the_retry_and_counted_once(
    any_client: RedisClient, any_config: RedisConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = RedisEventStore(any_client, any_config)
    original = any_client.evalsha
    failures = iter([True])

    def dies_before_the_user_half(sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        if ":credited:" in str(keys_and_args[0]) and next(failures, False):
            raise redis.exceptions.ConnectionError("connection lost")
        return original(sha, numkeys, *keys_and_args)

    monkeypatch.setattr(any_client, "evalsha", dies_before_the_user_half)
    like = make_event("like", user_id=6, video_id=40)
    with pytest.raises(StoreError):
        events.append(like, creator_id=2)
    # The video half was applied, the user's credit not yet.
    assert events.get_stats([40])[40].likes == 1
    assert events.get_affinities(6, [2]) == {2: 0.0}
    assert events.append(like, creator_id=2) is True
    assert events.append(like, creator_id=2) is False
    again = make_event("like", user_id=6, video_id=40)  # a second like earns nothing
    assert events.append(again, creator_id=2) is True
    assert events.get_stats([40])[40].likes == 1
    credit = affinity_credit(EngagementKind.LIKE, None)
    assert events.get_affinities(6, [2]) == {2: pytest.approx(affinity(credit, credit))}


# -- a slot migration ---------------------------------------------------------------------


@pytest.mark.integration
def test_a_slot_migration_in_the_middle_of_a_workload_loses_nothing(
    redis_cluster: RedisClusterServer, cluster_config: RedisConfig, cluster_client: RedisClient
) -> None:
    cache = RedisFeedCache(cluster_client, cluster_config)
    seen = RedisSeenStore(cluster_client, cluster_config)
    events = RedisEventStore(cluster_client, cluster_config)
    user = 11
    slot = _slot(KeyLayout(cluster_config.prefix).seen(user))
    snapshot = make_snapshot(user, [5, 6, 7])
    seen.mark_seen(user, [1, 2], EPOCH)
    cache.put(snapshot, ttl_seconds=60)
    assert events.append(make_event("watch", user_id=user, video_id=3), creator_id=7)
    affinity_before = events.get_affinities(user, [7])
    source = redis_cluster.node_serving(slot)
    target = next(node for node in redis_cluster.master_nodes() if node is not source)

    redis_cluster.begin_slot_migration(slot, target)
    # The keys are still on the source, which serves them.
    assert seen.take_unseen(user, [1, 2, 3, 4], limit=1, since=EPOCH, at=EPOCH + _SECOND) == [3]

    redis_cluster.move_slot_keys(slot, source, target)
    # The keys are on the target, the slot still the source's: ASK redirects.
    assert seen.take_unseen(user, [1, 2, 3, 4], limit=1, since=EPOCH, at=EPOCH + 2 * _SECOND) == [4]
    assert cache.get(user) == snapshot
    assert events.get_affinities(user, [7]) == affinity_before
    # A script that would create a key in the slot now gets TRYAGAIN (some of its keys
    # are not on the target), which redis-py retries for about half a second before
    # giving up: the share's user half fails, its video half (another slot) is applied.
    share = make_event("share", user_id=user, video_id=3)
    with pytest.raises(StoreError, match="TTL exhausted"):
        events.append(share, creator_id=7)
    assert events.get_stats([3])[3].shares == 1

    redis_cluster.assign_slot(slot, target)
    # The client's slot table is stale: MOVED redirects.
    assert redis_cluster.node_serving(slot) is target
    assert seen.recently_seen(user, since=EPOCH, limit=10) == [4, 3, 2, 1]
    # The retry completes the share; the next one is a duplicate.
    assert events.append(share, creator_id=7) is True
    assert events.append(share, creator_id=7) is False
    assert cache.invalidate_user(user) == 1
    credit = affinity_credit(EngagementKind.WATCH, 1.0) + affinity_credit(
        EngagementKind.SHARE, None
    )
    assert events.get_affinities(user, [7]) == {7: pytest.approx(affinity(credit, credit))}
    assert events.get_stats([3])[3].shares == 1


# -- a failover ---------------------------------------------------------------------------


@pytest.fixture
def replicated_cluster(tmp_path: Path) -> Iterator[RedisClusterServer]:
    """Three masters with a replica each, of the test's own."""
    if find_redis_server() is None:
        pytest.skip("redis-server is not installed (scripts/test.sh installs it)")
    with RedisClusterServer(tmp_path / "cluster", replicas=1) as cluster:
        yield cluster


@pytest.mark.integration
def test_a_failover_keeps_replicated_writes_and_loses_only_unreplicated_ones(
    replicated_cluster: RedisClusterServer,
) -> None:
    """Replication is asynchronous, so what a master acknowledged but had not yet sent
    to its replica is lost with it: seen marks (the video may be shown again) and event
    counts alike. Nothing is counted twice: an event's id is recorded with its counts,
    so a lost event is forgotten entirely and its redelivery counts it once."""
    config = RedisConfig(
        url=replicated_cluster.url,
        cluster=True,
        prefix="failover",
        socket_timeout_seconds=2.0,
        connect_timeout_seconds=2.0,
    )
    client = connect(config)
    seen = RedisSeenStore(client, config)
    events = RedisEventStore(client, config)
    cache = RedisFeedCache(client, config)
    keys = KeyLayout(config.prefix)
    user = 5
    slot = _slot(keys.seen(user))
    master = replicated_cluster.node_serving(slot)
    # A video whose counters live on the same master as the user's keys.
    video = next(
        video_id
        for video_id in range(1, BUCKETS + 1)
        if replicated_cluster.node_serving(_slot(keys.video_counters(video_id))) is master
    )
    seen.mark_seen(user, [1, 2, 3], EPOCH)
    delivered = [make_event("watch", user_id=user, video_id=video) for _ in range(3)]
    assert all(events.append(event, creator_id=1) for event in delivered)
    replicated_cluster.wait_until_replicated(master)

    # Writes the master acknowledges after its replica link broke.
    replica = replicated_cluster.replicas_of(master)[0]
    replica.pause()
    admin = master.client()
    admin.client_kill_filter(_type="replica")
    admin.close()
    seen.mark_seen(user, [4], EPOCH)
    late = make_event("watch", user_id=user, video_id=video)
    assert events.append(late, creator_id=1)
    master.kill()
    replica.resume()
    replicated_cluster.wait_for_failover(slot, master)

    # The same stores, on the same client, carry on with the promoted replica.
    assert seen.seen_among(user, [1, 2, 3, 4], since=EPOCH) == {1, 2, 3}
    assert events.get_stats([video])[video].views == 3
    assert [events.append(event, creator_id=1) for event in delivered] == [False] * 3
    assert events.append(late, creator_id=1) is True
    assert events.get_stats([video])[video].views == 4
    assert seen.take_unseen(user, [3, 4, 5], limit=2, since=EPOCH, at=EPOCH) == [4, 5]
    cache.put(make_snapshot(user), ttl_seconds=60)
    assert cache.get(user) == make_snapshot(user)
    client.close()


def test_bulk_reads_of_users_on_every_master_equal_the_reads_of_each_user(
    cluster_client: RedisClient, cluster_config: RedisConfig
) -> None:
    events = RedisEventStore(cluster_client, cluster_config)
    seen = RedisSeenStore(cluster_client, cluster_config)
    events.users_per_pipeline = seen.users_per_pipeline = 7  # six pipelines of 40 users
    users = list(range(1, 41))
    for user_id in users:
        seen.mark_seen(user_id, [user_id, user_id + 1], EPOCH - timedelta(hours=user_id % 5))
        watch = make_event("watch", user_id=user_id, video_id=user_id, completion=0.5)
        events.append(watch, creator_id=1 + user_id % 3)
    assert isinstance(cluster_client, RedisCluster)
    layout = KeyLayout(cluster_config.prefix)
    masters = {cluster_client.get_node_from_key(layout.seen(uid)).name for uid in users}
    assert len(masters) == 3
    since = EPOCH - timedelta(days=1)
    assert seen.recently_seen_many(users, since=since, limit=5) == {
        uid: seen.recently_seen(uid, since=since, limit=5) for uid in users
    }
    creators = {uid: [1, 2, 3] for uid in users}
    affinities = events.get_affinities_many(creators)
    assert affinities == {uid: events.get_affinities(uid, [1, 2, 3]) for uid in users}
    credit = affinity_credit(EngagementKind.WATCH, 0.5)
    assert all(affinities[uid][1 + uid % 3] == affinity(credit, credit) > 0 for uid in users)
