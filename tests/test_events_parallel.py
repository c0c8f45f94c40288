"""EngagementRecorder with ``parallel_writes``: the log and seen writes run beside the
event store's append, with the same results, errors and retries as one after the other."""

from __future__ import annotations

import contextvars
import threading
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reelrank import (
    CircuitBreaker,
    DependencyGuard,
    EngagementEvent,
    EngagementKind,
    EngagementRecorder,
    FeedObserver,
    GuardedStore,
    InMemoryCatalog,
    InMemoryEngagementLog,
    InMemoryEventStore,
    InMemorySeenStore,
    NotFoundError,
    RecorderConfig,
    StoreError,
    StoreTimeoutError,
    WorkerPool,
)
from reelrank.testing import EPOCH, FaultInjector, ManualClock, make_creator, make_event, make_video

NOW = EPOCH + timedelta(days=1)
WAIT = 10.0
"""Longest a test waits for another thread to reach a point; it never does when the
writes are made in turn."""


class _Stores:
    """A small catalog, and an event store, log and seen store each behind a
    :class:`FaultInjector`."""

    def __init__(self) -> None:
        self.catalog = InMemoryCatalog()
        for creator_id in (1, 2):
            self.catalog.put_creator(make_creator(creator_id))
        for video_id in range(1, 5):
            self.catalog.put_video(make_video(video_id, 1 + video_id % 2, duration_seconds=40.0))
        self.events = FaultInjector(InMemoryEventStore(), name="events")
        self.log = FaultInjector(InMemoryEngagementLog(), name="log")
        self.seen = FaultInjector(InMemorySeenStore(), name="seen")
        self.clock = ManualClock(NOW)

    def recorder(self, *, parallel: bool, **kwargs: Any) -> EngagementRecorder:
        return EngagementRecorder(
            self.catalog,
            self.events.proxy,
            seen=self.seen.proxy,
            log=self.log.proxy,
            config=RecorderConfig(parallel_writes=parallel, mark_watched_seen=True),
            now=self.clock.now,
            **kwargs,
        )

    def logged(self) -> list[str]:
        events = self.log.store.events_between(EPOCH - timedelta(days=1), NOW, limit=1_000)
        return sorted(event.event_id for event in events)


class _StepStore:
    """Calls ``before`` ahead of the wrapped method and ``after`` once it returned."""

    def __init__(self, store: Any, method: str, before: Any = None, after: Any = None) -> None:
        self._store, self._method = store, method
        self._before, self._after = before, after

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._store, name)
        if name != self._method:
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            if self._before is not None:
                self._before()
            result = target(*args, **kwargs)
            if self._after is not None:
                self._after()
            return result

        return call


def _pair(parallel: bool, **steps: Any) -> tuple[EngagementRecorder, InMemoryEngagementLog]:
    stores = _Stores()
    log = InMemoryEngagementLog()
    recorder = EngagementRecorder(
        stores.catalog,
        _StepStore(InMemoryEventStore(), "append", steps.get("append_before"),
                   steps.get("append_after")),  # type: ignore[arg-type]
        log=_StepStore(log, "record", steps.get("log_before")),  # type: ignore[arg-type]
        config=RecorderConfig(parallel_writes=parallel),
        now=stores.clock.now,
    )  # fmt: skip
    return recorder, log


def _pair_taking_steps(
    parallel: bool,
) -> tuple[EngagementRecorder, InMemoryEngagementLog, list[str]]:
    """A :func:`_pair` noting, in order, each append's start and end and each log write's
    start."""
    steps: list[str] = []
    recorder, log = _pair(
        parallel,
        append_before=lambda: steps.append("append"),
        append_after=lambda: steps.append("appended"),
        log_before=lambda: steps.append("log"),
    )
    return recorder, log, steps


def test_the_log_write_starts_before_the_append_returns() -> None:
    log_called = threading.Event()
    append_saw_the_log: list[bool] = []
    recorder, log = _pair(
        True,
        # The append returns only once the log's record has been called: written in
        # turn, it would wait out WAIT and see False.
        append_before=lambda: append_saw_the_log.append(log_called.wait(WAIT)),
        log_before=log_called.set,
    )
    try:
        assert recorder.like(1, 1, event_id="a", occurred_at=EPOCH) is True
        assert recorder.like(1, 1, event_id="a", occurred_at=EPOCH) is False
    finally:
        recorder.close()
    assert append_saw_the_log == [True, True]
    assert len(log) == 1


def test_without_the_option_the_log_is_written_after_the_append_returned() -> None:
    recorder, log, steps = _pair_taking_steps(False)
    threads_before = set(_pool_threads())
    assert recorder.share(1, 1, event_id="s", channel="link", occurred_at=EPOCH) is True
    assert steps == ["append", "appended", "log"]
    assert set(_pool_threads()) == threads_before
    assert len(log) == 1


def test_the_pool_writes_in_the_callers_context() -> None:
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
    seen_by_log: list[tuple[str, str]] = []
    recorder, _ = _pair(
        True,
        log_before=lambda: seen_by_log.append((request_id.get(), threading.current_thread().name)),
    )
    request_id.set("r-1")
    try:
        recorder.watch(1, 1, event_id="w", occurred_at=EPOCH, completion=0.5)
    finally:
        recorder.close()
    [(value, thread_name)] = seen_by_log
    assert value == "r-1"
    assert thread_name.startswith("reelrank-recorder")


@pytest.mark.parametrize("parallel", [False, True])
def test_a_failed_append_raises_its_error_and_a_retry_completes_once(parallel: bool) -> None:
    stores = _Stores()
    recorder = stores.recorder(parallel=parallel)
    stores.events.fail(times=1, methods=["append"])
    with pytest.raises(StoreError) as info:
        recorder.watch(1, 1, event_id="w", occurred_at=EPOCH, completion=0.5)
    assert info.value.store == "events"
    # Written beside the failed append, the log already holds the event; in turn, not.
    assert stores.logged() == (["w"] if parallel else [])
    assert recorder.watch(1, 1, event_id="w", occurred_at=EPOCH, completion=0.5) is True
    assert recorder.watch(1, 1, event_id="w", occurred_at=EPOCH, completion=0.5) is False
    recorder.close()
    assert stores.events.store.get_stats([1])[1].views == 1
    assert stores.logged() == ["w"]
    assert stores.seen.store.seen_among(1, [1], since=EPOCH) == {1}


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("failing", ["log", "seen"])
def test_a_failed_later_write_raises_its_error_and_a_retry_completes_once(
    parallel: bool, failing: str
) -> None:
    stores = _Stores()
    recorder = stores.recorder(parallel=parallel)
    injector = stores.log if failing == "log" else stores.seen
    injector.fail(times=1)
    with pytest.raises(StoreError) as info:
        recorder.watch(1, 1, event_id="w", occurred_at=EPOCH, completion=0.5)
    assert info.value.store == failing
    assert recorder.watch(1, 1, event_id="w", occurred_at=EPOCH, completion=0.5) is False
    recorder.close()
    assert stores.events.store.get_stats([1])[1].views == 1
    assert stores.logged() == ["w"]
    assert stores.seen.store.seen_among(1, [1], since=EPOCH) == {1}


def test_when_every_write_fails_the_event_stores_error_wins() -> None:
    stores = _Stores()
    recorder = stores.recorder(parallel=True)
    # The log's failure surfaces before the append's: the append waits for it.
    log_failed = threading.Event()
    stores.log.fail(StoreError("log", "down"))
    events = _StepStore(stores.events, "append", before=lambda: log_failed.wait(WAIT))
    failing_log = _StepStore(stores.log, "record", before=log_failed.set)
    recorder = EngagementRecorder(
        stores.catalog,
        events,  # type: ignore[arg-type]
        seen=stores.seen.proxy,
        log=failing_log,  # type: ignore[arg-type]
        config=RecorderConfig(parallel_writes=True, mark_watched_seen=True),
        now=stores.clock.now,
    )
    stores.events.fail(StoreError("events", "down"), methods=["append"])
    stores.seen.fail(StoreError("seen", "down"))
    with pytest.raises(StoreError) as info:
        recorder.watch(1, 1, event_id="w", occurred_at=EPOCH, completion=0.5)
    assert info.value.store == "events"
    for injector in (stores.events, stores.log, stores.seen):
        injector.recover()
    assert recorder.watch(1, 1, event_id="w", occurred_at=EPOCH, completion=0.5) is True
    recorder.close()
    assert stores.events.store.get_stats([1])[1].views == 1
    assert stores.logged() == ["w"]


class _Calls(FeedObserver):
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()

    def store_call(self, store: str, operation: str, seconds: float, outcome: Any) -> None:
        with self._lock:
            self.calls.append((store, operation, outcome))


def test_the_observer_hears_the_same_calls_either_way() -> None:
    heard: dict[bool, list[tuple[str, str, str]]] = {}
    for parallel in (False, True):
        stores = _Stores()
        observer = _Calls()
        recorder = stores.recorder(parallel=parallel, observer=observer)
        recorder.watch(1, 1, event_id="w", occurred_at=EPOCH, completion=0.5)
        stores.log.fail(times=1)
        with pytest.raises(StoreError):
            recorder.like(1, 2, event_id="l", occurred_at=EPOCH)
        recorder.close()
        heard[parallel] = sorted(observer.calls)
    assert (
        heard[True]
        == heard[False]
        == sorted(
            [
                ("catalog", "get_video", "ok"),
                ("events", "append", "ok"),
                ("log", "record", "ok"),
                ("seen", "mark_seen", "ok"),
                ("catalog", "get_video", "ok"),
                ("events", "append", "ok"),
                ("log", "record", "error"),
            ]
        )
    )


def test_a_bad_event_raises_before_anything_is_written() -> None:
    stores = _Stores()
    recorder = stores.recorder(parallel=True)
    threads_before = set(_pool_threads())
    with pytest.raises(NotFoundError):
        recorder.like(1, 404, event_id="x", occurred_at=EPOCH)
    assert stores.log.calls == {} and stores.events.calls == {}
    assert not set(_pool_threads()) - threads_before  # started by the first write


def _pool_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("reelrank-recorder")]


def test_close_stops_the_pool_and_later_calls_write_in_turn() -> None:
    recorder, log, steps = _pair_taking_steps(True)
    before = set(_pool_threads())
    recorder.like(1, 1, event_id="a", occurred_at=EPOCH)
    assert set(_pool_threads()) - before
    recorder.close()
    for thread in set(_pool_threads()) - before:
        thread.join(WAIT)
        assert not thread.is_alive()
    steps.clear()
    assert recorder.like(1, 2, event_id="b", occurred_at=EPOCH) is True
    assert steps == ["append", "appended", "log"]
    assert not set(_pool_threads()) - before
    recorder.close()  # again: nothing to do
    assert len(log) == 2


def test_close_waits_for_a_write_under_way() -> None:
    release = threading.Event()
    log_started = threading.Event()

    def slow_log() -> None:
        log_started.set()
        release.wait(WAIT)

    recorder, log = _pair(True, log_before=slow_log)
    worker = threading.Thread(target=lambda: recorder.like(1, 1, event_id="a", occurred_at=EPOCH))
    worker.start()
    assert log_started.wait(WAIT)
    recorder.close(timeout=0.01)  # gives up waiting: the write is still under way
    assert len(log) == 0
    release.set()
    recorder.close()
    worker.join(WAIT)
    assert len(log) == 1


# -- the same end state as writes made in turn, under failures and retries -------------------

_deliveries = st.lists(
    st.tuples(
        st.sampled_from(list(EngagementKind)),
        st.integers(1, 3),  # user
        st.integers(1, 4),  # video
        st.sampled_from([None, "events", "log", "seen", "all"]),  # the fault of the first try
        st.integers(0, 2),  # redeliveries after it succeeded
    ),
    min_size=1,
    max_size=15,
)


def _deliver(stores: _Stores, recorder: EngagementRecorder, event: EngagementEvent,
             fault: str | None, redeliveries: int) -> list[Any]:  # fmt: skip
    """Deliver ``event`` with ``fault`` on the first try, retry until it succeeds, then
    redeliver it; what each delivery answered."""
    injectors = {"events": stores.events, "log": stores.log, "seen": stores.seen}
    for name, injector in injectors.items():
        if fault in (name, "all"):
            injector.fail(methods=["append"] if name == "events" else None)
    answers: list[Any] = []
    try:
        answers.append(recorder.record(event))
    except StoreError as error:
        answers.append(error.store)
    for injector in injectors.values():
        injector.recover()
    if isinstance(answers[0], str):
        answers.append(recorder.record(event))
    answers.extend(recorder.record(event) for _ in range(redeliveries))
    return answers


@settings(max_examples=40, deadline=None)
@given(deliveries=_deliveries)
def test_failures_and_retries_end_as_with_writes_in_turn(deliveries: list[Any]) -> None:
    events = [
        make_event(kind, user_id=user, video_id=video, **({"completion": 0.25 * video}
                   if kind is EngagementKind.WATCH else {}))
        for kind, user, video, _, _ in deliveries
    ]  # fmt: skip
    outcomes = {}
    for parallel in (False, True):
        stores = _Stores()
        recorder = stores.recorder(parallel=parallel)
        answers = [
            _deliver(stores, recorder, event, fault, redeliveries)
            for event, (_, _, _, fault, redeliveries) in zip(events, deliveries, strict=True)
        ]
        recorder.close()
        outcomes[parallel] = (
            answers,
            stores.events.store.get_stats([1, 2, 3, 4]),
            [stores.events.store.get_affinities(user, [1, 2]) for user in (1, 2, 3)],
            stores.logged(),
            [stores.seen.store.seen_among(user, [1, 2, 3, 4], since=EPOCH) for user in (1, 2, 3)],
        )
    assert outcomes[True] == outcomes[False]
    # And the end state is what the events say: each logged once, applied once.
    assert outcomes[True][3] == sorted(event.event_id for event in events)
    assert all(delivery.count(True) <= 1 for delivery in outcomes[True][0])


def test_a_guarded_log_that_stalls_fails_the_call_at_its_deadline() -> None:
    stores = _Stores()
    guard = DependencyGuard(
        "log",
        pool=WorkerPool(2),
        breaker=CircuitBreaker("log", failure_threshold=100),
        deadline_seconds=0.05,
        max_stalled=4,
    )
    guarded_log: Any = GuardedStore(stores.log.proxy, guard)
    recorder = EngagementRecorder(
        stores.catalog,
        stores.events.proxy,
        log=guarded_log,
        config=RecorderConfig(parallel_writes=True),
        now=stores.clock.now,
    )
    # The stall outlasts the test's own timeout: the call can only end by the guard's
    # deadline, on the pool's thread, and the recorder waiting no longer than that.
    stores.log.stall(3_600.0)
    try:
        with pytest.raises(StoreTimeoutError) as info:
            recorder.like(1, 1, event_id="a", occurred_at=EPOCH)
        assert info.value.store == "log"
    finally:
        stores.log.recover()
    assert stores.events.store.get_stats([1])[1].likes == 1
    assert recorder.like(1, 1, event_id="a", occurred_at=EPOCH) is False
    recorder.close()
    assert stores.logged() == ["a"]


@pytest.mark.parametrize("threads", [1, 3])
def test_no_more_writes_run_beside_their_appends_than_the_pool_has_threads(
    threads: int,
) -> None:
    """More callers than threads each start a log write that blocks until released: at
    most ``threads`` of them run on the pool at once, the others are made in turn."""
    callers = threads + 3
    lock = threading.Lock()
    on_pool = [0, 0]  # writes on the pool now, the most at once
    started = threading.Semaphore(0)
    release = threading.Event()

    def log_before() -> None:
        if threading.current_thread().name.startswith("reelrank-recorder"):
            with lock:
                on_pool[0] += 1
                on_pool[1] = max(on_pool[1], on_pool[0])
        started.release()
        release.wait(WAIT)

    def log_after() -> None:
        if threading.current_thread().name.startswith("reelrank-recorder"):
            with lock:
                on_pool[0] -= 1

    stores = _Stores()
    log = InMemoryEngagementLog()
    recorder = EngagementRecorder(
        stores.catalog, InMemoryEventStore(),
        log=_StepStore(log, "record", log_before, log_after),  # type: ignore[arg-type]
        config=RecorderConfig(parallel_writes=True, parallel_write_threads=threads),
        now=stores.clock.now,
    )  # fmt: skip
    workers = [
        threading.Thread(
            target=recorder.like,
            args=(user, 1),
            kwargs={"event_id": f"e{user}", "occurred_at": EPOCH},
        )
        for user in range(1, callers + 1)
    ]
    try:
        for worker in workers:
            worker.start()
        for _ in range(callers):  # every log write has started: blocked, not finished
            assert started.acquire(timeout=WAIT)
    finally:
        release.set()
        for worker in workers:
            worker.join(WAIT)
        recorder.close()
    assert on_pool[1] == threads
    assert len(log) == callers
