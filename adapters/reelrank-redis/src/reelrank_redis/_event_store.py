"""An :class:`~reelrank.EventStore` on Redis: idempotent appends and real-time counters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import redis

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
from ._config import RedisConfig
from ._errors import store_errors
from ._keys import id_member, member_id

__all__ = ["RedisEventStore"]

STORE_NAME = "events"

_COUNTER_FIELDS = ("views", "completion_sum", "likes", "shares", "comments")
_TOTAL_FIELD = "total"

# One event, applied atomically: the SET NX on the event id decides whether anything
# else happens, so a redelivered event changes nothing, even when two processes
# receive it at the same moment.
#   KEYS: event id, video counters, likers, user's affinity credit, popularity
#   ARGV: id ttl, kind, user id, creator id, completion, credit, counters ttl ('' = none),
#         video member
_APPEND_SCRIPT = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local kind = ARGV[2]
local credited = true
if kind == 'watch' then
  redis.call('HINCRBY', KEYS[2], 'views', 1)
  redis.call('HINCRBYFLOAT', KEYS[2], 'completion_sum', ARGV[5])
  redis.call('ZINCRBY', KEYS[5], -1, ARGV[8])
elseif kind == 'share' then
  redis.call('HINCRBY', KEYS[2], 'shares', 1)
elseif kind == 'comment' then
  redis.call('HINCRBY', KEYS[2], 'comments', 1)
elseif kind == 'like' then
  if redis.call('SADD', KEYS[3], ARGV[3]) == 1 then
    redis.call('HINCRBY', KEYS[2], 'likes', 1)
  else
    credited = false
  end
else
  if redis.call('SREM', KEYS[3], ARGV[3]) == 1 then
    redis.call('HINCRBY', KEYS[2], 'likes', -1)
  else
    credited = false
  end
end
if credited then
  redis.call('HINCRBYFLOAT', KEYS[4], ARGV[4], ARGV[6])
  redis.call('HINCRBYFLOAT', KEYS[4], 'total', ARGV[6])
end
if ARGV[7] ~= '' then
  for i = 2, 4 do
    if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('EXPIRE', KEYS[i], ARGV[7]) end
  end
end
return 1
"""


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


def _float(value: Any) -> float:
    return float(value) if value is not None else 0.0


class RedisEventStore(RedisStore):
    """Engagement aggregates kept as Redis counters, updated as events arrive.

    :meth:`append` runs one Lua script: ``SET NX EX`` on the event id (kept for
    ``idempotency_ttl_seconds``, longer than any client retries), then ``HINCRBY`` on
    the video's counters, the likers set, the user's affinity credit and the
    popularity sorted set. An event id is applied once while it is remembered.

    Used next to an analytics store, the counters feed fresh engagement into ranking
    before the analytics store has caught up; set ``counters_ttl_seconds`` so they then
    fade away. Failures raise :class:`~reelrank.StoreError` (``store="events"``).
    """

    def __init__(self, client: redis.Redis, config: RedisConfig | None = None) -> None:
        super().__init__(client, config)
        self._append_script = client.register_script(_APPEND_SCRIPT)

    def append(self, event: EngagementEvent, *, creator_id: int) -> bool:
        """Apply an event once per ``event_id``; ``False`` for a duplicate."""
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
        counters_ttl = config.counters_ttl_seconds
        with store_errors(STORE_NAME, "append"):
            applied = self._append_script(
                keys=[
                    keys.event(event.event_id),
                    keys.video_counters(event.video_id),
                    keys.likers(event.video_id),
                    keys.affinity(event.user_id),
                    keys.popular(),
                ],
                args=[
                    config.idempotency_ttl_seconds,
                    event.kind.value,
                    event.user_id,
                    creator_id,
                    repr(event.completion or 0.0),
                    repr(credit),
                    "" if counters_ttl is None else counters_ttl,
                    id_member(event.video_id),
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
        and breaks ties by the byte order of the members, which is the id order.
        """
        check_limit("limit", limit)
        if limit == 0:
            return []
        with store_errors(STORE_NAME, "popular_video_ids"):
            members = self._client.zrange(
                self._keys.popular(), "-inf", -1, byscore=True, offset=0, num=limit
            )
        return [member_id(member) for member in cast("list[bytes]", members)]
