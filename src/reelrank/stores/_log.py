"""The in-memory engagement log: events by time, for trending and creator recommendations."""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable
from datetime import datetime

from ..exceptions import InvalidInputError
from ..models._engagement import EngagementEvent
from ..models._window import EngagementWindow
from ..validation import check_aware, check_id, check_limit
from ._common import DEFAULT_IDEMPOTENCY_SECONDS, IdempotencyWindow

__all__ = ["InMemoryEngagementLog"]


class InMemoryEngagementLog:
    """An :class:`~reelrank.protocols.EngagementLog` holding every recorded event.

    Events are kept sorted by ``(occurred_at, event_id)``, globally and per user, so a
    time-window read is two binary searches. Thread-safe. Old events stay until
    :meth:`prune` drops them.

    A recorded ``event_id`` is remembered for ``idempotency_seconds`` of ``clock``
    (default a week, as in :class:`~reelrank.InMemoryEventStore`); ``None`` remembers
    every id for the log's lifetime.
    """

    def __init__(
        self,
        *,
        idempotency_seconds: float | None = DEFAULT_IDEMPOTENCY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._recorded_ids = IdempotencyWindow(idempotency_seconds, clock=clock)
        self._keys: list[tuple[datetime, str]] = []
        self._events: list[EngagementEvent] = []
        self._user_keys: dict[int, list[tuple[datetime, str]]] = {}
        self._user_events: dict[int, list[EngagementEvent]] = {}

    def __len__(self) -> int:
        return len(self._events)

    def record(self, event: EngagementEvent) -> bool:
        """Keep an event once per ``event_id``; ``False`` for a duplicate."""
        if not isinstance(event, EngagementEvent):
            raise InvalidInputError("event", "must be an EngagementEvent")
        key = (event.occurred_at, event.event_id)
        with self._lock:
            if not self._recorded_ids.accept(event.event_id):
                return False
            position = bisect.bisect_right(self._keys, key)
            self._keys.insert(position, key)
            self._events.insert(position, event)
            user_keys = self._user_keys.setdefault(event.user_id, [])
            user_events = self._user_events.setdefault(event.user_id, [])
            position = bisect.bisect_right(user_keys, key)
            user_keys.insert(position, key)
            user_events.insert(position, event)
            return True

    def prune(self, before: datetime) -> int:
        """Forget events that occurred before ``before``; returns how many.

        Their ids are still remembered (for the idempotency horizon), so a late
        redelivery is not recorded again.
        Call it now and then with the oldest time any reader looks back to.
        """
        before = check_aware("before", before)
        bound = (before, "")
        with self._lock:
            cut = bisect.bisect_left(self._keys, bound)
            del self._keys[:cut]
            del self._events[:cut]
            for user_id in list(self._user_keys):
                keys = self._user_keys[user_id]
                user_cut = bisect.bisect_left(keys, bound)
                if user_cut == len(keys):
                    del self._user_keys[user_id]
                    del self._user_events[user_id]
                elif user_cut:
                    del keys[:user_cut]
                    del self._user_events[user_id][:user_cut]
            return cut

    @staticmethod
    def _newest_between(
        keys: list[tuple[datetime, str]],
        events: list[EngagementEvent],
        start: datetime,
        end: datetime | None,
        limit: int,
    ) -> list[EngagementEvent]:
        # "" sorts before every event id, so (t, "") bounds all events at time t.
        low = bisect.bisect_left(keys, (start, ""))
        high = len(keys) if end is None else bisect.bisect_left(keys, (end, ""))
        low = max(low, high - limit)
        return events[low:high][::-1]

    def events_between(
        self, start: datetime, end: datetime, *, limit: int
    ) -> list[EngagementEvent]:
        """Events with ``start <= occurred_at < end``, the newest ``limit``, newest first."""
        start = check_aware("start", start)
        end = check_aware("end", end)
        check_limit("limit", limit)
        with self._lock:
            return self._newest_between(self._keys, self._events, start, end, limit)

    def columns_between(self, start: datetime, end: datetime, *, limit: int) -> EngagementWindow:
        """The events of :meth:`events_between`, in its order, as columns."""
        return EngagementWindow.from_events(self.events_between(start, end, limit=limit))

    def user_events(self, user_id: int, *, since: datetime, limit: int) -> list[EngagementEvent]:
        """The user's events at or after ``since``, the newest ``limit``, newest first."""
        check_id("user_id", user_id)
        since = check_aware("since", since)
        check_limit("limit", limit)
        with self._lock:
            keys = self._user_keys.get(user_id)
            if keys is None:
                return []
            return self._newest_between(keys, self._user_events[user_id], since, None, limit)
