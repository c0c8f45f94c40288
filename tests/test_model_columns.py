"""The shape the column classes share (``reelrank.models._columns``): every one is a
``ReadOnlyColumns``, and length, equality, hashing, repr and read-only arrays behave
alike in each, as each class's own tests pinned them before the base existed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from reelrank import (
    EngagementEventColumns,
    FollowedVideoColumns,
    InvalidInputError,
    VideoStatsColumns,
)
from reelrank.models._columns import ReadOnlyColumns


def _stats(views: int = 2) -> VideoStatsColumns:
    return VideoStatsColumns.from_arrays(
        video_ids=[3, 1],
        views=[views, 0],
        completion_sum=[1.5, 0.0],
        likes=[1, 0],
        shares=[0, 4],
        comments=[0, 1],
    )


def _events(completion: float = 0.5) -> EngagementEventColumns:
    # Events without watched_seconds hold NaN there: equal rows must still be equal.
    return EngagementEventColumns.from_arrays(
        event_id=["e-1", "e-2"],
        kind=["watch", "like"],
        user_id=[1, 2],
        video_id=[3, 1],
        occurred_at=[datetime(2026, 1, 1, tzinfo=UTC)] * 2,
        completion=[completion, None],
    )


def _followed(views: int = 2) -> FollowedVideoColumns:
    return FollowedVideoColumns.from_arrays(
        video_ids=[3, 1],
        creator_ids=[7, 7],
        sound_ids=[-1, 5],
        published_at=[1.0e9, 1.1e9],
        stats=_stats(views),
    )


CASES: list[tuple[Callable[..., Any], Any, str]] = [
    (_stats, 5, "VideoStatsColumns(2 videos)"),
    (_events, 0.25, "EngagementEventColumns(2 events)"),
    (_followed, 5, "FollowedVideoColumns(2 videos)"),  # differs in its nested stats only
]


@pytest.mark.parametrize(("build", "other", "text"), CASES)
def test_each_column_class_has_the_shared_shape(
    build: Callable[..., Any], other: Any, text: str
) -> None:
    columns = build()
    assert isinstance(columns, ReadOnlyColumns)
    assert len(columns) == 2
    assert columns == build()
    assert columns != build(other)
    if not isinstance(columns, VideoStatsColumns):
        assert columns != _stats()  # another column class is never equal
    assert (columns == "columns") is False
    with pytest.raises(TypeError):
        hash(columns)
    assert repr(columns) == text
    for name in type(columns)._FIELDS:
        value = getattr(columns, name)
        if isinstance(value, np.ndarray):
            assert not value.flags.writeable, name
    with pytest.raises(AttributeError):
        columns.extra = 1  # slots: no attribute beyond the fields


def test_the_shape_checks_name_the_column_and_the_one_counting_rows() -> None:
    with pytest.raises(InvalidInputError, match="has 1 values but video_ids has 2") as stats:
        VideoStatsColumns.from_arrays(
            video_ids=[3, 1], views=[1], completion_sum=[0, 0], likes=[0, 0],
            shares=[0, 0], comments=[0, 0],
        )  # fmt: skip
    assert stats.value.field == "views"
    with pytest.raises(InvalidInputError, match="has 1 values but event_id has 2") as events:
        EngagementEventColumns.from_arrays(
            event_id=["e-1", "e-2"], kind=["like"], user_id=[1, 2], video_id=[1, 2],
            occurred_at=[datetime(2026, 1, 1, tzinfo=UTC)] * 2,
        )  # fmt: skip
    assert events.value.field == "kind"
    with pytest.raises(InvalidInputError, match="must be one-dimensional, got 2") as followed:
        FollowedVideoColumns.from_arrays(
            video_ids=[[3, 1]], creator_ids=[7, 7], sound_ids=[-1, 5],
            published_at=[1.0, 2.0], stats=_stats(),
        )  # fmt: skip
    assert followed.value.field == "video_ids"
