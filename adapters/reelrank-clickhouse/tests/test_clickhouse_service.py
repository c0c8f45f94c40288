"""The feed service reading stats and affinity from ClickHouse while the server hangs.

Each test starts a server of its own (``fault_server``) and freezes it with SIGSTOP.
Elapsed times are recorded (``record_property``) for reporting, never asserted; the
test's timeout catches a request that hangs (clickhouse-driver's default 300 s reply
timeout would).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from reelrank_clickhouse import (
    ClickHouseConfig,
    ClickHouseEventStore,
    connect,
    create_schema,
)
from reelrank_clickhouse.testing import ClickHouseServer
from sqlalchemy.engine import Engine

from reelrank import (
    FeedPage,
    FeedRankingService,
    FeedServiceConfig,
    InMemoryCatalog,
    InMemorySeenStore,
    StoreDeadlines,
)
from reelrank.testing import make_creator, make_event, make_video

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

HANG_GUARD_SECONDS = 30
EVENTS_DEADLINE_SECONDS = 0.5


def _catalog(videos: int = 60) -> InMemoryCatalog:
    catalog = InMemoryCatalog()
    now = datetime.now(UTC)
    for creator in range(1, 6):
        catalog.put_creator(make_creator(creator))
    for video in range(1, videos + 1):
        catalog.put_video(
            make_video(video, 1 + video % 5, published_at=now - timedelta(minutes=3 * video))
        )
    return catalog


@pytest.fixture
def engine(fault_server: ClickHouseServer) -> Iterator[Engine]:
    fault_server.execute("CREATE DATABASE feeds")
    config = ClickHouseConfig(
        port=fault_server.tcp_port,
        database="feeds",
        connect_timeout_seconds=0.5,
        send_receive_timeout_seconds=1.0,
        sync_request_timeout_seconds=0.5,
    )
    built = connect(config)
    create_schema(built)
    yield built
    built.dispose()


@pytest.fixture
def events(engine: Engine, fault_server: ClickHouseServer) -> ClickHouseEventStore:
    batch = [
        (make_event("watch", user_id=user, video_id=video, completion=0.9), 1 + video % 5)
        for video in range(1, 21)
        for user in (7, 8)
    ]
    # Seeded with relaxed timeouts: the seeding is not under test, and on a busy
    # machine it can outlast the store's 1 s reply timeout.
    seeder = connect(
        ClickHouseConfig(
            port=fault_server.tcp_port, database="feeds", send_receive_timeout_seconds=30.0
        )
    )
    try:
        ClickHouseEventStore(seeder).append_many(batch)
    finally:
        seeder.dispose()
    return ClickHouseEventStore(engine)


def _service(events: ClickHouseEventStore) -> FeedRankingService:
    return FeedRankingService(
        catalog=_catalog(),
        events=events,
        seen=InMemorySeenStore(),
        config=FeedServiceConfig(
            cursor_secret="a-test-secret-of-some-length",
            # Above the machine's noise, far below the driver's 1 s reply timeout.
            deadlines=StoreDeadlines(events=EVENTS_DEADLINE_SECONDS),
            candidate_pool_ttl_seconds=0.05,
            refresh_pool_in_background=False,
            breaker_reset_timeout_seconds=0.2,
        ),
    )


def _fallbacks(page: FeedPage) -> dict[str, str]:
    return {entry.dependency: entry.fallback for entry in page.degraded}


def _timed(call: Callable[[], FeedPage]) -> tuple[FeedPage, float]:
    started = time.perf_counter()
    page = call()
    return page, time.perf_counter() - started


def _until_healthy(service: FeedRankingService, user_id: int) -> FeedPage:
    # The calls abandoned during the pause end at the driver's reply timeout and the
    # breaker lets a trial call through after its reset timeout; poll until then.
    while True:
        time.sleep(0.1)
        page = service.feed(user_id, 10)
        if not page.degraded:
            return page
        user_id += 1


@pytest.mark.timeout(HANG_GUARD_SECONDS)
def test_a_paused_server_degrades_stats_and_the_feed_ranks_on_the_rest(
    fault_server: ClickHouseServer,
    events: ClickHouseEventStore,
    record_property: Callable[[str, object], None],
) -> None:
    with _service(events) as service:
        fault_server.pause()
        try:
            page, elapsed = _timed(lambda: service.feed(1, 10))
        finally:
            fault_server.resume()
        record_property("paused_feed_seconds", round(elapsed, 3))
        assert len(page.items) == 10
        fallbacks = _fallbacks(page)
        assert fallbacks["stats"] == "ranked without completion and engagement"
        assert "affinity" in fallbacks
        for item in page.items:
            assert item.breakdown["completion"] == 0.0
            assert item.breakdown["engagement"] == 0.0
            assert item.breakdown["freshness"] > 0.0
        healed, elapsed = _timed(lambda: _until_healthy(service, 100))
        record_property("recovery_seconds", round(elapsed, 3))
        assert len(healed.items) == 10
        assert any(item.breakdown["completion"] > 0.0 for item in healed.items)


@pytest.mark.timeout(HANG_GUARD_SECONDS)
def test_a_pause_after_healthy_pages_falls_back_to_last_known_stats(
    fault_server: ClickHouseServer,
    events: ClickHouseEventStore,
    record_property: Callable[[str, object], None],
) -> None:
    with _service(events) as service:
        healthy = service.feed(7, 10)
        assert not healthy.degraded
        # Video 1 to 20 were watched by users 7 and 8, who now have creator affinity.
        assert any(item.breakdown["affinity"] > 0.0 for item in healthy.items)
        time.sleep(0.1)  # let the candidate pool go stale, so the next request reads stats
        fault_server.pause()
        try:
            page, elapsed = _timed(lambda: service.feed(8, 10))
        finally:
            fault_server.resume()
        record_property("paused_feed_seconds", round(elapsed, 3))
        assert len(page.items) == 10
        fallbacks = _fallbacks(page)
        assert fallbacks["stats"] == "last known stats"
        assert "affinity" in fallbacks
        assert all(item.breakdown["affinity"] == 0.0 for item in page.items)
        assert any(item.breakdown["completion"] > 0.0 for item in page.items)
        assert not _until_healthy(service, 200).degraded
