"""The in-memory store of trending snapshots."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..exceptions import InvalidInputError
from ..models._trending import TrendingKind, TrendingSnapshot, check_trending_kind
from ..validation import check_lease_owner, check_ttl, finite_or_raise

__all__ = ["InMemoryTrendingSnapshotStore"]


class InMemoryTrendingSnapshotStore:
    """A :class:`~reelrank.CoordinatedTrendingSnapshotStore` in dicts; thread-safe.

    Leases expire on ``clock`` (default :func:`time.monotonic`), so the threads of one
    process compute a result once between them.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._snapshots: dict[tuple[TrendingKind, float], TrendingSnapshot] = {}
        self._leases: dict[tuple[TrendingKind, float], tuple[str, float]] = {}

    def put_snapshot(self, snapshot: TrendingSnapshot) -> None:
        """Keep the snapshot, replacing the one of the same kind and window."""
        if not isinstance(snapshot, TrendingSnapshot):
            raise InvalidInputError("snapshot", "must be a TrendingSnapshot")
        with self._lock:
            self._snapshots[(snapshot.kind, snapshot.window_hours)] = snapshot

    def latest_snapshot(self, kind: TrendingKind, window_hours: float) -> TrendingSnapshot | None:
        """The last snapshot put for this kind and window, or ``None``."""
        key = (check_trending_kind("kind", kind), finite_or_raise("window_hours", window_hours))
        with self._lock:
            return self._snapshots.get(key)

    def acquire_lease(
        self, kind: TrendingKind, window_hours: float, *, owner: str, seconds: float
    ) -> bool:
        """Take the lease of this kind and window for ``seconds`` unless one is held."""
        key = (check_trending_kind("kind", kind), finite_or_raise("window_hours", window_hours))
        check_lease_owner("owner", owner)
        duration = check_ttl("seconds", seconds)
        with self._lock:
            now = self._clock()
            held = self._leases.get(key)
            if held is not None and held[1] > now:
                return False
            self._leases[key] = (owner, now + duration)
            return True

    def release_lease(self, kind: TrendingKind, window_hours: float, *, owner: str) -> None:
        """Give the lease back if ``owner`` holds it."""
        key = (check_trending_kind("kind", kind), finite_or_raise("window_hours", window_hours))
        check_lease_owner("owner", owner)
        with self._lock:
            held = self._leases.get(key)
            if held is not None and held[0] == owner:
                del self._leases[key]
