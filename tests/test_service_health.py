"""The reels service's probes, degraded cards and event-write breaker, over the test client.

Stores are in-memory, wrapped in :class:`reelrank.testing.FaultInjector` so each can be
made to fail or hang. The real-server versions of these faults are in
``tests/test_service_faults.py``.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from reelrank import (
    DependencyGuard,
    EngagementEvent,
    FeedObserver,
    GuardedStore,
    InMemoryEventStore,
    StoreTimeoutError,
    StoreUnavailableError,
)
from reelrank.testing import FaultInjector

EXAMPLE_ROOT = Path(__file__).resolve().parents[1] / "examples" / "flask_app"
sys.path.insert(0, str(EXAMPLE_ROOT))

from reelrank_example import (  # noqa: E402
    FIRST_USER_ID,
    FIRST_VIDEO_ID,
    Services,
    Settings,
    StartupProgress,
    build_services,
    create_app,
    issue_token,
    memory_stores,
    prefetch_cards,
    seed_synthetic_catalog,
)
from reelrank_example._cards import store_guard  # noqa: E402

SECRET = "h" * 40
AUTH = {"Authorization": f"Bearer {issue_token(SECRET, FIRST_USER_ID)}"}
# Longer than any test may take: a probe that waited for it would hang the test.
HANG_SECONDS = 120.0


@dataclasses.dataclass
class Faulty:
    client: FlaskClient
    services: Services
    catalog: FaultInjector[Any]
    events: FaultInjector[Any]
    seen: FaultInjector[Any]
    cache: FaultInjector[Any]
    log: FaultInjector[Any]

    def all(self) -> tuple[FaultInjector[Any], ...]:
        return (self.catalog, self.events, self.seen, self.cache, self.log)


def _build(startup: StartupProgress | None = None, **overrides: Any) -> Faulty:
    settings = Settings(
        auth_secret=SECRET, videos=30, pending_videos=0, users=4, events=200, creators=6,
        ready_check_timeout_seconds=0.05, **overrides,
    )  # fmt: skip
    stores = memory_stores()
    embeddings = seed_synthetic_catalog(stores, settings, now=datetime.now(UTC))
    injectors = {
        name: FaultInjector(getattr(stores, name), name=name)
        for name in ("catalog", "events", "seen", "cache", "log")
    }
    stores = dataclasses.replace(
        stores, embeddings=embeddings, **{name: i.proxy for name, i in injectors.items()}
    )
    services = build_services(stores, settings)
    app = create_app(services, settings, startup=startup)
    return Faulty(app.test_client(), services, **injectors)


@pytest.fixture()
def faulty() -> Iterator[Faulty]:
    built = _build()
    yield built
    for injector in built.all():
        injector.recover()
    built.services.close()


def _calls(built: Faulty) -> int:
    return sum(sum(injector.calls.values()) for injector in built.all())


def test_liveness_touches_no_store_even_when_every_store_hangs(faulty: Faulty) -> None:
    before = _calls(faulty)
    for injector in faulty.all():
        injector.stall(HANG_SECONDS)
    response = faulty.client.get("/healthz/live")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "checks": {}}
    assert _calls(faulty) == before


def test_readiness_lists_each_check_when_all_is_well(faulty: Faulty) -> None:
    response = faulty.client.get("/healthz/ready")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ok",
        "checks": {"catalog": "ok", "events": "ok", "cache": "ok"},
    }
    assert faulty.catalog.calls["recent_videos"] == 1
    assert faulty.events.calls["get_stats"] == 1


def test_readiness_names_a_hanging_store_and_does_not_wait_for_it(faulty: Faulty) -> None:
    faulty.catalog.stall(HANG_SECONDS)
    response = faulty.client.get("/healthz/ready")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    body = response.get_json()
    assert body["errors"] == [{"field": "catalog", "message": "timed out"}]
    assert "catalog" in body["detail"]
    # The hung check is not started again while it still runs: one thread at most.
    again = faulty.client.get("/healthz/ready").get_json()
    assert again["errors"] == [{"field": "catalog", "message": "timed out"}]
    assert faulty.catalog.calls["recent_videos"] == 1
    faulty.catalog.recover()


def test_readiness_names_every_failing_required_store(faulty: Faulty) -> None:
    faulty.catalog.fail()
    faulty.events.stall(HANG_SECONDS)
    body = faulty.client.get("/healthz/ready").get_json()
    assert body["status"] == 503
    assert body["errors"] == [
        {"field": "catalog", "message": "failed"},
        {"field": "events", "message": "timed out"},
    ]


def test_a_failing_feed_cache_degrades_readiness_without_failing_it(faulty: Faulty) -> None:
    faulty.cache.fail()
    # Feed requests open the cache's breaker; readiness reports it and stays 200.
    for user in range(4):
        headers = {"Authorization": f"Bearer {issue_token(SECRET, FIRST_USER_ID + user)}"}
        for _ in range(3):
            page = faulty.client.get("/api/v1/reels?limit=3", headers=headers)
            assert page.status_code == 200
            assert "cache" in page.get_json()["degraded"]
    response = faulty.client.get("/healthz/ready")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "degraded",
        "checks": {"catalog": "ok", "events": "ok", "cache": "degraded"},
    }


def test_startup_answers_503_until_every_step_is_done() -> None:
    progress = StartupProgress()
    built = _build(startup=progress)
    try:
        response = built.client.get("/healthz/startup")
        assert response.status_code == 503
        assert {e["field"] for e in response.get_json()["errors"]} == {
            "kernels",
            "migrations",
            "warming",
        }
        assert built.client.get("/healthz/ready").status_code == 503
        assert built.client.get("/healthz/live").status_code == 200
        progress.mark("kernels", "done")
        progress.mark("migrations", "done")
        still = built.client.get("/healthz/startup").get_json()
        assert still["errors"] == [{"field": "warming", "message": "pending"}]
        progress.mark("warming", "done")
        done = built.client.get("/healthz/startup")
        assert done.status_code == 200
        assert done.get_json()["checks"] == {
            "kernels": "done",
            "migrations": "done",
            "warming": "done",
        }
        assert built.client.get("/healthz/ready").status_code == 200
    finally:
        built.services.close()


def test_a_failed_startup_step_stops_start_up_and_is_reported() -> None:
    progress = StartupProgress()
    ran: list[str] = []

    def broken() -> None:
        raise RuntimeError("schema behind")

    progress.run(
        [("kernels", lambda: ran.append("kernels")), ("migrations", broken),
         ("warming", lambda: ran.append("warming"))]
    ).join(timeout=30)  # fmt: skip
    assert ran == ["kernels"]
    assert progress.checks() == {
        "kernels": "done",
        "migrations": "failed: RuntimeError",
        "warming": "pending",
    }
    assert not progress.complete


def test_cards_fall_back_to_what_was_read_before_an_outage() -> None:
    # Details and counts are read on every request here, so the outage is the only reason
    # to reuse them.
    built = _build(card_cache_seconds=0.0, card_counts_seconds=0.0)
    try:
        first = built.client.get("/api/v1/reels?limit=4", headers=AUTH).get_json()
        assert first["degraded"] == []
        cursor = first["next_cursor"]
        second = built.client.get(f"/api/v1/reels?limit=4&cursor={cursor}", headers=AUTH)
        shown = {item["video_id"]: item for item in second.get_json()["items"]}
        video = next(iter(shown))
        built.catalog.fail(methods=["get_videos", "get_creators"])
        built.events.fail(methods=["get_stats"])
        # The same video's card, built from the details and counts read before.
        detail = built.client.get(f"/api/v1/reels/{video}")
        assert detail.status_code == 200, detail.get_data(as_text=True)
        assert detail.get_json()["title"] == shown[video]["title"]
        assert detail.get_json()["counts"] == shown[video]["counts"]
        # A retried cursor gets its page again, and says which stores it worked around.
        page = built.client.get(f"/api/v1/reels?limit=4&cursor={cursor}", headers=AUTH)
        assert page.status_code == 200
        assert {item["video_id"]: item for item in page.get_json()["items"]} == shown
        assert {"catalog", "events"} <= set(page.get_json()["degraded"])
    finally:
        built.catalog.recover()
        built.events.recover()
        built.services.close()


def test_list_cards_reuse_counts_until_an_event_changes_them(faulty: Faulty) -> None:
    first = faulty.client.get("/api/v1/reels?limit=4", headers=AUTH).get_json()
    path = f"/api/v1/reels?limit=4&cursor={first['next_cursor']}"
    page = faulty.client.get(path, headers=AUTH).get_json()
    shown = {item["video_id"]: item["counts"] for item in page["items"]}
    video = next(iter(shown))
    reads = faulty.events.calls["get_stats"]
    # The same cards again (a retried cursor), within card_counts_seconds: no count read.
    again = faulty.client.get(path, headers=AUTH).get_json()
    assert {item["video_id"]: item["counts"] for item in again["items"]} == shown
    assert faulty.events.calls["get_stats"] == reads
    # A video's detail reads its counts afresh.
    assert faulty.client.get(f"/api/v1/reels/{video}").get_json()["counts"] == shown[video]
    assert faulty.events.calls["get_stats"] == reads + 1
    # A watch recorded here refreshes that video's counts on the next list card.
    watch = faulty.client.post(f"/api/v1/reels/{video}/watch", json={"completion": 0.5},
                               headers=AUTH)  # fmt: skip
    assert watch.status_code == 201
    after = {item["video_id"]: item["counts"] for item in
             faulty.client.get(path, headers=AUTH).get_json()["items"]}  # fmt: skip
    assert after[video]["views"] == shown[video]["views"] + 1
    assert {k: v for k, v in after.items() if k != video} == {
        k: v for k, v in shown.items() if k != video
    }


def test_event_writes_answer_503_and_stop_calling_a_failing_event_store(faulty: Faulty) -> None:
    path = f"/api/v1/reels/{FIRST_VIDEO_ID}/watch"
    faulty.events.fail(methods=["append", "append_many"])
    for _ in range(3):
        response = faulty.client.post(path, json={"completion": 0.5}, headers=AUTH)
        assert response.status_code == 503
        # At least a second; the rate limit's window may ask for longer.
        assert int(response.headers["Retry-After"]) >= 1
        assert "events" in response.get_json()["detail"]
    attempts = faulty.events.calls["append"] + faulty.events.calls["append_many"]
    refused = faulty.client.post(path, json={"completion": 0.5}, headers=AUTH)
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"
    assert faulty.events.calls["append"] + faulty.events.calls["append_many"] == attempts


def test_feed_pages_say_whether_they_came_from_the_cache(faulty: Faulty) -> None:
    first = faulty.client.get("/api/v1/reels?limit=3", headers=AUTH)
    assert first.headers["Cache-Status"] == "reelrank; fwd=miss"
    cursor = first.get_json()["next_cursor"]
    following = faulty.client.get(f"/api/v1/reels?limit=3&cursor={cursor}", headers=AUTH)
    assert following.headers["Cache-Status"] == "reelrank; hit"


def test_a_guarded_store_times_out_then_stops_calling_a_hanging_store() -> None:
    hanging = FaultInjector(InMemoryEventStore(), name="events")
    guarded: Any = GuardedStore(hanging.proxy, store_guard("events", deadline=0.05))
    assert guarded.get_stats([FIRST_VIDEO_ID]) == {
        FIRST_VIDEO_ID: InMemoryEventStore().get_stats([FIRST_VIDEO_ID])[FIRST_VIDEO_ID]
    }
    hanging.stall(HANG_SECONDS)
    for _ in range(3):
        with pytest.raises(StoreTimeoutError):
            guarded.get_stats([FIRST_VIDEO_ID])
    calls = hanging.calls["get_stats"]
    with pytest.raises(StoreUnavailableError, match="circuit open"):
        guarded.get_stats([FIRST_VIDEO_ID])
    assert hanging.calls["get_stats"] == calls
    hanging.recover()


def test_a_card_read_of_the_guarded_event_store_crosses_one_guard(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from reelrank_example import _guarded  # the wiring create_default_app uses
    from reelrank_example._cards import CardReader

    settings = Settings(auth_secret=SECRET, videos=10, pending_videos=0, users=2, events=0,
                        creators=3)  # fmt: skip
    stores = memory_stores()
    seed_synthetic_catalog(stores, settings, now=datetime.now(UTC))
    events = FaultInjector(stores.events, name="events")
    reported: list[tuple[str, str, str]] = []

    class Recording(FeedObserver):
        def store_call(self, store: str, operation: str, seconds: float, outcome: Any) -> None:
            reported.append((store, operation, outcome))

    observer = Recording()
    guarded = _guarded(dataclasses.replace(stores, events=events.proxy), observer)
    # Every guard a call enters, and the thread it is entered from: each entry of a
    # (non-inline) guard is one hop to a worker thread.
    entered: list[tuple[str, str]] = []
    call_with_deadline = DependencyGuard.call_with_deadline

    def entering(
        self: DependencyGuard, deadline: float, fn: Any, *, operation: str = "call"
    ) -> Any:
        entered.append((self.name, threading.current_thread().name))
        return call_with_deadline(self, deadline, fn, operation=operation)

    monkeypatch.setattr(DependencyGuard, "call_with_deadline", entering)
    reader = CardReader(guarded.catalog, guarded.events, ttl=60.0, observer=observer)
    here = threading.current_thread().name
    video = FIRST_VIDEO_ID

    data = reader.read([video])
    assert data.stats[video] == stores.events.get_stats([video])[video]
    assert data.degraded == []
    # The catalog is not guarded by the service, so the reader guards it; the event
    # store is, so its read crosses that guard alone, counted once.
    assert entered == [("catalog", here), ("catalog", here), ("events", here)]
    assert reported == [("catalog", "get_videos", "ok"), ("catalog", "get_creators", "ok"),
                        ("events", "get_stats", "ok")]  # fmt: skip

    # The guarded store's deadline and breaker still apply, and the reader falls back
    # to the counts it read before, logging each failure.
    entered.clear()
    reported.clear()
    events.stall(0.5, methods=["get_stats"])
    with caplog.at_level(logging.WARNING, logger="reelrank_example._cards"):
        stalled = reader.read([video], fresh_counts=True)
        events.recover()
        events.fail(methods=["get_stats"])
        failed = [reader.read([video], fresh_counts=True) for _ in range(2)]
        reads = events.calls["get_stats"]
        skipped = reader.read([video], fresh_counts=True)
    events.recover()
    assert events.calls["get_stats"] == reads
    for fallback in (stalled, *failed, skipped):
        assert fallback.degraded == ["events"]
        assert fallback.stats == data.stats
    assert entered == [("events", here)] * 4
    outcomes = ["timeout", "error", "error", "rejected"]
    assert reported == [("events", "get_stats", outcome) for outcome in outcomes]
    assert [record.getMessage() for record in caplog.records] == [
        "call to events failed: StoreTimeoutError",
        "call to events failed: StoreError",
        "call to events failed: StoreError",
        "call to events failed: StoreUnavailableError",
    ]


def test_stale_list_counts_are_shown_while_read_again_in_the_background() -> None:
    from reelrank_example._cards import CardReader

    settings = Settings(auth_secret=SECRET, videos=30, pending_videos=0, users=4, events=0,
                        creators=6)  # fmt: skip
    stores = memory_stores()
    seed_synthetic_catalog(stores, settings, now=datetime.now(UTC))
    events = FaultInjector(stores.events, name="events")
    now = [0.0]
    reader = CardReader(stores.catalog, events.proxy, ttl=60.0, counts_ttl=10.0,
                        clock=lambda: now[0])  # fmt: skip
    video = FIRST_VIDEO_ID
    creator = stores.catalog.get_video(video).creator_id

    def views() -> int:
        return reader.read([video]).stats[video].views

    assert views() == 0
    assert events.calls["get_stats"] == 1

    def watch(number: int) -> None:
        stores.events.append(
            EngagementEvent(event_id=f"w-{number}", kind="watch", user_id=FIRST_USER_ID,
                            video_id=video, occurred_at=datetime.now(UTC), completion=0.5),
            creator_id=creator,
        )  # fmt: skip

    watch(1)
    # Fresh for counts_ttl: not read again.
    now[0] = 9.0
    assert views() == 0
    assert events.calls["get_stats"] == 1
    # Past it: the older count is shown at once and read again on the pool.
    now[0] = 11.0
    assert views() == 0
    deadline = time.monotonic() + 10.0
    while views() != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert views() == 1
    # A count dropped after an event is read during the next request, not later.
    watch(2)
    reader.forget_counts([video])
    assert views() == 2


def test_a_background_count_read_keeps_counts_stored_after_it_started() -> None:
    """A background refresh that read before a like's fresh read (stored later) must
    not put its older counts back; counts stored before it started are replaced."""
    from reelrank_example._cards import _Kept

    now = [0.0]
    kept: _Kept[int] = _Kept(10.0, 10, lambda: now[0])
    kept.store({1: 1, 2: 1})
    now[0] = 5.0
    kept.store({2: 3})  # the like's fresh read, after the refresh read at 4.0
    now[0] = 6.0
    kept.store_present({1: 2, 2: 2, 3: 2}, read_at=4.0)
    assert kept.kept([1, 2, 3]) == {1: 2, 2: 3}


def test_prefetching_cards_reads_creators_under_the_card_guard(faulty: Faulty) -> None:
    """Start-up's prefetch reads creators as every other card read does: a failing
    catalog is counted by the card reader's breaker and the prefetch goes on (the
    creators are read when a card first shows them), instead of raising out of it."""
    app = faulty.client.application
    reader = app.extensions["reelrank_cards"]
    videos = faulty.catalog.store.recent_videos(limit=5)
    faulty.catalog.fail(methods=["get_creators"])
    try:
        assert prefetch_cards(app, videos) == len(videos)
        assert reader._catalog_reads._guard.breaker.consecutive_failures == 1
    finally:
        faulty.catalog.recover()
    # The videos were kept: their cards need the catalog only for the creators now.
    faulty.catalog.fail(methods=["get_videos"])
    detail = faulty.client.get(f"/api/v1/reels/{videos[0].video_id}")
    assert detail.status_code == 200, detail.get_data(as_text=True)
    assert detail.get_json()["title"] == videos[0].title
