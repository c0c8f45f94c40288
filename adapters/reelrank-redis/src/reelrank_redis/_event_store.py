"""An :class:`~reelrank.EventStore` on Redis: idempotent appends and real-time counters."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence
from typing import Any, cast

from reelrank import (
    EngagementEvent,
    EngagementKind,
    InvalidInputError,
    VideoStats,
    affinity,
    affinity_credit,
)
from reelrank.stores.adapter import check_id, check_ids, check_limit

from ._base import RedisStore
from ._config import RedisClient, RedisConfig
from ._errors import store_errors
from ._keys import BUCKETS, id_member, member_id

__all__ = ["RedisEventStore"]

STORE_NAME = "events"

_COUNTER_FIELDS = ("views", "completion_sum", "likes", "shares", "comments")
_TOTAL_FIELD = "total"

# An event is applied in two halves, each an atomic script on one slot, because its
# video's keys and its user's keys live in different slots of a cluster.
#
# The video half, on the slot of the video's bucket: unless the event id is already
# recorded there, update the video's counters, likers and popularity, and record the
# event id together with whether the event earns affinity credit (a like of a video the
# user already liked does not). Returns that flag, as recorded, either way, so a retry
# after a crash between the halves credits the user exactly as the first attempt would
# have.
#   KEYS: event counted, video counters, likers, popularity bucket
#   ARGV: id ttl, kind, user id, completion, counters ttl ('' = none), video member
_VIDEO_HALF_SCRIPT = """
local recorded = redis.call('GET', KEYS[1])
if recorded then return tonumber(recorded) end
local kind = ARGV[2]
local credited = 1
if kind == 'watch' then
  redis.call('HINCRBY', KEYS[2], 'views', 1)
  redis.call('HINCRBYFLOAT', KEYS[2], 'completion_sum', ARGV[4])
  redis.call('ZINCRBY', KEYS[4], -1, ARGV[6])
elseif kind == 'share' then
  redis.call('HINCRBY', KEYS[2], 'shares', 1)
elseif kind == 'comment' then
  redis.call('HINCRBY', KEYS[2], 'comments', 1)
elseif kind == 'like' then
  if redis.call('SADD', KEYS[3], ARGV[3]) == 1 then
    redis.call('HINCRBY', KEYS[2], 'likes', 1)
  else
    credited = 0
  end
else
  if redis.call('SREM', KEYS[3], ARGV[3]) == 1 then
    redis.call('HINCRBY', KEYS[2], 'likes', -1)
  else
    credited = 0
  end
end
redis.call('SET', KEYS[1], credited, 'EX', ARGV[1])
if ARGV[5] ~= '' then
  for i = 2, 3 do
    if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('EXPIRE', KEYS[i], ARGV[5]) end
  end
end
return credited
"""

# The user half, on the slot of the user's hash tag: unless the event id is already
# recorded there, add the credit to the user's affinity. Returns 1 when this call
# recorded the event, 0 for a duplicate.
#   KEYS: event credited, user's affinity credit
#   ARGV: id ttl, creator id, credit, credited ('1' or '0'), counters ttl ('' = none)
_USER_HALF_SCRIPT = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
if ARGV[4] == '1' then
  redis.call('HINCRBYFLOAT', KEYS[2], ARGV[2], ARGV[3])
  redis.call('HINCRBYFLOAT', KEYS[2], 'total', ARGV[3])
end
if ARGV[5] ~= '' and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('EXPIRE', KEYS[2], ARGV[5])
end
return 1
"""


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


def _float(value: Any) -> float:
    return float(value) if value is not None else 0.0


class RedisEventStore(RedisStore):
    """Engagement aggregates kept as Redis counters, updated as events arrive.

    :meth:`append` runs two Lua scripts, each atomic on one slot of a cluster: the
    video half records the event id next to the video's counters and updates them, the
    likers set and the video's popularity bucket; the user half records the event id
    next to the user's affinity and adds the credit. Each half applies an event id once
    while it is remembered (``idempotency_ttl_seconds``, longer than any client
    retries), so a call that dies between the halves is completed by its retry, and
    nothing is counted twice.

    Used next to an analytics store, the counters feed fresh engagement into ranking
    before the analytics store has caught up; set ``counters_ttl_seconds`` so they then
    fade away. Failures raise :class:`~reelrank.StoreError` (``store="events"``).
    """

    def __init__(self, client: RedisClient, config: RedisConfig | None = None) -> None:
        super().__init__(client, config)
        self._video_half = client.register_script(_VIDEO_HALF_SCRIPT)
        self._user_half = client.register_script(_USER_HALF_SCRIPT)

    def append(self, event: EngagementEvent, *, creator_id: int) -> bool:
        """Apply an event once per ``event_id``; ``False`` for a duplicate.

        ``True`` goes to the one call that completed the event (its user half), also
        when an earlier attempt had applied only the video half before failing.
        """
        if not isinstance(event, EngagementEvent):
            raise InvalidInputError(
                "event", f"must be an EngagementEvent, got {type(event).__name__}"
            )
        check_id("creator_id", creator_id)
        if event.kind is EngagementKind.WATCH and event.completion is None:
            raise InvalidInputError("completion", "a watch must carry completion when appended")
        credit = affinity_credit(event.kind, event.completion)
        config = self._config
        keys = self._keys
        counters_ttl = "" if config.counters_ttl_seconds is None else config.counters_ttl_seconds
        with store_errors(STORE_NAME, "append"):
            credited = self._video_half(
                keys=[
                    keys.event_counted(event.video_id, event.event_id),
                    keys.video_counters(event.video_id),
                    keys.likers(event.video_id),
                    keys.popular(keys.bucket_of(event.video_id)),
                ],
                args=[
                    config.idempotency_ttl_seconds,
                    event.kind.value,
                    event.user_id,
                    repr(event.completion or 0.0),
                    counters_ttl,
                    id_member(event.video_id),
                ],
            )
            applied = self._user_half(
                keys=[
                    keys.event_credited(event.user_id, event.event_id),
                    keys.affinity(event.user_id),
                ],
                args=[
                    config.idempotency_ttl_seconds,
                    creator_id,
                    repr(credit),
                    int(credited),
                    counters_ttl,
                ],
            )
        return bool(applied)

    def get_stats(self, video_ids: Sequence[int]) -> dict[int, VideoStats]:
        """Aggregates for every requested id (pipelined); zeros for videos never engaged."""
        ids = list(dict.fromkeys(check_ids("video_ids", video_ids)))
        if not ids:
            return {}
        with store_errors(STORE_NAME, "get_stats"):
            pipe = self._client.pipeline(transaction=False)
            for video_id in ids:
                pipe.hmget(self._keys.video_counters(video_id), list(_COUNTER_FIELDS))
            rows = pipe.execute()
        result: dict[int, VideoStats] = {}
        for video_id, (views, completion_sum, likes, shares, comments) in zip(
            ids, rows, strict=True
        ):
            view_count = _int(views)
            result[video_id] = VideoStats(
                video_id=video_id,
                views=view_count,
                # Float sums may drift a hair past the view count.
                completion_sum=min(_float(completion_sum), float(view_count)),
                likes=max(_int(likes), 0),
                shares=_int(shares),
                comments=_int(comments),
            )
        return result

    def get_affinities(self, user_id: int, creator_ids: Sequence[int]) -> dict[int, float]:
        """Affinity of the user with every requested creator; ``0.0`` when none."""
        check_id("user_id", user_id)
        ids = list(dict.fromkeys(check_ids("creator_ids", creator_ids)))
        if not ids:
            return {}
        fields: list[Any] = [*ids, _TOTAL_FIELD]
        with store_errors(STORE_NAME, "get_affinities"):
            values = self._client.hmget(self._keys.affinity(user_id), fields)
        total = _float(values[-1])
        return {
            creator_id: affinity(_float(value), total)
            for creator_id, value in zip(ids, values[:-1], strict=True)
        }

    def popular_video_ids(self, *, limit: int) -> list[int]:
        """Most viewed video ids, most views first, ties by lower id.

        Views are kept negated, so an ascending ``ZRANGE`` lists the most viewed first
        and breaks ties by the byte order of the members, which is the id order. Each
        bucket gives its first ``limit``; merging them in that same order gives the
        global first ``limit``.
        """
        check_limit("limit", limit)
        if limit == 0:
            return []
        with store_errors(STORE_NAME, "popular_video_ids"):
            pipe = self._client.pipeline(transaction=False)
            for bucket in range(BUCKETS):
                pipe.zrange(
                    self._keys.popular(bucket),
                    "-inf",
                    -1,
                    byscore=True,
                    offset=0,
                    num=limit,
                    withscores=True,
                )
            rows = cast("list[list[tuple[bytes, float]]]", pipe.execute())
        ranked = heapq.merge(*rows, key=lambda row: (row[1], row[0]))
        return [member_id(member) for member, _ in itertools.islice(ranked, limit)]
