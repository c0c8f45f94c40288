"""Videos' labels (sound, hashtags, publication time) as columns: what trending reads."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Self

import numpy as np
from numpy.typing import NDArray

from ..exceptions import InvalidInputError
from ..validation import MAX_ID
from ._columns import ReadOnlyColumns, check_shape, readonly
from ._followed_columns import NO_SOUND_ID
from ._window import epoch_microseconds

__all__ = ["VideoLabelColumns"]


def _column(name: str, values: Any, length: int | None, counted_by: str) -> NDArray[np.int64]:
    try:
        array = np.array(values, dtype=np.int64)  # a copy: the caller's array may change later
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInputError(name, f"not an array of int64: {exc}") from exc
    return readonly(check_shape(name, array, length, counted_by))


def _check_hashtags(hashtags: Any) -> tuple[str, ...]:
    if isinstance(hashtags, str) or not isinstance(hashtags, Sequence):
        raise InvalidInputError("hashtags", "must be a sequence of strings")
    names = tuple(hashtags)
    if not all(isinstance(name, str) for name in names):
        raise InvalidInputError("hashtags", "must hold strings only")
    if len(set(names)) != len(names):
        raise InvalidInputError("hashtags", "must be distinct")
    return names


class VideoLabelColumns(ReadOnlyColumns):
    """The :class:`~reelrank.VideoLabels` of many videos as columns: row ``i`` is video
    ``video_ids[i]``, its hashtags ``hashtags[c]`` for each code ``c`` in
    ``hashtag_codes[hashtag_offsets[i]:hashtag_offsets[i + 1]]``, in the video's order.

    What :meth:`LabelColumnsCatalog.recent_label_columns
    <reelrank.LabelColumnsCatalog.recent_label_columns>` and
    :meth:`~reelrank.LabelColumnsCatalog.label_columns` return: the labels of tens of
    thousands of videos in six objects rather than a tuple, a datetime and a tuple of
    hashtags per video, which the garbage collector would walk on every collection
    while they live. ``hashtags`` names each distinct hashtag once, in the order of its
    first use, so equal labels in the same row order give equal columns. The arrays are
    read-only; build it with :meth:`from_arrays` or :meth:`from_labels`.
    """

    __slots__ = _FIELDS = (
        "video_ids",
        "published_us",
        "sound_ids",
        "hashtag_offsets",
        "hashtag_codes",
        "hashtags",
    )
    _ROWS = "videos"

    video_ids: NDArray[np.int64]
    """The video of each row; distinct."""
    published_us: NDArray[np.int64]
    """When it was published, in whole microseconds since the Unix epoch (the unit of
    :attr:`EngagementEventColumns.occurred_us <reelrank.EngagementEventColumns.occurred_us>`)."""
    sound_ids: NDArray[np.int64]
    """Its sound, or :data:`~reelrank.NO_SOUND_ID` without one."""
    hashtag_offsets: NDArray[np.int64]
    """One more value than rows: row ``i``'s hashtag codes are
    ``hashtag_codes[hashtag_offsets[i]:hashtag_offsets[i + 1]]``."""
    hashtag_codes: NDArray[np.int64]
    """Every row's hashtags, row after row, as positions in :attr:`hashtags`."""
    hashtags: tuple[str, ...]
    """The distinct hashtags, in the order of their first use in :attr:`hashtag_codes`."""

    def __init__(
        self,
        video_ids: NDArray[np.int64],
        published_us: NDArray[np.int64],
        sound_ids: NDArray[np.int64],
        hashtag_offsets: NDArray[np.int64],
        hashtag_codes: NDArray[np.int64],
        hashtags: tuple[str, ...],
    ) -> None:
        # Private: from_arrays and from_labels validate first.
        self.video_ids = video_ids
        self.published_us = published_us
        self.sound_ids = sound_ids
        self.hashtag_offsets = hashtag_offsets
        self.hashtag_codes = hashtag_codes
        self.hashtags = hashtags

    @classmethod
    def from_arrays(
        cls,
        *,
        video_ids: Any,
        published_us: Any,
        sound_ids: Any,
        hashtag_offsets: Any,
        hashtag_codes: Any,
        hashtags: Sequence[str],
    ) -> Self:
        """Columns from parallel array-likes (copied) and the hashtags they code.

        Video ids must lie in ``[1, MAX_ID]`` and be distinct, sound ids too or be
        :data:`~reelrank.NO_SOUND_ID`; ``hashtag_offsets`` must start at 0, never
        decrease and end at the length of ``hashtag_codes``; each code must be a
        position in ``hashtags``, codes must first appear in the order ``0, 1, ...``
        (every hashtag used), and no row may repeat one. Anything else raises
        :class:`~reelrank.InvalidInputError` naming the column.
        """
        ids = _column("video_ids", video_ids, None, "video_ids")
        length = ids.shape[0]
        published = _column("published_us", published_us, length, "video_ids")
        sounds = _column("sound_ids", sound_ids, length, "video_ids")
        offsets = _column("hashtag_offsets", hashtag_offsets, length + 1, "video_ids plus one")
        codes = _column("hashtag_codes", hashtag_codes, None, "hashtag_codes")
        names = _check_hashtags(hashtags)
        if length:
            if ids.min() < 1 or ids.max() > MAX_ID:
                raise InvalidInputError("video_ids", f"ids must lie in [1, {MAX_ID}]")
            if np.unique(ids).shape[0] != length:
                raise InvalidInputError("video_ids", "must be distinct")
            with_sound = sounds[sounds != NO_SOUND_ID]
            if with_sound.size and (with_sound.min() < 1 or with_sound.max() > MAX_ID):
                raise InvalidInputError(
                    "sound_ids", f"ids must lie in [1, {MAX_ID}] or be {NO_SOUND_ID}"
                )
        if offsets[0] != 0 or offsets[-1] != codes.shape[0] or (np.diff(offsets) < 0).any():
            raise InvalidInputError(
                "hashtag_offsets",
                "must start at 0, never decrease and end at the length of hashtag_codes",
            )
        _check_codes(codes, offsets, len(names))
        return cls(ids, published, sounds, offsets, codes, names)

    @classmethod
    def from_columns(
        cls,
        *,
        video_ids: Any,
        published_us: Any,
        sound_ids: Any,
        hashtag_counts: Any,
        hashtags: Sequence[str],
    ) -> Self:
        """Columns from parallel array-likes (copied) and every row's hashtags, row after
        row, as one flat sequence of strings: row ``i`` has the next
        ``hashtag_counts[i]`` of them. What a store that reads each column whole (an
        aggregate per column, say) has; the hashtags (as a :class:`~reelrank.Video`
        holds them: no NUL characters) are coded here. Checked as :meth:`from_arrays`
        checks, and the counts must add up to the number of hashtags."""
        counts = _column("hashtag_counts", hashtag_counts, None, "hashtag_counts")
        if counts.size and counts.min() < 0:
            raise InvalidInputError("hashtag_counts", "must not be negative")
        if isinstance(hashtags, str) or not all(isinstance(name, str) for name in hashtags):
            raise InvalidInputError("hashtags", "must be a sequence of strings")
        if int(counts.sum()) != len(hashtags):
            raise InvalidInputError("hashtag_counts", "must add up to the number of hashtags")
        codes, names = _first_use_codes(hashtags)
        return cls.from_arrays(
            video_ids=video_ids,
            published_us=published_us,
            sound_ids=sound_ids,
            hashtag_offsets=np.concatenate([[0], np.cumsum(counts)]),
            hashtag_codes=codes,
            hashtags=names,
        )

    @classmethod
    def from_labels(cls, labels: Iterable[Sequence[Any]]) -> Self:
        """Columns of labels in their order: :class:`~reelrank.VideoLabels`, or any rows
        of the same four fields (video id, aware publication time, sound id or ``None``,
        hashtags), such as a database's, read one at a time so that none need stay
        alive. Checked as :meth:`from_arrays` checks; a naive time raises
        :class:`~reelrank.InvalidInputError` naming ``at``."""
        video_ids: list[int] = []
        published_us: list[int] = []
        sound_ids: list[int] = []
        offsets = [0]
        codes: list[int] = []
        code_of: dict[str, int] = {}
        for video_id, published_at, sound_id, hashtags in labels:
            video_ids.append(video_id)
            published_us.append(epoch_microseconds(published_at))
            sound_ids.append(NO_SOUND_ID if sound_id is None else sound_id)
            for hashtag in hashtags:
                codes.append(code_of.setdefault(hashtag, len(code_of)))
            offsets.append(len(codes))
        return cls.from_arrays(
            video_ids=video_ids,
            published_us=published_us,
            sound_ids=sound_ids,
            hashtag_offsets=offsets,
            hashtag_codes=codes,
            hashtags=tuple(code_of),
        )


def _first_use_codes(hashtags: Sequence[str]) -> tuple[NDArray[np.int64], tuple[str, ...]]:
    """The code of each of ``hashtags`` (strings), and the distinct hashtags in the order
    of their first use."""
    if not len(hashtags):
        return np.zeros(0, dtype=np.int64), ()
    # Fixed-width text: sorted and compared in C, not string by string in Python.
    names = np.array(hashtags, dtype=np.str_)
    distinct, first_uses, sorted_codes = np.unique(names, return_index=True, return_inverse=True)
    order = np.argsort(first_uses)
    codes = np.empty(order.shape[0], dtype=np.int64)
    codes[order] = np.arange(order.shape[0])
    return codes[sorted_codes], tuple(distinct[order].tolist())


def _check_codes(codes: NDArray[np.int64], offsets: NDArray[np.int64], hashtag_count: int) -> None:
    if not codes.size:
        if hashtag_count:
            raise InvalidInputError("hashtags", "must name only hashtags that rows use")
        return
    if codes.min() < 0 or codes.max() >= hashtag_count:
        raise InvalidInputError("hashtag_codes", f"codes must lie in [0, {hashtag_count})")
    distinct, first_uses = np.unique(codes, return_index=True)
    if distinct.shape[0] != hashtag_count:
        raise InvalidInputError("hashtags", "must name only hashtags that rows use")
    if (np.diff(first_uses) < 0).any():
        raise InvalidInputError("hashtag_codes", "codes must first appear in the order 0, 1, ...")
    rows = np.repeat(np.arange(offsets.shape[0] - 1), np.diff(offsets))
    pairs = np.unique(rows * hashtag_count + codes)
    if pairs.shape[0] != codes.shape[0]:
        raise InvalidInputError("hashtag_codes", "a row must not repeat a hashtag")
