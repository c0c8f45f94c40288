"""A user's affinity read reused by the feed service's next rankings of that user
(``FeedServiceConfig.affinity_reuse_seconds``).

The reference is the same service reading the affinities for every ranking (the
default, ``0``): with no event in between, both must rank the same snapshot. Events
are recorded through an :class:`EngagementRecorder` wired to
:meth:`FeedRankingService.forget_affinities`, on in-memory stores and a manual clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reelrank import StoreError
from reelrank.feed import EngagementRecorder, FeedRankingService, FeedServiceConfig
from reelrank.feed._affinity_reuse import AffinityReuse
from reelrank.stores import InMemoryCatalog, InMemoryEventStore, InMemorySeenStore
from reelrank.testing import EPOCH, ManualClock, make_creator, make_event, make_video

START = EPOCH + timedelta(days=2)
CREATORS = 8
SECRET = "a-test-secret-of-some-length"


class _CountedEvents(InMemoryEventStore):
    """The in-memory event store, counting the affinity reads and the creators asked."""

    def __init__(self) -> None:
        super().__init__()
        self.affinity_reads: list[tuple[int, list[int]]] = []
        self.fail_reads = 0
        self.during_read: Any = None

    def get_affinities(self, user_id: int, creator_ids: Sequence[int]) -> dict[int, float]:
        self.affinity_reads.append((user_id, list(creator_ids)))
        if self.fail_reads:
            self.fail_reads -= 1
            raise StoreError("events", "connection refused")
        answer = super().get_affinities(user_id, creator_ids)
        if self.during_read is not None:
            # Runs after the store answered and before the ranking keeps the answer.
            action, self.during_read = self.during_read, None
            action()
        return answer


def _world(
    videos: int, likes: Sequence[tuple[int, int]], seen: Sequence[int]
) -> tuple[InMemoryCatalog, _CountedEvents, InMemorySeenStore]:
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
    events = _CountedEvents()
    for user, video in likes:
        event = make_event("like", user_id=user, video_id=video, occurred_at=START)
        events.append(event, creator_id=1 + video % CREATORS)
    seen_store = InMemorySeenStore()
    if seen:
        seen_store.mark_seen(1, list(seen), START - timedelta(hours=1))
    return catalog, events, seen_store


def _service(world: tuple[Any, Any, Any], clock: ManualClock, **config: Any) -> FeedRankingService:
    catalog, events, seen = world
    return FeedRankingService(
        catalog=catalog,
        events=events,
        seen=seen,
        cache=None,
        config=FeedServiceConfig(
            refresh_pool_in_background=False,
            cursor_secret=SECRET,
            **config,
        ),
        clock=clock.now,
        monotonic=clock.monotonic,
    )


def _recorder(world: tuple[Any, Any, Any], service: FeedRankingService) -> EngagementRecorder:
    catalog, events, _ = world
    return EngagementRecorder(catalog, events, on_user_event=service.forget_affinities)


def _items(page: Any) -> list[Any]:
    return [(item.video_id, item.score, dict(item.breakdown)) for item in page.items] + [
        page.degraded
    ]


def _two_rankings(
    world: tuple[Any, Any, Any], *, reuse: float, parallel: bool, gap: float
) -> list[list[Any]]:
    """User 1's first page twice, ``gap`` seconds apart (no cache: each is ranked)."""
    clock = ManualClock(START)
    with _service(
        world, clock, affinity_reuse_seconds=reuse, parallel_user_reads=parallel
    ) as service:
        first = _items(service.feed(1, 5))
        clock.advance(gap)
        return [first, _items(service.feed(1, 5))]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    videos=st.integers(1, 40),
    likes=st.lists(st.tuples(st.integers(1, 2), st.integers(1, 40)), max_size=20),
    seen=st.sets(st.integers(1, 40), max_size=20),
    parallel=st.booleans(),
    gap=st.floats(0.0, 29.0),
)
def test_a_reused_read_ranks_what_a_fresh_read_ranks(
    videos: int, likes: list[tuple[int, int]], seen: set[int], parallel: bool, gap: float
) -> None:
    likes = [(user, video) for user, video in likes if video <= videos]
    reusing = _world(videos, likes, sorted(seen))
    fresh = _world(videos, likes, sorted(seen))
    assert _two_rankings(reusing, reuse=30.0, parallel=parallel, gap=gap) == _two_rankings(
        fresh, reuse=0.0, parallel=parallel, gap=gap
    )
    # The fresh service read twice; the reusing one once, for the same creators.
    assert len(fresh[1].affinity_reads) == 2
    assert reusing[1].affinity_reads == fresh[1].affinity_reads[:1]


def test_the_second_ranking_within_the_bound_makes_no_affinity_read() -> None:
    world = _world(30, [(1, 4)], [])
    clock = ManualClock(START)
    with _service(world, clock, affinity_reuse_seconds=30.0) as service:
        service.feed(1, 5)
        clock.advance(29.9)
        service.feed(1, 5)
        assert len(world[1].affinity_reads) == 1
        # At the bound the read is too old: the next ranking reads again.
        clock.advance(0.1)
        service.feed(1, 5)
        assert len(world[1].affinity_reads) == 2


def _ranking_after_a_like(reuse: float) -> tuple[list[Any], int]:
    """User 1's second page after they liked a video of their first; the reads made."""
    world = _world(60, [], [])
    clock = ManualClock(START)
    with _service(world, clock, affinity_reuse_seconds=reuse) as service:
        first = service.feed(1, 10)
        assert all(item.breakdown["affinity"] == 0.0 for item in first.items)
        liked = first.items[-1].video_id
        _recorder(world, service).like(1, liked, event_id="like-1", occurred_at=START)
        clock.advance(1.0)
        second = service.feed(1, 10)
    return _items(second), len(world[1].affinity_reads)


def test_an_event_recorded_here_makes_the_next_ranking_read_again() -> None:
    reusing, reads = _ranking_after_a_like(30.0)
    fresh, _ = _ranking_after_a_like(0.0)
    assert reads == 2
    assert reusing == fresh
    # The like's credit counts at once (the liked creator's other videos have it).
    assert any(breakdown["affinity"] > 0.0 for _, _, breakdown in reusing[:-1])


def test_an_event_of_another_user_keeps_the_read() -> None:
    world = _world(30, [], [])
    clock = ManualClock(START)
    with _service(world, clock, affinity_reuse_seconds=30.0) as service:
        service.feed(1, 5)
        _recorder(world, service).like(2, 3, event_id="like-2", occurred_at=START)
        service.feed(1, 5)
    assert [user for user, _ in world[1].affinity_reads] == [1]


def test_a_read_under_way_when_an_event_is_recorded_is_not_kept() -> None:
    world = _world(30, [], [])
    clock = ManualClock(START)
    with _service(world, clock, affinity_reuse_seconds=30.0) as service:
        recorder = _recorder(world, service)
        # The like lands after the store answered the first ranking's read, before the
        # ranking keeps it: that read lacks the like's credit.
        world[1].during_read = lambda: recorder.like(1, 3, event_id="like-1", occurred_at=START)
        service.feed(1, 5)
        service.feed(1, 5)
    assert len(world[1].affinity_reads) == 2


def test_a_failed_read_is_reported_and_not_kept() -> None:
    world = _world(30, [(1, 4)], [])
    world[1].fail_reads = 1
    clock = ManualClock(START)
    with _service(world, clock, affinity_reuse_seconds=30.0) as service:
        failed = service.feed(1, 5)
        assert [entry.dependency for entry in failed.degraded] == ["affinity"]
        recovered = service.feed(1, 5)
        assert not recovered.degraded
        service.feed(1, 5)
    # The failed read, the next (kept), then none.
    assert len(world[1].affinity_reads) == 2


def test_least_recently_used_users_are_dropped_beyond_the_bound() -> None:
    world = _world(30, [], [])
    clock = ManualClock(START)
    with _service(world, clock, affinity_reuse_seconds=30.0, affinity_reuse_max_users=2) as service:
        for user in (1, 2, 1, 3, 1, 2):
            service.feed(user, 5)
    # User 2 was the least recently used when user 3 was kept.
    assert [user for user, _ in world[1].affinity_reads] == [1, 2, 3, 2]


def test_off_by_default_every_ranking_reads() -> None:
    assert FeedServiceConfig().affinity_reuse_seconds == 0.0
    world = _world(30, [], [])
    clock = ManualClock(START)
    with _service(world, clock) as service:
        service.feed(1, 5)
        service.feed(1, 5)
        service.forget_affinities(1)
    assert len(world[1].affinity_reads) == 2


def test_forgetting_checks_the_user_id() -> None:
    world = _world(3, [], [])
    with (
        _service(world, ManualClock(START), affinity_reuse_seconds=30.0) as service,
        pytest.raises(ValueError, match="user_id"),
    ):
        service.forget_affinities(0)


def test_only_the_creators_not_covered_are_read_and_added() -> None:
    clock = ManualClock(START)
    reuse = AffinityReuse(max_age_seconds=30.0, max_users=10, monotonic=clock.monotonic)
    reuse.keep(1, {1: 0.5, 2: 0.0}, reuse.token())
    assert reuse.recall(1, [1, 2, 3]) == ({1: 0.5, 2: 0.0}, [3])
    token = reuse.token()
    clock.advance(20.0)
    reuse.keep(1, {3: 0.25}, token)
    assert reuse.recall(1, [3, 2, 1]) == ({3: 0.25, 2: 0.0, 1: 0.5}, [])
    # The entry ages from its first read: the merged creator goes with it.
    clock.advance(10.0)
    assert reuse.recall(1, [1, 3]) == ({}, [1, 3])


def test_a_forget_between_token_and_keep_drops_only_that_users_read() -> None:
    clock = ManualClock(START)
    reuse = AffinityReuse(max_age_seconds=30.0, max_users=10, monotonic=clock.monotonic)
    token = reuse.token()
    reuse.forget(2)
    reuse.keep(1, {1: 0.5}, token)
    reuse.keep(2, {1: 0.25}, token)
    assert reuse.recall(1, [1]) == ({1: 0.5}, [])
    assert reuse.recall(2, [1]) == ({}, [1])
    # A read that began after the forget is kept.
    reuse.keep(2, {1: 0.25}, reuse.token())
    assert reuse.recall(2, [1]) == ({1: 0.25}, [])


def test_a_read_is_dropped_when_its_users_forget_was_let_go_to_bound_memory() -> None:
    clock = ManualClock(START)
    reuse = AffinityReuse(max_age_seconds=30.0, max_users=2, monotonic=clock.monotonic)
    token = reuse.token()
    for user in (1, 2, 3):  # the third forget lets user 1's go while it is young
        reuse.forget(user)
    for user in (1, 2, 3, 4):
        reuse.keep(user, {1: 0.5}, token)
        assert reuse.recall(user, [1]) == ({}, [1])
    reuse.keep(4, {1: 0.5}, reuse.token())
    assert reuse.recall(4, [1]) == ({1: 0.5}, [])


def test_a_read_that_began_before_an_aged_forget_is_not_merged() -> None:
    clock = ManualClock(START)
    reuse = AffinityReuse(max_age_seconds=30.0, max_users=10, monotonic=clock.monotonic)
    stale = reuse.token()
    clock.advance(1.0)
    reuse.forget(1)
    clock.advance(30.0)
    reuse.forget(2)  # user 1's forget is older than the bound: it is let go
    reuse.keep(1, {2: 0.75}, reuse.token())
    reuse.keep(1, {1: 0.5}, stale)
    assert reuse.recall(1, [1, 2]) == ({2: 0.75}, [1])
