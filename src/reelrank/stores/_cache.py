"""Feed cache levels: an in-process LRU level and a tiered cache that stacks levels.

Both implement the :class:`~reelrank.FeedCache` protocol, so a service (or another
tier) cannot tell a single level from a stack of them. A typical deployment puts a
small :class:`LRUFeedCache` in each process in front of a shared level (the Redis
adapter) that every process sees::

    cache = TieredFeedCache(LRUFeedCache(max_entries=50_000), RedisFeedCache(...))
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ..exceptions import InvalidInputError, StoreError
from ..models._feed import FeedSnapshot
from ..validation import check_feed_key, check_id, check_ttl, check_variant
from ._common import _check_instance
from ._protocols import FeedCache, FeedKey

__all__ = ["CacheStats", "InMemoryFeedCache", "LRUFeedCache", "TieredFeedCache"]


class InMemoryFeedCache:
    """A :class:`~reelrank.FeedCache` with expiry measured by ``clock``.

    ``clock`` returns seconds from any fixed origin (default :func:`time.monotonic`);
    tests pass a fake clock to expire entries without sleeping. Expired entries are
    dropped lazily, when read or overwritten, and by :meth:`purge_expired`.
    """

    bounds_own_calls = True
    """Never waits on I/O, so the feed service calls it on the request thread."""

    in_process = True
    """A level in this process that cannot fail or stall: the feed service calls it
    without a guard when stores that bound their own calls run inline."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._entries: dict[int, dict[str | None, tuple[FeedSnapshot, float]]] = {}

    def get(self, user_id: int, variant: str | None = None) -> FeedSnapshot | None:
        """The live snapshot for ``(user_id, variant)``, or ``None``."""
        check_id("user_id", user_id)
        check_variant("variant", variant)
        with self._lock:
            return self._live(user_id, variant, self._clock())

    def get_many(self, keys: Sequence[FeedKey]) -> dict[FeedKey, FeedSnapshot]:
        """Live snapshots by key; missing keys are omitted."""
        checked = [check_feed_key("keys", key) for key in keys]
        with self._lock:
            now = self._clock()
            result: dict[FeedKey, FeedSnapshot] = {}
            for user_id, variant in checked:
                snapshot = self._live(user_id, variant, now)
                if snapshot is not None:
                    result[(user_id, variant)] = snapshot
            return result

    def put(self, snapshot: FeedSnapshot, *, ttl_seconds: float) -> None:
        """Store ``snapshot`` for ``ttl_seconds``."""
        self.put_many([snapshot], ttl_seconds=ttl_seconds)

    def put_many(self, snapshots: Sequence[FeedSnapshot], *, ttl_seconds: float) -> None:
        """Store several snapshots with one TTL; later duplicates win."""
        ttl = check_ttl("ttl_seconds", ttl_seconds)
        for snapshot in snapshots:
            _check_instance("snapshots", snapshot, FeedSnapshot)
        with self._lock:
            expires_at = self._clock() + ttl
            for snapshot in snapshots:
                per_user = self._entries.setdefault(snapshot.user_id, {})
                per_user[snapshot.variant] = (snapshot, expires_at)

    def delete(self, user_id: int, variant: str | None = None) -> bool:
        """Drop one snapshot; ``True`` if a live one was there."""
        check_id("user_id", user_id)
        check_variant("variant", variant)
        with self._lock:
            live = self._live(user_id, variant, self._clock()) is not None
            self._entries.get(user_id, {}).pop(variant, None)
            return live

    def invalidate_user(self, user_id: int) -> int:
        """Drop every variant of the user's feed; returns how many were live."""
        check_id("user_id", user_id)
        with self._lock:
            now = self._clock()
            entries = self._entries.pop(user_id, {})
            return sum(1 for _, expires_at in entries.values() if expires_at > now)

    def purge_expired(self) -> int:
        """Drop every expired entry now; returns how many were dropped."""
        with self._lock:
            now = self._clock()
            dropped = 0
            for user_id in list(self._entries):
                per_user = self._entries[user_id]
                for variant in [v for v, (_, exp) in per_user.items() if exp <= now]:
                    del per_user[variant]
                    dropped += 1
                if not per_user:
                    del self._entries[user_id]
            return dropped

    def _live(self, user_id: int, variant: str | None, now: float) -> FeedSnapshot | None:
        per_user = self._entries.get(user_id, {})
        entry = per_user.get(variant)
        if entry is None:
            return None
        snapshot, expires_at = entry
        if expires_at <= now:
            del per_user[variant]
            return None
        return snapshot


_R = TypeVar("_R")


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Lookup counters of one cache level at one moment.

    Every key looked up counts once: as a hit, a miss, or an error when the level
    failed. ``get_many`` counts each requested key.
    """

    hits: int = 0
    """Lookups that found a live snapshot."""
    misses: int = 0
    """Lookups that found nothing (never stored, expired, evicted or invalidated)."""
    errors: int = 0
    """Lookups the level could not answer because it failed."""

    @property
    def lookups(self) -> int:
        """``hits + misses + errors``."""
        return self.hits + self.misses + self.errors

    @property
    def hit_rate(self) -> float:
        """``hits / lookups``, or ``0.0`` before the first lookup."""
        total = self.lookups
        return self.hits / total if total else 0.0


class _Counter:
    """Thread-safe, mutable counterpart of :class:`CacheStats`."""

    __slots__ = ("_errors", "_hits", "_lock", "_misses")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hits = self._misses = self._errors = 0

    def add(self, *, hits: int = 0, misses: int = 0, errors: int = 0) -> None:
        with self._lock:
            self._hits += hits
            self._misses += misses
            self._errors += errors

    def snapshot(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._hits, self._misses, self._errors)


def _check_snapshots(snapshots: Sequence[FeedSnapshot]) -> None:
    for snapshot in snapshots:
        if not isinstance(snapshot, FeedSnapshot):
            raise InvalidInputError(
                "snapshots", f"must hold FeedSnapshot values, got {type(snapshot).__name__}"
            )


class LRUFeedCache:
    """An in-process :class:`~reelrank.FeedCache` level holding at most ``max_entries``.

    Entries expire after their TTL, measured by ``clock`` (seconds from any fixed
    origin, :func:`time.monotonic` by default; tests pass a fake clock). When full, the
    least recently used entry is evicted. Snapshots are immutable, so they are kept and
    returned as they are, without copying. Thread-safe.
    """

    in_process = True
    """A level in this process that cannot fail or stall: the feed service always calls
    it without a guard."""

    def __init__(
        self, max_entries: int = 10_000, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise InvalidInputError("max_entries", f"must be an int >= 1, got {max_entries!r}")
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[FeedKey, tuple[FeedSnapshot, float]] = OrderedDict()
        self._variants: dict[int, set[str | None]] = {}
        self._counter = _Counter()
        self._evictions = 0

    @property
    def stats(self) -> CacheStats:
        """Hits and misses of this level since it was created."""
        return self._counter.snapshot()

    @property
    def evictions(self) -> int:
        """Live entries dropped to make room for new ones."""
        with self._lock:
            return self._evictions

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _live(self, key: FeedKey, now: float) -> FeedSnapshot | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        snapshot, expires_at = entry
        if expires_at <= now:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return snapshot

    def _drop(self, key: FeedKey) -> None:
        del self._entries[key]
        variants = self._variants[key[0]]
        variants.discard(key[1])
        if not variants:
            del self._variants[key[0]]

    def get(self, user_id: int, variant: str | None = None) -> FeedSnapshot | None:
        """The live snapshot for ``(user_id, variant)``, or ``None``."""
        key = (check_id("user_id", user_id), check_variant("variant", variant))
        with self._lock:
            snapshot = self._live(key, self._clock())
        self._counter.add(hits=snapshot is not None, misses=snapshot is None)
        return snapshot

    def get_many(self, keys: Sequence[FeedKey]) -> dict[FeedKey, FeedSnapshot]:
        """Live snapshots by key; missing or expired keys are omitted."""
        checked = [check_feed_key("keys", key) for key in keys]
        result: dict[FeedKey, FeedSnapshot] = {}
        with self._lock:
            now = self._clock()
            for key in checked:
                snapshot = self._live(key, now)
                if snapshot is not None:
                    result[key] = snapshot
        hits = sum(1 for key in checked if key in result)
        self._counter.add(hits=hits, misses=len(checked) - hits)
        return result

    def put(self, snapshot: FeedSnapshot, *, ttl_seconds: float) -> None:
        """Store ``snapshot`` under its key for ``ttl_seconds``."""
        self.put_many([snapshot], ttl_seconds=ttl_seconds)

    def put_many(self, snapshots: Sequence[FeedSnapshot], *, ttl_seconds: float) -> None:
        """Store several snapshots with one TTL; a later duplicate key wins."""
        ttl = check_ttl("ttl_seconds", ttl_seconds)
        _check_snapshots(snapshots)
        with self._lock:
            expires_at = self._clock() + ttl
            for snapshot in snapshots:
                key = snapshot.key
                self._entries[key] = (snapshot, expires_at)
                self._entries.move_to_end(key)
                self._variants.setdefault(key[0], set()).add(key[1])
            while len(self._entries) > self.max_entries:
                oldest = next(iter(self._entries))
                self._drop(oldest)
                self._evictions += 1

    def delete(self, user_id: int, variant: str | None = None) -> bool:
        """Drop one snapshot; ``True`` if a live one was there."""
        key = (check_id("user_id", user_id), check_variant("variant", variant))
        with self._lock:
            live = self._live(key, self._clock()) is not None
            if key in self._entries:
                self._drop(key)
            return live

    def invalidate_user(self, user_id: int) -> int:
        """Drop every variant of the user's feed; returns how many were live."""
        check_id("user_id", user_id)
        with self._lock:
            now = self._clock()
            dropped = 0
            for variant in list(self._variants.get(user_id, ())):
                key = (user_id, variant)
                dropped += self._entries[key][1] > now
                self._drop(key)
            return dropped

    def clear(self) -> None:
        """Drop every entry (the statistics are kept)."""
        with self._lock:
            self._entries.clear()
            self._variants.clear()


class TieredFeedCache:
    """Stacks cache levels, fastest first, behind one :class:`~reelrank.FeedCache`.

    * **get**: levels are asked in order; the first live snapshot wins and is copied
      into the faster levels above it (with ``local_ttl_seconds``). A level that raises
      :class:`~reelrank.StoreError` is skipped; if no level had the key and one failed,
      that error is raised, so the caller knows the answer is not a plain miss.
    * **put** and **invalidation** go to every level, fastest first. Each level is
      attempted even when another fails; the first error is raised at the end.
    * **TTL**: the last level gets the TTL asked for. Every level above it gets at most
      ``local_ttl_seconds``, so an entry that another process invalidates in the
      shared level lingers in this process for at most that long.

    :attr:`level_stats` counts hits, misses and errors per level: a lookup that the
    first level answers never reaches the second.
    """

    def __init__(self, *levels: FeedCache, local_ttl_seconds: float = 60.0) -> None:
        if not levels:
            raise InvalidInputError("levels", "a tiered cache needs at least one level")
        self.local_ttl_seconds = check_ttl("local_ttl_seconds", local_ttl_seconds)
        self._levels: tuple[FeedCache, ...] = levels
        self._counters = tuple(_Counter() for _ in levels)

    @property
    def levels(self) -> tuple[FeedCache, ...]:
        """The levels, fastest first."""
        return self._levels

    @property
    def level_stats(self) -> tuple[CacheStats, ...]:
        """Hit, miss and error counts of each level, fastest first."""
        return tuple(counter.snapshot() for counter in self._counters)

    @property
    def stats(self) -> CacheStats:
        """Counts of the tier as a whole: a hit at any level is a hit."""
        per_level = self.level_stats
        hits = sum(stats.hits for stats in per_level)
        last = per_level[-1]
        return CacheStats(hits=hits, misses=last.misses, errors=last.errors)

    def with_levels(self, wrap: Callable[[FeedCache], FeedCache]) -> TieredFeedCache:
        """A view of this tier whose levels are ``wrap(level)``, sharing its statistics.

        Services use it to put a deadline around the levels that can stall.
        """
        view = TieredFeedCache(
            *(wrap(level) for level in self._levels), local_ttl_seconds=self.local_ttl_seconds
        )
        view._counters = self._counters
        return view

    def _ttl_for(self, index: int, ttl: float) -> float:
        if index == len(self._levels) - 1:
            return ttl
        return min(ttl, self.local_ttl_seconds)

    def _promote(self, found_at: int, snapshots: Sequence[FeedSnapshot]) -> None:
        for index in range(found_at):
            try:
                self._levels[index].put_many(snapshots, ttl_seconds=self.local_ttl_seconds)
            except StoreError:
                # The snapshot is still served; the faster level just misses next time.
                continue

    def get(self, user_id: int, variant: str | None = None) -> FeedSnapshot | None:
        """The first live snapshot found, fastest level first."""
        snapshot, level = self.find(user_id, variant)
        if snapshot is not None:
            self.promote(snapshot, level)
        return snapshot

    def find(self, user_id: int, variant: str | None = None) -> tuple[FeedSnapshot | None, int]:
        """:meth:`get` without copying the snapshot into the faster levels: the snapshot
        and the index of the level it was found in (the number of levels if none).

        For a caller that decides afterwards whether it used the snapshot, and then
        calls :meth:`promote`, so that a lookup it did not need leaves the faster levels
        as they were.
        """
        key = (check_id("user_id", user_id), check_variant("variant", variant))
        failure: StoreError | None = None
        for index, level in enumerate(self._levels):
            try:
                snapshot = level.get(*key)
            except StoreError as exc:
                self._counters[index].add(errors=1)
                failure = failure or exc
                continue
            if snapshot is not None:
                self._counters[index].add(hits=1)
                return snapshot, index
            self._counters[index].add(misses=1)
        if failure is not None:
            raise failure
        return None, len(self._levels)

    def promote(self, snapshot: FeedSnapshot, found_at: int) -> None:
        """Copy a snapshot :meth:`find` found at level ``found_at`` into the faster levels
        (for ``local_ttl_seconds``), as :meth:`get` does."""
        self._promote(found_at, [snapshot])

    def get_many(self, keys: Sequence[FeedKey]) -> dict[FeedKey, FeedSnapshot]:
        """Live snapshots by key, each from the fastest level that has it."""
        missing = list(dict.fromkeys(check_feed_key("keys", key) for key in keys))
        found: dict[FeedKey, FeedSnapshot] = {}
        failure: StoreError | None = None
        for index, level in enumerate(self._levels):
            if not missing:
                break
            try:
                batch = level.get_many(missing)
            except StoreError as exc:
                self._counters[index].add(errors=len(missing))
                failure = failure or exc
                continue
            self._counters[index].add(hits=len(batch), misses=len(missing) - len(batch))
            if batch:
                found.update(batch)
                self._promote(index, list(batch.values()))
                missing = [key for key in missing if key not in batch]
        if failure is not None and missing:
            raise failure
        return found

    def put(self, snapshot: FeedSnapshot, *, ttl_seconds: float) -> None:
        """Store ``snapshot`` in every level."""
        self.put_many([snapshot], ttl_seconds=ttl_seconds)

    def put_many(self, snapshots: Sequence[FeedSnapshot], *, ttl_seconds: float) -> None:
        """Store several snapshots in every level (one bulk call per level)."""
        ttl = check_ttl("ttl_seconds", ttl_seconds)
        _check_snapshots(snapshots)
        self._each_level(
            lambda index, level: level.put_many(snapshots, ttl_seconds=self._ttl_for(index, ttl))
        )

    def delete(self, user_id: int, variant: str | None = None) -> bool:
        """Drop the snapshot from every level; ``True`` if any level had a live one."""
        key = (check_id("user_id", user_id), check_variant("variant", variant))
        results = self._each_level(lambda _, level: level.delete(*key))
        return any(results)

    def invalidate_user(self, user_id: int) -> int:
        """Drop the user's snapshots from every level; returns the most any level dropped."""
        check_id("user_id", user_id)
        results = self._each_level(lambda _, level: level.invalidate_user(user_id))
        return max(results, default=0)

    def _each_level(self, action: Callable[[int, FeedCache], _R]) -> list[_R]:
        results: list[_R] = []
        failure: StoreError | None = None
        for index, level in enumerate(self._levels):
            try:
                results.append(action(index, level))
            except StoreError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure
        return results
