"""A paused PostgreSQL under the feed service: pages keep coming within the service's
per-store deadlines, ``FeedPage.degraded`` names what failed, and resuming heals it.

Each test runs its own cluster (``fault_server``) and pauses the postmaster and every
backend with ``SIGSTOP``. A paused server never answers, and no client-side timeout of
the driver fires then (``statement_timeout`` runs on the server), so the service's
deadline is the only guard: the SQL stores do not claim to bound their own calls, and
the service runs them on worker threads. Elapsed time is not asserted (the machine is
shared and noisy); a request that hung would be stopped by the test's timeout instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from reelrank_postgres import (
    SqlCatalog,
    SqlEventStore,
    SqlStoreConfig,
    connect,
    migrate,
)
from reelrank_postgres.testing import PostgresServer
from sqlalchemy import Engine

from reelrank import (
    FeedPage,
    FeedRankingService,
    FeedServiceConfig,
    FeedUnavailableError,
    InMemoryFeedCache,
    InMemorySeenStore,
    StoreDeadlines,
    StoreTimeoutError,
)
from reelrank.testing import make_creator, make_event, make_video

# Generous against the 0.5 s deadlines below: a request that waited for the paused
# server instead of its deadline would never finish, and this guard ends the test.
HANG_GUARD_SECONDS = 40

pytestmark = [pytest.mark.integration, pytest.mark.timeout(HANG_GUARD_SECONDS)]

VIDEOS = 60


@dataclass
class SqlSetup:
    engine: Engine
    catalog: SqlCatalog
    events: SqlEventStore


@pytest.fixture
def sql_setup(fault_server: PostgresServer) -> Iterator[SqlSetup]:
    engine = connect(
        SqlStoreConfig(url=fault_server.url, connect_timeout_seconds=2, pool_timeout_seconds=0.5)
    )
    migrate(engine)
    catalog = SqlCatalog(engine)
    events = SqlEventStore(engine)
    now = datetime.now(UTC)
    for creator in range(1, 6):
        catalog.put_creator(make_creator(creator))
    for video in range(1, VIDEOS + 1):
        catalog.put_video(
            make_video(video, 1 + video % 5, published_at=now - timedelta(minutes=3 * video))
        )
        events.append(make_event("watch", video_id=video, completion=0.5), creator_id=1)
    catalog.follow(2, 3)
    yield SqlSetup(engine, catalog, events)
    engine.dispose()


def _service(setup: SqlSetup) -> FeedRankingService:
    return FeedRankingService(
        catalog=setup.catalog,
        events=setup.events,
        seen=InMemorySeenStore(),
        cache=InMemoryFeedCache(),
        config=FeedServiceConfig(
            cursor_secret="a-test-secret-of-some-length",
            # Longer than the defaults so a busy machine cannot degrade a healthy page.
            deadlines=StoreDeadlines(catalog=0.5, events=0.5),
            refresh_pool_in_background=False,
            breaker_reset_timeout_seconds=0.5,
        ),
    )


def _names(page: FeedPage) -> set[str]:
    return {entry.dependency for entry in page.degraded}


def test_sql_stores_run_under_the_services_deadline(sql_setup: SqlSetup) -> None:
    with _service(sql_setup) as service:
        assert service._guards["catalog"].inline is False
        assert service._guards["events"].inline is False
        page = service.feed(1, 10)
    assert len(page.items) == 10 and not page.degraded


def test_a_paused_server_degrades_the_feed_and_resuming_heals_it(
    fault_server: PostgresServer, sql_setup: SqlSetup
) -> None:
    with _service(sql_setup) as service:
        assert not service.feed(1, 10).degraded
        fault_server.pause()
        try:
            page = service.feed(2, 10)
        finally:
            fault_server.resume()
        # The candidate pool of the first request stands in for the catalog; the user's
        # followed videos (catalog) and affinities (event store) ran past their deadlines.
        assert len(page.items) == 10
        assert {"catalog", "affinity"} <= _names(page)
        fallbacks = {entry.dependency: entry.fallback for entry in page.degraded}
        assert fallbacks["catalog"] == "without followed creators' videos"
        stats = service.stats().dependencies
        assert stats["catalog"].timeouts >= 1 and stats["events"].timeouts >= 1
        healed = service.feed(3, 10)
        assert len(healed.items) == 10 and not healed.degraded


def test_a_paused_server_with_nothing_cached_makes_the_feed_unavailable(
    fault_server: PostgresServer, sql_setup: SqlSetup
) -> None:
    with _service(sql_setup) as service:
        fault_server.pause()
        try:
            # No snapshot and no candidate pool: the documented fallback is to refuse.
            with pytest.raises(FeedUnavailableError):
                service.feed(1, 10)
            with pytest.raises(FeedUnavailableError):
                service.feed(2, 10)
        finally:
            fault_server.resume()
        page = service.feed(1, 10)
        assert len(page.items) == 10 and not page.degraded


def test_a_cached_feed_is_served_while_the_server_is_paused(
    fault_server: PostgresServer, sql_setup: SqlSetup
) -> None:
    with _service(sql_setup) as service:
        first = service.feed(1, 10)
        fault_server.pause()
        try:
            second = service.feed(1, 10, first.next_cursor)
        finally:
            fault_server.resume()
        assert second.from_cache and len(second.items) == 10
        assert {item.video_id for item in first.items}.isdisjoint(
            item.video_id for item in second.items
        )


def test_a_new_connection_to_a_paused_server_gives_up_after_connect_timeout(
    fault_server: PostgresServer, sql_setup: SqlSetup
) -> None:
    """Without a pooled connection the store must connect, and libpq's connect_timeout
    bounds that; it is the one wait the driver itself cuts short on a paused server."""
    fresh = connect(SqlStoreConfig(url=fault_server.url, connect_timeout_seconds=2))
    catalog = SqlCatalog(fresh, verify_schema=False)
    fault_server.pause()
    try:
        with pytest.raises(StoreTimeoutError) as info:
            catalog.recent_videos(limit=10)
    finally:
        fault_server.resume()
        fresh.dispose()
    assert info.value.store == "catalog"
    assert len(sql_setup.catalog.recent_videos(limit=10)) == 10
