"""Behaviour of the ClickHouse stores beyond the core contracts: batches, copies that
slip past the insert-side check, exact timestamps, and agreement with the in-memory
reference store on random event sequences."""

from __future__ import annotations

import itertools
import math
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reelrank_clickhouse import (
    ClickHouseEngagementLog,
    ClickHouseEventStore,
    create_schema,
    drop_schema,
)
from reelrank_clickhouse._rows import EVENT_SELECT, event_from_row, event_row
from reelrank_clickhouse._schema import EVENTS, LOG
from sqlalchemy import text
from sqlalchemy.engine import Engine

from reelrank import EngagementEvent, EngagementKind, InMemoryEventStore, InvalidInputError
from reelrank.testing import EPOCH, make_event

pytestmark = pytest.mark.integration


@pytest.fixture
def store(clickhouse_engine: Engine) -> ClickHouseEventStore:
    return ClickHouseEventStore(clickhouse_engine)


@pytest.fixture
def log(clickhouse_engine: Engine) -> ClickHouseEngagementLog:
    return ClickHouseEngagementLog(clickhouse_engine)


def _insert_copy(engine: Engine, event: EngagementEvent, creator_id: int, seq: int) -> None:
    """Insert a row past the store's check, as a concurrent delivery of the same event
    by another process would."""
    with engine.connect() as conn:
        conn.execute(EVENTS.insert(), [{**event_row(event, seq), "creator_id": creator_id}])


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


def test_a_copy_past_the_check_is_counted_but_later_deliveries_are_refused(
    store: ClickHouseEventStore, clickhouse_engine: Engine
) -> None:
    """The documented race: a copy inserted by another writer between this store's
    check and insert is counted by the views; every later delivery is refused."""
    watch = make_event("watch", completion=0.75)
    store.append(watch, creator_id=1)
    _insert_copy(clickhouse_engine, watch, 1, seq=10)
    assert store.get_stats([1])[1].views == 2
    assert store.append(watch, creator_id=1) is False
    assert store.append_many([(watch, 1)]) == 0
    assert store.get_stats([1])[1].views == 2
    # The raw events collapse the copy when their parts merge.
    with clickhouse_engine.connect() as conn:
        conn.execute(text("OPTIMIZE TABLE events FINAL"))
    assert _count(clickhouse_engine, "events") == 1


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
    with clickhouse_engine.connect() as conn:
        conn.execute(LOG.insert(), [event_row(late, 99)])
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


_KINDS = st.sampled_from(list(EngagementKind))
_examples = itertools.count(1)


@st.composite
def _event_sequences(draw: st.DrawFn) -> list[tuple[EngagementEvent, int]]:
    size = draw(st.integers(min_value=1, max_value=30))
    made: list[tuple[EngagementEvent, int]] = []
    for _ in range(size):
        if made and draw(st.integers(0, 4)) == 0:
            made.append(draw(st.sampled_from(made)))  # a redelivery
            continue
        kind = draw(_KINDS)
        video_id = draw(st.integers(min_value=1, max_value=4))
        extra = {"completion": draw(st.floats(0.0, 1.0))} if kind is EngagementKind.WATCH else {}
        event = make_event(kind, user_id=draw(st.integers(1, 3)), video_id=video_id, **extra)
        made.append((event, 1 + video_id % 2))
    return made


def _shifted(event: EngagementEvent, offset: int) -> EngagementEvent:
    return event.model_copy(
        update={
            "event_id": f"{offset}-{event.event_id}",
            "user_id": event.user_id + offset,
            "video_id": event.video_id + offset,
        }
    )


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(sequence=_event_sequences())
def test_aggregates_match_the_in_memory_store(
    clickhouse_engine: Engine, sequence: list[tuple[EngagementEvent, int]]
) -> None:
    # Every example gets ids of its own in the shared database (recreating the schema
    # per example would dominate the run); the reference store starts empty each time.
    offset = next(_examples) * 1_000
    store = ClickHouseEventStore(clickhouse_engine)
    reference = InMemoryEventStore()
    for event, creator in sequence:
        shifted, creator_id = _shifted(event, offset), creator + offset
        applied = store.append(shifted, creator_id=creator_id)
        assert applied == reference.append(shifted, creator_id=creator_id)
    videos = [offset + n for n in range(1, 6)]
    got, want = store.get_stats(videos), reference.get_stats(videos)
    for video_id in videos:
        mine, theirs = got[video_id], want[video_id]
        assert (mine.views, mine.likes, mine.shares, mine.comments) == (
            theirs.views,
            theirs.likes,
            theirs.shares,
            theirs.comments,
        )
        assert math.isclose(mine.completion_sum, theirs.completion_sum, abs_tol=1e-9)
    creators = [offset + n for n in range(1, 4)]
    for user_id in (offset + n for n in range(1, 5)):
        mine_aff = store.get_affinities(user_id, creators)
        theirs_aff = reference.get_affinities(user_id, creators)
        for creator_id, value in theirs_aff.items():
            assert math.isclose(mine_aff[creator_id], value, abs_tol=1e-9)


def test_drop_schema_removes_everything_and_create_schema_starts_empty(
    store: ClickHouseEventStore, clickhouse_engine: Engine
) -> None:
    store.append(make_event("share"), creator_id=1)
    drop_schema(clickhouse_engine)
    with clickhouse_engine.connect() as conn:
        assert conn.execute(text("SHOW TABLES")).fetchall() == []
    create_schema(clickhouse_engine)
    assert store.get_stats([1])[1].shares == 0
