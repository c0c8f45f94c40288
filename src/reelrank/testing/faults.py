"""Test doubles that fail or stall on command, for testing graceful degradation."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar, cast

from ..exceptions import InvalidInputError, StoreError
from ..stores import StoreProxy
from ..validation import check_aware, finite_or_raise

__all__ = ["FaultInjector", "ManualClock"]

StoreT = TypeVar("StoreT")


class FaultInjector(StoreProxy, Generic[StoreT]):
    """Wraps any store and makes its calls fail or stall on command.

    The injector is a :class:`~reelrank.StoreProxy`: it has the wrapped store's public
    methods and forwards its other public attributes, so it stands in for the store
    and satisfies the same Protocols; :attr:`proxy` returns the injector typed as the
    wrapped store, for code that expects a :class:`~reelrank.Catalog` (or another
    protocol)::

        catalog = FaultInjector(InMemoryCatalog(), name="catalog")
        service = build_service(catalog=catalog.proxy)
        catalog.fail()                  # every call raises StoreError("catalog", ...)
        catalog.stall(2.0)              # every call waits 2 s, then runs
        catalog.fail(times=1)           # only the next call fails
        catalog.recover()               # back to normal; releases stalled calls at once

    ``methods`` limits a fault to the named methods. :attr:`calls` counts calls per
    method (including failed ones), so tests can check that a fallback was used or a
    circuit breaker stopped calling.
    """

    def __init__(self, store: StoreT, *, name: str = "store") -> None:
        super().__init__(store)
        self._name = name
        self._lock = threading.Lock()
        self._error: StoreError | None = None
        self._failures_left: int | None = None
        self._stall_seconds = 0.0
        self._fault_methods: frozenset[str] | None = None
        self._released = threading.Event()
        self.calls: Counter[str] = Counter()
        """Number of calls made through the injector, by method name."""

    @property
    def store(self) -> StoreT:
        """The wrapped store, bypassing any fault."""
        return cast(StoreT, self._wrapped)

    @property
    def proxy(self) -> StoreT:
        """This injector, typed as the store it wraps."""
        return cast(StoreT, self)

    def fail(
        self,
        error: StoreError | None = None,
        *,
        times: int | None = None,
        methods: Iterable[str] | None = None,
    ) -> None:
        """Make calls raise ``error`` (default: a :class:`~reelrank.StoreError`).

        With ``times``, only that many calls fail before the store recovers by itself.
        """
        if times is not None and (isinstance(times, bool) or times < 1):
            raise InvalidInputError("times", f"must be None or an int >= 1, got {times!r}")
        with self._lock:
            self._error = error or StoreError(self._name, "injected failure")
            self._failures_left = times
            self._fault_methods = None if methods is None else frozenset(methods)

    def stall(self, seconds: float, *, methods: Iterable[str] | None = None) -> None:
        """Make calls wait ``seconds`` (or until :meth:`recover`) before running."""
        duration = finite_or_raise("seconds", seconds)
        if duration < 0.0:
            raise InvalidInputError("seconds", f"must be >= 0, got {seconds!r}")
        with self._lock:
            self._stall_seconds = duration
            self._released.clear()
            self._fault_methods = None if methods is None else frozenset(methods)

    def recover(self) -> None:
        """Stop failing and stalling; calls waiting in a stall proceed at once."""
        with self._lock:
            self._error = None
            self._failures_left = None
            self._stall_seconds = 0.0
            self._fault_methods = None
            self._released.set()

    def __getattr__(self, attribute: str) -> Any:
        # The store's private names stay hidden: a test reaching past the injector into
        # the store's internals would bypass its faults.
        if attribute.startswith("_"):
            raise AttributeError(attribute)
        return super().__getattr__(attribute)

    def _forward(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.calls[method] += 1
            applies = self._fault_methods is None or method in self._fault_methods
            error = self._error if applies else None
            if error is not None and self._failures_left is not None:
                self._failures_left -= 1
                if self._failures_left == 0:
                    self._error = None
                    self._failures_left = None
            stall = self._stall_seconds if applies else 0.0
        if stall > 0.0:
            self._released.wait(stall)
        if error is not None:
            raise error
        return getattr(self._wrapped, method)(*args, **kwargs)


class ManualClock:
    """A clock that moves only when told to, for expiry and skew tests.

    :meth:`monotonic` suits :class:`~reelrank.InMemoryFeedCache` (``clock=``) and
    :meth:`now` suits :class:`~reelrank.EngagementRecorder` (``now=``); both move
    together with :meth:`advance`.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._start = check_aware("start", start or datetime(2026, 1, 1, tzinfo=UTC))
        self._elapsed = 0.0
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        """Seconds elapsed since the clock was made."""
        with self._lock:
            return self._elapsed

    def now(self) -> datetime:
        """The current time as a UTC datetime."""
        with self._lock:
            return self._start + timedelta(seconds=self._elapsed)

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (``>= 0``)."""
        step = finite_or_raise("seconds", seconds)
        if step < 0.0:
            raise InvalidInputError("seconds", "a clock does not go backwards")
        with self._lock:
            self._elapsed += step
