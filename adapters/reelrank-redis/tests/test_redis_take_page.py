"""Cursor pages taken in one call (``PageTakingSeenStore.take_page``) against the three
separate calls: the same pages, cursors and seen sets over random page sequences with
retries, on real Redis and on the in-memory stores; and what a paused Redis does to a
page taken in one call."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reelrank_redis import RedisClient, RedisConfig, RedisFeedCache, RedisSeenStore, connect
from reelrank_redis.testing import RedisServer

from reelrank import (
    FeedCache,
    FeedPage,
    FeedRankingService,
    FeedServiceConfig,
    InMemoryCatalog,
    InMemoryEventStore,
    InMemoryFeedCache,
    InMemorySeenStore,
    LRUFeedCache,
    SeenStore,
    StoreDeadlines,
    TieredFeedCache,
)
from reelrank.testing import make_creator, make_video

pytestmark = pytest.mark.integration

_prefixes = itertools.count()
_START = datetime(2026, 1, 5, 12, tzinfo=UTC)
_USERS = (1, 2)


def _catalog(videos: int) -> InMemoryCatalog:
    catalog = InMemoryCatalog()
    for creator in range(1, 6):
        catalog.put_creator(make_creator(creator))
    for video in range(1, videos + 1):
        catalog.put_video(
            make_video(video, 1 + video % 5, published_at=_START - timedelta(minutes=7 * video))
        )
    return catalog


class _Clock:
    """The services' wall clock and monotonic clock, moved by the test only: the candidate
    pool's lifetime and the LRU level's expire at the same step on both sides, not
    after however long a busy machine took."""

    def __init__(self) -> None:
        self.now = _START

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return (self.now - _START).total_seconds()


@dataclass
class _Side:
    """The feed service of one process and of a second one sharing its stores."""

    here: FeedRankingService
    elsewhere: FeedRankingService
    seen: SeenStore

    def close(self) -> None:
        self.here.close()
        self.elsewhere.close()


StoresFactory = Callable[[], tuple[SeenStore, FeedCache]]


def _side(
    stores: StoresFactory, *, in_one_call: bool, clock: _Clock, videos: int, snapshot_size: int
) -> _Side:
    seen, shared = stores()
    catalog, events = _catalog(videos), InMemoryEventStore()

    def service() -> FeedRankingService:
        return FeedRankingService(
            catalog=catalog,
            events=events,
            seen=seen,
            cache=TieredFeedCache(LRUFeedCache(clock=clock.monotonic), shared),
            clock=clock,
            monotonic=clock.monotonic,
            config=FeedServiceConfig(
                cursor_secret="a-test-secret-of-some-length",
                snapshot_size=snapshot_size,
                refresh_pool_in_background=False,
                take_pages_in_one_call=in_one_call,
                # Far above a busy machine's stalls: a degraded page would differ.
                deadlines=StoreDeadlines(cache=5.0, seen=5.0),
            ),
        )

    return _Side(service(), service(), seen)


def _view(page: FeedPage) -> tuple[object, ...]:
    items = tuple((item.video_id, item.score, tuple(item.breakdown.items())) for item in page.items)
    return items, page.next_cursor, page.from_cache, page.degraded, page.variant


# A step: (user index, kind, page size). "next" follows the user's last cursor, "retry"
# redeems the cursor before it again here, "elsewhere" redeems it in the other process,
# "first" starts the feed over.
_steps = st.lists(
    st.tuples(
        st.integers(0, len(_USERS) - 1),
        st.sampled_from(["next", "next", "next", "retry", "elsewhere", "elsewhere", "first"]),
        st.integers(1, 12),
    ),
    min_size=3,
    max_size=16,
)


def _compare(
    stores: StoresFactory, steps: list[tuple[int, str, int]], videos: int, snapshot_size: int
) -> int:
    """Run ``steps`` on a side that takes pages in one call and on one that does not;
    every page and the seen sets must be the same. Returns the pages taken in one call."""
    clock = _Clock()
    fused = _side(stores, in_one_call=True, clock=clock, videos=videos, snapshot_size=snapshot_size)
    steps_side = _side(
        stores, in_one_call=False, clock=clock, videos=videos, snapshot_size=snapshot_size
    )
    assert fused.here._take_page is not None and steps_side.here._take_page is None
    cursors: dict[int, list[tuple[str | None, int]]] = {user: [] for user in _USERS}
    try:
        for user_index, kind, limit in steps:
            user = _USERS[user_index]
            clock.now += timedelta(seconds=3)
            history = cursors[user]
            cursor, size = None, limit
            if kind == "next" and history:
                cursor = history[-1][0]
            elif kind in ("retry", "elsewhere") and len(history) >= 2:
                # The cursor that cut the user's last page, with that page's size.
                cursor, size = history[-2][0], history[-1][1]
            if cursor is None and history and kind != "first":
                continue  # the feed ended: nothing to follow
            pages = [
                (side.elsewhere if kind == "elsewhere" else side.here).feed(user, size, cursor)
                for side in (fused, steps_side)
            ]
            assert _view(pages[0]) == _view(pages[1]), (user, kind, cursor)
            if kind in ("next", "first"):
                history.append((pages[0].next_cursor, size))
        since = _START - timedelta(days=60)
        for user in _USERS:
            assert fused.seen.recently_seen(user, since=since, limit=10_000) == (
                steps_side.seen.recently_seen(user, since=since, limit=10_000)
            )
        for side in (fused, steps_side):
            stats = side.here.stats().dependencies
            assert all(stats[name].failures == stats[name].timeouts == 0 for name in stats)
        return fused.here.stats().dependencies["seen"].calls
    finally:
        fused.close()
        steps_side.close()


@pytest.fixture
def redis_stores(redis_client: redis.Redis, redis_config: RedisConfig) -> StoresFactory:
    def stores() -> tuple[SeenStore, FeedCache]:
        config = redis_config.model_copy(
            update={"prefix": f"{redis_config.prefix}-{next(_prefixes)}"}
        )
        return RedisSeenStore(redis_client, config), RedisFeedCache(redis_client, config)

    return stores


def _memory_stores() -> tuple[SeenStore, FeedCache]:
    return InMemorySeenStore(), InMemoryFeedCache()


_sizes = st.sampled_from([(40, 200), (90, 30)])  # (videos, snapshot size): ends, or re-ranks


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=_steps, sizes=_sizes)
def test_redis_pages_in_one_call_equal_pages_in_steps(
    redis_stores: StoresFactory, steps: list[tuple[int, str, int]], sizes: tuple[int, int]
) -> None:
    _compare(redis_stores, steps, *sizes)


@settings(max_examples=60, deadline=None)
@given(steps=_steps, sizes=_sizes)
def test_in_memory_pages_in_one_call_equal_pages_in_steps(
    steps: list[tuple[int, str, int]], sizes: tuple[int, int]
) -> None:
    _compare(_memory_stores, steps, *sizes)


def test_a_cached_cursor_page_is_one_seen_store_call_and_no_cache_call(
    redis_stores: StoresFactory,
) -> None:
    """The hit path itself: after the first page, a cursor page served from the
    process's snapshot asks Redis once, through the seen store's guard."""
    clock = _Clock()
    side = _side(redis_stores, in_one_call=True, clock=clock, videos=60, snapshot_size=200)
    try:
        page = side.here.feed(1, 10)
        before = side.here.stats().dependencies
        for _ in range(3):
            page = side.here.feed(1, 10, page.next_cursor)
            assert page.from_cache and len(page.items) == 10
        after = side.here.stats().dependencies
        assert after["seen"].calls - before["seen"].calls == 3
        assert after["cache"].calls == before["cache"].calls
        # A retry in another process is answered from the record in Redis.
        retried = side.elsewhere.feed(1, 10, None)
        assert retried.items  # its own first page
    finally:
        side.close()


# -- a paused Redis -------------------------------------------------------------------------


@dataclass
class _Paused:
    server: RedisServer
    config: RedisConfig
    client: redis.Redis


@pytest.fixture
def paused_setup(fault_server: RedisServer) -> Iterator[_Paused]:
    config = RedisConfig(url=fault_server.url, prefix="paused", socket_timeout_seconds=0.2)
    client = connect(config)
    yield _Paused(fault_server, config, client)
    client.close()


@pytest.mark.timeout(20)
@pytest.mark.parametrize("inline", [True, False], ids=["inline", "worker-threads"])
def test_a_paused_redis_degrades_a_page_taken_in_one_call_and_bounds_it(
    paused_setup: _Paused, inline: bool
) -> None:
    """Redis frozen under a cursor page whose snapshot is in the process: the one call
    times out, the separate calls that stand in for it name the cache and the seen
    store, each store waits one timeout, and the page still comes, in about two socket
    timeouts (0.2 s each; asserted under 1.5 s for a busy machine)."""
    seen = RedisSeenStore(paused_setup.client, paused_setup.config)
    shared = RedisFeedCache(paused_setup.client, paused_setup.config)
    service = FeedRankingService(
        catalog=_catalog(60),
        events=InMemoryEventStore(),
        seen=seen,
        cache=TieredFeedCache(LRUFeedCache(), shared),
        config=FeedServiceConfig(
            cursor_secret="a-test-secret-of-some-length",
            deadlines=StoreDeadlines(cache=1.0, seen=1.0),
            inline_self_bounded_stores=inline,
        ),
    )
    with service:
        assert service._take_page is not None
        first = service.feed(1, 10)
        second = service.feed(1, 10, first.next_cursor)
        assert not second.degraded
        paused_setup.server.pause()
        try:
            started = time.perf_counter()
            page = service.feed(1, 10, second.next_cursor)
            waited = time.perf_counter() - started
        finally:
            paused_setup.server.resume()
        assert len(page.items) == 10
        assert {entry.dependency for entry in page.degraded} == {"cache", "seen"}
        assert waited < 1.5
        stats = service.stats().dependencies
        assert (stats["seen"].timeouts, stats["cache"].timeouts) == (1, 1)
        assert stats["seen"].failures == stats["cache"].failures == 0
        # Resumed: the next cursor page is taken in one call again, undegraded, and a
        # retry of it is answered with the same page.
        before = service.stats().dependencies["seen"].calls
        resumed = service.feed(1, 10, page.next_cursor)
        assert resumed.items and not resumed.degraded and resumed.from_cache
        assert service.stats().dependencies["seen"].calls == before + 1
        retried = service.feed(1, 10, page.next_cursor)
        assert [item.video_id for item in retried.items] == [
            item.video_id for item in resumed.items
        ]


# -- a Redis that refuses connections ---------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_refused_page_taken_in_one_call_counts_the_seen_failures_of_the_separate_calls(
    fault_server: RedisServer,
) -> None:
    """Redis gone under a cursor page whose snapshot is in the process: the page taken in
    one call counts as many failures against the ``seen`` breaker as the separate calls
    do. By hand, the separate calls fail twice on ``seen``: the filter-and-mark call, then
    the marking tried once more after the page is cut in snapshot order. The one call is
    that filter-and-mark call, so it too counts two, not a third for a filter tried again.
    """
    config = RedisConfig(url=fault_server.url, prefix="refused", socket_timeout_seconds=0.5)
    client = connect(config)
    services = {
        in_one_call: FeedRankingService(
            catalog=_catalog(60),
            events=InMemoryEventStore(),
            seen=RedisSeenStore(client, config),
            cache=TieredFeedCache(
                LRUFeedCache(), RedisFeedCache(client, config.model_copy(update={"prefix": p}))
            ),
            config=FeedServiceConfig(
                cursor_secret="a-test-secret-of-some-length",
                deadlines=StoreDeadlines(cache=5.0, seen=5.0),
                take_pages_in_one_call=in_one_call,
            ),
        )
        for in_one_call, p in ((True, "refused"), (False, "refused-steps"))
    }
    try:
        assert services[True]._take_page is not None and services[False]._take_page is None
        cursors = {}
        for in_one_call, service in services.items():
            user = 1 if in_one_call else 2
            first = service.feed(user, 10)
            second = service.feed(user, 10, first.next_cursor)
            assert not second.degraded
            cursors[in_one_call] = (user, second.next_cursor)
        fault_server.kill()
        pages = {}
        for in_one_call, service in services.items():
            user, cursor = cursors[in_one_call]
            pages[in_one_call] = service.feed(user, 10, cursor)
        for in_one_call, service in services.items():
            stats = service.stats().dependencies["seen"]
            assert (stats.failures, stats.timeouts) == (2, 0), in_one_call
            assert service.breakers["seen"].consecutive_failures == 2, in_one_call
            assert len(pages[in_one_call].items) == 10
        assert pages[True].degraded == pages[False].degraded
    finally:
        for service in services.values():
            service.close()
        client.close()


# -- the feed cache's statistics --------------------------------------------------------------


@pytest.mark.timeout(120)
def test_pages_in_one_call_count_the_record_lookups_the_separate_calls_count(
    any_client: RedisClient, any_config: RedisConfig
) -> None:
    """The same requests on both sides give the shared level the same hits and misses:
    the record lookup inside the one call counts as the separate calls' ``get`` does, on
    a single server and on a cluster. The requests walk past the end of a used-up
    snapshot (30 items, pages of 10), and retry cursors in the other process, which
    finds their records in Redis."""
    caches: dict[bool, RedisFeedCache] = {}

    def stores_for(in_one_call: bool) -> StoresFactory:
        def stores() -> tuple[SeenStore, FeedCache]:
            config = any_config.model_copy(
                update={"prefix": f"{any_config.prefix}-stats-{next(_prefixes)}"}
            )
            caches[in_one_call] = RedisFeedCache(any_client, config)
            return RedisSeenStore(any_client, config), caches[in_one_call]

        return stores

    clock = _Clock()
    sides = {
        in_one_call: _side(
            stores_for(in_one_call),
            in_one_call=in_one_call,
            clock=clock,
            videos=90,
            snapshot_size=30,
        )
        for in_one_call in (True, False)
    }
    try:
        assert sides[True].here._take_page is not None and sides[False].here._take_page is None
        for side in sides.values():
            for user in _USERS:
                cursors: list[str | None] = [None]
                for _ in range(5):
                    clock.now += timedelta(seconds=1)
                    page = side.here.feed(user, 10, cursors[-1])
                    side.elsewhere.feed(user, 10, cursors[-1])  # a retry, from Redis
                    cursors.append(page.next_cursor)
        one_call, separate = caches[True].stats(), caches[False].stats()
        assert separate.hits > 0 and separate.misses > 0
        assert (one_call.hits, one_call.misses) == (separate.hits, separate.misses)
    finally:
        for side in sides.values():
            side.close()
