"""What the ClickHouse tests share: a workload, the in-memory reference of its
statistics, the comparison of every statistic, the older schemas' views and their
migration, and a look at the queries a store reads with."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from reelrank_clickhouse import (
    ClickHouseConfig,
    ClickHouseEventStore,
    SchemaVersionError,
    connect,
    create_schema,
    migrate_schema,
)
from reelrank_clickhouse._client import DriverClients
from reelrank_clickhouse._schema import (
    ARRIVAL_BUCKET_SHIFT,
    FINE_BUCKET_SHIFT,
    FINE_PER_COARSE_BITS,
    _servers,
)
from reelrank_clickhouse.testing import older_aggregates_view
from sqlalchemy.engine import Engine

from reelrank import EngagementEvent, EngagementKind, InMemoryEventStore, InvalidInputError
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


def deliver(store: ClickHouseEventStore, reference: InMemoryEventStore, batch: list[Pair]) -> None:
    """Append ``batch`` to ``store`` and to its in-memory ``reference``."""
    store.append_many(batch)
    for event, creator_id in batch:
        reference.append(event, creator_id=creator_id)


def batch_of(*events: tuple[str, int, int]) -> list[Pair]:
    """Events of creator 10 from ``(kind, user_id, video_id)``; watches complete half."""
    made = []
    for kind, user_id, video_id in events:
        extra = {"completion": 0.5} if kind == "watch" else {}
        made.append((make_event(kind, user_id=user_id, video_id=video_id, **extra), 10))
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


def install_older_view(engine: Engine, config: ClickHouseConfig | None, version: int) -> None:
    """Put schema ``version``'s aggregate view in place of the current one, on every
    server (each shard's ``_local`` tables on a cluster)."""
    sharded = config is not None and config.cluster is not None
    suffix = config.local_suffix if config is not None and sharded else ""
    with _servers(engine, config if sharded else None) as servers:
        for _, server in servers:
            client = DriverClients(server).writer()
            try:
                client.execute(f"DROP TABLE event_aggregates{suffix}_mv")
                client.execute(
                    older_aggregates_view(
                        version, aggregates=f"event_aggregates{suffix}", events=f"events{suffix}"
                    )
                )
            finally:
                client.disconnect()


def assert_refused_then_migrated(engine: Engine, config: ClickHouseConfig, found: int) -> None:
    """``create_schema`` refuses the version-``found`` tables, ``migrate_schema``
    upgrades them once, and ``create_schema`` then takes them."""
    with pytest.raises(SchemaVersionError) as info:
        create_schema(engine, config)
    assert info.value.found == found
    assert migrate_schema(engine, config)
    assert not migrate_schema(engine, config)  # done already
    create_schema(engine, config)


def intercept_reads(store: ClickHouseEventStore, each: Callable[..., Any]) -> None:
    """Send every query ``store`` runs over its reading clients from now on through
    ``each(execute, query, *args, **kwargs)``, ``execute`` being the client's own."""
    reader = store._clients.reader

    @contextmanager
    def intercepted() -> Iterator[Any]:
        with reader() as client:
            execute = client.execute
            client.execute = functools.partial(each, execute)
            try:
                yield client
            finally:
                client.execute = execute

    store._clients.reader = intercepted  # type: ignore[method-assign]


def assert_store_refuses(field: str, **arguments: Any) -> None:
    """``ClickHouseEventStore(**arguments)`` raises :class:`InvalidInputError` naming
    ``field``, before connecting."""
    engine = connect(ClickHouseConfig())  # never connects: the arguments are checked first
    try:
        with pytest.raises(InvalidInputError) as info:
            ClickHouseEventStore(engine, **arguments)
        assert info.value.field == field
    finally:
        engine.dispose()
