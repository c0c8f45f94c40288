"""A :class:`~reelrank.SeenStore` on Redis sorted sets scored by time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

import redis

from reelrank._models import check_aware, check_id, check_ids, check_limit

from ._config import RedisConfig
from ._errors import store_errors
from ._keys import KeyLayout, id_member, member_id
from ._time import to_microseconds

__all__ = ["RedisSeenStore"]

STORE_NAME = "seen"
_MICROSECONDS = 1_000_000


class RedisSeenStore:
    """Seen videos per user in one sorted set: member = video id, score = time seen.

    Scores are integer microseconds since the epoch; members are the ids as 8
    big-endian bytes, so equal times order by id. Every write, in one transaction:

    * adds the videos with ``ZADD GT`` (a video seen again keeps the later time);
    * drops entries older than ``seen_window_seconds`` before the write's time
      (``ZREMRANGEBYSCORE``) and all but the newest ``seen_max_items``
      (``ZREMRANGEBYRANK``);
    * sets the key to expire ``seen_window_seconds`` after this last write, so
      inactive users cost nothing.

    :meth:`seen_among` checks a whole candidate batch with one ``ZMSCORE``. Failures
    raise :class:`~reelrank.StoreError` (``store="seen"``).
    """

    def __init__(self, client: redis.Redis, config: RedisConfig | None = None) -> None:
        self._client = client
        self._config = config or RedisConfig()
        self._keys = KeyLayout(self._config.prefix)

    @property
    def config(self) -> RedisConfig:
        """The settings this store was built with."""
        return self._config

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
        check_limit(limit)
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
