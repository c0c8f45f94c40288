"""The ClickHouse adapter on loopback, each case next to a baseline measured in the same run.

* per-video stats of 1,000 videos: :meth:`ClickHouseEventStore.get_stats`, which merges
  the aggregate states the materialized views keep, against a ``GROUP BY`` over the raw
  ``events`` table computing the same numbers (the table is ordered by time for
  the engagement reads, so the baseline scans it);
* insert throughput: :meth:`ClickHouseEventStore.append_many` of 1,000- and 10,000-event
  batches (validation, one id-check query per batch, then one columnar insert feeding
  five views) against a raw columnar ``INSERT`` of the same rows with the same driver
  (clickhouse-driver's native protocol, no validation, no id check). The events are
  built before the clock starts: both sides time what happens to a batch the caller
  already holds.

Ratios go into the table at the end of the run. Skips when ``clickhouse-server`` or
``reelrank-clickhouse`` is not installed (``scripts/test.sh`` installs both).
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import QUICK, SUMMARY

from reelrank import EngagementEvent, EngagementKind
from reelrank.testing import make_event

reelrank_clickhouse = pytest.importorskip("reelrank_clickhouse")
clickhouse_testing = pytest.importorskip("reelrank_clickhouse.testing")
sqlalchemy = pytest.importorskip("sqlalchemy")
clickhouse_driver = pytest.importorskip("clickhouse_driver")

if clickhouse_testing.find_clickhouse_server() is None:
    pytest.skip("clickhouse-server is not installed", allow_module_level=True)

from reelrank_clickhouse._event_store import (  # noqa: E402
    _COUNTS_OF_VIDEOS,
    _INSERT_EVENTS,
    _LIKES_OF_VIDEOS,
)

VIDEOS = 1_000
LOADED_EVENTS = 100_000 if QUICK else 1_000_000
INSERT_BATCH_SIZES = (1_000, 10_000, 50_000)
INSERT_BATCHES = 3 if QUICK else 10
TIMED_ROUNDS = 5 if QUICK else 20

_RAW_COUNTS = sqlalchemy.text(
    """SELECT video_id, countIf(kind = 'watch'), sumIf(completion, kind = 'watch'),
       countIf(kind = 'share'), countIf(kind = 'comment')
FROM events WHERE video_id IN :ids GROUP BY video_id"""
).bindparams(sqlalchemy.bindparam("ids", expanding=True))

_RAW_LIKES = sqlalchemy.text(
    """SELECT video_id, sum(liked) FROM (
    SELECT video_id, user_id, argMax(toUInt8(kind = 'like'), seq) AS liked
    FROM events WHERE video_id IN :ids AND kind IN ('like', 'unlike')
    GROUP BY video_id, user_id
) GROUP BY video_id"""
).bindparams(sqlalchemy.bindparam("ids", expanding=True))

# The bulk load is generated on the server: an INSERT ... SELECT feeds the materialized
# views like any insert, at a fraction of the time of building the events in Python.
# Kinds cycle watch, watch, watch, like, share, comment, unlike; 50 users, 40 creators.
_GENERATE = sqlalchemy.text(
    f"""INSERT INTO events (event_id, kind, user_id, video_id, creator_id, occurred_at,
                        occurred_us, completion, channel, seq)
SELECT concat('load-', toString(number)),
       CAST(arrayElement(['watch', 'watch', 'watch', 'like', 'share', 'comment', 'unlike'],
                         number % 7 + 1)
            AS Enum8('watch' = 1, 'like' = 2, 'unlike' = 3, 'share' = 4, 'comment' = 5)),
       1 + intDiv(number, {VIDEOS}) % 50,
       1 + number % {VIDEOS},
       1 + (1 + number % {VIDEOS}) % 40,
       toDateTime('2026-01-01 00:00:00', 'UTC') + intDiv(number, 100),
       0,
       if(number % 7 < 3, (number % 10) / 10, NULL),
       if(number % 7 = 4, 'link', NULL),
       number
FROM numbers({LOADED_EVENTS})"""
)

_KINDS = (
    EngagementKind.WATCH,
    EngagementKind.WATCH,
    EngagementKind.WATCH,
    EngagementKind.LIKE,
    EngagementKind.SHARE,
    EngagementKind.COMMENT,
    EngagementKind.UNLIKE,
)


def _events(count: int, start: int) -> list[tuple[EngagementEvent, int]]:
    made = []
    for number in range(start, start + count):
        kind = _KINDS[number % len(_KINDS)]
        extra = {"completion": (number % 10) / 10} if kind is EngagementKind.WATCH else {}
        video_id = 1 + number % VIDEOS
        user_id = 1 + (number // VIDEOS) % 50
        event = make_event(kind, user_id=user_id, video_id=video_id, **extra)
        made.append((event, 1 + video_id % 40))
    return made


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    directory: Path = tmp_path_factory.mktemp("bench-clickhouse")
    with clickhouse_testing.ClickHouseServer(directory) as server:
        server.execute("CREATE DATABASE bench")
        config = reelrank_clickhouse.ClickHouseConfig(
            port=server.tcp_port, database="bench", send_receive_timeout_seconds=60.0
        )
        built = reelrank_clickhouse.connect(config)
        reelrank_clickhouse.create_schema(built)
        with built.connect() as conn:
            conn.execute(_GENERATE)
        yield built
        built.dispose()


def _raw_stats(engine: Any, ids: list[int]) -> dict[int, tuple[int, float, int, int, int]]:
    with engine.connect() as conn:
        counts = {
            int(row[0]): (int(row[1]), float(row[2]), int(row[3]), int(row[4]))
            for row in conn.execute(_RAW_COUNTS, {"ids": ids})
        }
        likes = {int(row[0]): int(row[1]) for row in conn.execute(_RAW_LIKES, {"ids": ids})}
    return {
        vid: (views, completion, likes.get(vid, 0), shares, comments)
        for vid, (views, completion, shares, comments) in counts.items()
    }


def _interleaved_medians(
    first: Callable[[], Any], second: Callable[[], Any], rounds: int = TIMED_ROUNDS
) -> tuple[float, float]:
    """Median seconds of each call, alternating them so machine noise hits both alike."""
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for call, into in ((first, samples[0]), (second, samples[1])):
            started = time.perf_counter()
            call()
            into.append(time.perf_counter() - started)
    return statistics.median(samples[0]), statistics.median(samples[1])


def _view_stats(engine: Any, ids: list[int]) -> int:
    """The store's two aggregate-state queries alone, without building VideoStats."""
    with engine.connect() as conn:
        rows = conn.execute(_COUNTS_OF_VIDEOS, {"ids": ids}).fetchall()
        rows += conn.execute(_LIKES_OF_VIDEOS, {"ids": ids}).fetchall()
    return len(rows)


def test_stats_of_1000_videos_from_views_vs_raw_group_by(benchmark: Any, engine: Any) -> None:
    store = reelrank_clickhouse.ClickHouseEventStore(engine)
    ids = list(range(1, VIDEOS + 1))
    from_views = store.get_stats(ids)
    raw = _raw_stats(engine, ids)
    # Same numbers either way (the data set holds no duplicate ids).
    for vid, (views, completion, likes, shares, comments) in raw.items():
        stats = from_views[vid]
        assert (stats.views, stats.likes, stats.shares, stats.comments) == (
            views,
            likes,
            shares,
            comments,
        )
        assert abs(stats.completion_sum - completion) < 1e-6
    view_seconds, raw_seconds = _interleaved_medians(
        lambda: _view_stats(engine, ids), lambda: _raw_stats(engine, ids)
    )
    store_seconds, _ = _interleaved_medians(lambda: store.get_stats(ids), lambda: None)
    SUMMARY.append(
        f"clickhouse stats of {VIDEOS} videos ({LOADED_EVENTS} events): "
        f"view queries {view_seconds * 1e3:.1f} ms, raw GROUP BY {raw_seconds * 1e3:.1f} ms, "
        f"raw / views = {raw_seconds / view_seconds:.2f}x; get_stats with VideoStats "
        f"{store_seconds * 1e3:.1f} ms"
    )
    benchmark.extra_info.update(
        {
            "view_queries_ms": view_seconds * 1e3,
            "raw_group_by_ms": raw_seconds * 1e3,
            "get_stats_ms": store_seconds * 1e3,
        }
    )
    benchmark(store.get_stats, ids)


_numbers = itertools.count(0)


def _raw_client(engine: Any) -> Any:
    """A clickhouse-driver client for the engine's server and database, as the store makes."""
    (dsn,), _ = engine.dialect.create_connect_args(engine.url)
    return clickhouse_driver.Client.from_url(dsn)


def _insert_seconds(store: Any, raw: Any, size: int) -> tuple[float, float]:
    """Median seconds of ``append_many`` and of the raw insert, for batches of ``size``."""
    # Fresh ids for every timed call: a batch seen before would be skipped by the store.
    pending = [_events(size, next(_numbers) * size) for _ in range(2 * INSERT_BATCHES + 1)]

    def with_store() -> None:
        assert store.append_many(pending.pop()) == size

    def raw_insert() -> None:
        raw.execute(_INSERT_EVENTS, store._columns(pending.pop(), 1), columnar=True)

    with_store()  # the store's client connects before the clock starts, as the raw one did
    return _interleaved_medians(with_store, raw_insert, INSERT_BATCHES)


def test_insert_throughput_of_batches(benchmark: Any, engine: Any) -> None:
    store = reelrank_clickhouse.ClickHouseEventStore(engine)
    raw = _raw_client(engine)
    raw.execute("SELECT 1")
    for size in INSERT_BATCH_SIZES:
        store_seconds, raw_seconds = _insert_seconds(store, raw, size)
        SUMMARY.append(
            f"clickhouse insert of {size}-event batches: append_many "
            f"{size / store_seconds:,.0f} events/s, raw columnar INSERT "
            f"{size / raw_seconds:,.0f} events/s, append_many / raw = "
            f"{store_seconds / raw_seconds:.2f}x time"
        )
        benchmark.extra_info.update(
            {
                f"append_many_{size}_events_per_s": size / store_seconds,
                f"raw_insert_{size}_events_per_s": size / raw_seconds,
            }
        )
    raw.disconnect()
    size = INSERT_BATCH_SIZES[1]
    rounds = [_events(size, next(_numbers) * size) for _ in range(INSERT_BATCHES)]
    benchmark.pedantic(lambda: store.append_many(rounds.pop()), rounds=INSERT_BATCHES, iterations=1)
