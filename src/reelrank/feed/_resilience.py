"""Deadlines, bulkheads and circuit breakers for store calls on the request path.

Every store call a feed request makes goes through a :class:`DependencyGuard`:

1. the dependency's :class:`CircuitBreaker` decides whether the call may be made at
   all; an open circuit fails fast with :class:`~reelrank.StoreUnavailableError`;
2. the call runs on a worker thread and the request waits at most the dependency's
   deadline for it; past that it gets :class:`~reelrank.StoreTimeoutError` and the
   worker finishes (or stays stalled) in the background;
3. a bulkhead caps how many such abandoned calls to one dependency may still be
   running: once that many are stuck, further calls are refused at once, so a store
   that hangs ties up a bounded number of worker threads, never the whole pool.
   Healthy calls, however many run at the same time, are never refused.

Stores that cannot stall past a bound of their own (no I/O, or a client with short
socket timeouts) may instead be called *inline*, on the caller's thread: still behind
the breaker, without a thread hop, and with the store's own bound as the deadline.

Inside a :func:`request_scope`, a dependency that timed out once is not called again
for the rest of that scope (the call fails at once with
:class:`~reelrank.StoreUnavailableError`), so one request pays for a stalled store's
deadline once, not once per call. A scope may also carry a deadline of its own, which
every guarded call in it waits instead of its store's request deadline: a job off the
request path (a refill ahead) reads the same stores, through the same breakers, for
longer than a request would.

Worker threads are daemon threads, so a store that never returns cannot keep the
process from exiting.
"""

from __future__ import annotations

import enum
import math
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Generic, Literal, ParamSpec, TypeVar

from .._workers import WorkerPool
from ..exceptions import ConfigError, StoreError, StoreTimeoutError, StoreUnavailableError

__all__ = [
    "BreakerAdmission",
    "BreakerState",
    "CircuitBreaker",
    "DependencyGuard",
    "DependencyStats",
    "PendingCall",
    "StoreCallOutcome",
    "WorkerPool",
    "request_scope",
]

P = ParamSpec("P")

T = TypeVar("T")

StoreCallOutcome = Literal["ok", "error", "timeout", "rejected"]
"""How a guarded store call ended: answered, raised, ran past its deadline, or was
refused without being made (open circuit, too many stalled calls, or a timeout earlier
in the same request)."""

CallListener = Callable[[str, StoreCallOutcome, float], None]
"""Hears each guarded call: ``(operation, outcome, seconds waited)``."""

_timed_out_in_scope: ContextVar[set[str] | None] = ContextVar(
    "reelrank_timed_out_in_scope", default=None
)
_deadline_in_scope: ContextVar[float | None] = ContextVar(
    "reelrank_deadline_in_scope", default=None
)


@contextmanager
def request_scope(*, deadline_seconds: float | None = None) -> Iterator[None]:
    """Scope of one request: a dependency that times out inside it is skipped afterwards.

    With ``deadline_seconds``, every call in the scope that would wait its guard's own
    deadline (:meth:`DependencyGuard.call`, :meth:`DependencyGuard.start`) waits this
    long instead; a call given a deadline of its own
    (:meth:`DependencyGuard.call_with_deadline`) keeps it. Either way the call's outcome
    counts toward the guard's breaker, and a call past its deadline is abandoned to the
    guard's bulkhead, as on the request path.

    Scopes are per thread (a :class:`~contextvars.ContextVar`), so concurrent requests
    never see each other's timeouts; a nested scope starts afresh.
    """
    if deadline_seconds is not None and not (
        math.isfinite(deadline_seconds) and deadline_seconds > 0
    ):
        raise ConfigError("deadline_seconds", deadline_seconds, "must be finite and positive")
    token = _timed_out_in_scope.set(set())
    deadline_token = _deadline_in_scope.set(deadline_seconds)
    try:
        yield
    finally:
        _deadline_in_scope.reset(deadline_token)
        _timed_out_in_scope.reset(token)


class BreakerState(enum.StrEnum):
    """The three states of a :class:`CircuitBreaker`."""

    CLOSED = "closed"
    """Calls flow; consecutive failures are counted."""
    OPEN = "open"
    """Calls are refused until the reset timeout has passed."""
    HALF_OPEN = "half_open"
    """One trial call is let through to find out whether the dependency recovered."""


class BreakerAdmission:
    """One call let through by :meth:`CircuitBreaker.admit`: the token its outcome is
    settled with.

    Only the admission that claimed a half-open breaker's trial can settle that trial;
    every other admission's outcome only counts toward the consecutive failures.
    """

    __slots__ = ("_trial",)

    def __init__(self, *, trial: bool) -> None:
        self._trial = trial

    @property
    def trial(self) -> bool:
        """Whether this admission claimed a half-open breaker's trial."""
        return self._trial

    def __repr__(self) -> str:
        return f"BreakerAdmission(trial={self._trial})"


_UNTRIED = BreakerAdmission(trial=False)
"""The admission of every call let through a closed breaker: never a trial, so one
token serves them all."""


class CircuitBreaker:
    """A thread-safe circuit breaker for one dependency.

    * **closed**: every call is allowed. ``failure_threshold`` consecutive failures open
      the circuit.
    * **open**: calls are refused. Once ``reset_timeout_seconds`` have passed since the
      circuit opened, the next call moves it to half-open.
    * **half-open**: exactly one trial call is allowed; the others are refused while it
      runs. Its success closes the circuit, its failure opens it again for another
      ``reset_timeout_seconds``; a trial that was allowed but not made after all is
      given back with :meth:`release_trial`.

    :meth:`admit` returns a :class:`BreakerAdmission` for each call it lets through;
    :meth:`record_success`, :meth:`record_failure` and :meth:`release_trial` take it
    back. Only the admission that claimed the trial settles it: a call let through
    earlier (while the circuit was closed) that ends after the circuit opened counts
    toward the consecutive failures (a success resets them), but changes the state only
    while the circuit is closed, so a late outcome never settles another call's trial
    nor restarts the open circuit's timeout.

    ``clock`` returns monotonic seconds; tests pass a fake one. ``on_change``, if given,
    is called with the new state on every change, while the breaker's lock is held (so
    changes arrive in order): it must be quick and must not call the breaker. An open
    circuit is reported half-open when a call claims the trial, not when the timeout
    passes.
    """

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_timeout_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState], None] | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ConfigError("failure_threshold", failure_threshold, "must be at least 1")
        if not (math.isfinite(reset_timeout_seconds) and reset_timeout_seconds > 0):
            raise ConfigError(
                "reset_timeout_seconds", reset_timeout_seconds, "must be finite and positive"
            )
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout_seconds = reset_timeout_seconds
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._consecutive_failures = 0
        self._opened_at = 0.0
        self._trial: BreakerAdmission | None = None

    @property
    def state(self) -> BreakerState:
        """The current state; an open circuit whose timeout has passed reads half-open."""
        with self._lock:
            if (
                self._state is BreakerState.OPEN
                and self._clock() - self._opened_at >= self.reset_timeout_seconds
            ):
                return BreakerState.HALF_OPEN
            return self._state

    @property
    def consecutive_failures(self) -> int:
        """Failures recorded since the last success."""
        with self._lock:
            return self._consecutive_failures

    def admit(self) -> BreakerAdmission | None:
        """Let a call through, or ``None`` when it must not be made now. In half-open
        state the admission returned claims the one trial. Settle every admission with
        :meth:`record_success`, :meth:`record_failure` or :meth:`release_trial`."""
        with self._lock:
            if self._state is BreakerState.CLOSED:
                return _UNTRIED
            if self._state is BreakerState.OPEN:
                if self._clock() - self._opened_at < self.reset_timeout_seconds:
                    return None
                self._move_to(BreakerState.HALF_OPEN)
                self._trial = None
            if self._trial is not None:
                return None
            self._trial = BreakerAdmission(trial=True)
            return self._trial

    def allow_request(self) -> bool:
        """Whether a call may be made now; in half-open state this claims the one trial.

        Deprecated: use :meth:`admit` and settle the call with its admission; without
        it, any caller's outcome settles the trial.
        """
        warnings.warn(
            "CircuitBreaker.allow_request() is deprecated: use admit() and pass its "
            "admission to record_success, record_failure or release_trial",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.admit() is not None

    def record_success(self, admission: BreakerAdmission | None = None) -> None:
        """Report that an admitted call succeeded: the failures count from zero again,
        and the trial's success closes a half-open circuit.

        Without ``admission`` (deprecated) the success closes the circuit whatever its
        state, settling any trial.
        """
        if admission is None:
            _warn_without_admission("record_success")
        with self._lock:
            self._consecutive_failures = 0
            if admission is None or admission is self._trial:
                self._trial = None
                if self._state is not BreakerState.CLOSED:
                    self._move_to(BreakerState.CLOSED)

    def release_trial(self, admission: BreakerAdmission | None = None) -> None:
        """Report that an admitted call was not made after all: no outcome is recorded.

        When ``admission`` claimed a half-open breaker's trial, the trial is given back,
        so the breaker stays half-open and the next :meth:`admit` claims it again (a
        success here would close the circuit without the dependency having been tried).
        Any other admission changes nothing. Without ``admission`` (deprecated) a
        half-open breaker's trial is given back, whoever claimed it.
        """
        if admission is None:
            _warn_without_admission("release_trial")
        with self._lock:
            if admission is None:
                if self._state is BreakerState.HALF_OPEN:
                    self._trial = None
            elif admission is self._trial:
                self._trial = None

    def record_failure(self, admission: BreakerAdmission | None = None) -> None:
        """Report that an admitted call failed or ran past its deadline: it counts toward
        the consecutive failures; the trial's failure, or reaching the threshold while
        closed, opens the circuit for ``reset_timeout_seconds``.

        Without ``admission`` (deprecated) the failure also reopens a half-open circuit
        whoever holds the trial, and restarts an open circuit's timeout.
        """
        if admission is None:
            _warn_without_admission("record_failure")
        with self._lock:
            self._consecutive_failures += 1
            if admission is None:
                self._trial = None
                opens = (
                    self._state is BreakerState.HALF_OPEN
                    or self._consecutive_failures >= self.failure_threshold
                )
            elif admission is self._trial:
                self._trial = None
                opens = True
            else:
                opens = (
                    self._state is BreakerState.CLOSED
                    and self._consecutive_failures >= self.failure_threshold
                )
            if opens:
                if self._state is not BreakerState.OPEN:
                    self._move_to(BreakerState.OPEN)
                self._opened_at = self._clock()

    def _move_to(self, state: BreakerState) -> None:
        """Change state and report it; the caller holds ``_lock``."""
        self._state = state
        if self._on_change is not None:
            self._on_change(state)


def _warn_without_admission(method: str) -> None:
    warnings.warn(
        f"CircuitBreaker.{method}() without the call's admission is deprecated: pass "
        "what admit() returned, so that only the trial's caller settles the trial",
        DeprecationWarning,
        stacklevel=3,
    )


@dataclass
class DependencyStats:
    """Counters of one dependency's calls since the service started."""

    calls: int = 0
    """Calls attempted, including refused ones."""
    failures: int = 0
    """Calls that raised a store error (other than a timeout)."""
    timeouts: int = 0
    """Calls that ran past their deadline (the guard's, or an inline store's own)."""
    rejected: int = 0
    """Calls refused without being made (open circuit, too many stalled calls, or a
    timeout earlier in the same request)."""


class PendingCall(Generic[T]):
    """A guarded call started by :meth:`DependencyGuard.start`.

    :meth:`result` waits for it until the guard's deadline, counted from the start,
    and records its outcome with the guard's breaker and counters exactly as
    :meth:`DependencyGuard.call` does. Call :meth:`result` once for every started
    call, even one whose value is no longer needed: a half-open breaker waits for its
    trial call's outcome.
    """

    __slots__ = ("_error", "_finish", "_value")

    def __init__(
        self,
        *,
        value: T | None = None,
        error: BaseException | None = None,
        finish: Callable[[], T] | None = None,
    ) -> None:
        self._value = value
        self._error = error
        self._finish = finish

    def result(self) -> T:
        """The call's value; raises what the call raised, or
        :class:`~reelrank.StoreTimeoutError` past the deadline."""
        if self._finish is not None:
            return self._finish()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # set unless finish or error is


class DependencyGuard:
    """Runs calls to one dependency under its deadline, bulkhead and circuit breaker.

    A call that raises :class:`~reelrank.StoreError` (which adapters raise for every
    outage), or runs past ``deadline_seconds``, counts as a failure of the dependency.
    Any other exception (a bad argument the store refused, a programming error) means
    the store answered: it is reported as an ``error`` but counts as a success for the
    breaker, so bad input from clients can never open a circuit. Exceptions are
    re-raised untouched.

    ``max_stalled`` is the bulkhead: how many calls that ran past their deadline may
    still be running before further calls are refused.

    With ``inline=True`` calls run on the caller's thread, still behind the circuit
    breaker and counted, but without the guard's deadline or bulkhead: only for stores
    that bound their own calls (in-process stores without I/O, or clients with short
    socket timeouts), where a thread switch would only add scheduling latency. Such a
    store's deadline is its own bound; a :class:`~reelrank.StoreTimeoutError` it raises
    counts as a timeout.

    ``on_call``, if given, is called after every call with its operation name, its
    outcome (``ok``, ``error``, ``timeout`` or ``rejected``) and the seconds the caller
    waited; without it nothing is timed.
    """

    def __init__(
        self,
        name: str,
        *,
        pool: WorkerPool,
        breaker: CircuitBreaker,
        deadline_seconds: float,
        max_stalled: int,
        inline: bool = False,
        on_call: CallListener | None = None,
    ) -> None:
        if not (math.isfinite(deadline_seconds) and deadline_seconds > 0):
            raise ConfigError("deadline_seconds", deadline_seconds, "must be finite and positive")
        if max_stalled < 1:
            raise ConfigError("max_stalled", max_stalled, "must be at least 1")
        self.name = name
        self.breaker = breaker
        self.deadline_seconds = deadline_seconds
        self.inline = inline
        self.stats = DependencyStats()
        self.max_stalled = max_stalled
        self._on_call = on_call
        self._pool = pool
        self._stalled = 0
        self._stats_lock = threading.Lock()
        self._closed = False

    def close(self, timeout: float = 0.0) -> None:
        """Refuse every later call (:class:`~reelrank.StoreUnavailableError`) and stop
        the worker pool the guard runs its calls on, with every guard sharing it.

        Waits up to ``timeout`` seconds for the calls under way to return; a call hung
        past that is left to finish on its daemon thread. Closing again only waits.
        """
        self._closed = True
        self._pool.shutdown(timeout)

    def _count(self, field: str) -> None:
        with self._stats_lock:
            setattr(self.stats, field, getattr(self.stats, field) + 1)

    @property
    def stalled(self) -> int:
        """Calls that ran past their deadline and have not returned yet."""
        with self._stats_lock:
            return self._stalled

    def _abandon(self, future: Future[Any]) -> None:
        with self._stats_lock:
            self._stalled += 1
        # Runs at once if the call finished in the meantime.
        future.add_done_callback(self._stalled_call_returned)

    def _stalled_call_returned(self, _: Future[Any]) -> None:
        with self._stats_lock:
            self._stalled -= 1

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn(*args, **kwargs)`` on a worker thread and wait at most the deadline
        (the :func:`request_scope`'s if it has one, else the guard's; inline guards: on
        this thread, bounded by the store itself). The call is reported under ``fn``'s
        name, without leading underscores."""
        operation = "call" if self._on_call is None else getattr(fn, "__name__", "call")
        return self.call_with_deadline(
            self.default_deadline(), lambda: fn(*args, **kwargs), operation=operation.lstrip("_")
        )

    def start(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> PendingCall[T]:
        """Start ``fn(*args, **kwargs)`` like :meth:`call` and return at once, so that the
        caller can do other work, or start other calls, while it runs.

        The deadline counts from now; :meth:`PendingCall.result` waits for the rest of
        it. A refused call (open circuit, too many stalled calls) raises from
        :meth:`PendingCall.result`, as does an inline guard's call, which runs here.
        """
        operation = "call" if self._on_call is None else getattr(fn, "__name__", "call")
        try:
            return self._begin(
                self.default_deadline(), lambda: fn(*args, **kwargs), operation.lstrip("_")
            )
        except Exception as exc:
            return PendingCall(error=exc)

    def default_deadline(self) -> float:
        """The deadline of a call without one of its own (:meth:`call`, :meth:`start`):
        :attr:`deadline_seconds`, or the deadline of the scope the call is made in, if
        it has one (a feed service's refill ahead:
        :attr:`~reelrank.FeedServiceConfig.refill_deadline_seconds`)."""
        scoped = _deadline_in_scope.get()
        return self.deadline_seconds if scoped is None else scoped

    def call_with_deadline(
        self, deadline_seconds: float, fn: Callable[[], T], *, operation: str = "call"
    ) -> T:
        """Call ``fn()`` like :meth:`call`, with another deadline (for batch jobs)."""
        return self._begin(deadline_seconds, fn, operation).result()

    def _begin(
        self, deadline_seconds: float, fn: Callable[[], T], operation: str
    ) -> PendingCall[T]:
        """Admit the call and start it; rejections and inline failures raise here."""
        self._count("calls")
        started = 0.0 if self._on_call is None else time.perf_counter()
        if self._closed:
            self._reject(operation, started)
            raise StoreUnavailableError(self.name, "the guard is closed")
        timed_out = _timed_out_in_scope.get()
        if timed_out is not None and self.name in timed_out:
            self._reject(operation, started)
            raise StoreUnavailableError(self.name, "timed out earlier in this request")
        admission = self.breaker.admit()
        if admission is None:
            self._reject(operation, started)
            raise StoreUnavailableError(self.name, "circuit open; call skipped")
        if self.inline:
            try:
                result = fn()
            except Exception as exc:
                self._record_failure(admission, exc, timed_out, operation, started)
                raise
            self._record_success(admission, operation, started)
            return PendingCall(value=result)
        if self.stalled >= self.max_stalled:
            self._reject(operation, started)
            self.breaker.record_failure(admission)
            raise StoreUnavailableError(self.name, "too many calls stalled past their deadline")
        future = self._pool.submit(fn)
        due = time.monotonic() + deadline_seconds
        return PendingCall(
            finish=lambda: self._finish(
                admission, future, due, deadline_seconds, timed_out, operation, started
            )
        )

    def _finish(
        self,
        admission: BreakerAdmission,
        future: Future[T],
        due: float,
        deadline_seconds: float,
        timed_out: set[str] | None,
        operation: str,
        started: float,
    ) -> T:
        """Wait for a started call until ``due`` (monotonic) and record its outcome."""
        try:
            result = future.result(timeout=max(0.0, due - time.monotonic()))
        except FutureTimeoutError:
            self._abandon(future)
            error = StoreTimeoutError(self.name, f"no answer within {deadline_seconds:g} s")
            self._record_failure(admission, error, timed_out, operation, started)
            raise error from None
        except Exception as exc:
            self._record_failure(admission, exc, timed_out, operation, started)
            raise
        self._record_success(admission, operation, started)
        return result

    def _report(self, operation: str, outcome: StoreCallOutcome, started: float) -> None:
        if self._on_call is not None:
            self._on_call(operation, outcome, time.perf_counter() - started)

    def _reject(self, operation: str, started: float) -> None:
        self._count("rejected")
        self._report(operation, "rejected", started)

    def _record_success(self, admission: BreakerAdmission, operation: str, started: float) -> None:
        self.breaker.record_success(admission)
        self._report(operation, "ok", started)

    def _record_failure(
        self,
        admission: BreakerAdmission,
        exc: Exception,
        timed_out: set[str] | None,
        operation: str,
        started: float,
    ) -> None:
        """Count a failed call; a timeout also marks the dependency in the request scope."""
        if not isinstance(exc, StoreError):
            # The store answered; the call was wrong. A half-open breaker must close.
            self.breaker.record_success(admission)
            self._report(operation, "error", started)
            return
        if isinstance(exc, StoreTimeoutError):
            self._count("timeouts")
            if timed_out is not None:
                timed_out.add(self.name)
            outcome: StoreCallOutcome = "timeout"
        else:
            self._count("failures")
            outcome = "error"
        self.breaker.record_failure(admission)
        self._report(operation, outcome, started)
