"""RedisSeenStore.take_unseen against the reference (a lookup, then marking what it took,
on the in-memory store), and which clients let the stores be called inline."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.backoff import NoBackoff
from redis.retry import Retry
from reelrank_redis import (
    RedisConfig,
    RedisEventStore,
    RedisFeedCache,
    RedisSeenStore,
    client_bounds_calls,
    connect,
)

from reelrank import AtomicSeenStore, InMemorySeenStore, InvalidInputError
from reelrank.testing.factories import EPOCH

pytestmark = pytest.mark.integration

_users = iter(range(1, 10**9))


def _reference_take(
    store: InMemorySeenStore, user: int, ids: list[int], limit: int, since_days: int
) -> list[int]:
    since = EPOCH - timedelta(days=since_days)
    seen = store.seen_among(user, ids, since=since)
    taken = [video_id for video_id in dict.fromkeys(ids) if video_id not in seen][:limit]
    store.mark_seen(user, taken, EPOCH)
    return taken


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    history=st.lists(st.tuples(st.integers(1, 40), st.integers(0, 10)), max_size=30),
    ids=st.lists(st.integers(1, 40), max_size=40),
    limit=st.integers(0, 15),
    since_days=st.integers(0, 10),
)
def test_take_unseen_matches_a_lookup_followed_by_a_write(
    redis_client: redis.Redis,
    redis_config: RedisConfig,
    history: list[tuple[int, int]],
    ids: list[int],
    limit: int,
    since_days: int,
) -> None:
    user = next(_users)
    store = RedisSeenStore(redis_client, redis_config)
    reference = InMemorySeenStore(retention_seconds=None)
    for video_id, days_ago in history:
        at = EPOCH - timedelta(days=days_ago)
        store.mark_seen(user, [video_id], at)
        reference.mark_seen(user, [video_id], at)
    since = EPOCH - timedelta(days=since_days)
    taken = store.take_unseen(user, ids, limit=limit, since=since, at=EPOCH)
    assert taken == _reference_take(reference, user, ids, limit, since_days)
    everything = list(range(1, 41))
    for days in (0, 5, 11):
        when = EPOCH - timedelta(days=days)
        assert store.seen_among(user, everything, since=when) == reference.seen_among(
            user, everything, since=when
        )


def test_take_unseen_is_an_atomic_seen_store_and_checks_its_input(
    redis_client: redis.Redis, redis_config: RedisConfig
) -> None:
    store = RedisSeenStore(redis_client, redis_config)
    assert isinstance(store, AtomicSeenStore)
    with pytest.raises(InvalidInputError) as info:
        store.take_unseen(1, [1, 0], limit=1, since=EPOCH, at=EPOCH)
    assert info.value.field == "video_ids"
    with pytest.raises(InvalidInputError):
        store.take_unseen(1, [1], limit=-1, since=EPOCH, at=EPOCH)
    assert store.seen_among(1, [1], since=EPOCH - timedelta(days=1)) == set()


def test_take_unseen_walks_past_the_script_slice_and_trims_like_mark_seen(
    redis_client: redis.Redis, redis_config: RedisConfig
) -> None:
    store = RedisSeenStore(redis_client, redis_config.model_copy(update={"seen_max_items": 1_500}))
    store.mark_seen(1, list(range(1, 1_201)), EPOCH - timedelta(hours=1))
    taken = store.take_unseen(
        1, list(range(1, 2_001)), limit=500, since=EPOCH - timedelta(days=1), at=EPOCH
    )
    assert taken == list(range(1_201, 1_701))
    # 1,700 marked, 1,500 kept: the oldest 200 went.
    assert redis_client.zcard(f"{redis_config.prefix}:seen:v2:{{u1}}") == 1_500
    assert store.recently_seen(1, since=EPOCH, limit=1) == [1_700]


def test_concurrent_takes_never_hand_out_the_same_video(
    redis_client: redis.Redis, redis_config: RedisConfig
) -> None:
    store = RedisSeenStore(redis_client, redis_config)
    ids = list(range(1, 201))
    taken: list[list[int]] = []
    start = threading.Barrier(4)

    def take() -> None:
        start.wait(timeout=10)
        for _ in range(10):
            taken.append(
                store.take_unseen(1, ids, limit=5, since=EPOCH - timedelta(days=1), at=EPOCH)
            )

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    handed_out = [video_id for batch in taken for video_id in batch]
    assert sorted(handed_out) == ids


# -- which clients bound their own calls ------------------------------------------------


def test_stores_on_the_factory_client_bound_their_own_calls(
    redis_client: redis.Redis, redis_config: RedisConfig
) -> None:
    assert client_bounds_calls(redis_client, redis_config)
    for store in (
        RedisFeedCache(redis_client, redis_config),
        RedisSeenStore(redis_client, redis_config),
        RedisEventStore(redis_client, redis_config),
    ):
        assert store.bounds_own_calls is True


@pytest.mark.parametrize(
    "options",
    [
        {},  # redis-py's defaults: 5 s timeouts, retries on timeouts
        {"socket_timeout": None, "retry": Retry(NoBackoff(), 0)},
        {"socket_timeout": 0.2, "socket_connect_timeout": 5.0, "retry": Retry(NoBackoff(), 0)},
        {"socket_timeout": 0.2, "socket_connect_timeout": 0.2, "retry": Retry(NoBackoff(), 3)},
    ],
)
def test_stores_on_a_looser_client_do_not(
    redis_config: RedisConfig, options: dict[str, object]
) -> None:
    config = RedisConfig(
        url=redis_config.url, socket_timeout_seconds=0.2, connect_timeout_seconds=0.2
    )
    client = redis.Redis.from_url(config.url.get_secret_value(), **options)  # type: ignore[arg-type]
    try:
        assert not client_bounds_calls(client, config)
        assert RedisSeenStore(client, config).bounds_own_calls is False
    finally:
        client.close()


def test_the_factory_client_bounds_calls_to_its_own_config() -> None:
    config = RedisConfig(socket_timeout_seconds=0.5)
    client = connect(config)
    try:
        assert client_bounds_calls(client, config)
        assert not client_bounds_calls(client, RedisConfig(socket_timeout_seconds=0.1))
    finally:
        client.close()
