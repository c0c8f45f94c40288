"""Stores that hold what arrived since the roll-up (schema version 3's fine arrival
buckets): a repeated read reads only the newest buckets again, an event arriving in a
held bucket is counted, reads through a stream of batches equal the reference, and
version-2 tables migrate with their roll-ups."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from ch_support import (
    FineBuckets,
    Pair,
    assert_refused_then_migrated,
    assert_same_statistics,
    batch_of,
    deliver,
    install_older_view,
    intercept_reads,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reelrank_clickhouse import (
    ClickHouseConfig,
    ClickHouseEventStore,
    SchemaVersionError,
    _event_store,
    connect,
    create_schema,
    migrate_schema,
)
from sqlalchemy import text
from sqlalchemy.engine import Engine

from reelrank import EngagementKind, InMemoryEventStore, InvalidInputError
from reelrank.testing import make_event

_databases = itertools.count()


def _store(
    engine: Engine, config: ClickHouseConfig | None = None, **options: Any
) -> ClickHouseEventStore:
    """A store that holds every bucket it has seen (no settle time), with the test's
    arrival numbers; ``options`` are the store's other arguments."""
    store = ClickHouseEventStore(
        engine, tables=config.tables if config else None, arrival_settle_seconds=0, **options
    )
    store._sequence = FineBuckets()  # type: ignore[assignment]
    return store


def _buckets(store: ClickHouseEventStore) -> FineBuckets:
    return store._sequence  # type: ignore[return-value]


def _fold(store: ClickHouseEventStore) -> int:
    return store.fold_stats(until=_buckets(store).close_coarse())


def _settled(store: ClickHouseEventStore) -> None:
    """Wait for the store's threads reading arrivals into its since-sums and the pairs
    liked at the roll-up's watermark into its memory, if any."""
    for thread in (store._since_thread, store._liked_thread):
        if thread is not None:
            thread.join()


def _held_reads(store: ClickHouseEventStore) -> list[tuple[int, int]]:
    """For every held-roll-up read of ``store``: the first fine bucket it read arrival
    rows from, and how many arrival rows it got."""
    reads: list[tuple[int, int]] = []

    def each(execute: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        found = execute(query, *args, **kwargs)
        if query in (store._queries.held_stats, store._queries.held_stats_with_pairs):
            parts = np.asarray(found[1]) if found else np.zeros(0)
            arrived = int(np.count_nonzero(parts == _event_store._ARRIVED_SINCE))
            reads.append((int(args[0]["unheld"]), arrived))
        return found

    intercept_reads(store, each)
    return reads


def _read_queries(store: ClickHouseEventStore) -> list[str]:
    """Every query ``store`` runs over its reading clients from now on, in order."""
    queries: list[str] = []

    def each(execute: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        queries.append(query)
        return execute(query, *args, **kwargs)

    intercept_reads(store, each)
    return queries


def _reads_likes_again(store: ClickHouseEventStore, queries: Sequence[str]) -> bool:
    """Whether ``queries`` read like counts again from the pairs of whole videos."""
    return any(q in (store._queries.likes_now, store._queries.likes_now_of_few) for q in queries)


def test_a_repeated_read_reads_only_the_buckets_the_store_does_not_hold(
    clickhouse_engine: Engine,
) -> None:
    store = _store(clickhouse_engine)
    reference = InMemoryEventStore()
    reads = _held_reads(store)
    videos = [1, 2, 3, 4]

    def read() -> None:
        assert_same_statistics(store, reference, videos, [1, 2], [10])

    deliver(store, reference, batch_of(("watch", 1, 1), ("like", 1, 1), ("share", 2, 2)))
    _fold(store)
    first = _buckets(store).bucket  # the roll-up's watermark, as a fine bucket
    deliver(store, reference, batch_of(("watch", 2, 1), ("like", 2, 2), ("comment", 1, 3)))
    _buckets(store).next_fine()
    deliver(store, reference, batch_of(("unlike", 1, 1), ("watch", 1, 4)))
    read()  # the first read: everything since the watermark, from the server
    assert reads[0][0] == first and reads[0][1] > 0
    _settled(store)
    held = len(reads)
    read()
    read()
    # Both buckets held: no arrival row read, every count still exact.
    assert [unheld for unheld, _ in reads[held:]] == [first + 2] * 2
    assert [rows for _, rows in reads[held:]] == [0, 0]
    # A new bucket: its rows alone are read, for its one video.
    _buckets(store).next_fine()
    deliver(store, reference, batch_of(("share", 3, 2), ("like", 3, 2)))
    held = len(reads)
    read()
    assert reads[held] == (first + 2, 1)
    _settled(store)
    held = len(reads)
    read()
    assert reads[held] == (first + 3, 0)
    assert store.get_stats([2])[2].likes == 2


def test_close_waits_for_the_since_read_and_starts_no_other(clickhouse_engine: Engine) -> None:
    store = _store(clickhouse_engine)
    reference = InMemoryEventStore()
    videos = [1, 2]

    def slow_since_reads(execute: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        if query == store._queries.arrived_between:
            time.sleep(0.5)  # the background read is under way when close runs
        return execute(query, *args, **kwargs)

    intercept_reads(store, slow_since_reads)
    deliver(store, reference, batch_of(("watch", 1, 1), ("like", 1, 1)))
    _fold(store)
    deliver(store, reference, batch_of(("like", 2, 2)))
    assert_same_statistics(store, reference, videos, [1, 2], [10])
    thread = store._since_thread
    assert thread is not None and thread.is_alive()
    store.close(timeout=30)
    assert not thread.is_alive()
    store.close(timeout=0)  # closing again is harmless
    # Reads still work, and start no background read of their own.
    _buckets(store).next_fine()
    deliver(store, reference, batch_of(("share", 3, 2)))
    assert_same_statistics(store, reference, videos, [1, 2, 3], [10])
    assert store._since_thread is thread


@pytest.mark.parametrize("where", ["held-bucket", "before-the-watermark"])
def test_an_event_arriving_late_is_counted(
    deployment: tuple[Engine, ClickHouseConfig], where: str
) -> None:
    engine, config = deployment
    store = _store(engine, config)
    reference = InMemoryEventStore()
    buckets = _buckets(store)
    deliver(store, reference, batch_of(("watch", 1, 1), ("share", 1, 2)))
    _fold(store)
    first = buckets.bucket
    deliver(store, reference, batch_of(("watch", 2, 1), ("comment", 2, 2)))
    buckets.next_fine()
    deliver(store, reference, batch_of(("watch", 3, 1)))
    store.get_stats([1, 2])
    _settled(store)
    assert store._since is not None and store._since.unheld == first + 2
    # A batch with an arrival number of a bucket the store holds (or one before the
    # roll-up's watermark), as a writer with a slow clock or a replica's late part.
    buckets.late = first if where == "held-bucket" else first - 1
    deliver(store, reference, batch_of(("watch", 4, 1), ("share", 4, 2)))
    buckets.late = None
    assert_same_statistics(store, reference, [1, 2], [1, 2, 3, 4], [10])
    assert store.get_stats([1])[1].views == 4
    _settled(store)  # rebuilt from the server, with the late batch
    assert_same_statistics(store, reference, [1, 2], [1, 2, 3, 4], [10])


def test_a_new_roll_up_keeps_the_held_buckets_after_its_watermark(
    clickhouse_engine: Engine,
) -> None:
    store = _store(clickhouse_engine)
    reference = InMemoryEventStore()
    buckets = _buckets(store)
    deliver(store, reference, batch_of(("watch", 1, 1)))
    _fold(store)
    deliver(store, reference, batch_of(("watch", 2, 1), ("like", 2, 1)))
    until = buckets.close_coarse()  # the next roll-up's watermark
    deliver(store, reference, batch_of(("share", 3, 1), ("like", 3, 1)))
    store.get_stats([1])
    _settled(store)
    since = store._since
    assert since is not None and len(since.chunks) == 2
    assert store.fold_stats(until=until) == 1
    reads = _held_reads(store)
    assert_same_statistics(store, reference, [1], [1, 2, 3], [10])
    # The new roll-up's rows are loaded; the held chunk after its watermark serves it.
    assert reads[-1] == (since.unheld, 0)
    assert store.get_stats([1])[1].likes == 2


# Likes and unlikes weigh more: the same few pairs are liked and unliked across
# roll-ups and across held and fresh buckets.
_KINDS = st.sampled_from(["watch", "share", "comment", "like", "unlike", "like", "unlike"])
_LIKE_KINDS = (EngagementKind.LIKE, EngagementKind.UNLIKE)


@st.composite
def _steps(draw: st.DrawFn) -> list[tuple[str, list[tuple[str, int, int, int]], bool]]:
    """Batches of (kind, user, video, event number) with repeated numbers (redeliveries),
    moves to the next fine bucket, roll-ups, and late batches into a bucket the store
    may hold or before the roll-up (watches, shares and comments only: a late like
    would be ordered by its arrival number, which the reference does not model); each
    step says whether to wait for the store's since-sums afterwards."""
    steps = []
    for _ in range(draw(st.integers(3, 10))):
        action = draw(
            st.sampled_from(["batch", "batch", "next-bucket", "late-held", "late-before", "fold"])
        )
        events = draw(
            st.lists(
                st.tuples(_KINDS, st.integers(1, 3), st.integers(1, 3), st.integers(0, 15)),
                min_size=1,
                max_size=6,
            )
        )
        steps.append((action, events, draw(st.booleans())))
    return steps


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=_steps())
def test_one_long_lived_store_reads_what_the_reference_counts(
    clickhouse_server: object, steps: list[tuple[str, list[tuple[str, int, int, int]], bool]]
) -> None:
    database = f"test_held_{next(_databases)}"  # a database of its own per example
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
        buckets = _buckets(store)
        reference = InMemoryEventStore()
        made: dict[int, Pair] = {}
        first_of_roll_up: int | None = None
        # Whether reads count likes from the held liked pairs: from the first read
        # after a roll-up (which loads them; the test waits), until a late batch
        # before the watermark sends reads off the roll-up.
        from_pairs = False
        queries = _read_queries(store)
        for action, events, settle in steps:
            if action == "fold":
                if _fold(store):
                    first_of_roll_up = buckets.bucket
                    store.get_stats([1, 2, 3])
                    _settled(store)
                    assert store._held is not None and store._liked is not None
                    assert store._liked.fold == store._held.fold == buckets.coarse
                    from_pairs = True
                continue
            if action == "next-bucket":
                buckets.next_fine()
            batch = []
            for kind, user_id, video_id, number in events:
                if number not in made:
                    extra = {"completion": number / 16} if kind == "watch" else {}
                    event = make_event(kind, user_id=user_id, video_id=video_id, **extra)
                    made[number] = (
                        event.model_copy(update={"event_id": f"e{number}"}),
                        10 + video_id,
                    )
                batch.append(made[number])
            if action.startswith("late"):
                batch = [pair for pair in batch if pair[0].kind not in _LIKE_KINDS]
                if action == "late-held" and first_of_roll_up is not None:
                    buckets.late = max(first_of_roll_up, buckets.bucket - 1)
                else:
                    buckets.late = buckets.bucket - buckets.fine - 1  # the coarse one before
            deliver(store, reference, batch)
            buckets.late = None
            if action == "late-before" or (action == "late-held" and first_of_roll_up is None):
                from_pairs = False
            del queries[:]
            assert_same_statistics(store, reference, [1, 2, 3], [1, 2, 3], [11, 12, 13])
            if from_pairs:
                assert store._queries.held_stats_with_pairs in queries
                assert not _reads_likes_again(store, queries)
            fresh = ClickHouseEventStore(engine, hold_arrivals=False)
            assert fresh.get_stats([1, 2, 3]) == store.get_stats([1, 2, 3])
            if settle:
                _settled(store)
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("argument", "bad"),
    [
        ("hold_arrivals", 1),
        ("hold_arrivals", "yes"),
        ("arrival_settle_seconds", -1.0),
        ("arrival_settle_seconds", float("nan")),
        ("arrival_settle_seconds", True),
        ("arrival_settle_seconds", "2"),
    ],
)
def test_bad_held_arrival_arguments_are_refused_naming_them(argument: str, bad: object) -> None:
    engine = connect(ClickHouseConfig())  # never connects: the arguments are checked first
    try:
        with pytest.raises(InvalidInputError) as info:
            ClickHouseEventStore(engine, **{argument: bad})
        assert info.value.field == argument
    finally:
        engine.dispose()


# The version-2 roll-up statement, as the previous release wrote it.
_V2_FOLD = """INSERT INTO event_stats_rollup
    (fold, video_id, views, completion_sum, likes, shares, comments, arrivals, videos)
SELECT %(fold)s, video, sumIf(n, kind = 1), sumIf(s, kind = 1),
       sumIf(n, kind = 0), sumIf(n, kind = 4), sumIf(n, kind = 5),
       toUInt64(sumIf(n, kind = 255)), toUInt64(0)
FROM (
    SELECT if(tag = 2, a, b) AS video,
           multiIf(tag = 2, 0, tag = 7, 255, c) AS kind,
           if(tag = 2, toInt64(is_liked), count_of) AS n, sum_of AS s
    FROM (
        SELECT tag, a, b, c, argMaxMerge(liked) AS is_liked,
               toInt64(countMerge(events)) AS count_of, sumMerge(completion_sum) AS sum_of
        FROM event_aggregates
        WHERE tag = 2
           OR (tag IN (6, 7) AND a < %(fold)s)
        GROUP BY tag, a, b, c
    )
) GROUP BY video"""


def _v2_fold(store: ClickHouseEventStore, fold: int) -> None:
    """Roll up as the previous release did: the rows, then the marker."""
    client = store._clients.writer()
    client.execute(_V2_FOLD, {"fold": fold})
    videos, arrivals = client.execute(
        "SELECT countIf(video_id != 0), maxIf(arrivals, video_id = 0) "
        "FROM event_stats_rollup WHERE fold = %(fold)s",
        {"fold": fold},
    )[0]
    client.execute(
        "INSERT INTO event_stats_rollup (fold, video_id, arrivals, videos) VALUES",
        [(fold, 0, arrivals, videos)],
    )


def _stats(store: ClickHouseEventStore, videos: Sequence[int]) -> list[tuple[Any, ...]]:
    return [
        (s.views, round(s.completion_sum, 9), s.likes, s.shares, s.comments)
        for s in store.get_stats(videos).values()
    ]


def test_version_2_tables_are_refused_then_migrated_with_their_roll_up(
    clickhouse_engine: Engine, clickhouse_config: ClickHouseConfig
) -> None:
    install_older_view(clickhouse_engine, None, 2)  # the previous release's view
    store = _store(clickhouse_engine)
    buckets = _buckets(store)
    reference = InMemoryEventStore()
    videos = [1, 2, 3]
    deliver(
        store,
        reference,
        batch_of(("watch", 1, 1), ("like", 1, 1), ("share", 2, 2), ("comment", 1, 3)),
    )
    buckets.next_fine()  # a later fine bucket of the same coarse one: rolled up too
    deliver(store, reference, batch_of(("watch", 2, 1), ("like", 2, 2)))
    buckets.close_coarse()
    fold = buckets.coarse
    _v2_fold(store, fold)
    # After the version-2 roll-up's watermark: arrival rows the new version must add.
    deliver(store, reference, batch_of(("watch", 3, 1), ("unlike", 1, 1), ("share", 3, 3)))
    with pytest.raises(SchemaVersionError) as info:
        create_schema(clickhouse_engine)
    assert info.value.found == 2
    assert migrate_schema(clickhouse_engine, clickhouse_config)
    assert not migrate_schema(clickhouse_engine, clickhouse_config)  # done already
    create_schema(clickhouse_engine)
    merged = ClickHouseEventStore(clickhouse_engine, held_roll_up_videos=0, hold_arrivals=False)
    with merged._clients.reader() as client:  # the old roll-up holds and is read
        assert client.execute(merged._queries.folds)[0][0] == fold
    assert_same_statistics(store, reference, videos, [1, 2, 3], [10])
    assert _stats(merged, videos) == _stats(store, videos)
    _settled(store)
    # New events after the migration, then a roll-up in the new version.
    deliver(store, reference, batch_of(("like", 4, 3), ("watch", 4, 2)))
    assert_same_statistics(store, reference, videos, [1, 2, 3, 4], [10])
    assert _fold(store) == 3
    assert_same_statistics(store, reference, videos, [1, 2, 3, 4], [10])
    assert _stats(merged, videos) == _stats(store, videos)


def test_version_2_tables_of_a_sharded_cluster_migrate_with_their_roll_up(
    cluster_engine: Engine, cluster_config: ClickHouseConfig
) -> None:
    """The version-2 view on each shard's server, events on both shards before and after
    a version-2 roll-up (through the Distributed tables, as that release rolled up):
    the migration backfills each shard, the old roll-up stays exact and is read, and a
    roll-up in the new version follows."""
    from reelrank_clickhouse._schema import _servers

    install_older_view(cluster_engine, cluster_config, 2)
    store = _store(cluster_engine, cluster_config)
    buckets = _buckets(store)
    reference = InMemoryEventStore()
    videos = [1, 2, 3]
    users = range(1, 9)  # sharded by cityHash64(user_id): both shards get events
    deliver(store, reference, batch_of(*(("watch", user, 1 + user % 3) for user in users)))
    deliver(store, reference, batch_of(("like", 1, 1), ("like", 2, 2), ("comment", 3, 3)))
    buckets.next_fine()  # a later fine bucket of the same coarse one: rolled up too
    deliver(store, reference, batch_of(("like", 4, 1), ("share", 5, 2)))
    buckets.close_coarse()
    fold = buckets.coarse
    _v2_fold(store, fold)
    # After the version-2 roll-up's watermark, on both shards: coarse arrival rows only,
    # which the migration turns into the fine rows the new version adds.
    deliver(store, reference, batch_of(*(("share", user, 1 + user % 2) for user in users)))
    deliver(store, reference, batch_of(("unlike", 1, 1), ("watch", 6, 3)))
    with _servers(cluster_engine, cluster_config) as servers:
        for _, server in servers:
            with server.connect() as conn:
                after_fold = conn.execute(
                    text("SELECT count() FROM event_aggregates_local WHERE tag = 6 AND a >= :f"),
                    {"f": fold},
                ).scalar()
            assert after_fold, "a shard got no event after the version-2 roll-up"
    assert_refused_then_migrated(cluster_engine, cluster_config, 2)
    merged = ClickHouseEventStore(
        cluster_engine, tables=cluster_config.tables, held_roll_up_videos=0, hold_arrivals=False
    )
    with merged._clients.reader() as client:  # the old roll-up holds and is read
        assert client.execute(merged._queries.folds)[0][0] == fold
        assert merged._folded_stats(client, np.array(videos, dtype=np.int64)) is not None
    assert_same_statistics(store, reference, videos, list(users), [10])
    assert _stats(merged, videos) == _stats(store, videos)
    # By hand: watches (completion 0.5) of users 3 and 6 on video 1, 1, 4 and 7 on video
    # 2, 2, 5, 8 and 6 on video 3; likes of user 4 on video 1 (user 1's was undone) and
    # of user 2 on video 2; shares of the even users on video 1, of the odd ones and
    # user 5 again on video 2; one comment on video 3.
    assert _stats(store, videos) == [
        (2, 1.0, 1, 4, 0),
        (3, 1.5, 1, 5, 0),
        (4, 2.0, 0, 0, 1),
    ]
    _settled(store)
    # New events after the migration, then a roll-up in the new version.
    deliver(store, reference, batch_of(("like", 7, 3), ("watch", 8, 4)))
    assert_same_statistics(store, reference, [*videos, 4], list(users), [10])
    assert _fold(store) == 4
    assert_same_statistics(store, reference, [*videos, 4], list(users), [10])
    assert _stats(merged, videos) == _stats(store, videos)
