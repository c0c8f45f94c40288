"""A proxy that runs every method call of a store under a :class:`DependencyGuard`.

The feed service guards its own store calls. Other callers of the same stores — the
discovery services, the event recorder, an application's own handlers — call them
directly, so a paused server would hold each such call for the driver's timeout.
Wrapping the store in :class:`GuardedStore` gives those callers the same deadline,
bulkhead and circuit breaker without changing them.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

from ..exceptions import ConfigError
from ..stores._proxy import StoreProxy
from ._resilience import DependencyGuard

__all__ = ["GuardedStore"]

# Methods that promise no I/O (answers from the store's memory, or ``None``): called
# directly, since a deadline cannot help them, and their success says nothing of the
# backend, so it must not count towards the breaker (closing it half-open, say).
_IN_MEMORY_METHODS = frozenset({"stats_columns_within"})


def _check_names(field: str, names: Collection[str]) -> frozenset[str]:
    if isinstance(names, str) or not all(isinstance(name, str) for name in names):
        raise ConfigError(field, names, "must be a collection of method names")
    return frozenset(names)


def _check_deadline(field: str, seconds: float | None, guard: DependencyGuard) -> float:
    """``seconds``, or the guard's deadline when ``None``; finite and positive."""
    if seconds is None:
        return guard.deadline_seconds
    if not (isinstance(seconds, int | float) and math.isfinite(seconds) and seconds > 0):
        raise ConfigError(field, seconds, "must be finite and positive")
    return float(seconds)


class GuardedStore(StoreProxy):
    """``store`` with every public method call run through ``guard``.

    A call that does not answer within the guard's deadline raises
    :class:`~reelrank.StoreTimeoutError`; while the guard's breaker is open, calls raise
    :class:`~reelrank.StoreUnavailableError` without reaching the store. Methods named
    in ``writes`` get ``write_deadline_seconds`` instead (an insert with an idempotency
    check takes longer than a point read; by default, the guard's deadline too), and
    methods named in ``batch_reads`` get ``batch_deadline_seconds`` (a read of many users
    at once, such as ``get_affinities_many`` for cache warming, takes longer than one
    user's; by default, the guard's deadline too). Other methods get
    :meth:`DependencyGuard.default_deadline <reelrank.DependencyGuard.default_deadline>`:
    the guard's deadline, or, in a feed service's refill ahead, its
    :attr:`~reelrank.FeedServiceConfig.refill_deadline_seconds`, so a refill waits as
    long for a guarded store as for the others. Each call is reported to the guard's
    listener under the method's name. Attributes that
    are not methods, and private ones, are forwarded untouched, and so are calls of
    :meth:`~reelrank.BoundedAgeEventStore.stats_columns_within`, which promises no I/O:
    it is answered even while the breaker is open, and not counted.

    The proxy is a :class:`~reelrank.StoreProxy`: it has exactly the public methods
    ``store`` has, so it satisfies whatever store Protocol ``store`` does, on every
    Python version, and callers pass it where the store went (``typing.cast`` for a
    type checker).
    """

    def __init__(
        self,
        store: object,
        guard: DependencyGuard,
        *,
        writes: Collection[str] = (),
        write_deadline_seconds: float | None = None,
        batch_reads: Collection[str] = (),
        batch_deadline_seconds: float | None = None,
    ) -> None:
        super().__init__(store)
        self._guard = guard
        write_names = _check_names("writes", writes)
        write_deadline = _check_deadline("write_deadline_seconds", write_deadline_seconds, guard)
        batch_names = _check_names("batch_reads", batch_reads)
        batch_deadline = _check_deadline("batch_deadline_seconds", batch_deadline_seconds, guard)
        self._deadlines = dict.fromkeys(batch_names, batch_deadline)
        self._deadlines.update(dict.fromkeys(write_names, write_deadline))

    @property
    def guard(self) -> DependencyGuard:
        """The guard every call runs through (its breaker and counters)."""
        return self._guard

    def _forward(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        target = getattr(self._wrapped, method)
        if method in _IN_MEMORY_METHODS:
            return target(*args, **kwargs)
        return self._guard.call_with_deadline(
            self._deadlines.get(method) or self._guard.default_deadline(),
            lambda: target(*args, **kwargs),
            operation=method,
        )
