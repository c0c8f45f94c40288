"""A user's followed videos as ranking columns, with or without their statistics."""

from __future__ import annotations

from typing import Any, Self

import numpy as np
from numpy.typing import NDArray

from ..exceptions import InvalidInputError
from ..validation import MAX_ID
from ._columns import ReadOnlyColumns, check_shape, readonly
from ._stats_columns import VideoStatsColumns

__all__ = ["NO_SOUND_ID", "FollowedColumns", "FollowedVideoColumns"]

NO_SOUND_ID = -1
"""The ``sound_ids`` entry of a video without a sound."""


def _column(name: str, values: Any, dtype: type[np.generic], length: int | None) -> NDArray[Any]:
    try:
        array = np.array(values, dtype=dtype)  # a copy: the caller's array may change later
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInputError(name, f"not an array of {np.dtype(dtype)}: {exc}") from exc
    return readonly(check_shape(name, array, length, "video_ids"))


def _checked_rows(
    video_ids: Any, creator_ids: Any, sound_ids: Any, published_at: Any
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """Read-only copies of the four ranking columns of followed videos, checked."""
    ids = _column("video_ids", video_ids, np.int64, None)
    length = ids.shape[0]
    creators = _column("creator_ids", creator_ids, np.int64, length)
    sounds = _column("sound_ids", sound_ids, np.int64, length)
    published = _column("published_at", published_at, np.float64, length)
    if length:
        if ids.min() < 1 or ids.max() > MAX_ID:
            raise InvalidInputError("video_ids", f"ids must lie in [1, {MAX_ID}]")
        if np.unique(ids).shape[0] != length:
            raise InvalidInputError("video_ids", "must be distinct")
        if creators.min() < 1 or creators.max() > MAX_ID:
            raise InvalidInputError("creator_ids", f"ids must lie in [1, {MAX_ID}]")
        with_sound = sounds[sounds != NO_SOUND_ID]
        if with_sound.size and (with_sound.min() < 1 or with_sound.max() > MAX_ID):
            raise InvalidInputError(
                "sound_ids", f"ids must lie in [1, {MAX_ID}] or be {NO_SOUND_ID}"
            )
        if not np.isfinite(published).all():
            raise InvalidInputError("published_at", "must be finite")
    return ids, creators, sounds, published


class FollowedColumns(ReadOnlyColumns):
    """Followed videos as the columns the feed ranks them from, without statistics:
    row ``i`` is video ``video_ids[i]``, newest first.

    What :meth:`FollowedColumnsCatalog.followed_columns
    <reelrank.FollowedColumnsCatalog.followed_columns>` returns: the videos
    :meth:`Catalog.followed_videos <reelrank.Catalog.followed_videos>` returns, in its
    order, without building a :class:`~reelrank.Video` per row. The feed reads their
    statistics from the event store. The arrays are read-only; build it with
    :meth:`from_arrays`.
    """

    __slots__ = _FIELDS = ("video_ids", "creator_ids", "sound_ids", "published_at")
    _ROWS = "videos"

    video_ids: NDArray[np.int64]
    """The video of each row; distinct."""
    creator_ids: NDArray[np.int64]
    """Its creator."""
    sound_ids: NDArray[np.int64]
    """Its sound, or :data:`NO_SOUND_ID` without one."""
    published_at: NDArray[np.float64]
    """When it was published, in seconds since the Unix epoch."""

    def __init__(
        self,
        video_ids: NDArray[np.int64],
        creator_ids: NDArray[np.int64],
        sound_ids: NDArray[np.int64],
        published_at: NDArray[np.float64],
    ) -> None:
        # Private: from_arrays validates first.
        self.video_ids = video_ids
        self.creator_ids = creator_ids
        self.sound_ids = sound_ids
        self.published_at = published_at

    @classmethod
    def from_arrays(
        cls, *, video_ids: Any, creator_ids: Any, sound_ids: Any, published_at: Any
    ) -> Self:
        """Columns from four parallel array-likes (copied).

        Video and creator ids must lie in ``[1, MAX_ID]`` (video ids distinct), sound
        ids too or be :data:`NO_SOUND_ID`, and publication times be finite; anything
        else raises :class:`~reelrank.InvalidInputError` naming the column.
        """
        return cls(*_checked_rows(video_ids, creator_ids, sound_ids, published_at))


class FollowedVideoColumns(ReadOnlyColumns):
    """Followed videos as the columns the feed ranks them from, with their statistics:
    row ``i`` is video ``video_ids[i]``, newest first.

    What :meth:`FollowedCandidatesCatalog.followed_candidates
    <reelrank.FollowedCandidatesCatalog.followed_candidates>` returns: the videos
    :meth:`Catalog.followed_videos <reelrank.Catalog.followed_videos>` returns, in its
    order, without building a :class:`~reelrank.Video` per row, and beside them the
    statistics :meth:`EventStore.stats_columns <reelrank.EventStore.stats_columns>`
    returns for the same ids. The arrays are read-only; build it with
    :meth:`from_arrays`.
    """

    __slots__ = _FIELDS = ("video_ids", "creator_ids", "sound_ids", "published_at", "stats")
    _ROWS = "videos"

    video_ids: NDArray[np.int64]
    """The video of each row; distinct."""
    creator_ids: NDArray[np.int64]
    """Its creator."""
    sound_ids: NDArray[np.int64]
    """Its sound, or :data:`NO_SOUND_ID` without one."""
    published_at: NDArray[np.float64]
    """When it was published, in seconds since the Unix epoch."""
    stats: VideoStatsColumns
    """Its statistics; ``stats.video_ids`` equals ``video_ids``."""

    def __init__(
        self,
        video_ids: NDArray[np.int64],
        creator_ids: NDArray[np.int64],
        sound_ids: NDArray[np.int64],
        published_at: NDArray[np.float64],
        stats: VideoStatsColumns,
    ) -> None:
        # Private: from_arrays validates first.
        self.video_ids = video_ids
        self.creator_ids = creator_ids
        self.sound_ids = sound_ids
        self.published_at = published_at
        self.stats = stats

    @classmethod
    def from_arrays(
        cls,
        *,
        video_ids: Any,
        creator_ids: Any,
        sound_ids: Any,
        published_at: Any,
        stats: VideoStatsColumns,
    ) -> Self:
        """Columns from four parallel array-likes (copied) and the rows' statistics.

        Video and creator ids must lie in ``[1, MAX_ID]`` (video ids distinct), sound
        ids too or be :data:`NO_SOUND_ID`, publication times be finite, and
        ``stats.video_ids`` equal ``video_ids``; anything else raises
        :class:`~reelrank.InvalidInputError` naming the column.
        """
        ids, creators, sounds, published = _checked_rows(
            video_ids, creator_ids, sound_ids, published_at
        )
        if not isinstance(stats, VideoStatsColumns):
            raise InvalidInputError(
                "stats", f"must be VideoStatsColumns, got {type(stats).__name__}"
            )
        if not np.array_equal(stats.video_ids, ids):
            raise InvalidInputError("stats", "must hold the statistics of video_ids, in order")
        return cls(ids, creators, sounds, published, stats)
