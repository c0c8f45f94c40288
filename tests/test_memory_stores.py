"""The in-memory stores against the contract suite, plus what only they promise."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from reelrank import (
    InMemoryCatalog,
    InMemoryEngagementLog,
    InMemoryEventStore,
    InMemoryFeedCache,
    InMemoryModelRegistry,
    InMemorySeenStore,
    StoreError,
    StoreTimeoutError,
)
from reelrank.testing import (
    EPOCH,
    CatalogContract,
    EngagementLogContract,
    EventStoreContract,
    FaultInjector,
    FeedCacheContract,
    ManualClock,
    ModelRegistryContract,
    SeenStoreContract,
    make_creator,
    make_event,
    make_snapshot,
    make_video,
)


class TestInMemoryCatalog(CatalogContract):
    @pytest.fixture
    def catalog(self) -> InMemoryCatalog:
        return InMemoryCatalog()


class TestInMemoryEventStore(EventStoreContract):
    @pytest.fixture
    def event_store(self) -> InMemoryEventStore:
        return InMemoryEventStore()


class TestInMemoryEngagementLog(EngagementLogContract):
    @pytest.fixture
    def engagement_log(self) -> InMemoryEngagementLog:
        return InMemoryEngagementLog()


class TestInMemorySeenStore(SeenStoreContract):
    @pytest.fixture
    def seen_store(self) -> InMemorySeenStore:
        return InMemorySeenStore()


class TestInMemoryFeedCache(FeedCacheContract):
    @pytest.fixture
    def feed_cache(self) -> InMemoryFeedCache:
        return InMemoryFeedCache()


class TestInMemoryModelRegistry(ModelRegistryContract):
    @pytest.fixture
    def model_registry(self) -> InMemoryModelRegistry:
        return InMemoryModelRegistry()


# -- the feed cache with an injected clock ------------------------------------------------


def test_cache_entries_expire_on_the_injected_clock() -> None:
    clock = ManualClock()
    cache = InMemoryFeedCache(clock=clock.monotonic)
    cache.put(make_snapshot(1), ttl_seconds=10)
    cache.put(make_snapshot(2), ttl_seconds=30)
    clock.advance(9.999)
    assert cache.get(1) is not None
    clock.advance(0.001)
    assert cache.get(1) is None
    assert set(cache.get_many([(1, None), (2, None)])) == {(2, None)}
    assert cache.invalidate_user(1) == 0


def test_purge_expired_drops_only_dead_entries() -> None:
    clock = ManualClock()
    cache = InMemoryFeedCache(clock=clock.monotonic)
    cache.put_many([make_snapshot(1), make_snapshot(1, variant="b")], ttl_seconds=5)
    cache.put(make_snapshot(2), ttl_seconds=50)
    clock.advance(6)
    assert cache.purge_expired() == 2
    assert cache.purge_expired() == 0
    assert cache.get(2) is not None


# -- thread safety ------------------------------------------------------------------------


def test_concurrent_appends_count_every_event_exactly_once() -> None:
    store = InMemoryEventStore()
    events = [make_event("watch", user_id=1 + n % 7, completion=0.5) for n in range(800)]
    barrier = threading.Barrier(4)

    def deliver(offset: int) -> None:
        barrier.wait()
        # Every thread delivers every event, starting at a different point.
        for index in range(len(events)):
            store.append(events[(index + offset * 200) % len(events)], creator_id=3)

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = store.get_stats([1])[1]
    assert stats.views == len(events)
    assert stats.completion_sum == pytest.approx(0.5 * len(events))


def test_concurrent_catalog_writes_and_reads_stay_consistent() -> None:
    catalog = InMemoryCatalog()
    catalog.put_creator(make_creator(1))
    errors: list[BaseException] = []

    def write(start: int) -> None:
        for video_id in range(start, start + 300):
            published_at = EPOCH + timedelta(seconds=video_id)
            catalog.put_video(make_video(video_id, 1, published_at=published_at))

    def read() -> None:
        try:
            for _ in range(300):
                recent = catalog.recent_videos(limit=20)
                times = [video.published_at for video in recent]
                assert times == sorted(times, reverse=True)
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(1 + n * 300,)) for n in range(3)]
    threads.append(threading.Thread(target=read))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(catalog.get_videos(list(range(1, 901)))) == 900
    assert [v.video_id for v in catalog.recent_videos(limit=3)] == [900, 899, 898]


# -- fault injection ----------------------------------------------------------------------


def test_fault_injector_forwards_calls_until_told_to_fail() -> None:
    seen = FaultInjector(InMemorySeenStore(), name="seen")
    store = seen.proxy
    store.mark_seen(1, [5], EPOCH)
    assert store.seen_among(1, [5], since=EPOCH) == {5}
    seen.fail()
    with pytest.raises(StoreError) as info:
        store.seen_among(1, [5], since=EPOCH)
    assert info.value.store == "seen"
    seen.recover()
    assert store.seen_among(1, [5], since=EPOCH) == {5}
    assert seen.calls == {"mark_seen": 1, "seen_among": 3}


def test_fault_injector_fails_a_given_number_of_times_and_methods() -> None:
    catalog = FaultInjector(InMemoryCatalog(), name="catalog")
    catalog.fail(StoreTimeoutError("catalog", "deadline"), times=2, methods=["get_videos"])
    assert catalog.proxy.recent_videos(limit=5) == []
    for _ in range(2):
        with pytest.raises(StoreTimeoutError):
            catalog.proxy.get_videos([1])
    assert catalog.proxy.get_videos([1]) == {}


def test_recover_releases_a_stalled_call() -> None:
    cache = FaultInjector(InMemoryFeedCache(), name="cache")
    # A stall far longer than the pytest timeout: only recover() can end this test.
    cache.stall(3_600)
    result: list[object] = []
    caller = threading.Thread(target=lambda: result.append(cache.proxy.get(1)))
    caller.start()
    caller.join(timeout=0.05)
    assert caller.is_alive()
    assert result == []
    cache.recover()
    caller.join()
    assert result == [None]


def test_proxy_satisfies_the_protocol() -> None:
    from reelrank import Catalog, FeedCache

    assert isinstance(FaultInjector(InMemoryCatalog()).proxy, Catalog)
    assert isinstance(FaultInjector(InMemoryFeedCache()).proxy, FeedCache)


def test_concurrent_seen_and_cache_traffic_loses_nothing() -> None:
    seen = InMemorySeenStore()
    cache = InMemoryFeedCache()
    barrier = threading.Barrier(4)

    def traffic(user_id: int) -> None:
        barrier.wait()
        for step in range(200):
            seen.mark_seen(user_id, [step + 1], EPOCH + timedelta(seconds=step))
            cache.put(make_snapshot(user_id, [step + 1]), ttl_seconds=60)
            cache.get_many([(other, None) for other in range(1, 5)])
            seen.seen_among(user_id, list(range(1, 201)), since=EPOCH)

    threads = [threading.Thread(target=traffic, args=(user,)) for user in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for user_id in range(1, 5):
        assert seen.seen_among(user_id, list(range(1, 201)), since=EPOCH) == set(range(1, 201))
        assert seen.recently_seen(user_id, since=EPOCH, limit=1) == [200]
        snapshot = cache.get(user_id)
        assert snapshot is not None
        assert snapshot.video_ids == (200,)
