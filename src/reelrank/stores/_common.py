"""What the in-memory stores share: retention defaults and the idempotency window.

They are the default backend: no server, no I/O, safe to share between threads (each
store guards its state with one lock). They suit tests, notebooks, demos and a single
process serving a catalog that fits in memory; state is lost when the process ends.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from ..exceptions import InvalidInputError
from ..models._engagement import EngagementEvent, EngagementKind
from ..validation import check_id, check_ttl

_DAY_SECONDS = 86_400.0

DEFAULT_IDEMPOTENCY_SECONDS = 7 * _DAY_SECONDS
"""How long the in-memory stores remember an accepted event id by default: a week,
far beyond any client's retries (the Redis adapter's default too)."""

DEFAULT_SEEN_RETENTION_SECONDS = 30 * _DAY_SECONDS
"""How long :class:`InMemorySeenStore` keeps a seen mark by default: the default
:attr:`~reelrank.RankingConfig.seen_window_days`."""

_T = TypeVar("_T")


def _check_retention(field: str, value: object) -> float | None:
    return None if value is None else check_ttl(field, value)


class IdempotencyWindow:
    """The event ids accepted within the last ``horizon_seconds`` of ``clock``.

    An id is forgotten ``horizon_seconds`` after it was accepted (never, with
    ``None``), so memory holds only the ids a client could still retry. Ids are
    accepted in clock order, so expiry pops the oldest from the front of a queue:
    constant amortised time per accepted id. Not thread-safe: the owning store's lock
    guards it.
    """

    def __init__(
        self,
        horizon_seconds: float | None = DEFAULT_IDEMPOTENCY_SECONDS,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._horizon = _check_retention("idempotency_seconds", horizon_seconds)
        self._clock = clock
        self._ids: set[str] = set()
        self._accepted: deque[tuple[float, str]] = deque()

    def __len__(self) -> int:
        return len(self._ids)

    def accept(self, event_id: str) -> bool:
        """Remember ``event_id``; ``False`` if it is remembered already."""
        if self._horizon is None:
            if event_id in self._ids:
                return False
            self._ids.add(event_id)
            return True
        now = self._clock()
        oldest_kept = now - self._horizon
        while self._accepted and self._accepted[0][0] <= oldest_kept:
            self._ids.discard(self._accepted.popleft()[1])
        if event_id in self._ids:
            return False
        self._ids.add(event_id)
        self._accepted.append((now, event_id))
        return True


def _check_instance(field: str, value: object, kind: type[_T]) -> _T:
    if not isinstance(value, kind):
        raise InvalidInputError(field, f"must be a {kind.__name__}, got {type(value).__name__}")
    return value


def check_appendable_event(event: object, creator_id: object) -> EngagementEvent:
    """Check an event and its creator as :meth:`~reelrank.stores.EventStore.append` takes them.

    Every event store applies the same rules before it writes anything: ``event`` is an
    :class:`~reelrank.EngagementEvent`, ``creator_id`` a valid id, and a watch carries
    its ``completion`` (a watch built without one is a valid model, for callers that
    fill it in later, but the statistics need it once stored).

    Returns the event; raises :class:`~reelrank.InvalidInputError` naming ``event``,
    ``creator_id`` or ``completion``.
    """
    checked = _check_instance("event", event, EngagementEvent)
    check_id("creator_id", creator_id)
    if checked.kind is EngagementKind.WATCH and checked.completion is None:
        raise InvalidInputError("completion", "a watch must carry completion when appended")
    return checked
