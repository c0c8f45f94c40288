"""A :class:`~reelrank.TrendingSnapshotStore` on Redis strings, shared by every process."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from reelrank import InvalidInputError, StoreError, TrendingKind, TrendingSnapshot
from reelrank.stores.adapter import finite_or_raise

from ._base import RedisStore
from ._errors import store_errors

__all__ = ["RedisTrendingSnapshotStore"]

STORE_NAME = "trending"


class RedisTrendingSnapshotStore(RedisStore):
    """The last trending snapshot of each kind and window, one Redis string each.

    The value is the snapshot as JSON (pickle-free; it reads back equal to what was
    written). The key is hash-tagged by kind and window
    (``{prefix}:trending:v2:{thashtag:24.0}``) and every call is a single-key ``GET`` or
    ``SET``, so the store works on a single server and on a Redis Cluster alike. Keys
    have no TTL: a snapshot is the fallback when the catalog or the log fails, however
    old. Redis failures raise :class:`~reelrank.StoreError` (``store="trending"``),
    timeouts :class:`~reelrank.StoreTimeoutError`.
    """

    def put_snapshot(self, snapshot: TrendingSnapshot) -> None:
        """Keep the snapshot, replacing the one of the same kind and window."""
        if not isinstance(snapshot, TrendingSnapshot):
            raise InvalidInputError(
                "snapshot", f"must be a TrendingSnapshot, got {type(snapshot).__name__}"
            )
        key = self._keys.trending(snapshot.kind.value, snapshot.window_hours)
        value = snapshot.model_dump_json()
        with store_errors(STORE_NAME, "put_snapshot"):
            self._client.set(key, value)

    def latest_snapshot(
        self, kind: TrendingKind, window_hours: float
    ) -> TrendingSnapshot | None:
        """The last snapshot put for this kind and window, or ``None``."""
        try:
            checked_kind = TrendingKind(kind)
        except ValueError as exc:
            raise InvalidInputError(
                "kind", f"must be 'sound' or 'hashtag', got {kind!r}"
            ) from exc
        key = self._keys.trending(
            checked_kind.value, finite_or_raise("window_hours", window_hours)
        )
        with store_errors(STORE_NAME, "latest_snapshot"):
            value: Any = self._client.get(key)
        if value is None:
            return None
        try:
            return TrendingSnapshot.model_validate_json(value)
        except ValidationError as exc:
            raise StoreError(STORE_NAME, f"unreadable snapshot at {key!r}: {exc}") from exc
