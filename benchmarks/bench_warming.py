"""Start-up warming over real servers: bulk reads of many users against one read per user.

The stores are those the example service runs on with every server configured: the
catalog on PostgreSQL 15 (:class:`~reelrank_postgres.SqlCatalog`), the event store on
ClickHouse (:class:`~reelrank_clickhouse.ClickHouseEventStore` behind
:class:`~reelrank.GroupCommitEventStore`, as the example wires it), the seen store and
the feed cache on Redis. ``WARM_USERS`` users (2,000; 200 in quick mode), each following
5 of 200 creators, with 20 seen marks and 10 engagement events, are warmed in batches of
500 as the example's start-up does (``force=True``, so every round ranks and stores all
of them):

* **bulk**: the stores as they are, so each batch reads followed videos, affinities and
  seen ids with one ``followed_videos_many`` statement, one ``get_affinities_many``
  query and one ``recently_seen_many`` pipeline;
* **per user**: the same stores behind a proxy hiding those three methods, so warming
  falls back to a ``followed_videos``, ``get_affinities`` and ``recently_seen`` call per
  user: what warming did before the bulk reads.

The two services alternate round by round (:func:`conftest.interleaved`), so load on the
shared machine hits both alike; the summary gives the median of each and their ratio,
with the load average. The three reads of one 500-user batch are also timed alone, bulk
against per user, store by store, all alternated the same way. Skips when a server or an
adapter is not installed (``scripts/test.sh`` installs them).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from conftest import QUICK, SUMMARY, interleaved, loadavg

from reelrank import (
    FeedRankingService,
    FeedServiceConfig,
    GroupCommitEventStore,
    StoreDeadlines,
)
from reelrank.stores import bulk_affinities, bulk_followed_videos, bulk_recently_seen
from reelrank.testing import make_creator, make_event, make_video

reelrank_postgres = pytest.importorskip("reelrank_postgres")
pg_testing = pytest.importorskip("reelrank_postgres.testing")
reelrank_redis = pytest.importorskip("reelrank_redis")
redis_testing = pytest.importorskip("reelrank_redis.testing")
reelrank_clickhouse = pytest.importorskip("reelrank_clickhouse")
clickhouse_testing = pytest.importorskip("reelrank_clickhouse.testing")

if (
    pg_testing.find_postgres_bin() is None
    or redis_testing.find_redis_server() is None
    or clickhouse_testing.find_clickhouse_server() is None
):
    pytest.skip("PostgreSQL, Redis or ClickHouse is not installed", allow_module_level=True)

NOW = datetime(2026, 3, 1, tzinfo=UTC)
CREATORS = 200
VIDEOS = 1_000 if QUICK else 5_000
WARM_USERS = 200 if QUICK else 2_000
BATCH = 500  # the example's start-up batch
FOLLOWS_PER_USER = 5
SEEN_PER_USER = 20
EVENTS_PER_USER = 10
ROUNDS = 1 if QUICK else 3
READ_ROUNDS = 2 if QUICK else 5
_BULK_READS = frozenset({"followed_videos_many", "get_affinities_many", "recently_seen_many"})


class _OneUserAtATime:
    """A store without its reads of many users, as stores were before them."""

    def __init__(self, store: object) -> None:
        self._store = store

    def __getattr__(self, attribute: str) -> Any:
        if attribute in _BULK_READS:
            raise AttributeError(attribute)
        return getattr(self._store, attribute)


class Stores:
    """The example's stores on three real servers, filled with one synthetic catalog."""

    def __init__(self, postgres: Any, redis: Any, clickhouse: Any) -> None:
        self.engine = reelrank_postgres.connect(reelrank_postgres.SqlStoreConfig(url=postgres.url))
        reelrank_postgres.migrate(self.engine)
        clickhouse.execute("CREATE DATABASE bench")
        clickhouse_config = reelrank_clickhouse.ClickHouseConfig(
            port=clickhouse.tcp_port, database="bench"
        )
        self.clickhouse = reelrank_clickhouse.connect(clickhouse_config)
        reelrank_clickhouse.create_schema(self.clickhouse)
        self.redis_config = reelrank_redis.RedisConfig(url=redis.url, prefix="bench")
        self.redis = reelrank_redis.connect(self.redis_config)
        self.catalog = reelrank_postgres.SqlCatalog(self.engine)
        self.event_store = reelrank_clickhouse.ClickHouseEventStore(self.clickhouse)
        self.events = GroupCommitEventStore(self.event_store)
        self.seen = reelrank_redis.RedisSeenStore(self.redis, self.redis_config)
        self.cache = reelrank_redis.RedisFeedCache(self.redis, self.redis_config)
        self.users = list(range(1, WARM_USERS + 1))
        self._fill()

    def _fill(self) -> None:
        rng = np.random.default_rng(7)
        creator_of = rng.integers(1, CREATORS + 1, size=VIDEOS)
        ages = rng.random(VIDEOS) * 72.0
        videos = [
            make_video(
                vid,
                int(creator_of[vid - 1]),
                published_at=NOW - timedelta(hours=float(ages[vid - 1])),
                sound_id=int(rng.integers(1, 50)),
            )
            for vid in range(1, VIDEOS + 1)
        ]
        follows = [
            (uid, int(creator) + 1)
            for uid in self.users
            for creator in rng.choice(CREATORS, size=FOLLOWS_PER_USER, replace=False)
        ]
        reelrank_postgres.bulk_load(
            self.engine,
            creators=[make_creator(cid) for cid in range(1, CREATORS + 1)],
            videos=videos,
            follows=follows,
        )
        pairs = []
        for uid in self.users:
            watched = rng.choice(VIDEOS, size=EVENTS_PER_USER, replace=False) + 1
            for n, vid in enumerate(watched.tolist()):
                kind = ("watch", "like", "share")[n % 3]
                event = make_event(kind, user_id=uid, video_id=vid, occurred_at=NOW)
                pairs.append((event, int(creator_of[vid - 1])))
            seen = rng.choice(VIDEOS, size=SEEN_PER_USER, replace=False) + 1
            self.seen.mark_seen(uid, seen.tolist(), NOW - timedelta(hours=2))
        for start in range(0, len(pairs), 10_000):
            self.event_store.append_many(pairs[start : start + 10_000])

    def service(self, *, bulk: bool) -> FeedRankingService:
        wrap: Callable[[Any], Any] = (lambda store: store) if bulk else _OneUserAtATime
        return FeedRankingService(
            catalog=wrap(self.catalog),
            events=wrap(self.events),
            seen=wrap(self.seen),
            cache=self.cache,
            config=FeedServiceConfig(
                cursor_secret="a-benchmark-secret-of-some-length",
                refresh_pool_in_background=False,
                candidate_pool_ttl_seconds=3_600,
                # Generous, so the per-user loop finishes too and both rank every user.
                warm_deadline_seconds=600,
                deadlines=StoreDeadlines(catalog=30, events=30, seen=30, models=30, cache=30),
            ),
            clock=lambda: NOW,
        )

    def close(self) -> None:
        self.redis.close()
        self.clickhouse.dispose()
        self.engine.dispose()


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stores]:
    with (
        pg_testing.PostgresServer() as postgres,
        redis_testing.RedisServer(tmp_path_factory.mktemp("bench-warming-redis")) as redis,
        clickhouse_testing.ClickHouseServer(
            tmp_path_factory.mktemp("bench-warming-clickhouse")
        ) as clickhouse,
    ):
        built = Stores(postgres, redis, clickhouse)
        yield built
        built.close()


def _ratio_line(name: str, bulk: list[float], per_user: list[float], load: str) -> str:
    bulk_s, per_user_s = statistics.median(bulk), statistics.median(per_user)
    return (
        f"warming {name}: bulk reads {bulk_s * 1e3:.0f} ms, one read per user "
        f"{per_user_s * 1e3:.0f} ms, per user / bulk = {per_user_s / bulk_s:.1f}x "
        f"(medians of {len(bulk)}; load {load})"
    )


def test_warm_users_bulk_reads_against_one_read_per_user(benchmark: Any, stores: Stores) -> None:
    bulk, per_user = stores.service(bulk=True), stores.service(bulk=False)
    try:

        def warm(service: FeedRankingService) -> Callable[[], int]:
            def run() -> int:
                batches = range(0, len(stores.users), BATCH)
                return sum(
                    service.warm(stores.users[start : start + BATCH], force=True)
                    for start in batches
                )

            return run

        # A first round each builds the candidate pools and loads the roll-up.
        assert warm(bulk)() == warm(per_user)() == WARM_USERS
        load_before = loadavg()
        bulk_s, per_user_s = interleaved([warm(bulk), warm(per_user)], ROUNDS)
        load = f"{load_before} -> {loadavg()}"
        line = _ratio_line(f"{WARM_USERS} users in batches of {BATCH}", bulk_s, per_user_s, load)
        SUMMARY.append(line)
        benchmark.extra_info.update(
            {
                "bulk_ms": [round(s * 1e3, 1) for s in bulk_s],
                "per_user_ms": [round(s * 1e3, 1) for s in per_user_s],
                "loadavg": load,
            }
        )
        assert benchmark.pedantic(warm(bulk), rounds=1) == WARM_USERS
    finally:
        bulk.close()
        per_user.close()


def test_reads_of_one_batch_bulk_against_one_read_per_user(benchmark: Any, stores: Stores) -> None:
    """Each store's read of one batch alone, bulk against per user, all six alternated."""
    users = stores.users[:BATCH]
    since = NOW - timedelta(days=30)
    creators = {uid: list(range(1, CREATORS + 1)) for uid in users}

    def followed(catalog: Any) -> Callable[[], int]:
        return lambda: len(bulk_followed_videos(catalog, users, limit=200))

    def affinities(events: Any) -> Callable[[], int]:
        return lambda: len(bulk_affinities(events, creators))

    def seen(store: Any) -> Callable[[], int]:
        return lambda: len(bulk_recently_seen(store, users, since=since, limit=1_000))

    reads: dict[str, tuple[Callable[[Any], Callable[[], int]], Any]] = {
        "followed videos (PostgreSQL)": (followed, stores.catalog),
        "affinities (ClickHouse)": (affinities, stores.events),
        "recently seen (Redis)": (seen, stores.seen),
    }
    calls: list[Callable[[], int]] = []
    for read, store in reads.values():
        bulk_read, single_read = read(store), read(_OneUserAtATime(store))
        assert bulk_read() == single_read() == len(users)
        calls += [bulk_read, single_read]
    load_before = loadavg()
    samples = interleaved(calls, READ_ROUNDS)
    load = f"{load_before} -> {loadavg()}"
    for index, name in enumerate(reads):
        bulk_s, per_user_s = samples[2 * index], samples[2 * index + 1]
        SUMMARY.append(_ratio_line(f"{name} of {len(users)} users", bulk_s, per_user_s, load))
    total_bulk = [sum(column) for column in zip(*samples[0::2], strict=True)]
    total_per_user = [sum(column) for column in zip(*samples[1::2], strict=True)]
    SUMMARY.append(
        _ratio_line(f"reads of {len(users)} users (3 stores)", total_bulk, total_per_user, load)
    )
    benchmark.extra_info["loadavg"] = load
    bulk_reads = calls[0::2]
    assert benchmark.pedantic(lambda: sum(read() for read in bulk_reads), rounds=1) == 3 * len(
        users
    )
