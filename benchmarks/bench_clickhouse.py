"""The ClickHouse adapter on loopback, each case next to a baseline measured in the same run.

* stats of 10,000 candidate videos (1,000 in quick mode) over 10 M loaded events
  (300 k): :meth:`ClickHouseEventStore.stats_columns` (what the feed reads) and
  :meth:`~ClickHouseEventStore.get_stats` reading the roll-up of
  :meth:`~ClickHouseEventStore.fold_stats` (schema version 2 and on), its rows held by the
  store, next to the same read with the rows read from the server, against schema version
  1's read (the merged states of every candidate: the same query ``get_stats`` falls
  back to, with pydantic-validated models, as version 1 built them) and against the
  release before it, two queries over its own ``video_counts`` and ``video_likes``
  tables, built here from the same events by that release's views. Goal: p99 under
  50 ms at 10 M events. Also shown: the held read's one query alone, a new store's
  first read (which loads the roll-up's rows), how long ``fold_stats`` takes, and the
  reads once the insert cases have added events after the roll-up: repeated, and each
  right after a 1,000-event batch (a store that has read before, which keeps the like
  counts it read again, a new store's first read, and the baseline adapter's);
* insert throughput: :meth:`ClickHouseEventStore.append_many` of 1,000-, 10,000- and
  50,000-event batches (validation, the duplicate check, one columnar insert, the
  second check for racing writers; each check is also timed alone) against a raw
  columnar ``INSERT`` of the same rows with the same driver (no validation, no checks) in
  the store's own form (Python lists, which the insert variants case below compares with
  numpy and lz4; the ``Nullable`` columns no event fills left out),
  into the same table with its view, and a raw insert into tables with schema version
  1's view (three aggregate rows per event rather than five), in a database of their
  own. Goal: at least 100,000 events/s. The events are built before the clock starts.
  With ``REELRANK_BENCH_CLICKHOUSE_BASELINE`` set to another checkout's
  ``adapters/reelrank-clickhouse/src`` (such as the main branch's), its
  ``append_many`` and ``append_columns`` run too, alternated call by call with this
  tree's on the same server, and each case prints this tree's time over the baseline's.
  ``append_many`` of 10,000 events is also timed inside the call: each query of the
  store's write client (the two checks, the insert) and the client's CPU.

The bulk load is generated on the server (``INSERT ... SELECT ... FROM numbers()``),
which feeds the views like any insert. Event ids are hashes, spread over the id space
like UUIDs. Skips when ``clickhouse-server`` or ``reelrank-clickhouse`` is not
installed (``scripts/test.sh`` installs both).
"""

from __future__ import annotations

import gc
import importlib.util
import itertools
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import QUICK, SUMMARY, interleaved, loadavg, p50_p99_ms

from reelrank import EngagementEvent, EngagementKind, VideoStats
from reelrank.testing import make_event

reelrank_clickhouse = pytest.importorskip("reelrank_clickhouse")
clickhouse_testing = pytest.importorskip("reelrank_clickhouse.testing")
clickhouse_driver = pytest.importorskip("clickhouse_driver")

# The 10 M-event load alone takes minutes on a busy 2-core machine.
pytestmark = pytest.mark.timeout(600 if QUICK else 3_600)

if clickhouse_testing.find_clickhouse_server() is None:
    pytest.skip("clickhouse-server is not installed", allow_module_level=True)

from reelrank_clickhouse._client import id_frame, id_table, numpy_columns  # noqa: E402
from reelrank_clickhouse._rows import SECONDS_COLUMN, event_columns  # noqa: E402
from reelrank_clickhouse._schema import FINE_PER_COARSE_BITS, Tag  # noqa: E402


def _baseline_adapter() -> Any:
    """The adapter package of ``REELRANK_BENCH_CLICKHOUSE_BASELINE`` (a ``src`` directory
    holding ``reelrank_clickhouse``), loaded under a name of its own next to this tree's;
    ``None`` when the variable is not set."""
    source = os.environ.get("REELRANK_BENCH_CLICKHOUSE_BASELINE")
    if not source:
        return None
    package = Path(source) / "reelrank_clickhouse"
    name = "baseline_reelrank_clickhouse"
    spec = importlib.util.spec_from_file_location(
        name, package / "__init__.py", submodule_search_locations=[str(package)]
    )
    assert spec is not None and spec.loader is not None, source
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


BASELINE = _baseline_adapter()

LOADED_EVENTS = 300_000 if QUICK else 10_000_000
VIDEOS = 20_000 if QUICK else 100_000
USERS = 10_000 if QUICK else 200_000
CANDIDATES = 1_000 if QUICK else 10_000
RACED = LOADED_EVENTS // 10_000  # events delivered twice at once, corrected
LOAD_CHUNK = 1_000_000
# Rounds of the read cases; ``REELRANK_BENCH_CLICKHOUSE_READ_ROUNDS`` raises them, so a
# p99 is not one call (the nearest-rank p99 of 25 rounds is their slowest).
READ_ROUNDS = int(os.environ.get("REELRANK_BENCH_CLICKHOUSE_READ_ROUNDS", 15 if QUICK else 25))
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

# Schema version 1's aggregate view (three rows per event, no arrival rows), for the
# raw-insert baseline of the view's cost.
_VERSION_1_VIEW = """CREATE MATERIALIZED VIEW event_aggregates_mv TO event_aggregates AS
SELECT key.1 AS tag, key.2 AS a, if(tag = 0, cityHash64(event_id), key.3) AS b,
       key.4 AS c, if(key.1 = 0, event_id, '') AS event_id,
       countState() AS events, sumState(ifNull(completion, 0.)) AS completion_sum,
       argMaxState(toUInt8(kind = 'like'), seq) AS liked, minState(seq) AS first_seq
FROM events
ARRAY JOIN if(kind IN ('like', 'unlike'),
    [(toUInt8(0), toUInt64(intDiv(toUInt32(occurred_at), 3600)), toUInt64(0), toUInt64(0)),
     (toUInt8(2), video_id, user_id, toUInt64(0)),
     (toUInt8(4), user_id, creator_id, video_id)],
    [(toUInt8(0), toUInt64(intDiv(toUInt32(occurred_at), 3600)), toUInt64(0), toUInt64(0)),
     (toUInt8(1), video_id, toUInt64(0), toUInt64(toUInt8(kind))),
     (toUInt8(3), user_id, creator_id, toUInt64(toUInt8(kind)))]) AS key
GROUP BY tag, a, b, c, event_id"""

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
        started.execute("CREATE DATABASE bench_v1")
        config_v1 = config.model_copy(update={"database": "bench_v1"})
        engine_v1 = reelrank_clickhouse.connect(config_v1)
        reelrank_clickhouse.create_schema(engine_v1)
        client_v1 = clickhouse_driver.Client.from_url(
            engine_v1.dialect.create_connect_args(engine_v1.url)[0][0]
        )
        client_v1.execute("DROP TABLE event_aggregates_mv")
        client_v1.execute(_VERSION_1_VIEW)
        started_load = time.perf_counter()
        for start in range(0, LOADED_EVENTS, LOAD_CHUNK):
            count = min(LOAD_CHUNK, LOADED_EVENTS - start)
            client.execute(_GENERATE.format(start=start, count=count))
        load_seconds = time.perf_counter() - started_load
        SUMMARY.append(
            f"clickhouse load of {LOADED_EVENTS:,} events by INSERT ... SELECT (both schemas' "
            f"views): {load_seconds:.1f} s; loadavg {loadavg()}"
        )
        yield engine, client, client_v1
        client.disconnect()
        client_v1.disconnect()
        engine.dispose()
        engine_v1.dispose()


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


def _version_1_get_stats(store: Any, ids: list[int]) -> dict[int, VideoStats]:
    """Schema version 1's ``get_stats``: the merged states of every candidate, summed
    row by row into validated models."""
    external = [id_table("ids", "id", "UInt64", ids)]
    counts: dict[int, dict[str, Any]] = {}
    with store._clients.reader() as client:
        rows = client.execute(store._queries.stats, external_tables=external)
    for video_id, code, events, completion_sum in rows:
        fields = counts.setdefault(video_id, {})
        name = _STATS_FIELD[code]
        fields[name] = fields.get(name, 0) + events
        if name == "views":
            fields["completion_sum"] = fields.get("completion_sum", 0.0) + completion_sum
    result = {}
    for video_id in ids:
        fields = counts.get(video_id, {})
        views = fields.get("views", 0)
        completion = fields.get("completion_sum", 0.0)
        fields["completion_sum"] = min(max(completion, 0.0), float(views))
        result[video_id] = VideoStats(video_id=video_id, **fields)
    return result


_STATS_FIELD = {1: "views", 4: "shares", 5: "comments", 2: "likes"}


def _held_params(store: Any) -> dict[str, int]:
    """The parameters of the store's read through its held roll-up and since-sums."""
    start = store._held.fold << FINE_PER_COARSE_BITS
    since = store._since
    unheld = since.unheld if since is not None and since.serves(store._held.fold) else start
    return {"fold": store._held.fold, "start": start, "unheld": unheld}


def _held_roll_up_query(store: Any, ids: list[int]) -> Any:
    """The one query of a read through the roll-up the store holds, alone (the newest
    roll-up, the checks, what arrived since, the corrections), sent and read as the
    store does (ids as one numpy column, the reply as numpy columns)."""
    external = [id_frame("ids", "id", "UInt64", np.array(ids, dtype=np.int64))]
    with store._clients.reader() as client:
        return numpy_columns(
            client, store._queries.held_stats, _held_params(store), external_tables=external
        )


def _held_roll_up_query_as_rows(store: Any, ids: list[int]) -> Any:
    """:func:`_held_roll_up_query` with the ids sent as a tuple each and the reply read
    into lists, as the release before sent and read it."""
    external = [id_table("ids", "id", "UInt64", ids)]
    with store._clients.reader() as client:
        return client.execute(
            store._queries.held_stats,
            _held_params(store),
            external_tables=external,
            columnar=True,
        )


def _without_gc(call: Any) -> Any:
    """``call()`` with Python's garbage collector off, to show what its pauses add."""
    gc.disable()
    try:
        return call()
    finally:
        gc.enable()


def _reads_roll_up(store: Any, ids: list[int]) -> bool:
    with store._clients.reader() as client:
        found = store._folded_stats(client, np.array(ids, dtype=np.int64))
    return found is not None


def _fold_seconds(store: Any, until: datetime | None = None, *, incremental: bool = True) -> float:
    started = time.perf_counter()
    assert store.fold_stats(until=until, incremental=incremental) > 0
    return time.perf_counter() - started


_CANDIDATES = random.Random(7).sample(range(1, VIDEOS + 1), CANDIDATES)


def _p50_p99_info(figures: dict[str, tuple[float, float]], prefix: str = "") -> dict[str, float]:
    """``figures``' (p50, p99) pairs as benchmark extra-info entries, ``<prefix><name>_p50_ms``."""
    return {
        f"{prefix}{name.replace(' ', '_')}_{which}_ms": value[index]
        for name, value in figures.items()
        for index, which in enumerate(("p50", "p99"))
    }


def _read_summary(store: Any, client: Any, label: str) -> dict[str, float]:
    """Interleaved rounds (each starting one call later) of stats_columns, get_stats and
    their baselines; one summary line."""
    candidates = _CANDIDATES
    on_the_server = reelrank_clickhouse.ClickHouseEventStore(store.engine, held_roll_up_videos=0)
    calls = [
        lambda: store.stats_columns(candidates),
        lambda: store.get_stats(candidates),
        lambda: on_the_server.stats_columns(candidates),
        lambda: _version_1_get_stats(store, candidates),
        lambda: _today_stats(client, candidates),
        lambda: _held_roll_up_query(store, candidates),
        lambda: _held_roll_up_query_as_rows(store, candidates),
        lambda: _without_gc(lambda: store.stats_columns(candidates)),
    ]
    names = [
        "stats_columns",
        "get_stats",
        "on_the_server",
        "version_1",
        "today",
        "query",
        "query_as_rows",
        "without_gc",
    ]
    if BASELINE is not None:
        baseline = BASELINE.ClickHouseEventStore(store.engine)
        baseline.stats_columns(candidates)  # loads its held roll-up outside the rounds
        calls.append(lambda: baseline.stats_columns(candidates))
        names.append("baseline")
    samples = interleaved(calls, READ_ROUNDS, rotate=True)
    figures = {name: p50_p99_ms(each) for name, each in zip(names, samples, strict=True)}

    def met(name: str) -> str:
        return "MET" if figures[name][1] < READ_GOAL_MS else "NOT MET"

    def shown(name: str) -> str:
        return f"p50 {figures[name][0]:.1f} / p99 {figures[name][1]:.1f} ms"

    against_baseline = (
        ""
        if BASELINE is None
        else (
            f"; the baseline adapter's stats_columns "
            f"({os.environ['REELRANK_BENCH_CLICKHOUSE_BASELINE']}), alternated: "
            f"{shown('baseline')} (this tree / baseline = "
            f"{figures['stats_columns'][0] / figures['baseline'][0]:.2f}x at p50, "
            f"{figures['stats_columns'][1] / figures['baseline'][1]:.2f}x at p99)"
        )
    )

    at = " at 10M events" if not QUICK else " (at 10M in full mode)"
    SUMMARY.append(
        f"clickhouse stats of {CANDIDATES:,} candidates ({label}): stats_columns (what the "
        f"feed reads; roll-up rows held by the store) {shown('stats_columns')}; its one "
        f"query alone {shown('query')} (with ids as a tuple each and the reply as lists, "
        f"as the release before sent it: {shown('query_as_rows')}); stats_columns with the "
        f"garbage collector off {shown('without_gc')}; get_stats (a model per "
        f"video) {shown('get_stats')}; "
        f"stats_columns with the roll-up's rows read from the server "
        f"{shown('on_the_server')}; schema 1's get_stats (merged states, validated models) "
        f"{shown('version_1')} (stats_columns / schema 1 = "
        f"{figures['stats_columns'][0] / figures['version_1'][0]:.2f}x, get_stats / schema 1 "
        f"= {figures['get_stats'][0] / figures['version_1'][0]:.2f}x at p50); the release "
        f"before's two queries {shown('today')}; goal p99 < {READ_GOAL_MS:.0f} ms{at}: "
        f"stats_columns {met('stats_columns')}, get_stats {met('get_stats')}"
        f"{against_baseline}; {READ_ROUNDS} rounds; loadavg {loadavg()}"
    )
    return _p50_p99_info(figures)


def test_stats_of_candidate_videos_against_todays_reads(benchmark: Any, server: Any) -> None:
    engine, client, _ = server
    store = reelrank_clickhouse.ClickHouseEventStore(engine)
    candidates = _CANDIDATES
    # Same numbers as the previous release's tables while nothing raced.
    before = _as_tuples(store.get_stats(candidates))
    assert _differing(before, _today_stats(client, candidates)) == []
    client.execute(_RACE_COPIES, {"raced": RACED})
    client.execute(_RACE_CORRECTIONS, {"raced": RACED})
    # The corrections cancel the copies exactly; the previous tables count them twice.
    assert _differing(_as_tuples(store.get_stats(candidates)), before) == []
    raced_candidates = len(_differing(_today_stats(client, candidates), before))
    assert not _reads_roll_up(store, candidates)
    fold_seconds = _fold_seconds(store)  # the loaded events have arrival numbers from 0
    SUMMARY.append(
        f"clickhouse fold_stats of {LOADED_EVENTS:,} events ({VIDEOS:,} videos): "
        f"{fold_seconds:.2f} s; loadavg {loadavg()}"
    )
    assert _reads_roll_up(store, candidates)
    assert _differing(_as_tuples(store.get_stats(candidates)), before) == []
    first_reads = []
    for _ in range(3):  # a new store's first read loads the roll-up's rows
        started = time.perf_counter()
        reelrank_clickhouse.ClickHouseEventStore(engine).stats_columns(candidates)
        first_reads.append(time.perf_counter() - started)
    SUMMARY.append(
        f"clickhouse first stats read of a store after a roll-up of {VIDEOS:,} videos (loads "
        f"the roll-up's rows): median of 3 {statistics.median(first_reads) * 1e3:.1f} ms; "
        f"loadavg {loadavg()}"
    )
    figures = _read_summary(
        store,
        client,
        f"{LOADED_EVENTS:,} events, {VIDEOS:,} videos, {RACED:,} raced events corrected, "
        f"{raced_candidates} candidates affected; all rolled up",
    )
    benchmark.extra_info.update({"fold_seconds": fold_seconds, **figures})
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
# Live batches land after the last loaded day. They come from a live stream: each batch
# holds the events of the LIVE_SPREAD seconds before the stream's clock, which moves on
# by a batch's worth of events at the goal rate; the duplicate checks read the ids of the
# hours a batch spans.
_LIVE_DAY = LOAD_START + timedelta(seconds=LOADED_EVENTS * LOAD_SECONDS_PER_EVENT)
LIVE_SPREAD_SECONDS = 60
_stream_seconds = [0.0]


def _events(count: int) -> list[tuple[EngagementEvent, int]]:
    _stream_seconds[0] += count / INGEST_GOAL
    now = _LIVE_DAY + timedelta(seconds=LIVE_SPREAD_SECONDS + _stream_seconds[0])
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
            occurred_at=now - timedelta(seconds=number % LIVE_SPREAD_SECONDS),
            event_id=uuid.uuid4().hex,
            **extra,
        )
        made.append((event, 1 + video_id % 500))
    return made


def _as_columns(pairs: list[tuple[EngagementEvent, int]]) -> dict[str, Any]:
    """The batch as the columns of a frame, for ``append_columns``."""
    events = [event for event, _ in pairs]
    return {
        "event_id": np.array([event.event_id for event in events], dtype=object),
        "kind": np.array([event.kind.value for event in events], dtype=object),
        "user_id": np.array([event.user_id for event in events], dtype=np.int64),
        "video_id": np.array([event.video_id for event in events], dtype=np.int64),
        "creator_id": np.array([creator for _, creator in pairs], dtype=np.int64),
        "occurred_at": np.array(
            [event.occurred_at.replace(tzinfo=None) for event in events], dtype="datetime64[us]"
        ),
        "completion": np.array(
            [np.nan if event.completion is None else event.completion for event in events]
        ),
        "channel": np.array([event.channel for event in events], dtype=object),
    }


def _events_of_columns(columns: dict[str, Any]) -> list[tuple[EngagementEvent, int]]:
    """What a pipeline holding columns does to call ``append_many``: an event per row."""
    times = columns["occurred_at"].astype("datetime64[us]").tolist()
    completions = columns["completion"].tolist()
    return [
        (
            EngagementEvent(
                event_id=event_id,
                kind=kind,
                user_id=user_id,
                video_id=video_id,
                occurred_at=at.replace(tzinfo=UTC),
                completion=None if completion != completion else completion,
                channel=channel,
            ),
            creator_id,
        )
        for event_id, kind, user_id, video_id, at, completion, channel, creator_id in zip(
            columns["event_id"].tolist(),
            columns["kind"].tolist(),
            columns["user_id"].tolist(),
            columns["video_id"].tolist(),
            times,
            completions,
            columns["channel"].tolist(),
            columns["creator_id"].tolist(),
            strict=True,
        )
    ]


def _insert_seconds(store: Any, raw: Any, raw_v1: Any, size: int) -> dict[str, float]:
    """Median seconds, for batches of ``size``, of: ``append_many`` (events built before
    the clock), ``append_columns`` (columns built before the clock), a pipeline holding
    columns that builds an event per row and calls ``append_many``, the raw insert, and
    the raw insert into schema version 1's tables; alternating call by call."""
    baseline = None if BASELINE is None else BASELINE.ClickHouseEventStore(store.engine)
    compared = 1 if baseline is None else 2
    pending = [_events(size) for _ in range((2 + compared) * INSERT_BATCHES + 2)]
    frames = [_as_columns(_events(size)) for _ in range((1 + compared) * INSERT_BATCHES)]
    arrival = itertools.count(time.time_ns(), 1_000_000)

    def with_store(which: Any = store) -> None:
        assert which.append_many(pending.pop()) == size

    def with_columns(which: Any = store) -> None:
        assert which.append_columns(**frames.pop()) == size

    def events_then_store() -> None:
        assert store.append_many(_events_of_columns(frames.pop())) == size

    def raw_insert(client: Any) -> None:
        pairs = pending.pop()
        columns = event_columns([event for event, _ in pairs], next(arrival))
        columns.append([creator for _, creator in pairs])
        # The store's form of the insert: the Nullable columns no event fills left out.
        client.execute(*store._queries.insert_of(columns), columnar=True)

    with_store()  # the store's client connects before the clock starts, as the raw one did
    names = ["append_many", "append_columns", "events_then_append_many", "raw", "raw_v1"]
    calls = [
        with_store,
        with_columns,
        events_then_store,
        lambda: raw_insert(raw),
        lambda: raw_insert(raw_v1),
    ]
    if baseline is not None:
        with_store(baseline)
        names += ["baseline_append_many", "baseline_append_columns"]
        calls += [lambda: with_store(baseline), lambda: with_columns(baseline)]
    samples = interleaved(calls, INSERT_BATCHES, rotate=True)
    return {name: statistics.median(each) for name, each in zip(names, samples, strict=True)}


def _check_ms(store: Any, raw: Any, size: int) -> tuple[float, float, float]:
    """Milliseconds of ``append_many``'s duplicate checks for a batch of ``size`` new
    events: the first before they are stored (every id), the second once they are (the
    total copy count against the distinct hashes), and for comparison the previous
    release's second check (every id's copy count, all sent back). Means of two
    batches, the two second checks in either order (the one right after the insert
    runs on a busier server)."""
    client = store._clients.writer()
    queries = store._queries
    timings: dict[str, list[float]] = {"first": [], "second": [], "previous": []}
    for previous_first in (False, True):
        pairs = _events(size)
        ids = [event.event_id for event, _ in pairs]
        columns = event_columns([event for event, _ in pairs], time.time_ns())
        seconds = columns[SECONDS_COLUMN]
        started = time.perf_counter()
        assert store._copies(client, queries.copies, ids, seconds) == {}
        timings["first"].append((time.perf_counter() - started) * 1e3)
        raw.execute(queries.insert, [*columns, [c for _, c in pairs]], columnar=True)
        for name in ("previous", "second") if previous_first else ("second", "previous"):
            started = time.perf_counter()
            if name == "second":
                assert not store._copied(client, ids, seconds)
            else:
                assert len(store._copies(client, queries.copies, ids, seconds)) == size
            timings[name].append((time.perf_counter() - started) * 1e3)
    first, second, previous = (statistics.mean(timings[name]) for name in timings)
    return first, second, previous


def _phases_ms(stores: dict[str, Any], size: int) -> dict[str, dict[str, float]]:
    """Inside ``append_many``, for each of ``stores`` (alternated call by call): median
    milliseconds of the whole call, of the client's CPU in it (``time.process_time``),
    and of each query of its write client (the first check, the insert, the second
    check; a correction or a which-ids query, rare, counts with the second check)."""
    timings: dict[str, dict[str, list[float]]] = {}
    inserted: dict[str, bool] = {}  # whether the call under way has inserted yet

    def timed(name: str, store: Any) -> Any:
        client = store._clients.writer()
        execute = client.execute

        def each(query: str, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return execute(query, *args, **kwargs)
            finally:
                if query.lstrip().startswith(f"INSERT INTO {store._queries.tables.events} "):
                    phase = "insert"
                    inserted[name] = True
                else:
                    phase = "second check" if inserted[name] else "first check"
                timings[name][phase][-1] += (time.perf_counter() - started) * 1e3

        client.execute = each
        return client, execute

    def call(name: str, store: Any) -> None:
        for phase in timings[name].values():
            phase.append(0.0)
        inserted[name] = False
        pairs = _events(size)
        cpu, started = time.process_time(), time.perf_counter()
        assert store.append_many(pairs) == size
        timings[name]["call"][-1] = (time.perf_counter() - started) * 1e3
        timings[name]["client CPU"][-1] = (time.process_time() - cpu) * 1e3

    phases = ("call", "client CPU", "first check", "insert", "second check")
    restore = []
    for name, store in stores.items():
        store.append_many(_events(size))  # its client connects before the clock starts
        timings[name] = {phase: [] for phase in phases}
        restore.append(timed(name, store))
    try:
        interleaved([lambda n=n, s=s: call(n, s) for n, s in stores.items()], INSERT_BATCHES)
    finally:
        for client, execute in restore:
            client.execute = execute
    return {
        name: {phase: statistics.median(values) for phase, values in each.items()}
        for name, each in timings.items()
    }


def test_insert_throughput_of_batches(benchmark: Any, server: Any) -> None:
    engine, raw, raw_v1 = server
    store = reelrank_clickhouse.ClickHouseEventStore(engine)
    for size in INSERT_BATCH_SIZES:
        seconds = _insert_seconds(store, raw, raw_v1, size)
        rate = size / seconds["append_many"]
        columns_rate = size / seconds["append_columns"]
        met = "MET" if max(rate, columns_rate) >= INGEST_GOAL else "NOT MET"
        first_ms, second_ms, previous_ms = _check_ms(store, raw, size)
        if "baseline_append_many" in seconds:
            SUMMARY.append(
                f"clickhouse insert of {size:,}-event batches, this tree against the baseline "
                f"adapter ({os.environ['REELRANK_BENCH_CLICKHOUSE_BASELINE']}), alternated: "
                f"append_many {rate:,.0f} against "
                f"{size / seconds['baseline_append_many']:,.0f} events/s "
                f"({seconds['append_many'] / seconds['baseline_append_many']:.2f}x the time), "
                f"append_columns {columns_rate:,.0f} against "
                f"{size / seconds['baseline_append_columns']:,.0f} events/s "
                f"({seconds['append_columns'] / seconds['baseline_append_columns']:.2f}x); "
                f"loadavg {loadavg()}"
            )
        SUMMARY.append(
            f"clickhouse insert of {size:,}-event batches (a live stream, events of the "
            f"{LIVE_SPREAD_SECONDS} s before each batch): append_many {rate:,.0f} events/s, "
            f"append_columns {columns_rate:,.0f} events/s, a pipeline holding columns that "
            f"builds events for append_many {size / seconds['events_then_append_many']:,.0f} "
            f"events/s (append_columns / that = "
            f"{seconds['append_columns'] / seconds['events_then_append_many']:.2f}x time); "
            f"raw columnar INSERT {size / seconds['raw']:,.0f} events/s, append_many / raw = "
            f"{seconds['append_many'] / seconds['raw']:.2f}x time, append_columns / raw = "
            f"{seconds['append_columns'] / seconds['raw']:.2f}x; raw INSERT into schema 1's "
            f"view {size / seconds['raw_v1']:,.0f} events/s (schema 3 / schema 1 raw = "
            f"{seconds['raw'] / seconds['raw_v1']:.2f}x time); its duplicate checks "
            f"{first_ms:.1f} ms (before the insert) and {second_ms:.1f} ms (after it; grouping "
            f"every id instead {previous_ms:.1f} ms); goal {INGEST_GOAL:,}/s: {met}; "
            f"loadavg {loadavg()}"
        )
        benchmark.extra_info.update(
            {
                f"append_many_{size}_events_per_s": rate,
                f"append_columns_{size}_events_per_s": columns_rate,
                f"events_then_append_many_{size}_events_per_s": size
                / seconds["events_then_append_many"],
                f"raw_insert_{size}_events_per_s": size / seconds["raw"],
                f"raw_insert_schema_1_{size}_events_per_s": size / seconds["raw_v1"],
                f"first_duplicate_check_{size}_ms": first_ms,
                f"second_duplicate_check_{size}_ms": second_ms,
                f"previous_second_check_{size}_ms": previous_ms,
            }
        )
        for name in ("baseline_append_many", "baseline_append_columns"):
            if name in seconds:
                benchmark.extra_info[f"{name}_{size}_events_per_s"] = size / seconds[name]
    size = INSERT_BATCH_SIZES[1]
    stores = {"this tree": store}
    if BASELINE is not None:
        stores["baseline"] = BASELINE.ClickHouseEventStore(engine)
    phases = _phases_ms(stores, size)
    SUMMARY.append(
        f"clickhouse append_many of {size:,} events, inside the call (median of "
        f"{INSERT_BATCHES}"
        + (", alternated with the baseline adapter" if BASELINE is not None else "")
        + "): "
        + "; ".join(
            f"{name}: " + ", ".join(f"{phase} {ms:.1f} ms" for phase, ms in each.items())
            for name, each in phases.items()
        )
        + f"; loadavg {loadavg()}"
    )
    benchmark.extra_info.update(
        {
            f"{name} {phase} ms".replace(" ", "_"): ms
            for name, each in phases.items()
            for phase, ms in each.items()
        }
    )
    rounds = [_events(size) for _ in range(INSERT_BATCHES)]
    benchmark.pedantic(lambda: store.append_many(rounds.pop()), rounds=INSERT_BATCHES, iterations=1)


LIVE_BATCH = 1_000


def _reads_after_a_batch(store: Any, since: int) -> dict[str, float]:
    """Stats reads as a live stream meets them, each right after a batch of
    ``LIVE_BATCH`` events: by ``store``, which keeps the like counts it read again since
    the roll-up and reads again only the videos with new likes or unlikes; by a new
    store (its first read, which reads every candidate's like count with likes since the
    roll-up again, as the release before did on every read); and by the baseline
    adapter's store when given. Interleaved rounds; one summary line."""
    candidates = _CANDIDATES
    writer = reelrank_clickhouse.ClickHouseEventStore(store.engine)
    writer.append_many(_events(LIVE_BATCH))  # its client connects before the clock starts
    stores = {"kept": store}
    if BASELINE is not None:
        stores["baseline"] = BASELINE.ClickHouseEventStore(store.engine)
        stores["baseline"].stats_columns(candidates)  # loads its held roll-up
    samples: dict[str, list[float]] = {name: [] for name in (*stores, "new store")}

    def after_a_batch(name: str) -> None:
        writer.append_many(_events(LIVE_BATCH))
        reader = stores.get(name) or reelrank_clickhouse.ClickHouseEventStore(store.engine)
        if name == "new store":
            reader._held = store._held  # the held roll-up's load is timed elsewhere
        started = time.perf_counter()
        reader.stats_columns(candidates)
        samples[name].append(time.perf_counter() - started)

    interleaved([lambda n=name: after_a_batch(n) for name in samples], READ_ROUNDS, rotate=True)
    figures = {name: p50_p99_ms(each) for name, each in samples.items()}
    shown = {name: f"p50 {p50:.1f} / p99 {p99:.1f} ms" for name, (p50, p99) in figures.items()}
    against_baseline = (
        ""
        if BASELINE is None
        else (
            f"; the baseline adapter's {shown['baseline']} (this tree / baseline = "
            f"{figures['kept'][0] / figures['baseline'][0]:.2f}x at p50, "
            f"{figures['kept'][1] / figures['baseline'][1]:.2f}x at p99)"
        )
    )
    SUMMARY.append(
        f"clickhouse stats of {CANDIDATES:,} candidates, each read right after a "
        f"{LIVE_BATCH:,}-event batch ({since:,} events arrived since the roll-up before "
        f"the first): stats_columns of a store that has read before (like counts kept) "
        f"{shown['kept']}; a new store's first read (every like count with likes since read "
        f"again) {shown['new store']}{against_baseline}; goal p99 < {READ_GOAL_MS:.0f} ms; "
        f"{READ_ROUNDS} rounds; loadavg {loadavg()}"
    )
    return _p50_p99_info(figures, prefix="after_a_batch_")


def test_stats_with_events_arrived_since_the_roll_up(benchmark: Any, server: Any) -> None:
    """After the insert cases: reads add what arrived after the roll-up; then a new
    roll-up folds it in."""
    engine, client, _ = server
    store = reelrank_clickhouse.ClickHouseEventStore(engine)
    with store._clients.reader() as reader:
        fold = reader.execute(store._queries.folds)[0][0]
        since = reader.execute(
            "SELECT countMerge(events) FROM event_aggregates "
            f"WHERE tag = {Tag.FINE_ARRIVED} AND a >= {fold << FINE_PER_COARSE_BITS}"
        )[0][0]
    assert _reads_roll_up(store, _CANDIDATES)
    figures = _read_summary(store, client, f"{since:,} events arrived since the roll-up")
    figures.update(_reads_after_a_batch(store, since))
    fold_seconds = _fold_seconds(store, datetime.now(UTC) + timedelta(minutes=3))
    assert _reads_roll_up(store, _CANDIDATES)
    incremental = _as_tuples(store.get_stats(_CANDIDATES))
    # The same events rolled up from the start, as the baseline (and the same numbers).
    full_seconds = _fold_seconds(store, datetime.now(UTC) + timedelta(minutes=6), incremental=False)
    assert _differing(_as_tuples(store.get_stats(_CANDIDATES)), incremental) == []
    SUMMARY.append(
        f"clickhouse fold_stats again ({LOADED_EVENTS + since:,} events, {since:,} since the "
        f"last roll-up): incremental {fold_seconds:.2f} s; everything rolled up again "
        f"{full_seconds:.2f} s (incremental / everything = {fold_seconds / full_seconds:.2f}x); "
        f"loadavg {loadavg()}"
    )
    benchmark.extra_info.update(
        {
            "events_since": since,
            "refold_seconds": fold_seconds,
            "full_refold_seconds": full_seconds,
            **figures,
        }
    )
    benchmark.pedantic(lambda: store.get_stats(_CANDIDATES), rounds=3, iterations=1)


VARIANT_ROUNDS = 6 if QUICK else 15


def test_insert_variants_of_the_driver(benchmark: Any, server: Any) -> None:
    """The raw insert of the same rows with clickhouse-driver: Python lists (what the
    store sends), numpy columns (``use_numpy``; the ``Enum8`` kind falls back to the
    generic column), and lists with lz4 compression (when ``clickhouse-cityhash``, which
    the driver's compression needs, is installed); alternating."""
    import logging

    engine, client, _ = server
    dsn = engine.dialect.create_connect_args(engine.url)[0][0]
    clients = {"lists": client}
    clients["numpy"] = clickhouse_driver.Client.from_url(dsn + "&use_numpy=true")
    try:
        import clickhouse_cityhash  # noqa: F401

        clients["lz4"] = clickhouse_driver.Client.from_url(dsn + "&compression=lz4")
    except ImportError:
        pass
    # The numpy column lookup warns on every insert that Enum8 falls back.
    logging.getLogger("clickhouse_driver.columns.service").setLevel(logging.ERROR)
    insert = reelrank_clickhouse.ClickHouseEventStore(engine)._queries.insert
    arrival = itertools.count(time.time_ns(), 1_000_000)

    def lists(pairs: list[tuple[EngagementEvent, int]]) -> list[Any]:
        columns = event_columns([event for event, _ in pairs], next(arrival))
        columns.append([creator for _, creator in pairs])
        return columns

    def as_numpy(columns: list[Any]) -> list[Any]:
        numbers = {2: np.uint64, 3: np.uint64, 5: np.uint32, 10: np.uint64, 11: np.uint64}
        made: list[Any] = []
        for index, column in enumerate(columns):
            if index in numbers:
                made.append(np.array(column, dtype=numbers[index]))
            elif index == SECONDS_COLUMN:
                made.append(np.array(column, dtype="datetime64[s]"))
            else:
                made.append(np.array(column, dtype=object))
        return made

    for size in INSERT_BATCH_SIZES[1:]:
        pending = {name: [lists(_events(size)) for _ in range(VARIANT_ROUNDS)] for name in clients}
        pending["numpy"] = [as_numpy(columns) for columns in pending["numpy"]]

        def call(name: str, pending: dict[str, list[Any]] = pending) -> None:
            clients[name].execute(insert, pending[name].pop(), columnar=True)

        samples = interleaved(
            [lambda name=name: call(name) for name in clients], VARIANT_ROUNDS, rotate=True
        )
        medians = {
            name: statistics.median(each) for name, each in zip(clients, samples, strict=True)
        }
        shown = ", ".join(
            f"{name} {size / seconds:,.0f} events/s ({seconds / medians['lists']:.2f}x time)"
            for name, seconds in medians.items()
        )
        SUMMARY.append(
            f"clickhouse raw insert of {size:,}-event batches by the driver: {shown}; "
            f"loadavg {loadavg()}"
        )
        benchmark.extra_info.update(
            {f"raw_{name}_{size}_events_per_s": size / s for name, s in medians.items()}
        )
    for name, each in clients.items():
        if name != "lists":
            each.disconnect()
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
