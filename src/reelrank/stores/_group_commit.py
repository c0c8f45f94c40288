"""Group commit: concurrent writes to a store joined into one batch call.

An event write to a store such as ClickHouse costs a few round trips and an insert
whatever the batch size, and a store's writer serves one call at a time, so under load
the requests of a process queue for it one by one. :class:`GroupCommitEventStore` and
:class:`GroupCommitEngagementLog` let them queue as a batch instead: a request's write
joins the batch being collected, one of the waiting requests (the first to find no
batch in flight) stores the whole batch with one call to the store's ``append_each`` or
``record_each``, and each request returns once the call that carried its event has
returned, with its own event's result. Acknowledged still means stored, exactly once
per ``event_id`` as the store guarantees; a failed batch call fails every request in
it, each of which the client retries as before.

No thread of its own: the requests take turns at flushing (leader and followers), so
there is nothing to start or stop, and a process that writes one event at a time pays
nothing for it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

from ..exceptions import InvalidInputError
from ..models._engagement import EngagementEvent
from ._proxy import StoreProxy

__all__ = [
    "EventsAppendedEach",
    "EventsRecordedEach",
    "GroupCommitEngagementLog",
    "GroupCommitEventStore",
]

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


class EventsAppendedEach(Protocol):
    """An event store that applies a batch and says, per item, whether it was applied."""

    def append_each(self, items: Sequence[tuple[EngagementEvent, int]]) -> list[bool]:
        """Apply ``(event, creator_id)`` pairs in one call; ``False`` for an ``event_id``
        applied before (or earlier in the batch)."""
        ...


class EventsRecordedEach(Protocol):
    """An engagement log that keeps a batch and says, per event, whether it was new."""

    def record_each(self, events: Sequence[EngagementEvent]) -> list[bool]:
        """Keep the events in one call; ``False`` for an ``event_id`` kept before (or
        earlier in the batch)."""
        ...


class _Slot(Generic[_Item, _Result]):
    __slots__ = ("done", "error", "item", "result")

    def __init__(self, item: _Item) -> None:
        self.item = item
        self.done = False
        self.result: _Result | None = None
        self.error: BaseException | None = None


class _GroupCommit(Generic[_Item, _Result]):
    """Runs ``flush`` over the items submitted while the previous flush was running.

    ``max_batch`` bounds the items of one call. When a batch call rejects its input
    (:class:`~reelrank.InvalidInputError`), each of its items is flushed alone, so one
    bad item fails only its own request.
    """

    def __init__(self, flush: Callable[[list[_Item]], Sequence[_Result]], max_batch: int) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._changed = threading.Condition(threading.Lock())
        self._pending: list[_Slot[_Item, _Result]] = []
        self._flushing = False

    def submit(self, item: _Item) -> _Result:
        slot: _Slot[_Item, _Result] = _Slot(item)
        with self._changed:
            self._pending.append(slot)
        while True:
            with self._changed:
                while not slot.done and self._flushing:
                    self._changed.wait()
                if slot.done:
                    return self._outcome(slot)
                # No flush in flight and this item still waiting: this request flushes
                # the oldest items (its own among them, or in a later round).
                self._flushing = True
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
            try:
                self._run(batch)
            finally:
                with self._changed:
                    for each in batch:
                        each.done = True
                    self._flushing = False
                    self._changed.notify_all()

    def _run(self, batch: list[_Slot[_Item, _Result]]) -> None:
        try:
            results = self._flush([slot.item for slot in batch])
        except InvalidInputError as exc:
            if len(batch) == 1:
                batch[0].error = exc
                return
            for slot in batch:
                self._run([slot])
            return
        except BaseException as exc:
            for slot in batch:
                slot.error = exc
            return
        for slot, result in zip(batch, results, strict=True):
            slot.result = result

    @staticmethod
    def _outcome(slot: _Slot[_Item, _Result]) -> _Result:
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]


def _check_max_batch(max_batch: int) -> int:
    if type(max_batch) is not int or max_batch < 1:
        raise InvalidInputError("max_batch", "must be a positive int")
    return max_batch


class GroupCommitEventStore(StoreProxy):
    """An :class:`~reelrank.EventStore` whose concurrent :meth:`append` calls are stored
    together, with one ``store.append_each`` call per batch (see the module above).

    ``store`` must offer ``append_each`` (:class:`EventsAppendedEach`; the ClickHouse
    event store does); every other method and attribute is the store's own (a
    :class:`~reelrank.StoreProxy`). At most ``max_batch`` events go in one call.
    Thread-safe; use one per process, shared by its request threads.
    """

    def __init__(self, store: EventsAppendedEach, *, max_batch: int = 500) -> None:
        if not callable(getattr(store, "append_each", None)):
            raise InvalidInputError("store", "must have an append_each method")
        super().__init__(store)
        self._commit: _GroupCommit[tuple[EngagementEvent, int], bool] = _GroupCommit(
            store.append_each, _check_max_batch(max_batch)
        )

    def append(self, event: EngagementEvent, *, creator_id: int) -> bool:
        """Apply one event, in the next batch; ``False`` for an ``event_id`` seen before."""
        return self._commit.submit((event, creator_id))


class GroupCommitEngagementLog(StoreProxy):
    """An :class:`~reelrank.EngagementLog` whose concurrent :meth:`record` calls are kept
    together, with one ``log.record_each`` call per batch (see the module above).

    ``log`` must offer ``record_each`` (:class:`EventsRecordedEach`; the ClickHouse log
    does); every other method and attribute is the log's own (a
    :class:`~reelrank.StoreProxy`). At most ``max_batch`` events go in one call.
    Thread-safe; use one per process.
    """

    def __init__(self, log: EventsRecordedEach, *, max_batch: int = 500) -> None:
        if not callable(getattr(log, "record_each", None)):
            raise InvalidInputError("log", "must have a record_each method")
        super().__init__(log)
        self._commit: _GroupCommit[EngagementEvent, bool] = _GroupCommit(
            log.record_each, _check_max_batch(max_batch)
        )

    def record(self, event: EngagementEvent) -> bool:
        """Keep one event, in the next batch; ``False`` for an ``event_id`` kept before."""
        return self._commit.submit(event)
