"""Conversions between :class:`~reelrank.EngagementEvent` and table rows."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from reelrank import EngagementEvent

__all__ = [
    "EVENT_COLUMNS",
    "EVENT_SELECT",
    "SECONDS_COLUMN",
    "SEQ_COLUMN",
    "ArrivalSequence",
    "event_columns",
    "event_from_row",
]

EVENT_COLUMNS = (
    "event_id, kind, user_id, video_id, occurred_at, occurred_us, watched_seconds, "
    "completion, channel, variant, seq"
)
"""The columns :func:`event_columns` gives, in its order, for an ``INSERT``."""

SECONDS_COLUMN = 4
"""The index of ``occurred_at`` (Unix seconds) among the columns of :func:`event_columns`."""
SEQ_COLUMN = 10
"""The index of ``seq`` (arrival numbers) among the columns of :func:`event_columns`."""

_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

EVENT_SELECT = (
    "event_id, toString(kind) AS kind, user_id, video_id, occurred_at, occurred_us, "
    "watched_seconds, completion, channel, variant"
)
"""Columns read back into an event, in the order :func:`event_from_row` expects."""


def event_columns(events: Sequence[EngagementEvent], first_seq: int) -> list[list[Any]]:
    """The columns of :data:`EVENT_COLUMNS` for ``events``, for a columnar insert with
    clickhouse-driver; ``seq`` counts up from ``first_seq``.

    ``DateTime`` holds whole seconds, so the microseconds go in ``occurred_us`` and the
    event reads back unchanged; times are given as Unix seconds, which the driver
    passes through without converting each one.
    """
    offsets = [event.occurred_at - _UNIX_EPOCH for event in events]
    return [
        [event.event_id for event in events],
        [event.kind.value for event in events],
        [event.user_id for event in events],
        [event.video_id for event in events],
        [offset.days * 86_400 + offset.seconds for offset in offsets],
        [offset.microseconds for offset in offsets],
        [event.watched_seconds for event in events],
        [event.completion for event in events],
        [event.channel for event in events],
        [event.variant for event in events],
        list(range(first_seq, first_seq + len(events))),
    ]


def event_from_row(row: Sequence[Any]) -> EngagementEvent:
    """The event of a row selected with :data:`EVENT_SELECT`."""
    (event_id, kind, user_id, video_id, occurred_at, occurred_us) = row[:6]
    watched_seconds, completion, channel, variant = row[6:10]
    at: datetime = occurred_at.replace(tzinfo=UTC) if occurred_at.tzinfo is None else occurred_at
    return EngagementEvent(
        event_id=event_id,
        kind=kind,
        user_id=int(user_id),
        video_id=int(video_id),
        occurred_at=at.astimezone(UTC) + timedelta(microseconds=int(occurred_us)),
        watched_seconds=watched_seconds,
        completion=completion,
        channel=channel,
        variant=variant,
    )


class ArrivalSequence:
    """Increasing numbers in arrival order: nanoseconds of the wall clock, never
    repeating or going back within the process.

    Like state is "the last like or unlike applied", so the aggregates need the order
    in which events arrived, which ``occurred_at`` (the client's clock) does not give.
    Across processes the order is as good as the hosts' clocks agree.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def take(self, count: int) -> int:
        """Reserve ``count`` consecutive numbers; returns the first."""
        with self._lock:
            first = max(time.time_ns(), self._last + 1)
            self._last = first + count - 1
            return first
