"""Refilling ahead: the next snapshot is ranked in the background before the current
one is used up, and why pages that are not served from the cache missed it.

The expected hits, misses and refills are worked out by hand from the rules in the
serving guide (*Refilling ahead*): a snapshot of ``SIZE`` items, pages of ``LIMIT``, a
refill once a page leaves fewer than ``AHEAD`` items after it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reelrank import (
    BreakerState,
    CacheMissReason,
    FeedObserver,
    FeedRankingService,
    FeedServiceConfig,
    InMemoryCatalog,
    InMemoryEventStore,
    InMemorySeenStore,
    LRUFeedCache,
    RefillOutcome,
    StoreDeadlines,
)
from reelrank.feed._context import config_tag
from reelrank.feed._refill import Refiller
from reelrank.testing import FaultInjector, ManualClock, make_creator, make_snapshot, make_video

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
VIDEOS = 120
SIZE = 20
LIMIT = 4
AHEAD = 5
USER = 7
WAIT = 30.0


class Recording(FeedObserver):
    """Keeps the misses and refills it hears about; raises from ``snapshot_built`` on a
    refill thread when told to."""

    def __init__(self) -> None:
        self.misses: list[CacheMissReason] = []
        self.refills: list[RefillOutcome] = []
        self.fail_refill_builds = False
        self._lock = threading.Lock()

    def cache_missed(self, reason: CacheMissReason) -> None:
        self.misses.append(reason)

    def refill_ended(self, outcome: RefillOutcome) -> None:
        with self._lock:
            self.refills.append(outcome)

    def snapshot_built(self, seconds: float, size: int) -> None:
        on_refill_thread = threading.current_thread().name.startswith("reelrank-refill")
        if self.fail_refill_builds and on_refill_thread:
            raise RuntimeError("a bug in a refill")


def _catalog(videos: int = VIDEOS) -> InMemoryCatalog:
    catalog = InMemoryCatalog()
    for creator in range(1, 7):
        catalog.put_creator(make_creator(creator))
    for video in range(1, videos + 1):
        catalog.put_video(
            make_video(video, 1 + video % 6, published_at=START - timedelta(minutes=video))
        )
    return catalog


@pytest.fixture
def build() -> Iterator[Callable[..., FeedRankingService]]:
    services: list[FeedRankingService] = []

    def make(
        observer: FeedObserver | None = None,
        *,
        seen: Any = None,
        clock: ManualClock | None = None,
        cache: LRUFeedCache | None = None,
        videos: int = VIDEOS,
        catalog: Any = None,
        **config: Any,
    ) -> FeedRankingService:
        clock = clock or ManualClock(START)
        settings: dict[str, Any] = {
            "cursor_secret": "a-test-secret-of-some-length",
            "refresh_pool_in_background": False,
            "snapshot_size": SIZE,
            "refill_ahead_items": AHEAD,
            "deadlines": StoreDeadlines(catalog=30, events=30, seen=30, models=30, cache=30),
        }
        settings.update(config)
        service = FeedRankingService(
            catalog=_catalog(videos) if catalog is None else catalog,
            events=InMemoryEventStore(),
            seen=seen or InMemorySeenStore(),
            cache=LRUFeedCache(clock=clock.monotonic) if cache is None else cache,
            config=FeedServiceConfig(**settings),
            clock=clock.now,
            monotonic=clock.monotonic,
            observer=observer,
        )
        services.append(service)
        return service

    yield make
    for service in services:
        service.close()


def _refills_done(service: FeedRankingService) -> None:
    refiller = service._refiller
    assert refiller is not None
    assert refiller.wait_idle(WAIT)


def _page_through(
    service: FeedRankingService, pages: int, limit: int = LIMIT
) -> list[tuple[bool, list[int]]]:
    """``pages`` pages with the cursors given, waiting for refills after each:
    whether each came from the cache, and its ids."""
    served = []
    cursor = None
    for _ in range(pages):
        page = service.feed(USER, limit, cursor)
        served.append((page.from_cache, [item.video_id for item in page.items]))
        if service._refiller is not None:
            _refills_done(service)
        cursor = page.next_cursor
    return served


@pytest.mark.parametrize("one_call", [True, False], ids=["take_page", "separate_calls"])
def test_paging_past_the_end_of_the_snapshot_stays_in_the_cache(
    build: Callable[..., FeedRankingService], one_call: bool
) -> None:
    observer = Recording()
    service = build(observer, take_pages_in_one_call=one_call)
    assert service.warm([USER]) == 1
    served = _page_through(service, 12)
    # Each snapshot is 20 items, 5 pages of 4; the 4th page leaves 4 < 5 after it, so
    # the next snapshot is ranked then, and pages 5 and 9 start new snapshots: 12 pages
    # are all hits, after 3 refills (pages 4, 8 and 12).
    assert [from_cache for from_cache, _ in served] == [True] * 12
    assert all(len(ids) == LIMIT for _, ids in served)
    ids = [video for _, page in served for video in page]
    assert len(set(ids)) == len(ids) == 48
    assert observer.misses == []
    assert observer.refills == ["stored"] * 3
    assert service.stats().snapshots_ranked == 1 + 3


def test_without_refilling_the_page_after_the_snapshot_is_a_used_up_miss(
    build: Callable[..., FeedRankingService],
) -> None:
    observer = Recording()
    service = build(observer, refill_ahead_items=0)
    assert service.warm([USER]) == 1
    served = _page_through(service, 12)
    # Pages 1-5 use up the warmed snapshot; page 6 finds nothing unseen after its
    # cursor and is ranked for the request, as is page 11.
    assert [from_cache for from_cache, _ in served] == [
        True, True, True, True, True, False, True, True, True, True, False, True,
    ]  # fmt: skip
    assert observer.misses == ["used_up", "used_up"]
    assert observer.refills == []
    assert service._refiller is None


def test_misses_are_told_apart_by_what_the_cache_held(
    build: Callable[..., FeedRankingService],
) -> None:
    observer = Recording()
    cache = LRUFeedCache()
    service = build(observer, cache=cache, refill_ahead_items=0, snapshot_ttl_seconds=60.0)
    # Never ranked: nothing cached.
    assert not service.feed(USER, LIMIT).from_cache
    # Cached under the ranking config before this one.
    service.ranking = service.ranking.model_copy(update={"freshness_half_life_hours": 7.0})
    assert not service.feed(USER, LIMIT).from_cache
    assert service.feed(USER, LIMIT).from_cache
    # A level holding a copy past the snapshot's own lifetime (a promoted copy can).
    old = make_snapshot(
        USER,
        tuple(range(1, SIZE + 1)),
        created_at=START - timedelta(seconds=61),
        config_tag=config_tag(service.ranking),
    )
    cache.put(old, ttl_seconds=3600.0)
    assert not service.feed(USER, LIMIT).from_cache
    assert observer.misses == ["absent", "config_changed", "expired"]


def test_a_user_short_of_candidates_runs_out_and_is_not_refilled(
    build: Callable[..., FeedRankingService],
) -> None:
    observer = Recording()
    service = build(observer, videos=10)
    assert service.warm([USER]) == 1
    served = _page_through(service, 3)
    # Ten candidates: a snapshot of 10 < 20 items, pages of 4, 4 and 2, the last one
    # ending the feed. A short snapshot is never refilled: it held every candidate.
    assert [len(ids) for _, ids in served] == [4, 4, 2]
    assert observer.refills == []
    # Asking again finds the snapshot used up; so does asking after that, since the
    # re-ranked snapshot is empty.
    assert service.feed(USER, LIMIT).items == ()
    assert service.feed(USER, LIMIT).items == ()
    assert observer.misses == ["ran_out", "ran_out"]


def test_a_user_who_ran_out_gets_the_end_of_the_feed_from_the_cache_until_the_pool_changes(
    build: Callable[..., FeedRankingService],
) -> None:
    observer = Recording()
    clock = ManualClock(START)
    service = build(
        observer, clock=clock, videos=10, hold_ran_out_feeds=True, candidate_pool_ttl_seconds=10
    )
    assert service.warm([USER]) == 1
    assert [len(ids) for _, ids in _page_through(service, 3)] == [4, 4, 2]
    # Ranked after the pool was fetched, with every candidate in it: ranking again
    # over the same pool would find nothing, so the end comes from the cache.
    clock.advance(5.0)
    for _ in range(3):
        page = service.feed(USER, LIMIT)
        assert page.items == () and page.next_cursor is None and page.from_cache
    assert observer.misses == []
    # Once the pool's lifetime passed, the next request fetches the pool again and
    # ranks over it (it might hold new candidates).
    clock.advance(5.0)
    page = service.feed(USER, LIMIT)
    assert observer.misses == ["ran_out"] and not page.from_cache
    # That ranking was over the current pool: held again.
    assert service.feed(USER, LIMIT).from_cache
    assert observer.misses == ["ran_out"]


def test_a_refill_that_raises_leaves_the_requests_alone(
    build: Callable[..., FeedRankingService],
) -> None:
    observer = Recording()
    service = build(observer)
    assert service.warm([USER]) == 1
    observer.fail_refill_builds = True
    served = _page_through(service, 6)
    # The refills after pages 4 and 5 raised: page 5 is the old snapshot's last, page 6
    # finds it used up and is ranked for the request (a fresh page refills nothing).
    assert [from_cache for from_cache, _ in served] == [True] * 5 + [False]
    assert observer.refills == ["failed", "failed"]
    assert observer.misses == ["used_up"]
    ids = [video for _, page in served for video in page]
    assert len(set(ids)) == len(ids) == 24


def test_a_refill_degraded_by_a_failing_store_is_not_cached(
    build: Callable[..., FeedRankingService],
) -> None:
    observer = Recording()
    seen = FaultInjector(InMemorySeenStore(), name="seen")
    service = build(observer, seen=seen.proxy, take_pages_in_one_call=False)
    assert service.warm([USER]) == 1
    _page_through(service, 3)
    # The refill's read of the recently seen ids fails: its snapshot would be degraded
    # (not filtered by watch history), so the sound one in the cache stays.
    seen.fail(methods=["recently_seen"])
    page = service.feed(USER, LIMIT, None)
    assert page.from_cache and not page.degraded
    _refills_done(service)
    assert observer.refills == ["degraded"]


def test_a_refill_that_finds_the_catalog_failing_leaves_the_snapshot_in_place(
    build: Callable[..., FeedRankingService],
) -> None:
    observer = Recording()
    catalog = FaultInjector(_catalog(), name="catalog")
    service = build(observer, catalog=catalog.proxy, breaker_failure_threshold=100)
    assert service.warm([USER]) == 1
    _page_through(service, 3)
    catalog.fail(methods=["followed_columns"])
    # The fourth page leaves 4 items: its refill reads the followed videos, which fail.
    page = service.feed(USER, LIMIT, None)
    assert page.from_cache and not page.degraded
    _refills_done(service)
    assert observer.refills == ["degraded"]
    catalog.recover()
    # The old snapshot still serves its last items.
    assert service.feed(USER, LIMIT, None).from_cache


def test_a_refill_waits_for_a_store_past_the_request_deadline_within_its_own(
    build: Callable[..., FeedRankingService],
) -> None:
    observer = Recording()
    seen = FaultInjector(InMemorySeenStore(), name="seen")
    service = build(
        observer,
        seen=seen.proxy,
        deadlines=StoreDeadlines(catalog=30, events=30, seen=0.05, models=30, cache=30),
        refill_deadline_seconds=30.0,
    )
    assert service.warm([USER]) == 1
    _page_through(service, 3)
    # The seen store now answers its read of the recently seen ids in 0.3 s: six times
    # a request's deadline, well within a refill's. The refill after the fourth page
    # waits for it and stores its snapshot, so the sixth page is a hit on it.
    seen.stall(0.3, methods=["recently_seen"])
    served = _page_through(service, 3)
    assert [from_cache for from_cache, _ in served] == [True, True, True]
    assert observer.refills == ["stored"]
    assert observer.misses == []
    assert service.stats().dependencies["seen"].timeouts == 0


def test_a_refill_gives_up_on_a_hung_store_at_its_own_deadline(
    build: Callable[..., FeedRankingService],
) -> None:
    observer = Recording()
    seen = FaultInjector(InMemorySeenStore(), name="seen")
    service = build(
        observer,
        seen=seen.proxy,
        deadlines=StoreDeadlines(catalog=30, events=30, seen=30, models=30, cache=30),
        refill_deadline_seconds=0.2,
        breaker_failure_threshold=1,
    )
    assert service.warm([USER]) == 1
    _page_through(service, 3)
    seen.stall(WAIT * 10, methods=["recently_seen"])
    try:
        started = time.monotonic()
        assert service.feed(USER, LIMIT, None).from_cache
        _refills_done(service)
        # Bounded by the refill's deadline, far below the request deadline of 30 s and
        # the stall; the timeout counts toward the seen store's breaker as a request's
        # would (one failure opens it here).
        assert time.monotonic() - started < WAIT
        assert observer.refills == ["degraded"]
        assert service.stats().dependencies["seen"].timeouts == 1
        assert service.breakers["seen"].state is BreakerState.OPEN
    finally:
        seen.recover()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    steps=st.lists(
        st.tuples(st.integers(1, 7), st.sampled_from(["next", "first", "retry"])),
        min_size=1,
        max_size=30,
    )
)
def test_no_video_is_shown_twice_and_a_retried_cursor_gets_its_page_again(
    build: Callable[..., FeedRankingService], steps: list[tuple[int, str]]
) -> None:
    # Few enough videos that long sequences show every one and run out.
    service = build(Recording(), refill_ahead_items=9, videos=60, hold_ran_out_feeds=True)
    service.warm([USER])
    shown: set[int] = set()
    cursor: str | None = None
    previous: tuple[str | None, int, list[int]] | None = None
    for limit, move in steps:
        if move == "retry" and previous is not None and previous[0] is not None:
            asked, asked_limit, got = previous
            page = service.feed(USER, asked_limit, asked)
            assert [item.video_id for item in page.items] == got
        else:
            asked = None if move == "first" else cursor
            page = service.feed(USER, limit, asked)
            ids = [item.video_id for item in page.items]
            assert not shown & set(ids), (shown & set(ids), move)
            assert len(set(ids)) == len(ids)
            shown |= set(ids)
            previous = (asked, limit, ids)
        cursor = page.next_cursor
        # Refills land between pages, or while later pages are served, at random.
        if move == "first":
            _refills_done(service)
    _refills_done(service)


def test_close_drops_queued_refills_and_stops_the_threads(
    build: Callable[..., FeedRankingService],
) -> None:
    observer = Recording()
    service = build(observer)
    assert service.warm([USER]) == 1
    _page_through(service, 4)
    service.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("reelrank-refill")]
    # A page after closing would refill: the refill is dropped, not run.
    refiller = service._refiller
    assert refiller is not None
    assert not refiller.submit((USER, None), lambda: "stored")
    assert observer.refills == ["stored", "dropped"]


# -- the refiller's bounds --------------------------------------------------------------


class _Blocked:
    """Jobs that wait until released, counting how many ran at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Semaphore(0)
        self._lock = threading.Lock()
        self.running = self.most_running = self.ran = 0

    def job(self) -> RefillOutcome:
        with self._lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        self.started.release()
        assert self.release.wait(WAIT)
        with self._lock:
            self.running -= 1
            self.ran += 1
        return "stored"


def test_one_refill_per_key_runs_however_many_requests_ask() -> None:
    outcomes: list[RefillOutcome] = []
    refiller = Refiller(threads=2, queue_max=8, report=outcomes.append)
    blocked = _Blocked()
    accepted: list[bool] = []
    asking = [
        threading.Thread(target=lambda: accepted.append(refiller.submit((1, None), blocked.job)))
        for _ in range(16)
    ]
    for thread in asking:
        thread.start()
    for thread in asking:
        thread.join()
    assert blocked.started.acquire(timeout=WAIT)
    assert accepted.count(True) == 1
    blocked.release.set()
    assert refiller.wait_idle(WAIT)
    assert blocked.ran == 1 and outcomes == ["stored"]
    # Once it ended, the key may be refilled again.
    assert refiller.submit((1, None), blocked.job)
    assert refiller.wait_idle(WAIT)
    refiller.close(WAIT)
    assert outcomes == ["stored", "stored"]


def test_refills_beyond_the_threads_and_the_queue_are_dropped() -> None:
    outcomes: list[RefillOutcome] = []
    refiller = Refiller(threads=2, queue_max=3, report=outcomes.append)
    blocked = _Blocked()
    # Two run (one per thread), three wait, the sixth and seventh find the queue full.
    for user in (1, 2):
        assert refiller.submit((user, None), blocked.job)
    for _ in range(2):
        assert blocked.started.acquire(timeout=WAIT)
    assert [refiller.submit((user, None), blocked.job) for user in range(3, 8)] == [
        True, True, True, False, False,
    ]  # fmt: skip
    assert blocked.most_running == 2
    assert outcomes == ["dropped", "dropped"]
    # Closing drops the three queued and waits for the two running.
    closing = threading.Thread(target=refiller.close, args=(WAIT,))
    closing.start()
    blocked.release.set()
    closing.join(WAIT)
    assert not closing.is_alive()
    assert blocked.ran == 2
    assert sorted(outcomes) == ["dropped"] * 5 + ["stored"] * 2


def test_a_raising_job_is_counted_failed_and_the_thread_goes_on() -> None:
    outcomes: list[RefillOutcome] = []
    refiller = Refiller(threads=1, queue_max=4, report=outcomes.append)

    def broken() -> RefillOutcome:
        raise ValueError("bug")

    assert refiller.submit((1, None), broken)
    assert refiller.wait_idle(WAIT)
    assert refiller.submit((2, None), lambda: "stored")
    assert refiller.wait_idle(WAIT)
    refiller.close(WAIT)
    assert outcomes == ["failed", "stored"]
