"""VideoStatsColumns: validation naming the column, the models it builds without
validation, and the round trip through get_stats' mapping."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from reelrank import InvalidInputError, VideoStats, VideoStatsColumns
from reelrank.feed._candidates import CandidateColumns
from reelrank.testing import make_video


def _columns(**overrides: object) -> VideoStatsColumns:
    fields: dict[str, object] = {
        "video_ids": [3, 1],
        "views": [2, 0],
        "completion_sum": [1.5, 0.0],
        "likes": [1, 0],
        "shares": [0, 4],
        "comments": [0, 1],
    }
    fields.update(overrides)
    return VideoStatsColumns.from_arrays(**fields)  # type: ignore[arg-type]


def test_models_built_from_columns_are_the_validated_models() -> None:
    built = _columns().to_stats()
    assert list(built) == [3, 1]
    validated = VideoStats(video_id=3, views=2, completion_sum=1.5, likes=1, shares=0, comments=0)
    model = built[3]
    assert model == validated and validated == model
    assert hash(model) == hash(validated)
    assert repr(model) == repr(validated)
    assert model.model_dump() == validated.model_dump()
    assert model.model_dump_json() == validated.model_dump_json()
    assert model.model_fields_set == set(VideoStats.model_fields)
    assert model.mean_completion == 0.75
    assert pickle.loads(pickle.dumps(model)) == validated
    copied = model.model_copy(update={"views": 4})
    assert (copied.views, model.views) == (4, 2)
    assert built[1] == VideoStats(video_id=1, shares=4, comments=1)
    with pytest.raises(ValidationError):  # frozen, like every domain model
        model.views = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"video_ids": [0, 1]}, "video_ids"),
        ({"video_ids": [2, 2]}, "video_ids"),
        ({"video_ids": [1.5, 2]}, "video_ids"),
        ({"views": [2]}, "views"),
        ({"views": [-1, 0]}, "views"),
        ({"likes": [[1], [2]]}, "likes"),
        ({"shares": [0, -4]}, "shares"),
        ({"comments": ["a", "b"]}, "comments"),
        ({"completion_sum": [2.5, 0.0]}, "completion_sum"),
        ({"completion_sum": [-0.5, 0.0]}, "completion_sum"),
        ({"completion_sum": [float("nan"), 0.0]}, "completion_sum"),
        ({"views": np.array([2**64 - 1, 0], dtype=np.uint64)}, "views"),
    ],
)
def test_bad_columns_raise_naming_the_column(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        _columns(**overrides)
    assert info.value.field == field


def test_columns_are_read_only_copies() -> None:
    views = np.array([2, 0])
    columns = _columns(views=views)
    views[0] = 9
    assert columns.views.tolist() == [2, 0]
    with pytest.raises(ValueError):
        columns.views[0] = 1


_STATS = st.builds(
    lambda video_id, views, share, likes, shares, comments: VideoStats(
        video_id=video_id,
        views=views,
        completion_sum=views * share,
        likes=likes,
        shares=shares,
        comments=comments,
    ),
    st.integers(1, 50),
    st.integers(0, 10**6),
    st.floats(0, 1),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
)


@given(st.lists(_STATS), st.lists(st.integers(1, 60)))
def test_from_stats_keeps_first_request_order_and_zeros_the_missing(
    stats: list[VideoStats], requested: list[int]
) -> None:
    by_id = {s.video_id: s for s in stats}
    columns = VideoStatsColumns.from_stats(by_id, requested)
    distinct = list(dict.fromkeys(requested))
    assert columns.video_ids.tolist() == distinct
    expected = {vid: by_id.get(vid, VideoStats(video_id=vid)) for vid in distinct}
    assert columns.to_stats() == expected
    assert VideoStatsColumns.from_stats(columns.to_stats(), distinct) == columns


def test_the_feed_takes_each_candidates_counts_from_its_row() -> None:
    videos = [make_video(video_id=vid, creator_id=1) for vid in (5, 9, 2)]
    stats = _columns(video_ids=[2, 5], views=[4, 3], completion_sum=[1.0, 3.0])
    counts = CandidateColumns.from_videos(videos, stats, None).counts
    # Rows follow the videos: 5, 9 (no stats: zeros), 2.
    assert counts[:, 0].tolist() == [3, 3.0, 0, 4, 1]
    assert counts[:, 1].tolist() == [0, 0, 0, 0, 0]
    assert counts[:, 2].tolist() == [4, 1.0, 1, 0, 0]
