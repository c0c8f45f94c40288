"""``Services.close`` stops every thread the service and its app started.

The app starts threads as it is used: the card reader's background count reads, the
search counts' background reads, the event recorder's writes beside the event store,
the readiness checks' pool, start-up's own thread. A
test uses each path, closes the services, and checks that none of those threads is
left; on the embedded stores, and on PostgreSQL and Redis servers. A read stuck on a
paused store holds a close for its bound only, and so do checks, trending's computation,
guarded reads, search's background count reads and the recorder's writes hung on a
store that never answers, which do not hold the process's exit either. (The feed
service's candidate pool refresh and its store calls are checked in
``test_service.py``, the ClickHouse event store's background read in the adapter's
tests.)
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest
import reelrank_example
from flask import Flask
from reelrank_example import (
    FIRST_USER_ID,
    FIRST_VIDEO_ID,
    Services,
    Settings,
    StartupProgress,
    build_services,
    configured_stores,
    create_app,
    issue_token,
    memory_stores,
    migrate,
    seed_synthetic_catalog,
)
from reelrank_example._cards import ReusedCounts

from reelrank import EventStore, VideoStats

SECRET = "c" * 40
PREFIXES = (
    "reelrank-cards",
    "reelrank-search-counts",
    "reelrank-ready",
    "reelrank-startup",
    "reelrank-pool",
    "reelrank-recorder",
    # The card reader's guards' worker pools.
    "reelrank-catalog",
    "reelrank-events",
)
SMALL = {
    "auth_secret": SECRET,
    "videos": 30,
    "pending_videos": 0,
    "users": 5,
    "events": 200,
    "creators": 4,
    # Counts age at once, so a second card read refreshes them in the background, and
    # a search reads the counts it has none of in the background.
    "card_counts_seconds": 0.05,
    "search_waits_for_unknown_counts": False,
    # Counts are read from the stores, not taken from the in-memory store's bounded-age
    # read, so that the background count reads run.
    "bounded_counts_seconds": 0.0,
}


def _alive() -> frozenset[threading.Thread]:
    """The threads alive with one of :data:`PREFIXES` (several may share a name)."""
    return frozenset(t for t in threading.enumerate() if t.name.startswith(PREFIXES))


def _threads(*, besides: frozenset[threading.Thread] = frozenset()) -> dict[str, threading.Thread]:
    """The threads alive with one of :data:`PREFIXES`, by name, except ``besides``
    (left by earlier tests of the process that did not close their services)."""
    return {
        thread.name: thread
        for thread in threading.enumerate()
        if thread.name.startswith(PREFIXES) and thread not in besides
    }


def _use_every_background_path(
    app: Flask, startup: StartupProgress, earlier: frozenset[threading.Thread]
) -> list[str]:
    """Search, read cards twice (the second refreshes their counts in the background),
    probe readiness, and run a start-up whose first step is still going; the list the
    start-up's next step adds to."""
    client = app.test_client()
    headers = {"Authorization": f"Bearer {issue_token(SECRET, FIRST_USER_ID)}"}
    found = client.get("/api/v1/reels/search?q=dance", headers=headers)
    assert found.status_code == 200, found.get_data(as_text=True)
    watched = client.post(
        f"/api/v1/reels/{FIRST_VIDEO_ID}/watch",
        json={"completion": 0.5},
        headers={**headers, "Idempotency-Key": "close-watch"},
    )
    assert watched.status_code == 201, watched.get_data(as_text=True)
    cards = app.extensions["reelrank_cards"]
    ids = list(range(FIRST_VIDEO_ID, FIRST_VIDEO_ID + 10))
    cards.read(ids)
    time.sleep(0.1)  # past card_counts_seconds
    assert cards.read(ids).stats
    for step in ("kernels", "migrations", "warming"):
        startup.mark(step, "done")
    assert client.get("/healthz/ready").status_code == 200  # the checks ran
    later_steps: list[str] = []
    startup.run(
        [("warming", lambda: time.sleep(0.5)), ("kernels", lambda: later_steps.append("ran"))]
    )
    # Executor threads are numbered after "_", worker pools' after "-".
    started = {re.sub(r"[-_]\d+$", "", name) for name in _threads(besides=earlier)}
    assert {"reelrank-cards", "reelrank-search-counts", "reelrank-ready", "reelrank-recorder"} <= (
        started
    )
    assert "reelrank-startup" in started
    return later_steps


def _assert_closed(services: Services, earlier: frozenset[threading.Thread]) -> None:
    services.close()
    # Executor threads exit just after their last task; a bound, not a time asserted.
    for thread in _threads(besides=earlier).values():
        thread.join(10)
    left = _threads(besides=earlier)
    assert not left, sorted(left)
    services.close()  # closing again is harmless


def test_close_stops_every_thread_on_the_embedded_stores() -> None:
    earlier = _alive()
    settings = Settings(**SMALL)
    stores = memory_stores()
    embeddings = seed_synthetic_catalog(stores, settings, now=_now())
    services = build_services(dataclasses.replace(stores, embeddings=embeddings), settings)
    startup = StartupProgress()
    app = create_app(services, settings, startup=startup)
    later_steps = _use_every_background_path(app, startup, earlier)
    _assert_closed(services, earlier)
    assert later_steps == []  # start-up stopped before its next step


@pytest.mark.integration
def test_close_stops_every_thread_on_postgres_and_redis(
    service_postgres_url: str, service_redis_url: str, tmp_path: Path
) -> None:
    earlier = _alive()
    settings = Settings(
        **SMALL,
        database_url=service_postgres_url,
        redis_url=service_redis_url,
        redis_prefix=f"close-{time.time_ns()}",
    )
    migrate(settings)
    stores = configured_stores(settings)
    closed: list[str] = []
    stores = dataclasses.replace(stores, closers=(*stores.closers, lambda: closed.append("stores")))
    try:
        seed_synthetic_catalog(stores, settings, now=_now())
    except BaseException:
        for close in stores.closers:
            close()
        raise
    services = build_services(stores, settings)
    startup = StartupProgress()
    app = create_app(services, settings, startup=startup)
    _use_every_background_path(app, startup, earlier)
    _assert_closed(services, earlier)
    assert closed == ["stores"]  # released once


def _now() -> datetime:
    return datetime.now(UTC)


class _PausedEvents:
    """An event store whose stats reads wait until :attr:`resume` is set, as on a paused
    server."""

    def __init__(self) -> None:
        self.reading = threading.Event()
        self.resume = threading.Event()

    def get_stats(self, video_ids: Sequence[int]) -> dict[int, VideoStats]:
        self.reading.set()
        self.resume.wait(60)
        return {}


def test_close_gives_up_on_a_read_stuck_on_a_paused_store() -> None:
    events = _PausedEvents()
    counts = ReusedCounts(cast(EventStore, events), ttl=10.0, wait_for_unknown=False)
    assert counts.get_stats([1, 2]) == {}  # read in the background
    assert events.reading.wait(10)
    closing = threading.Thread(target=counts.close, args=(0.2,))
    closing.start()
    closing.join(10)  # a hang bound: close waits 0.2 s for the read, not for the store
    try:
        assert not closing.is_alive()
    finally:
        events.resume.set()
    refresher = [t for t in threading.enumerate() if t.name.startswith("reelrank-search-counts")]
    for thread in refresher:
        thread.join(10)
    assert not any(thread.is_alive() for thread in refresher)
    counts.close(0.0)  # closing again is harmless


_HUNG_SERVICE = textwrap.dedent(
    """
    import threading, time
    from datetime import timedelta
    from reelrank import InMemoryEngagementLog, InMemoryEventStore
    from reelrank.testing import EPOCH, make_creator, make_video
    from reelrank_example import Settings, build_services, create_app, memory_stores
    import dataclasses

    never = threading.Event()  # never set: the store never answers
    hang_log = threading.Event()

    class HungEvents(InMemoryEventStore):
        def get_stats(self, video_ids):
            never.wait()
            return {}

    writing = threading.Event()

    class HungLog(InMemoryEngagementLog):
        def columns_between(self, start, end, *, limit=None):
            if hang_log.is_set():
                never.wait()
            return super().columns_between(start, end, limit=limit)

        def record(self, event):
            writing.set()
            never.wait()
            return True

    stores = dataclasses.replace(memory_stores(), events=HungEvents(), log=HungLog())
    stores.catalog.put_creator(make_creator(1))
    stores.catalog.put_video(make_video(1, published_at=EPOCH))
    # Without bounded-age counts, which the in-memory store answers without get_stats.
    # Search reads the counts it has none of in the background, on its own thread.
    settings = Settings(
        auth_secret="c" * 40,
        ready_check_timeout_seconds=0.2,
        bounded_counts_seconds=0,
        search_waits_for_unknown_counts=False,
    )
    services = build_services(stores, settings)
    app = create_app(services, settings)
    # Trending computes its first snapshot, then refreshes it ahead on a hung log.
    now = EPOCH + timedelta(days=1)
    services.trending.top("sound", now=now)
    hang_log.set()
    services.trending.top("sound", now=now + timedelta(seconds=90))
    # A readiness check hangs on its own thread, a card read on its guard's worker.
    assert app.test_client().get("/healthz/ready").status_code == 503
    assert app.extensions["reelrank_cards"].read([1]).degraded == ["events"]
    # Search's background count read hangs on its thread.
    assert services.search_counts.get_stats([1]) == {}
    # A watch's log write hangs on the recorder's pool, beside the event store's append
    # (the watch itself waits for it, on a thread of its own).
    threading.Thread(
        target=services.recorder.watch,
        args=(1, 1),
        kwargs={"event_id": "hung", "completion": 0.5},
        daemon=True,
    ).start()
    assert writing.wait(10)
    began = time.monotonic()
    services.close(timeout=0.5)
    print(f"closed in {time.monotonic() - began:.2f} s", flush=True)
    """
)


def test_close_and_exit_are_bounded_with_every_kind_of_call_hung_on_a_store(
    tmp_path: Path,
) -> None:
    script = tmp_path / "hung_service.py"
    script.write_text(_HUNG_SERVICE)
    # A hang bound, not a time asserted: before, trending's close waited for the hung
    # computation, and the readiness pool's thread held the interpreter's exit, as did
    # the threads of search's background count reads and the recorder's writes.
    # The service is imported from its tree, as in this process (see conftest.py).
    service = Path(reelrank_example.__file__).resolve().parents[1]
    path = os.pathsep.join(filter(None, [str(service), os.environ.get("PYTHONPATH")]))
    finished = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": path},
    )
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.startswith("closed in "), finished.stdout
