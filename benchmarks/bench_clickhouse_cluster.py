"""The ClickHouse event store in sharded mode against one server, in the same run.

Two deployments on this machine's loopback, each fed the same events through the same
public API (:meth:`ClickHouseEventStore.append_many`):

* *one server*: the adapter's default schema;
* *2 shards*: a :class:`~reelrank_clickhouse.testing.ClickHouseCluster` of two servers,
  ``Distributed`` tables sharded by ``cityHash64(user_id)`` over per-shard tables, every
  insert synchronous (``insert_distributed_sync=1``), entering through the first server.

Cases, each alternating the two deployments so machine noise hits both alike:

* ingest of 10,000-event batches (duplicate check, insert, second check): events/s;
* stats of 1,000 candidate videos (10,000 in full mode) after loading 200,000 events
  (2,000,000): p50 / p99 ms, and the two deployments must return the same statistics.

Both deployments share the same two cores, so the cluster cannot be faster here: the
figures give the cost of the ``Distributed`` hop (the initiator sends the batch's ids
to every shard and merges the answers) that a real cluster pays on top of the work it
spreads over machines.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import QUICK, SUMMARY, interleaved, loadavg, p50_p99_ms

from reelrank import EngagementEvent, EngagementKind
from reelrank.testing import make_event

reelrank_clickhouse = pytest.importorskip("reelrank_clickhouse")
clickhouse_testing = pytest.importorskip("reelrank_clickhouse.testing")

pytestmark = pytest.mark.timeout(600 if QUICK else 3_600)

if clickhouse_testing.find_clickhouse_server() is None:
    pytest.skip("clickhouse-server is not installed", allow_module_level=True)

LOADED_EVENTS = 200_000 if QUICK else 2_000_000
LOAD_BATCH = 50_000
VIDEOS = 20_000 if QUICK else 100_000
USERS = 10_000 if QUICK else 200_000
CANDIDATES = 1_000 if QUICK else 10_000
INGEST_BATCH = 10_000
INGEST_ROUNDS = 3 if QUICK else 8
READ_ROUNDS = 15 if QUICK else 25
START = datetime(2026, 1, 1, tzinfo=UTC)
_KINDS = (
    EngagementKind.WATCH,
    EngagementKind.WATCH,
    EngagementKind.WATCH,
    EngagementKind.LIKE,
    EngagementKind.SHARE,
    EngagementKind.COMMENT,
)

Pairs = list[tuple[EngagementEvent, int]]


def _events(count: int, prefix: str, rng: random.Random) -> Pairs:
    """``count`` events of every kind over random users and videos, ids unique by ``prefix``."""
    made: Pairs = []
    for n in range(count):
        kind = _KINDS[n % len(_KINDS)]
        video = rng.randrange(1, VIDEOS + 1)
        extra = {"completion": rng.random()} if kind is EngagementKind.WATCH else {}
        event = make_event(
            kind,
            user_id=rng.randrange(1, USERS + 1),
            video_id=video,
            event_id=f"{prefix}-{n}",
            occurred_at=START + timedelta(seconds=n),
            **extra,
        )
        made.append((event, 1 + video % 500))
    return made


@pytest.fixture(scope="module")
def deployments(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``{"one server": store, "2 shards": store}`` holding the same loaded events."""
    directory: Path = tmp_path_factory.mktemp("bench-clickhouse-cluster")
    limits = {"send_receive_timeout_seconds": 600.0, "max_execution_seconds": 600}
    with (
        clickhouse_testing.ClickHouseServer(directory / "one") as one,
        clickhouse_testing.ClickHouseCluster(directory / "cluster", shards=2) as cluster,
    ):
        one.execute("CREATE DATABASE bench")
        cluster.execute_everywhere("CREATE DATABASE bench")
        configs = {
            "one server": reelrank_clickhouse.ClickHouseConfig(
                port=one.tcp_port, database="bench", **limits
            ),
            "2 shards": cluster.config("bench", **limits),
        }
        engines = {name: reelrank_clickhouse.connect(config) for name, config in configs.items()}
        stores: dict[str, Any] = {}
        for name, engine in engines.items():
            reelrank_clickhouse.create_schema(engine, configs[name])
            stores[name] = reelrank_clickhouse.ClickHouseEventStore(
                engine, tables=configs[name].tables
            )
        rng = random.Random(20261206)
        for start in range(0, LOADED_EVENTS, LOAD_BATCH):
            batch = _events(min(LOAD_BATCH, LOADED_EVENTS - start), f"load-{start}", rng)
            for store in stores.values():
                assert store.append_many(batch) == len(batch)
        yield stores
        for engine in engines.values():
            engine.dispose()


def test_ingest_through_two_shards_against_one_server(
    benchmark: Any, deployments: dict[str, Any]
) -> None:
    rng = random.Random(7)
    names = list(deployments)
    pending: dict[str, list[Pairs]] = {name: [] for name in names}
    for round_number in range(INGEST_ROUNDS):
        batch = _events(INGEST_BATCH, f"ingest-{round_number}", rng)
        for name in names:
            pending[name].append(batch)

    def ingest(name: str) -> Callable[[], None]:
        def run() -> None:
            assert deployments[name].append_many(pending[name].pop()) == INGEST_BATCH

        return run

    samples = interleaved([ingest(name) for name in names], INGEST_ROUNDS)
    rates = {
        name: INGEST_BATCH / statistics.median(s) for name, s in zip(names, samples, strict=True)
    }
    SUMMARY.append(
        f"clickhouse ingest of {INGEST_BATCH:,}-event batches, median of {INGEST_ROUNDS}: "
        f"one server {rates['one server']:,.0f} events/s, 2 shards (Distributed, synchronous) "
        f"{rates['2 shards']:,.0f} events/s, 2 shards / one server = "
        f"{rates['2 shards'] / rates['one server']:.2f}x (both on the same 2 cores); "
        f"loadavg {loadavg()}"
    )
    benchmark.extra_info.update({f"{name} events/s": rate for name, rate in rates.items()})
    extra = _events(INGEST_BATCH, "ingest-measured", rng)
    benchmark.pedantic(lambda: deployments["2 shards"].append_many(extra), rounds=1, iterations=1)
    deployments["one server"].append_many(extra)  # both keep holding the same events


def test_stats_through_two_shards_against_one_server(
    benchmark: Any, deployments: dict[str, Any]
) -> None:
    ids = random.Random(11).sample(range(1, VIDEOS + 1), CANDIDATES)
    one, sharded = deployments["one server"], deployments["2 shards"]
    # The same events give the same answers (completion sums up to summation order).
    got, want = sharded.get_stats(ids), one.get_stats(ids)
    for video_id in ids:
        mine, theirs = got[video_id], want[video_id]
        assert (mine.views, mine.likes, mine.shares, mine.comments) == (
            theirs.views,
            theirs.likes,
            theirs.shares,
            theirs.comments,
        ), video_id
        assert abs(mine.completion_sum - theirs.completion_sum) < 1e-6, video_id
    samples = interleaved([lambda: one.get_stats(ids), lambda: sharded.get_stats(ids)], READ_ROUNDS)
    (one_p50, one_p99), (two_p50, two_p99) = (p50_p99_ms(s) for s in samples)
    SUMMARY.append(
        f"clickhouse stats of {CANDIDATES:,} candidates over {LOADED_EVENTS:,} events, p50/p99: "
        f"one server {one_p50:.1f}/{one_p99:.1f} ms, 2 shards {two_p50:.1f}/{two_p99:.1f} ms, "
        f"2 shards / one server p50 = {two_p50 / one_p50:.2f}x; loadavg {loadavg()}"
    )
    benchmark.extra_info.update(
        {"one server p50 ms": one_p50, "2 shards p50 ms": two_p50, "2 shards p99 ms": two_p99}
    )
    benchmark.pedantic(lambda: sharded.get_stats(ids), rounds=3, iterations=1)
