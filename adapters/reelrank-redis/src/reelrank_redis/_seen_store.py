"""A :class:`~reelrank.SeenStore` on Redis sorted sets scored by time."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from reelrank.stores.adapter import (
    check_aware,
    check_id,
    check_ids,
    check_limit,
    check_user_ids,
    chunked,
)

from ._base import RedisStore
from ._config import RedisClient, RedisConfig
from ._errors import store_errors
from ._keys import id_member, member_id
from ._time import to_microseconds

__all__ = ["RedisSeenStore"]

STORE_NAME = "seen"
_MICROSECONDS = 1_000_000
# Lua's unpack() is limited by the C stack; longer id lists are taken in slices.
_MAX_IDS_PER_SCRIPT = 1_000

# take_unseen in one round trip: look the ids up, keep the first ARGV[3] whose time is
# missing or before ARGV[1], and write them like mark_seen does. Returns their
# 0-based positions in the id list. The members travel as one packed string (8 bytes
# each, as id_member writes them): encoding one argument instead of one per id saved
# about a tenth of the call.
#   KEYS: the user's seen set
#   ARGV: since, at, limit, oldest kept, max items, window seconds, packed members
_TAKE_UNSEEN_SCRIPT = """
local since = tonumber(ARGV[1])
local limit = tonumber(ARGV[3])
local packed = ARGV[7]
local members = {}
for i = 1, #packed / 8 do members[i] = string.sub(packed, 8 * i - 7, 8 * i) end
local scores = redis.call('ZMSCORE', KEYS[1], unpack(members))
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
if #taken > 0 then
  redis.call('ZADD', KEYS[1], unpack(added))
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[4])
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[5]) - 1)
  redis.call('EXPIRE', KEYS[1], ARGV[6])
end
return taken
"""


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
    reads many users' marks in one pipeline. Failures raise
    :class:`~reelrank.StoreError` (``store="seen"``).
    """

    def __init__(self, client: RedisClient, config: RedisConfig | None = None) -> None:
        super().__init__(client, config)
        self._take_unseen_script = client.register_script(_TAKE_UNSEEN_SCRIPT)

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
