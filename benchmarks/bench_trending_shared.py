"""``Trending.top`` served from a shared snapshot store against computed, in one run.

The reels service now keeps trending results in a store every worker shares (Redis, or
its SQL database) and serves them for ``trending_reuse_seconds`` instead of computing
on every request. This measures what a served call costs against a computed one:

* **computed** (the baseline): ``reuse_seconds=0``, every call reads the catalog's
  labels and the log's window and scores them, on the in-memory stores, the fastest
  backends (the service computes over PostgreSQL and ClickHouse, several times slower:
  see the capacity page), so the ratio is a floor;
* **served**: the same ``Trending`` with a long ``reuse_seconds`` over a
  :class:`~reelrank_redis.RedisTrendingSnapshotStore` on a real ``redis-server``, and
  over a :class:`~reelrank_postgres.SqlTrendingSnapshotStore` on a SQLite file, each
  holding the snapshot the first call stored (200 items, the default size).

The catalog has the shape the load benchmark seeds at 100,000 videos (20,000 in quick
mode), published over 14 days with 40 sounds and one to three of 15 hashtags each, and
as many events over the same days. The calls are interleaved, and wall and process
CPU time are both reported. The served answers are checked equal to the computed one
before timing.

Two more cases time the call that finds the stored snapshot 90 s old, past
``reuse_seconds`` (60): computed during the call (``refresh_ahead_seconds`` 0) against
served at once while a background thread computes (``refresh_ahead_seconds`` 300), on
the stores above and through the example service's trending endpoint on its SQLite
stack (20,000 videos; 2,000 in quick mode).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import QUICK, SUMMARY, loadavg, p50_p99_ms

from reelrank import (
    EngagementKind,
    InMemoryCatalog,
    InMemoryEngagementLog,
    Trending,
    TrendingConfig,
    TrendingKind,
    TrendingSnapshotStore,
)
from reelrank.testing import make_creator, make_event, make_video

reelrank_redis = pytest.importorskip("reelrank_redis")
redis_testing = pytest.importorskip("reelrank_redis.testing")
reelrank_postgres = pytest.importorskip("reelrank_postgres")

pytestmark = pytest.mark.timeout(900)

VIDEOS = 20_000 if QUICK else 100_000
EVENTS = VIDEOS
DAYS = 14
CREATORS = 1_000
ROUNDS = 5 if QUICK else 20
AGED_ROUNDS = 10 if QUICK else 60
NOW = datetime(2026, 3, 1, tzinfo=UTC)
TOPICS = (
    "dance", "comedy", "cooking", "travel", "fitness", "music", "pets", "diy",
    "fashion", "gaming", "art", "science", "football", "makeup", "nature",
)  # fmt: skip
KINDS = (EngagementKind.WATCH,) * 6 + (EngagementKind.LIKE,) * 2 + (EngagementKind.SHARE,) * 2


@pytest.fixture(scope="module")
def stores() -> tuple[InMemoryCatalog, InMemoryEngagementLog]:
    rng = np.random.default_rng(7)
    catalog = InMemoryCatalog()
    log = InMemoryEngagementLog()
    for creator_id in range(1, CREATORS + 1):
        catalog.put_creator(make_creator(creator_id))
    span = DAYS * 86_400.0
    for video_id in range(1, VIDEOS + 1):
        tags = rng.choice(len(TOPICS), size=int(rng.integers(1, 4)), replace=False)
        catalog.put_video(
            make_video(
                video_id,
                int(rng.integers(1, CREATORS + 1)),
                published_at=NOW - timedelta(seconds=float(rng.uniform(0.0, span))),
                hashtags=[TOPICS[int(tag)] for tag in tags],
                sound_id=int(rng.integers(1, 41)),
            )
        )
    for _ in range(EVENTS):
        log.record(
            make_event(
                KINDS[int(rng.integers(len(KINDS)))],
                user_id=int(rng.integers(1, 2_001)),
                video_id=int(rng.integers(1, VIDEOS + 1)),
                occurred_at=NOW - timedelta(seconds=float(rng.uniform(0.0, span))),
            )
        )
    return catalog, log


@pytest.fixture(scope="module")
def redis_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrendingSnapshotStore]:
    if redis_testing.find_redis_server() is None:
        pytest.skip("redis-server is not installed")
    with redis_testing.RedisServer(tmp_path_factory.mktemp("bench-trending-redis")) as server:
        config = reelrank_redis.RedisConfig(url=server.url, prefix="bench")
        client = reelrank_redis.connect(config)
        yield reelrank_redis.RedisTrendingSnapshotStore(client, config)
        client.close()


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrendingSnapshotStore]:
    path: Path = tmp_path_factory.mktemp("bench-trending-sql") / "trending.db"
    engine = reelrank_postgres.connect(reelrank_postgres.SqlStoreConfig(url=f"sqlite:///{path}"))
    reelrank_postgres.migrate(engine)
    yield reelrank_postgres.SqlTrendingSnapshotStore(engine)
    engine.dispose()


def _timed(calls: list[Callable[[], Any]], rounds: int) -> list[tuple[list[float], list[float]]]:
    """Wall and process-CPU seconds of each call per round, the calls interleaved."""
    samples: list[tuple[list[float], list[float]]] = [([], []) for _ in calls]
    for _ in range(rounds):
        for call, (walls, cpus) in zip(calls, samples, strict=True):
            wall, cpu = time.perf_counter(), time.process_time()
            call()
            cpus.append(time.process_time() - cpu)
            walls.append(time.perf_counter() - wall)
    return samples


def test_served_from_the_shared_store_against_computed(
    benchmark: Any,
    stores: tuple[InMemoryCatalog, InMemoryEngagementLog],
    redis_store: TrendingSnapshotStore,
    sqlite_store: TrendingSnapshotStore,
) -> None:
    catalog, log = stores
    computed = Trending(catalog, log, config=TrendingConfig(reuse_seconds=0.0))
    served = {
        name: Trending(catalog, log, snapshots=store, config=TrendingConfig(reuse_seconds=3_600))
        for name, store in (("redis", redis_store), ("sqlite", sqlite_store))
    }
    for kind in TrendingKind:
        reference = computed.top(kind, now=NOW, limit=20)
        assert reference.items
        for trending in served.values():
            assert trending.top(kind, now=NOW, limit=20) == reference  # computed, stored
            assert trending.top(kind, now=NOW, limit=20) == reference  # served
    calls = [lambda: computed.top(TrendingKind.HASHTAG, now=NOW, limit=20)] + [
        (lambda trending=trending: trending.top(TrendingKind.HASHTAG, now=NOW, limit=20))
        for trending in served.values()
    ]
    samples = _timed(calls, ROUNDS)
    median = [
        (float(np.median(walls)) * 1e3, float(np.median(cpus)) * 1e3) for walls, cpus in samples
    ]
    computed_wall, computed_cpu = median[0]
    for name, (wall, cpu) in zip(served, median[1:], strict=True):
        SUMMARY.append(
            f"trending top 20 hashtags, {VIDEOS:,} videos and {EVENTS:,} events: computed "
            f"(in memory) p50 {computed_wall:.1f} ms wall / {computed_cpu:.1f} ms CPU; served "
            f"from {name} p50 {wall:.2f} ms wall / {cpu:.2f} ms CPU; computed / served = "
            f"{computed_wall / wall:.0f}x wall, {computed_cpu / max(cpu, 1e-6):.0f}x CPU; "
            f"loadavg {loadavg()}"
        )
        benchmark.extra_info[f"{name}_p50_ms"] = wall
    benchmark.extra_info["computed_p50_ms"] = computed_wall
    benchmark.pedantic(calls[1], rounds=3)


def test_an_aged_snapshot_refreshed_ahead_against_computed_during_the_call(
    benchmark: Any,
    stores: tuple[InMemoryCatalog, InMemoryEngagementLog],
    redis_store: TrendingSnapshotStore,
    sqlite_store: TrendingSnapshotStore,
) -> None:
    """The call that finds the stored snapshot 90 s old (past ``reuse_seconds`` 60):
    computed during the call (``refresh_ahead_seconds`` 0, as before) against served at
    once while a background thread computes (``refresh_ahead_seconds`` 300); and a
    second call made while that background computation runs. Each round puts the aged
    snapshot back first; a refreshed-ahead call's computation is waited for, untimed,
    before the next call."""
    catalog, log = stores
    kind = TrendingKind.HASHTAG
    aged = Trending(catalog, log, config=TrendingConfig(reuse_seconds=0.0)).top(
        kind, now=NOW, limit=200
    )
    variants = {
        (name, ahead): Trending(
            catalog,
            log,
            snapshots=store,
            config=TrendingConfig(reuse_seconds=60.0, refresh_ahead_seconds=ahead),
        )
        for name, store in (("sqlite", sqlite_store), ("redis", redis_store))
        for ahead in (0.0, 300.0)
    }
    store_of = {"sqlite": sqlite_store, "redis": redis_store}
    calls = list(variants)
    walls: dict[tuple[str, float], list[float]] = {call: [] for call in calls}
    during: dict[str, list[float]] = {name: [] for name in store_of}
    for round_number in range(AGED_ROUNDS):
        now = NOW + timedelta(hours=round_number + 1)
        start = round_number % len(calls)
        for name, ahead in calls[start:] + calls[:start]:
            trending = variants[(name, ahead)]
            store_of[name].put_snapshot(
                aged.model_copy(update={"computed_at": now - timedelta(seconds=90)})
            )
            started = time.perf_counter()
            answer = trending.top(kind, now=now, limit=20)
            walls[(name, ahead)].append(time.perf_counter() - started)
            if ahead:
                assert answer.items == aged.items[:20] and answer.stale_as_of is None
                started = time.perf_counter()
                trending.top(kind, now=now, limit=20)
                during[name].append(time.perf_counter() - started)
                trending._refreshing[(kind, 24.0)].result()
            stored = store_of[name].latest_snapshot(kind, 24.0)
            assert stored is not None and stored.computed_at == now
    for trending in variants.values():
        trending.close()
    for name in store_of:
        inline_p50, inline_p99 = p50_p99_ms(walls[(name, 0.0)])
        ahead_p50, ahead_p99 = p50_p99_ms(walls[(name, 300.0)])
        during_p50, during_p99 = p50_p99_ms(during[name])
        SUMMARY.append(
            f"trending top 20 hashtags with a 90 s old snapshot on {name}, {VIDEOS:,} videos, "
            f"{len(walls[(name, 0.0)])} rounds: computed during the call p50 {inline_p50:.1f} ms "
            f"/ p99 {inline_p99:.1f} ms; refreshed ahead p50 {ahead_p50:.2f} ms / p99 "
            f"{ahead_p99:.2f} ms; computed / refreshed ahead = {inline_p50 / ahead_p50:.0f}x "
            f"p50, {inline_p99 / ahead_p99:.0f}x p99; a call while the background computes "
            f"p50 {during_p50:.2f} ms / p99 {during_p99:.2f} ms; loadavg {loadavg()}"
        )
        benchmark.extra_info[f"{name}_ahead_p50_ms"] = ahead_p50
        benchmark.extra_info[f"{name}_inline_p50_ms"] = inline_p50
    benchmark.pedantic(lambda: None, rounds=1)


SERVICE_VIDEOS = 2_000 if QUICK else 20_000
SERVICE_ROUNDS = 10 if QUICK else 40


@pytest.fixture(scope="module")
def service_settings(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The example service's settings on a seeded SQLite file (its embedded stack)."""
    from reelrank_example import (
        Settings,
        configured_stores,
        migrate,
        seed_synthetic_catalog_bulk,
    )

    path: Path = tmp_path_factory.mktemp("bench-trending-service") / "service.db"
    settings = Settings(
        database_url=f"sqlite:///{path}",
        videos=SERVICE_VIDEOS,
        pending_videos=0,
        users=200,
        events=SERVICE_VIDEOS,
        creators=max(10, SERVICE_VIDEOS // 100),
        auth_secret="s" * 32,
    )
    migrate(settings)
    stores = configured_stores(settings)
    try:
        seed_synthetic_catalog_bulk(stores, settings, now=datetime.now(UTC))
    finally:
        for close in stores.closers:
            close()
    return settings


def test_a_trending_request_with_an_aged_snapshot_on_the_example_service(
    benchmark: Any, service_settings: Any
) -> None:
    """``GET /api/v1/reels/trending-hashtags`` through the Flask test client, the stored
    snapshot 90 s old: a service with ``trending_refresh_ahead_seconds`` 0 (computing
    during the request, as before) against one with the default (300 s), on the same
    SQLite file, requests alternated; each puts the aged snapshot back first, and a
    refreshed-ahead request's background computation is waited for, untimed."""
    from reelrank_example import build_services, configured_stores, create_app

    started_at = datetime.now(UTC).replace(microsecond=0)
    now = [started_at]
    services = {}
    clients = {}
    for ahead in (0.0, 300.0):
        settings = service_settings.model_copy(update={"trending_refresh_ahead_seconds": ahead})
        services[ahead] = build_services(
            configured_stores(settings), settings, clock=lambda: now[0]
        )
        clients[ahead] = create_app(services[ahead], settings).test_client()
    path = "/api/v1/reels/trending-hashtags?limit=10"
    store = services[0.0].stores.trending_snapshots
    assert clients[0.0].get(path).status_code == 200
    aged = store.latest_snapshot(TrendingKind.HASHTAG, 24.0)
    assert aged is not None and aged.items
    walls: dict[float, list[float]] = {0.0: [], 300.0: []}
    try:
        for round_number in range(SERVICE_ROUNDS):
            now[0] = started_at + timedelta(hours=round_number + 1)
            order = (0.0, 300.0) if round_number % 2 == 0 else (300.0, 0.0)
            for ahead in order:
                store.put_snapshot(
                    aged.model_copy(update={"computed_at": now[0] - timedelta(seconds=90)})
                )
                started = time.perf_counter()
                response = clients[ahead].get(path)
                walls[ahead].append(time.perf_counter() - started)
                assert response.status_code == 200
                served_at = datetime.fromisoformat(response.get_json()["computed_at"])
                if ahead:
                    assert served_at == now[0] - timedelta(seconds=90)
                    services[ahead].trending._refreshing[(TrendingKind.HASHTAG, 24.0)].result()
                else:
                    assert served_at == now[0]
                stored = store.latest_snapshot(TrendingKind.HASHTAG, 24.0)
                assert stored is not None and stored.computed_at == now[0]
    finally:
        for each in services.values():
            each.close()
    inline_p50, inline_p99 = p50_p99_ms(walls[0.0])
    ahead_p50, ahead_p99 = p50_p99_ms(walls[300.0])
    SUMMARY.append(
        f"example service trending-hashtags request with a 90 s old snapshot, SQLite, "
        f"{SERVICE_VIDEOS:,} videos, {SERVICE_ROUNDS} rounds: computed during the request "
        f"p50 {inline_p50:.1f} ms / p99 {inline_p99:.1f} ms; refreshed ahead p50 "
        f"{ahead_p50:.2f} ms / p99 {ahead_p99:.2f} ms; ratio {inline_p50 / ahead_p50:.0f}x "
        f"p50, {inline_p99 / ahead_p99:.0f}x p99; loadavg {loadavg()}"
    )
    benchmark.extra_info["service_inline_p50_ms"] = inline_p50
    benchmark.extra_info["service_ahead_p50_ms"] = ahead_p50
    benchmark.pedantic(lambda: None, rounds=1)
