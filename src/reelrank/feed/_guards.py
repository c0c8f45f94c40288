"""The guards around the feed service's store calls, and its snapshot cache.

Every store call of the service goes through one :class:`DependencyGuard` per store
(circuit breaker, deadline, bounded stalls); :class:`StoreGuards` builds them from the
service config. :class:`SnapshotCache` is the feed cache as the service sees it: levels
that can stall run under the cache guard, and a failing cache is reported, not raised.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..exceptions import StoreError
from ..models._feed import FeedSnapshot
from ..stores._cache import CacheStats, LRUFeedCache, TieredFeedCache
from ..stores._protocols import FeedCache, FeedKey, bounds_own_calls, is_in_process
from ._config import FeedServiceConfig
from ._context import DegradedReport
from ._observer import FeedObserver
from ._resilience import (
    BreakerState,
    CallListener,
    CircuitBreaker,
    DependencyGuard,
    DependencyStats,
    PendingCall,
    WorkerPool,
)

DEPENDENCIES = ("catalog", "events", "seen", "models", "cache")
"""The stores a feed service guards, in the order its stats report them."""


def called_directly(level: FeedCache, config: FeedServiceConfig) -> bool:
    """Whether a cache level is called without its guard: an in-process LRU level always,
    other in-process levels when stores that bound their own calls run inline."""
    return isinstance(level, LRUFeedCache) or (
        config.inline_self_bounded_stores and is_in_process(level)
    )


def runs_inline(name: str, store: Any, config: FeedServiceConfig) -> bool:
    """Whether the guard of store ``name`` calls it on the request's thread.

    For the cache, that is the levels it guards (see :func:`called_directly`): they
    run inline only if every one of them bounds its own calls.
    """
    if not config.inline_self_bounded_stores or store is None:
        return False
    if name != "cache":
        return bounds_own_calls(store)
    levels = store.levels if isinstance(store, TieredFeedCache) else (store,)
    guarded = [level for level in levels if not called_directly(level, config)]
    return all(bounds_own_calls(level) for level in guarded)


def _call_listener(observer: FeedObserver | None, store: str) -> CallListener | None:
    if observer is None:
        return None
    return lambda operation, outcome, seconds: observer.store_call(
        store, operation, seconds, outcome
    )


def _breaker_listener(
    observer: FeedObserver | None, dependency: str
) -> Callable[[BreakerState], None] | None:
    if observer is None:
        return None
    return lambda state: observer.breaker_state_changed(dependency, state)


def _nothing() -> None:
    """What promoting a snapshot found in the fastest level (or nowhere) takes."""


class StoreGuards:
    """One guard per store, sharing a worker pool sized for healthy and stalled calls.

    With an ``observer``, every guarded call and every breaker change is reported to
    it, and each breaker's initial closed state once.
    """

    def __init__(
        self,
        stores: Mapping[str, object],
        config: FeedServiceConfig,
        monotonic: Callable[[], float],
        observer: FeedObserver | None = None,
    ) -> None:
        self._config = config
        self._pool = WorkerPool(
            config.worker_threads + config.max_stalled_calls * len(DEPENDENCIES)
        )
        self._guards = {
            name: DependencyGuard(
                name,
                pool=self._pool,
                breaker=CircuitBreaker(
                    name,
                    failure_threshold=config.breaker_failure_threshold,
                    reset_timeout_seconds=config.breaker_reset_timeout_seconds,
                    clock=monotonic,
                    on_change=_breaker_listener(observer, name),
                ),
                deadline_seconds=getattr(config.deadlines, name),
                max_stalled=config.max_stalled_calls,
                inline=runs_inline(name, stores[name], config),
                on_call=_call_listener(observer, name),
            )
            for name in DEPENDENCIES
        }
        if observer is not None:
            for name in DEPENDENCIES:
                observer.breaker_state_changed(name, BreakerState.CLOSED)

    def __getitem__(self, dependency: str) -> DependencyGuard:
        return self._guards[dependency]

    def call(self, dependency: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call a store under its guard; raises :class:`StoreError` if it fails."""
        return self._guards[dependency].call(fn, *args, **kwargs)

    def start(
        self, dependency: str, fn: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> PendingCall[Any]:
        """Start a store call under its guard; its result (or error) comes later."""
        return self._guards[dependency].start(fn, *args, **kwargs)

    def bulk(
        self,
        dependency: str,
        fn: Callable[[], Any],
        report: DegradedReport,
        *,
        report_as: str,
        fallback: str,
    ) -> Any:
        """Run one batch of store calls under the warming deadline; ``None`` if it failed."""
        guard = self._guards[dependency]
        try:
            return guard.call_with_deadline(
                self._config.warm_deadline_seconds, fn, operation=f"bulk_{report_as}"
            )
        except StoreError:
            report.report(report_as, fallback)
            return None

    @property
    def breakers(self) -> Mapping[str, CircuitBreaker]:
        return {name: guard.breaker for name, guard in self._guards.items()}

    def stats(self) -> dict[str, DependencyStats]:
        return {name: DependencyStats(**vars(guard.stats)) for name, guard in self._guards.items()}

    def close(self, timeout: float = 0.0) -> None:
        """Stop the shared worker pool, waiting up to ``timeout`` seconds for the calls
        under way (those abandoned past their deadline included) to return, so that
        stores closed after this are no longer called; a call hung past that is left
        to finish on its daemon thread."""
        self._pool.shutdown(timeout)


class _GuardedFeedCache:
    """A :class:`FeedCache` whose calls run under a dependency guard."""

    def __init__(self, inner: FeedCache, guard: DependencyGuard) -> None:
        self._inner = inner
        self._guard = guard

    def get(self, user_id: int, variant: str | None = None) -> FeedSnapshot | None:
        return self._guard.call(self._inner.get, user_id, variant)

    def get_many(self, keys: Sequence[FeedKey]) -> dict[FeedKey, FeedSnapshot]:
        return self._guard.call(self._inner.get_many, keys)

    def put(self, snapshot: FeedSnapshot, *, ttl_seconds: float) -> None:
        self._guard.call(self._inner.put, snapshot, ttl_seconds=ttl_seconds)

    def put_many(self, snapshots: Sequence[FeedSnapshot], *, ttl_seconds: float) -> None:
        self._guard.call(self._inner.put_many, snapshots, ttl_seconds=ttl_seconds)

    def delete(self, user_id: int, variant: str | None = None) -> bool:
        return self._guard.call(self._inner.delete, user_id, variant)

    def invalidate_user(self, user_id: int) -> int:
        return self._guard.call(self._inner.invalidate_user, user_id)


class _ObservedFeedCache:
    """A cache level that reports each key looked up in it to an observer.

    Only lookups are observed; writes pass straight through.
    """

    def __init__(self, inner: FeedCache, level: int, observer: FeedObserver) -> None:
        self._inner = inner
        self._level = level
        self._observer = observer

    def get(self, user_id: int, variant: str | None = None) -> FeedSnapshot | None:
        try:
            snapshot = self._inner.get(user_id, variant)
        except StoreError:
            self._observer.cache_lookups(self._level, "error", 1)
            raise
        self._observer.cache_lookups(self._level, "miss" if snapshot is None else "hit", 1)
        return snapshot

    def get_many(self, keys: Sequence[FeedKey]) -> dict[FeedKey, FeedSnapshot]:
        try:
            found = self._inner.get_many(keys)
        except StoreError:
            self._observer.cache_lookups(self._level, "error", len(keys))
            raise
        hits = sum(1 for key in keys if key in found)
        if hits:
            self._observer.cache_lookups(self._level, "hit", hits)
        if len(keys) - hits:
            self._observer.cache_lookups(self._level, "miss", len(keys) - hits)
        return found

    def put(self, snapshot: FeedSnapshot, *, ttl_seconds: float) -> None:
        self._inner.put(snapshot, ttl_seconds=ttl_seconds)

    def put_many(self, snapshots: Sequence[FeedSnapshot], *, ttl_seconds: float) -> None:
        self._inner.put_many(snapshots, ttl_seconds=ttl_seconds)

    def delete(self, user_id: int, variant: str | None = None) -> bool:
        return self._inner.delete(user_id, variant)

    def invalidate_user(self, user_id: int) -> int:
        return self._inner.invalidate_user(user_id)


class SnapshotCache:
    """The service's feed cache: guarded levels, counted lookups, reported failures.

    Levels that can stall are wrapped in the cache guard; an :class:`LRUFeedCache`
    level (and, when self-bounded stores run inline, any in-process level) is called
    directly. A single level that counts nothing itself is counted through a
    one-level :class:`TieredFeedCache`. With an ``observer``, every level is wrapped
    once more to report its lookups; without one, nothing is added to the hit path.
    """

    def __init__(
        self,
        cache: FeedCache | None,
        guard: DependencyGuard,
        config: FeedServiceConfig,
        observer: FeedObserver | None = None,
    ) -> None:
        self._config = config
        self._level_stats: Callable[[], tuple[CacheStats, ...]]
        self._cache: FeedCache | None
        guarded_levels: list[FeedCache] = []
        levels: list[FeedCache] = []

        def guarded(level: FeedCache) -> FeedCache:
            return level if called_directly(level, config) else _GuardedFeedCache(level, guard)

        def wrap(level: FeedCache) -> FeedCache:
            levels.append(level)
            inner = guarded(level)
            guarded_levels.append(inner)
            if observer is None:
                return inner
            return _ObservedFeedCache(inner, len(guarded_levels) - 1, observer)

        if cache is None:
            self._level_stats = lambda: ()
            self._cache = None
        elif isinstance(cache, TieredFeedCache):
            self._level_stats = lambda: cache.level_stats
            self._cache = cache.with_levels(wrap)
        elif isinstance(cache, LRUFeedCache):
            self._level_stats = lambda: (cache.stats,)
            self._cache = wrap(cache)
        else:
            tier = TieredFeedCache(cache)
            self._level_stats = lambda: tier.level_stats
            self._cache = tier.with_levels(wrap)
        # The level other processes share, if any: remembered pages are kept only there,
        # outside the level counters, so they neither crowd snapshots out of an LRU level
        # nor skew its hit rate.
        self._slowest: FeedCache | None = None
        self.shared_level: FeedCache | None = None
        """The shared level itself, unguarded: a page-taking seen store may reach it."""
        if isinstance(self._cache, TieredFeedCache):
            slowest = guarded_levels[-1]
            if not isinstance(slowest, LRUFeedCache):
                self._slowest = slowest
                self.shared_level = levels[-1]

    @property
    def enabled(self) -> bool:
        return self._cache is not None

    def level_stats(self) -> tuple[CacheStats, ...]:
        return self._level_stats()

    def get(self, key: FeedKey, report: DegradedReport) -> FeedSnapshot | None:
        if self._cache is None:
            return None
        try:
            return self._cache.get(*key)
        except StoreError:
            report.report("cache", "ranked without the cache")
            return None

    def find(
        self, key: FeedKey, report: DegradedReport
    ) -> tuple[FeedSnapshot | None, Callable[[], None]]:
        """:meth:`get` that leaves the faster levels as they were: the snapshot, and a
        function that copies it into them as :meth:`get` would have (call it once the
        snapshot was used)."""
        if not isinstance(self._cache, TieredFeedCache):
            return self.get(key, report), _nothing
        tier = self._cache
        try:
            snapshot, level = tier.find(*key)
        except StoreError:
            report.report("cache", "ranked without the cache")
            return None, _nothing
        if snapshot is None or level == 0:
            return snapshot, _nothing
        return snapshot, lambda: tier.promote(snapshot, level)

    def get_many(self, keys: Sequence[FeedKey]) -> dict[FeedKey, FeedSnapshot]:
        """Live snapshots of ``keys``; none when the cache is missing or failing."""
        if self._cache is None:
            return {}
        try:
            return self._cache.get_many(keys)
        except StoreError:
            return {}

    def put(self, snapshots: Sequence[FeedSnapshot], report: DegradedReport) -> bool:
        """Store the snapshots; ``False`` if the cache failed (reported) or is missing.

        Snapshots ranked while a dependency was failing (``report`` is degraded) live
        only ``degraded_snapshot_ttl_seconds``, so the feed recovers soon after it.
        """
        if self._cache is None or not snapshots:
            return self._cache is not None
        cfg = self._config
        ttl = cfg.degraded_snapshot_ttl_seconds if report.is_degraded else cfg.snapshot_ttl_seconds
        try:
            self._cache.put_many(snapshots, ttl_seconds=min(ttl, cfg.snapshot_ttl_seconds))
        except StoreError:
            report.report("cache", "snapshot not cached")
            return False
        return True

    def get_record(self, key: FeedKey, report: DegradedReport) -> FeedSnapshot | None:
        """The remembered page under ``key`` in the shared level, if there is one."""
        if self._slowest is None:
            return None
        try:
            return self._slowest.get(*key)
        except StoreError:
            report.report("cache", "retried cursor cut afresh")
            return None

    def put_record(self, record: FeedSnapshot, ttl_seconds: float, report: DegradedReport) -> None:
        """Keep a remembered page in the shared level for ``ttl_seconds``."""
        if self._slowest is None:
            return
        try:
            self._slowest.put(record, ttl_seconds=ttl_seconds)
        except StoreError:
            report.report("cache", "page not remembered for a retry")

    def invalidate_user(self, user_id: int) -> int:
        return 0 if self._cache is None else self._cache.invalidate_user(user_id)
