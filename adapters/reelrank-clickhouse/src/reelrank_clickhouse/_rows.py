"""Conversions between :class:`~reelrank.EngagementEvent` and table rows."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from reelrank import EngagementEvent

__all__ = ["EVENT_SELECT", "ArrivalSequence", "event_from_row", "event_row"]

EVENT_SELECT = (
    "event_id, toString(kind) AS kind, user_id, video_id, occurred_at, occurred_us, "
    "watched_seconds, completion, channel, variant"
)
"""Columns read back into an event, in the order :func:`event_from_row` expects."""


def event_row(event: EngagementEvent, seq: int) -> dict[str, Any]:
    """The row of one event. ``DateTime`` holds whole seconds, so the microseconds go in
    ``occurred_us`` and the event reads back unchanged."""
    at = event.occurred_at.astimezone(UTC)
    return {
        "event_id": event.event_id,
        "kind": event.kind.value,
        "user_id": event.user_id,
        "video_id": event.video_id,
        "occurred_at": at.replace(microsecond=0, tzinfo=None),
        "occurred_us": at.microsecond,
        "watched_seconds": event.watched_seconds,
        "completion": event.completion,
        "channel": event.channel,
        "variant": event.variant,
        "seq": seq,
    }


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
