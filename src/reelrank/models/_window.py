"""The events of a time window as columns: what trending and creator recommendations read."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Self

import numpy as np
from numpy.typing import NDArray

from ..exceptions import InvalidInputError
from ..validation import MAX_ID, check_aware
from ._engagement import EngagementEvent, EngagementKind

__all__ = ["ENGAGEMENT_KINDS", "EngagementWindow", "epoch_microseconds"]

ENGAGEMENT_KINDS: tuple[EngagementKind, ...] = tuple(EngagementKind)
"""Every engagement kind in declaration order; :attr:`EngagementWindow.kinds` holds the
position of an event's kind in it (``watch`` 0, ``like`` 1, ``unlike`` 2, ``share`` 3,
``comment`` 4)."""

_KIND_CODE = {kind: code for code, kind in enumerate(ENGAGEMENT_KINDS)}
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def epoch_microseconds(at: datetime) -> int:
    """Whole microseconds from 1970-01-01 UTC to the aware datetime ``at`` (exact).

    The unit of :attr:`EngagementWindow.occurred_us`; a naive ``at`` raises
    :class:`~reelrank.InvalidInputError` naming ``at``.
    """
    return (check_aware("at", at) - _UNIX_EPOCH) // _MICROSECOND


def _readonly(name: str, values: Any, dtype: type[np.generic], length: int | None) -> NDArray[Any]:
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(name, f"not an array: {exc}") from exc
    if array.ndim != 1:
        raise InvalidInputError(name, f"must be one-dimensional, got {array.ndim} dimensions")
    if length is not None and array.shape[0] != length:
        raise InvalidInputError(name, f"has {array.shape[0]} values but video_ids has {length}")
    if array.size and array.dtype.kind not in "iu":
        raise InvalidInputError(name, f"must hold integers, got dtype {array.dtype}")
    if array.size and array.dtype.kind == "u" and array.max() > np.iinfo(np.int64).max:
        raise InvalidInputError(name, "must fit in int64")
    result = np.array(array, dtype=dtype)  # a copy: the caller's array may change later
    result.flags.writeable = False
    return result


class EngagementWindow:
    """The events of a time window, one column per field: row ``i`` is one event.

    :meth:`EngagementLog.columns_between <reelrank.EngagementLog.columns_between>`
    returns the same events as ``events_between`` with the same arguments, in the same
    order (newest first; ties: higher ``event_id`` first), without building an
    :class:`~reelrank.EngagementEvent` per row. Discovery computations that only group
    and weigh events (trending, the creators' audience graph) read these columns with
    numpy. The arrays are read-only; build a window with :meth:`from_arrays` (adapters)
    or :meth:`from_events`.
    """

    __slots__ = ("kinds", "occurred_us", "user_ids", "video_ids")

    video_ids: NDArray[np.int64]
    """The video of each event."""
    user_ids: NDArray[np.int64]
    """The user of each event."""
    kinds: NDArray[np.int8]
    """Each event's kind, as its position in :data:`ENGAGEMENT_KINDS`."""
    occurred_us: NDArray[np.int64]
    """When each event occurred, in microseconds since 1970-01-01 UTC
    (:func:`epoch_microseconds`), so times compare and subtract exactly."""

    def __init__(
        self,
        video_ids: NDArray[np.int64],
        user_ids: NDArray[np.int64],
        kinds: NDArray[np.int8],
        occurred_us: NDArray[np.int64],
    ) -> None:
        # Private: from_arrays and from_events validate first.
        self.video_ids = video_ids
        self.user_ids = user_ids
        self.kinds = kinds
        self.occurred_us = occurred_us

    @classmethod
    def from_arrays(cls, *, video_ids: Any, user_ids: Any, kinds: Any, occurred_us: Any) -> Self:
        """A window from four parallel integer columns (any array-like), copied.

        Ids must lie in ``[1, MAX_ID]`` and kind codes in ``[0, 4]``; columns of
        different lengths, non-integer columns or values out of range raise
        :class:`~reelrank.InvalidInputError` naming the column.
        """
        videos = _readonly("video_ids", video_ids, np.int64, None)
        length = videos.shape[0]
        users = _readonly("user_ids", user_ids, np.int64, length)
        wide_codes = _readonly("kinds", kinds, np.int64, length)
        times = _readonly("occurred_us", occurred_us, np.int64, length)
        if length:
            for name, ids in (("video_ids", videos), ("user_ids", users)):
                if ids.min() < 1 or ids.max() > MAX_ID:
                    raise InvalidInputError(name, f"ids must lie in [1, {MAX_ID}]")
            if wide_codes.min() < 0 or wide_codes.max() >= len(ENGAGEMENT_KINDS):
                raise InvalidInputError(
                    "kinds", f"kind codes must lie in [0, {len(ENGAGEMENT_KINDS) - 1}]"
                )
        codes = wide_codes.astype(np.int8)
        codes.flags.writeable = False
        return cls(videos, users, codes, times)

    @classmethod
    def from_events(cls, events: Sequence[EngagementEvent]) -> Self:
        """The window of these events, in their order.

        A log without a faster path implements ``columns_between`` as
        ``EngagementWindow.from_events(self.events_between(start, end, limit=limit))``.
        """
        count = len(events)

        def column(values: Any, dtype: type[np.generic]) -> NDArray[Any]:
            array = np.fromiter(values, dtype=dtype, count=count)
            array.flags.writeable = False
            return array

        return cls(
            column((event.video_id for event in events), np.int64),
            column((event.user_id for event in events), np.int64),
            column((_KIND_CODE[event.kind] for event in events), np.int8),
            column(
                ((event.occurred_at - _UNIX_EPOCH) // _MICROSECOND for event in events),
                np.int64,
            ),
        )

    def __len__(self) -> int:
        return int(self.video_ids.shape[0])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EngagementWindow):
            return NotImplemented
        return all(
            np.array_equal(getattr(self, name), getattr(other, name))
            for name in ("video_ids", "user_ids", "kinds", "occurred_us")
        )

    __hash__ = None  # type: ignore[assignment]  # mutable-looking arrays: not hashable

    def __repr__(self) -> str:
        return f"EngagementWindow({len(self)} events)"
