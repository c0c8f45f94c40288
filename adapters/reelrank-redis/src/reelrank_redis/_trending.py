"""A :class:`~reelrank.CoordinatedTrendingSnapshotStore` on Redis strings, shared by every
process."""

from __future__ import annotations

import math
from typing import Any

from pydantic import ValidationError

from reelrank import InvalidInputError, StoreError, TrendingKind, TrendingSnapshot
from reelrank.stores.adapter import (
    check_lease_owner,
    check_trending_kind,
    check_ttl,
    finite_or_raise,
)

from ._base import RedisStore
from ._config import RedisClient, RedisConfig
from ._errors import store_errors

__all__ = ["RedisTrendingSnapshotStore"]

STORE_NAME = "trending"

# Deletes the lease only if ARGV[1] still holds it (a lease that expired and was taken
# by another owner stays).
_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _checked(kind: str, window_hours: float) -> tuple[str, float]:
    return check_trending_kind("kind", kind).value, finite_or_raise("window_hours", window_hours)


class RedisTrendingSnapshotStore(RedisStore):
    """The last trending snapshot of each kind and window, one Redis string each, and the
    leases that let one process at a time compute the next.

    The value is the snapshot as JSON (pickle-free; it reads back equal to what was
    written). The keys are hash-tagged by kind and window
    (``{prefix}:trending:v2:{thashtag:24.0}``) and every command touches one key, so the
    store works on a single server and on a Redis Cluster alike. Snapshot keys have no
    TTL: a snapshot is the fallback when the catalog or the log fails, however old. A
    lease is ``SET NX PX`` (Redis measures its expiry), given back by a script that
    deletes it only for its owner. Redis failures raise :class:`~reelrank.StoreError`
    (``store="trending"``), timeouts :class:`~reelrank.StoreTimeoutError`.
    """

    def __init__(self, client: RedisClient, config: RedisConfig | None = None) -> None:
        super().__init__(client, config)
        self._release = client.register_script(_RELEASE_SCRIPT)

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

    def latest_snapshot(self, kind: TrendingKind, window_hours: float) -> TrendingSnapshot | None:
        """The last snapshot put for this kind and window, or ``None``."""
        key = self._keys.trending(*_checked(kind, window_hours))
        with store_errors(STORE_NAME, "latest_snapshot"):
            value: Any = self._client.get(key)
        if value is None:
            return None
        try:
            return TrendingSnapshot.model_validate_json(value)
        except ValidationError as exc:
            raise StoreError(STORE_NAME, f"unreadable snapshot at {key!r}: {exc}") from exc

    def acquire_lease(
        self, kind: TrendingKind, window_hours: float, *, owner: str, seconds: float
    ) -> bool:
        """Take the lease of this kind and window for ``seconds`` unless one is held
        (``SET key owner NX PX``, at least one millisecond)."""
        key = self._keys.trending_lease(*_checked(kind, window_hours))
        checked_owner = check_lease_owner("owner", owner)
        milliseconds = max(1, math.ceil(check_ttl("seconds", seconds) * 1000.0))
        with store_errors(STORE_NAME, "acquire_lease"):
            return bool(self._client.set(key, checked_owner, nx=True, px=milliseconds))

    def release_lease(self, kind: TrendingKind, window_hours: float, *, owner: str) -> None:
        """Give the lease back if ``owner`` holds it (one script on the lease's key)."""
        key = self._keys.trending_lease(*_checked(kind, window_hours))
        checked_owner = check_lease_owner("owner", owner)
        with store_errors(STORE_NAME, "release_lease"):
            self._release(keys=[key], args=[checked_owner])
