"""A cache-miss feed reads the followed videos and their stats in one call when the catalog
can (:class:`~reelrank.FollowedCandidatesCatalog`), and ranks what the two reads rank.

The catalog here builds the columns from its own ``followed_videos`` and the event
store's ``stats_columns``, the protocol's definition, so the reference for every page
is the same service over a plain catalog.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from reelrank import (
    NO_SOUND_ID,
    EventStore,
    FeedObserver,
    FollowedCandidatesCatalog,
    FollowedColumnsCatalog,
    FollowedVideoColumns,
    InvalidInputError,
    StoreError,
    VideoStatsColumns,
)
from reelrank._kernels._diversity import NO_SOUND
from reelrank.feed import FeedRankingService, FeedServiceConfig, StoreDeadlines
from reelrank.stores import (
    InMemoryCatalog,
    InMemoryEventStore,
    InMemoryFeedCache,
    InMemorySeenStore,
)
from reelrank.testing import (
    EPOCH,
    FollowedCandidatesCatalogContract,
    ManualClock,
    make_creator,
    make_event,
    make_video,
)

START = EPOCH + timedelta(days=2)
CREATORS = 8


class _ColumnsCatalog(InMemoryCatalog):
    """An in-memory catalog that reads ``events``'s statistics beside its followed videos."""

    def __init__(self, events: EventStore) -> None:
        super().__init__()
        self.events = events
        self.calls = 0
        self.fail = False

    def reads_stats_of(self, events: EventStore) -> bool:
        return events is self.events

    def followed_candidates(self, user_id: int, *, limit: int) -> FollowedVideoColumns:
        self.calls += 1
        if self.fail:
            raise StoreError("catalog", "connection reset")
        videos = self.followed_videos(user_id, limit=limit)
        ids = [video.video_id for video in videos]
        return FollowedVideoColumns.from_arrays(
            video_ids=np.array(ids, dtype=np.int64),
            creator_ids=[video.creator_id for video in videos],
            sound_ids=[NO_SOUND_ID if v.sound_id is None else v.sound_id for v in videos],
            published_at=[video.published_at.timestamp() for video in videos],
            stats=self.events.stats_columns(ids),
        )


class TestReferenceCatalog(FollowedCandidatesCatalogContract):
    @pytest.fixture
    def event_store(self) -> InMemoryEventStore:
        return InMemoryEventStore()

    @pytest.fixture
    def catalog(self, event_store: InMemoryEventStore) -> _ColumnsCatalog:
        return _ColumnsCatalog(event_store)


def _world(
    catalog: InMemoryCatalog,
    events: InMemoryEventStore,
    videos: int,
    follows: list[int],
    engagement: list[tuple[str, int, int]],
) -> tuple[InMemoryCatalog, InMemoryEventStore, InMemorySeenStore]:
    for creator in range(1, CREATORS + 1):
        catalog.put_creator(make_creator(creator))
    for video in range(1, videos + 1):
        catalog.put_video(
            make_video(
                video,
                1 + video % CREATORS,
                published_at=START - timedelta(minutes=7 * video),
                sound_id=None if video % 4 == 0 else 100 + video % 3,
            )
        )
    for creator in follows:
        catalog.follow(1, creator)
    for kind, user, video in engagement:
        extra = {"completion": 0.25 + 0.5 * (video % 2)} if kind == "watch" else {}
        event = make_event(kind, user_id=user, video_id=video, occurred_at=START, **extra)
        events.append(event, creator_id=1 + video % CREATORS)
    return catalog, events, InMemorySeenStore()


def _page(
    world: tuple[Any, Any, Any], observer: FeedObserver | None = None, **config: Any
) -> list[Any]:
    catalog, events, seen = world
    clock = ManualClock(START)
    with FeedRankingService(
        catalog=catalog,
        events=events,
        seen=seen,
        cache=None,
        config=FeedServiceConfig(
            refresh_pool_in_background=False,
            cursor_secret="a-test-secret-of-some-length",
            deadlines=StoreDeadlines(catalog=30, events=30, seen=30, models=30, cache=30),
            **config,
        ),
        clock=clock.now,
        monotonic=clock.monotonic,
        observer=observer,
    ) as service:
        page = service.feed(1, 50)
    return [(item.video_id, item.score, dict(item.breakdown)) for item in page.items] + [
        page.degraded
    ]


_ENGAGEMENT = st.lists(
    st.tuples(
        st.sampled_from(["watch", "like", "share", "comment"]),
        st.integers(1, 3),  # user
        st.integers(1, 60),  # video
    ),
    max_size=30,
)
"""Engagement of the random worlds: (kind, user, video) in the order it happens."""


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    videos=st.integers(1, 60),
    follows=st.sets(st.integers(1, CREATORS), max_size=CREATORS),
    engagement=_ENGAGEMENT,
    recent_limit=st.integers(0, 40),
    parallel=st.booleans(),
)
def test_one_read_ranks_what_the_two_reads_rank(
    videos: int,
    follows: set[int],
    engagement: list[tuple[str, int, int]],
    recent_limit: int,
    parallel: bool,
) -> None:
    engagement = [(kind, user, video) for kind, user, video in engagement if video <= videos]
    # A small recent_limit leaves followed videos outside the shared pool (and no popular
    # videos in it, which would hold every watched one): their stats come from the one read.
    config = {"recent_limit": recent_limit, "popular_limit": 0, "parallel_user_reads": parallel}
    events = InMemoryEventStore()
    columns_catalog = _ColumnsCatalog(events)
    one_read = _page(_world(columns_catalog, events, videos, sorted(follows), engagement), **config)
    two_reads = _page(
        _world(_VideosOnlyCatalog(), InMemoryEventStore(), videos, sorted(follows), engagement),
        **config,
    )
    assert one_read == two_reads
    assert columns_catalog.calls == 1


class _Operations(FeedObserver):
    """The store calls a service made, as ``store.operation``."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def store_call(self, store: str, operation: str, seconds: float, outcome: str) -> None:
        self.calls.append(f"{store}.{operation}")


def test_a_miss_makes_one_followed_read_and_no_stats_read_of_its_own() -> None:
    events = InMemoryEventStore()
    catalog = _ColumnsCatalog(events)
    observer = _Operations()
    # The pool's 5 newest videos leave most followed videos outside it.
    _page(
        _world(catalog, events, 40, [2, 3], [("like", 2, 3)]),
        observer=observer,
        recent_limit=5,
        popular_limit=0,
    )
    assert catalog.calls == 1
    assert observer.calls.count("catalog.followed_candidates") == 1
    assert "catalog.followed_videos" not in observer.calls
    assert observer.calls.count("events.stats_columns") == 1  # the pool's


def test_a_catalog_reading_other_stats_reads_columns_then_the_event_stores_stats() -> None:
    events = InMemoryEventStore()
    catalog = _ColumnsCatalog(InMemoryEventStore())  # another event store's statistics
    observer = _Operations()
    _page(
        _world(catalog, events, 40, [2, 3], [("like", 2, 3)]),
        observer=observer,
        recent_limit=5,
        popular_limit=0,
    )
    assert catalog.calls == 0
    assert observer.calls.count("catalog.followed_columns") == 1
    assert "catalog.followed_videos" not in observer.calls
    # The pool's stats, then the followed videos' stats.
    assert observer.calls.count("events.stats_columns") == 2


class _VideosOnlyCatalog(InMemoryCatalog):
    """An in-memory catalog without the columnar followed read: a miss reads
    ``followed_videos`` (a :class:`Video` per row) and then ``stats_columns``."""

    # None opts out of the runtime-checked protocol, as ``__hash__ = None`` does of hashing.
    followed_columns = None  # type: ignore[assignment]


class _FailingStats(InMemoryEventStore):
    """An event store whose ``stats_columns`` fails from the ``fail_after``-th call on."""

    def __init__(self, fail_after: int | None) -> None:
        super().__init__()
        self.fail_after = fail_after
        self.stats_calls = 0

    def stats_columns(self, video_ids: Any) -> VideoStatsColumns:
        self.stats_calls += 1
        if self.fail_after is not None and self.stats_calls > self.fail_after:
            raise StoreError("events", "connection reset")
        return super().stats_columns(video_ids)


def test_a_catalog_without_the_columns_read_is_asked_as_before() -> None:
    events = InMemoryEventStore()
    catalog = _VideosOnlyCatalog()
    assert not isinstance(catalog, FollowedColumnsCatalog)
    observer = _Operations()
    _page(
        _world(catalog, events, 40, [2, 3], [("like", 2, 3)]),
        observer=observer,
        recent_limit=5,
        popular_limit=0,
    )
    assert observer.calls.count("catalog.followed_videos") == 1
    assert observer.calls.count("events.stats_columns") == 2


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    videos=st.integers(1, 60),
    follows=st.sets(st.integers(1, CREATORS), max_size=CREATORS),
    engagement=_ENGAGEMENT,
    # Mostly a small pool and no popular videos (which would hold every watched one), so
    # that engaged followed videos fall outside the pool and take their stats from the
    # followed read; sometimes no followed read, sometimes a failing stats read.
    recent_limit=st.integers(0, 15),
    popular_limit=st.sampled_from([0, 0, 0, 5]),
    followed_limit=st.sampled_from([30, 30, 30, 10, 3, 0]),
    parallel=st.booleans(),
    stats_fail_after=st.sampled_from([None, None, None, 0, 1]),
)
# Engaged followed videos outside the pool, their stats read after the followed read.
@example(
    videos=40,
    follows=set(range(1, CREATORS + 1)),
    engagement=[("like", 2, 11), ("watch", 1, 10), ("share", 2, 9), ("comment", 3, 29)],
    recent_limit=5,
    popular_limit=0,
    followed_limit=30,
    parallel=False,
    stats_fail_after=None,
)
def test_the_columns_read_ranks_what_the_videos_read_ranks(
    videos: int,
    follows: set[int],
    engagement: list[tuple[str, int, int]],
    recent_limit: int,
    popular_limit: int,
    followed_limit: int,
    parallel: bool,
    stats_fail_after: int | None,
) -> None:
    """Same items, scores, breakdowns and degraded report from ``followed_columns`` joined
    to the event store's statistics as from ``followed_videos`` and ``stats_columns``,
    also when the pool's or the followed videos' statistics read fails."""
    # Counted from the oldest video: hypothesis favours small numbers, and the oldest
    # videos are the ones outside a small pool.
    engagement = [
        (kind, user, videos + 1 - video) for kind, user, video in engagement if video <= videos
    ]
    config = {
        "recent_limit": recent_limit,
        "popular_limit": popular_limit,
        "followed_limit": followed_limit,
        "parallel_user_reads": parallel,
    }
    columns_catalog = InMemoryCatalog()
    observer = _Operations()
    columns_read = _page(
        _world(
            columns_catalog,
            _FailingStats(stats_fail_after),
            videos,
            sorted(follows),
            engagement,
        ),
        observer=observer,
        **config,
    )
    videos_read = _page(
        _world(
            _VideosOnlyCatalog(),
            _FailingStats(stats_fail_after),
            videos,
            sorted(follows),
            engagement,
        ),
        **config,
    )
    assert columns_read == videos_read
    assert "catalog.followed_videos" not in observer.calls
    assert observer.calls.count("catalog.followed_columns") == (1 if followed_limit else 0)


def test_a_failed_read_serves_the_pool_without_followed_videos() -> None:
    events = InMemoryEventStore()
    catalog = _ColumnsCatalog(events)
    world = _world(catalog, events, 40, [2, 3], [])
    catalog.fail = True
    page = _page(world, recent_limit=5, popular_limit=0)
    ids = [entry[0] for entry in page[:-1]]
    assert sorted(ids) == [1, 2, 3, 4, 5]
    assert [(entry.dependency, entry.fallback) for entry in page[-1]] == [
        ("catalog", "without followed creators' videos")
    ]


def test_no_sound_is_the_diversity_kernels_no_sound() -> None:
    assert NO_SOUND_ID == NO_SOUND


def _stats(ids: list[int]) -> VideoStatsColumns:
    zeros = [0] * len(ids)
    return VideoStatsColumns.from_arrays(
        video_ids=ids, views=zeros, completion_sum=zeros, likes=zeros, shares=zeros, comments=zeros
    )


def _columns(**overrides: Any) -> FollowedVideoColumns:
    fields: dict[str, Any] = {
        "video_ids": [3, 1],
        "creator_ids": [1, 2],
        "sound_ids": [NO_SOUND_ID, 7],
        "published_at": [2.0, 1.0],
        "stats": _stats([3, 1]),
    }
    fields.update(overrides)
    return FollowedVideoColumns.from_arrays(**fields)


def test_columns_are_copied_and_read_only() -> None:
    ids = np.array([3, 1], dtype=np.int64)
    columns = _columns(video_ids=ids)
    ids[0] = 9
    assert columns.video_ids.tolist() == [3, 1]
    assert not columns.published_at.flags.writeable
    assert columns == _columns() and len(columns) == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("video_ids", [0, 1]),
        ("video_ids", [3, 3]),
        ("video_ids", [[3, 1]]),
        ("creator_ids", [1]),
        ("creator_ids", [1, 0]),
        ("sound_ids", [-2, 7]),
        ("sound_ids", ["x", 7]),
        ("published_at", [float("nan"), 1.0]),
        ("stats", _stats([1, 3])),
        ("stats", {"3": 0}),
    ],
)
def test_bad_columns_raise_invalid_input_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(InvalidInputError) as info:
        _columns(**{field: value})
    assert info.value.field == field


def test_the_protocol_is_runtime_checkable() -> None:
    assert isinstance(_ColumnsCatalog(InMemoryEventStore()), FollowedCandidatesCatalog)
    assert not isinstance(InMemoryCatalog(), FollowedCandidatesCatalog)


def _snapshot(world: tuple[Any, Any, Any], *, warm: bool, observer: FeedObserver) -> Any:
    """The snapshot a cache miss of user 1 ranks (``warm`` false) or warming ranks."""
    catalog, events, seen = world
    clock = ManualClock(START)
    cache = InMemoryFeedCache()
    with FeedRankingService(
        catalog=catalog,
        events=events,
        seen=seen,
        cache=cache,
        config=FeedServiceConfig(
            refresh_pool_in_background=False,
            cursor_secret="a-test-secret-of-some-length",
            recent_limit=5,
            popular_limit=0,
        ),
        clock=clock.now,
        monotonic=clock.monotonic,
        observer=observer,
    ) as service:
        if warm:
            assert service.warm([1]) == 1
        else:
            service.feed(1, 10)
    snapshot = cache.get(1)
    assert snapshot is not None
    return snapshot


def test_warming_ranks_what_a_miss_ranks_with_its_bulk_reads() -> None:
    """Warming reads a batch's followed videos with one ``followed_videos_many`` and their
    statistics with one ``stats_columns``, not ``followed_candidates`` per user (one call
    per user, and a model-score read per user): the same columns, ranked the same."""
    engagement = [("watch", 2, 3), ("like", 2, 11), ("share", 3, 20), ("comment", 2, 33)]
    events = InMemoryEventStore()
    catalog = _ColumnsCatalog(events)
    missed = _snapshot(
        _world(catalog, events, 40, [2, 3, 5], engagement), warm=False, observer=_Operations()
    )
    assert catalog.calls == 1
    events = InMemoryEventStore()
    catalog = _ColumnsCatalog(events)
    observer = _Operations()
    warmed = _snapshot(
        _world(catalog, events, 40, [2, 3, 5], engagement), warm=True, observer=observer
    )
    assert catalog.calls == 0
    assert observer.calls.count("catalog.bulk_catalog") == 1  # the batch's followed videos
    assert observer.calls.count("events.bulk_stats") == 1  # and their statistics
    assert (warmed.video_ids, warmed.scores) == (missed.video_ids, missed.scores)
    assert len(missed.video_ids) > 5  # followed videos outside the 5-video pool are ranked
