"""Behaviour of the ClickHouse stores beyond the core contracts: batches, exact
timestamps, copies in the log, configurable table names and the schema's life cycle.
Exactly-once under concurrent delivery is in test_clickhouse_exactly_once.py."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from reelrank_clickhouse import (
    ClickHouseConfig,
    ClickHouseEngagementLog,
    ClickHouseEventStore,
    ClickHouseTables,
    connect,
    create_schema,
    drop_schema,
)
from reelrank_clickhouse._rows import (
    EVENT_COLUMNS,
    EVENT_SELECT,
    SECONDS_COLUMN,
    SEQ_COLUMN,
    event_columns,
    event_from_row,
)
from sqlalchemy import text
from sqlalchemy.engine import Engine

from reelrank import (
    AFFINITY_PRIOR_CREDIT,
    GroupCommitEngagementLog,
    GroupCommitEventStore,
    InMemoryEventStore,
    InvalidInputError,
)
from reelrank.testing import EPOCH, make_event

pytestmark = pytest.mark.integration


@pytest.fixture
def store(clickhouse_engine: Engine) -> ClickHouseEventStore:
    return ClickHouseEventStore(clickhouse_engine)


@pytest.fixture
def log(clickhouse_engine: Engine) -> ClickHouseEngagementLog:
    return ClickHouseEngagementLog(clickhouse_engine)


def _count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count() FROM {table}")).scalar_one())


def test_a_batch_applies_each_new_id_once(store: ClickHouseEventStore) -> None:
    first = make_event("watch", completion=0.5)
    assert store.append(first, creator_id=1)
    share = make_event("share")
    batch = [(first, 1), (share, 1), (share, 1), (make_event("comment"), 1)]
    assert store.append_many(batch) == 2
    stats = store.get_stats([1])[1]
    assert (stats.views, stats.shares, stats.comments) == (1, 1, 1)
    assert store.append_many([]) == 0


def test_a_batch_mixing_stored_and_new_ids_inserts_the_new_ones_whole(
    store: ClickHouseEventStore,
) -> None:
    # The stored ids sit between new ones, so the batch's columns are narrowed to the
    # new events, and each must keep its own video, creator and completion.
    stored = [(make_event("watch", video_id=9, completion=0.1), 9) for _ in range(3)]
    assert store.append_many(stored) == 3
    new = [(make_event("watch", video_id=1 + n, completion=(1 + n) / 10), 1 + n) for n in range(4)]
    batch = [new[0], stored[0], new[1], new[2], stored[2], new[3], stored[1]]
    assert store.append_many(batch) == 4
    stats = store.get_stats([1, 2, 3, 4, 9])
    assert [(s.views, round(s.completion_sum, 9)) for s in stats.values()] == [
        (1, 0.1),
        (1, 0.2),
        (1, 0.3),
        (1, 0.4),
        (3, 0.3),
    ]
    # The default user watched every video: a watch's credit is its completion, by
    # creator, so the user's total is 0.1 + 0.2 + 0.3 + 0.4 + 3 * 0.1 = 1.3.
    assert store.get_affinities(1, [1, 4]) == {
        1: pytest.approx(0.1 / (1.3 + AFFINITY_PRIOR_CREDIT)),
        4: pytest.approx(0.4 / (1.3 + AFFINITY_PRIOR_CREDIT)),
    }


def test_the_column_indexes_name_the_insert_columns() -> None:
    names = EVENT_COLUMNS.split(", ")
    assert (names[SECONDS_COLUMN], names[SEQ_COLUMN]) == ("occurred_at", "seq")
    columns = event_columns([make_event("share", occurred_at=EPOCH)], 7)
    assert columns[SECONDS_COLUMN] == [int(EPOCH.timestamp())]
    assert columns[SEQ_COLUMN] == [7]


def test_nullable_columns_no_event_fills_are_left_out_and_stored_as_null(
    store: ClickHouseEventStore, clickhouse_engine: Engine
) -> None:
    likes = [(make_event("like", video_id=3, user_id=1 + n), 1) for n in range(4)]
    statement, sent = store._queries.insert_of(
        [*event_columns([event for event, _ in likes], 1), [1] * 4]
    )
    assert "watched_seconds" not in statement and "variant" not in statement
    assert "channel" not in statement and "completion" not in statement
    assert len(sent) == 8
    assert store.append_many(likes) == 4
    # One column filled by a single event of the batch is sent whole.
    watches = [
        (make_event("watch", video_id=3, completion=0.5), 1),
        (make_event("watch", video_id=3, completion=0.25, watched_seconds=4.0), 1),
    ]
    assert store.append_many(watches) == 2
    with clickhouse_engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT toString(kind), watched_seconds, completion, channel, variant "
                "FROM events ORDER BY kind, completion"
            )
        ).all()
    assert [tuple(row) for row in rows] == [
        ("watch", 4.0, 0.25, None, None),
        ("watch", None, 0.5, None, None),
        *[("like", None, None, None, None)] * 4,
    ]
    stats = store.get_stats([3])[3]
    assert (stats.views, stats.completion_sum, stats.likes) == (2, 0.75, 4)


def test_a_bad_pair_in_a_batch_writes_nothing(
    store: ClickHouseEventStore, clickhouse_engine: Engine
) -> None:
    good = make_event("share")
    with pytest.raises(InvalidInputError) as info:
        store.append_many([(good, 1), (make_event("watch", watched_seconds=3.0), 1)])
    assert info.value.field == "completion"
    with pytest.raises(InvalidInputError) as info:
        store.append_many([(good, 1), (good, 0)])
    assert info.value.field == "creator_id"
    assert _count(clickhouse_engine, "events") == 0
    assert store.append(good, creator_id=1)


def test_append_each_and_record_each_answer_per_item(
    store: ClickHouseEventStore, log: ClickHouseEngagementLog
) -> None:
    stored = make_event("watch", completion=0.5)
    assert store.append(stored, creator_id=1)
    assert log.record(stored)
    share, comment = make_event("share"), make_event("comment")
    batch = [(share, 1), (stored, 1), (share, 1), (comment, 1)]
    # Worked out by hand: new, stored before, repeated within the batch, new.
    assert store.append_each(batch) == [True, False, False, True]
    assert store.append_each(batch) == [False, False, False, False]
    assert log.record_each([share, stored, share, comment]) == [True, False, False, True]
    assert log.record_each([]) == []
    stats = store.get_stats([1])[1]
    assert (stats.views, stats.shares, stats.comments) == (1, 1, 1)


def test_group_commit_stores_concurrent_events_once_each(
    store: ClickHouseEventStore, log: ClickHouseEngagementLog
) -> None:
    """Threads sharing group-committed stores, each delivering every event: every
    event is applied and logged once, and answered as applied to one thread only."""
    events = GroupCommitEventStore(store, max_batch=7)
    grouped_log = GroupCommitEngagementLog(log)
    watches = [make_event("watch", completion=0.5, user_id=n) for n in range(1, 41)]

    def deliver(offset: int) -> tuple[int, int]:
        order = watches[offset:] + watches[:offset]
        applied = sum(events.append(event, creator_id=1) for event in order)
        return applied, sum(grouped_log.record(event) for event in order)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(deliver, [0, 10, 20, 30]))
    assert sum(applied for applied, _ in results) == len(watches)
    assert sum(logged for _, logged in results) == len(watches)
    stats = events.get_stats([1])[1]
    assert (stats.views, stats.completion_sum) == (40, 20.0)
    assert len(log.events_between(EPOCH, EPOCH + timedelta(days=1), limit=100)) == 40


def test_event_ids_are_remembered_across_store_objects(clickhouse_engine: Engine) -> None:
    event = make_event("comment")
    assert ClickHouseEventStore(clickhouse_engine).append(event, creator_id=3)
    assert ClickHouseEventStore(clickhouse_engine).append(event, creator_id=3) is False
    assert ClickHouseEventStore(clickhouse_engine).get_stats([1])[1].comments == 1


def test_threads_sharing_a_store_count_every_event_once(store: ClickHouseEventStore) -> None:
    watches = [make_event("watch", completion=0.5, user_id=n) for n in range(1, 41)]

    def deliver(offset: int) -> int:
        # Every thread delivers every event, starting at a different one.
        order = watches[offset:] + watches[:offset]
        return sum(store.append(event, creator_id=1) for event in order)

    with ThreadPoolExecutor(max_workers=4) as pool:
        applied = list(pool.map(deliver, [0, 10, 20, 30]))
    assert sum(applied) == len(watches)
    stats = store.get_stats([1])[1]
    assert (stats.views, stats.completion_sum) == (40, 20.0)


def test_likes_follow_arrival_order_not_client_time(store: ClickHouseEventStore) -> None:
    # The unlike arrives last but claims an earlier client time: the in-memory store
    # applies events in arrival order, and so does this one.
    store.append(make_event("like", occurred_at=EPOCH + timedelta(hours=1)), creator_id=1)
    store.append(make_event("unlike", occurred_at=EPOCH), creator_id=1)
    assert store.get_stats([1])[1].likes == 0
    assert store.get_affinities(1, [1]) == {1: 0.0}


def test_the_log_keeps_microseconds_and_skips_copies(
    log: ClickHouseEngagementLog, clickhouse_engine: Engine
) -> None:
    base = EPOCH + timedelta(microseconds=250)
    early = make_event("like", occurred_at=base)
    late = make_event("like", occurred_at=base + timedelta(microseconds=1))
    assert log.record_many([late, early, late]) == 2
    # A copy another writer inserted at the same moment.
    log._clients.writer().execute(
        f"INSERT INTO engagement_log ({EVENT_COLUMNS}) VALUES",
        event_columns([late], 99),
        columnar=True,
    )
    assert log.events_between(base, base + timedelta(microseconds=1), limit=10) == [early]
    assert log.events_between(base, base + timedelta(seconds=1), limit=10) == [late, early]
    assert log.user_events(1, since=base + timedelta(microseconds=1), limit=10) == [late]


def test_stored_events_read_back_unchanged_whatever_their_time_zone(
    store: ClickHouseEventStore, clickhouse_engine: Engine
) -> None:
    plus_five = timezone(timedelta(hours=5, minutes=30))
    at = (EPOCH + timedelta(days=40, seconds=7, microseconds=123_456)).astimezone(plus_five)
    events = [
        make_event("watch", completion=0.25, watched_seconds=4.5, occurred_at=at, variant="b"),
        make_event("share", occurred_at=EPOCH + timedelta(microseconds=999_999), channel="dm"),
    ]
    assert store.append_many([(event, 7) for event in events]) == 2
    with clickhouse_engine.connect() as conn:
        rows = conn.execute(
            text(f"SELECT {EVENT_SELECT}, creator_id FROM events ORDER BY seq")
        ).fetchall()
    assert [event_from_row(row) for row in rows] == events
    assert [int(row[-1]) for row in rows] == [7, 7]


def test_a_batch_larger_than_a_query_text_checks_every_id(store: ClickHouseEventStore) -> None:
    # 12,000 ids of 30-odd characters are over the server's 256 KiB max_query_size as
    # SQL text; the check sends them as an external table.
    first = [(make_event("share", video_id=1 + n % 3), 1) for n in range(12_000)]
    assert store.append_many(first) == 12_000
    again = first + [(make_event("share", video_id=1), 1) for _ in range(5)]
    assert store.append_many(again) == 5
    assert sum(stats.shares for stats in store.get_stats([1, 2, 3]).values()) == 12_005


def test_create_schema_is_idempotent(
    store: ClickHouseEventStore, clickhouse_engine: Engine
) -> None:
    store.append(make_event("watch", completion=1.0), creator_id=1)
    create_schema(clickhouse_engine)
    assert store.get_stats([1])[1].views == 1


def test_drop_schema_removes_everything_and_create_schema_starts_empty(
    store: ClickHouseEventStore, clickhouse_engine: Engine
) -> None:
    store.append(make_event("share"), creator_id=1)
    drop_schema(clickhouse_engine)
    with clickhouse_engine.connect() as conn:
        assert conn.execute(text("SHOW TABLES")).fetchall() == []
    create_schema(clickhouse_engine)
    assert store.get_stats([1])[1].shares == 0


def test_table_names_come_from_the_config(clickhouse_config: ClickHouseConfig) -> None:
    tables = ClickHouseTables(
        events="ev",
        aggregates="ev_agg",
        corrections="ev_fix",
        stats_rollup="ev_rollup",
        engagement_log="ev_log",
        engagement_log_ids="ev_log_ids",
    )
    config = clickhouse_config.model_copy(update={"tables": tables})
    engine = connect(config)
    try:
        create_schema(engine, config)
        store = ClickHouseEventStore(engine, tables=tables)
        log = ClickHouseEngagementLog(engine, tables=tables)
        event = make_event("share")
        assert store.append(event, creator_id=1) and log.record(event)
        assert store.get_stats([1])[1].shares == 1
        assert store.fold_stats(until=datetime.now(UTC) + timedelta(minutes=3)) == 1
        assert store.get_stats([1])[1].shares == 1
        with engine.connect() as conn:
            names = {row[0] for row in conn.execute(text("SHOW TABLES"))}
        assert names == {
            "ev",
            "ev_agg",
            "ev_agg_mv",
            "ev_fix",
            "ev_rollup",
            "ev_log",
        }
        drop_schema(engine, config)
        with engine.connect() as conn:
            assert conn.execute(text("SHOW TABLES")).fetchall() == []
    finally:
        engine.dispose()


def _engine_full(engine: Engine, table: str) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(
                text(
                    "SELECT engine_full FROM system.tables "
                    "WHERE database = currentDatabase() AND name = :table"
                ),
                {"table": table},
            ).scalar_one()
        )


def test_the_aggregate_table_gets_the_configured_index_granularity(
    clickhouse_engine: Engine, clickhouse_config: ClickHouseConfig
) -> None:
    # The fixture's schema, made without a config: the default.
    assert "index_granularity = 1024" in _engine_full(clickhouse_engine, "event_aggregates")
    # Only the aggregate table's: the event table keeps ClickHouse's default.
    assert "index_granularity = 8192" in _engine_full(clickhouse_engine, "events")
    drop_schema(clickhouse_engine)
    config = clickhouse_config.model_copy(update={"aggregates_index_granularity": 256})
    create_schema(clickhouse_engine, config)
    assert "index_granularity = 256" in _engine_full(clickhouse_engine, "event_aggregates")


def test_an_aggregate_table_of_another_granularity_is_left_alone_and_read(
    clickhouse_engine: Engine, clickhouse_config: ClickHouseConfig
) -> None:
    """Tables made before the setting (ClickHouse's 8,192 rows per granule) keep their
    granularity when ``create_schema`` runs again with the new default, and still count
    every event."""
    drop_schema(clickhouse_engine)
    earlier = clickhouse_config.model_copy(update={"aggregates_index_granularity": 8192})
    create_schema(clickhouse_engine, earlier)
    store = ClickHouseEventStore(clickhouse_engine)
    assert (
        store.append_many(
            [
                (make_event("watch", video_id=1, user_id=1, completion=0.5), 7),
                (make_event("watch", video_id=1, user_id=2, completion=1.0), 7),
                (make_event("like", video_id=1, user_id=2), 7),
                (make_event("share", video_id=2, user_id=1), 8),
            ]
        )
        == 4
    )
    create_schema(clickhouse_engine, clickhouse_config)
    assert "index_granularity = 8192" in _engine_full(clickhouse_engine, "event_aggregates")
    assert store.append(make_event("like", video_id=2, user_id=3), creator_id=8)
    stats = store.get_stats([1, 2])
    assert (stats[1].views, stats[1].completion_sum, stats[1].likes) == (2, 1.5, 1)
    assert (stats[2].views, stats[2].shares, stats[2].likes) == (0, 1, 1)


def _swap_in_granularity(conn: Any, table: str, granularity: int) -> None:
    """The documented adoption steps (*Index granularity*) on ``table``, writers stopped."""
    for statement in (
        f"CREATE TABLE {table}_new AS {table} "
        "ENGINE = AggregatingMergeTree() ORDER BY (tag, a, b, c, event_id) "
        f"SETTINGS index_granularity = {granularity}",
        f"INSERT INTO {table}_new SELECT * FROM {table}",
        f"RENAME TABLE {table} TO {table}_old, {table}_new TO {table}",
        f"DROP TABLE {table}_old",
    ):
        conn.execute(text(statement))


def test_the_documented_swap_adopts_a_new_granularity(
    clickhouse_engine: Engine, clickhouse_config: ClickHouseConfig
) -> None:
    """The adoption steps of the docs (*Index granularity*): a new table of the new
    granularity, the rows copied with writers stopped, a ``RENAME TABLE`` swap; the
    view writes to the table by name, so events stored after the swap land in the new
    table."""
    drop_schema(clickhouse_engine)
    earlier = clickhouse_config.model_copy(update={"aggregates_index_granularity": 8192})
    create_schema(clickhouse_engine, earlier)
    store = ClickHouseEventStore(clickhouse_engine)
    watch = make_event("watch", video_id=1, user_id=1, completion=0.25)
    assert (
        store.append_many(
            [
                (watch, 7),
                (make_event("like", video_id=1, user_id=1), 7),
                (make_event("comment", video_id=3, user_id=2), 9),
            ]
        )
        == 3
    )
    affinity_before = store.get_affinities(1, [7, 9])
    assert affinity_before[7] > 0 and affinity_before[9] == 0
    with clickhouse_engine.connect() as conn:
        _swap_in_granularity(conn, "event_aggregates", 1024)
    create_schema(clickhouse_engine, clickhouse_config)
    assert "index_granularity = 1024" in _engine_full(clickhouse_engine, "event_aggregates")
    assert store.append(make_event("watch", video_id=1, user_id=2, completion=0.5), creator_id=7)
    assert not store.append(watch, creator_id=7)  # its copied id is still known
    stats = store.get_stats([1, 3])
    assert (stats[1].views, stats[1].completion_sum, stats[1].likes) == (2, 0.75, 1)
    assert stats[3].comments == 1
    assert store.get_affinities(1, [7, 9]) == affinity_before  # user 1's credit, copied


def test_the_documented_swap_adopts_a_new_granularity_on_each_shard(
    cluster_engine: Engine, cluster_config: ClickHouseConfig
) -> None:
    """The same steps on each shard's server, with the ``_local`` names: the
    Distributed table and each shard's view find the swapped table by name, so the
    copied states count as before, the copied ids stay known and new events land in the
    new tables on both shards."""
    from reelrank_clickhouse._schema import _servers

    drop_schema(cluster_engine, cluster_config)
    earlier = cluster_config.model_copy(update={"aggregates_index_granularity": 8192})
    create_schema(cluster_engine, earlier)
    store = ClickHouseEventStore(cluster_engine, tables=cluster_config.tables)
    reference = InMemoryEventStore()
    users = range(1, 9)  # sharded by cityHash64(user_id): both shards get events
    before = [
        *((make_event("watch", video_id=1, user_id=user, completion=0.25), 7) for user in users),
        *((make_event("like", video_id=2, user_id=user), 7) for user in users if user % 2),
        (make_event("comment", video_id=3, user_id=2), 9),
    ]
    assert store.append_many(before) == 13
    for event, creator_id in before:
        reference.append(event, creator_id=creator_id)
    affinities_before = {user: store.get_affinities(user, [7, 9]) for user in users}

    def local_rows() -> list[int]:
        """Each shard's rows of the aggregate table, the parts merged."""
        counts = []
        with _servers(cluster_engine, cluster_config) as servers:
            for _, server in servers:
                with server.connect() as conn:
                    conn.execute(text("OPTIMIZE TABLE event_aggregates_local FINAL"))
                    counts.append(
                        conn.execute(
                            text("SELECT count() FROM event_aggregates_local")
                        ).scalar_one()
                    )
        return counts

    rows_before = local_rows()
    assert len(rows_before) == 2 and all(rows_before), rows_before
    with _servers(cluster_engine, cluster_config) as servers:
        for _, server in servers:
            with server.connect() as conn:
                _swap_in_granularity(conn, "event_aggregates_local", 1024)
    assert local_rows() == rows_before  # every shard's rows copied, none twice
    create_schema(cluster_engine, cluster_config)
    with _servers(cluster_engine, cluster_config) as servers:
        for _, server in servers:
            assert "index_granularity = 1024" in _engine_full(server, "event_aggregates_local")
    assert store.get_stats([1, 2, 3]) == reference.get_stats([1, 2, 3])
    assert {user: store.get_affinities(user, [7, 9]) for user in users} == affinities_before
    assert store.append_many(before) == 0  # the copied ids are still known
    after = [(make_event("watch", video_id=1, user_id=user, completion=1.0), 7) for user in users]
    assert store.append_many(after) == 8
    for event, creator_id in after:
        reference.append(event, creator_id=creator_id)
    assert all(now > then for now, then in zip(local_rows(), rows_before, strict=True))
    stats = store.get_stats([1, 2, 3])
    # By hand: 16 watches of video 1 (completion 8 x 0.25 + 8 x 1.0), the likes of the
    # four odd users on video 2, one comment on video 3.
    assert (stats[1].views, stats[1].completion_sum, stats[2].likes, stats[3].comments) == (
        16,
        10.0,
        4,
        1,
    )
    assert stats == reference.get_stats([1, 2, 3])


class _CountingClient:
    """A driver client that records the queries it executes."""

    def __init__(self, client: Any, queries: list[str]) -> None:
        self._client = client
        self._queries = queries

    def execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
        self._queries.append(query)
        return self._client.execute(query, *args, **kwargs)


def test_affinities_of_many_users_take_one_query_per_chunk(
    clickhouse_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ClickHouseEventStore(clickhouse_engine)
    store.users_per_query = 2
    users = [5, 1, 4, 2, 3]  # three queries: [5, 1], [4, 2], [3]
    pairs = [
        (make_event(kind, user_id=user_id, video_id=user_id), 1 + (user_id + n) % 3)
        for user_id in users
        for n, kind in enumerate(("watch", "like", "share")[: user_id % 3 + 1])
    ]
    assert store.append_many(pairs) == len(pairs)
    queries: list[str] = []
    reader = store._clients.reader

    @contextmanager
    def counting_reader() -> Iterator[Any]:
        with reader() as client:
            yield _CountingClient(client, queries)

    monkeypatch.setattr(store._clients, "reader", counting_reader)
    many = store.get_affinities_many({uid: [1, 2, 3, 4] for uid in users})
    assert len(queries) == 3
    assert many == {uid: store.get_affinities(uid, [1, 2, 3, 4]) for uid in users}
    assert all(many[uid][1 + uid % 3] > 0.0 for uid in users)
