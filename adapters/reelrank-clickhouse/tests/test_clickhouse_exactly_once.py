"""Exactly once per event id, whoever delivers it and however often: the same ids from
several threads and processes at the same moment, in one batch or several, a batch
retried after the server was killed in the middle of its insert, and a hypothesis
stream with duplicates and races checked against the in-memory reference store, on one
server and on the 2-shard cluster.

The widest race is forced, not hoped for: :class:`RacingStore` waits after its first
duplicate check until every writer has made its own, so all of them insert ids none of
them had seen. The servers are real; only the timing is arranged.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from ch_support import Pair, as_columns, assert_same_statistics, reference_of
from ch_support import workload as make_workload
from clickhouse_driver import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reelrank_clickhouse import (
    ClickHouseConfig,
    ClickHouseEngagementLog,
    ClickHouseEventStore,
    ClickHouseTables,
    connect,
    create_schema,
)
from reelrank_clickhouse.testing import ClickHouseServer
from sqlalchemy import text
from sqlalchemy.engine import Engine

from reelrank import EngagementKind, EngagementWindow, InvalidInputError, StoreError
from reelrank.testing import EPOCH, make_event

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

_BARRIER_SECONDS = 30.0


class RacingStore(ClickHouseEventStore):
    """A store whose first duplicate check returns only once every writer sharing
    ``barrier`` has made its own check."""

    def __init__(self, engine: Engine, barrier: Any, *, tables: ClickHouseTables) -> None:
        super().__init__(engine, tables=tables)
        self._barrier: Any = barrier

    def _copies(self, client: Client, *check: Any) -> dict[str, tuple[int, int]]:
        found = super()._copies(client, *check)
        barrier, self._barrier = self._barrier, None
        if barrier is not None:
            barrier.wait(_BARRIER_SECONDS)
        return found


def _corrections(engine: Engine, tables: ClickHouseTables) -> int:
    with engine.connect() as conn:
        query = text(f"SELECT uniqExact(event_id) FROM {tables.corrections}")
        return int(conn.execute(query).scalar_one())


def _insert_copies(store: ClickHouseEventStore, pairs: Sequence[Pair], seq: int) -> None:
    """Insert ``pairs`` past every check, as writers that died before their second
    check would leave them."""
    from reelrank_clickhouse._rows import event_columns

    columns = event_columns([event for event, _ in pairs], seq)
    columns.append([creator_id for _, creator_id in pairs])
    with store._write_lock:
        store._clients.writer().execute(store._queries.insert, columns, columnar=True)


def test_a_copy_from_a_racing_writer_is_corrected_by_the_second_check(
    clickhouse_engine: Engine,
) -> None:
    tables = ClickHouseTables()
    first, second = (ClickHouseEventStore(clickhouse_engine) for _ in range(2))
    watch = (make_event("watch", completion=0.75), 1)

    class InsertsAfterTheOtherChecked(ClickHouseEventStore):
        checked = False

        def _copies(self, client: Client, *check: Any) -> dict[str, tuple[int, int]]:
            found = super()._copies(client, *check)
            if not self.checked:
                self.checked = True
                # The other writer inserts between this one's check and insert.
                _insert_copies(first, [watch], seq=1)
            return found

    late = InsertsAfterTheOtherChecked(clickhouse_engine)
    # The other copy has the smaller arrival number, so it is the applied one.
    assert late.append(watch[0], creator_id=1) is False
    stats = second.get_stats([1])[1]
    assert (stats.views, stats.completion_sum) == (1, 0.75)
    assert second.get_affinities(1, [1]) == {1: pytest.approx(0.75 / 1.75)}
    # The bulk read subtracts the correction too.
    assert second.get_affinities_many({1: [1], 2: [1]}) == {
        1: second.get_affinities(1, [1]),
        2: {1: 0.0},
    }
    assert _corrections(clickhouse_engine, tables) == 1
    # Later deliveries are refused and change nothing.
    assert second.append(watch[0], creator_id=1) is False
    assert second.get_stats([1])[1].views == 1


@pytest.fixture(params=["plain rows", "numpy frame"])
def id_check_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each duplicate check's path: a small batch's ids as plain rows (the default for
    these batches) or as a numpy frame, the path of a batch past the limit."""
    from reelrank_clickhouse import _client

    if request.param == "numpy frame":
        monkeypatch.setattr(_client, "PLAIN_ID_CHECK_LIMIT", -1)
    return str(request.param)


def test_the_second_check_groups_ids_only_when_one_is_stored_twice(
    clickhouse_engine: Engine, id_check_path: str
) -> None:
    from reelrank_clickhouse._rows import SECONDS_COLUMN, event_columns

    store = ClickHouseEventStore(clickhouse_engine)
    pairs = [(make_event("share", video_id=1 + n), 1) for n in range(50)]
    ids = [event.event_id for event, _ in pairs]
    seconds = event_columns([event for event, _ in pairs], 0)[SECONDS_COLUMN]
    client = store._clients.writer()
    assert not store._copied(client, ids, seconds)  # none stored: 0 copies, 0 hashes
    assert store.append_many(pairs) == 50
    assert not store._copied(client, ids, seconds)
    _insert_copies(store, pairs[17:18], seq=1)  # a racing writer's copy of one id
    assert store._copied(client, ids, seconds)
    assert store._copies(client, store._queries.copied, ids, seconds).keys() == {ids[17]}


def test_the_checks_answer_plain_ids_and_counts(
    clickhouse_engine: Engine, id_check_path: str
) -> None:
    """Whether the checks send the ids as a numpy column and read numpy columns back
    or send plain rows, the answers are plain ``str`` and ``int`` (a numpy integer in
    a ``range`` is found by iterating the range, which the answer of a raced batch
    tests)."""
    from reelrank_clickhouse._rows import SECONDS_COLUMN, event_columns

    store = ClickHouseEventStore(clickhouse_engine)
    pairs = [(make_event("watch", video_id=1 + n), 1) for n in range(5)]
    ids = [event.event_id for event, _ in pairs]
    seconds = event_columns([event for event, _ in pairs], 0)[SECONDS_COLUMN]
    assert store.append_many(pairs) == 5
    _insert_copies(store, pairs[:2], seq=7)
    found = store._copies(store._clients.writer(), store._queries.copies, ids, seconds)
    assert sorted(found) == sorted(ids)
    assert {type(event_id) for event_id in found} == {str}
    assert {(type(copies), type(first)) for copies, first in found.values()} == {(int, int)}
    assert sorted(copies for copies, _ in found.values()) == [1, 1, 1, 2, 2]


def test_a_small_batch_is_checked_without_a_numpy_frame(
    clickhouse_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group commit's batch of a few events checks its ids as plain rows: building a
    pandas frame and decoding numpy blocks cost more than the check for a few ids."""
    from reelrank_clickhouse import _client, _engagement_log, _event_store

    def no_frame(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a numpy frame was built for a small batch")

    for module in (_client, _event_store, _engagement_log):
        monkeypatch.setattr(module, "id_frame", no_frame, raising=False)
    store = ClickHouseEventStore(clickhouse_engine)
    log = ClickHouseEngagementLog(clickhouse_engine)
    watch = make_event("watch", completion=0.5)
    assert store.append(watch, creator_id=1) is True
    assert store.append(watch, creator_id=1) is False
    assert log.record_each([watch, watch]) == [True, False]
    assert log.record_each([watch]) == [False]
    monkeypatch.undo()  # the count read sends its video ids as a frame
    assert store.get_stats([1])[1].views == 1


def test_a_batch_past_the_plain_limit_counts_once(
    clickhouse_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reelrank_clickhouse import _client

    monkeypatch.setattr(_client, "PLAIN_ID_CHECK_LIMIT", 3)
    store = ClickHouseEventStore(clickhouse_engine)
    log = ClickHouseEngagementLog(clickhouse_engine)
    pairs = [(make_event("share", video_id=1 + n), 1) for n in range(5)]
    events = [event for event, _ in pairs]
    assert store.append_many(pairs) == 5
    assert store.append_many([*pairs, (make_event("share", video_id=9), 1)]) == 1
    assert log.record_each(events) == [True] * 5
    assert log.record_each(events) == [False] * 5
    assert sum(stats.shares for stats in store.get_stats([1, 2, 3, 4, 5, 9]).values()) == 6


def test_copies_left_uncorrected_are_repaired_by_the_redelivery(
    clickhouse_engine: Engine,
) -> None:
    store = ClickHouseEventStore(clickhouse_engine)
    share, like = (make_event("share"), 2), (make_event("like", user_id=4), 2)
    # Three writers inserted the share and two the like, and all died before their
    # second check: nobody wrote a correction.
    for seq in (1, 100, 200):
        _insert_copies(store, [share, like][: 2 if seq < 200 else 1], seq=seq)
    assert store.get_stats([1])[1].shares == 3
    assert store.get_stats([1])[1].likes == 1  # copies of a like are one like already
    # Their caller never got an acknowledgement, so it delivers again.
    assert store.append_many([share, like]) == 0
    stats = store.get_stats([1])[1]
    assert (stats.shares, stats.likes) == (1, 1)
    assert store.get_affinities(1, [2]) == {2: pytest.approx(2 / 3)}
    assert store.get_affinities(4, [2]) == {2: pytest.approx(1 / 2)}
    # A writer that saw fewer copies writes a lower version, which reads ignore.
    from reelrank_clickhouse._rows import event_columns

    columns = [*event_columns([share[0]], 0), [share[1]]]
    store._correct(
        store._clients.writer(), [share[0].event_id], columns, {share[0].event_id: (2, 1)}
    )
    assert store.get_stats([1])[1].shares == 1


@pytest.mark.parametrize("batches", [1, 4], ids=["one-batch", "four-batches"])
def test_the_same_ids_from_several_threads_count_once(
    deployment: tuple[Engine, ClickHouseConfig], batches: int
) -> None:
    engine, config = deployment
    workload = make_workload(f"threads-{batches}")
    writers = 4
    barrier = threading.Barrier(writers)
    stores = [RacingStore(engine, barrier, tables=config.tables) for _ in range(writers)]
    logs = [ClickHouseEngagementLog(engine, tables=config.tables) for _ in range(writers)]

    def deliver(writer: int) -> int:
        # Every writer delivers every event, in an order of its own, in ``batches`` parts.
        order = workload[:]
        random.Random(writer).shuffle(order)
        size = math.ceil(len(order) / batches)
        applied = 0
        for start in range(0, len(order), size):
            part = order[start : start + size]
            # Half the writers deliver columns, racing the others' pairs.
            if writer % 2:
                applied += stores[writer].append_columns(**as_columns(part))
            else:
                applied += stores[writer].append_many(part)
            logs[writer].record_many([event for event, _ in part])
        return applied

    with ThreadPoolExecutor(max_workers=writers) as pool:
        applied = list(pool.map(deliver, range(writers)))
    # Each id is reported applied by one writer, or, in a rare order, by more.
    assert sum(applied) >= len(workload)
    assert _corrections(engine, config.tables) > 0  # the race did happen
    reference = reference_of([workload])
    assert_same_statistics(stores[0], reference, range(1, 6), range(1, 7), [10, 11, 12])
    logged = logs[0].events_between(EPOCH, EPOCH + timedelta(seconds=1), limit=1_000)
    assert sorted(event.event_id for event in logged) == sorted(e.event_id for e, _ in workload)
    columns = logs[0].columns_between(EPOCH, EPOCH + timedelta(seconds=1), limit=1_000)
    assert columns == EngagementWindow.from_events(logged)  # raced copies hidden here too


def _deliver_from_a_process(
    config: ClickHouseConfig, workload: list[Pair], barrier: Any, results: Any, writer: int
) -> None:
    engine = connect(config)
    try:
        store = RacingStore(engine, barrier, tables=config.tables)
        order = workload[:]
        random.Random(writer).shuffle(order)
        half = len(order) // 2
        results.put(store.append_many(order[:half]) + store.append_many(order[half:]))
    finally:
        engine.dispose()


def test_the_same_ids_from_several_processes_count_once(
    deployment: tuple[Engine, ClickHouseConfig],
) -> None:
    engine, config = deployment
    workload = make_workload("processes")
    context = multiprocessing.get_context("fork")
    writers = 3
    barrier, results = context.Barrier(writers), context.Queue()
    processes = [
        context.Process(
            target=_deliver_from_a_process, args=(config, workload, barrier, results, writer)
        )
        for writer in range(writers)
    ]
    for process in processes:
        process.start()
    applied = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    assert sum(applied) >= len(workload)
    assert _corrections(engine, config.tables) > 0
    store = ClickHouseEventStore(engine, tables=config.tables)
    assert_same_statistics(store, reference_of([workload]), range(1, 6), range(1, 7), [10, 11, 12])


@pytest.mark.timeout(180)
def test_a_batch_retried_after_the_server_was_killed_counts_once(tmp_path: Path) -> None:
    """Kill the server at moments spread over a batch's insert, restart it on the same
    data, deliver the batch again: whatever the kill interrupted, every event counts
    once."""
    server = ClickHouseServer(tmp_path / "killed")
    server.start()
    try:
        server.execute("CREATE DATABASE feeds")
        config = ClickHouseConfig(
            port=server.tcp_port, database="feeds", send_receive_timeout_seconds=30.0
        )
        engine = connect(config)
        create_schema(engine)
        delivered: list[list[Pair]] = []
        # Measure one insert, then kill at fractions of that time.
        probe = make_workload("probe", 20_000)
        store = ClickHouseEventStore(engine)
        started = time.perf_counter()
        store.append_many(probe)
        seconds = time.perf_counter() - started
        delivered.append(probe)
        interrupted: list[BaseException] = []
        for round_number, fraction in enumerate((0.1, 0.4, 0.7, 1.2)):
            batch = make_workload(f"killed-{round_number}", 20_000)
            store = ClickHouseEventStore(engine)

            def deliver(store: ClickHouseEventStore = store, batch: list[Pair] = batch) -> None:
                try:
                    store.append_many(batch)
                except StoreError as exc:  # the kill interrupts it, or not
                    interrupted.append(exc)

            writer = threading.Thread(target=deliver)
            writer.start()
            time.sleep(seconds * fraction)
            server.kill()
            writer.join(timeout=60)
            server.restart()
            store.append_many(batch)  # the retry, on the same store and engine
            delivered.append(batch)
        assert interrupted  # at least one kill fell inside a delivery
        reference = reference_of(delivered)
        assert_same_statistics(
            ClickHouseEventStore(engine), reference, range(1, 6), range(1, 7), [10, 11, 12]
        )
        engine.dispose()
    finally:
        server.stop()


# -- a hypothesis stream of deliveries, with redeliveries and races --------------------

_examples = itertools.count(1)


@st.composite
def _deliveries(draw: st.DrawFn) -> list[tuple[list[Pair], bool]]:
    """Batches of events, some repeating earlier events (redeliveries) or each other,
    each delivered by one writer or raced by two."""
    seen: list[Pair] = []
    batches: list[tuple[list[Pair], bool]] = []
    for _ in range(draw(st.integers(1, 4))):
        batch: list[Pair] = []
        for _ in range(draw(st.integers(1, 8))):
            if seen and draw(st.integers(0, 3)) == 0:
                batch.append(draw(st.sampled_from(seen)))
                continue
            kind = draw(st.sampled_from(list(EngagementKind)))
            video_id = draw(st.integers(1, 4))
            extra = (
                {"completion": draw(st.floats(0.0, 1.0))} if kind is EngagementKind.WATCH else {}
            )
            event = make_event(kind, user_id=draw(st.integers(1, 3)), video_id=video_id, **extra)
            pair = (event, 1 + video_id % 2)
            batch.append(pair)
            seen.append(pair)
        batches.append((batch, draw(st.booleans())))
    return batches


def _shifted(pair: Pair, offset: int) -> Pair:
    event, creator_id = pair
    moved = event.model_copy(
        update={
            "event_id": f"{offset}-{event.event_id}",
            "user_id": event.user_id + offset,
            "video_id": event.video_id + offset,
        }
    )
    return moved, creator_id + offset


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(deliveries=_deliveries())
def test_a_stream_with_duplicates_and_races_matches_thereference_of(
    deployment: tuple[Engine, ClickHouseConfig],
    deliveries: list[tuple[list[Pair], bool]],
) -> None:
    # Every example gets ids of its own in the shared database (recreating the schema
    # per example would dominate the run); the reference starts empty each time.
    engine, config = deployment
    offset = next(_examples) * 1_000
    writer = ClickHouseEventStore(engine, tables=config.tables)
    shifted = [([_shifted(pair, offset) for pair in batch], race) for batch, race in deliveries]
    for batch, race in shifted:
        if not race:
            writer.append_many(batch)
            continue
        barrier = threading.Barrier(2)
        racers = [RacingStore(engine, barrier, tables=config.tables) for _ in range(2)]
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda racer, batch=batch: racer.append_many(batch), racers))
    reference = reference_of([batch for batch, _ in shifted])
    videos = [offset + n for n in range(1, 6)]
    got, want = writer.get_stats(videos), reference.get_stats(videos)
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
        mine_aff = writer.get_affinities(user_id, creators)
        for creator_id, value in reference.get_affinities(user_id, creators).items():
            assert math.isclose(mine_aff[creator_id], value, abs_tol=1e-9)


def test_reconcile_corrects_copies_no_writer_saw(clickhouse_engine: Engine) -> None:
    store = ClickHouseEventStore(clickhouse_engine)
    watch, share = (make_event("watch", completion=0.5), 1), (make_event("share", user_id=2), 1)
    for seq in (1, 100):
        _insert_copies(store, [watch, share], seq=seq)
    assert store.get_stats([1])[1].views == 2
    assert store.reconcile(since=EPOCH) == 2
    assert_same_statistics(store, reference_of([[watch, share]]), [1], [1, 2], [1])
    assert store.reconcile(since=EPOCH) == 2  # idempotent: the same corrections again
    assert store.get_stats([1])[1].views == 1
    assert store.reconcile(since=EPOCH + timedelta(days=1)) == 0  # other days untouched


def test_redeliveries_around_hour_boundaries_and_offsets_count_once(
    clickhouse_engine: Engine,
) -> None:
    """The duplicate check looks ids up under the hour of ``occurred_at`` that the view
    computed on the server; the client's hour must be the same one for every offset and
    at the edges of an hour, or a redelivery would be counted again."""
    store = ClickHouseEventStore(clickhouse_engine)
    india, newfoundland = (
        timezone(timedelta(hours=5, minutes=30)),
        timezone(-timedelta(hours=3, minutes=30)),
    )
    moments = [
        EPOCH + timedelta(hours=5, minutes=59, seconds=59),
        EPOCH + timedelta(hours=6),
        (EPOCH + timedelta(days=3, hours=23, minutes=59, seconds=59)).astimezone(india),
        (EPOCH + timedelta(days=4, minutes=30)).astimezone(newfoundland),
        EPOCH + timedelta(days=400, seconds=1),
    ]
    batch = [(make_event("watch", video_id=7, occurred_at=at), 1) for at in moments]
    assert store.append_many(batch) == len(batch)
    # Each redelivered alone, so each check reads only its own event's hour.
    assert [store.append(event, creator_id=1) for event, _ in batch] == [False] * len(batch)
    assert store.append_many(batch) == 0
    assert store.get_stats([7])[7].views == len(batch)


@pytest.mark.parametrize("timeout", [0, -1.0, math.nan, math.inf, True, "5"])
def test_reconcile_rejects_a_bad_sync_timeout(clickhouse_engine: Engine, timeout: Any) -> None:
    store = ClickHouseEventStore(clickhouse_engine)
    with pytest.raises(InvalidInputError) as info:
        store.reconcile(since=EPOCH, sync_timeout_seconds=timeout)
    assert info.value.field == "sync_timeout_seconds"


def test_same_id_later_time_is_a_duplicate(clickhouse_engine: Engine) -> None:
    # The example service stamps a retried watch with the time of the retry.
    store = ClickHouseEventStore(clickhouse_engine)
    first = make_event("watch", event_id="e-1", video_id=5, completion=0.5)
    again = first.model_copy(update={"occurred_at": first.occurred_at + timedelta(seconds=7)})
    assert store.append(first, creator_id=1) is True
    assert store.append(again, creator_id=1) is False
    assert store.get_stats([5])[5].views == 1


def _later(pairs: Sequence[Pair], seconds: int) -> list[Pair]:
    return [
        (
            event.model_copy(
                update={"occurred_at": event.occurred_at + timedelta(seconds=seconds)}
            ),
            c,
        )
        for event, c in pairs
    ]


def test_batches_redelivered_later_in_the_same_hour_count_once(clickhouse_engine: Engine) -> None:
    """Redeliveries stamped up to 50 minutes after their first delivery, within its hour,
    by ``append_many`` and by ``append_columns``, mixed with new events."""
    store = ClickHouseEventStore(clickhouse_engine)
    first = make_workload("hour-a", 40)
    fresh = make_workload("hour-b", 20)
    more = make_workload("hour-c", 20)
    assert all(event.occurred_at.minute < 10 for event, _ in [*first, *fresh, *more])
    assert store.append_many(first) == len(first)
    assert store.append_many([*_later(first[:20], 7), *fresh]) == len(fresh)
    assert store.append_columns(**as_columns([*more, *_later(first[20:], 50 * 60)])) == len(more)
    assert store.append_columns(**as_columns(_later(fresh, 600))) == 0
    assert store.append_many(_later(more, 1_800)) == 0
    reference = reference_of([first, fresh, more])
    assert_same_statistics(store, reference, range(1, 6), range(1, 6), [10, 11])
