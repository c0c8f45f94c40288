"""The ClickHouse adapter on loopback, each case next to a baseline measured in the same run.

* stats of 10,000 candidate videos (1,000 in quick mode) over 10 M loaded events
  (300 k): :meth:`ClickHouseEventStore.get_stats` (one query over the aggregate table,
  minus the corrections of raced events) against *today's reads*, the previous
  release's two queries over its own ``video_counts`` and ``video_likes`` tables,
  built here from the same events by the previous release's views. Goal: p99 under
  50 ms at 10 M events. The exactly-once read cost is also shown by the same query
  without its corrections branch;
* insert throughput: :meth:`ClickHouseEventStore.append_many` of 1,000-, 10,000- and
  50,000-event batches (validation, the duplicate check, one columnar insert, the
  second check for racing writers) against a raw columnar ``INSERT`` of the same rows
  with the same driver (no validation, no checks), into the same table with its view.
  Goal: at least 100,000 events/s. The events are built before the clock starts.

The bulk load is generated on the server (``INSERT ... SELECT ... FROM numbers()``),
which feeds the views like any insert. Event ids are hashes, spread over the id space
like UUIDs. Skips when ``clickhouse-server`` or ``reelrank-clickhouse`` is not
installed (``scripts/test.sh`` installs both).
"""

from __future__ import annotations

import itertools
import random
import statistics
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import QUICK, SUMMARY, interleaved, loadavg, p50_p99_ms

from reelrank import EngagementEvent, EngagementKind
from reelrank.testing import make_event

reelrank_clickhouse = pytest.importorskip("reelrank_clickhouse")
clickhouse_testing = pytest.importorskip("reelrank_clickhouse.testing")
clickhouse_driver = pytest.importorskip("clickhouse_driver")

# The 10 M-event load alone takes minutes on a busy 2-core machine.
pytestmark = pytest.mark.timeout(600 if QUICK else 3_600)

if clickhouse_testing.find_clickhouse_server() is None:
    pytest.skip("clickhouse-server is not installed", allow_module_level=True)

from reelrank_clickhouse._client import id_table  # noqa: E402
from reelrank_clickhouse._rows import event_columns  # noqa: E402

LOADED_EVENTS = 300_000 if QUICK else 10_000_000
VIDEOS = 20_000 if QUICK else 100_000
USERS = 10_000 if QUICK else 200_000
CANDIDATES = 1_000 if QUICK else 10_000
RACED = LOADED_EVENTS // 10_000  # events delivered twice at once, corrected
LOAD_CHUNK = 1_000_000
READ_ROUNDS = 15 if QUICK else 25
INSERT_BATCH_SIZES = (1_000, 10_000, 50_000)
INSERT_BATCHES = 3 if QUICK else 8
READ_GOAL_MS = 50.0
INGEST_GOAL = 100_000
LOAD_START = datetime(2026, 1, 1, tzinfo=UTC)
LOAD_SECONDS_PER_EVENT = 0.25  # 10 M events span 29 days

_KIND_ENUM = "Enum8('watch' = 1, 'like' = 2, 'unlike' = 3, 'share' = 4, 'comment' = 5)"

# The previous release's aggregate tables and views, as the baseline of the reads.
_TODAY = (
    f"""CREATE TABLE video_counts (video_id UInt64, kind {_KIND_ENUM},
    events AggregateFunction(count), completion_sum AggregateFunction(sum, Float64)
) ENGINE = AggregatingMergeTree() ORDER BY (video_id, kind)""",
    """CREATE MATERIALIZED VIEW video_counts_mv TO video_counts AS
SELECT video_id, kind, countState() AS events, sumState(ifNull(completion, 0.)) AS completion_sum
FROM events WHERE kind IN ('watch', 'share', 'comment') GROUP BY video_id, kind""",
    """CREATE TABLE video_likes (video_id UInt64, user_id UInt64,
    liked AggregateFunction(argMax, UInt8, UInt64)
) ENGINE = AggregatingMergeTree() ORDER BY (video_id, user_id)""",
    """CREATE MATERIALIZED VIEW video_likes_mv TO video_likes AS
SELECT video_id, user_id, argMaxState(toUInt8(kind = 'like'), seq) AS liked
FROM events WHERE kind IN ('like', 'unlike') GROUP BY video_id, user_id""",
)
_TODAY_COUNTS = """SELECT video_id, toString(kind), countMerge(events), sumMerge(completion_sum)
FROM video_counts WHERE video_id IN ids GROUP BY video_id, kind"""
_TODAY_LIKES = """SELECT video_id, sum(liked) FROM (
    SELECT video_id, user_id, argMaxMerge(liked) AS liked
    FROM video_likes WHERE video_id IN ids GROUP BY video_id, user_id
) GROUP BY video_id"""

# get_stats's query without its corrections branch: what exactly-once adds to a read.
_WITHOUT_CORRECTIONS = """
SELECT a, c, toInt64(countMerge(events)) AS n, sumMerge(completion_sum) AS s
FROM event_aggregates WHERE tag = 1 AND a GLOBAL IN ids GROUP BY a, c
UNION ALL
SELECT a, toUInt64(2) AS c, toInt64(sum(liked)) AS n, toFloat64(0) AS s FROM (
    SELECT a, b, argMaxMerge(liked) AS liked
    FROM event_aggregates WHERE tag = 2 AND a GLOBAL IN ids GROUP BY a, b
) GROUP BY a"""

# Kinds cycle watch, watch, watch, like, share, comment, unlike.
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
       number
FROM numbers({{start}}, {{count}})"""

# Copies of the first loaded watches, shares and comments, as racing writers would
# have inserted them, and the corrections their writers' second checks wrote.
_RACE_COPIES = """INSERT INTO events SELECT * FROM events
WHERE seq < %(raced)s AND kind IN ('watch', 'share', 'comment')"""
_RACE_CORRECTIONS = """INSERT INTO event_corrections
SELECT event_id, kind, user_id, video_id, creator_id, ifNull(completion, 0.), 2 FROM events
WHERE seq < %(raced)s AND kind IN ('watch', 'share', 'comment')"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    directory: Path = tmp_path_factory.mktemp("bench-clickhouse")
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
        for statement in _TODAY:
            client.execute(statement)
        started_load = time.perf_counter()
        for start in range(0, LOADED_EVENTS, LOAD_CHUNK):
            count = min(LOAD_CHUNK, LOADED_EVENTS - start)
            client.execute(_GENERATE.format(start=start, count=count))
        load_seconds = time.perf_counter() - started_load
        SUMMARY.append(
            f"clickhouse load of {LOADED_EVENTS:,} events by INSERT ... SELECT (both schemas' "
            f"views): {load_seconds:.1f} s; loadavg {loadavg()}"
        )
        yield engine, client
        client.disconnect()
        engine.dispose()


def _today_stats(client: Any, ids: list[int]) -> dict[int, tuple[int, float, int, int, int]]:
    external = [id_table("ids", "id", "UInt64", ids)]
    fields: dict[int, list[Any]] = {vid: [0, 0.0, 0, 0, 0] for vid in ids}
    for vid, kind, events, completion in client.execute(_TODAY_COUNTS, external_tables=external):
        row = fields[int(vid)]
        if kind == "watch":
            row[0], row[1] = int(events), float(completion)
        else:
            row[3 if kind == "share" else 4] = int(events)
    for vid, likes in client.execute(_TODAY_LIKES, external_tables=external):
        fields[int(vid)][2] = int(likes)
    return {vid: (r[0], r[1], r[2], r[3], r[4]) for vid, r in fields.items()}


def _as_tuples(stats: dict[int, Any]) -> dict[int, tuple[int, float, int, int, int]]:
    return {
        vid: (s.views, s.completion_sum, s.likes, s.shares, s.comments) for vid, s in stats.items()
    }


def _differing(
    mine: dict[int, tuple[int, float, int, int, int]],
    theirs: dict[int, tuple[int, float, int, int, int]],
) -> list[int]:
    """Videos whose counts differ, or whose completion sums differ beyond rounding."""
    return [
        vid
        for vid, row in mine.items()
        if row[0] != theirs[vid][0]
        or row[2:] != theirs[vid][2:]
        or abs(row[1] - theirs[vid][1]) > 1e-6
    ]


def test_stats_of_candidate_videos_against_todays_reads(benchmark: Any, server: Any) -> None:
    engine, client = server
    store = reelrank_clickhouse.ClickHouseEventStore(engine)
    candidates = random.Random(7).sample(range(1, VIDEOS + 1), CANDIDATES)
    # Same numbers as the previous release's tables while nothing raced.
    before = _as_tuples(store.get_stats(candidates))
    assert _differing(before, _today_stats(client, candidates)) == []
    client.execute(_RACE_COPIES, {"raced": RACED})
    client.execute(_RACE_CORRECTIONS, {"raced": RACED})
    # The corrections cancel the copies exactly; the previous tables count them twice.
    assert _differing(_as_tuples(store.get_stats(candidates)), before) == []
    raced_candidates = len(_differing(_today_stats(client, candidates), before))

    external = [id_table("ids", "id", "UInt64", candidates)]
    store_samples, today_samples, bare_samples = interleaved(
        [
            lambda: store.get_stats(candidates),
            lambda: _today_stats(client, candidates),
            lambda: client.execute(_WITHOUT_CORRECTIONS, external_tables=external),
        ],
        READ_ROUNDS,
    )
    store_p50, store_p99 = p50_p99_ms(store_samples)
    today_p50, today_p99 = p50_p99_ms(today_samples)
    bare_p50, bare_p99 = p50_p99_ms(bare_samples)
    met = "MET" if store_p99 < READ_GOAL_MS else "NOT MET"
    SUMMARY.append(
        f"clickhouse stats of {CANDIDATES:,} candidates ({LOADED_EVENTS:,} events, {VIDEOS:,} "
        f"videos, {RACED:,} raced events corrected, {raced_candidates} candidates affected): "
        f"get_stats p50 {store_p50:.1f} / p99 {store_p99:.1f} ms; today's two queries "
        f"p50 {today_p50:.1f} / p99 {today_p99:.1f} ms (get_stats / today = "
        f"{store_p50 / today_p50:.2f}x at p50); the same query without corrections p50 "
        f"{bare_p50:.1f} / p99 {bare_p99:.1f} ms; goal p99 < {READ_GOAL_MS:.0f} ms"
        f"{' at 10M events' if not QUICK else ' (at 10M in full mode)'}: {met}; "
        f"loadavg {loadavg()}"
    )
    benchmark.extra_info.update(
        {
            "get_stats_p50_ms": store_p50,
            "get_stats_p99_ms": store_p99,
            "todays_reads_p50_ms": today_p50,
            "todays_reads_p99_ms": today_p99,
            "without_corrections_p50_ms": bare_p50,
            "goal": met,
        }
    )
    benchmark.pedantic(lambda: store.get_stats(candidates), rounds=3, iterations=1)


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
# Live batches land on the last loaded day, whose ids the duplicate check reads.
_LIVE_DAY = LOAD_START + timedelta(seconds=LOADED_EVENTS * LOAD_SECONDS_PER_EVENT)


def _events(count: int) -> list[tuple[EngagementEvent, int]]:
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
            occurred_at=_LIVE_DAY - timedelta(seconds=number % 3_600),
            event_id=uuid.uuid4().hex,
            **extra,
        )
        made.append((event, 1 + video_id % 500))
    return made


def _insert_seconds(store: Any, raw: Any, size: int) -> tuple[float, float]:
    """Median seconds of ``append_many`` and of the raw insert, for batches of ``size``."""
    pending = [_events(size) for _ in range(2 * INSERT_BATCHES + 1)]
    insert = store._queries.insert

    def with_store() -> None:
        assert store.append_many(pending.pop()) == size

    def raw_insert() -> None:
        pairs = pending.pop()
        columns = event_columns([event for event, _ in pairs], 1)
        columns.append([creator for _, creator in pairs])
        raw.execute(insert, columns, columnar=True)

    with_store()  # the store's client connects before the clock starts, as the raw one did
    store_samples, raw_samples = interleaved([with_store, raw_insert], INSERT_BATCHES)
    return statistics.median(store_samples), statistics.median(raw_samples)


def test_insert_throughput_of_batches(benchmark: Any, server: Any) -> None:
    engine, raw = server
    store = reelrank_clickhouse.ClickHouseEventStore(engine)
    for size in INSERT_BATCH_SIZES:
        store_seconds, raw_seconds = _insert_seconds(store, raw, size)
        rate = size / store_seconds
        met = "MET" if rate >= INGEST_GOAL else "NOT MET"
        check = _events(size)
        started = time.perf_counter()
        store._copies(store._clients.writer(), [event for event, _ in check])
        check_ms = (time.perf_counter() - started) * 1e3
        SUMMARY.append(
            f"clickhouse insert of {size:,}-event batches: append_many {rate:,.0f} events/s, "
            f"raw columnar INSERT {size / raw_seconds:,.0f} events/s, append_many / raw = "
            f"{store_seconds / raw_seconds:.2f}x time; one duplicate check {check_ms:.1f} ms "
            f"(two per batch); goal {INGEST_GOAL:,}/s: {met}; loadavg {loadavg()}"
        )
        benchmark.extra_info.update(
            {
                f"append_many_{size}_events_per_s": rate,
                f"raw_insert_{size}_events_per_s": size / raw_seconds,
                f"duplicate_check_{size}_ms": check_ms,
            }
        )
    size = INSERT_BATCH_SIZES[1]
    rounds = [_events(size) for _ in range(INSERT_BATCHES)]
    benchmark.pedantic(lambda: store.append_many(rounds.pop()), rounds=INSERT_BATCHES, iterations=1)
