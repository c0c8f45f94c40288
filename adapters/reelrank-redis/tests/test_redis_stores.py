"""Redis-specific behaviour beyond the contracts: key layout, shared statistics,
namespacing, trimming, expiry and idempotency keys."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import timedelta
from typing import Any

import pytest
import redis
from reelrank_redis import (
    RedisClient,
    RedisConfig,
    RedisEventStore,
    RedisFeedCache,
    RedisSeenStore,
    connect,
)
from reelrank_redis._codec import encode_snapshot
from reelrank_redis._keys import BUCKETS, KeyLayout, id_member

from reelrank import ConfigError, StoreError
from reelrank.testing.factories import EPOCH, make_event, make_snapshot

pytestmark = pytest.mark.integration


def _config(base: RedisConfig, **changes: object) -> RedisConfig:
    return RedisConfig(**{**base.model_dump(), **changes})


# -- config ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("prefix", "has:colon"), ("prefix", ""), ("socket_timeout_seconds", 0), ("seen_max_items", 0)],
)
def test_bad_config_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        RedisConfig(**{field: value})
    assert info.value.field == field


def test_unknown_config_fields_are_refused() -> None:
    with pytest.raises(ConfigError):
        RedisConfig(socket_timeout=1.0)  # type: ignore[call-arg]


def test_the_password_in_the_url_stays_out_of_reprs_and_errors() -> None:
    config = RedisConfig(url="redis://:hunter2@cache-host:6379/0")
    assert "hunter2" not in repr(config)
    assert "hunter2" not in config.model_dump_json()
    assert config.url.get_secret_value() == "redis://:hunter2@cache-host:6379/0"
    with pytest.raises(ConfigError) as info:
        RedisConfig(url="redis://:hunter2@" + "h" * 2048)
    assert info.value.field == "url"
    assert "hunter2" not in str(info.value)


def test_defaults_fail_fast_on_the_request_path(redis_config: RedisConfig) -> None:
    defaults = RedisConfig(url=redis_config.url)
    client = connect(defaults)
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == 0.2
    retry = kwargs["retry"]
    assert retry.get_retries() == 1
    # A reset connection is retried, a timeout never (it would double the wait); redis-py
    # offers no public accessor for the retried error types.
    assert retry._supported_errors == (redis.exceptions.ConnectionError,)
    client.close()


def test_factory_applies_the_short_timeouts(redis_config: RedisConfig) -> None:
    client = connect(_config(redis_config, socket_timeout_seconds=0.15, connection_retries=0))
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 0.15
    assert kwargs["socket_connect_timeout"] == redis_config.connect_timeout_seconds
    assert kwargs["retry"].get_retries() == 0
    client.close()


# -- feed cache -----------------------------------------------------------------------


def test_snapshots_live_under_versioned_keys_with_a_ttl(
    redis_client: redis.Redis, redis_config: RedisConfig
) -> None:
    cache = RedisFeedCache(redis_client, redis_config)
    snapshot = make_snapshot(42, [1, 2, 3], variant="treatment")
    cache.put(snapshot, ttl_seconds=30)
    key = f"{redis_config.prefix}:feed:v2:{{u42}}:treatment"
    assert redis_client.get(key) == encode_snapshot(snapshot)
    assert 29_000 < redis_client.pttl(key) <= 30_000
    cache.put(make_snapshot(42, [1]), ttl_seconds=30)
    assert redis_client.exists(f"{redis_config.prefix}:feed:v2:{{u42}}:-") == 1


def test_unreadable_bytes_raise_a_store_error(
    redis_client: redis.Redis, redis_config: RedisConfig
) -> None:
    redis_client.set(f"{redis_config.prefix}:feed:v2:{{u7}}:-", b"not a snapshot")
    cache = RedisFeedCache(redis_client, redis_config)
    with pytest.raises(StoreError) as info:
        cache.get(7)
    assert info.value.store == "cache"
    # An unreadable snapshot is neither a hit nor a miss.
    assert (cache.stats().hits, cache.stats().misses) == (0, 0)


def _count_sends(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Record every request redis-py writes to a socket: one per command, one per
    pipeline (a pipeline's commands go out packed together, then its replies are read)."""
    sent: list[bytes] = []
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self: Any, command: Any, check_health: bool = True) -> None:
        sent.append(b"".join(command) if isinstance(command, list) else bytes(command))
        original(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
    return sent


def test_a_cache_lookup_is_one_round_trip_and_a_miss_two_on_a_cluster(
    any_client: RedisClient, any_config: RedisConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = RedisFeedCache(any_client, any_config)
    snapshot = make_snapshot(4)
    cache.put(snapshot, ttl_seconds=60)
    cache.get(5)  # connections (and the lookup script) are in place before counting
    cache.reset_stats()
    sent = _count_sends(monkeypatch)
    assert cache.get(4) == snapshot
    hit_sends = len(sent)
    assert cache.get(5) is None
    miss_sends = len(sent) - hit_sends
    monkeypatch.undo()
    # On one server a script reads and counts, hit or miss, in one request; a cluster
    # pipeline sends one request to each node holding a key (both are written before
    # either reply is read, so the two nodes answer in parallel).
    single = isinstance(any_client, redis.Redis)
    assert hit_sends == (1 if single else _nodes(any_client, 4))
    # On a cluster a miss then turns its counted hit into a miss, on the bucket's node.
    assert miss_sends == (1 if single else _nodes(any_client, 5) + 1)
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (1, 1)


def _nodes(client: Any, user_id: int) -> int:
    """How many nodes a lookup of ``user_id`` talks to: its snapshot's and its bucket's
    (the hash tags, not the prefix, pick the slots)."""
    layout = KeyLayout("any")
    keys = [layout.feed(user_id, None), layout.feed_stats(user_id % BUCKETS)]
    return len({client.get_node_from_key(key).name for key in keys})


def test_hits_and_misses_add_up_across_processes(
    redis_client: redis.Redis, redis_config: RedisConfig
) -> None:
    cache = RedisFeedCache(redis_client, redis_config)
    cache.put(make_snapshot(1), ttl_seconds=60)
    cache.get(1)
    cache.get(2)
    cache.get_many([(1, None), (3, None), (1, None)])
    # Serialising a config masks its secret URL, so the URL is handed over on its own.
    settings = {**redis_config.model_dump(mode="json"), "url": redis_config.url.get_secret_value()}
    other_process = (
        "from reelrank_redis import RedisConfig, RedisFeedCache, connect\n"
        f"config = RedisConfig.model_validate({settings!r})\n"
        "cache = RedisFeedCache(connect(config), config)\n"
        "cache.get(1); cache.get(1); cache.get(9)\n"
    )
    subprocess.run([sys.executable, "-c", other_process], check=True, timeout=60)
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (4, 3)
    assert stats.hit_ratio == pytest.approx(4 / 7)
    cache.reset_stats()
    assert cache.stats().hit_ratio is None


def test_warming_many_users_pipelines_every_snapshot(
    redis_client: redis.Redis, redis_config: RedisConfig
) -> None:
    cache = RedisFeedCache(redis_client, redis_config)
    snapshots = [make_snapshot(user, [user, user + 1]) for user in range(1, 1_201)]
    cache.put_many(snapshots, ttl_seconds=60)
    got = cache.get_many([(user, None) for user in range(1, 1_301)])
    assert len(got) == 1_200
    assert got[(1_200, None)] == snapshots[-1]
    assert cache.stats().misses == 100


def test_invalidate_user_leaves_other_users_and_stale_index_entries_harmless(
    redis_client: redis.Redis, redis_config: RedisConfig
) -> None:
    cache = RedisFeedCache(redis_client, redis_config)
    cache.put(make_snapshot(1, variant="a"), ttl_seconds=60)
    cache.put(make_snapshot(1, variant="b"), ttl_seconds=60)
    cache.put(make_snapshot(10, variant="a"), ttl_seconds=60)
    redis_client.delete(f"{redis_config.prefix}:feed:v2:{{u1}}:b")
    assert cache.invalidate_user(1) == 1
    assert cache.get(10, "a") is not None
    assert redis_client.exists(f"{redis_config.prefix}:feedvariants:v2:{{u1}}") == 0


# -- namespacing ------------------------------------------------------------------------


def test_two_prefixes_share_a_redis_without_interference(
    redis_client: redis.Redis, redis_config: RedisConfig
) -> None:
    first = redis_config
    second = _config(redis_config, prefix=f"{redis_config.prefix}other")
    cache_a, cache_b = RedisFeedCache(redis_client, first), RedisFeedCache(redis_client, second)
    seen_a, seen_b = RedisSeenStore(redis_client, first), RedisSeenStore(redis_client, second)
    events_a = RedisEventStore(redis_client, first)
    events_b = RedisEventStore(redis_client, second)

    snapshot = make_snapshot(1, [1, 2])
    cache_a.put(snapshot, ttl_seconds=60)
    seen_a.mark_seen(1, [5], EPOCH)
    event = make_event("watch", completion=0.5)
    assert events_a.append(event, creator_id=1)

    assert cache_b.get(1) is None
    assert cache_b.invalidate_user(1) == 0
    assert seen_b.seen_among(1, [5], since=EPOCH - timedelta(days=1)) == set()
    assert events_b.get_stats([1])[1].views == 0
    assert events_b.popular_video_ids(limit=5) == []
    # The same event id is new to the other namespace.
    assert events_b.append(event, creator_id=1)

    assert cache_a.get(1) == snapshot
    assert seen_a.seen_among(1, [5], since=EPOCH - timedelta(days=1)) == {5}
    assert events_a.get_stats([1])[1].views == 1
    assert (cache_a.stats().hits, cache_b.stats().hits) == (1, 0)
    assert all(
        key.startswith((first.prefix + ":").encode()) or key.startswith(second.prefix.encode())
        for key in redis_client.keys("*")
    )


# -- seen store ---------------------------------------------------------------------------


def test_seen_sets_are_trimmed_to_the_window_and_expire(
    redis_client: redis.Redis, redis_config: RedisConfig
) -> None:
    config = _config(redis_config, seen_window_seconds=86_400)
    seen = RedisSeenStore(redis_client, config)
    seen.mark_seen(1, [1, 2], EPOCH - timedelta(days=3))
    seen.mark_seen(1, [3], EPOCH - timedelta(hours=12))
    seen.mark_seen(1, [4], EPOCH)
    key = f"{config.prefix}:seen:v2:{{u1}}"
    assert redis_client.zrange(key, 0, -1) == [id_member(3), id_member(4)]
    assert 86_390 < redis_client.ttl(key) <= 86_400


def test_seen_sets_keep_only_the_newest_items(
    redis_client: redis.Redis, redis_config: RedisConfig
) -> None:
    seen = RedisSeenStore(redis_client, _config(redis_config, seen_max_items=100))
    for batch in range(5):
        ids = list(range(batch * 50 + 1, batch * 50 + 51))
        seen.mark_seen(1, ids, EPOCH + timedelta(minutes=batch))
    since = EPOCH - timedelta(days=1)
    assert redis_client.zcard(f"{redis_config.prefix}:seen:v2:{{u1}}") == 100
    assert seen.seen_among(1, list(range(1, 251)), since=since) == set(range(151, 251))


def test_bulk_membership_handles_a_large_candidate_batch(
    redis_client: redis.Redis, redis_config: RedisConfig
) -> None:
    seen = RedisSeenStore(redis_client, redis_config)
    seen.mark_seen(1, list(range(1, 2_001, 2)), EPOCH)
    candidates = list(range(1, 3_001))
    assert seen.seen_among(1, candidates, since=EPOCH) == set(range(1, 2_001, 2))


# -- event store ----------------------------------------------------------------------------


def test_event_ids_are_remembered_with_an_expiry(
    redis_client: redis.Redis, redis_config: RedisConfig
) -> None:
    config = _config(redis_config, idempotency_ttl_seconds=3_600)
    events = RedisEventStore(redis_client, config)
    event = make_event("like")
    assert events.append(event, creator_id=1)
    # Recorded twice: next to the video's counters (in bucket video id mod 32) and
    # next to the user's affinity.
    for key in (
        f"{config.prefix}:event:v2:{{b{event.video_id % 32}}}:{event.event_id}",
        f"{config.prefix}:credited:v2:{{u{event.user_id}}}:{event.event_id}",
    ):
        assert 3_590 < redis_client.ttl(key) <= 3_600


def test_counters_expire_when_configured(
    redis_client: redis.Redis, redis_config: RedisConfig
) -> None:
    config = _config(redis_config, counters_ttl_seconds=600)
    events = RedisEventStore(redis_client, config)
    events.append(make_event("watch", completion=0.5, video_id=3), creator_id=1)
    events.append(make_event("like", video_id=3), creator_id=1)
    user_id = make_event("like").user_id
    for key in ("video:v2:{b3}:3", "likers:v2:{b3}:3", f"affinity:v2:{{u{user_id}}}"):
        assert 590 < redis_client.ttl(f"{config.prefix}:{key}") <= 600
    kept = RedisEventStore(redis_client, _config(redis_config, prefix="keep"))
    kept.append(make_event("watch", completion=0.5, video_id=3), creator_id=1)
    assert redis_client.ttl("keep:video:v2:{b3}:3") == -1


def test_concurrent_redelivery_is_applied_once(
    redis_config: RedisConfig, redis_client: redis.Redis
) -> None:
    events = RedisEventStore(redis_client, redis_config)
    deliveries = [make_event("watch", completion=1.0, video_id=8) for _ in range(20)]
    results: list[bool] = []
    lock = threading.Lock()

    def deliver_all() -> None:
        for event in deliveries:
            applied = events.append(event, creator_id=1)
            with lock:
                results.append(applied)

    threads = [threading.Thread(target=deliver_all) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 20
    assert events.get_stats([8])[8].views == 20
