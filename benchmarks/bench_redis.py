"""The Redis adapter on loopback: snapshot reads and writes, cache warming, seen lookups and
a cache-hit feed page, each next to a baseline measured in the same run.

* snapshot get / put of a 500-item snapshot, against a raw ``GET`` / ``SET`` of the same
  bytes (the network floor), and the cache-hit ``get`` (read and hit count pipelined in
  one round trip) against the previous one (a ``GET``, then the count in a second);
* an event append on a master with one replica, acknowledged at once
  (``min_replicas_acked=0``) and after the replica acknowledged it (``=1``, ``WAIT``);
* warming 1,000 users: one pipelined ``put_many`` against 1,000 ``put`` calls;
* seen membership of 1,000 candidates: one ``ZMSCORE`` against one pipeline of a ``ZSCORE``
  per id, on the same client and its already-open connection;
* a cache-hit feed page of :class:`~reelrank.FeedRankingService` with the cache on Redis,
  with cache and seen store on Redis, and with an in-process LRU level in front of the
  Redis cache (with the seen store in memory or on Redis), against the all-in-memory
  stores. Each Redis setup runs twice, interleaved in blocks of pages: as the service
  was (every Redis call on a worker thread, a seen lookup and a write per page) and as
  it is (Redis stores called inline, one ``take_unseen`` per page);
* a cache-hit *cursor* page with an LRU level over the Redis cache and the seen store on
  the same client: the remembered-page read, the seen filter-and-mark and the
  remembered-page write as three calls, against one ``take_page`` call, with the
  all-in-memory stores as the baseline, alternated in blocks of 100 pages (CPU per
  page over each block).

Latency percentiles (p50, p99) of a separate timed loop go into ``extra_info`` and the
ratio table at the end of the run. The feed pages also report percentiles of the
process's CPU time per page: on a shared machine the wall-clock p99 mostly measures
how long the process waited for a core. Skips when ``redis-server`` or ``reelrank-redis`` is
not installed (``scripts/test.sh`` installs both).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from conftest import QUICK, SUMMARY

from reelrank import (
    FeedRankingService,
    FeedServiceConfig,
    FeedSnapshot,
    InMemoryCatalog,
    InMemoryEventStore,
    InMemoryFeedCache,
    InMemorySeenStore,
    LRUFeedCache,
    StoreDeadlines,
    TieredFeedCache,
)
from reelrank.testing import make_creator, make_event, make_video

redis = pytest.importorskip("redis")
reelrank_redis = pytest.importorskip("reelrank_redis")
redis_testing = pytest.importorskip("reelrank_redis.testing")

if redis_testing.find_redis_server() is None:
    pytest.skip("redis-server is not installed", allow_module_level=True)

SNAPSHOT_ITEMS = 500
WARM_USERS = 100 if QUICK else 1_000
WARM_ITEMS = 200
CANDIDATES = 100 if QUICK else 1_000
# Keys of the "bench" prefix the benchmarks read directly.
_KEYS = reelrank_redis._keys.KeyLayout("bench")
TIMED_CALLS = 200 if QUICK else 3_000
FEED_USERS = 100 if QUICK else 1_000
PAGE_SIZE = 20


def _percentiles(call: Callable[[], Any], count: int = TIMED_CALLS) -> tuple[float, float]:
    """(p50, p99) of ``count`` calls, in microseconds, after a short warm-up."""
    for _ in range(min(50, count)):
        call()
    samples = np.empty(count)
    for index in range(count):
        start = time.perf_counter_ns()
        call()
        samples[index] = time.perf_counter_ns() - start
    p50, p99 = np.percentile(samples, [50, 99]) / 1_000.0
    return float(p50), float(p99)


def _record(benchmark: Any, name: str, p50: float, p99: float) -> None:
    benchmark.extra_info.update({"p50_us": round(p50, 1), "p99_us": round(p99, 1)})
    SUMMARY.append(f"redis {name}: p50 {p50:.0f} us, p99 {p99:.0f} us")


def _snapshot(user_id: int, items: int, seed: int = 0) -> FeedSnapshot:
    rng = np.random.default_rng(seed + user_id)
    scores = np.sort(rng.random(items, dtype=np.float32))[::-1]
    return FeedSnapshot(
        user_id=user_id,
        video_ids=tuple(range(1, items + 1)),
        scores=tuple(scores.tolist()),
        contributions=tuple(map(tuple, rng.random((items, 5), dtype=np.float32).tolist())),
        created_at=datetime.now(UTC),
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with redis_testing.RedisServer(tmp_path_factory.mktemp("bench-redis")) as running:
        yield running


@pytest.fixture
def config(server: Any) -> Any:
    admin = server.client()
    admin.flushdb()
    admin.close()
    return reelrank_redis.RedisConfig(url=server.url, prefix="bench")


@pytest.fixture
def client(config: Any) -> Iterator[Any]:
    built = reelrank_redis.connect(config)
    yield built
    built.close()


# -- snapshots ------------------------------------------------------------------------------


def test_snapshot_get_raw_bytes(benchmark: Any, client: Any) -> None:
    blob = b"x" * 16_098  # the size of a packed 500-item float32 snapshot
    client.set("raw", blob)
    p50, p99 = _percentiles(lambda: client.get("raw"))
    _record(benchmark, "raw GET 16 KB (baseline)", p50, p99)
    assert benchmark(client.get, "raw") == blob


def test_snapshot_get(benchmark: Any, client: Any, config: Any) -> None:
    cache = reelrank_redis.RedisFeedCache(client, config)
    snapshot = _snapshot(1, SNAPSHOT_ITEMS)
    cache.put(snapshot, ttl_seconds=600)
    p50, p99 = _percentiles(lambda: cache.get(1))
    _record(benchmark, f"snapshot get ({SNAPSHOT_ITEMS} items)", p50, p99)
    assert benchmark(cache.get, 1) == snapshot


def _alternating(
    calls: dict[str, Callable[[], Any]], rounds: int, block: int = 50
) -> dict[str, tuple[float, float]]:
    """(p50, p99) in microseconds of each call, timed in alternating blocks of ``block``
    calls, so a noisy moment of the shared machine falls on every call alike."""
    samples: dict[str, list[int]] = {name: [] for name in calls}
    for call in calls.values():
        for _ in range(block):
            call()
    for _ in range(rounds):
        for name, call in calls.items():
            for _ in range(block):
                start = time.perf_counter_ns()
                call()
                samples[name].append(time.perf_counter_ns() - start)
    result = {}
    for name, values in samples.items():
        p50, p99 = np.percentile(values, [50, 99]) / 1_000.0
        result[name] = (float(p50), float(p99))
    return result


def _get_in_two_round_trips(client: Any, config: Any, user_id: int) -> FeedSnapshot | None:
    """The cache-hit ``get`` as it was before: the read, then the hit count on its own."""
    layout = reelrank_redis._keys.KeyLayout(config.prefix)
    value = client.get(layout.feed(user_id, None))
    snapshot = None if value is None else reelrank_redis._codec.decode_snapshot(value)
    pipe = client.pipeline(transaction=False)
    pipe.hincrby(layout.feed_stats(user_id % reelrank_redis._keys.BUCKETS), "hits", 1)
    pipe.execute()
    return snapshot


def test_snapshot_get_one_round_trip_against_two(benchmark: Any, client: Any, config: Any) -> None:
    cache = reelrank_redis.RedisFeedCache(client, config)
    snapshot = _snapshot(1, SNAPSHOT_ITEMS)
    cache.put(snapshot, ttl_seconds=600)
    assert _get_in_two_round_trips(client, config, 1) == snapshot
    figures = _alternating(
        {
            "one": lambda: cache.get(1),
            "two": lambda: _get_in_two_round_trips(client, config, 1),
        },
        rounds=TIMED_CALLS // 50,
    )
    (new50, new99), (old50, old99) = figures["one"], figures["two"]
    benchmark.extra_info.update(
        {"p50_us": round(new50, 1), "p99_us": round(new99, 1)}
        | {"two_trips_p50_us": round(old50, 1), "two_trips_p99_us": round(old99, 1)}
    )
    SUMMARY.append(
        f"redis snapshot get ({SNAPSHOT_ITEMS} items), hit: one round trip p50 {new50:.0f} us, "
        f"p99 {new99:.0f} us; before (GET, then the count) p50 {old50:.0f} us, "
        f"p99 {old99:.0f} us; one/two p50 x{new50 / old50:.2f}, p99 x{new99 / old99:.2f}; "
        f"load average {_load_average()}"
    )
    assert benchmark(cache.get, 1) == snapshot


def _load_average() -> str:
    with open("/proc/loadavg") as file:
        return " ".join(file.read().split()[:3])


def test_snapshot_put(benchmark: Any, client: Any, config: Any) -> None:
    cache = reelrank_redis.RedisFeedCache(client, config)
    snapshot = _snapshot(1, SNAPSHOT_ITEMS)
    p50, p99 = _percentiles(lambda: cache.put(snapshot, ttl_seconds=600))
    _record(benchmark, f"snapshot put ({SNAPSHOT_ITEMS} items)", p50, p99)
    benchmark(cache.put, snapshot, ttl_seconds=600)
    assert cache.get(1) == snapshot
    usage = client.memory_usage(_KEYS.feed(1, None), samples=0)
    benchmark.extra_info["memory_usage_bytes"] = usage
    SUMMARY.append(f"redis {SNAPSHOT_ITEMS}-item snapshot: MEMORY USAGE {usage} bytes")


# -- events acknowledged after replication ------------------------------------------------------


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A master (no delay before a replica's first sync) and one replica of it."""
    directory = tmp_path_factory.mktemp("bench-redis-replicated")
    master = redis_testing.RedisServer(
        directory / "master", extra_args=["--repl-diskless-sync-delay", "0"]
    )
    with master:
        replica = redis_testing.RedisServer(
            directory / "replica", extra_args=["--replicaof", master.host, str(master.port)]
        )
        with replica:
            admin = replica.client()
            deadline = time.monotonic() + 20.0
            while admin.info("replication").get("master_link_status") != "up":
                assert time.monotonic() < deadline, "the replica did not sync"
                time.sleep(0.05)
            admin.close()
            yield master


def test_event_append_waiting_for_a_replica(benchmark: Any, replicated: Any) -> None:
    # A replica on a busy machine can take longer than the default 50 ms to acknowledge;
    # the bound only caps a failure, so a wider one changes no successful append's time.
    at_once = reelrank_redis.RedisConfig(
        url=replicated.url,
        prefix="bench-events",
        socket_timeout_seconds=2.0,
        replication_timeout_seconds=1.0,
    )
    waiting = at_once.model_copy(update={"min_replicas_acked": 1})
    client = reelrank_redis.connect(at_once)
    stores = {
        "at once": reelrank_redis.RedisEventStore(client, at_once),
        "after the replica": reelrank_redis.RedisEventStore(client, waiting),
    }
    videos = itertools.cycle(range(1, 1_001))

    def appender(store: Any) -> Callable[[], Any]:
        def append() -> Any:
            event = make_event("watch", user_id=7, video_id=next(videos))
            assert store.append(event, creator_id=3)

        return append

    try:
        figures = _alternating(
            {name: appender(store) for name, store in stores.items()},
            rounds=TIMED_CALLS // 50,
        )
        (fast50, fast99), (safe50, safe99) = figures["at once"], figures["after the replica"]
        benchmark.extra_info.update(
            {"p50_us": round(safe50, 1), "p99_us": round(safe99, 1)}
            | {"at_once_p50_us": round(fast50, 1), "at_once_p99_us": round(fast99, 1)}
        )
        SUMMARY.append(
            f"redis event append, acknowledged after one replica (WAIT): p50 {safe50:.0f} us, "
            f"p99 {safe99:.0f} us; at once: p50 {fast50:.0f} us, p99 {fast99:.0f} us; "
            f"waiting/at once p50 x{safe50 / fast50:.2f}, p99 x{safe99 / fast99:.2f}; "
            f"load average {_load_average()}"
        )
        benchmark.pedantic(appender(stores["after the replica"]), rounds=1, iterations=1)
    finally:
        client.close()


# -- warming ----------------------------------------------------------------------------------


def _mean_seconds(call: Callable[[], Any], repeat: int = 3) -> float:
    call()
    start = time.perf_counter()
    for _ in range(repeat):
        call()
    return (time.perf_counter() - start) / repeat


@pytest.fixture(scope="module")
def warm_snapshots() -> list[FeedSnapshot]:
    return [_snapshot(user, WARM_ITEMS) for user in range(1, WARM_USERS + 1)]


def test_warm_one_by_one(
    benchmark: Any, client: Any, config: Any, warm_snapshots: list[FeedSnapshot]
) -> None:
    cache = reelrank_redis.RedisFeedCache(client, config)

    def one_by_one() -> None:
        for snapshot in warm_snapshots:
            cache.put(snapshot, ttl_seconds=600)

    benchmark.pedantic(one_by_one, rounds=3, iterations=1, warmup_rounds=1)
    assert len(cache.get_many([s.key for s in warm_snapshots])) == WARM_USERS


def test_warm_pipelined(
    benchmark: Any, client: Any, config: Any, warm_snapshots: list[FeedSnapshot]
) -> None:
    cache = reelrank_redis.RedisFeedCache(client, config)

    def one_by_one() -> None:
        for snapshot in warm_snapshots:
            cache.put(snapshot, ttl_seconds=600)

    def pipelined() -> None:
        cache.put_many(warm_snapshots, ttl_seconds=600)

    baseline, fast = _mean_seconds(one_by_one), _mean_seconds(pipelined)
    benchmark.extra_info["speedup_vs_one_by_one"] = round(baseline / fast, 2)
    SUMMARY.append(
        f"redis warming {WARM_USERS} users x {WARM_ITEMS} items: pipelined "
        f"{fast * 1e3:.1f} ms, one by one {baseline * 1e3:.1f} ms, x{baseline / fast:.1f}"
    )
    benchmark.pedantic(pipelined, rounds=3, iterations=1, warmup_rounds=1)
    assert len(cache.get_many([s.key for s in warm_snapshots])) == WARM_USERS


# -- seen membership ------------------------------------------------------------------------


@pytest.fixture
def seen_world(client: Any, config: Any) -> tuple[Any, list[int], datetime]:
    seen = reelrank_redis.RedisSeenStore(client, config)
    now = datetime.now(UTC)
    watched = list(range(1, 2 * CANDIDATES, 2))
    for start in range(0, len(watched), 50):
        at = now - timedelta(minutes=len(watched) - start)
        seen.mark_seen(1, watched[start : start + 50], at)
    candidates = list(range(1, CANDIDATES + 1))
    return seen, candidates, now - timedelta(days=30)


def _per_item(client: Any, key: str, candidates: list[int]) -> set[int]:
    """One ``ZSCORE`` per candidate, all sent in one pipeline: a single round trip, as
    fast as per-item lookups get."""
    pipe = client.pipeline(transaction=False)
    for video_id in candidates:
        pipe.zscore(key, reelrank_redis._keys.id_member(video_id))
    scores = pipe.execute()
    return {
        video_id for video_id, score in zip(candidates, scores, strict=True) if score is not None
    }


def test_seen_membership_per_item(
    benchmark: Any, client: Any, seen_world: tuple[Any, list[int], datetime]
) -> None:
    seen, candidates, since = seen_world
    found = benchmark.pedantic(
        _per_item, args=(client, _KEYS.seen(1), candidates), rounds=5, warmup_rounds=1
    )
    assert found == seen.seen_among(1, candidates, since=since)


def test_seen_membership_bulk(
    benchmark: Any, client: Any, seen_world: tuple[Any, list[int], datetime]
) -> None:
    seen, candidates, since = seen_world
    bulk = _mean_seconds(lambda: seen.seen_among(1, candidates, since=since), repeat=10)
    per_item = _mean_seconds(lambda: _per_item(client, _KEYS.seen(1), candidates))
    benchmark.extra_info["speedup_vs_per_item"] = round(per_item / bulk, 2)
    SUMMARY.append(
        f"redis seen membership, {CANDIDATES} candidates: ZMSCORE {bulk * 1e6:.0f} us, "
        f"pipelined per-item ZSCORE {per_item * 1e6:.0f} us, x{per_item / bulk:.1f}"
    )
    found = benchmark(seen.seen_among, 1, candidates, since=since)
    assert found == set(range(1, CANDIDATES + 1, 2))


# -- a cache-hit feed page ----------------------------------------------------------------------


def _catalog() -> InMemoryCatalog:
    catalog = InMemoryCatalog()
    now = datetime.now(UTC)
    for creator in range(1, 21):
        catalog.put_creator(make_creator(creator))
    for video in range(1, 1_001):
        catalog.put_video(
            make_video(video, 1 + video % 20, published_at=now - timedelta(minutes=video))
        )
    return catalog


class _OnWorkers:
    """Forwards every call to a Redis store but does not declare ``bounds_own_calls``,
    so the service calls it on a worker thread, as it did every store outside the
    process before."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _PlainSeenStore:
    """Forwards only the three :class:`~reelrank.SeenStore` methods (and no
    ``bounds_own_calls``): a page then costs a lookup and a write on a worker thread,
    as before ``take_unseen`` existed."""

    def __init__(self, inner: Any) -> None:
        self.mark_seen = inner.mark_seen
        self.seen_among = inner.seen_among
        self.recently_seen = inner.recently_seen


@dataclass
class _Latency:
    """Wall-clock and process CPU time of each page, in microseconds."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def percentiles(self) -> dict[str, float]:
        wall50, wall99 = np.percentile(self.wall, [50, 99])
        cpu50, cpu99 = np.percentile(self.cpu, [50, 99])
        return {"p50": wall50, "p99": wall99, "cpu_p50": cpu50, "cpu_p99": cpu99}


class _Setup:
    """One feed service over ``stores``, warmed, asked for first pages round-robin.

    ``version`` "before" is the service as it was: every Redis call on a worker thread
    (the in-memory stores inline), and the seen store asked with a lookup and a write
    per page. "after" calls the Redis stores on the request's thread too (they bound
    their own calls) and cuts each page with one ``take_unseen``.
    """

    def __init__(self, stores: str, version: str, client: Any, config: Any) -> None:
        config = config.model_copy(update={"prefix": f"bench-{stores}-{version}"})
        redis_cache: Any = reelrank_redis.RedisFeedCache(client, config)
        if version == "before":
            redis_cache = _OnWorkers(redis_cache)
        cache: Any = InMemoryFeedCache()
        if stores.startswith("redis"):
            cache = redis_cache
        elif stores.startswith("lru-over-redis-cache"):
            cache = TieredFeedCache(LRUFeedCache(), redis_cache)
        seen: Any = InMemorySeenStore()
        if stores.endswith("and-seen"):
            seen = reelrank_redis.RedisSeenStore(client, config)
            if version == "before":
                seen = _PlainSeenStore(seen)
        self.service = FeedRankingService(
            catalog=_catalog(),
            events=InMemoryEventStore(),
            seen=seen,
            cache=cache,
            # Generous deadlines on both paths (the client's socket timeout bounds the
            # inline calls): a stall on a busy machine must show up in the percentiles,
            # not turn a cache hit into a degraded, freshly ranked page.
            config=FeedServiceConfig(
                cursor_secret="a-benchmark-secret-key",
                deadlines=StoreDeadlines(cache=2.0, seen=2.0),
            ),
        )
        users = range(1, FEED_USERS + 1)
        self.service.warm(users)
        self._order = itertools.cycle(users)
        self.latency = _Latency()

    def serve(self, pages: int) -> None:
        for _ in range(pages):
            user = next(self._order)
            wall, cpu = time.perf_counter_ns(), time.process_time_ns()
            self.service.feed(user, PAGE_SIZE)
            self.latency.cpu.append((time.process_time_ns() - cpu) / 1_000.0)
            self.latency.wall.append((time.perf_counter_ns() - wall) / 1_000.0)


class _RoundTrip:
    """The floor of one Redis call: a ``PING``, timed like a page."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.latency = _Latency()

    def serve(self, pings: int) -> None:
        for _ in range(pings):
            wall, cpu = time.perf_counter_ns(), time.process_time_ns()
            self._client.ping()
            self.latency.cpu.append((time.process_time_ns() - cpu) / 1_000.0)
            self.latency.wall.append((time.perf_counter_ns() - wall) / 1_000.0)


def _interleaved(setups: list[_Setup | _RoundTrip], pages: int, block: int = 25) -> None:
    """Serve ``pages`` pages from every setup, alternating in small blocks, so a noisy
    moment of the shared machine falls on every setup alike."""
    for setup in setups:
        setup.serve(min(50, pages))  # warm-up
        setup.latency = _Latency()
    for _ in range(0, pages, block):
        for setup in setups:
            setup.serve(block)


PAGE_SETUPS = (
    "redis-cache",
    "redis-cache-and-seen",
    "lru-over-redis-cache",
    "lru-over-redis-cache-and-seen",
)


def test_cache_hit_feed_page(benchmark: Any, client: Any, config: Any) -> None:
    # Relaxed socket timeouts: the inline path's deadline is the client's own timeout.
    config = config.model_copy(
        update={"socket_timeout_seconds": 2.0, "connect_timeout_seconds": 2.0}
    )
    relaxed = reelrank_redis.connect(config)
    baseline = _Setup("memory", "after", relaxed, config)
    setups = {
        (stores, version): _Setup(stores, version, relaxed, config)
        for stores in PAGE_SETUPS
        for version in ("before", "after")
    }
    try:
        assert all(
            setup.service._guards["cache"].inline is (version == "after")
            for (_, version), setup in setups.items()
        )
        assert baseline.service._guards["seen"].inline
        # Within one snapshot: each user's first page is cut after what was served.
        rounds = min(5, baseline.service.config.snapshot_size // PAGE_SIZE - 1)
        everything = [baseline, *setups.values()]
        before_hits = [setup.service.stats().pages_from_cache for setup in everything]
        floor = _RoundTrip(relaxed)
        _interleaved([floor, *everything], FEED_USERS * rounds)
        for setup, before in zip(everything, before_hits, strict=True):
            stats = setup.service.stats()
            assert stats.pages_from_cache - before == stats.pages - before
            assert stats.degraded_pages == 0
        base = baseline.latency.percentiles()
        ping = floor.latency.percentiles()
        benchmark.extra_info.update({f"ping_{key}_us": round(v, 1) for key, v in ping.items()})
        SUMMARY.append(
            f"redis PING, the floor of one round trip: p50 {ping['p50']:.0f} us, "
            f"p99 {ping['p99']:.0f} us, cpu p50 {ping['cpu_p50']:.0f} us, "
            f"cpu p99 {ping['cpu_p99']:.0f} us"
        )
        _record_page(benchmark, "memory", base, None, None)
        for stores in PAGE_SETUPS:
            old = setups[stores, "before"].latency.percentiles()
            new = setups[stores, "after"].latency.percentiles()
            _record_page(benchmark, stores, new, old, base)
        page = benchmark.pedantic(
            setups["redis-cache-and-seen", "after"].service.feed,
            args=(1, PAGE_SIZE),
            rounds=1,
            iterations=1,
        )
        assert page.from_cache and len(page.items) == PAGE_SIZE
    finally:
        for setup in [baseline, *setups.values()]:
            setup.service.close()
        relaxed.close()


def _record_page(
    benchmark: Any,
    stores: str,
    new: dict[str, float],
    old: dict[str, float] | None,
    base: dict[str, float] | None,
) -> None:
    info = {f"{stores}_{key}_us": round(value, 1) for key, value in new.items()}
    line = (
        f"redis cache-hit feed page, {stores}: p50 {new['p50']:.0f} us, p99 {new['p99']:.0f} us,"
        f" cpu p50 {new['cpu_p50']:.0f} us, cpu p99 {new['cpu_p99']:.0f} us"
    )
    if old is not None:
        info.update({f"{stores}_before_{key}_us": round(value, 1) for key, value in old.items()})
        line += (
            f"; before (worker threads, lookup + write): p50 {old['p50']:.0f} us, "
            f"p99 {old['p99']:.0f} us, cpu p50 {old['cpu_p50']:.0f} us; after/before: "
            + ", ".join(f"{key} x{new[key] / old[key]:.2f}" for key in new)
        )
    if base is not None:
        line += "; vs in-memory: " + ", ".join(
            f"{key} x{new[key] / base[key]:.2f}" for key in ("p50", "p99", "cpu_p50")
        )
    else:
        line += " (baseline)"
    benchmark.extra_info.update(info)
    SUMMARY.append(line)


# -- a cache-hit cursor page: one round trip against three -------------------------------------

CURSOR_BLOCK = 100
"""Pages per block; the setups take turns block by block."""


class _CursorPages:
    """A feed service whose users follow their cursors through cached snapshots.

    ``mode`` "memory" is the all-in-memory baseline; "steps" and "one-call" put an LRU
    level over the Redis feed cache and the seen store on the same Redis client, and
    serve each cursor page with three Redis calls (remembered-page read, seen
    filter-and-mark, remembered-page write) or with one ``take_page``.
    """

    def __init__(self, mode: str, client: Any, config: Any) -> None:
        config = config.model_copy(update={"prefix": f"bench-cursor-{mode}"})
        seen: Any = InMemorySeenStore()
        shared: Any = InMemoryFeedCache()
        if mode != "memory":
            seen = reelrank_redis.RedisSeenStore(client, config)
            shared = reelrank_redis.RedisFeedCache(client, config)
        self.service = FeedRankingService(
            catalog=_catalog(),
            events=InMemoryEventStore(),
            seen=seen,
            cache=TieredFeedCache(LRUFeedCache(), shared),
            config=FeedServiceConfig(
                cursor_secret="a-benchmark-secret-key",
                deadlines=StoreDeadlines(cache=2.0, seen=2.0),
                take_pages_in_one_call=mode != "steps",
            ),
        )
        users = list(range(1, FEED_USERS + 1))
        self.service.warm(users)
        self._cursors = {user: self.service.feed(user, PAGE_SIZE).next_cursor for user in users}
        self._order = itertools.cycle(users)
        self.cpu_per_page: list[float] = []
        self.wall_per_page: list[float] = []

    def serve(self, pages: int) -> None:
        """Serve ``pages`` cursor pages; record the block's CPU and wall time per page."""
        service, cursors = self.service, self._cursors
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(pages):
            user = next(self._order)
            cursors[user] = service.feed(user, PAGE_SIZE, cursors[user]).next_cursor
        self.cpu_per_page.append((time.process_time() - cpu) / pages)
        self.wall_per_page.append((time.perf_counter() - wall) / pages)


def test_cache_hit_cursor_page_one_call_against_three(
    benchmark: Any, client: Any, config: Any
) -> None:
    config = config.model_copy(
        update={"socket_timeout_seconds": 2.0, "connect_timeout_seconds": 2.0}
    )
    relaxed = reelrank_redis.connect(config)
    setups = {mode: _CursorPages(mode, relaxed, config) for mode in ("memory", "steps", "one-call")}
    try:
        assert setups["one-call"].service._take_page is not None
        assert setups["steps"].service._take_page is None
        # Every page is cut from the user's cached snapshot: 200 items, 20 a page, the
        # first page served already and the last one left, so no page re-ranks.
        rounds = setups["memory"].service.config.snapshot_size // PAGE_SIZE - 2
        before = {mode: setup.service.stats() for mode, setup in setups.items()}
        for setup in setups.values():
            setup.serve(CURSOR_BLOCK // 2)  # warm-up, not counted
            setup.cpu_per_page.clear()
            setup.wall_per_page.clear()
        for _ in range(FEED_USERS * (rounds - 1) // CURSOR_BLOCK):
            for setup in setups.values():
                setup.serve(CURSOR_BLOCK)
        for mode, setup in setups.items():
            stats = setup.service.stats()
            pages = stats.pages - before[mode].pages
            assert stats.pages_from_cache - before[mode].pages_from_cache == pages
            assert stats.degraded_pages == 0 and stats.snapshots_ranked == FEED_USERS
        seen_calls = {
            mode: setup.service.stats().dependencies["seen"].calls
            - before[mode].dependencies["seen"].calls
            for mode, setup in setups.items()
        }
        pages = setups["one-call"].service.stats().pages - before["one-call"].pages
        assert seen_calls["one-call"] == pages  # one Redis call a page
        cache_calls = (
            setups["one-call"].service.stats().dependencies["cache"].calls
            - before["one-call"].dependencies["cache"].calls
        )
        assert cache_calls == 0
        load = _load_average()
        ranges = {
            mode: (min(setup.cpu_per_page) * 1e3, max(setup.cpu_per_page) * 1e3)
            for mode, setup in setups.items()
        }
        medians = {
            mode: float(np.median(setup.cpu_per_page)) * 1e3 for mode, setup in setups.items()
        }
        walls = {
            mode: float(np.median(setup.wall_per_page)) * 1e3 for mode, setup in setups.items()
        }
        blocks = len(setups["memory"].cpu_per_page)
        benchmark.extra_info.update(
            {f"cursor_page_{mode}_cpu_ms": round(value, 3) for mode, value in medians.items()}
        )
        SUMMARY.append(
            f"redis cache-hit cursor page, CPU per page over {blocks} blocks of {CURSOR_BLOCK} "
            "(median, range): "
            + "; ".join(
                f"{mode} {medians[mode]:.2f} ms ({ranges[mode][0]:.2f}-{ranges[mode][1]:.2f}), "
                f"wall {walls[mode]:.2f} ms"
                for mode in setups
            )
            + f"; one call / three: x{medians['one-call'] / medians['steps']:.2f}"
            + f"; in memory / one call: x{medians['memory'] / medians['one-call']:.2f}"
            + f" (load {load})"
        )
        page = benchmark.pedantic(
            setups["one-call"].service.feed, args=(1, PAGE_SIZE), rounds=1, iterations=1
        )
        assert page.items
    finally:
        for setup in setups.values():
            setup.service.close()
        relaxed.close()
