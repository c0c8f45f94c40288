"""Trending over label columns equals trending over one label tuple per video, and
the label columns themselves."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reelrank import (
    NO_SOUND_ID,
    Catalog,
    EngagementLog,
    InMemoryCatalog,
    InMemoryEngagementLog,
    InvalidInputError,
    LabelColumnsCatalog,
    ProcessingState,
    Trending,
    TrendingConfig,
    TrendingItem,
    TrendingKind,
    VideoLabelColumns,
    VideoLabels,
)
from reelrank.discovery._trending import _decayed_totals, _trend
from reelrank.models import ENGAGEMENT_KINDS, epoch_microseconds
from reelrank.testing import EPOCH, make_creator, make_event, make_video

NOW = EPOCH + timedelta(days=30)


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


class LabelRowsCatalog(InMemoryCatalog):
    """An in-memory catalog without the columnar label reads: trending reads its rows."""

    recent_label_columns = None  # type: ignore[assignment]
    label_columns = None  # type: ignore[assignment]


def reference_items(
    catalog: Catalog,
    log: EngagementLog,
    config: TrendingConfig,
    kind: TrendingKind,
    now: datetime,
    window: float,
) -> tuple[TrendingItem, ...]:
    """Trending's items as computed before label columns: a label tuple per video, a
    key code per use assigned in Python, the uses summed by the same decayed totals."""
    span = timedelta(hours=window)
    previous_end = now - span
    start = previous_end - span
    events = log.columns_between(start, now + timedelta(microseconds=1), limit=config.max_events)
    recent = catalog.recent_labels(limit=config.max_videos, since=start)
    posts = [video for video in recent if video.published_at <= now]
    videos: dict[int, VideoLabels] = {video.video_id: video for video in recent}
    event_videos = sorted(set(events.video_ids.tolist()))
    videos.update(catalog.get_labels(sorted(set(event_videos) - videos.keys())))

    def keys_of(video: VideoLabels) -> tuple[int | str, ...]:
        if kind is TrendingKind.SOUND:
            return () if video.sound_id is None else (video.sound_id,)
        return video.hashtags

    codes: dict[int | str, int] = {}
    use_codes: list[int] = []
    use_times: list[int] = []
    use_weights: list[float] = []
    for post in posts:
        for key in keys_of(post):
            use_codes.append(codes.setdefault(key, len(codes)))
            use_times.append(epoch_microseconds(post.published_at))
            use_weights.append(config.post_weight)
    for video_id, occurred_us, event_kind in zip(
        events.video_ids.tolist(), events.occurred_us.tolist(), events.kinds.tolist(), strict=True
    ):
        video = videos.get(video_id)
        for key in () if video is None else keys_of(video):
            use_codes.append(codes.setdefault(key, len(codes)))
            use_times.append(occurred_us)
            use_weights.append(config.weight_of(ENGAGEMENT_KINDS[event_kind]))
    code_array = np.array(use_codes, dtype=np.int64)
    weights = np.array(use_weights, dtype=np.float64)
    times = np.array(use_times, dtype=np.int64)
    now_us = epoch_microseconds(now)
    previous_end_us = epoch_microseconds(previous_end)
    current = times > previous_end_us
    previous = (times > epoch_microseconds(start)) & ~current

    def totals(selected: np.ndarray, end_us: int) -> np.ndarray:
        ages_hours = (end_us - times[selected]) / 1e6 / 3600.0
        return _decayed_totals(
            code_array[selected], weights[selected], ages_hours, config.half_life_hours, len(codes)
        )

    scores = totals(current, now_us)
    previous_scores = totals(previous, previous_end_us)
    counts = np.bincount(code_array[current], minlength=len(codes))
    items = []
    for key, code in codes.items():
        if counts[code] == 0:
            continue
        score, before = float(scores[code]), float(previous_scores[code])
        items.append(
            TrendingItem(
                key=key,
                score=score,
                count=int(counts[code]),
                previous_score=before,
                delta=score - before,
                ratio=score / before if before > 0.0 else None,
                trend=_trend(score, before, config.steady_tolerance),
            )
        )
    items.sort(key=lambda item: (-item.score, str(item.key)))
    return tuple(items[: config.snapshot_size])


_videos = st.lists(
    st.tuples(
        st.floats(-5.0, 60.0),  # hours before NOW it was published (negative: after)
        st.none() | st.integers(1, 4),
        st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), unique=True, max_size=4),
        st.booleans(),  # ready
    ),
    max_size=12,
)
_events = st.lists(
    st.tuples(
        st.integers(1, 14),  # ids past the videos' are unknown to the catalog
        st.sampled_from(["watch", "like", "share", "comment", "unlike"]),
        st.floats(-2.0, 60.0),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(
    videos=_videos,
    events=_events,
    window=st.sampled_from([1.0, 6.0, 24.0]),
    half_life=st.sampled_from([1.0, 6.0, 50.0]),
    max_videos=st.sampled_from([3, 100]),
    max_events=st.sampled_from([10, 1000]),
    rows_only=st.booleans(),
)
def test_trending_equals_the_computation_over_label_tuples(
    videos: list[tuple[float, int | None, list[str], bool]],
    events: list[tuple[int, str, float]],
    window: float,
    half_life: float,
    max_videos: int,
    max_events: int,
    rows_only: bool,
) -> None:
    catalog = LabelRowsCatalog() if rows_only else InMemoryCatalog()
    assert isinstance(catalog, LabelColumnsCatalog) is not rows_only
    catalog.put_creator(make_creator(1))
    for video_id, (age, sound_id, hashtags, ready) in enumerate(videos, start=1):
        catalog.put_video(
            make_video(
                video_id,
                published_at=NOW - hours(age),
                sound_id=sound_id,
                hashtags=tuple(hashtags),
                state=ProcessingState.READY if ready else ProcessingState.QUEUED,
            )
        )
    log = InMemoryEngagementLog()
    for user_id, (video_id, kind, age) in enumerate(events, start=1):
        log.record(
            make_event(kind, user_id=user_id, video_id=video_id, occurred_at=NOW - hours(age))
        )
    config = TrendingConfig(
        half_life_hours=half_life,
        max_videos=max_videos,
        max_events=max_events,
        reuse_seconds=0.0,
    )
    trending = Trending(catalog, log, config=config)
    for kind in TrendingKind:
        result = trending.top(kind, now=NOW, window_hours=window, limit=config.snapshot_size)
        # Equal to the last bit: the same uses summed in the same order.
        assert result.items == reference_items(catalog, log, config, kind, NOW, window)


def test_label_columns_of_label_tuples_by_hand() -> None:
    labels = [
        VideoLabels(9, EPOCH + timedelta(microseconds=3), 4, ("x", "y")),
        VideoLabels(2, EPOCH, None, ()),
        VideoLabels(5, EPOCH - timedelta(seconds=1), 1, ("y", "z")),
    ]
    columns = VideoLabelColumns.from_labels(labels)
    epoch_us = 1_767_225_600_000_000
    assert columns.video_ids.tolist() == [9, 2, 5]
    assert columns.published_us.tolist() == [epoch_us + 3, epoch_us, epoch_us - 1_000_000]
    assert columns.sound_ids.tolist() == [4, NO_SOUND_ID, 1]
    assert columns.hashtag_offsets.tolist() == [0, 2, 2, 4]
    assert columns.hashtag_codes.tolist() == [0, 1, 1, 2]
    assert columns.hashtags == ("x", "y", "z")
    assert len(columns) == 3
    assert not columns.video_ids.flags.writeable
    assert columns == VideoLabelColumns.from_arrays(
        video_ids=[9, 2, 5],
        published_us=[epoch_us + 3, epoch_us, epoch_us - 1_000_000],
        sound_ids=[4, NO_SOUND_ID, 1],
        hashtag_offsets=[0, 2, 2, 4],
        hashtag_codes=[0, 1, 1, 2],
        hashtags=["x", "y", "z"],
    )
    empty = VideoLabelColumns.from_labels(())
    assert len(empty) == 0 and empty.hashtag_offsets.tolist() == [0] and empty.hashtags == ()


_VALID = {
    "video_ids": [1, 2],
    "published_us": [0, 5],
    "sound_ids": [3, NO_SOUND_ID],
    "hashtag_offsets": [0, 1, 3],
    "hashtag_codes": [0, 1, 0],
    "hashtags": ("a", "b"),
}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("video_ids", [1, 1]),
        ("video_ids", [0, 2]),
        ("video_ids", [[1, 2]]),
        ("published_us", [0]),
        ("sound_ids", [0, NO_SOUND_ID]),
        ("hashtag_offsets", [0, 1]),
        ("hashtag_offsets", [1, 1, 3]),
        ("hashtag_offsets", [0, 2, 1]),
        ("hashtag_offsets", [0, 1, 2]),
        ("hashtag_codes", [0, 2, 0]),
        ("hashtag_codes", [1, 0, 1]),
        ("hashtag_codes", [0, 1, 1]),
        ("hashtag_codes", ["x", 1, 0]),
        ("hashtags", ("a", "a")),
        ("hashtags", ("a", "b", "c")),
        ("hashtags", "ab"),
    ],
)
def test_label_columns_refuse_bad_arrays(field: str, value: object) -> None:
    VideoLabelColumns.from_arrays(**_VALID)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        VideoLabelColumns.from_arrays(**{**_VALID, field: value})  # type: ignore[arg-type]


def test_label_columns_refuse_a_naive_time() -> None:
    with pytest.raises(InvalidInputError) as info:
        VideoLabelColumns.from_labels([VideoLabels(1, EPOCH.replace(tzinfo=None), None, ())])
    assert info.value.field == "at"


def test_label_columns_of_flat_hashtags_code_them_by_first_use() -> None:
    columns = VideoLabelColumns.from_columns(
        video_ids=[9, 2, 5],
        published_us=[3, 0, -1],
        sound_ids=[4, NO_SOUND_ID, 1],
        hashtag_counts=[2, 0, 2],
        hashtags=["y", "x", "x", "z"],
    )
    assert columns == VideoLabelColumns.from_arrays(
        video_ids=[9, 2, 5],
        published_us=[3, 0, -1],
        sound_ids=[4, NO_SOUND_ID, 1],
        hashtag_offsets=[0, 2, 2, 4],
        hashtag_codes=[0, 1, 1, 2],
        hashtags=("y", "x", "z"),
    )
    empty = VideoLabelColumns.from_columns(
        video_ids=[], published_us=[], sound_ids=[], hashtag_counts=[], hashtags=[]
    )
    assert empty == VideoLabelColumns.from_labels(())


@pytest.mark.parametrize(
    ("counts", "hashtags", "field"),
    [
        ([1, 1], ["a"], "hashtag_counts"),
        ([-1, 2], ["a"], "hashtag_counts"),
        ([1, 0], [5], "hashtags"),
        ([1, 0], "a", "hashtags"),
        ([2, 0], ["a", "a"], "hashtag_codes"),
        ([1], ["a"], "hashtag_offsets"),
    ],
)
def test_label_columns_of_flat_hashtags_refuse_bad_ones(
    counts: list[int], hashtags: object, field: str
) -> None:
    with pytest.raises(InvalidInputError) as info:
        VideoLabelColumns.from_columns(
            video_ids=[1, 2],
            published_us=[0, 0],
            sound_ids=[NO_SOUND_ID, NO_SOUND_ID],
            hashtag_counts=counts,
            hashtags=hashtags,  # type: ignore[arg-type]
        )
    assert info.value.field == field
