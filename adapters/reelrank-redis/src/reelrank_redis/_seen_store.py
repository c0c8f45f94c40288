"""A :class:`~reelrank.SeenStore` on Redis sorted sets scored by time."""

from __future__ import annotations

import contextlib
import math
import string
import struct
import textwrap
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from redis.cluster import RedisCluster

from reelrank import FeedSnapshot, InvalidInputError, StoreError
from reelrank.stores.adapter import (
    FeedCache,
    PageOutcome,
    PageRequest,
    check_aware,
    check_feed_key,
    check_id,
    check_ids,
    check_limit,
    check_ttl,
    check_user_ids,
    chunked,
    page_record,
)

from ._base import RedisStore
from ._codec import SnapshotFormatError, decode_snapshot, record_frame
from ._config import RedisClient, RedisConfig
from ._errors import store_errors
from ._feed_cache import RedisFeedCache, ttl_milliseconds
from ._keys import id_member, member_id
from ._time import to_microseconds

__all__ = ["RedisSeenStore"]

STORE_NAME = "seen"
_MICROSECONDS = 1_000_000
# Lua's unpack() is limited by the C stack; longer id lists are taken in slices.
_MAX_IDS_PER_SCRIPT = 1_000

# The two halves of take_unseen, shared by the scripts below (``$seen`` is the seen
# set's key). The first reads ARGV's window (see _TAKE_UNSEEN_SCRIPT) and leaves the
# 0-based positions of the ids to take in ``taken``, their ZADD arguments in ``added``
# and the members in ``members``; the second writes them as mark_seen does.
_FIND_UNSEEN = string.Template(
    """local since = tonumber(ARGV[1])
local limit = tonumber(ARGV[3])
local packed = ARGV[7]
local members = {}
for i = 1, #packed / 8 do members[i] = string.sub(packed, 8 * i - 7, 8 * i) end
local scores = redis.call('ZMSCORE', $seen, unpack(members))
local taken = {}
local added = {'GT'}
for i = 1, #scores do
  if #taken == limit then break end
  local score = scores[i]
  if (not score) or tonumber(score) < since then
    taken[#taken + 1] = i - 1
    added[#added + 1] = ARGV[2]
    added[#added + 1] = members[i]
  end
end
"""
)
_MARK_TAKEN = string.Template(
    """redis.call('ZADD', $seen, unpack(added))
redis.call('ZREMRANGEBYSCORE', $seen, '-inf', '(' .. ARGV[4])
redis.call('ZREMRANGEBYRANK', $seen, 0, -tonumber(ARGV[5]) - 1)
redis.call('EXPIRE', $seen, ARGV[6])
"""
)

# take_unseen in one round trip: look the ids up, keep the first ARGV[3] whose time is
# missing or before ARGV[1], and write them like mark_seen does. Returns their
# 0-based positions in the id list. The members travel as one packed string (8 bytes
# each, as id_member writes them): encoding one argument instead of one per id saved
# about a tenth of the call.
#   KEYS: the user's seen set
#   ARGV: since, at, limit, oldest kept, max items, window seconds, packed members
_TAKE_UNSEEN_SCRIPT = (
    _FIND_UNSEEN.substitute(seen="KEYS[1]")
    + "if #taken > 0 then\n"
    + textwrap.indent(_MARK_TAKEN.substitute(seen="KEYS[1]"), "  ")
    + "end\nreturn taken\n"
)


# take_page in one round trip: the remembered page under KEYS[1] if there is one, else
# what _TAKE_UNSEEN_SCRIPT does over one window of the snapshot's ids, and, when that
# settles the page (it is full, or the window reaches the snapshot's end) and took
# something, the page's record written as RedisFeedCache.put writes a snapshot. The
# record is assembled from the frame the client packed (see _codec.record_frame): the
# taken rows' ids (the members reversed: big-endian to little-endian), scores and
# contributions, and config_tag, where the next page starts. Returns {1, record} or
# {0, positions taken in the window, 1 if the page is settled}. On a single server,
# the record's lookup is counted as RedisFeedCache.get counts it, in the statistics
# bucket KEYS[4] (a cluster keeps that bucket in another slot; the client counts there).
#   KEYS: the record, the user's seen set, the user's feed variant index, [the user's
#         statistics bucket of the feed cache]
#   ARGV: 1-7 as _TAKE_UNSEEN_SCRIPT (since, at, limit, oldest kept, max items, window
#         seconds, packed members of the window); 8 record TTL (ms), 9 index TTL (s),
#         10 record variant, 11 the window's first row, 12 rows in the snapshot,
#         13 end tag ('' if none), 14 snapshot id, 15-17 the frame before the count,
#         the tag and the rows, 18 the window's scores, 19 its contributions,
#         20 bytes per float
_TAKE_PAGE_SCRIPT = (
    """\
local record = redis.call('GET', KEYS[1])
if KEYS[4] then redis.call('HINCRBY', KEYS[4], record and 'hits' or 'misses', 1) end
if record then return {1, record} end
"""
    + _FIND_UNSEEN.substitute(seen="KEYS[2]")
    + """\
local count = #taken
local first = tonumber(ARGV[11])
local total = tonumber(ARGV[12])
local position
if count == limit then
  position = first + taken[count] + 1
elseif first + #members >= total then
  position = total
end
if count == 0 then
  return {0, taken, position and 1 or 0}
end
"""
    + _MARK_TAKEN.substitute(seen="KEYS[2]")
    + """\
if not position then
  return {0, taken, 0}
end
local tag = ARGV[14]
if position >= total and ARGV[13] ~= '' then
  tag = ARGV[13]
else
  tag = string.format('%d.%s', position, tag)
end
local size = tonumber(ARGV[20])
local row_size = #ARGV[19] / #members
local parts = {ARGV[15], struct.pack('<I4', count), ARGV[16]}
parts[4] = struct.pack('<H', #tag)
parts[5] = tag
parts[6] = ARGV[17]
for i = 1, count do parts[#parts + 1] = string.reverse(members[taken[i] + 1]) end
for i = 1, count do
  parts[#parts + 1] = string.sub(ARGV[18], taken[i] * size + 1, (taken[i] + 1) * size)
end
for i = 1, count do
  parts[#parts + 1] = string.sub(ARGV[19], taken[i] * row_size + 1, (taken[i] + 1) * row_size)
end
redis.call('SET', KEYS[1], table.concat(parts), 'PX', ARGV[8])
redis.call('SADD', KEYS[3], ARGV[10])
redis.call('EXPIRE', KEYS[3], ARGV[9], 'NX')
redis.call('EXPIRE', KEYS[3], ARGV[9], 'GT')
return {0, taken, 1}
"""
)


def _decode_record(redis_key: str, value: bytes) -> FeedSnapshot:
    try:
        return decode_snapshot(value)
    except SnapshotFormatError as exc:
        raise StoreError(STORE_NAME, f"unreadable page record at {redis_key!r}: {exc}") from exc


def _pack_members(video_ids: Sequence[int]) -> bytes:
    """The ids' sorted-set members (see :func:`~reelrank_redis._keys.id_member`), joined."""
    return struct.pack(f">{len(video_ids)}q", *video_ids)


class RedisSeenStore(RedisStore):
    """Seen videos per user in one sorted set: member = video id, score = time seen.

    Scores are integer microseconds since the epoch; members are the ids as 8
    big-endian bytes, so equal times order by id. Every write, in one transaction:

    * adds the videos with ``ZADD GT`` (a video seen again keeps the later time);
    * drops entries older than ``seen_window_seconds`` before the write's time
      (``ZREMRANGEBYSCORE``) and all but the newest ``seen_max_items``
      (``ZREMRANGEBYRANK``);
    * sets the key to expire ``seen_window_seconds`` after this last write, so
      inactive users cost nothing.

    :meth:`seen_among` checks a whole candidate batch with one ``ZMSCORE``,
    :meth:`take_unseen` filters a feed page and marks it seen in one Lua script (so
    the feed service spends one round trip per page), and :meth:`recently_seen_many`
    reads many users' marks in one pipeline. With a
    :class:`~reelrank_redis.RedisFeedCache` on the same client and prefix, it is also a
    :class:`~reelrank.PageTakingSeenStore`: :meth:`take_page` recalls or remembers a
    cursor's page in the feed cache in the same script. Failures raise
    :class:`~reelrank.StoreError` (``store="seen"``).
    """

    def __init__(self, client: RedisClient, config: RedisConfig | None = None) -> None:
        super().__init__(client, config)
        self._take_unseen_script = client.register_script(_TAKE_UNSEEN_SCRIPT)
        self._take_page_script = client.register_script(_TAKE_PAGE_SCRIPT)

    def mark_seen(self, user_id: int, video_ids: Sequence[int], at: datetime) -> None:
        """Record that the user saw these videos at ``at`` (later times win)."""
        check_id("user_id", user_id)
        ids = check_ids("video_ids", video_ids)
        moment = to_microseconds(check_aware("at", at))
        if not ids:
            return
        config = self._config
        key = self._keys.seen(user_id)
        oldest_kept = moment - config.seen_window_seconds * _MICROSECONDS
        with store_errors(STORE_NAME, "mark_seen"):
            pipe = self._client.pipeline(transaction=True)
            pipe.zadd(key, {id_member(video_id): moment for video_id in ids}, gt=True)
            pipe.zremrangebyscore(key, "-inf", f"({oldest_kept}")
            pipe.zremrangebyrank(key, 0, -config.seen_max_items - 1)
            pipe.expire(key, config.seen_window_seconds)
            pipe.execute()

    def take_unseen(
        self,
        user_id: int,
        video_ids: Sequence[int],
        *,
        limit: int,
        since: datetime,
        at: datetime,
    ) -> list[int]:
        """Take the first ``limit`` ids (in order) not seen at or after ``since``, mark
        them seen at ``at`` and return them: one atomic Lua script (``ZMSCORE``, then the
        writes of :meth:`mark_seen`) per 1,000 ids."""
        check_id("user_id", user_id)
        ids = list(dict.fromkeys(check_ids("video_ids", video_ids)))
        threshold = to_microseconds(check_aware("since", since))
        moment = to_microseconds(check_aware("at", at))
        check_limit("limit", limit)
        config = self._config
        key = self._keys.seen(user_id)
        oldest_kept = moment - config.seen_window_seconds * _MICROSECONDS
        taken: list[int] = []
        for start in range(0, len(ids), _MAX_IDS_PER_SCRIPT):
            if len(taken) == limit:
                break
            chunk = ids[start : start + _MAX_IDS_PER_SCRIPT]
            with store_errors(STORE_NAME, "take_unseen"):
                positions = self._take_unseen_script(
                    keys=[key],
                    args=[
                        threshold,
                        moment,
                        limit - len(taken),
                        oldest_kept,
                        config.seen_max_items,
                        config.seen_window_seconds,
                        _pack_members(chunk),
                    ],
                )
            taken.extend(chunk[position] for position in cast("list[int]", positions))
        return taken

    def takes_pages_with(self, cache: FeedCache) -> bool:
        """True for a :class:`~reelrank_redis.RedisFeedCache` on this store's client and
        key prefix: its keys and the seen sets are one server's (or, on a cluster, one
        slot's per user)."""
        return isinstance(cache, RedisFeedCache) and self.shares_keys_with(cache)

    def take_page(self, cache: FeedCache, request: PageRequest) -> PageOutcome:
        """Recall the page remembered under ``request.record_key``, or take the page's
        rows and remember it (see :meth:`~reelrank.PageTakingSeenStore.take_page`).

        One Lua script on the user's hash tag: the record's ``GET``, then, if there is
        none, :meth:`take_unseen`'s script over a window of ``max(2 * limit, 32)`` ids
        and the record's write as :meth:`RedisFeedCache.put` makes it. Only when the
        window holds too few unseen ids does the page take more calls (the rest through
        :meth:`take_unseen`, then a ``put`` of the record): atomic per call, not together.
        The record's lookup is counted in the cache's :meth:`~RedisFeedCache.stats` as
        its :meth:`~RedisFeedCache.get` counts one: in the script on a single server,
        with one more command after it on a cluster (whose statistics live in other
        slots).
        Anything but a cache :meth:`takes_pages_with` accepts raises
        :class:`~reelrank.InvalidInputError` naming ``cache``.
        """
        if not self.takes_pages_with(cache):
            raise InvalidInputError("cache", "must be a RedisFeedCache on this store's client")
        feed_cache = cast("RedisFeedCache", cache)
        user_id, variant = check_feed_key("record_key", request.record_key)
        if variant is None:
            raise InvalidInputError("record_key", "a page record needs its own variant")
        limit = check_limit("limit", request.limit)
        if limit < 1:
            raise InvalidInputError("limit", f"must be at least 1, got {limit}")
        threshold = to_microseconds(check_aware("since", request.since))
        moment = to_microseconds(check_aware("at", request.at))
        ttl = check_ttl("ttl_seconds", request.ttl_seconds)
        snapshot = request.snapshot
        ids = snapshot.video_ids
        start = max(0, request.start)
        window = slice(
            start, min(len(ids), start + max(2 * limit, 32), start + _MAX_IDS_PER_SCRIPT)
        )
        if window.start >= window.stop:
            recalled = self._recall(feed_cache, user_id, variant)
            return PageOutcome(recalled=recalled, position=len(ids))
        frame = record_frame(
            snapshot, window, user_id=user_id, variant=variant, created_at=request.at
        )
        config = self._config
        record_key = self._keys.feed(user_id, variant)
        keys = [record_key, self._keys.seen(user_id), self._keys.feed_variants(user_id)]
        counted_in_script = not isinstance(self._client, RedisCluster)
        if counted_in_script:
            keys.append(feed_cache._stats_key(user_id))
        with store_errors(STORE_NAME, "take_page"):
            reply = self._take_page_script(
                keys=keys,
                args=[
                    threshold,
                    moment,
                    limit,
                    moment - config.seen_window_seconds * _MICROSECONDS,
                    config.seen_max_items,
                    config.seen_window_seconds,
                    _pack_members(ids[window]),
                    ttl_milliseconds(ttl),
                    math.ceil(ttl),
                    variant,
                    window.start,
                    len(ids),
                    request.end_tag or "",
                    request.pin,
                    frame.before_count,
                    frame.before_tag,
                    frame.before_rows,
                    frame.scores,
                    frame.contributions,
                    frame.float_size,
                ],
            )
        found = int(reply[0]) == 1
        recalled = self._read_record(
            feed_cache, user_id, record_key, reply[1] if found else None, counted_in_script
        )
        if recalled is not None:
            return PageOutcome(recalled=recalled)
        rows = [window.start + int(position) for position in reply[1]]
        if int(reply[2]) == 1:
            position = rows[-1] + 1 if len(rows) == limit else len(ids)
            return PageOutcome(recalled=None, rows=tuple(rows), position=position)
        # Too many seen ids in the window: the rest of the page, then its record.
        rest = ids[window.stop :]
        row_of = {video_id: window.stop + index for index, video_id in enumerate(rest)}
        taken = self.take_unseen(
            user_id, rest, limit=limit - len(rows), since=request.since, at=request.at
        )
        rows.extend(row_of[video_id] for video_id in taken)
        position = rows[-1] + 1 if len(rows) == limit else len(ids)
        if rows:
            cache.put(page_record(request, rows, position), ttl_seconds=ttl)
        return PageOutcome(recalled=None, rows=tuple(rows), position=position)

    def _recall(self, cache: RedisFeedCache, user_id: int, variant: str) -> FeedSnapshot | None:
        """The record alone, for a page that starts past the snapshot's end."""
        record_key = self._keys.feed(user_id, variant)
        with store_errors(STORE_NAME, "take_page"):
            value = cast("bytes | None", self._client.get(record_key))
        return self._read_record(cache, user_id, record_key, value, counted=False)

    def _read_record(
        self,
        cache: RedisFeedCache,
        user_id: int,
        record_key: str,
        value: bytes | None,
        counted: bool,
    ) -> FeedSnapshot | None:
        """The record looked up as ``value``, its lookup counted in ``cache``'s statistics
        as :meth:`RedisFeedCache.get` counts one (``counted``: a hit or a miss is counted
        already; an unreadable record then takes its hit back)."""
        if value is None:
            if not counted:
                self._count_lookup(cache, user_id, hits=0, misses=1)
            return None
        try:
            record = _decode_record(record_key, value)
        except StoreError:
            if counted:
                self._count_lookup(cache, user_id, hits=-1, misses=0)
            raise
        if not counted:
            self._count_lookup(cache, user_id, hits=1, misses=0)
        return record

    @staticmethod
    def _count_lookup(cache: RedisFeedCache, user_id: int, *, hits: int, misses: int) -> None:
        """Add a record lookup to the cache's statistics. Only the statistics are at stake
        (the page's marks and record are written already), so a count that fails is
        lost rather than failing the page, whose separate calls would skip what it
        marked."""
        with contextlib.suppress(StoreError):
            cache._count("take_page", user_id, hits=hits, misses=misses)

    def seen_among(self, user_id: int, video_ids: Sequence[int], *, since: datetime) -> set[int]:
        """The subset of ``video_ids`` the user saw at or after ``since`` (one ``ZMSCORE``)."""
        check_id("user_id", user_id)
        ids = list(dict.fromkeys(check_ids("video_ids", video_ids)))
        threshold = to_microseconds(check_aware("since", since))
        if not ids:
            return set()
        # redis-py annotates members as str; bytes members are sent unchanged.
        members: list[Any] = [id_member(video_id) for video_id in ids]
        with store_errors(STORE_NAME, "seen_among"):
            scores = self._client.zmscore(self._keys.seen(user_id), members)
        return {
            video_id
            for video_id, score in zip(ids, scores, strict=True)
            if score is not None and score >= threshold
        }

    def recently_seen(self, user_id: int, *, since: datetime, limit: int) -> list[int]:
        """Ids seen at or after ``since``, most recent first (ties: higher id first)."""
        check_id("user_id", user_id)
        threshold = to_microseconds(check_aware("since", since))
        check_limit("limit", limit)
        if limit == 0:
            return []
        with store_errors(STORE_NAME, "recently_seen"):
            members = self._client.zrange(
                self._keys.seen(user_id),
                "+inf",
                threshold,
                desc=True,
                byscore=True,
                offset=0,
                num=limit,
            )
        return [member_id(member) for member in cast("list[bytes]", members)]

    def recently_seen_many(
        self, user_ids: Sequence[int], *, since: datetime, limit: int
    ) -> dict[int, list[int]]:
        """:meth:`recently_seen` of each user: the same ``ZRANGE`` per user, sent in one
        pipeline per :attr:`users_per_pipeline` users (on a cluster, one batch per
        master)."""
        users = check_user_ids("user_ids", user_ids)
        threshold = to_microseconds(check_aware("since", since))
        check_limit("limit", limit)
        found: dict[int, list[int]] = {user_id: [] for user_id in users}
        if limit == 0:
            return found
        for chunk in chunked(users, self.users_per_pipeline):
            with store_errors(STORE_NAME, "recently_seen_many"):
                pipe = self._client.pipeline(transaction=False)
                for user_id in chunk:
                    pipe.zrange(
                        self._keys.seen(user_id),
                        "+inf",
                        threshold,
                        desc=True,
                        byscore=True,
                        offset=0,
                        num=limit,
                    )
                replies = cast("list[list[bytes]]", pipe.execute())
            for user_id, members in zip(chunk, replies, strict=True):
                found[user_id] = [member_id(member) for member in members]
        return found
