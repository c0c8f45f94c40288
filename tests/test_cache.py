from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reelrank import FeedCache, FeedSnapshot, InvalidInputError, StoreError
from reelrank.protocols import FeedKey
from reelrank.stores import CacheStats, InMemoryFeedCache, LRUFeedCache, TieredFeedCache
from reelrank.testing import FeedCacheContract, ManualClock

T0 = datetime(2026, 11, 1, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def snap(user: int, variant: str | None = None, ids: Sequence[int] = (1, 2)) -> FeedSnapshot:
    return FeedSnapshot(
        user_id=user,
        variant=variant,
        video_ids=tuple(ids),
        scores=tuple(0.5 for _ in ids),
        contributions=tuple((0.1, 0.1, 0.1, 0.1, 0.1) for _ in ids),
        created_at=T0,
    )


class BrokenCache:
    """A level whose every call fails like an unreachable server."""

    def __init__(self) -> None:
        self.calls = 0

    def _fail(self) -> StoreError:
        self.calls += 1
        return StoreError("cache", "connection refused")

    def get(self, user_id: int, variant: str | None = None) -> FeedSnapshot | None:
        raise self._fail()

    def get_many(self, keys: Sequence[FeedKey]) -> dict[FeedKey, FeedSnapshot]:
        raise self._fail()

    def put(self, snapshot: FeedSnapshot, *, ttl_seconds: float) -> None:
        raise self._fail()

    def put_many(self, snapshots: Sequence[FeedSnapshot], *, ttl_seconds: float) -> None:
        raise self._fail()

    def delete(self, user_id: int, variant: str | None = None) -> bool:
        raise self._fail()

    def invalidate_user(self, user_id: int) -> int:
        raise self._fail()


def test_levels_satisfy_the_protocol() -> None:
    assert isinstance(LRUFeedCache(), FeedCache)
    assert isinstance(TieredFeedCache(LRUFeedCache(), InMemoryFeedCache()), FeedCache)


def test_lru_expires_entries_after_their_ttl() -> None:
    clock = FakeClock()
    cache = LRUFeedCache(clock=clock)
    cache.put(snap(1), ttl_seconds=10)
    clock.now = 9.9
    assert cache.get(1) == snap(1)
    clock.now = 10.0
    assert cache.get(1) is None
    assert len(cache) == 0


def test_lru_evicts_the_least_recently_used_entry() -> None:
    cache = LRUFeedCache(max_entries=2)
    cache.put(snap(1), ttl_seconds=60)
    cache.put(snap(2), ttl_seconds=60)
    assert cache.get(1) is not None  # 1 is now more recent than 2
    cache.put(snap(3), ttl_seconds=60)
    assert cache.get(2) is None
    assert cache.get(1) is not None
    assert cache.get(3) is not None
    assert cache.evictions == 1


def test_lru_counts_hits_and_misses() -> None:
    cache = LRUFeedCache()
    cache.put(snap(1), ttl_seconds=60)
    cache.get(1)
    cache.get(2)
    cache.get_many([(1, None), (2, None), (3, "b")])
    assert cache.stats == CacheStats(hits=2, misses=3)
    assert cache.stats.hit_rate == pytest.approx(0.4)
    assert CacheStats().hit_rate == 0.0


def test_variants_are_separate_keys_and_invalidate_user_drops_all() -> None:
    cache = LRUFeedCache()
    cache.put(snap(1, None), ttl_seconds=60)
    cache.put(snap(1, "b", ids=(3,)), ttl_seconds=60)
    cache.put(snap(2), ttl_seconds=60)
    assert cache.get(1, "b") == snap(1, "b", ids=(3,))
    assert cache.delete(1, "b") is True
    assert cache.delete(1, "b") is False
    cache.put(snap(1, "b"), ttl_seconds=60)
    assert cache.invalidate_user(1) == 2
    assert cache.get(1) is None
    assert cache.get(2) is not None


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf")])
def test_bad_ttl_is_rejected_and_nothing_is_written(ttl: float) -> None:
    cache = LRUFeedCache()
    with pytest.raises(InvalidInputError) as info:
        cache.put(snap(1), ttl_seconds=ttl)
    assert info.value.field == "ttl_seconds"
    assert len(cache) == 0


def test_bad_max_entries_is_rejected() -> None:
    with pytest.raises(InvalidInputError) as info:
        LRUFeedCache(0)
    assert info.value.field == "max_entries"


operations = st.lists(
    st.tuples(
        st.sampled_from(["put", "get", "get_many", "delete", "invalidate", "tick"]),
        st.integers(1, 4),
        st.sampled_from([None, "b"]),
        st.floats(0.5, 20),
    ),
    max_size=50,
)


@given(operations)
def test_lru_behaves_like_the_reference_cache_while_not_full(
    ops: list[tuple[str, int, str | None, float]],
) -> None:
    clock = FakeClock()
    lru = LRUFeedCache(max_entries=100, clock=clock)
    reference = InMemoryFeedCache(clock=clock)
    for op, user, variant, amount in ops:
        if op == "put":
            for cache in (lru, reference):
                cache.put(snap(user, variant, ids=(user, 99)), ttl_seconds=amount)
        elif op == "get":
            assert lru.get(user, variant) == reference.get(user, variant)
        elif op == "get_many":
            keys: list[FeedKey] = [(user, variant), (user + 1, None)]
            assert lru.get_many(keys) == reference.get_many(keys)
        elif op == "delete":
            assert lru.delete(user, variant) == reference.delete(user, variant)
        elif op == "invalidate":
            assert lru.invalidate_user(user) == reference.invalidate_user(user)
        else:
            clock.now += amount


def test_tier_promotes_a_shared_hit_into_the_local_level() -> None:
    local, shared = LRUFeedCache(), InMemoryFeedCache()
    tier = TieredFeedCache(local, shared)
    shared.put(snap(1), ttl_seconds=3600)
    assert tier.get(1) == snap(1)
    assert local.get(1) == snap(1)
    assert tier.get(1) == snap(1)
    local_stats, shared_stats = tier.level_stats
    assert (local_stats.hits, local_stats.misses) == (1, 1)
    assert (shared_stats.hits, shared_stats.misses) == (1, 0)
    assert tier.stats == CacheStats(hits=2, misses=0)


def test_tier_caps_the_local_ttl() -> None:
    clock = FakeClock()
    local, shared = LRUFeedCache(clock=clock), InMemoryFeedCache(clock=clock)
    tier = TieredFeedCache(local, shared, local_ttl_seconds=30)
    tier.put(snap(1), ttl_seconds=3600)
    clock.now = 31
    assert local.get(1) is None
    assert shared.get(1) is not None
    assert tier.get(1) is not None  # served by the shared level and promoted again
    assert local.get(1) is not None


def test_tier_counts_a_miss_at_every_level() -> None:
    tier = TieredFeedCache(LRUFeedCache(), InMemoryFeedCache())
    assert tier.get(5) is None
    assert tier.get_many([(5, None), (6, "b")]) == {}
    assert [s.misses for s in tier.level_stats] == [3, 3]
    assert tier.stats == CacheStats(hits=0, misses=3)


def test_tier_get_many_takes_each_key_from_the_fastest_level() -> None:
    local, shared = LRUFeedCache(), InMemoryFeedCache()
    tier = TieredFeedCache(local, shared)
    local.put(snap(1), ttl_seconds=60)
    shared.put(snap(1, ids=(7,)), ttl_seconds=60)
    shared.put(snap(2), ttl_seconds=60)
    found = tier.get_many([(1, None), (2, None), (3, None)])
    assert found == {(1, None): snap(1), (2, None): snap(2)}
    assert [(s.hits, s.misses) for s in tier.level_stats] == [(1, 2), (1, 1)]


def test_failing_shared_level_surfaces_after_a_local_miss_only() -> None:
    local, broken = LRUFeedCache(), BrokenCache()
    tier = TieredFeedCache(local, broken)
    with pytest.raises(StoreError):
        tier.get(1)
    local.put(snap(1), ttl_seconds=60)
    assert tier.get(1) == snap(1)
    assert broken.calls == 1
    assert tier.level_stats[1] == CacheStats(errors=1)


def test_failing_level_does_not_stop_writes_to_the_others() -> None:
    local, broken = LRUFeedCache(), BrokenCache()
    tier = TieredFeedCache(local, broken)
    with pytest.raises(StoreError):
        tier.put(snap(1), ttl_seconds=60)
    assert local.get(1) == snap(1)
    with pytest.raises(StoreError):
        tier.invalidate_user(1)
    assert local.get(1) is None


def test_view_with_wrapped_levels_shares_the_statistics() -> None:
    local, shared = LRUFeedCache(), InMemoryFeedCache()
    tier = TieredFeedCache(local, shared)
    wrapped: list[FeedCache] = []

    def wrap(level: FeedCache) -> FeedCache:
        wrapped.append(level)
        return level

    view = tier.with_levels(wrap)
    assert wrapped == [local, shared]
    view.get(1)
    assert [s.misses for s in tier.level_stats] == [1, 1]


def test_tier_needs_a_level() -> None:
    with pytest.raises(InvalidInputError) as info:
        TieredFeedCache()
    assert info.value.field == "levels"


class TestLRUFeedCacheContract(FeedCacheContract):
    @pytest.fixture
    def feed_cache(self) -> LRUFeedCache:
        self.clock = ManualClock()
        return LRUFeedCache(max_entries=1000, clock=self.clock.monotonic)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)


class TestTieredFeedCacheContract(FeedCacheContract):
    @pytest.fixture
    def feed_cache(self) -> TieredFeedCache:
        self.clock = ManualClock()
        return TieredFeedCache(
            LRUFeedCache(max_entries=1000, clock=self.clock.monotonic),
            InMemoryFeedCache(clock=self.clock.monotonic),
        )

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
