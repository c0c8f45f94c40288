from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reelrank import (
    ConfigError,
    InvalidInputError,
    StoreError,
    StoreTimeoutError,
    StoreUnavailableError,
)
from reelrank.feed import BreakerAdmission, BreakerState, CircuitBreaker
from reelrank.feed._resilience import DependencyGuard, WorkerPool, request_scope


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: FakeClock, threshold: int = 3, reset: float = 10.0) -> CircuitBreaker:
    return CircuitBreaker(
        "stats", failure_threshold=threshold, reset_timeout_seconds=reset, clock=clock
    )


def admitted(cb: CircuitBreaker) -> BreakerAdmission:
    admission = cb.admit()
    assert admission is not None
    return admission


def test_breaker_opens_after_threshold_consecutive_failures() -> None:
    clock = FakeClock()
    cb = breaker(clock)
    for _ in range(2):
        cb.record_failure(admitted(cb))
    assert cb.state is BreakerState.CLOSED
    cb.record_failure(admitted(cb))
    assert cb.state is BreakerState.OPEN
    assert cb.admit() is None


def test_success_resets_the_failure_count() -> None:
    cb = breaker(FakeClock())
    cb.record_failure(admitted(cb))
    cb.record_failure(admitted(cb))
    cb.record_success(admitted(cb))
    cb.record_failure(admitted(cb))
    cb.record_failure(admitted(cb))
    assert cb.state is BreakerState.CLOSED
    assert cb.consecutive_failures == 2


def test_half_open_after_reset_timeout_allows_exactly_one_trial() -> None:
    clock = FakeClock()
    cb = breaker(clock, threshold=1, reset=10.0)
    cb.record_failure(admitted(cb))
    clock.now = 9.99
    assert cb.admit() is None
    clock.now = 10.0
    assert cb.state is BreakerState.HALF_OPEN
    trial = admitted(cb)
    assert trial.trial
    assert cb.admit() is None, "a second caller must wait for the trial's outcome"
    cb.record_success(trial)
    assert cb.state is BreakerState.CLOSED
    assert not admitted(cb).trial


def test_failed_trial_reopens_for_a_full_reset_timeout() -> None:
    clock = FakeClock()
    cb = breaker(clock, threshold=1, reset=10.0)
    cb.record_failure(admitted(cb))
    clock.now = 15.0
    cb.record_failure(admitted(cb))
    assert cb.state is BreakerState.OPEN
    clock.now = 24.9
    assert cb.admit() is None
    clock.now = 25.0
    assert cb.admit() is not None


def test_a_released_trial_leaves_the_breaker_half_open_for_the_next_call() -> None:
    clock = FakeClock()
    cb = breaker(clock, threshold=1, reset=10.0)
    cb.record_failure(admitted(cb))
    clock.now = 10.0
    trial = admitted(cb)
    assert cb.admit() is None
    cb.release_trial(trial)
    assert cb.state is BreakerState.HALF_OPEN
    second = cb.admit()
    assert second is not None and second.trial, "the released trial is claimed by the next call"
    assert cb.admit() is None
    cb.record_failure(second)
    assert cb.state is BreakerState.OPEN
    assert clock.now == 10.0 and cb.admit() is None


def test_releasing_a_trial_leaves_closed_and_open_breakers_as_they_are() -> None:
    clock = FakeClock()
    cb = breaker(clock, threshold=2, reset=10.0)
    first = admitted(cb)
    cb.record_failure(first)
    cb.release_trial(first)
    assert cb.state is BreakerState.CLOSED
    assert cb.consecutive_failures == 1
    late = admitted(cb)
    cb.record_failure(admitted(cb))
    assert cb.state is BreakerState.OPEN
    clock.now = 5.0
    cb.release_trial(late)
    assert cb.state is BreakerState.OPEN
    assert cb.admit() is None
    clock.now = 10.0
    assert cb.admit() is not None  # the reset timeout still counts from the opening


def test_a_late_callers_outcome_never_settles_the_trial() -> None:
    clock = FakeClock()
    cb = breaker(clock, threshold=1, reset=10.0)
    late = [admitted(cb) for _ in range(3)]  # let through while closed
    cb.record_failure(admitted(cb))
    clock.now = 10.0
    trial = admitted(cb)
    cb.release_trial(late[0])
    assert cb.admit() is None, "a late release must not free the trial"
    cb.record_success(late[1])
    assert cb.state is BreakerState.HALF_OPEN, "a late success must not close the circuit"
    assert cb.consecutive_failures == 0
    cb.record_failure(late[2])
    assert cb.state is BreakerState.HALF_OPEN, "a late failure must not reopen it"
    assert cb.consecutive_failures == 1
    assert cb.admit() is None
    cb.record_success(trial)
    assert cb.state is BreakerState.CLOSED


def test_a_late_failure_does_not_restart_the_open_timeout() -> None:
    clock = FakeClock()
    cb = breaker(clock, threshold=1, reset=10.0)
    late = admitted(cb)
    cb.record_failure(admitted(cb))
    clock.now = 9.0
    cb.record_failure(late)
    clock.now = 10.0
    assert cb.admit() is not None


def test_the_calls_without_an_admission_are_deprecated_and_act_as_before() -> None:
    clock = FakeClock()
    cb = breaker(clock, threshold=1, reset=10.0)
    with pytest.deprecated_call():
        cb.record_failure()
    clock.now = 10.0
    with pytest.deprecated_call():
        assert cb.allow_request()
    with pytest.deprecated_call():
        cb.release_trial()
    trial = admitted(cb)
    with pytest.deprecated_call():
        cb.record_success()
    assert cb.state is BreakerState.CLOSED
    cb.record_success(trial)  # the trial settled already: only the count resets
    assert cb.state is BreakerState.CLOSED


class BreakerModel:
    """Reference behaviour written from the class docstring: states, the one trial,
    and admissions by number (the trial is one of them)."""

    def __init__(self, threshold: int, reset: float) -> None:
        self.threshold, self.reset = threshold, reset
        self.state, self.failures, self.opened_at = "closed", 0, 0.0
        self.trial: int | None = None
        self.issued = 0

    def admit(self, now: float) -> int | None:
        if self.state == "open":
            if now - self.opened_at < self.reset:
                return None
            self.state, self.trial = "half_open", None
        self.issued += 1
        if self.state == "half_open":
            if self.trial is not None:
                return None
            self.trial = self.issued
        return self.issued

    def success(self, admission: int) -> None:
        self.failures = 0
        if admission == self.trial:
            self.state, self.trial = "closed", None

    def release(self, admission: int) -> None:
        if admission == self.trial:
            self.trial = None

    def failure(self, admission: int, now: float) -> None:
        self.failures += 1
        if admission == self.trial:
            self.trial = None
            self.state, self.opened_at = "open", now
        elif self.state == "closed" and self.failures >= self.threshold:
            self.state, self.opened_at = "open", now


@given(
    threshold=st.integers(1, 4),
    steps=st.lists(
        st.tuples(
            st.sampled_from(["admit", "ok", "fail", "release"]),
            st.integers(0, 7),
            st.floats(0, 8),
        ),
        max_size=80,
    ),
)
def test_breaker_matches_the_state_table_over_interleaved_callers(
    threshold: int, steps: list[tuple[str, int, float]]
) -> None:
    """Admissions are settled in any order, each once, as concurrent callers would."""
    clock = FakeClock()
    cb = breaker(clock, threshold=threshold, reset=5.0)
    model = BreakerModel(threshold, 5.0)
    outstanding: list[tuple[BreakerAdmission, int]] = []
    for action, pick, advance in steps:
        clock.now += advance
        if action == "admit":
            expected = model.admit(clock.now)
            admission = cb.admit()
            assert (admission is None) == (expected is None)
            if admission is not None and expected is not None:
                assert admission.trial == (expected == model.trial)
                outstanding.append((admission, expected))
        elif outstanding:
            admission, number = outstanding.pop(pick % len(outstanding))
            if action == "ok":
                cb.record_success(admission)
                model.success(number)
            elif action == "release":
                cb.release_trial(admission)
                model.release(number)
            else:
                cb.record_failure(admission)
                model.failure(number, clock.now)
        expected_state = model.state
        if expected_state == "open" and clock.now - model.opened_at >= 5.0:
            expected_state = "half_open"
        assert cb.state.value == expected_state
        assert cb.consecutive_failures == model.failures


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"reset_timeout_seconds": 0.0}, "reset_timeout_seconds"),
    ],
)
def test_bad_breaker_settings_name_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        CircuitBreaker("x", **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # let stalled workers finish so no thread outlives the test


def guard(
    pool: WorkerPool, *, deadline: float = 0.05, in_flight: int = 2, threshold: int = 100
) -> DependencyGuard:
    return DependencyGuard(
        "catalog",
        pool=pool,
        breaker=CircuitBreaker("catalog", failure_threshold=threshold),
        deadline_seconds=deadline,
        max_stalled=in_flight,
    )


def test_guard_returns_the_result_and_passes_arguments() -> None:
    g = guard(WorkerPool(4))
    assert g.call(lambda a, b=0: a + b, 2, b=3) == 5
    assert g.stats.calls == 1
    assert g.stats.failures == 0


def test_guard_times_out_a_stalled_call_and_counts_it(release: threading.Event) -> None:
    g = guard(WorkerPool(4))
    with pytest.raises(StoreTimeoutError) as info:
        g.call(release.wait)
    assert info.value.store == "catalog"
    assert g.stats.timeouts == 1
    assert g.breaker.consecutive_failures == 1


def test_stalled_calls_cannot_take_more_than_their_bulkhead(release: threading.Event) -> None:
    pool = WorkerPool(8)
    g = guard(pool, in_flight=2)
    for _ in range(2):
        with pytest.raises(StoreTimeoutError):
            g.call(release.wait)
    with pytest.raises(StoreUnavailableError, match="stalled"):
        g.call(release.wait)
    assert pool.worker_count == 2
    assert g.stalled == 2
    # Another dependency sharing the pool is not starved by the stalled one.
    other = guard(pool)
    assert other.call(lambda: "ok") == "ok"
    release.set()
    # Once the stalled calls return, their slots come back.
    for _ in range(100):
        try:
            assert g.call(lambda: 1) == 1
            break
        except StoreUnavailableError:
            threading.Event().wait(0.01)
    else:
        pytest.fail("bulkhead slots were never released")


def test_store_errors_count_as_failures_and_open_the_circuit() -> None:
    g = guard(WorkerPool(2), threshold=2)

    def broken() -> None:
        raise StoreError("catalog", "connection refused")

    for _ in range(2):
        with pytest.raises(StoreError):
            g.call(broken)
    with pytest.raises(StoreUnavailableError, match="circuit open"):
        g.call(lambda: 1)
    assert g.stats.failures == 2
    assert g.stats.rejected == 1


def test_pool_threads_are_daemons() -> None:
    pool = WorkerPool(1)
    names = pool.submit(lambda: threading.current_thread().daemon).result(timeout=5)
    assert names is True


def test_shut_down_pool_lets_workers_exit_and_refuses_work() -> None:
    pool = WorkerPool(2)
    thread = pool.submit(threading.current_thread).result(timeout=5)
    pool.shutdown()
    thread.join(timeout=5)
    assert not thread.is_alive()
    with pytest.raises(RuntimeError):
        pool.submit(lambda: 1)


def test_inline_guard_runs_on_the_callers_thread_behind_the_breaker() -> None:
    g = DependencyGuard(
        "seen",
        pool=WorkerPool(1),
        breaker=CircuitBreaker("seen", failure_threshold=1),
        deadline_seconds=0.05,
        max_stalled=1,
        inline=True,
    )
    assert g.call(threading.current_thread) is threading.current_thread()

    def broken() -> None:
        raise StoreError("seen", "down")

    with pytest.raises(StoreError):
        g.call(broken)
    with pytest.raises(StoreUnavailableError):
        g.call(lambda: 1)
    assert (g.stats.calls, g.stats.failures, g.stats.rejected) == (3, 1, 1)


def test_many_healthy_calls_at_once_are_never_refused() -> None:
    pool = WorkerPool(16)
    g = guard(pool, deadline=10.0, in_flight=1)
    gate = threading.Barrier(9)

    def wait_for_all() -> int:
        gate.wait(timeout=10)  # all eight calls run at the same moment
        return 1

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=8) as callers:
        futures = [callers.submit(g.call, wait_for_all) for _ in range(8)]
        gate.wait(timeout=10)
        assert sum(f.result(timeout=10) for f in futures) == 8
    assert g.stats.rejected == 0
    assert g.stalled == 0


def _inline_guard(threshold: int = 5) -> DependencyGuard:
    return DependencyGuard(
        "cache",
        pool=WorkerPool(1),
        breaker=CircuitBreaker("cache", failure_threshold=threshold),
        deadline_seconds=0.05,
        max_stalled=1,
        inline=True,
    )


def _times_out() -> None:
    raise StoreTimeoutError("cache", "socket timeout")


def test_an_inline_store_timing_out_counts_as_a_timeout() -> None:
    g = _inline_guard()
    with pytest.raises(StoreTimeoutError):
        g.call(_times_out)
    assert (g.stats.timeouts, g.stats.failures) == (1, 0)
    assert g.breaker.consecutive_failures == 1


def test_a_dependency_that_timed_out_is_skipped_for_the_rest_of_the_request() -> None:
    g = _inline_guard()
    calls: list[int] = []

    def answer() -> int:
        calls.append(1)
        return 7

    with request_scope():
        assert g.call(answer) == 7
        with pytest.raises(StoreTimeoutError):
            g.call(_times_out)
        with pytest.raises(StoreUnavailableError, match="earlier in this request"):
            g.call(answer)
    assert len(calls) == 1
    assert (g.stats.calls, g.stats.timeouts, g.stats.rejected) == (3, 1, 1)
    # The next request asks the store again, and so does code outside any request.
    with request_scope():
        assert g.call(answer) == 7
    assert g.call(answer) == 7
    assert len(calls) == 3


def test_a_failure_other_than_a_timeout_does_not_skip_the_store() -> None:
    g = _inline_guard()

    def broken() -> None:
        raise StoreError("cache", "connection refused")

    with request_scope():
        with pytest.raises(StoreError):
            g.call(broken)
        assert g.call(lambda: 1) == 1


def test_a_worker_call_past_its_deadline_is_skipped_for_the_rest_of_the_request() -> None:
    pool = WorkerPool(4)
    release = threading.Event()
    g = guard(pool, deadline=0.05, in_flight=4)
    try:
        with request_scope():
            with pytest.raises(StoreTimeoutError):
                g.call(release.wait, 10)
            with pytest.raises(StoreUnavailableError):
                g.call(lambda: 1)
        assert (g.stats.timeouts, g.stats.rejected) == (1, 1)
    finally:
        release.set()


def test_a_scope_with_a_deadline_waits_longer_through_the_same_breaker(
    release: threading.Event,
) -> None:
    pool = WorkerPool(4)
    g = guard(pool, deadline=0.05, in_flight=4, threshold=3)
    answered = threading.Event()

    def slow_answer() -> int:
        # Answers well past the guard's deadline, well within the scope's.
        answered.wait(0.3)
        return 7

    with pytest.raises(StoreTimeoutError, match=r"0\.05 s"):
        g.call(slow_answer)
    with request_scope(deadline_seconds=10.0):
        assert g.call(slow_answer) == 7
        assert g.start(slow_answer).result() == 7
        # A call given its own deadline keeps it.
        with pytest.raises(StoreTimeoutError, match=r"0\.05 s"):
            g.call_with_deadline(0.05, slow_answer)
    # The answers reset the breaker's count; the timeouts counted toward it.
    assert (g.stats.calls, g.stats.timeouts) == (4, 2)
    assert g.breaker.consecutive_failures == 1
    # The scope's deadline ends with it.
    with pytest.raises(StoreTimeoutError, match=r"0\.05 s"):
        g.call(slow_answer)
    # A timeout under a scope's deadline is a failure like any other: the third opens.
    with request_scope(deadline_seconds=0.1), pytest.raises(StoreTimeoutError, match=r"0\.1 s"):
        g.call(release.wait, 10)
    assert g.breaker.state is BreakerState.OPEN


@pytest.mark.parametrize("seconds", [0.0, -1.0, math.inf, math.nan])
def test_a_scope_deadline_must_be_finite_and_positive(seconds: float) -> None:
    with pytest.raises(ConfigError), request_scope(deadline_seconds=seconds):
        pass


def test_request_scopes_of_other_threads_are_separate() -> None:
    g = _inline_guard()
    timed_out = threading.Event()
    checked = threading.Event()
    answers: list[int] = []

    def other_request() -> None:
        with request_scope():
            timed_out.wait(timeout=10)
            answers.append(g.call(lambda: 1))
        checked.set()

    thread = threading.Thread(target=other_request)
    thread.start()
    with request_scope():
        with pytest.raises(StoreTimeoutError):
            g.call(_times_out)
        timed_out.set()
        assert checked.wait(timeout=10)
    thread.join(timeout=10)
    assert answers == [1]


_REQUEST = ContextVar[str]("request", default="none")


def test_worker_threads_see_the_callers_context_and_cannot_change_it() -> None:
    pool = WorkerPool(2)
    try:
        seen: list[str] = []

        def store_call() -> str:
            seen.append(_REQUEST.get())
            _REQUEST.set("changed on the worker")
            return threading.current_thread().name

        token = _REQUEST.set("request-1")
        try:
            worker = pool.submit(store_call).result(timeout=5)
            _REQUEST.set("request-2")
            pool.submit(store_call).result(timeout=5)
            assert _REQUEST.get() == "request-2"
        finally:
            _REQUEST.reset(token)
        assert worker != threading.current_thread().name
        assert seen == ["request-1", "request-2"]
    finally:
        pool.shutdown()


def test_a_refused_argument_never_opens_the_breaker() -> None:
    g = guard(WorkerPool(2), threshold=2)

    def refuse() -> None:
        raise InvalidInputError("video_ids", "must be ids")

    for _ in range(5):
        with pytest.raises(InvalidInputError):
            g.call(refuse)
    assert g.breaker.state is BreakerState.CLOSED
    assert g.stats.failures == 0
    assert g.call(lambda: 7) == 7


def _events_guard(clock: FakeClock, *, deadline: float) -> DependencyGuard:
    """A guard on "events" whose breaker opens at the first failure and turns half-open
    once ``clock`` has gone on by 1.0."""
    return DependencyGuard(
        "events", pool=WorkerPool(4), breaker=breaker(clock, threshold=1, reset=1.0),
        deadline_seconds=deadline, max_stalled=2,
    )  # fmt: skip


def _fail_once(g: DependencyGuard) -> None:
    def down() -> None:
        raise StoreError("events", "down")

    with pytest.raises(StoreError):
        g.call(down)


def test_a_refused_argument_closes_a_half_open_breaker() -> None:
    clock = FakeClock()
    g = _events_guard(clock, deadline=0.5)
    _fail_once(g)
    assert g.breaker.state is BreakerState.OPEN
    clock.now = 1.0

    def refuse() -> None:
        raise InvalidInputError("limit", "too large")

    with pytest.raises(InvalidInputError):
        g.call(refuse)
    assert g.breaker.state is BreakerState.CLOSED


def test_guarded_store_gives_writes_their_own_deadline_and_reports_each_method() -> None:
    from reelrank import GuardedStore, InMemoryEventStore
    from reelrank.testing import FaultInjector

    calls: list[tuple[str, str]] = []
    faulty = FaultInjector(InMemoryEventStore(), name="events")
    g = DependencyGuard(
        "events", pool=WorkerPool(4), breaker=CircuitBreaker("events", failure_threshold=100),
        deadline_seconds=0.05, max_stalled=4,
        on_call=lambda operation, outcome, _seconds: calls.append((operation, outcome)),
    )  # fmt: skip
    store: Any = GuardedStore(faulty.proxy, g, writes=["popular_video_ids"],
                              write_deadline_seconds=2.0)  # fmt: skip
    assert store.get_stats([1])[1].views == 0
    faulty.stall(0.3)
    with pytest.raises(StoreTimeoutError):
        store.get_stats([1])
    assert store.popular_video_ids(limit=3) == []  # waits out the stall within 2 s
    assert calls == [("get_stats", "ok"), ("get_stats", "timeout"), ("popular_video_ids", "ok")]
    assert store.guard is g


def test_guarded_store_gives_batch_reads_their_own_deadline() -> None:
    from reelrank import GuardedStore, InMemoryEventStore
    from reelrank.testing import FaultInjector

    faulty = FaultInjector(InMemoryEventStore(), name="events")
    g = DependencyGuard(
        "events", pool=WorkerPool(4), breaker=CircuitBreaker("events", failure_threshold=100),
        deadline_seconds=0.05, max_stalled=4,
    )  # fmt: skip
    store: Any = GuardedStore(faulty.proxy, g, batch_reads=["get_affinities_many"],
                              batch_deadline_seconds=2.0)  # fmt: skip
    faulty.stall(0.3)
    with pytest.raises(StoreTimeoutError):
        store.get_affinities(1, [1])
    # Waits out the stall within 2 s.
    assert store.get_affinities_many({1: [1], 2: []}) == {1: {1: 0.0}, 2: {}}


def test_guarded_store_gives_point_reads_the_deadline_of_the_scope() -> None:
    from reelrank import GuardedStore, InMemoryEventStore
    from reelrank.testing import FaultInjector

    faulty = FaultInjector(InMemoryEventStore(), name="events")
    g = DependencyGuard(
        "events", pool=WorkerPool(4), breaker=CircuitBreaker("events", failure_threshold=100),
        deadline_seconds=0.05, max_stalled=4,
    )  # fmt: skip
    store: Any = GuardedStore(faulty.proxy, g, writes=["popular_video_ids"],
                              write_deadline_seconds=0.05)  # fmt: skip
    faulty.stall(0.3)
    try:
        with request_scope(deadline_seconds=10.0):
            # Waits out the stall within the scope's 10 s.
            assert store.get_affinities(1, [1]) == {1: 0.0}
            # A method with a deadline of its own keeps it.
            with pytest.raises(StoreTimeoutError):
                store.popular_video_ids(limit=5)
        with pytest.raises(StoreTimeoutError):
            store.get_affinities(1, [1])
    finally:
        faulty.recover()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"writes": "append"}, "writes"),
        ({"writes": [1]}, "writes"),
        ({"write_deadline_seconds": 0.0}, "write_deadline_seconds"),
        ({"write_deadline_seconds": float("inf")}, "write_deadline_seconds"),
        ({"write_deadline_seconds": "1"}, "write_deadline_seconds"),
        ({"batch_reads": "get_affinities_many"}, "batch_reads"),
        ({"batch_deadline_seconds": -1.0}, "batch_deadline_seconds"),
        ({"batch_deadline_seconds": float("nan")}, "batch_deadline_seconds"),
    ],
)
def test_guarded_store_refuses_bad_settings_naming_the_field(
    kwargs: dict[str, Any], field: str
) -> None:
    from reelrank import GuardedStore, InMemoryEventStore

    with pytest.raises(ConfigError) as caught:
        GuardedStore(InMemoryEventStore(), guard(WorkerPool(1)), **kwargs)
    assert caught.value.field == field


def test_a_guarded_call_admitted_while_closed_does_not_settle_a_later_trial() -> None:
    clock = FakeClock()
    late_answers, trial_answers = threading.Event(), threading.Event()
    g = _events_guard(clock, deadline=10.0)
    late = g.start(late_answers.wait, 10)  # admitted while the circuit is closed
    try:
        _fail_once(g)
        clock.now = 1.0
        trial = g.start(trial_answers.wait, 10)
        late_answers.set()
        assert late.result() is True
        assert g.breaker.state is BreakerState.HALF_OPEN, "the late success closed the circuit"
        with pytest.raises(StoreUnavailableError, match="circuit open"):
            g.call(lambda: 1)
        trial_answers.set()
        assert trial.result() is True
        assert g.breaker.state is BreakerState.CLOSED
    finally:
        late_answers.set()
        trial_answers.set()


def test_closing_a_guard_waits_for_calls_under_way_then_refuses_calls() -> None:
    pool = WorkerPool(2, name="reelrank-closed-guard")
    g = guard(pool, deadline=10.0)
    answer = threading.Event()
    running = g.start(answer.wait, 10)
    closing = threading.Thread(target=g.close, args=(30.0,))
    closing.start()
    closing.join(0.2)
    assert closing.is_alive(), "close returned before the call under way"
    answer.set()
    closing.join(10)
    assert not closing.is_alive()
    assert running.result() is True
    with pytest.raises(StoreUnavailableError, match="closed"):
        g.call(lambda: 1)
    assert g.stats.rejected == 1
    g.close(0.0)  # closing again only waits
    assert not [t for t in threading.enumerate() if t.name.startswith("reelrank-closed-guard")]


def test_closing_a_guard_gives_up_on_a_hung_call_after_its_timeout(
    release: threading.Event,
) -> None:
    g = guard(WorkerPool(2), deadline=0.05)
    with pytest.raises(StoreTimeoutError):
        g.call(release.wait)  # never set until the test ends
    closing = threading.Thread(target=g.close, args=(0.1,))
    closing.start()
    closing.join(10)  # a hang bound: close waits 0.1 s for the hung call
    assert not closing.is_alive()
    assert g.stalled == 1


def test_guarded_store_answers_a_bounded_age_read_directly_even_with_the_breaker_open() -> None:
    from reelrank import BoundedAgeEventStore, GuardedStore, InMemoryEventStore
    from reelrank.testing import make_event

    events = InMemoryEventStore()
    events.append(make_event("share", video_id=4), creator_id=1)
    g = guard(WorkerPool(1), threshold=1)
    store: Any = GuardedStore(events, g)
    assert isinstance(store, BoundedAgeEventStore)
    g.breaker.record_failure(g.breaker.admit())
    assert g.breaker.state is BreakerState.OPEN
    with pytest.raises(StoreUnavailableError):
        store.stats_columns([4])
    calls = g.stats.calls
    assert store.stats_columns_within([4], max_age_seconds=1).shares.tolist() == [1]
    # Not a call of the backend: neither counted nor a success that closes the breaker.
    assert g.stats.calls == calls
    assert g.breaker.state is BreakerState.OPEN
