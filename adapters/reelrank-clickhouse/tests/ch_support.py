"""What the exactly-once and replicated-mode tests share: a workload, the in-memory
reference of its statistics, and the comparison of every statistic."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from reelrank_clickhouse import ClickHouseEventStore
from reelrank_clickhouse._schema import (
    ARRIVAL_BUCKET_SHIFT,
    FINE_BUCKET_SHIFT,
    FINE_PER_COARSE_BITS,
)

from reelrank import EngagementEvent, EngagementKind, InMemoryEventStore
from reelrank.testing import make_event

Pair = tuple[EngagementEvent, int]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FINE_PER_COARSE = 1 << FINE_PER_COARSE_BITS


class FineBuckets:
    """Arrival numbers in fine arrival buckets the test chooses, in place of the
    clock's: ``fine`` is the bucket's place in the current coarse bucket."""

    def __init__(self) -> None:
        now_ns = (datetime.now(UTC) - EPOCH) // timedelta(microseconds=1) * 1_000
        self.coarse = now_ns >> ARRIVAL_BUCKET_SHIFT
        self.fine = 0
        self.late: int | None = None  # a fine bucket to give numbers from instead
        self._used: dict[int, int] = {}

    @property
    def bucket(self) -> int:
        return (self.coarse << FINE_PER_COARSE_BITS) + self.fine

    def take(self, count: int) -> int:
        bucket = self.bucket if self.late is None else self.late
        first = (bucket << FINE_BUCKET_SHIFT) + self._used.get(bucket, 0)
        self._used[bucket] = self._used.get(bucket, 0) + count
        return first

    def next_fine(self) -> None:
        self.fine += 1
        if self.fine == FINE_PER_COARSE:
            self.fine = 0
            self.coarse += 1

    def close_coarse(self) -> datetime:
        """Move to the next coarse bucket; returns its start, the ``until`` that rolls
        up every number given so far."""
        self.coarse += 1
        self.fine = 0
        start_ns = self.coarse << ARRIVAL_BUCKET_SHIFT
        return EPOCH + timedelta(microseconds=-(-start_ns // 1_000))  # rounded up


def workload(prefix: str, count: int = 60) -> list[Pair]:
    """Events of every kind over a few videos, users and creators; each (user, video)
    gets at most one like or unlike, so the result does not depend on arrival order."""
    made: list[Pair] = []
    for n in range(count):
        kind = (EngagementKind.WATCH, EngagementKind.SHARE, EngagementKind.COMMENT)[n % 3]
        user_id, video_id = 1 + n % 5, 1 + n % 4
        extra = {"completion": (n % 7) / 7} if kind is EngagementKind.WATCH else {}
        event = make_event(kind, user_id=user_id, video_id=video_id, **extra)
        made.append((event.model_copy(update={"event_id": f"{prefix}-{n}"}), 10 + video_id % 2))
    for user_id in range(1, 6):
        like = make_event("like", user_id=user_id, video_id=1 + user_id % 4)
        made.append((like.model_copy(update={"event_id": f"{prefix}-like-{user_id}"}), 10))
    return made


def as_columns(pairs: Sequence[Pair]) -> dict[str, Any]:
    """The keyword arguments of ``append_columns`` for ``pairs``: one numpy array per
    field, NaN or ``None`` where an event has no value."""
    events = [event for event, _ in pairs]

    def floats(values: list[float | None]) -> Any:
        return np.array([np.nan if value is None else value for value in values])

    return {
        "event_id": np.array([event.event_id for event in events], dtype=object),
        "kind": np.array([event.kind.value for event in events]),
        "user_id": np.array([event.user_id for event in events], dtype=np.int64),
        "video_id": np.array([event.video_id for event in events], dtype=np.int64),
        "creator_id": np.array([creator_id for _, creator_id in pairs], dtype=np.int64),
        "occurred_at": np.array(
            [event.occurred_at.replace(tzinfo=None) for event in events], dtype="datetime64[us]"
        ),
        "watched_seconds": floats([event.watched_seconds for event in events]),
        "completion": floats([event.completion for event in events]),
        "channel": np.array([event.channel for event in events], dtype=object),
        "variant": np.array([event.variant for event in events], dtype=object),
    }


def reference_of(deliveries: Sequence[Sequence[Pair]]) -> InMemoryEventStore:
    reference = InMemoryEventStore()
    for batch in deliveries:
        for event, creator_id in batch:
            reference.append(event, creator_id=creator_id)
    return reference


def assert_same_statistics(
    store: ClickHouseEventStore,
    reference: InMemoryEventStore,
    videos: Sequence[int],
    users: Sequence[int],
    creators: Sequence[int],
) -> None:
    """Every statistic of ``store`` equals the reference's: the counts, completion and
    likes of each video, each user's affinities, and the popular order."""
    got, want = store.get_stats(videos), reference.get_stats(videos)
    for video_id in videos:
        mine, theirs = got[video_id], want[video_id]
        assert (mine.views, mine.likes, mine.shares, mine.comments) == (
            theirs.views,
            theirs.likes,
            theirs.shares,
            theirs.comments,
        ), (video_id, mine, theirs)
        assert math.isclose(mine.completion_sum, theirs.completion_sum, abs_tol=1e-9)
    for user_id in users:
        mine_aff = store.get_affinities(user_id, creators)
        for creator_id, value in reference.get_affinities(user_id, creators).items():
            assert math.isclose(mine_aff[creator_id], value, abs_tol=1e-9), (user_id, creator_id)
    assert store.popular_video_ids(limit=len(videos) + 5) == reference.popular_video_ids(
        limit=len(videos) + 5
    )
