"""An :class:`~reelrank.EventStore` on Redis: idempotent appends and real-time counters."""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.commands.core import Script

from reelrank import (
    EngagementEvent,
    VideoStats,
    VideoStatsColumns,
    affinity,
    affinity_credit,
)
from reelrank.stores.adapter import (
    check_appendable_event,
    check_id,
    check_ids,
    check_ids_by_user,
    check_limit,
    chunked,
)

from ._base import RedisStore
from ._config import RedisClient, RedisConfig
from ._errors import ReplicationError, store_errors
from ._keys import BUCKETS, id_member, member_id

__all__ = ["RedisEventStore"]

STORE_NAME = "events"

_COUNTER_FIELDS = ("views", "completion_sum", "likes", "shares", "comments")
# A half sent to a cluster node follows at most this many MOVED, ASK and TRYAGAIN
# answers (redis-py's own cluster client allows 16), pausing after each TRYAGAIN.
_MAX_REDIRECTS = 16
_TRYAGAIN_PAUSE_SECONDS = 0.05
_TOTAL_FIELD = "total"

# An event is applied in two halves, each an atomic script on one slot, because its
# video's keys and its user's keys live in different slots of a cluster.
#
# The video half, on the slot of the video's bucket: unless the event id is already
# recorded there, update the video's counters, likers and popularity, and record the
# event id together with whether the event earns affinity credit (a like of a video the
# user already liked does not). Returns that flag, as recorded, either way, so a retry
# after a crash between the halves credits the user exactly as the first attempt would
# have. With ARGV[7] = '1' (the caller will WAIT for replicas), a recorded event is
# written again unchanged: WAIT waits for the replication of the connection's last
# write, so the duplicate's own write makes it cover the first attempt's writes too.
#   KEYS: event counted, video counters, likers, popularity bucket
#   ARGV: id ttl, kind, user id, completion, counters ttl ('' = none), video member, wait
_VIDEO_HALF_SCRIPT = """
local recorded = redis.call('GET', KEYS[1])
if recorded then
  if ARGV[7] == '1' then redis.call('SET', KEYS[1], recorded, 'KEEPTTL') end
  return tonumber(recorded)
end
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
# recorded the event, 0 for a duplicate (written again unchanged when ARGV[6] = '1', as
# in the video half).
#   KEYS: event credited, user's affinity credit
#   ARGV: id ttl, creator id, credit, credited ('1' or '0'), counters ttl ('' = none), wait
_USER_HALF_SCRIPT = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  if ARGV[6] == '1' then redis.call('SET', KEYS[1], '1', 'KEEPTTL') end
  return 0
end
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

    With ``config.min_replicas_acked`` set, ``append`` returns only once that many
    replicas hold the event (``WAIT`` after the writes, on their connection) and raises
    :class:`~reelrank_redis.ReplicationError` otherwise, so an acknowledged event
    survives a failover.

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
        check_appendable_event(event, creator_id)
        credit = affinity_credit(event.kind, event.completion)
        config = self._config
        keys = self._keys
        counters_ttl = "" if config.counters_ttl_seconds is None else config.counters_ttl_seconds
        waits = config.min_replicas_acked > 0
        video_keys = [
            keys.event_counted(event.video_id, event.event_id),
            keys.video_counters(event.video_id),
            keys.likers(event.video_id),
            keys.popular(keys.bucket_of(event.video_id)),
        ]
        video_args: list[Any] = [
            config.idempotency_ttl_seconds,
            event.kind.value,
            event.user_id,
            repr(event.completion or 0.0),
            counters_ttl,
            id_member(event.video_id),
            int(waits),
        ]
        user_keys = [
            keys.event_credited(event.user_id, event.event_id),
            keys.affinity(event.user_id),
        ]
        client = self._client
        with store_errors(STORE_NAME, "append"):
            if waits and isinstance(client, RedisCluster):
                # The halves may live on different masters: each waits for its own.
                credited = self._on_cluster_then_wait(self._video_half, video_keys, video_args)
            else:
                # On one server, the user half's WAIT also covers the video half before it.
                credited = self._video_half(keys=video_keys, args=video_args)
            user_args: list[Any] = [
                config.idempotency_ttl_seconds,
                creator_id,
                repr(credit),
                int(credited),
                counters_ttl,
                int(waits),
            ]
            if not waits:
                applied = self._user_half(keys=user_keys, args=user_args)
            elif isinstance(client, RedisCluster):
                applied = self._on_cluster_then_wait(self._user_half, user_keys, user_args)
            else:
                applied = self._then_wait(client, self._user_half, user_keys, user_args)
        return bool(applied)

    # -- waiting for replicas -----------------------------------------------------------

    def _then_wait(
        self,
        node: redis.Redis,
        script: Script,
        keys: list[str],
        args: list[Any],
        *,
        asking: bool = False,
    ) -> Any:
        """Run ``script`` on ``node``, then ``WAIT`` for the replicas, in one pipeline.

        A pipeline sends both commands on one connection, which ``WAIT`` needs: it waits
        for the replication of *its connection's* last write. Returns the script's reply;
        raises :class:`ReplicationError` when too few replicas acknowledged.
        """
        required = self._config.min_replicas_acked
        timeout_ms = max(1, round(self._config.replication_timeout_seconds * 1000.0))
        for attempt in range(2):
            # redis-py leaves execute_command untyped.
            pipe: Any = node.pipeline(transaction=False)
            if asking:
                pipe.execute_command("ASKING")
            pipe.evalsha(script.sha, len(keys), *keys, *args)
            pipe.wait(required, timeout_ms)
            *_, reply, acknowledged = pipe.execute(raise_on_error=False)
            if isinstance(reply, redis.exceptions.NoScriptError) and attempt == 0:
                # A node that never saw the script (a restart, a promoted replica):
                # load it and run the half again, which its event id makes safe.
                node.script_load(script.script)
                continue
            if isinstance(reply, Exception):
                raise reply
            if isinstance(acknowledged, Exception):
                raise acknowledged
            if int(acknowledged) < required:
                raise ReplicationError(
                    STORE_NAME, "append", required=required, acknowledged=int(acknowledged)
                )
            return reply
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _on_cluster_then_wait(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        """:meth:`_then_wait` on the master of ``keys``' slot, following redirects.

        redis-py's cluster client sends a keyless ``WAIT`` to every master and sums the
        answers, on connections other than the one that wrote, so the script and its
        ``WAIT`` go to the slot's master as one pipeline of that node's own client, and
        the redirects the cluster client would follow are followed here: ``MOVED``
        refreshes the slot table, ``ASK`` sends the pipeline to the importing node after
        ``ASKING``, ``TRYAGAIN`` pauses, and a connection error refreshes the slot table
        and tries again at most ``connection_retries`` times.
        """
        # redis-py leaves the cluster client's node lookups untyped.
        client: Any = self._client
        node: ClusterNode = client.get_node_from_key(keys[0])
        asking = False
        connection_failures = 0
        for _ in range(_MAX_REDIRECTS):
            try:
                return self._then_wait(
                    client.get_redis_connection(node), script, keys, args, asking=asking
                )
            except redis.exceptions.MovedError:
                client.nodes_manager.initialize()
                node, asking = client.get_node_from_key(keys[0]), False
            except redis.exceptions.AskError as exc:
                target = client.get_node(host=exc.host, port=exc.port)
                if target is None:
                    client.nodes_manager.initialize()
                    target = client.get_node(host=exc.host, port=exc.port)
                if target is None:
                    raise
                node, asking = target, True
            except redis.exceptions.TryAgainError:
                time.sleep(_TRYAGAIN_PAUSE_SECONDS)
            except redis.exceptions.ConnectionError:
                connection_failures += 1
                if connection_failures > self._config.connection_retries:
                    raise
                client.nodes_manager.initialize()
                node, asking = client.get_node_from_key(keys[0]), False
        raise redis.exceptions.ClusterError(
            f"gave up after {_MAX_REDIRECTS} redirects of the slot of {keys[0]!r}"
        )

    def stats_columns(self, video_ids: Sequence[int]) -> VideoStatsColumns:
        """The statistics of :meth:`get_stats` as columns, one row per distinct id."""
        return VideoStatsColumns.from_stats(self.get_stats(video_ids), video_ids)

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

    def get_affinities_many(
        self, creator_ids_by_user: Mapping[int, Sequence[int]]
    ) -> dict[int, dict[int, float]]:
        """:meth:`get_affinities` of each user with their creators: the same ``HMGET``
        per user, sent in one pipeline per :attr:`users_per_pipeline` users (on a
        cluster, one batch per master)."""
        requested = check_ids_by_user("creator_ids_by_user", creator_ids_by_user)
        wanted = {uid: list(dict.fromkeys(ids)) for uid, ids in requested.items()}
        found: dict[int, dict[int, float]] = {uid: {} for uid in wanted}
        asking = [uid for uid, ids in wanted.items() if ids]
        for chunk in chunked(asking, self.users_per_pipeline):
            with store_errors(STORE_NAME, "get_affinities_many"):
                pipe = self._client.pipeline(transaction=False)
                for user_id in chunk:
                    fields: list[Any] = [*wanted[user_id], _TOTAL_FIELD]
                    pipe.hmget(self._keys.affinity(user_id), fields)
                replies = cast("list[list[bytes | None]]", pipe.execute())
            for user_id, values in zip(chunk, replies, strict=True):
                total = _float(values[-1])
                found[user_id] = {
                    creator_id: affinity(_float(value), total)
                    for creator_id, value in zip(wanted[user_id], values[:-1], strict=True)
                }
        return found

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
