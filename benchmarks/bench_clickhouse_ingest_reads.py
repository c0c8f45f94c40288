"""ClickHouse stats reads while events keep arriving, on loopback: a store that holds
what arrived since the roll-up (schema version 3's held since-sums, the default) next to
the same reads without them (``hold_arrivals=False``, the previous design: every read
reads the candidates' arrival rows of everything since the roll-up's watermark),
alternated call by call.

* reads of 10,000 candidates (1,000 in quick mode) over 10 M rolled-up events (300 k)
  after a fixed number of events since the watermark, with no writer running: 0, 1 M
  and 2.3 M (0, 100 k, 230 k), and a new store's first build of its since-sums (its
  thread reading everything since the watermark for every video);
* the same reads while a separate writer process inserts steadily with
  ``append_columns`` (10,000-event batches), as fast as it can and then at fixed rates
  (50,000 and 10,000 events/s; quick mode: as fast as it can, briefly): p50/p99 of
  each, the events since the watermark at the start and the end, the writer's rate;
* the floor that sharing the CPU with a writer sets: with a writer paced at 10,000
  events/s, held reads alternated with the cheapest reads of the same size any design
  makes through the same driver (the 10,000 candidate ids sent as an external table
  and echoed back; the held roll-up's rows of the candidates, one query), once with the
  writer at normal priority and once under ``nice -n 19``; the held reads are also
  split by whether they read like counts again from their pairs (a video with likes or
  unlikes since the store last read its count);
* the ingest cost of the fine arrival rows: a raw columnar insert of 10,000-event
  batches into tables with the version-3 view against the version-2 view, and
  ``append_many`` into the version-3 tables, alternated. Goal: at least 100,000
  events/s;
* the aggregate table's index granularity: the same events loaded into one database
  per granularity (8,192, ClickHouse's default, against 2,048, 1,024 and 256; quick
  mode 8,192 against 1,024; ``REELRANK_BENCH_CLICKHOUSE_GRANULARITIES`` and
  ``REELRANK_BENCH_CLICKHOUSE_GRANULE_EVENTS`` override), and alternated across them:
  the like counts of 30, 300 and 1,000 videos read again, one user's credit, a held
  read of the candidates, ``append_many`` and ``fold_stats``; then held reads of each
  under a writer paced at 10,000 events/s, the granularities taking turns;
* the bounded-age read (``stats_columns_within``, counts up to 10 s old from the
  store's memory) against the exact held read, alternated under a writer paced at
  10,000 events/s.

The loaded events have arrival numbers from 0, so one roll-up folds them all; the events
since are generated on the server with arrival numbers after the watermark and before
the clock's present, as writers would have written them. Skips when
``clickhouse-server`` or ``reelrank-clickhouse`` is not installed.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import os
import random
import statistics
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import QUICK, SUMMARY, interleaved, loadavg, p50_p99_ms

from reelrank import EngagementKind
from reelrank.testing import make_event

reelrank_clickhouse = pytest.importorskip("reelrank_clickhouse")
clickhouse_testing = pytest.importorskip("reelrank_clickhouse.testing")
clickhouse_driver = pytest.importorskip("clickhouse_driver")

pytestmark = pytest.mark.timeout(600 if QUICK else 3_600)

if clickhouse_testing.find_clickhouse_server() is None:
    pytest.skip("clickhouse-server is not installed", allow_module_level=True)

from reelrank_clickhouse._client import id_frame, numpy_columns  # noqa: E402
from reelrank_clickhouse._rows import event_columns  # noqa: E402
from reelrank_clickhouse._schema import (  # noqa: E402
    ARRIVAL_BUCKET_SHIFT,
    FINE_PER_COARSE_BITS,
    Tag,
)

LOADED_EVENTS = 300_000 if QUICK else 10_000_000
VIDEOS = 20_000 if QUICK else 100_000
USERS = 10_000 if QUICK else 200_000
CANDIDATES = 1_000 if QUICK else 10_000
BACKLOGS = (0, 100_000, 230_000) if QUICK else (0, 1_000_000, 2_300_000)
READ_ROUNDS = int(os.environ.get("REELRANK_BENCH_CLICKHOUSE_READ_ROUNDS", 15 if QUICK else 30))
# The writer's runs: (events/s, 0 for as fast as it can; seconds; how the reads run).
# "alternated": held and without, turn by turn; "alone": the held store only, no
# baseline read loading the server between its reads; "floor" and "floor, niced
# writer": held reads alternated with the floor baselines, the writer at normal
# priority or under ``nice -n 19``.
WRITER_RUNS = (
    ((0, 5.0, "alternated"), (10_000, 5.0, "floor"), (10_000, 5.0, "floor, niced writer"))
    if QUICK
    else (
        (0, 40.0, "alternated"),
        (50_000, 40.0, "alternated"),
        (10_000, 40.0, "alternated"),
        (10_000, 40.0, "alone"),
        (50_000, 40.0, "alone"),
        (10_000, 40.0, "floor"),
        (10_000, 40.0, "floor, niced writer"),
    )
)
WRITER_BATCH = 10_000
PAUSE_BETWEEN_READS = 0.02  # a worker reading a few times a second, not back to back
INSERT_ROUNDS = 6 if QUICK else 12
READ_GOAL_MS = 50.0
INGEST_GOAL = 100_000
LOAD_CHUNK = 500_000
LOAD_START = datetime(2026, 1, 1, tzinfo=UTC)
_CANDIDATES = random.Random(7).sample(range(1, VIDEOS + 1), CANDIDATES)

_KIND_ENUM = "Enum8('watch' = 1, 'like' = 2, 'unlike' = 3, 'share' = 4, 'comment' = 5)"
# Events numbered from ``start``: kinds cycle watch, watch, watch, like, share, comment,
# unlike; arrival numbers ``seq_base + (number - start) * seq_step``.
_GENERATE = f"""INSERT INTO events (event_id, kind, user_id, video_id, creator_id, occurred_at,
                    occurred_us, completion, channel, seq)
SELECT hex(cityHash64(number)),
       CAST(arrayElement(['watch', 'watch', 'watch', 'like', 'share', 'comment', 'unlike'],
                         number % 7 + 1) AS {_KIND_ENUM}),
       1 + cityHash64(number, 1) % {USERS},
       1 + cityHash64(number, 2) % {VIDEOS} AS video,
       1 + video % 500,
       toDateTime('{LOAD_START:%Y-%m-%d %H:%M:%S}', 'UTC') + intDiv(number, 4),
       0,
       if(number % 7 < 3, (number % 10) / 10, NULL),
       if(number % 7 = 4, 'link', NULL),
       toUInt64({{seq_base}}) + toUInt64(number - {{start}}) * {{seq_step}}
FROM numbers({{start}}, {{count}})"""

# The writer process: ``append_columns`` of WRITER_BATCH-event batches built before its
# clock starts, at a rate (0: as fast as it can) for some seconds; prints its events/s.
_WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import reelrank_clickhouse

    port, database, rate, seconds, batch, videos, users, prefix = sys.argv[1:]
    rate, seconds, batch = int(rate), float(seconds), int(batch)
    videos, users = int(videos), int(users)
    config = reelrank_clickhouse.ClickHouseConfig(
        port=int(port), database=database, send_receive_timeout_seconds=120.0
    )
    store = reelrank_clickhouse.ClickHouseEventStore(reelrank_clickhouse.connect(config))
    kinds = np.array(["watch", "watch", "watch", "like", "share", "comment", "unlike"])
    rng = np.random.default_rng(int(prefix, 16) % 2**32)

    def columns(number):
        n = np.arange(batch)
        video = rng.integers(1, videos + 1, batch)
        kind = kinds[n % 7]
        watch = kind == "watch"
        return {
            "event_id": np.array([f"{prefix}-{number}-{i}" for i in range(batch)], dtype=object),
            "kind": kind.astype(object),
            "user_id": rng.integers(1, users + 1, batch),
            "video_id": video,
            "creator_id": 1 + video % 500,
            "occurred_at": np.full(batch, np.datetime64("now", "us")),
            "completion": np.where(watch, (n % 10) / 10, np.nan),
            "channel": np.where(kind == "share", "link", None).astype(object),
        }

    planned = int(seconds * rate / batch) if rate else 10**9
    ready = [columns(i) for i in range(min(planned, 40))]
    written, started, number = 0, time.perf_counter(), 0
    while time.perf_counter() - started < seconds and number < planned:
        frame = dict(ready[number % len(ready)])
        frame["event_id"] = np.array(
            [f"{prefix}-{number}-{i}" for i in range(batch)], dtype=object
        )
        written += store.append_columns(**frame)
        number += 1
        if rate:
            time.sleep(max(0.0, started + number * batch / rate - time.perf_counter()))
    print(written / (time.perf_counter() - started), flush=True)
    """
)


def _now_ns() -> int:
    return time.time_ns()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    directory: Path = tmp_path_factory.mktemp("bench-clickhouse-ingest-reads")
    with clickhouse_testing.ClickHouseServer(directory) as started:
        started.execute("CREATE DATABASE bench")
        config = reelrank_clickhouse.ClickHouseConfig(
            port=started.tcp_port,
            database="bench",
            send_receive_timeout_seconds=600.0,
            max_execution_seconds=600,
        )
        engine = reelrank_clickhouse.connect(config)
        reelrank_clickhouse.create_schema(engine)
        client = clickhouse_driver.Client.from_url(
            engine.dialect.create_connect_args(engine.url)[0][0]
        )
        began = time.perf_counter()
        for start in range(0, LOADED_EVENTS, LOAD_CHUNK):
            count = min(LOAD_CHUNK, LOADED_EVENTS - start)
            client.execute(_GENERATE.format(start=start, count=count, seq_base=start, seq_step=1))
        SUMMARY.append(
            f"clickhouse ingest+reads: load of {LOADED_EVENTS:,} events by INSERT ... SELECT "
            f"{time.perf_counter() - began:.1f} s; loadavg {loadavg()}"
        )
        yield started, config, engine, client
        client.disconnect()
        engine.dispose()


def _since_watermark(client: Any, fold: int) -> int:
    """Events that arrived since roll-up ``fold``'s watermark."""
    return int(
        client.execute(
            "SELECT countMerge(events) FROM event_aggregates "
            f"WHERE tag = {Tag.FINE_ARRIVED} AND a >= {fold << FINE_PER_COARSE_BITS}"
        )[0][0]
    )


def _built(store: Any) -> float:
    """Seconds of a new store's first read plus its since-sums' build."""
    began = time.perf_counter()
    store.stats_columns(_CANDIDATES)
    thread = store._since_thread
    if thread is not None:
        thread.join()
    return time.perf_counter() - began


def _shown(figures: tuple[float, float]) -> str:
    return f"p50 {figures[0]:.1f} / p99 {figures[1]:.1f} ms"


def _compare(held: Any, plain: Any, rounds: int) -> tuple[tuple[float, float], ...]:
    """p50/p99 of the two stores' reads, alternated; both give the same counts."""
    first, second = held.stats_columns(_CANDIDATES), plain.stats_columns(_CANDIDATES)
    assert np.array_equal(first.views, second.views) and np.array_equal(first.likes, second.likes)
    samples = interleaved(
        [lambda: held.stats_columns(_CANDIDATES), lambda: plain.stats_columns(_CANDIDATES)],
        rounds,
        rotate=True,
    )
    return p50_p99_ms(samples[0]), p50_p99_ms(samples[1])


def test_reads_after_events_since_the_watermark(benchmark: Any, server: Any) -> None:
    _, _, engine, client = server
    store = reelrank_clickhouse.ClickHouseEventStore(engine)
    until = datetime.now(UTC) - timedelta(seconds=5)
    assert store.fold_stats(until=until) > 0
    fold = int(client.execute(store._queries.folds)[0][0])
    watermark_ns = fold << ARRIVAL_BUCKET_SHIFT
    plain = reelrank_clickhouse.ClickHouseEventStore(engine, hold_arrivals=False)
    generated = 0
    extra: dict[str, float] = {}
    for backlog in BACKLOGS:
        count = backlog - generated
        if count:
            # Arrival numbers spread from the watermark to a few seconds ago.
            step = max(1, (_now_ns() - 3_000_000_000 - watermark_ns) // backlog)
            # In chunks: one insert of over a million events outgrows the view's memory.
            for offset in range(0, count, LOAD_CHUNK):
                client.execute(
                    _GENERATE.format(
                        start=LOADED_EVENTS + generated + offset,
                        count=min(LOAD_CHUNK, count - offset),
                        seq_base=watermark_ns + (generated + offset) * step,
                        seq_step=step,
                    )
                )
            generated = backlog
        since = _since_watermark(client, fold)
        held = reelrank_clickhouse.ClickHouseEventStore(engine)
        build_seconds = _built(held)
        held_figures, plain_figures = _compare(held, plain, READ_ROUNDS)
        SUMMARY.append(
            f"clickhouse stats of {CANDIDATES:,} candidates, {LOADED_EVENTS:,} rolled up, "
            f"{since:,} events since the watermark, no writer: holding them "
            f"{_shown(held_figures)}; without (every read reads them) {_shown(plain_figures)} "
            f"(held / without = {held_figures[0] / plain_figures[0]:.2f}x at p50, "
            f"{held_figures[1] / plain_figures[1]:.2f}x at p99); a new store's first read "
            f"plus its build of the since-sums {build_seconds * 1e3:.0f} ms; "
            f"{READ_ROUNDS} rounds; loadavg {loadavg()}"
        )
        extra.update(
            {
                f"since_{since}_held_p50_ms": held_figures[0],
                f"since_{since}_held_p99_ms": held_figures[1],
                f"since_{since}_without_p50_ms": plain_figures[0],
                f"since_{since}_without_p99_ms": plain_figures[1],
                f"since_{since}_build_ms": build_seconds * 1e3,
            }
        )
    benchmark.extra_info.update(extra)
    benchmark.pedantic(lambda: store.stats_columns(_CANDIDATES), rounds=3, iterations=1)


def _writer(server: Any, rate: int, seconds: float, *, niced: bool) -> subprocess.Popen[str]:
    started, config, _, _ = server
    return subprocess.Popen(
        [
            *(("nice", "-n", "19") if niced else ()),
            sys.executable,
            "-c",
            _WRITER,
            str(started.tcp_port),
            config.database,
            str(rate),
            str(seconds),
            str(WRITER_BATCH),
            str(VIDEOS),
            str(USERS),
            uuid.uuid4().hex[:8],
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


def _floor_reads(store: Any, fold: int) -> dict[str, Callable[[], Any]]:
    """The cheapest reads of the held read's size through the same driver and pool: the
    candidate ids sent as an external table and echoed back, and the held roll-up's
    rows of the candidates in one query."""
    ids = np.array(_CANDIDATES, dtype=np.int64)

    def echo() -> None:
        with store._clients.reader() as client:
            echoed = numpy_columns(
                client, "SELECT id FROM ids", external_tables=[id_frame("ids", "id", "UInt64", ids)]
            )
        assert len(echoed[0]) == CANDIDATES

    def roll_up_rows() -> None:
        with store._clients.reader() as client:
            numpy_columns(
                client,
                "SELECT video_id, views, completion_sum, likes, shares, comments "
                "FROM event_stats_rollup WHERE fold = %(fold)s AND video_id GLOBAL IN ids",
                {"fold": fold},
                external_tables=[id_frame("ids", "id", "UInt64", ids)],
            )

    return {"ids echoed": echo, "roll-up rows": roll_up_rows}


def test_reads_while_a_writer_inserts(benchmark: Any, server: Any) -> None:
    """After the case above: the roll-up it made stays the newest, so what the writer
    adds comes on top of its backlog since the watermark."""
    _, _, engine, client = server
    fold = int(client.execute("SELECT max(fold) FROM event_stats_rollup")[0][0])
    plain = reelrank_clickhouse.ClickHouseEventStore(engine, hold_arrivals=False)
    extra: dict[str, float] = {}
    for rate, seconds, mode in WRITER_RUNS:
        held = reelrank_clickhouse.ClickHouseEventStore(engine)
        _built(held)
        plain.stats_columns(_CANDIDATES)
        calls: dict[str, Callable[[], Any]] = {
            "held": functools.partial(held.stats_columns, _CANDIDATES)
        }
        if mode == "alternated":
            calls["without"] = functools.partial(plain.stats_columns, _CANDIDATES)
        elif mode.startswith("floor"):
            calls.update(_floor_reads(held, fold))
        names = list(calls)
        before = _since_watermark(client, fold)
        writer = _writer(server, rate, seconds, niced=mode.endswith("niced writer"))
        samples: dict[str, list[float]] = {name: [] for name in names}
        # Held reads that read like counts again from their pairs, and those that did not.
        liked: dict[bool, list[float]] = {True: [], False: []}
        loads = []
        for turn in itertools.count():
            if writer.poll() is not None:
                break
            name = names[turn % len(names)]
            likes_before = held._likes_since
            began = time.perf_counter()
            calls[name]()
            samples[name].append(time.perf_counter() - began)
            if name == "held":
                liked[held._likes_since is not likes_before].append(samples[name][-1])
            if turn % 50 == 0:
                loads.append(os.getloadavg()[0])
            time.sleep(PAUSE_BETWEEN_READS)
        output, _ = writer.communicate()
        achieved = float(output.strip().splitlines()[-1])
        after = _since_watermark(client, fold)
        assert np.array_equal(
            held.stats_columns(_CANDIDATES).views, plain.stats_columns(_CANDIDATES).views
        )
        figures = {name: p50_p99_ms(samples[name]) for name in names}
        held_figures = figures["held"]
        label = "as fast as it can" if rate == 0 else f"paced at {rate:,}/s"
        if mode.endswith("niced writer"):
            label += " under nice -n 19"
        against = "; ".join(
            f"{name} {_shown(figures[name])} ({len(samples[name])} reads; held / {name} = "
            f"{held_figures[0] / figures[name][0]:.2f}x at p50, "
            f"{held_figures[1] / figures[name][1]:.2f}x at p99)"
            for name in names[1:]
        )
        split = "; ".join(
            f"held reads {'that read' if again else 'that did not read'} like counts again: "
            + (
                f"{_shown(p50_p99_ms(liked[again]))} ({len(liked[again])})"
                if liked[again]
                else "none"
            )
            for again in (False, True)
        )
        SUMMARY.append(
            f"clickhouse stats of {CANDIDATES:,} candidates while a writer process inserts "
            f"({label}, {WRITER_BATCH:,}-event batches, achieved {achieved:,.0f} events/s "
            f"over {seconds:.0f} s; reads: {mode}): holding what arrived since "
            f"{_shown(held_figures)} ({len(samples['held'])} reads); "
            f"{against or 'no other reads in between'}; {split}; events since the "
            f"watermark {before:,} at the start, {after:,} at the end; goal p99 < "
            f"{READ_GOAL_MS:.0f} ms held: "
            f"{'MET' if held_figures[1] < READ_GOAL_MS else 'NOT MET'}; "
            f"1-minute loadavg during the run {min(loads):.2f}-{max(loads):.2f}; "
            f"loadavg {loadavg()}"
        )
        key = f"writer_{'max' if rate == 0 else rate}_{mode.replace(', ', '_').replace(' ', '_')}"
        extra.update(
            {
                f"{key}_events_per_s": achieved,
                f"{key}_since_at_end": after,
                **{
                    f"{key}_{name.replace(' ', '_')}_p{which}_ms": figures[name][index]
                    for name in names
                    for index, which in enumerate((50, 99))
                },
            }
        )
    benchmark.extra_info.update(extra)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


_numbers = itertools.count(0)
_KINDS = (
    EngagementKind.WATCH,
    EngagementKind.WATCH,
    EngagementKind.WATCH,
    EngagementKind.LIKE,
    EngagementKind.SHARE,
    EngagementKind.COMMENT,
    EngagementKind.UNLIKE,
)


def _events(count: int) -> list[Any]:
    now = datetime.now(UTC)
    made = []
    for _ in range(count):
        number = next(_numbers)
        kind = _KINDS[number % len(_KINDS)]
        extra = {"completion": (number % 10) / 10} if kind is EngagementKind.WATCH else {}
        video_id = 1 + number % VIDEOS
        event = make_event(
            kind,
            user_id=1 + number % USERS,
            video_id=video_id,
            occurred_at=now - timedelta(seconds=number % 60),
            event_id=uuid.uuid4().hex,
            **extra,
        )
        made.append((event, 1 + video_id % 500))
    return made


def test_ingest_with_fine_arrival_rows(benchmark: Any, server: Any) -> None:
    """Into two new databases, so neither side's inserts meet the other's history (the
    merges of the loaded events)."""
    started, config, _, _ = server
    engines, clients = [], []
    for database in ("ingest_v3", "ingest_v2"):
        started.execute(f"CREATE DATABASE {database}")
        each = reelrank_clickhouse.connect(config.model_copy(update={"database": database}))
        reelrank_clickhouse.create_schema(each)
        engines.append(each)
        clients.append(
            clickhouse_driver.Client.from_url(each.dialect.create_connect_args(each.url)[0][0])
        )
    client, client_v2 = clients
    client_v2.execute("DROP TABLE event_aggregates_mv")
    # The version-2 view (coarse arrival rows), for the ingest baseline.
    client_v2.execute(clickhouse_testing.older_aggregates_view(2))
    store = reelrank_clickhouse.ClickHouseEventStore(engines[0])
    size = 10_000
    pending = [_events(size) for _ in range(3 * INSERT_ROUNDS + 1)]
    insert = store._queries.insert

    def raw(into: Any) -> None:
        pairs = pending.pop()
        columns = event_columns([event for event, _ in pairs], time.time_ns())
        columns.append([creator for _, creator in pairs])
        into.execute(insert, columns, columnar=True)

    store.append_many(pending.pop())  # its client connects before the clock starts
    samples = interleaved(
        [lambda: raw(client), lambda: raw(client_v2), lambda: store.append_many(pending.pop())],
        INSERT_ROUNDS,
        rotate=True,
    )
    v3, v2, append = (statistics.median(each) for each in samples)
    SUMMARY.append(
        f"clickhouse insert of {size:,}-event batches: raw columnar INSERT into schema 3's "
        f"view (fine arrival rows) {size / v3:,.0f} events/s, into schema 2's "
        f"{size / v2:,.0f} events/s (3 / 2 = {v3 / v2:.2f}x time); append_many into schema 3 "
        f"{size / append:,.0f} events/s (goal {INGEST_GOAL:,}/s: "
        f"{'MET' if size / append >= INGEST_GOAL else 'NOT MET'}); {INSERT_ROUNDS} rounds "
        f"each, alternated; loadavg {loadavg()}"
    )
    benchmark.extra_info.update(
        {
            "raw_schema_3_events_per_s": size / v3,
            "raw_schema_2_events_per_s": size / v2,
            "append_many_events_per_s": size / append,
        }
    )
    for each, its_engine in zip(clients, engines, strict=True):
        each.disconnect()
        its_engine.dispose()
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


# The aggregate table's index granularities compared (the first is ClickHouse's default,
# the adapter's before it was a setting), the events loaded into each copy, and each
# writer run's seconds.
GRANULARITIES = tuple(
    int(each)
    for each in os.environ.get(
        "REELRANK_BENCH_CLICKHOUSE_GRANULARITIES", "8192,1024" if QUICK else "8192,2048,1024,256"
    ).split(",")
)
GRANULE_EVENTS = int(os.environ.get("REELRANK_BENCH_CLICKHOUSE_GRANULE_EVENTS", LOADED_EVENTS))
GRANULE_WRITER_SECONDS = 5.0 if QUICK else 30.0
GRANULE_WRITER_ROUNDS = 1 if QUICK else 2
LIKE_REREADS = (30, 300, 1_000)


def _timed_rows(client: Any, query: str, *args: Any, **kwargs: Any) -> tuple[float, int]:
    """Seconds of one query through ``client`` and the rows the server read for it."""
    began = time.perf_counter()
    numpy_columns(client, query, *args, **kwargs)
    return time.perf_counter() - began, int(client.last_query.progress.rows)


def test_index_granularity(benchmark: Any, server: Any) -> None:
    """The same events loaded into one database per aggregate-table granularity; every
    read alternated across them, call by call; then held reads of each under a writer
    paced at 10,000 events/s, the granularities taking turns."""
    started, config, _, _ = server
    stores: dict[int, Any] = {}
    clients: dict[int, Any] = {}
    engines = []
    for granularity in GRANULARITIES:
        database = f"granules_{granularity}"
        started.execute(f"CREATE DATABASE {database}")
        each_config = config.model_copy(
            update={"database": database, "aggregates_index_granularity": granularity}
        )
        engine = reelrank_clickhouse.connect(each_config)
        engines.append(engine)
        reelrank_clickhouse.create_schema(engine, each_config)
        client = clickhouse_driver.Client.from_url(
            engine.dialect.create_connect_args(engine.url)[0][0]
        )
        for start in range(0, GRANULE_EVENTS, LOAD_CHUNK):
            count = min(LOAD_CHUNK, GRANULE_EVENTS - start)
            client.execute(_GENERATE.format(start=start, count=count, seq_base=start, seq_step=1))
        clients[granularity] = client
        stores[granularity] = reelrank_clickhouse.ClickHouseEventStore(engine)
    until = datetime.now(UTC) - timedelta(seconds=5)
    folds = interleaved(
        [functools.partial(stores[g].fold_stats, until=until) for g in GRANULARITIES], 1
    )
    for granularity in GRANULARITIES:
        _built(stores[granularity])
    lines = [
        f"fold_stats of {GRANULE_EVENTS:,} events: "
        + ", ".join(f"{g} {s[0] * 1e3:.0f} ms" for g, s in zip(GRANULARITIES, folds, strict=True))
    ]
    extra: dict[str, float] = {}
    picker = random.Random(11)
    # At most the store's few-videos limit: the query it sends with the ids inline.
    like_reread = stores[GRANULARITIES[0]]._queries.likes_now_of_few
    for videos in LIKE_REREADS:
        chosen = np.array(sorted(picker.sample(range(1, VIDEOS + 1), videos)), dtype=np.int64)
        read_rows: dict[int, int] = {}

        def reread(granularity: int, chosen: Any = chosen, read_rows: Any = read_rows) -> None:
            _, read_rows[granularity] = _timed_rows(
                clients[granularity], like_reread, {"videos": tuple(chosen.tolist())}
            )

        samples = interleaved(
            [functools.partial(reread, g) for g in GRANULARITIES], READ_ROUNDS, rotate=True
        )
        lines.append(_by_granularity(f"like re-read of {videos:,} videos", samples, read_rows))
        extra.update(
            {
                f"like_reread_{videos}_{g}_p50_ms": p50_p99_ms(s)[0]
                for g, s in zip(GRANULARITIES, samples, strict=True)
            }
        )
    affinity_rows: dict[int, int] = {}

    def affinity(granularity: int) -> None:
        _, affinity_rows[granularity] = _timed_rows(
            clients[granularity],
            stores[granularity]._queries.credit,
            {"user_id": 1 + picker.randrange(USERS)},
        )

    samples = interleaved(
        [functools.partial(affinity, g) for g in GRANULARITIES], READ_ROUNDS, rotate=True
    )
    lines.append(_by_granularity("one user's credit (affinity) read", samples, affinity_rows))
    samples = interleaved(
        [functools.partial(stores[g].stats_columns, _CANDIDATES) for g in GRANULARITIES],
        READ_ROUNDS,
        rotate=True,
    )
    lines.append(_by_granularity(f"held read of {CANDIDATES:,} candidates, no writer", samples))
    pending = [_events(10_000) for _ in range(len(GRANULARITIES) * (INSERT_ROUNDS + 1))]
    for granularity in GRANULARITIES:
        stores[granularity].append_many(pending.pop())  # connects before the clock starts
    samples = interleaved(
        [lambda g=g: stores[g].append_many(pending.pop()) for g in GRANULARITIES],
        INSERT_ROUNDS,
        rotate=True,
    )
    lines.append(
        "append_many of 10,000-event batches: "
        + ", ".join(
            f"{g} {10_000 / statistics.median(s):,.0f} events/s "
            f"({statistics.median(s) / statistics.median(samples[0]):.2f}x time)"
            for g, s in zip(GRANULARITIES, samples, strict=True)
        )
    )
    held: dict[int, list[float]] = {g: [] for g in GRANULARITIES}
    reread_held: dict[int, list[float]] = {g: [] for g in GRANULARITIES}
    loads = []
    for _ in range(GRANULE_WRITER_ROUNDS):
        for granularity in GRANULARITIES:
            store = stores[granularity]
            writer = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _WRITER,
                    str(started.tcp_port),
                    f"granules_{granularity}",
                    "10000",
                    str(GRANULE_WRITER_SECONDS),
                    str(WRITER_BATCH),
                    str(VIDEOS),
                    str(USERS),
                    uuid.uuid4().hex[:8],
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            while writer.poll() is None:
                likes_before = store._likes_since
                began = time.perf_counter()
                store.stats_columns(_CANDIDATES)
                held[granularity].append(time.perf_counter() - began)
                if store._likes_since is not likes_before:
                    reread_held[granularity].append(held[granularity][-1])
                loads.append(os.getloadavg()[0])
                time.sleep(PAUSE_BETWEEN_READS)
            writer.communicate()
    lines.append(
        f"held reads under a writer paced at 10,000 events/s ({GRANULE_WRITER_ROUNDS} x "
        f"{GRANULE_WRITER_SECONDS:.0f} s per granularity, in turns): "
        + "; ".join(
            f"{g} {_shown(p50_p99_ms(held[g]))} ({len(held[g])} reads; goal p99 < "
            f"{READ_GOAL_MS:.0f} ms: "
            f"{'MET' if p50_p99_ms(held[g])[1] < READ_GOAL_MS else 'NOT MET'}"
            + (
                f"; those that read like counts again {_shown(p50_p99_ms(reread_held[g]))}, "
                f"{len(reread_held[g])})"
                if reread_held[g]
                else ")"
            )
            for g in GRANULARITIES
        )
        + f"; 1-minute loadavg during the runs {min(loads):.2f}-{max(loads):.2f}"
    )
    for g in GRANULARITIES:
        extra[f"writer_10000_held_{g}_p99_ms"] = p50_p99_ms(held[g])[1]
    SUMMARY.extend(
        f"clickhouse aggregate-table index granularity {', '.join(map(str, GRANULARITIES))} "
        f"({GRANULE_EVENTS:,} events loaded, {READ_ROUNDS} rounds alternated): {line}; "
        f"loadavg {loadavg()}"
        for line in lines
    )
    benchmark.extra_info.update(extra)
    for client in clients.values():
        client.disconnect()
    for engine in engines:
        engine.dispose()
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


def _by_granularity(
    what: str, samples: list[list[float]], read_rows: dict[int, int] | None = None
) -> str:
    """One summary line: p50/p99 per granularity, its ratio to the first's p50, and the
    rows the server read for the last call."""
    base = p50_p99_ms(samples[0])[0]
    return f"{what}: " + ", ".join(
        f"{g} {_shown(p50_p99_ms(s))} ({p50_p99_ms(s)[0] / base:.2f}x at p50"
        + (f", {read_rows[g]:,} rows read" if read_rows else "")
        + ")"
        for g, s in zip(GRANULARITIES, samples, strict=True)
    )


LIKE_PAIRS_WRITER_SECONDS = 5.0 if QUICK else 40.0
LIKE_PAIRS_QUIET_ROUNDS = 10 if QUICK else 40


def _like_rereads(store: Any) -> list[str]:
    """The queries reading like counts again that ``store``'s reads send from now on."""
    sent: list[str] = []
    reader = store._clients.reader
    again = (store._queries.likes_now, store._queries.likes_now_of_few)

    @contextlib.contextmanager
    def recording() -> Iterator[Any]:
        with reader() as client:
            execute = client.execute

            def each(query: str, *args: Any, **kwargs: Any) -> Any:
                if query in again:
                    sent.append(query)
                return execute(query, *args, **kwargs)

            client.execute = each
            try:
                yield client
            finally:
                client.execute = execute

    store._clients.reader = recording
    return sent


def test_like_counts_from_held_pairs_under_a_writer(benchmark: Any, server: Any) -> None:
    """Schema version 4: a store holding the pairs liked at the roll-up's watermark
    (the default) against one that does not (``held_like_pairs=0``, reading like
    counts again from whole videos' pairs), both holding what arrived since, their reads
    alternated under a writer paced at 10,000 events/s; the time of a full roll-up and
    the load time and size of the liked pairs; before the writer, both alternated with
    nothing arriving. In quick mode (CI) it also checks that
    the holding store read no like count again."""
    _, _, engine, client = server
    store = reelrank_clickhouse.ClickHouseEventStore(engine)
    began = time.perf_counter()
    folded = store.fold_stats(until=datetime.now(UTC) - timedelta(seconds=5), incremental=False)
    fold_seconds = time.perf_counter() - began
    fold = int(client.execute(store._queries.folds)[0][0])
    held = reelrank_clickhouse.ClickHouseEventStore(engine)
    plain = reelrank_clickhouse.ClickHouseEventStore(engine, held_like_pairs=0)
    _built(plain)
    _built(held)  # loads the roll-up, then starts the liked pairs' read
    began = time.perf_counter()
    thread = held._liked_thread
    assert thread is not None
    thread.join()
    load_seconds = time.perf_counter() - began
    liked = held._liked
    assert liked is not None and liked.fold == fold
    held_bytes = liked.keys.nbytes + liked.video_ids.nbytes + liked.counts.nbytes
    before = _since_watermark(client, fold)
    stores = {"held pairs": held, "re-read": plain}
    # A quiet store first: what the path costs when nothing arrives.
    quiet: dict[str, list[float]] = {"held pairs": [], "re-read": []}
    quiet_loads = []
    for turn in range(2 * LIKE_PAIRS_QUIET_ROUNDS):
        name = ("held pairs", "re-read")[turn % 2]
        began = time.perf_counter()
        stores[name].stats_columns(_CANDIDATES)
        quiet[name].append(time.perf_counter() - began)
        quiet_loads.append(os.getloadavg()[0])
        time.sleep(PAUSE_BETWEEN_READS)
    quiet_mine, quiet_baseline = (p50_p99_ms(quiet[name]) for name in stores)
    writer = _writer(server, 10_000, LIKE_PAIRS_WRITER_SECONDS, niced=False)
    samples: dict[str, list[float]] = {"held pairs": [], "re-read": []}
    rereads = {name: _like_rereads(store) for name, store in stores.items()}
    reread: dict[str, int] = dict.fromkeys(stores, 0)  # reads that read like counts again
    loads = []
    for turn in itertools.count():
        if writer.poll() is not None:
            break
        name = ("held pairs", "re-read")[turn % 2]
        rereads_before = len(rereads[name])
        began = time.perf_counter()
        stores[name].stats_columns(_CANDIDATES)
        samples[name].append(time.perf_counter() - began)
        if len(rereads[name]) != rereads_before:
            reread[name] += 1
        if turn % 50 == 0:
            loads.append(os.getloadavg()[0])
        time.sleep(PAUSE_BETWEEN_READS)
    output, _ = writer.communicate()
    achieved = float(output.strip().splitlines()[-1])
    after = _since_watermark(client, fold)
    first, second = held.stats_columns(_CANDIDATES), plain.stats_columns(_CANDIDATES)
    assert np.array_equal(first.likes, second.likes) and np.array_equal(first.views, second.views)
    if QUICK:
        assert not rereads["held pairs"]  # no like count read again
    figures = {name: p50_p99_ms(each) for name, each in samples.items()}
    mine, baseline = figures["held pairs"], figures["re-read"]
    SUMMARY.append(
        f"clickhouse like counts of {CANDIDATES:,} candidates from held liked pairs: a full "
        f"fold_stats of {LOADED_EVENTS:,} events ({folded:,} videos) {fold_seconds:.1f} s; the "
        f"liked pairs at the watermark ({liked.keys.shape[0]:,} pairs) loaded in "
        f"{load_seconds * 1e3:.0f} ms, {held_bytes / 1e6:.1f} MB; with no writer, alternated: "
        f"held pairs {_shown(quiet_mine)}, held_like_pairs=0 {_shown(quiet_baseline)} "
        f"({LIKE_PAIRS_QUIET_ROUNDS} reads each; "
        f"{quiet_mine[0] / quiet_baseline[0]:.2f}x at p50, "
        f"{quiet_mine[1] / quiet_baseline[1]:.2f}x at p99; 1-minute loadavg "
        f"{min(quiet_loads):.2f}-{max(quiet_loads):.2f}); under a writer paced at "
        f"10,000 events/s (achieved {achieved:,.0f} over {LIKE_PAIRS_WRITER_SECONDS:.0f} s), "
        f"alternated: held pairs {_shown(mine)} ({len(samples['held pairs'])} reads, "
        f"{reread['held pairs']} of them read like counts again), held_like_pairs=0 "
        f"{_shown(baseline)} ({len(samples['re-read'])} reads, {reread['re-read']} of them "
        f"read like counts again); held pairs / re-read = "
        f"{mine[0] / baseline[0]:.2f}x at p50, {mine[1] / baseline[1]:.2f}x at p99; goal p99 < "
        f"{READ_GOAL_MS:.0f} ms: {'MET' if mine[1] < READ_GOAL_MS else 'NOT MET'}; events since "
        f"the watermark {before:,} at the start, {after:,} at the end; 1-minute loadavg "
        f"during the run {min(loads):.2f}-{max(loads):.2f}; loadavg {loadavg()}"
    )
    benchmark.extra_info.update(
        {
            "fold_seconds": fold_seconds,
            "liked_pairs": int(liked.keys.shape[0]),
            "liked_pairs_load_ms": load_seconds * 1e3,
            "liked_pairs_bytes": held_bytes,
            "held_pairs_p50_ms": mine[0],
            "held_pairs_p99_ms": mine[1],
            "reread_p50_ms": baseline[0],
            "reread_p99_ms": baseline[1],
            "quiet_held_pairs_p50_ms": quiet_mine[0],
            "quiet_held_pairs_p99_ms": quiet_mine[1],
            "quiet_reread_p50_ms": quiet_baseline[0],
            "quiet_reread_p99_ms": quiet_baseline[1],
        }
    )
    held.close()
    plain.close()
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


BOUNDED_AGE_SECONDS = 10.0  # the example service's bounded_counts_seconds


def test_bounded_age_reads_from_memory_under_a_writer(benchmark: Any, server: Any) -> None:
    """``stats_columns_within`` (counts up to 10 s old, answered from the store's held
    roll-up, since-sums, liked pairs and corrections, no round trip) against the exact
    held read (``stats_columns``) of another store, alternated under a writer paced at
    10,000 events/s: p50/p99 of each, how many bounded reads answered ``None``, and the
    refreshes its background thread made. In quick mode (CI) it also checks that the
    bounded read answered and never counted more views than the exact read after it."""
    _, _, engine, client = server
    bounded = reelrank_clickhouse.ClickHouseEventStore(engine)
    exact = reelrank_clickhouse.ClickHouseEventStore(engine)
    exact.fold_stats(until=datetime.now(UTC) - timedelta(seconds=5))  # 0: one is as new
    _built(exact)
    refreshes = [0]
    refresh, read_since = bounded._refresh_held, bounded._read_since
    # Thread CPU of each background refresh and since-sums extension: work that takes
    # the interpreter lock and a core from the reads.
    background_cpu: dict[str, list[float]] = {"refresh": [], "extend": []}

    def counted_refresh() -> None:
        refreshes[0] += 1
        began = time.thread_time()
        refresh()
        background_cpu["refresh"].append(time.thread_time() - began)

    def timed_read_since(*args: Any) -> None:
        began = time.thread_time()
        read_since(*args)
        background_cpu["extend"].append(time.thread_time() - began)

    bounded._refresh_held = counted_refresh  # type: ignore[method-assign]
    bounded._read_since = timed_read_since  # type: ignore[method-assign]
    deadline = time.monotonic() + 120
    while bounded.stats_columns_within(_CANDIDATES, max_age_seconds=BOUNDED_AGE_SECONDS) is None:
        assert time.monotonic() < deadline, "the store never held recent enough counts"
        time.sleep(0.1)
    fold = int(client.execute(bounded._queries.folds)[0][0])
    before = _since_watermark(client, fold)
    refreshes_before = refreshes[0]
    for each in background_cpu.values():
        each.clear()
    # Garbage collector pauses during the run (seconds, generation), and how many of
    # the bounded reads one fell in.
    collections: list[tuple[float, int]] = []
    collecting = [0.0]

    def on_collection(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            collecting[0] = time.perf_counter()
        else:
            collections.append((time.perf_counter() - collecting[0], info["generation"]))

    tracked = len(gc.get_objects())  # what a full collection walks
    gc.callbacks.append(on_collection)
    writer = _writer(server, 10_000, LIKE_PAIRS_WRITER_SECONDS, niced=False)
    samples: dict[str, list[float]] = {"bounded": [], "exact": []}
    bounded_cpu: list[float] = []  # the reading thread's CPU per bounded read
    collected_in = 0  # bounded reads during which a collection ran
    unanswered = 0
    over = 0  # bounded reads that counted more views than the exact read after them
    loads = []
    for turn in itertools.count():
        if writer.poll() is not None:
            break
        began = time.perf_counter()
        if turn % 2 == 0:
            cpu, collected = time.thread_time(), len(collections)
            found = bounded.stats_columns_within(_CANDIDATES, max_age_seconds=BOUNDED_AGE_SECONDS)
            samples["bounded"].append(time.perf_counter() - began)
            bounded_cpu.append(time.thread_time() - cpu)
            collected_in += len(collections) != collected
            unanswered += found is None
            if found is not None and turn % 20 == 0:
                over += int((found.views > exact.stats_columns(_CANDIDATES).views).any())
        else:
            exact.stats_columns(_CANDIDATES)
            samples["exact"].append(time.perf_counter() - began)
        if turn % 50 == 0:
            loads.append(os.getloadavg()[0])
        time.sleep(PAUSE_BETWEEN_READS)
    output, _ = writer.communicate()
    gc.callbacks.remove(on_collection)
    achieved = float(output.strip().splitlines()[-1])
    after = _since_watermark(client, fold)
    passes = refreshes[0] - refreshes_before
    cpu_figures = p50_p99_ms(bounded_cpu)
    refresh_ms, extend_ms = (
        statistics.median(background_cpu[name] or [0.0]) * 1e3 for name in ("refresh", "extend")
    )
    pause_ms, pause_generation = max(collections, default=(0.0, 0))
    pause_ms *= 1e3
    full = sum(generation == 2 for _, generation in collections)
    if QUICK:
        assert unanswered < len(samples["bounded"]) and over == 0
    mine, baseline = p50_p99_ms(samples["bounded"]), p50_p99_ms(samples["exact"])
    SUMMARY.append(
        f"clickhouse bounded-age read (up to {BOUNDED_AGE_SECONDS:.0f} s old, from memory) of "
        f"{CANDIDATES:,} candidates against the exact held read, alternated under a writer "
        f"paced at 10,000 events/s (achieved {achieved:,.0f} over "
        f"{LIKE_PAIRS_WRITER_SECONDS:.0f} s): bounded {_shown(mine)} "
        f"({len(samples['bounded'])} reads, {unanswered} answered None), exact "
        f"{_shown(baseline)} ({len(samples['exact'])} reads); bounded / exact = "
        f"{mine[0] / baseline[0]:.3f}x at p50, {mine[1] / baseline[1]:.3f}x at p99; "
        f"{passes} background refreshes ({passes / LIKE_PAIRS_WRITER_SECONDS:.1f}/s); "
        f"{over} sampled bounded reads counted more views than the exact read after them; "
        f"the reading thread's CPU per bounded read {_shown(cpu_figures)}; background "
        f"thread CPU per pass: refresh {refresh_ms:.1f} ms, since-sums extension "
        f"{extend_ms:.1f} ms ({len(background_cpu['extend'])} extensions); "
        f"{len(collections)} garbage collections ({full} of generation 2), longest "
        f"{pause_ms:.1f} ms (generation {pause_generation}), during {collected_in} bounded "
        f"reads ({tracked:,} objects tracked at the start); "
        f"events since the watermark {before:,} at the start, {after:,} at the end; "
        f"1-minute loadavg during the run {min(loads):.2f}-{max(loads):.2f}; "
        f"loadavg {loadavg()}"
    )
    benchmark.extra_info.update(
        {
            "bounded_p50_ms": mine[0],
            "bounded_p99_ms": mine[1],
            "exact_p50_ms": baseline[0],
            "exact_p99_ms": baseline[1],
            "bounded_unanswered": unanswered,
            "bounded_refreshes": passes,
            "bounded_cpu_p50_ms": cpu_figures[0],
            "bounded_cpu_p99_ms": cpu_figures[1],
            "refresh_cpu_ms": refresh_ms,
            "extend_cpu_ms": extend_ms,
            "gc_longest_ms": pause_ms,
            "gc_during_bounded_reads": collected_in,
        }
    )
    bounded.close()
    exact.close()
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


def test_ingest_with_like_pair_rows(benchmark: Any, server: Any) -> None:
    """Schema version 4's view writes one more row per like or unlike: raw columnar
    inserts and ``append_many`` of 10,000-event batches into a database with the
    version-4 view and one with the version-3 view, alternated (new databases, so
    neither meets the loaded history's merges)."""
    started, config, _, _ = server
    engines, clients = [], []
    for database in ("ingest_pairs_v4", "ingest_pairs_v3"):
        started.execute(f"CREATE DATABASE {database}")
        each = reelrank_clickhouse.connect(config.model_copy(update={"database": database}))
        reelrank_clickhouse.create_schema(each)
        engines.append(each)
        clients.append(
            clickhouse_driver.Client.from_url(each.dialect.create_connect_args(each.url)[0][0])
        )
    clients[1].execute("DROP TABLE event_aggregates_mv")
    clients[1].execute(clickhouse_testing.older_aggregates_view(3))
    stores = [reelrank_clickhouse.ClickHouseEventStore(each) for each in engines]
    size = 10_000
    pending = [_events(size) for _ in range(4 * INSERT_ROUNDS + 2)]
    insert = stores[0]._queries.insert

    def raw(into: Any) -> None:
        pairs = pending.pop()
        columns = event_columns([event for event, _ in pairs], time.time_ns())
        columns.append([creator for _, creator in pairs])
        into.execute(insert, columns, columnar=True)

    for each in stores:
        each.append_many(pending.pop())  # its client connects before the clock starts
    samples = interleaved(
        [
            lambda: raw(clients[0]),
            lambda: raw(clients[1]),
            lambda: stores[0].append_many(pending.pop()),
            lambda: stores[1].append_many(pending.pop()),
        ],
        INSERT_ROUNDS,
        rotate=True,
    )
    raw_v4, raw_v3, append_v4, append_v3 = (statistics.median(each) for each in samples)
    SUMMARY.append(
        f"clickhouse insert of {size:,}-event batches (1 in 7 a like, 1 in 7 an unlike): raw "
        f"columnar INSERT into schema 4's view {size / raw_v4:,.0f} events/s, into schema 3's "
        f"{size / raw_v3:,.0f} events/s (4 / 3 = {raw_v4 / raw_v3:.2f}x time); append_many "
        f"into schema 4 {size / append_v4:,.0f} events/s, into schema 3 "
        f"{size / append_v3:,.0f} events/s (4 / 3 = {append_v4 / append_v3:.2f}x time; goal "
        f"{INGEST_GOAL:,}/s: {'MET' if size / append_v4 >= INGEST_GOAL else 'NOT MET'}); "
        f"{INSERT_ROUNDS} rounds each, alternated; loadavg {loadavg()}"
    )
    benchmark.extra_info.update(
        {
            "raw_schema_4_events_per_s": size / raw_v4,
            "raw_schema_3_events_per_s": size / raw_v3,
            "append_many_schema_4_events_per_s": size / append_v4,
            "append_many_schema_3_events_per_s": size / append_v3,
        }
    )
    for each, its_engine in zip(clients, engines, strict=True):
        each.disconnect()
        its_engine.dispose()
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
