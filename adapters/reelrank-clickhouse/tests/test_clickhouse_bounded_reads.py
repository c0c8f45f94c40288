"""Bounded-age reads of the ClickHouse event store (``stats_columns_within``): answered
from the held roll-up, since-sums, liked pairs and corrections with no round trip, equal
to the in-memory reference at a moment within the bound, and ``None`` whenever what the
store holds is older than that."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from ch_support import FineBuckets, batch_of, deliver
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reelrank_clickhouse import ClickHouseConfig, ClickHouseEventStore, connect, create_schema
from reelrank_clickhouse._event_store import _ChangedPairs, _SinceChunk
from reelrank_clickhouse._rows import event_columns
from reelrank_clickhouse._schema import FINE_BUCKET_SHIFT
from sqlalchemy.engine import Engine

from reelrank import (
    BoundedAgeEventStore,
    InMemoryEventStore,
    InvalidInputError,
    VideoStatsColumns,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

_VIDEOS = [1, 2, 3, 4]
_SECOND_NS = 1_000_000_000


class _Clock:
    """The store's clock in the test's fine buckets: just after the start of the
    bucket the test's writers are in, plus ``extra_ns``."""

    def __init__(self, buckets: FineBuckets) -> None:
        self.buckets = buckets
        self.extra_ns = 0

    def __call__(self) -> int:
        return (self.buckets.bucket << FINE_BUCKET_SHIFT) + 1 + self.extra_ns


def _store(engine: Engine, config: ClickHouseConfig | None = None) -> ClickHouseEventStore:
    """A store with the test's arrival numbers and clock, no settle time, and no
    background refresh (the test refreshes it with :func:`_refresh`)."""
    store = ClickHouseEventStore(
        engine, tables=config.tables if config else None, arrival_settle_seconds=0
    )
    buckets = FineBuckets()
    store._sequence = buckets  # type: ignore[assignment]
    store._clock_ns = _Clock(buckets)
    store._refresh_stop.set()
    return store


def _buckets(store: ClickHouseEventStore) -> FineBuckets:
    return store._sequence  # type: ignore[return-value]


def _clock(store: ClickHouseEventStore) -> _Clock:
    return store._clock_ns  # type: ignore[return-value]


def _settled(store: ClickHouseEventStore) -> None:
    for thread in (store._since_thread, store._liked_thread):
        if thread is not None:
            thread.join()


def _refresh(store: ClickHouseEventStore) -> None:
    """One pass of the background refresh, and the reads it starts."""
    store._refresh_held()
    _settled(store)


def _fold(store: ClickHouseEventStore) -> int:
    return store.fold_stats(until=_buckets(store).close_coarse())


def _same(got: VideoStatsColumns | None, want: VideoStatsColumns) -> None:
    assert got is not None
    assert got.video_ids.tolist() == want.video_ids.tolist()
    for name in ("views", "likes", "shares", "comments"):
        assert getattr(got, name).tolist() == getattr(want, name).tolist(), name
    np.testing.assert_allclose(got.completion_sum, want.completion_sum, atol=1e-9)


def _queries(store: ClickHouseEventStore) -> list[str]:
    """Every query ``store`` runs over its reading clients from now on."""
    queries: list[str] = []
    reader = store._clients.reader

    @contextmanager
    def recording() -> Iterator[Any]:
        with reader() as client:
            execute = client.execute

            def each(query: str, *args: Any, **kwargs: Any) -> Any:
                queries.append(query)
                return execute(query, *args, **kwargs)

            client.execute = each
            try:
                yield client
            finally:
                client.execute = execute

    store._clients.reader = recording  # type: ignore[method-assign]
    return queries


def test_none_before_anything_is_held_then_the_reference_with_no_query(
    clickhouse_engine: Engine,
) -> None:
    store = _store(clickhouse_engine)
    reference = InMemoryEventStore()
    assert isinstance(store, BoundedAgeEventStore)
    deliver(store, reference, batch_of(("watch", 1, 1), ("like", 1, 1), ("share", 2, 2)))
    assert store.stats_columns_within(_VIDEOS, max_age_seconds=3600) is None
    _refresh(store)  # no roll-up yet: nothing to hold
    assert store.stats_columns_within(_VIDEOS, max_age_seconds=3600) is None
    _fold(store)
    assert store.stats_columns_within(_VIDEOS, max_age_seconds=3600) is None
    deliver(store, reference, batch_of(("watch", 2, 1), ("like", 2, 2), ("comment", 1, 3)))
    _buckets(store).next_fine()
    deliver(store, reference, batch_of(("unlike", 1, 1), ("watch", 1, 4)))
    _refresh(store)
    _refresh(store)  # the since-sums are checked once they are there
    queries = _queries(store)
    _same(
        store.stats_columns_within([*_VIDEOS, 1], max_age_seconds=3600),
        reference.stats_columns(_VIDEOS),
    )
    assert queries == []
    assert store.stats_columns_within([], max_age_seconds=0) is not None


def test_an_event_older_than_the_bound_is_always_counted(clickhouse_engine: Engine) -> None:
    store = _store(clickhouse_engine)
    reference = InMemoryEventStore()
    clock = _clock(store)
    deliver(store, reference, batch_of(("watch", 1, 1), ("share", 1, 2)))
    _fold(store)
    deliver(store, reference, batch_of(("watch", 2, 1)))
    _refresh(store)
    _refresh(store)
    before = reference.stats_columns(_VIDEOS)
    _same(store.stats_columns_within(_VIDEOS, max_age_seconds=0), before)
    # A new batch, in the next bucket; the store has not read it yet.
    _buckets(store).next_fine()
    deliver(store, reference, batch_of(("watch", 3, 1), ("comment", 3, 2), ("like", 3, 3)))
    # Within seconds of the last check the counts of then may be returned...
    _same(store.stats_columns_within(_VIDEOS, max_age_seconds=5), before)
    # ...but not once the batch is older than the bound: then nothing is promised.
    clock.extra_ns = 3 * _SECOND_NS
    assert store.stats_columns_within(_VIDEOS, max_age_seconds=2) is None
    _refresh(store)
    _refresh(store)
    _same(store.stats_columns_within(_VIDEOS, max_age_seconds=2), reference.stats_columns(_VIDEOS))


def test_a_double_delivery_corrected_on_the_server_is_corrected_within_the_bound(
    clickhouse_engine: Engine,
) -> None:
    store = _store(clickhouse_engine)
    reference = InMemoryEventStore()
    clock = _clock(store)
    deliver(store, reference, batch_of(("watch", 1, 1)))
    _fold(store)
    _refresh(store)
    # Two writers stored the same share and watch, and died before their second check.
    copied = batch_of(("share", 2, 2), ("watch", 2, 2))
    columns = event_columns([event for event, _ in copied], _buckets(store).take(2))
    columns.append([creator_id for _, creator_id in copied])
    for _ in range(2):
        with store._write_lock:
            store._clients.writer().execute(store._queries.insert, columns, columnar=True)
    for event, creator_id in copied:
        reference.append(event, creator_id=creator_id)
    _refresh(store)
    _refresh(store)
    held = store.stats_columns_within([2], max_age_seconds=5)
    assert held is not None and (held.views[0], held.shares[0]) == (2, 2)  # as exact reads
    # The redelivery finds the copies and writes their corrections.
    assert store.append_many(copied) == 0
    assert store.get_stats([2])[2].shares == 1
    # Not read yet: the counts of the last check, until they are older than the bound.
    clock.extra_ns = 3 * _SECOND_NS
    assert store.stats_columns_within([2], max_age_seconds=2) is None
    _refresh(store)  # the store first sees the corrections: are their copies counted?
    assert store.stats_columns_within([2], max_age_seconds=2) is None
    _same(store.stats_columns_within([1], max_age_seconds=2), reference.stats_columns([1]))
    clock.extra_ns = 4 * _SECOND_NS
    _refresh(store)  # checked after the store saw them: they apply
    _same(store.stats_columns_within([1, 2], max_age_seconds=2), reference.stats_columns([1, 2]))


def test_after_a_new_roll_up_and_a_late_arrival(clickhouse_engine: Engine) -> None:
    store = _store(clickhouse_engine)
    reference = InMemoryEventStore()
    clock = _clock(store)
    buckets = _buckets(store)
    deliver(store, reference, batch_of(("watch", 1, 1), ("like", 1, 2)))
    _fold(store)
    first = buckets.bucket
    deliver(store, reference, batch_of(("like", 2, 2), ("share", 2, 1)))
    _refresh(store)
    _refresh(store)
    _same(store.stats_columns_within(_VIDEOS, max_age_seconds=1), reference.stats_columns(_VIDEOS))
    # A new roll-up: the store loads it and answers from it.
    assert _fold(store) > 0
    deliver(store, reference, batch_of(("unlike", 1, 2), ("watch", 3, 3)))
    _refresh(store)
    _refresh(store)
    assert store._held is not None and store._held.fold == buckets.coarse
    _same(store.stats_columns_within(_VIDEOS, max_age_seconds=1), reference.stats_columns(_VIDEOS))
    # A late batch into a bucket the store holds, as from a writer with a slow clock.
    buckets.late = buckets.bucket
    deliver(store, reference, batch_of(("watch", 4, 3), ("comment", 4, 4)))
    buckets.late = None
    clock.extra_ns = 3 * _SECOND_NS
    assert store.stats_columns_within(_VIDEOS, max_age_seconds=2) is None
    _refresh(store)  # the totals differ: the since-sums are dropped and read again
    _refresh(store)
    _same(store.stats_columns_within(_VIDEOS, max_age_seconds=2), reference.stats_columns(_VIDEOS))
    # And an event that arrives late before the roll-up's watermark ends the answers.
    buckets.late = first
    deliver(store, reference, batch_of(("share", 5, 1)))
    buckets.late = None
    clock.extra_ns = 6 * _SECOND_NS
    _refresh(store)
    assert store.stats_columns_within(_VIDEOS, max_age_seconds=2) is None


def test_bad_arguments_and_stores_that_hold_nothing(clickhouse_engine: Engine) -> None:
    store = _store(clickhouse_engine)
    for bad in (-1.0, float("nan"), float("inf"), "5", True):
        with pytest.raises(InvalidInputError, match="max_age_seconds"):
            store.stats_columns_within([1], max_age_seconds=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="video_ids"):
        store.stats_columns_within([0], max_age_seconds=1)
    for bad_refresh in (0, -1, float("nan"), True):
        with pytest.raises(InvalidInputError, match="bounded_refresh_seconds"):
            ClickHouseEventStore(clickhouse_engine, bounded_refresh_seconds=bad_refresh)
    for holds_nothing in (
        ClickHouseEventStore(clickhouse_engine, held_roll_up_videos=0),
        ClickHouseEventStore(clickhouse_engine, hold_arrivals=False),
    ):
        assert holds_nothing.stats_columns_within([1], max_age_seconds=3600) is None
        assert holds_nothing._refresh_thread is None


def test_bounded_reads_keep_the_held_data_fresh_until_closed(clickhouse_engine: Engine) -> None:
    """With the store's own clock and background refresh: answers come within the
    bound as events arrive, and close stops the thread."""
    store = ClickHouseEventStore(
        clickhouse_engine, arrival_settle_seconds=0, bounded_refresh_seconds=0.2
    )
    store._sequence = FineBuckets()  # type: ignore[assignment]
    reference = InMemoryEventStore()
    deliver(store, reference, batch_of(("watch", 1, 1), ("like", 1, 2)))
    _fold(store)
    deliver(store, reference, batch_of(("share", 2, 2), ("like", 3, 2)))

    def answer() -> VideoStatsColumns | None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = store.stats_columns_within(_VIDEOS, max_age_seconds=30)
            if found is not None and _equal(found, reference.stats_columns(_VIDEOS)):
                return found
            time.sleep(0.1)
        return found

    _same(answer(), reference.stats_columns(_VIDEOS))
    # Nothing but the thread reads the new batch.
    _buckets(store).next_fine()
    deliver(store, reference, batch_of(("unlike", 1, 2), ("comment", 3, 4)))
    _same(answer(), reference.stats_columns(_VIDEOS))
    thread = store._refresh_thread
    assert thread is not None and thread.is_alive()
    store.close(timeout=30)
    assert not thread.is_alive()
    assert store.stats_columns_within(_VIDEOS, max_age_seconds=30) is not None
    assert store._refresh_thread is thread  # closed: no new thread


# -- a stream of deliveries, checks and roll-ups ----------------------------------------

_KINDS = st.sampled_from(["watch", "share", "comment", "like", "unlike"])


@st.composite
def _steps(draw: st.DrawFn) -> list[tuple[str, list[tuple[str, int, int]]]]:
    steps = []
    for _ in range(draw(st.integers(3, 9))):
        action = draw(st.sampled_from(["batch", "batch", "next-bucket", "refresh", "fold"]))
        events = draw(
            st.lists(
                st.tuples(_KINDS, st.integers(1, 3), st.integers(1, 3)), min_size=1, max_size=6
            )
        )
        steps.append((action, events))
    return steps


@pytest.fixture(scope="module")
def stream_engines(
    clickhouse_server: Any,
) -> Iterator[Any]:
    """A new database with the schema per example (hypothesis runs many in one test)."""
    import itertools

    numbers = itertools.count()
    made: list[Engine] = []

    def engine() -> Engine:
        database = f"bounded_{next(numbers)}"
        clickhouse_server.execute(f"CREATE DATABASE {database}")
        config = ClickHouseConfig(
            port=clickhouse_server.tcp_port, database=database, send_receive_timeout_seconds=30.0
        )
        made.append(connect(config))
        create_schema(made[-1])
        return made[-1]

    yield engine
    for each in made:
        each.dispose()


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=_steps())
def test_a_stream_of_bounded_reads_matches_the_reference_at_some_moment_within_the_bound(
    stream_engines: Any, steps: Sequence[tuple[str, list[tuple[str, int, int]]]]
) -> None:
    """After every step, a bounded read with a generous bound either answers ``None``
    or equals the reference after some delivery since the last completed check (never
    older, never counting an event twice); right after a check, it answers."""
    store = _store(stream_engines())
    reference = InMemoryEventStore()
    deliver(store, reference, batch_of(("watch", 1, 1)))
    _fold(store)
    snapshots = [reference.stats_columns(_VIDEOS)]
    checked = 0  # the first snapshot the store must count, as of its last check
    for action, events in steps:
        if action == "next-bucket":
            _buckets(store).next_fine()
        elif action == "fold":
            _fold(store)
        elif action == "refresh":
            _refresh(store)
            _refresh(store)
            checked = len(snapshots) - 1
            _same(store.stats_columns_within(_VIDEOS, max_age_seconds=3600), snapshots[-1])
            continue
        else:
            deliver(store, reference, batch_of(*events))
            snapshots.append(reference.stats_columns(_VIDEOS))
        got = store.stats_columns_within(_VIDEOS, max_age_seconds=3600)
        if got is not None:
            assert any(_equal(got, each) for each in snapshots[checked:]), (got, snapshots)
    store.close(timeout=30)


def _equal(got: VideoStatsColumns, want: VideoStatsColumns) -> bool:
    try:
        _same(got, want)
    except AssertionError:
        return False
    return True


def test_settled_buckets_with_no_arrivals_are_held_so_sparse_arrivals_keep_answers_recent(
    clickhouse_engine: Engine,
) -> None:
    """With a settle time, a bucket that got no event is held (empty) once settled, so
    the first bucket not held keeps up with the clock between sparse arrivals."""
    store = ClickHouseEventStore(clickhouse_engine, arrival_settle_seconds=1.5)
    buckets = FineBuckets()
    store._sequence = buckets  # type: ignore[assignment]
    store._clock_ns = _Clock(buckets)
    store._refresh_stop.set()
    reference = InMemoryEventStore()
    deliver(store, reference, batch_of(("watch", 1, 1), ("share", 2, 2)))
    _fold(store)
    _refresh(store)
    _refresh(store)
    before = reference.stats_columns(_VIDEOS)
    _same(store.stats_columns_within(_VIDEOS, max_age_seconds=1), before)
    # Five quiet buckets, then a batch in the bucket of now: the buckets before it are
    # settled, have no arrivals, and are held; the batch may be left out (it is new).
    for _ in range(5):
        buckets.next_fine()
    deliver(store, reference, batch_of(("watch", 3, 1), ("comment", 3, 3)))
    _refresh(store)
    _refresh(store)
    since = store._since
    assert since is not None and since.unheld >= buckets.bucket - 2
    _same(store.stats_columns_within(_VIDEOS, max_age_seconds=2.5), before)
    # Once the batch's bucket is settled it is read, and counted.
    for _ in range(3):
        buckets.next_fine()
    _refresh(store)
    _refresh(store)
    after = reference.stats_columns(_VIDEOS)
    _same(store.stats_columns_within(_VIDEOS, max_age_seconds=2.5), after)


def test_since_sums_over_coarse_buckets_are_read_folded_with_like_counts_computed_ahead(
    clickhouse_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Arrivals over two coarse buckets since the roll-up (a like, then its unlike and
    other likes in the next) are held as one folded array of sums and the like counts
    now of the videos liked or unliked there, computed by the refresh: the bounded read
    looks each video up once, merges no pairs, and equals the reference."""
    store = _store(clickhouse_engine)
    reference = InMemoryEventStore()
    buckets = _buckets(store)
    deliver(store, reference, batch_of(("watch", 1, 1), ("like", 1, 2), ("like", 2, 2)))
    _fold(store)
    deliver(store, reference, batch_of(("like", 3, 2), ("watch", 3, 3), ("like", 3, 4)))
    buckets.coarse += 1  # the next coarse bucket, with no roll-up of the first
    buckets.fine = 0
    deliver(store, reference, batch_of(("unlike", 1, 2), ("unlike", 3, 4), ("like", 1, 3)))
    deliver(store, reference, batch_of(("watch", 2, 3), ("share", 2, 1), ("comment", 1, 4)))
    _refresh(store)
    _refresh(store)
    since, held = store._since, store._held
    assert since is not None and held is not None and len(since.chunks) == 2
    assert since.folded is not None and since.folded.fold == held.fold
    assert since.like_counts(held.fold).video_ids.tolist() == [2, 3, 4]

    def not_on_the_read_path(*args: Any) -> Any:
        raise AssertionError("the read merged chunks or pairs")

    monkeypatch.setattr(_SinceChunk, "add_to", not_on_the_read_path)
    monkeypatch.setattr(_ChangedPairs, "latest", not_on_the_read_path)
    _same(store.stats_columns_within(_VIDEOS, max_age_seconds=1), reference.stats_columns(_VIDEOS))
    store.close(timeout=30)
