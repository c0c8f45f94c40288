"""The statistics roll-up (schema version 2 and on): ``fold_stats``, reads through a roll-up
plus what arrived since, the fall-back when events arrive late, and the migration of
version-1 tables."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from ch_support import (
    Pair,
    assert_same_statistics,
    assert_store_refuses,
    install_older_view,
    intercept_reads,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reelrank_clickhouse import (
    SCHEMA_VERSION,
    ClickHouseConfig,
    ClickHouseEventStore,
    SchemaVersionError,
    _event_store,
    connect,
    create_schema,
    migrate_schema,
)
from reelrank_clickhouse._schema import ARRIVAL_BUCKET_SHIFT, FINE_PER_COARSE_BITS
from reelrank_clickhouse.testing import older_aggregates_view
from sqlalchemy import text
from sqlalchemy.engine import Engine

from reelrank import EngagementKind, InMemoryEventStore, InvalidInputError, VideoStats
from reelrank.testing import EventStoreContract, make_event

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_databases = itertools.count()


class _Buckets:
    """Arrival numbers in arrival buckets the test chooses, in place of the clock's."""

    def __init__(self) -> None:
        self.bucket = (datetime.now(UTC) - _EPOCH) // timedelta(seconds=1) * 10**9
        self.bucket >>= ARRIVAL_BUCKET_SHIFT
        self._used: dict[int, int] = {}
        self.late = False  # give the next numbers from the bucket before the current one

    def take(self, count: int) -> int:
        bucket = self.bucket - 1 if self.late else self.bucket
        first = (bucket << ARRIVAL_BUCKET_SHIFT) + self._used.get(bucket, 0)
        self._used[bucket] = self._used.get(bucket, 0) + count
        return first

    def close_bucket(self) -> datetime:
        """Move to the next bucket; returns its start, the ``until`` that folds every
        number given so far."""
        self.bucket += 1
        start_ns = self.bucket << ARRIVAL_BUCKET_SHIFT
        return _EPOCH + timedelta(microseconds=-(-start_ns // 1_000))  # rounded up


def _store(
    engine: Engine,
    config: ClickHouseConfig | None = None,
    *,
    held_roll_up_videos: int = 1_000,
    held_like_pairs: int = 5_000_000,
) -> ClickHouseEventStore:
    store = ClickHouseEventStore(
        engine,
        tables=config.tables if config else None,
        held_roll_up_videos=held_roll_up_videos,
        held_like_pairs=held_like_pairs,
    )
    store._sequence = _Buckets()  # type: ignore[assignment]
    return store


def _fold(store: ClickHouseEventStore) -> int:
    buckets: _Buckets = store._sequence  # type: ignore[assignment]
    return store.fold_stats(until=buckets.close_bucket())


def _reads_roll_up(store: ClickHouseEventStore, videos: Sequence[int]) -> bool:
    with store._clients.reader() as client:
        found = store._folded_stats(client, np.array(videos, dtype=np.int64))
    return found is not None


class _FoldingStore(ClickHouseEventStore):
    """Rolls up everything appended so far before every other read, so the contract
    suite reads through roll-ups, with and without events arrived since."""

    def __init__(self, engine: Engine, config: ClickHouseConfig, held_roll_up_videos: int) -> None:
        super().__init__(engine, tables=config.tables, held_roll_up_videos=held_roll_up_videos)
        self._sequence = _Buckets()  # type: ignore[assignment]
        self._reads = 0

    def get_stats(self, video_ids: Sequence[int]) -> dict[int, VideoStats]:
        self._reads += 1
        if self._reads % 2:
            _fold(self)
        return super().get_stats(video_ids)


class TestEventStoreReadThroughRollUps(EventStoreContract):
    """The roll-ups' rows held by the store (the default), and read from the server
    (``held_roll_up_videos=0``)."""

    @pytest.fixture(params=[1_000, 0], ids=["held", "on-the-server"])
    def event_store(
        self, deployment: tuple[Engine, ClickHouseConfig], request: pytest.FixtureRequest
    ) -> Iterator[ClickHouseEventStore]:
        engine, config = deployment
        store = _FoldingStore(engine, config, request.param)
        yield store
        store.close(timeout=30)  # its background reads, before the engine goes


def test_reads_use_the_roll_up_and_add_what_arrived_since(
    deployment: tuple[Engine, ClickHouseConfig],
) -> None:
    engine, config = deployment
    store = _store(engine, config)
    reference = InMemoryEventStore()
    videos = [1, 2, 3, 4]

    def deliver(batch: list[Pair]) -> None:
        store.append_many(batch)
        for event, creator_id in batch:
            reference.append(event, creator_id=creator_id)

    deliver([(make_event("watch", video_id=1, completion=0.5), 10)])
    deliver([(make_event("like", user_id=1, video_id=1), 10)])
    assert not _reads_roll_up(store, videos)  # none yet: the states are merged
    assert_same_statistics(store, reference, videos, [1, 2], [10])
    assert _fold(store) == 1
    assert _reads_roll_up(store, videos)
    assert_same_statistics(store, reference, videos, [1, 2], [10])
    # Arrived since: counts added, the like count of video 1 read again from its pairs.
    deliver([(make_event("unlike", user_id=1, video_id=1), 10)])
    deliver(
        [(make_event("share", video_id=2), 11), (make_event("like", user_id=2, video_id=3), 11)]
    )
    assert _reads_roll_up(store, videos)
    assert_same_statistics(store, reference, videos, [1, 2], [10, 11])
    assert store.get_stats([1])[1].likes == 0
    # A second roll-up folds those in; a third in the same bucket writes nothing.
    assert _fold(store) == 3
    assert store.fold_stats(until=_EPOCH + timedelta(days=1)) == 0
    assert _reads_roll_up(store, videos)
    assert_same_statistics(store, reference, videos, [1, 2], [10, 11])


def _like_state_reads(store: ClickHouseEventStore) -> list[list[int]]:
    """The videos of every query of ``store``'s reads that reads like states again from
    their pairs, recorded as the store's pooled clients send them."""
    sent: list[list[int]] = []

    def each(execute: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        if query == store._queries.likes_now:
            frame = kwargs["external_tables"][0]["data"]
            sent.append(sorted(int(video) for video in frame["id"]))
        elif query == store._queries.likes_now_of_few:
            sent.append(sorted(args[0]["videos"]))
        return execute(query, *args, **kwargs)

    intercept_reads(store, each)
    return sent


@pytest.mark.parametrize("few_videos", [1_000, 0], ids=["named", "sent-as-a-table"])
@pytest.mark.parametrize("held_roll_up_videos", [1_000, 0], ids=["held", "on-the-server"])
def test_like_counts_read_again_are_kept_until_their_videos_get_likes(
    clickhouse_engine: Engine,
    held_roll_up_videos: int,
    few_videos: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Up to ``_FEW_VIDEOS`` videos are named in the query's text, more sent as a table.
    monkeypatch.setattr(_event_store, "_FEW_VIDEOS", few_videos)
    # Without the liked pairs held: a held roll-up's reads take this path too.
    store = _store(clickhouse_engine, held_roll_up_videos=held_roll_up_videos, held_like_pairs=0)
    reference = InMemoryEventStore()
    videos = [1, 2, 3, 4]
    sent = _like_state_reads(store)

    def deliver(*events: tuple[str, int, int]) -> None:
        for kind, user_id, video_id in events:
            event = make_event(kind, user_id=user_id, video_id=video_id)
            store.append(event, creator_id=10)
            reference.append(event, creator_id=10)

    def read() -> None:
        assert_same_statistics(store, reference, videos, [1, 2, 3], [10])

    deliver(("like", 1, 1), ("like", 2, 1), ("like", 1, 2), ("like", 1, 3), ("watch", 1, 4))
    _fold(store)
    deliver(("unlike", 1, 1), ("like", 3, 2), ("like", 3, 2))  # the second like changes nothing
    read()
    assert sent[-1] == [1, 2]
    reads = len(sent)
    read()  # nothing arrived: the counts read again stand
    read()
    assert len(sent) == reads
    deliver(("like", 1, 1), ("share", 2, 3))
    read()  # video 1 got a like: it alone is read again
    assert sent[reads:] == [[1]]
    assert store.get_stats([1])[1].likes == 2
    deliver(("unlike", 1, 3))
    read()
    assert sent[-1] == [3]
    assert store.get_stats([3])[3].likes == 0
    # A new roll-up holds those counts; what arrives after it is read again.
    _fold(store)
    reads = len(sent)
    read()
    assert len(sent) == reads
    deliver(("unlike", 3, 2))
    read()
    assert sent[reads:] == [[2]]
    assert store.get_stats([2])[2].likes == 1


def test_an_event_arriving_late_sends_reads_back_to_the_states(
    deployment: tuple[Engine, ClickHouseConfig],
) -> None:
    engine, config = deployment
    store = _store(engine, config)
    reference = InMemoryEventStore()
    first = [(make_event("watch", video_id=1, completion=0.25), 10)]
    store.append_many(first)
    reference.append(first[0][0], creator_id=10)
    _fold(store)
    assert _reads_roll_up(store, [1])
    buckets: _Buckets = store._sequence  # type: ignore[assignment]
    buckets.late = True  # an arrival number before the roll-up's watermark
    late = make_event("watch", video_id=1, completion=0.75)
    store.append(late, creator_id=10)
    reference.append(late, creator_id=10)
    assert not _reads_roll_up(store, [1])
    assert store.get_stats([1])[1].views == 2
    assert_same_statistics(store, reference, [1], [1], [10])
    buckets.late = False
    _fold(store)  # the next roll-up includes it
    assert _reads_roll_up(store, [1])
    assert_same_statistics(store, reference, [1], [1], [10])


def test_only_a_complete_roll_up_is_read(clickhouse_engine: Engine) -> None:
    store = _store(clickhouse_engine)
    store.append(make_event("share", video_id=1), creator_id=10)
    _fold(store)
    buckets: _Buckets = store._sequence  # type: ignore[assignment]
    later = (buckets.bucket + 5) << ARRIVAL_BUCKET_SHIFT
    with clickhouse_engine.connect() as conn:
        # A later roll-up whose writer died before its marker: the complete one is read.
        statement = store._queries.fold.replace("%(fold)s", str(later))
        statement = statement.replace("%(fold_start)s", str(later << FINE_PER_COARSE_BITS))
        conn.execute(text(statement))
        assert _reads_roll_up(store, [1])
        # A roll-up with a row it did not count (a second writer of the same roll-up):
        # merged states instead.
        conn.execute(
            text(
                "INSERT INTO event_stats_rollup (fold, video_id, views, completion_sum, likes, "
                "shares, comments, arrivals, videos) SELECT fold, video_id, views, "
                "completion_sum, likes, shares, comments, arrivals, videos "
                "FROM event_stats_rollup WHERE video_id = 1 AND fold < :later"
            ),
            {"later": later},
        )
    # A store that loaded the roll-up's rows before keeps them, and they are exact; a
    # store that has not finds the extra row and merges the states.
    assert _reads_roll_up(store, [1])
    assert store.get_stats([1])[1].shares == 1
    fresh = _store(clickhouse_engine)
    assert not _reads_roll_up(fresh, [1])
    assert fresh.get_stats([1])[1].shares == 1
    on_the_server = _store(clickhouse_engine, held_roll_up_videos=0)
    assert not _reads_roll_up(on_the_server, [1])


_KINDS = st.sampled_from(["watch", "share", "comment", "like", "unlike"])


@st.composite
def _steps(draw: st.DrawFn) -> list[tuple[str, list[tuple[str, int, int, int]]]]:
    """Batches of (kind, user, video, event number) with repeated numbers (redeliveries),
    roll-ups between them, and late batches (watches, shares and comments only: a late
    like would be ordered by its arrival number, which the reference does not model)."""
    steps = []
    for _ in range(draw(st.integers(2, 7))):
        action = draw(st.sampled_from(["batch", "batch", "late", "fold"]))
        events = draw(
            st.lists(
                st.tuples(_KINDS, st.integers(1, 3), st.integers(1, 3), st.integers(0, 15)),
                min_size=1,
                max_size=6,
            )
        )
        steps.append((action, events))
    return steps


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=_steps())
def test_reads_equal_the_reference_through_roll_ups_late_events_and_redeliveries(
    clickhouse_server: object, steps: list[tuple[str, list[tuple[str, int, int, int]]]]
) -> None:
    database = f"test_rollup_{next(_databases)}"  # a database of its own per example
    clickhouse_server.execute(f"CREATE DATABASE {database}")  # type: ignore[attr-defined]
    config = ClickHouseConfig(
        port=clickhouse_server.tcp_port,  # type: ignore[attr-defined]
        database=database,
        send_receive_timeout_seconds=30.0,
    )
    engine = connect(config)
    try:
        create_schema(engine)
        store = _store(engine)
        # The same tables read with the roll-ups' rows on the server, not held.
        on_the_server = _store(engine, held_roll_up_videos=0)
        buckets: _Buckets = store._sequence  # type: ignore[assignment]
        reference = InMemoryEventStore()
        made: dict[int, Pair] = {}
        applied = False
        folded_since_late = False
        for action, events in steps:
            if action == "fold":
                _fold(store)
                # A roll-up of no events is not read: there is nothing to roll up.
                folded_since_late = applied
                continue
            batch = []
            for kind, user_id, video_id, number in events:
                if action == "late" and kind in ("like", "unlike"):
                    kind = "comment"
                if number not in made:
                    extra = {"completion": number / 16} if kind == "watch" else {}
                    event = make_event(kind, user_id=user_id, video_id=video_id, **extra)
                    made[number] = (
                        event.model_copy(update={"event_id": f"e{number}"}),
                        10 + video_id,
                    )
                batch.append(made[number])
            if action == "late":
                # A copy of an event of the kinds that count arriving late is fine too.
                batch = [pair for pair in batch if pair[0].kind not in _LIKE_KINDS]
                if not batch:
                    continue
                folded_since_late = False
            buckets.late = action == "late"
            store.append_many(batch)
            applied = True
            buckets.late = False
            for event, creator_id in batch:
                reference.append(event, creator_id=creator_id)
            assert_same_statistics(store, reference, [1, 2, 3], [1, 2, 3], [11, 12, 13])
            assert on_the_server.get_stats([1, 2, 3]) == store.get_stats([1, 2, 3])
        if folded_since_late:
            assert _reads_roll_up(store, [1, 2, 3])
            assert _reads_roll_up(on_the_server, [1, 2, 3])
    finally:
        engine.dispose()


_LIKE_KINDS = (EngagementKind.LIKE, EngagementKind.UNLIKE)


def test_version_1_tables_are_refused_then_migrated(
    clickhouse_engine: Engine, clickhouse_config: ClickHouseConfig
) -> None:
    with clickhouse_engine.connect() as conn:  # the previous release's tables
        conn.execute(text("DROP TABLE event_aggregates_mv"))
        conn.execute(text("DROP TABLE event_stats_rollup"))
        conn.execute(text(older_aggregates_view(1)))
    store = _store(clickhouse_engine)
    reference = InMemoryEventStore()
    before = [
        (make_event("watch", video_id=1, completion=0.5), 10),
        (make_event("share", video_id=1), 10),
        (make_event("comment", video_id=2), 10),
        (make_event("like", user_id=1, video_id=2), 10),
    ]
    store.append_many(before)
    with pytest.raises(SchemaVersionError) as info:
        create_schema(clickhouse_engine)
    assert info.value.found == 1 and SCHEMA_VERSION == 4
    assert migrate_schema(clickhouse_engine, clickhouse_config)
    assert not migrate_schema(clickhouse_engine, clickhouse_config)  # done already
    create_schema(clickhouse_engine)
    for event, creator_id in before:
        reference.append(event, creator_id=creator_id)
    after = [(make_event("watch", video_id=2, completion=1.0), 10)]
    store.append_many(after)
    reference.append(after[0][0], creator_id=10)
    assert_same_statistics(store, reference, [1, 2], [1], [10])
    _fold(store)
    assert _reads_roll_up(store, [1, 2])
    assert_same_statistics(store, reference, [1, 2], [1], [10])


def test_migration_of_a_sharded_cluster(
    cluster_engine: Engine, cluster_config: ClickHouseConfig
) -> None:
    install_older_view(cluster_engine, cluster_config, 1)
    store = _store(cluster_engine, cluster_config)
    batch = [
        (make_event("watch", user_id=user_id, video_id=1, completion=0.5), 10)
        for user_id in range(1, 9)
    ]
    store.append_many(batch)
    with pytest.raises(SchemaVersionError):
        create_schema(cluster_engine, cluster_config)
    assert migrate_schema(cluster_engine, cluster_config)
    create_schema(cluster_engine, cluster_config)
    _fold(store)
    assert _reads_roll_up(store, [1])
    stats = store.get_stats([1])[1]
    assert (stats.views, stats.completion_sum) == (8, 4.0)


def test_fold_stats_refuses_bad_arguments_naming_them(clickhouse_engine: Engine) -> None:
    store = ClickHouseEventStore(clickhouse_engine)
    with pytest.raises(InvalidInputError) as naive:
        store.fold_stats(until=datetime(2026, 1, 1))
    assert naive.value.field == "until"
    for bad in (0, -1.0, float("nan"), True, "5"):
        with pytest.raises(InvalidInputError) as info:
            store.fold_stats(timeout_seconds=bad)  # type: ignore[arg-type]
        assert info.value.field == "timeout_seconds"
    with clickhouse_engine.connect() as conn:
        assert conn.execute(text("SELECT count() FROM event_stats_rollup")).scalar() == 0


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10"])
def test_a_bad_held_roll_up_size_is_refused_naming_it(bad: object) -> None:
    assert_store_refuses("held_roll_up_videos", held_roll_up_videos=bad)


def _roll_up_rows(engine: Engine, fold: int) -> list[tuple[int, int, float, int, int, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT video_id, views, completion_sum, likes, shares, comments "
                "FROM event_stats_rollup WHERE fold = :fold AND video_id != 0 ORDER BY video_id"
            ),
            {"fold": fold},
        ).fetchall()
    return [
        (int(v), int(w), round(float(c), 9), int(lk), int(s), int(cm))
        for v, w, c, lk, s, cm in rows
    ]


def _newest_fold(store: ClickHouseEventStore) -> tuple[int, int]:
    with store._clients.reader() as client:
        fold, arrivals, _ = client.execute(store._queries.folds)[0]
    return int(fold), int(arrivals)


@pytest.mark.parametrize("late", [False, True], ids=["in-order", "late-before-the-previous"])
def test_an_incremental_roll_up_equals_rolling_up_everything(
    deployment: tuple[Engine, ClickHouseConfig], late: bool
) -> None:
    engine, config = deployment
    store = _store(engine, config)
    reference = InMemoryEventStore()
    buckets: _Buckets = store._sequence  # type: ignore[assignment]

    def deliver(batch: list[Pair]) -> None:
        store.append_many(batch)
        for event, creator_id in batch:
            reference.append(event, creator_id=creator_id)

    deliver(
        [
            (make_event("watch", video_id=1, completion=0.5), 10),
            (make_event("like", user_id=1, video_id=1), 10),
            (make_event("like", user_id=2, video_id=2), 10),
            (make_event("share", video_id=3), 11),
        ]
    )
    _fold(store)
    # Since: a watch, an unlike of video 1, a like of video 4 (new), a comment, and a
    # like of video 2 by a user who already likes it (changes nothing).
    deliver(
        [
            (make_event("watch", user_id=3, video_id=1, completion=0.25), 10),
            (make_event("unlike", user_id=1, video_id=1), 10),
            (make_event("like", user_id=3, video_id=4), 12),
            (make_event("comment", user_id=3, video_id=3), 11),
            (make_event("like", user_id=2, video_id=2), 10),
        ]
    )
    if late:  # a share arriving before the first roll-up's watermark: roll up everything
        buckets.late = True
        deliver([(make_event("share", user_id=4, video_id=2), 10)])
        buckets.late = False
    full_statement = store._queries.fold
    if not late:  # the roll-up must be the incremental one: rolling everything up fails
        store._queries.fold = "SELECT throwIf(1, 'rolled everything up')"
    incremental = _fold(store)
    store._queries.fold = full_statement
    fold, arrivals = _newest_fold(store)
    rolled = _roll_up_rows(engine, fold)
    assert_same_statistics(store, reference, [1, 2, 3, 4], [1, 2, 3], [10, 11, 12])
    # Rolling everything up again, with nothing arrived since, gives the same rows.
    assert store.fold_stats(until=buckets.close_bucket(), incremental=False) == incremental
    full_fold, full_arrivals = _newest_fold(store)
    assert full_fold > fold and full_arrivals == arrivals
    assert _roll_up_rows(engine, full_fold) == rolled
    likes = {row[0]: row[3] for row in rolled}
    assert likes[1] == 0 and likes[2] == 1 and likes[4] == 1
    assert_same_statistics(store, reference, [1, 2, 3, 4], [1, 2, 3], [10, 11, 12])
