"""A :class:`~reelrank.FeedCache` on Redis strings holding packed snapshots."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from redis.cluster import RedisCluster

from reelrank import FeedSnapshot, InvalidInputError, StoreError
from reelrank.stores.adapter import FeedKey, check_feed_key, check_id, check_ttl, check_variant

from ._base import RedisStore
from ._codec import SnapshotFormatError, decode_snapshot, encode_snapshot
from ._config import RedisClient, RedisConfig
from ._errors import store_errors
from ._keys import BUCKETS, DEFAULT_VARIANT

__all__ = ["FeedCacheStats", "RedisFeedCache"]

STORE_NAME = "cache"

# Drops the variants listed in ARGV (their snapshot keys are KEYS[2..]) and the
# user's variant index KEYS[1], atomically, so a snapshot put concurrently is either
# dropped together with its index entry or left fully in place. Every key is declared,
# so the script runs on the one slot of the user's hash tag. If the index lists a
# variant the caller did not declare (one put since it read the index), nothing is
# dropped and -1 tells the caller to read the index again.
_INVALIDATE_SCRIPT = """
local declared = {}
for i = 1, #ARGV do declared[ARGV[i]] = true end
for _, variant in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if not declared[variant] then return -1 end
end
local dropped = 0
for i = 2, #KEYS do dropped = dropped + redis.call('DEL', KEYS[i]) end
redis.call('DEL', KEYS[1])
return dropped
"""

# Reads a snapshot and counts the lookup as a hit or a miss, in one round trip. A
# single server only: on a cluster the statistics bucket lives in another slot.
_COUNTED_GET_SCRIPT = """
local value = redis.call('GET', KEYS[1])
redis.call('HINCRBY', KEYS[2], value and 'hits' or 'misses', 1)
return value
"""

# Reads (GETs) and writes are pipelined in chunks of this many keys.
_PIPELINE_CHUNK = 500
# invalidate_user re-reads the index at most this often when puts keep racing it.
_INVALIDATE_ATTEMPTS = 5


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


def ttl_milliseconds(ttl_seconds: float) -> int:
    """A TTL as Redis's ``PX`` takes it: whole milliseconds, at least one."""
    return max(1, round(ttl_seconds * 1000.0))


class RedisFeedCache(RedisStore):
    """Ranked feed snapshots in Redis, one packed string per ``(user_id, variant)``.

    Each snapshot is a string key with a millisecond TTL set by Redis itself, so
    expiry is measured on the server. A small set per user lists the variants
    cached for it, which :meth:`invalidate_user` needs. Every lookup then counts its
    hits and misses with ``HINCRBY`` on one of the statistics buckets (see :meth:`stats`).

    ``client`` is a ready :class:`redis.Redis` or :class:`redis.cluster.RedisCluster`
    (see :func:`~reelrank_redis.connect`);
    ``config`` supplies the key prefix. Any Redis failure raises
    :class:`~reelrank.StoreError` (``store="cache"``), timeouts
    :class:`~reelrank.StoreTimeoutError`.
    """

    def __init__(self, client: RedisClient, config: RedisConfig | None = None) -> None:
        super().__init__(client, config)
        self._invalidate_script = client.register_script(_INVALIDATE_SCRIPT)
        single = not isinstance(client, RedisCluster)
        self._counted_get = client.register_script(_COUNTED_GET_SCRIPT) if single else None

    # -- reads ------------------------------------------------------------------------

    def get(self, user_id: int, variant: str | None = None) -> FeedSnapshot | None:
        """The live snapshot for ``(user_id, variant)``, or ``None``.

        One round trip. On a single server a script reads the snapshot and counts the
        hit or the miss. On a cluster, whose statistics live in another slot, the
        ``GET`` and a hit count are pipelined together (the count assumes a hit, as most
        lookups of a warm cache are), and a miss sends a second pipeline that turns that
        hit into a miss.
        """
        check_id("user_id", user_id)
        check_variant("variant", variant)
        key = self._keys.feed(user_id, variant)
        stats_key = self._stats_key(user_id)
        if self._counted_get is not None:
            with store_errors(STORE_NAME, "get"):
                value = self._counted_get(keys=[key, stats_key])
            try:
                return self._decode(key, value)
            except StoreError:
                self._count("get", user_id, hits=-1, misses=0)  # not a hit after all
                raise
        with store_errors(STORE_NAME, "get"):
            pipe = self._client.pipeline(transaction=False)
            pipe.get(key)
            pipe.hincrby(stats_key, "hits", 1)
            value, _ = pipe.execute()
        try:
            snapshot = self._decode(key, value)
        except StoreError:
            self._count("get", user_id, hits=-1, misses=0)  # not a hit after all
            raise
        if snapshot is None:
            self._count("get", user_id, hits=-1, misses=1)
        return snapshot

    def get_many(self, keys: Sequence[FeedKey]) -> dict[FeedKey, FeedSnapshot]:
        """Live snapshots by key; missing or expired keys are omitted.

        The reads are pipelined (on a cluster, grouped by node), not atomic together.
        """
        unique = list(dict.fromkeys(check_feed_key("keys", key) for key in keys))
        result: dict[FeedKey, FeedSnapshot] = {}
        for start in range(0, len(unique), _PIPELINE_CHUNK):
            chunk = unique[start : start + _PIPELINE_CHUNK]
            redis_keys = [self._keys.feed(user_id, variant) for user_id, variant in chunk]
            with store_errors(STORE_NAME, "get_many"):
                pipe = self._client.pipeline(transaction=False)
                for redis_key in redis_keys:
                    pipe.get(redis_key)
                values = pipe.execute()
            for feed_key, redis_key, value in zip(chunk, redis_keys, values, strict=True):
                snapshot = self._decode(redis_key, value)
                if snapshot is not None:
                    result[feed_key] = snapshot
        if unique:
            self._count(
                "get_many", unique[0][0], hits=len(result), misses=len(unique) - len(result)
            )
        return result

    def _stats_key(self, user_id: int) -> str:
        """The statistics bucket of ``user_id``: lookups spread over :data:`BUCKETS` hashes,
        so that no single hash takes every lookup's write."""
        return self._keys.feed_stats(user_id % BUCKETS)

    def _count(self, operation: str, user_id: int, *, hits: int, misses: int) -> None:
        """Add to the shared statistics, in the bucket of ``user_id``. Plain commands, not
        part of a script: the read's keys and the statistics live in different slots of a
        cluster."""
        key = self._stats_key(user_id)
        with store_errors(STORE_NAME, operation):
            pipe = self._client.pipeline(transaction=False)
            if hits:
                pipe.hincrby(key, "hits", hits)
            if misses:
                pipe.hincrby(key, "misses", misses)
            pipe.execute()

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
        ttl_ms = ttl_milliseconds(ttl)
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
            # Both keys carry the user's hash tag, so the transaction is one slot's.
            pipe = self._client.pipeline(transaction=True)
            pipe.delete(self._keys.feed(user_id, variant))
            pipe.srem(self._keys.feed_variants(user_id), variant or DEFAULT_VARIANT)
            deleted, _ = pipe.execute()
        return bool(deleted)

    def invalidate_user(self, user_id: int) -> int:
        """Drop the user's snapshots of every variant; returns how many live ones were dropped.

        Reads the user's variant index, then drops the listed snapshots and the index in
        one script; a variant put in between makes the script refuse, and the index is
        read again.
        """
        check_id("user_id", user_id)
        index_key = self._keys.feed_variants(user_id)
        with store_errors(STORE_NAME, "invalidate_user"):
            for _ in range(_INVALIDATE_ATTEMPTS):
                variants = sorted(
                    member.decode()
                    for member in cast("set[bytes]", self._client.smembers(index_key))
                )
                snapshot_keys = [
                    self._keys.feed(user_id, None if variant == DEFAULT_VARIANT else variant)
                    for variant in variants
                ]
                dropped = int(
                    self._invalidate_script(keys=[index_key, *snapshot_keys], args=variants)
                )
                if dropped >= 0:
                    return dropped
        raise StoreError(
            STORE_NAME,
            f"invalidate_user: the variant index of user {user_id} kept changing",
        )

    # -- statistics ---------------------------------------------------------------------

    def stats(self) -> FeedCacheStats:
        """Hits and misses counted so far by every process sharing this prefix."""
        with store_errors(STORE_NAME, "stats"):
            pipe = self._client.pipeline(transaction=False)
            for bucket in range(BUCKETS):
                pipe.hmget(self._keys.feed_stats(bucket), ["hits", "misses"])
            rows = pipe.execute()
        return FeedCacheStats(
            hits=sum(int(hits or 0) for hits, _ in rows),
            misses=sum(int(misses or 0) for _, misses in rows),
        )

    def reset_stats(self) -> None:
        """Start counting hits and misses from zero."""
        with store_errors(STORE_NAME, "reset_stats"):
            pipe = self._client.pipeline(transaction=False)
            for bucket in range(BUCKETS):
                pipe.delete(self._keys.feed_stats(bucket))
            pipe.execute()
