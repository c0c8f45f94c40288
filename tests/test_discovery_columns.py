"""Trending and creator recommendations read the engagement window as columns; their
results equal those of the row-by-row computation they replaced, kept here as the
reference, on generated catalogs and event streams."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reelrank import (
    ENGAGEMENT_KINDS,
    CreatorRecommender,
    CreatorRecommenderConfig,
    EngagementKind,
    EngagementWindow,
    InMemoryCatalog,
    InMemoryEngagementLog,
    InMemoryEventStore,
    InvalidInputError,
    Trend,
    Trending,
    TrendingConfig,
    TrendingItem,
    TrendingKind,
    TrendingSnapshot,
    Video,
    decayed_scores,
    epoch_microseconds,
)
from reelrank.discovery._creators import _AudienceGraph, _profile_keys
from reelrank.testing import EPOCH, make_creator, make_event, make_video

NOW = EPOCH + timedelta(days=40)


# -- the reference: the row-by-row computations as they were -------------------------


def _keys_of(video: Video, kind: TrendingKind) -> tuple[int | str, ...]:
    if kind is TrendingKind.SOUND:
        return () if video.sound_id is None else (video.sound_id,)
    return video.hashtags


def _trend(score: float, previous: float, tolerance: float) -> Trend:
    if previous == 0.0:
        return Trend.NEW
    ratio = score / previous
    if ratio > 1.0 + tolerance:
        return Trend.RISING
    if ratio < 1.0 - tolerance:
        return Trend.FALLING
    return Trend.STEADY


class ReferenceTrending(Trending):
    """Trending as computed from one event model per row, in Python."""

    def _compute(self, kind: TrendingKind, now: datetime, window: float) -> TrendingSnapshot:
        config = self._config
        span = timedelta(hours=window)
        previous_end = now - span
        start = previous_end - span
        events = self._log.events_between(
            start, now + timedelta(microseconds=1), limit=config.max_events
        )
        posts = [
            video
            for video in self._catalog.recent_videos(limit=config.max_videos, since=start)
            if video.published_at <= now
        ]
        videos = self._catalog.get_videos(sorted({event.video_id for event in events}))
        weights = {event_kind: config.weight_of(event_kind) for event_kind in EngagementKind}
        uses: list[tuple[datetime, float, int | str]] = []
        for post in posts:
            for key in _keys_of(post, kind):
                uses.append((post.published_at, config.post_weight, key))
        for event in events:
            video = videos.get(event.video_id)
            if video is None:
                continue
            for key in _keys_of(video, kind):
                uses.append((event.occurred_at, weights[event.kind], key))

        def score(
            part: list[tuple[datetime, float, int | str]], end: datetime
        ) -> dict[int | str, float]:
            if not part:
                return {}
            return decayed_scores(
                [use[2] for use in part],
                np.array([use[1] for use in part], dtype=np.float64),
                np.array([(end - use[0]).total_seconds() / 3600.0 for use in part]),
                config.half_life_hours,
            )

        current = [use for use in uses if use[0] > previous_end]
        previous = [use for use in uses if start < use[0] <= previous_end]
        scores = score(current, now)
        previous_scores = score(previous, previous_end)
        counts = Counter(key for _, _, key in current)
        items = []
        for key, value in scores.items():
            before = previous_scores.get(key, 0.0)
            items.append(
                TrendingItem(
                    key=key,
                    score=value,
                    count=counts[key],
                    previous_score=before,
                    delta=value - before,
                    ratio=value / before if before > 0.0 else None,
                    trend=_trend(value, before, config.steady_tolerance),
                )
            )
        items.sort(key=lambda item: (-item.score, str(item.key)))
        return TrendingSnapshot(
            kind=kind,
            window_hours=window,
            computed_at=now,
            items=tuple(items[: config.snapshot_size]),
        )


class ReferenceCreators(CreatorRecommender):
    """Creator recommendations over an audience graph built from event models."""

    def _build_graph(self, now: datetime) -> _AudienceGraph:
        config = self._config
        since = now - timedelta(days=config.lookback_days)
        window = self._log.events_between(
            since, now + timedelta(microseconds=1), limit=config.max_window_events
        )
        recent = self._catalog.recent_videos(limit=config.max_recent_videos, since=since)
        videos = {video.video_id: video for video in recent}
        videos.update(
            self._catalog.get_videos(sorted({e.video_id for e in window} - videos.keys()))
        )
        audiences: dict[int, set[int]] = {}
        creators_of_user: dict[int, set[int]] = {}
        for event in window:
            video = videos.get(event.video_id)
            if video is None:
                continue
            audiences.setdefault(video.creator_id, set()).add(event.user_id)
            creators_of_user.setdefault(event.user_id, set()).add(video.creator_id)
        creator_profiles: dict[int, Counter[str]] = {}
        videos_by_creator: dict[int, list[int]] = {}
        for video in videos.values():
            creator_profiles.setdefault(video.creator_id, Counter()).update(_profile_keys(video))
            videos_by_creator.setdefault(video.creator_id, []).append(video.video_id)
        return _AudienceGraph(
            built_at=now,
            videos=videos,
            audiences={creator: frozenset(users) for creator, users in audiences.items()},
            creators_of_user={
                user: frozenset(creators) for user, creators in creators_of_user.items()
            },
            creator_profiles=creator_profiles,
            videos_by_creator=videos_by_creator,
        )


# -- generated worlds -----------------------------------------------------------------

CREATORS = range(1, 6)
HASHTAGS = ("a", "b", "c", "d")
# Hours before NOW: window edges of 1, 6.5 and 24 hours (and twice them) are hit
# exactly, and a microsecond either side of some of them.
AGES = st.one_of(
    st.sampled_from([0.0, 1.0, 2.0, 6.5, 13.0, 24.0, 48.0, 24 * 30.0]),
    st.floats(-1.0, 24 * 35.0, allow_nan=False),
)
MICROSECONDS = st.sampled_from([0, 0, 0, 1, -1])

videos_strategy = st.lists(
    st.tuples(
        st.integers(1, 14),  # video id
        st.sampled_from(CREATORS),
        st.one_of(st.none(), st.integers(1, 4)),  # sound
        st.lists(st.sampled_from(HASHTAGS), max_size=3, unique=True),
        AGES,  # published hours before NOW
    ),
    max_size=14,
    unique_by=lambda row: row[0],
)
events_strategy = st.lists(
    st.tuples(
        st.integers(1, 6),  # user
        st.integers(1, 16),  # video: 15 and 16 are never in the catalog
        st.sampled_from([kind.value for kind in EngagementKind]),
        AGES,
        MICROSECONDS,
    ),
    max_size=60,
)


def build_world(
    videos: list[tuple[int, int, int | None, list[str], float]],
    events: list[tuple[int, int, str, float, int]],
) -> tuple[InMemoryCatalog, InMemoryEventStore, InMemoryEngagementLog]:
    catalog = InMemoryCatalog()
    store = InMemoryEventStore()
    log = InMemoryEngagementLog()
    for creator_id in CREATORS:
        catalog.put_creator(make_creator(creator_id))
    for video_id, creator_id, sound, hashtags, age in videos:
        catalog.put_video(
            make_video(
                video_id, creator_id, published_at=NOW - timedelta(hours=age),
                sound_id=sound, hashtags=tuple(hashtags),
            )
        )  # fmt: skip
    known = {video_id: creator_id for video_id, creator_id, *_ in videos}
    for number, (user_id, video_id, kind, age, micros) in enumerate(events):
        # Ids whose order differs from recording order, so ties in time are decided by id.
        event = make_event(
            kind, user_id=user_id, video_id=video_id,
            event_id=f"e{(number * 7919) % 1000:03d}-{number}",
            occurred_at=NOW - timedelta(hours=age, microseconds=micros),
        )  # fmt: skip
        log.record(event)
        if video_id in known:
            store.append(event, creator_id=known[video_id])
    return catalog, store, log


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    videos=videos_strategy,
    events=events_strategy,
    window=st.sampled_from([1.0, 6.5, 24.0]),
    half_life=st.floats(0.5, 48.0),
    max_events=st.integers(1, 80),
    unlike_weight=st.sampled_from([0.0, 0.5]),
)
def test_trending_equals_the_row_by_row_computation(
    videos: list[tuple[int, int, int | None, list[str], float]],
    events: list[tuple[int, int, str, float, int]],
    window: float,
    half_life: float,
    max_events: int,
    unlike_weight: float,
) -> None:
    catalog, _, log = build_world(videos, events)
    config = TrendingConfig(
        half_life_hours=half_life, max_events=max_events, unlike_weight=unlike_weight,
        reuse_seconds=0.0, snapshot_size=50,
    )  # fmt: skip
    columns = Trending(catalog, log, config=config)
    reference = ReferenceTrending(catalog, log, config=config)
    for kind in TrendingKind:
        got = columns.top(kind, now=NOW, window_hours=window, limit=50)
        assert got == reference.top(kind, now=NOW, window_hours=window, limit=50)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    videos=videos_strategy,
    events=events_strategy,
    lookback_days=st.sampled_from([1.0, 30.0]),
    max_window_events=st.integers(1, 80),
    follows=st.sets(st.sampled_from(CREATORS)),
)
def test_creator_recommendations_equal_the_row_by_row_computation(
    videos: list[tuple[int, int, int | None, list[str], float]],
    events: list[tuple[int, int, str, float, int]],
    lookback_days: float,
    max_window_events: int,
    follows: set[int],
) -> None:
    catalog, store, log = build_world(videos, events)
    for creator_id in follows:
        catalog.follow(1, creator_id)
    config = CreatorRecommenderConfig(
        lookback_days=lookback_days, max_window_events=max_window_events,
        graph_refresh_seconds=0.0,
    )  # fmt: skip
    columns = CreatorRecommender(catalog, store, log, config=config)
    reference = ReferenceCreators(catalog, store, log, config=config)
    for user_id in range(1, 8):
        got = columns.recommend(user_id, now=NOW, limit=10)
        assert got == reference.recommend(user_id, now=NOW, limit=10)


# -- the window type ------------------------------------------------------------------


def test_a_window_from_events_holds_their_columns_in_order() -> None:
    later = make_event("share", user_id=2, video_id=9, occurred_at=EPOCH + timedelta(seconds=1.5))
    earlier = make_event("unlike", user_id=3, video_id=8, occurred_at=EPOCH)
    window = EngagementWindow.from_events([later, earlier])
    assert window.video_ids.tolist() == [9, 8]
    assert window.user_ids.tolist() == [2, 3]
    assert [ENGAGEMENT_KINDS[code] for code in window.kinds.tolist()] == ["share", "unlike"]
    # 2026-01-01 is 20,454 days after 1970-01-01.
    epoch_us = 20_454 * 86_400_000_000
    assert window.occurred_us.tolist() == [epoch_us + 1_500_000, epoch_us]
    assert epoch_microseconds(EPOCH) == epoch_us
    assert len(window) == 2
    assert not window.video_ids.flags.writeable


def test_a_window_from_arrays_is_validated_and_copied() -> None:
    videos = np.array([5, 6])
    window = EngagementWindow.from_arrays(
        video_ids=videos, user_ids=[1, 2], kinds=[0, 4], occurred_us=[10, 9]
    )
    videos[0] = 99
    assert window.video_ids.tolist() == [5, 6]
    assert window == EngagementWindow.from_arrays(
        video_ids=[5, 6], user_ids=[1, 2], kinds=[0, 4], occurred_us=[10, 9]
    )
    empty = EngagementWindow.from_arrays(video_ids=[], user_ids=[], kinds=[], occurred_us=[])
    assert len(empty) == 0 and empty == EngagementWindow.from_events([])
    bad = {"video_ids": [1], "user_ids": [1], "kinds": [0], "occurred_us": [0]}
    for field, value in [
        ("video_ids", [0]), ("user_ids", [2**63]), ("kinds", [5]), ("kinds", [-1]),
        ("occurred_us", [1.5]), ("kinds", [1.5]), ("kinds", ["like"]), ("kinds", [300]),
        ("user_ids", [1, 2]), ("video_ids", [[1]]),
    ]:  # fmt: skip
        with pytest.raises(InvalidInputError) as caught:
            EngagementWindow.from_arrays(**{**bad, field: value})
        assert caught.value.field == field, (field, value)
    with pytest.raises(InvalidInputError) as caught:
        epoch_microseconds(EPOCH.replace(tzinfo=None))
    assert caught.value.field == "at"
