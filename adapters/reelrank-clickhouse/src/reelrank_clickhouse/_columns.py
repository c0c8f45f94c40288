"""Events given as columns: checked by :class:`~reelrank.EngagementEventColumns` (the
rules of :class:`~reelrank.EngagementEvent`, with numpy) and by what ClickHouse adds,
then turned into the columns of an insert, with no model per event."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from reelrank import EngagementEventColumns, InvalidInputError
from reelrank.stores.adapter import check_id_column

__all__ = ["insert_columns"]

_MOST_SECONDS = 2**32  # DateTime holds unsigned 32-bit seconds


def _nulls(values: NDArray[np.float64]) -> list[float | None]:
    return [None if value != value else value for value in values.tolist()]


def insert_columns(
    *,
    event_id: Any,
    kind: Any,
    user_id: Any,
    video_id: Any,
    creator_id: Any,
    occurred_at: Any,
    watched_seconds: Any,
    completion: Any,
    channel: Any,
    variant: Any,
) -> tuple[list[str], list[list[Any]]]:
    """The distinct event ids (first occurrence of each, in order) and the insert columns
    of :data:`~reelrank_clickhouse._rows.EVENT_COLUMNS` plus ``creator_id`` for them,
    ``seq`` left as zeros; raises :class:`~reelrank.InvalidInputError` naming the first
    bad column, as :class:`~reelrank.EngagementEvent` would name its field."""
    events = EngagementEventColumns.from_arrays(
        event_id=event_id,
        kind=kind,
        user_id=user_id,
        video_id=video_id,
        occurred_at=occurred_at,
        watched_seconds=watched_seconds,
        completion=completion,
        channel=channel,
        variant=variant,
        require_watch_completion=True,
    )
    length = len(events)
    creators = check_id_column("creator_id", creator_id)
    if creators.shape[0] != length:
        raise InvalidInputError(
            "creator_id", f"has {creators.shape[0]} values but event_id has {length}"
        )
    micros = events.occurred_at.astype(np.int64)
    seconds, fractions = np.divmod(micros, 1_000_000)
    if seconds.size and (seconds.min() < 0 or seconds.max() >= _MOST_SECONDS):
        raise InvalidInputError("occurred_at", "must be between 1970 and 2106")
    # The first occurrence of each id, in the batch's order.
    _, first = np.unique(events.event_id, return_index=True)
    keep = np.sort(first)
    ids: list[str] = events.event_id[keep].tolist()

    def kept(values: NDArray[Any]) -> list[Any]:
        narrowed: list[Any] = values[keep].tolist()
        return narrowed

    columns = [
        ids,
        kept(events.kind),
        kept(events.user_id),
        kept(events.video_id),
        kept(seconds),
        kept(fractions),
        _nulls(events.watched_seconds[keep]),
        _nulls(events.completion[keep]),
        kept(events.channel),
        kept(events.variant),
        [0] * len(ids),
        kept(creators),
    ]
    return ids, columns
