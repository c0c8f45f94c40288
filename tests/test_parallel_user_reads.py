"""A cache-miss feed reads the user's seen history and affinities while it reads the
followed creators' videos (``FeedServiceConfig.parallel_user_reads``).

The reference is the same service reading one store after the other
(``parallel_user_reads=False``): both must rank the same snapshot. Stores run on the
guards' worker threads here (``inline_self_bounded_stores=False``), as network stores
do, so the reads really overlap.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reelrank import StoreTimeoutError
from reelrank.feed import (
    CircuitBreaker,
    DependencyGuard,
    FeedRankingService,
    FeedServiceConfig,
    StoreDeadlines,
    WorkerPool,
)
from reelrank.stores import InMemoryCatalog, InMemoryEventStore, InMemorySeenStore
from reelrank.testing import EPOCH, ManualClock, make_creator, make_event, make_video

START = EPOCH + timedelta(days=2)
CREATORS = 8


def _world(
    videos: int, follows: Sequence[int], likes: Sequence[tuple[int, int]], seen: Sequence[int]
) -> tuple[InMemoryCatalog, InMemoryEventStore, InMemorySeenStore]:
    catalog = InMemoryCatalog()
    for creator in range(1, CREATORS + 1):
        catalog.put_creator(make_creator(creator))
    for video in range(1, videos + 1):
        catalog.put_video(
            make_video(
                video,
                1 + video % CREATORS,
                published_at=START - timedelta(minutes=7 * video),
                sound_id=100 + video % 3,
            )
        )
    for creator in follows:
        catalog.follow(1, creator)
    events = InMemoryEventStore()
    for user, video in likes:
        event = make_event("like", user_id=user, video_id=video, occurred_at=START)
        events.append(event, creator_id=1 + video % CREATORS)
    seen_store = InMemorySeenStore()
    if seen:
        seen_store.mark_seen(1, list(seen), START - timedelta(hours=1))
    return catalog, events, seen_store


def _first_page(world: tuple[Any, Any, Any], limit: int, **config: Any) -> Any:
    """User 1's first page from a service on ``world``'s stores, called on worker threads."""
    catalog, events, seen = world
    clock = ManualClock(START)
    with FeedRankingService(
        catalog=catalog,
        events=events,
        seen=seen,
        cache=None,
        config=FeedServiceConfig(
            inline_self_bounded_stores=False,
            refresh_pool_in_background=False,
            cursor_secret="a-test-secret-of-some-length",
            deadlines=StoreDeadlines(catalog=30, events=30, seen=30, models=30, cache=30),
            **config,
        ),
        clock=clock.now,
        monotonic=clock.monotonic,
    ) as service:
        return service.feed(1, limit)


def _pages(parallel: bool, world: tuple[Any, Any, Any], recent_limit: int) -> list[Any]:
    page = _first_page(world, 50, parallel_user_reads=parallel, recent_limit=recent_limit)
    return [(item.video_id, item.score, dict(item.breakdown)) for item in page.items] + [
        page.degraded
    ]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    videos=st.integers(1, 60),
    follows=st.sets(st.integers(1, CREATORS), max_size=CREATORS),
    likes=st.lists(st.tuples(st.integers(1, 2), st.integers(1, 60)), max_size=20),
    seen=st.sets(st.integers(1, 60), max_size=30),
    recent_limit=st.integers(0, 40),
)
def test_parallel_reads_rank_what_sequential_reads_rank(
    videos: int,
    follows: set[int],
    likes: list[tuple[int, int]],
    seen: set[int],
    recent_limit: int,
) -> None:
    likes = [(user, video) for user, video in likes if video <= videos]
    # A small recent_limit leaves followed videos, and their creators, outside the
    # shared pool: their affinities are the second read of the parallel path.
    parallel = _pages(True, _world(videos, sorted(follows), likes, sorted(seen)), recent_limit)
    sequential = _pages(False, _world(videos, sorted(follows), likes, sorted(seen)), recent_limit)
    assert parallel == sequential


class _Meeting:
    """Store methods that return only once ``parties`` of them run at the same time."""

    def __init__(self, parties: int) -> None:
        self.barrier = threading.Barrier(parties, timeout=10.0)

    def wrap(self, method: Any) -> Any:
        def met(*args: Any, **kwargs: Any) -> Any:
            self.barrier.wait()
            return method(*args, **kwargs)

        met.__name__ = method.__name__
        return met


def test_the_three_user_reads_run_at_the_same_time() -> None:
    catalog, events, seen = _world(30, [2, 3], [(1, 4)], [5])
    meeting = _Meeting(3)
    catalog.followed_columns = meeting.wrap(catalog.followed_columns)  # type: ignore[method-assign]
    events.get_affinities = meeting.wrap(events.get_affinities)  # type: ignore[method-assign]
    seen.recently_seen = meeting.wrap(seen.recently_seen)  # type: ignore[method-assign]
    # Read one after the other, the first read would wait for the barrier alone and
    # break it (BrokenBarrierError after 10 s).
    page = _first_page((catalog, events, seen), 10)
    assert len(page.items) == 10 and not page.degraded
    assert 5 not in [item.video_id for item in page.items]


def _guard(deadline: float, *, threshold: int = 5) -> DependencyGuard:
    return DependencyGuard(
        "seen",
        pool=WorkerPool(4),
        breaker=CircuitBreaker("seen", failure_threshold=threshold),
        deadline_seconds=deadline,
        max_stalled=2,
    )


def test_a_started_call_returns_before_the_store_answers() -> None:
    guard = _guard(30.0)
    release = threading.Event()
    pending = guard.start(lambda: release.wait(30.0) and "answered")
    assert not release.is_set()
    release.set()
    assert pending.result() == "answered"
    assert guard.stats.calls == 1 and guard.stats.timeouts == 0


def test_a_started_calls_deadline_counts_from_its_start() -> None:
    guard = _guard(0.2)
    release = threading.Event()
    pending = guard.start(release.wait, 30.0)
    # Waited for after its whole deadline: no further wait, a timeout at once.
    time.sleep(0.4)
    with pytest.raises(StoreTimeoutError):
        pending.result()
    release.set()
    assert guard.stats.timeouts == 1


def test_a_refused_call_raises_from_its_result() -> None:
    guard = _guard(30.0, threshold=1)

    def failing() -> None:
        raise StoreTimeoutError("seen", "socket timeout")

    with pytest.raises(StoreTimeoutError):
        guard.start(failing).result()
    pending = guard.start(lambda: "never called")
    with pytest.raises(Exception, match="circuit open"):
        pending.result()
    assert guard.stats.rejected == 1


def test_the_default_is_parallel() -> None:
    assert FeedServiceConfig().parallel_user_reads is True
