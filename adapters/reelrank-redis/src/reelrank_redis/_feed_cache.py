"""A :class:`~reelrank.FeedCache` on Redis strings holding packed snapshots."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from reelrank import FeedSnapshot, InvalidInputError, StoreError
from reelrank.stores.adapter import FeedKey, check_feed_key, check_id, check_ttl, check_variant

from ._base import RedisStore
from ._codec import SnapshotFormatError, decode_snapshot, encode_snapshot
from ._config import RedisConfig
from ._errors import store_errors
from ._keys import DEFAULT_VARIANT

__all__ = ["FeedCacheStats", "RedisFeedCache"]

STORE_NAME = "cache"

# Reads the snapshots and counts hits and misses in the same round trip, so the
# statistics add up across every process that shares the Redis.
_GET_SCRIPT = """
local values = redis.call('MGET', unpack(KEYS, 2))
local hits = 0
for i = 1, #values do
  if values[i] then hits = hits + 1 end
end
if hits > 0 then redis.call('HINCRBY', KEYS[1], 'hits', hits) end
if hits < #values then redis.call('HINCRBY', KEYS[1], 'misses', #values - hits) end
return values
"""

# Drops every variant the user has cached. Atomic, so a snapshot put concurrently is
# either dropped together with its index entry or left fully in place.
_INVALIDATE_SCRIPT = """
local variants = redis.call('SMEMBERS', KEYS[1])
local dropped = 0
for i = 1, #variants do
  dropped = dropped + redis.call('DEL', ARGV[1] .. variants[i] .. ARGV[2])
end
redis.call('DEL', KEYS[1])
return dropped
"""

# Lua's unpack() is limited by the C stack; larger reads are split into chunks.
_MAX_KEYS_PER_SCRIPT = 1_000
_PIPELINE_CHUNK = 500


@dataclass(frozen=True, slots=True)
class FeedCacheStats:
    """Hit and miss counts of a feed cache, summed over every process using the prefix."""

    hits: int
    """Lookups that found a live snapshot."""
    misses: int
    """Lookups that found none."""

    @property
    def hit_ratio(self) -> float | None:
        """``hits / (hits + misses)``, or ``None`` before the first lookup."""
        total = self.hits + self.misses
        return self.hits / total if total else None


def _ttl_milliseconds(ttl_seconds: float) -> int:
    return max(1, round(ttl_seconds * 1000.0))


class RedisFeedCache(RedisStore):
    """Ranked feed snapshots in Redis, one packed string per ``(user_id, variant)``.

    Each snapshot is a string key with a millisecond TTL set by Redis itself, so
    expiry is measured on the server. A small set per user lists the variants
    cached for it, which :meth:`invalidate_user` needs. Every lookup counts a hit or
    a miss in a shared hash (see :meth:`stats`).

    ``client`` is a ready :class:`redis.Redis` (see :func:`~reelrank_redis.connect`);
    ``config`` supplies the key prefix. Any Redis failure raises
    :class:`~reelrank.StoreError` (``store="cache"``), timeouts
    :class:`~reelrank.StoreTimeoutError`.
    """

    def __init__(self, client: redis.Redis, config: RedisConfig | None = None) -> None:
        super().__init__(client, config)
        self._get_script = client.register_script(_GET_SCRIPT)
        self._invalidate_script = client.register_script(_INVALIDATE_SCRIPT)

    # -- reads ------------------------------------------------------------------------

    def get(self, user_id: int, variant: str | None = None) -> FeedSnapshot | None:
        """The live snapshot for ``(user_id, variant)``, or ``None``."""
        check_id("user_id", user_id)
        check_variant("variant", variant)
        key = self._keys.feed(user_id, variant)
        with store_errors(STORE_NAME, "get"):
            values = self._get_script(keys=[self._keys.feed_stats(), key])
        return self._decode(key, values[0])

    def get_many(self, keys: Sequence[FeedKey]) -> dict[FeedKey, FeedSnapshot]:
        """Live snapshots by key; missing or expired keys are omitted."""
        unique = list(dict.fromkeys(check_feed_key("keys", key) for key in keys))
        result: dict[FeedKey, FeedSnapshot] = {}
        stats_key = self._keys.feed_stats()
        for start in range(0, len(unique), _MAX_KEYS_PER_SCRIPT):
            chunk = unique[start : start + _MAX_KEYS_PER_SCRIPT]
            redis_keys = [self._keys.feed(user_id, variant) for user_id, variant in chunk]
            with store_errors(STORE_NAME, "get_many"):
                values = self._get_script(keys=[stats_key, *redis_keys])
            for feed_key, redis_key, value in zip(chunk, redis_keys, values, strict=True):
                snapshot = self._decode(redis_key, value)
                if snapshot is not None:
                    result[feed_key] = snapshot
        return result

    @staticmethod
    def _decode(redis_key: str, value: Any) -> FeedSnapshot | None:
        if value is None:
            return None
        try:
            return decode_snapshot(value)
        except SnapshotFormatError as exc:
            raise StoreError(STORE_NAME, f"unreadable snapshot at {redis_key!r}: {exc}") from exc

    # -- writes -----------------------------------------------------------------------

    def put(self, snapshot: FeedSnapshot, *, ttl_seconds: float) -> None:
        """Store ``snapshot`` for ``ttl_seconds``, replacing any previous one."""
        self.put_many([snapshot], ttl_seconds=ttl_seconds)

    def put_many(self, snapshots: Sequence[FeedSnapshot], *, ttl_seconds: float) -> None:
        """Store several snapshots with one TTL, pipelined (for warming the cache).

        Everything is validated and encoded before the first byte is sent; with two
        snapshots for the same key the later one wins.
        """
        ttl = check_ttl("ttl_seconds", ttl_seconds)
        for snapshot in snapshots:
            if not isinstance(snapshot, FeedSnapshot):
                raise InvalidInputError(
                    "snapshots", f"must be a FeedSnapshot, got {type(snapshot).__name__}"
                )
        encoded = [(snapshot, encode_snapshot(snapshot)) for snapshot in snapshots]
        ttl_ms = _ttl_milliseconds(ttl)
        index_ttl = math.ceil(ttl)
        with store_errors(STORE_NAME, "put"):
            for start in range(0, len(encoded), _PIPELINE_CHUNK):
                pipe = self._client.pipeline(transaction=False)
                for snapshot, blob in encoded[start : start + _PIPELINE_CHUNK]:
                    index_key = self._keys.feed_variants(snapshot.user_id)
                    pipe.set(self._keys.feed(snapshot.user_id, snapshot.variant), blob, px=ttl_ms)
                    pipe.sadd(index_key, snapshot.variant or DEFAULT_VARIANT)
                    # The index lives as long as the longest-lived snapshot it lists.
                    pipe.expire(index_key, index_ttl, nx=True)
                    pipe.expire(index_key, index_ttl, gt=True)
                pipe.execute()

    def delete(self, user_id: int, variant: str | None = None) -> bool:
        """Drop one snapshot; ``True`` if a live one was there."""
        check_id("user_id", user_id)
        check_variant("variant", variant)
        with store_errors(STORE_NAME, "delete"):
            pipe = self._client.pipeline(transaction=True)
            pipe.delete(self._keys.feed(user_id, variant))
            pipe.srem(self._keys.feed_variants(user_id), variant or DEFAULT_VARIANT)
            deleted, _ = pipe.execute()
        return bool(deleted)

    def invalidate_user(self, user_id: int) -> int:
        """Drop the user's snapshots of every variant; returns how many live ones were dropped."""
        check_id("user_id", user_id)
        with store_errors(STORE_NAME, "invalidate_user"):
            dropped = self._invalidate_script(
                keys=[self._keys.feed_variants(user_id)],
                args=[self._keys.feed_variant_prefix(), f":{user_id}"],
            )
        return int(dropped)

    # -- statistics ---------------------------------------------------------------------

    def stats(self) -> FeedCacheStats:
        """Hits and misses counted so far by every process sharing this prefix."""
        with store_errors(STORE_NAME, "stats"):
            hits, misses = self._client.hmget(self._keys.feed_stats(), ["hits", "misses"])
        return FeedCacheStats(hits=int(hits or 0), misses=int(misses or 0))

    def reset_stats(self) -> None:
        """Start counting hits and misses from zero."""
        with store_errors(STORE_NAME, "reset_stats"):
            self._client.delete(self._keys.feed_stats())
