"""The feed service over Redis: pages keep coming while Redis hangs or restarts, and
``FeedPage.degraded`` names what failed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import redis
from reelrank_redis import RedisConfig, RedisFeedCache, RedisSeenStore, connect
from reelrank_redis.testing import RedisServer

from reelrank import (
    FeedPage,
    FeedRankingService,
    FeedServiceConfig,
    InMemoryCatalog,
    InMemoryEventStore,
    InMemorySeenStore,
    StoreDeadlines,
)
from reelrank.testing import make_creator, make_video

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

# A paused or killed Redis must not hold a request: the test's timeout catches one that
# does, instead of timing the request (a hung client would wait about a minute per call;
# a paused Redis costs each cache and seen call one 0.2 s socket timeout).
HANG_GUARD_SECONDS = 20


def _catalog(videos: int = 80) -> InMemoryCatalog:
    catalog = InMemoryCatalog()
    now = datetime.now(UTC)
    for creator in range(1, 6):
        catalog.put_creator(make_creator(creator))
    for video in range(1, videos + 1):
        catalog.put_video(
            make_video(video, 1 + video % 5, published_at=now - timedelta(minutes=3 * video))
        )
    return catalog


@dataclass
class RedisSetup:
    config: RedisConfig
    client: redis.Redis
    cache: RedisFeedCache


@pytest.fixture
def redis_setup(fault_server: RedisServer) -> Iterator[RedisSetup]:
    config = RedisConfig(url=fault_server.url, prefix="svc", socket_timeout_seconds=0.2)
    client = connect(config)
    yield RedisSetup(config, client, RedisFeedCache(client, config))
    client.close()


def _service(cache: RedisFeedCache, seen: object) -> FeedRankingService:
    return FeedRankingService(
        catalog=_catalog(),
        events=InMemoryEventStore(),
        seen=seen,  # type: ignore[arg-type]
        cache=cache,
        # Deadlines longer than the adapter's 0.2 s socket timeout: a busy machine cannot
        # degrade a page by itself, and a hung Redis is cut off by the adapter.
        config=FeedServiceConfig(
            cursor_secret="a-test-secret-of-some-length",
            deadlines=StoreDeadlines(cache=1.0, seen=1.0),
        ),
    )


def _names(page: FeedPage) -> set[str]:
    return {entry.dependency for entry in page.degraded}


def test_pages_are_cached_in_redis_and_served_from_it(
    redis_setup: RedisSetup,
) -> None:
    cache = redis_setup.cache
    with _service(cache, InMemorySeenStore()) as service:
        first = service.feed(1, 10)
        assert not first.from_cache and not first.degraded
        assert cache.get(1) is not None
        second = service.feed(1, 10, first.next_cursor)
        assert second.from_cache and not second.degraded
        assert {item.video_id for item in first.items}.isdisjoint(
            item.video_id for item in second.items
        )
    assert cache.stats().hits >= 1


@pytest.mark.timeout(HANG_GUARD_SECONDS)
def test_a_paused_redis_degrades_the_feed_and_it_recovers_on_resume(
    fault_server: RedisServer, redis_setup: RedisSetup
) -> None:
    cache = redis_setup.cache
    seen = RedisSeenStore(redis_setup.client, redis_setup.config)
    with _service(cache, seen) as service:
        assert not service.feed(1, 10).degraded
        fault_server.pause()
        try:
            page = service.feed(2, 10)
        finally:
            fault_server.resume()
        assert len(page.items) == 10
        assert {"cache", "seen"} <= _names(page)
        # Resumed: the next page is served without any failed dependency.
        again = service.feed(3, 10)
        assert len(again.items) == 10 and not again.degraded
        assert cache.get(3) is not None


@pytest.mark.timeout(HANG_GUARD_SECONDS)
def test_a_killed_redis_degrades_the_feed_and_a_restart_heals_it(
    fault_server: RedisServer, redis_setup: RedisSetup
) -> None:
    cache = redis_setup.cache
    with _service(cache, InMemorySeenStore()) as service:
        service.feed(1, 10)
        fault_server.kill()
        page = service.feed(1, 10)
        assert len(page.items) == 10
        assert _names(page) == {"cache"}
        fault_server.restart()
        healed = service.feed(4, 10)
        assert not healed.degraded
        assert cache.get(4) is not None


@pytest.mark.timeout(HANG_GUARD_SECONDS)
@pytest.mark.parametrize("inline", [True, False], ids=["inline", "worker-threads"])
def test_a_paused_redis_costs_each_store_one_timeout_per_request(
    fault_server: RedisServer, redis_setup: RedisSetup, inline: bool
) -> None:
    """A stalled call waits out the client's socket timeout (0.2 s), inline or on a
    worker thread (whose deadline is longer here). Either way a request asks each stalled store once
    and skips it for the rest of the request, so a page waits about one timeout per store."""
    seen = RedisSeenStore(redis_setup.client, redis_setup.config)
    assert seen.bounds_own_calls and redis_setup.cache.bounds_own_calls
    service = FeedRankingService(
        catalog=_catalog(),
        events=InMemoryEventStore(),
        seen=seen,
        cache=redis_setup.cache,
        # On worker threads, deadlines above the socket timeout keep a busy machine from
        # degrading a page by itself; inline, the socket timeout is the only bound.
        config=FeedServiceConfig(
            cursor_secret="a-test-secret-of-some-length",
            deadlines=StoreDeadlines(cache=1.0, seen=1.0),
            inline_self_bounded_stores=inline,
        ),
    )
    with service:
        assert service._guards["cache"].inline is inline
        assert service._guards["seen"].inline is inline
        assert not service.feed(1, 10).degraded
        fault_server.pause()
        try:
            page = service.feed(2, 10)
        finally:
            fault_server.resume()
        assert len(page.items) == 10
        assert {"cache", "seen"} <= _names(page)
        stats = service.stats().dependencies
        for store in ("cache", "seen"):
            assert (stats[store].timeouts, stats[store].failures) == (1, 0), store
            assert stats[store].rejected >= 1, store  # its later calls were skipped
        again = service.feed(3, 10)
        assert len(again.items) == 10 and not again.degraded
        assert service.feed(3, 10, again.next_cursor).from_cache
