"""What a :class:`FeedObserver` hears from the feed service and the engagement recorder.

Every expectation is worked out by hand from the request path described in the
serving guide: which stores a first page reads, in which order, and what each
fallback reports.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reelrank import (
    BreakerState,
    CacheLookupResult,
    EngagementRecorder,
    FeedObserver,
    FeedRankingService,
    FeedServiceConfig,
    FeedUnavailableError,
    InMemoryCatalog,
    InMemoryEngagementLog,
    InMemoryEventStore,
    InMemoryFeedCache,
    InMemorySeenStore,
    LRUFeedCache,
    NotFoundError,
    StoreCallOutcome,
    StoreDeadlines,
    TieredFeedCache,
)
from reelrank.feed._observer import active
from reelrank.testing import FaultInjector, ManualClock, make_creator, make_video

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
VIDEOS = 30
POOL_TTL = 10.0
DEPENDENCIES = ("catalog", "events", "seen", "models", "cache")


class Recording(FeedObserver):
    """Keeps every call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def store_call(
        self, store: str, operation: str, seconds: float, outcome: StoreCallOutcome
    ) -> None:
        self.calls.append(("store_call", store, operation, outcome, seconds))

    def degraded(self, dependency: str, fallback: str) -> None:
        self.calls.append(("degraded", dependency, fallback))

    def feed_unavailable(self, dependency: str) -> None:
        self.calls.append(("feed_unavailable", dependency))

    def cache_lookups(self, level: int, result: CacheLookupResult, count: int) -> None:
        self.calls.append(("cache_lookups", level, result, count))

    def snapshot_built(self, seconds: float, size: int) -> None:
        self.calls.append(("snapshot_built", size, seconds))

    def kernel_run(self, kernel: str, seconds: float) -> None:
        self.calls.append(("kernel_run", kernel, seconds))

    def candidate_pool_refreshed(self, size: int, age_seconds: float) -> None:
        self.calls.append(("candidate_pool_refreshed", size, age_seconds))

    def users_warmed(self, warmed: int, failed: int, skipped: int) -> None:
        self.calls.append(("users_warmed", warmed, failed, skipped))

    def breaker_state_changed(self, dependency: str, state: BreakerState) -> None:
        self.calls.append(("breaker", dependency, state))

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        """The calls of one method, without the timings (last field of timed calls)."""
        timed = {"store_call", "snapshot_built", "kernel_run"}
        return [c[1:-1] if kind in timed else c[1:] for c in self.calls if c[0] == kind]

    def clear(self) -> None:
        self.calls.clear()


def _catalog() -> InMemoryCatalog:
    catalog = InMemoryCatalog()
    for creator in range(1, 4):
        catalog.put_creator(make_creator(creator))
    for video in range(1, VIDEOS + 1):
        catalog.put_video(
            make_video(video, 1 + video % 3, published_at=START - timedelta(minutes=video))
        )
    return catalog


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def build(clock: ManualClock) -> Iterator[Any]:
    services: list[FeedRankingService] = []

    def make(observer: FeedObserver | None, **kwargs: Any) -> FeedRankingService:
        config: dict[str, Any] = {
            "cursor_secret": "a-test-secret-of-some-length",
            "refresh_pool_in_background": False,
            "candidate_pool_ttl_seconds": POOL_TTL,
            "breaker_failure_threshold": 1,
            "deadlines": StoreDeadlines(catalog=30, events=30, seen=30, models=30, cache=30),
        }
        config.update(kwargs.pop("config", {}))
        stores: dict[str, Any] = {
            "catalog": _catalog(),
            "events": InMemoryEventStore(),
            "seen": InMemorySeenStore(),
            "cache": LRUFeedCache(clock=clock.monotonic),
        }
        stores.update(kwargs)
        service = FeedRankingService(
            **stores,
            config=FeedServiceConfig(**config),
            clock=clock.now,
            monotonic=clock.monotonic,
            observer=observer,
        )
        services.append(service)
        return service

    yield make
    for service in services:
        service.close()


def test_the_base_class_is_not_called_at_all() -> None:
    # A plain FeedObserver would only run no-ops, so the service drops it and times
    # nothing; a subclass is kept.
    assert active(None) is None
    assert active(FeedObserver()) is None
    recording = Recording()
    assert active(recording) is recording


def test_a_service_with_the_no_op_observer_serves(build: Any) -> None:
    service = build(FeedObserver())
    assert len(service.feed(1, 5).items) == 5


def test_breakers_are_reported_closed_when_the_service_is_built(build: Any) -> None:
    observer = Recording()
    build(observer)
    assert observer.of("breaker") == [(name, BreakerState.CLOSED) for name in DEPENDENCIES]


def test_a_first_page_reports_its_store_calls_pool_ranking_and_lookup(build: Any) -> None:
    observer = Recording()
    service = build(observer)
    observer.clear()
    page = service.feed(1, 5)
    assert len(page.items) == 5 and not page.degraded
    # The pool: recent videos, popular ids (none yet, so no get_videos), the stats of
    # the 30 recent videos; then the user's recently seen ids and affinities, started
    # before the followed videos are read (in-memory stores run them at once, in that
    # order), the followed videos (none, so no stats); the page marks its items seen in
    # one call.
    assert observer.of("store_call") == [
        ("catalog", "recent_videos", "ok"),
        ("events", "popular_video_ids", "ok"),
        ("events", "stats_columns", "ok"),
        ("seen", "recently_seen", "ok"),
        ("events", "get_affinities", "ok"),
        ("catalog", "followed_columns", "ok"),
        ("seen", "filter_and_mark", "ok"),
    ]
    assert observer.of("cache_lookups") == [(0, "miss", 1)]
    assert observer.of("candidate_pool_refreshed") == [(VIDEOS, 0.0)]
    assert observer.of("kernel_run") == [("rank",), ("diversity",)]
    assert observer.of("snapshot_built") == [(VIDEOS,)]
    assert observer.of("degraded") == observer.of("feed_unavailable") == []
    assert all(call[-1] >= 0.0 for call in observer.calls if call[0] == "store_call")


def test_a_stalled_store_is_one_timeout_and_its_fallbacks(build: Any) -> None:
    observer = Recording()
    seen = FaultInjector(InMemorySeenStore(), name="seen")
    service = build(
        observer,
        seen=seen.proxy,
        config={
            "inline_self_bounded_stores": False,
            "deadlines": StoreDeadlines(catalog=30, events=30, seen=0.05, models=30, cache=30),
        },
    )
    seen.stall(30.0, methods=["recently_seen"])
    observer.clear()
    try:
        page = service.feed(1, 5)
    finally:
        seen.recover()
    # recently_seen runs past its 50 ms deadline; the request then skips the seen
    # store: the page is cut without the filter and its marking is refused too.
    seen_calls = [call[2:] for call in observer.calls if call[:2] == ("store_call", "seen")]
    assert [call[:2] for call in seen_calls] == [
        ("recently_seen", "timeout"),
        ("filter_and_mark", "rejected"),
        ("mark_seen", "rejected"),
    ]
    assert seen_calls[0][2] >= 0.045
    # The five pool and user reads of the other stores answer.
    assert Counter(call[3] for call in observer.calls if call[0] == "store_call") == {
        "ok": 5,
        "timeout": 1,
        "rejected": 2,
    }
    expected = [
        ("seen", "not filtered by watch history"),
        ("seen", "served items not recorded as seen"),
    ]
    assert [(d.dependency, d.fallback) for d in page.degraded] == expected
    assert observer.of("degraded") == expected


def test_lookups_are_reported_per_level_as_the_tier_counts_them(
    build: Any, clock: ManualClock
) -> None:
    observer = Recording()
    local = LRUFeedCache(clock=clock.monotonic)
    cache = TieredFeedCache(local, InMemoryFeedCache(clock=clock.monotonic))
    service = build(observer, cache=cache)
    observer.clear()
    service.warm([1])  # one get_many: missed by both levels, then stored in both
    service.feed(1, 5)  # the local level has it
    local.clear()
    service.feed(1, 5)  # the shared level has it
    assert observer.of("cache_lookups") == [
        (0, "miss", 1),
        (1, "miss", 1),
        (0, "hit", 1),
        (0, "miss", 1),
        (1, "hit", 1),
    ]
    heard: Counter[tuple[int, str]] = Counter()
    for level, result, count in observer.of("cache_lookups"):
        heard[level, result] += count
    stats = service.stats().cache_levels
    assert [(heard[i, "hit"], heard[i, "miss"]) for i in (0, 1)] == [
        (s.hits, s.misses) for s in stats
    ]


def test_a_catalog_outage_opens_the_breaker_and_the_feed_is_unavailable(
    build: Any, clock: ManualClock
) -> None:
    observer = Recording()
    catalog = FaultInjector(_catalog(), name="catalog")
    service = build(observer, catalog=catalog.proxy)
    catalog.fail()
    observer.clear()
    with pytest.raises(FeedUnavailableError):
        service.feed(1, 5)
    assert observer.of("store_call") == [("catalog", "recent_videos", "error")]
    assert observer.of("breaker") == [("catalog", BreakerState.OPEN)]
    assert observer.of("feed_unavailable") == [("catalog",)]
    catalog.recover()
    clock.advance(11.0)  # past the breaker's 10 s reset timeout
    observer.clear()
    service.feed(1, 5)
    assert observer.of("breaker") == [
        ("catalog", BreakerState.HALF_OPEN),
        ("catalog", BreakerState.CLOSED),
    ]


def test_a_pool_kept_through_a_catalog_outage_reports_its_age(
    build: Any, clock: ManualClock
) -> None:
    observer = Recording()
    catalog = FaultInjector(_catalog(), name="catalog")
    service = build(observer, catalog=catalog.proxy)
    service.feed(1, 5)
    clock.advance(POOL_TTL + 5.0)
    catalog.fail()
    observer.clear()
    page = service.feed(2, 5)
    # The stale pool is fetched again, the catalog fails, and the last known
    # candidates, fetched 15 s ago, stand in.
    assert observer.of("candidate_pool_refreshed") == [(VIDEOS, POOL_TTL + 5.0)]
    assert ("catalog", "last known candidates") in observer.of("degraded")
    assert [(d.dependency, d.fallback) for d in page.degraded] == [
        (d, f) for d, f in observer.of("degraded")
    ]


def test_warming_reports_warmed_failed_and_skipped_users(build: Any) -> None:
    observer = Recording()
    catalog = FaultInjector(_catalog(), name="catalog")
    service = build(observer, catalog=catalog.proxy)
    assert service.warm([1, 2, 3]) == 3
    assert service.warm([1, 2, 3, 4]) == 1
    assert observer.of("users_warmed") == [(3, 0, 0), (1, 0, 3)]
    assert observer.of("snapshot_built") == [(VIDEOS,)] * 4
    warming_calls = {call[2] for call in observer.calls if call[0] == "store_call"}
    assert {"bulk_catalog", "bulk_affinity", "bulk_seen"} <= warming_calls

    observer.clear()
    cold = build(observer, catalog=catalog.proxy)
    catalog.fail()
    with pytest.raises(FeedUnavailableError):
        cold.warm([5, 6])
    assert observer.of("users_warmed") == [(0, 2, 0)]


def test_the_recorder_reports_its_store_calls() -> None:
    observer = Recording()
    catalog = _catalog()
    events = FaultInjector(InMemoryEventStore(), name="events")
    recorder = EngagementRecorder(
        catalog, events.proxy, log=InMemoryEngagementLog(), observer=observer, now=lambda: START
    )
    assert recorder.like(1, 3, event_id="e-1")
    assert observer.of("store_call") == [
        ("catalog", "get_video", "ok"),
        ("events", "append", "ok"),
        ("log", "record", "ok"),
    ]
    observer.clear()
    with pytest.raises(NotFoundError):
        recorder.like(1, VIDEOS + 1, event_id="e-2")
    # The catalog answered: the video does not exist.
    assert observer.of("store_call") == [("catalog", "get_video", "ok")]
    observer.clear()
    events.fail()
    with pytest.raises(Exception, match="injected failure"):
        recorder.like(1, 4, event_id="e-3")
    assert observer.of("store_call") == [
        ("catalog", "get_video", "ok"),
        ("events", "append", "error"),
    ]
