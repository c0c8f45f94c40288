"""Group commit of event writes: concurrent appends joined into batch calls, each
request answered with its own event's result."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reelrank import (
    EngagementEvent,
    GroupCommitEngagementLog,
    GroupCommitEventStore,
    InMemoryEngagementLog,
    InMemoryEventStore,
    InvalidInputError,
    StoreError,
)
from reelrank.testing import make_event


class BatchingStore:
    """An in-memory event store with ``append_each`` (the reference: its own
    ``append``, item by item), recording each batch it was given. ``gate``, when set,
    holds the first batch until released, so that the next requests queue behind it."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.inner = InMemoryEventStore()
        self.batches: list[list[str]] = []
        self.gate = gate
        self.first_batch_started = threading.Event()
        self.fail_with: Exception | None = None

    def append_each(self, items: Sequence[tuple[EngagementEvent, int]]) -> list[bool]:
        self.batches.append([event.event_id for event, _ in items])
        self.first_batch_started.set()
        if self.gate is not None:
            assert self.gate.wait(10)
            self.gate = None
        if self.fail_with is not None:
            raise self.fail_with
        if any(creator_id == 0 for _, creator_id in items):
            raise InvalidInputError("creator_id", "must be positive")
        return [self.inner.append(event, creator_id=creator_id) for event, creator_id in items]

    def get_stats(self, video_ids: Sequence[int]) -> dict[int, object]:
        return dict(self.inner.get_stats(video_ids))


def _wait_until_queued(store: GroupCommitEventStore, count: int) -> None:
    """Until ``count`` requests wait behind the batch in flight."""
    deadline = time.monotonic() + 10
    while len(store._commit._pending) < count:
        assert time.monotonic() < deadline, "the requests never queued"
        time.sleep(0.001)


def test_requests_arriving_during_a_flush_are_stored_in_the_next_batch() -> None:
    gate = threading.Event()
    backing = BatchingStore(gate)
    store = GroupCommitEventStore(backing)
    first = make_event("share")
    waiting = [make_event("share", user_id=n) for n in range(2, 6)]
    with ThreadPoolExecutor(max_workers=5) as pool:
        leader = pool.submit(store.append, first, creator_id=1)
        assert backing.first_batch_started.wait(10)
        followers = [pool.submit(store.append, event, creator_id=1) for event in waiting]
        _wait_until_queued(store, len(waiting))
        gate.set()
        assert leader.result(10) is True
        assert [f.result(10) for f in followers] == [True] * len(waiting)
    assert backing.batches[0] == [first.event_id]
    # The four that queued behind the first batch went in one batch, not four.
    assert sorted(backing.batches[1]) == sorted(event.event_id for event in waiting)
    assert len(backing.batches) == 2
    assert store.get_stats([1])[1].shares == 5


def test_max_batch_bounds_a_batch() -> None:
    gate = threading.Event()
    backing = BatchingStore(gate)
    store = GroupCommitEventStore(backing, max_batch=2)
    events = [make_event("share", user_id=n) for n in range(1, 7)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(store.append, events[0], creator_id=1)]
        assert backing.first_batch_started.wait(10)
        futures += [pool.submit(store.append, event, creator_id=1) for event in events[1:]]
        gate.set()
        assert all(f.result(10) for f in futures)
    assert max(len(batch) for batch in backing.batches) <= 2
    assert sorted(i for batch in backing.batches for i in batch) == sorted(
        event.event_id for event in events
    )


def test_a_failed_batch_fails_every_request_in_it_and_the_next_batch_proceeds() -> None:
    backing = BatchingStore()
    store = GroupCommitEventStore(backing)
    backing.fail_with = StoreError("events", "server went away")
    event = make_event("share")
    with pytest.raises(StoreError):
        store.append(event, creator_id=1)
    backing.fail_with = None
    # Retried: stored now, and once.
    assert store.append(event, creator_id=1) is True
    assert store.append(event, creator_id=1) is False


def test_a_bad_item_fails_only_its_own_request() -> None:
    gate = threading.Event()
    backing = BatchingStore(gate)
    store = GroupCommitEventStore(backing)
    good, bad, other = (make_event("share", user_id=n) for n in (1, 2, 3))
    with ThreadPoolExecutor(max_workers=3) as pool:
        leader = pool.submit(store.append, make_event("comment"), creator_id=1)
        assert backing.first_batch_started.wait(10)
        queued = [
            pool.submit(store.append, good, creator_id=1),
            pool.submit(store.append, bad, creator_id=0),
            pool.submit(store.append, other, creator_id=1),
        ]
        gate.set()
        assert leader.result(10) is True
        assert queued[0].result(10) is True
        assert queued[2].result(10) is True
        with pytest.raises(InvalidInputError) as info:
            queued[1].result(10)
    assert info.value.field == "creator_id"
    assert store.get_stats([1])[1].shares == 2


@settings(max_examples=25, deadline=None)
@given(
    deliveries=st.lists(
        st.lists(st.integers(min_value=0, max_value=9), min_size=1, max_size=12),
        min_size=1,
        max_size=4,
    )
)
def test_each_event_is_answered_applied_exactly_once_whatever_the_interleaving(
    deliveries: list[list[int]],
) -> None:
    """Threads deliver events (some the same, as retries): across all answers each
    distinct event is applied once, as the reference store counts it."""
    events = [make_event("share", user_id=n + 1) for n in range(10)]
    backing = BatchingStore()
    store = GroupCommitEventStore(backing, max_batch=3)

    def deliver(indices: list[int]) -> list[bool]:
        return [store.append(events[i], creator_id=1) for i in indices]

    with ThreadPoolExecutor(max_workers=len(deliveries)) as pool:
        answers = [a for each in pool.map(deliver, deliveries) for a in each]
    distinct = {i for indices in deliveries for i in indices}
    assert sum(answers) == len(distinct)
    assert store.get_stats([1])[1].shares == len(distinct)


class BatchingLog:
    def __init__(self) -> None:
        self.inner = InMemoryEngagementLog()
        self.batches = 0

    def record_each(self, events: Sequence[EngagementEvent]) -> list[bool]:
        self.batches += 1
        return [self.inner.record(event) for event in events]


def test_the_log_wrapper_records_once_and_forwards_reads() -> None:
    backing = BatchingLog()
    log = GroupCommitEngagementLog(backing)
    event = make_event("like")
    assert log.record(event) is True
    assert log.record(event) is False
    assert backing.batches == 2
    assert log.inner.user_events(1, since=event.occurred_at, limit=5) == [event]


def test_stores_without_batch_methods_and_bad_batch_sizes_are_refused() -> None:
    with pytest.raises(InvalidInputError) as info:
        GroupCommitEventStore(InMemoryEventStore())  # type: ignore[arg-type]
    assert info.value.field == "store"
    with pytest.raises(InvalidInputError) as info:
        GroupCommitEngagementLog(InMemoryEngagementLog())  # type: ignore[arg-type]
    assert info.value.field == "log"
    with pytest.raises(InvalidInputError) as info:
        GroupCommitEventStore(BatchingStore(), max_batch=0)
    assert info.value.field == "max_batch"
