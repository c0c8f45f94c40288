"""The in-memory store of trending snapshots."""

from __future__ import annotations

import threading

from ..exceptions import InvalidInputError
from ..models._trending import TrendingKind, TrendingSnapshot, parse_trending_kind
from ..validation import finite_or_raise

__all__ = ["InMemoryTrendingSnapshotStore"]


class InMemoryTrendingSnapshotStore:
    """A :class:`~reelrank.TrendingSnapshotStore` in a dict; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshots: dict[tuple[TrendingKind, float], TrendingSnapshot] = {}

    def put_snapshot(self, snapshot: TrendingSnapshot) -> None:
        """Keep the snapshot, replacing the one of the same kind and window."""
        if not isinstance(snapshot, TrendingSnapshot):
            raise InvalidInputError("snapshot", "must be a TrendingSnapshot")
        with self._lock:
            self._snapshots[(snapshot.kind, snapshot.window_hours)] = snapshot

    def latest_snapshot(
        self, kind: TrendingKind, window_hours: float
    ) -> TrendingSnapshot | None:
        """The last snapshot put for this kind and window, or ``None``."""
        key = (parse_trending_kind(kind), finite_or_raise("window_hours", window_hours))
        with self._lock:
            return self._snapshots.get(key)
