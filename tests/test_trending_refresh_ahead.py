"""Trending snapshots refreshed ahead: a snapshot somewhat too old to reuse is served at
once while a background thread computes and stores the next one."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from reelrank import (
    EngagementLog,
    InMemoryCatalog,
    InMemoryEngagementLog,
    InMemoryTrendingSnapshotStore,
    Trending,
    TrendingConfig,
    TrendingKind,
    TrendingSnapshot,
)
from reelrank.testing import EPOCH, FaultInjector, make_creator, make_event, make_video

NOW = EPOCH + timedelta(days=30)
AHEAD = TrendingConfig(reuse_seconds=60, refresh_ahead_seconds=240)
WITHIN = NOW + timedelta(seconds=90)
"""Too old to reuse, young enough to be served while refreshed ahead."""
PAST = NOW + timedelta(seconds=301)
"""Older than reuse_seconds + refresh_ahead_seconds."""
SOUND_24 = (TrendingKind.SOUND, 24.0)


class Setup:
    """A catalog of two sounds, a log whose calls can be stalled or failed, a store,
    and a ``Trending`` that has computed and stored the snapshot at ``NOW`` (sound 3
    only); an event on sound 4 lands afterwards."""

    def __init__(self, config: TrendingConfig = AHEAD) -> None:
        self.catalog = InMemoryCatalog()
        self.catalog.put_creator(make_creator(1))
        self.catalog.put_video(make_video(1, published_at=EPOCH, sound_id=3))
        self.catalog.put_video(make_video(2, published_at=EPOCH, sound_id=4))
        self.log = FaultInjector(InMemoryEngagementLog(), name="log")
        self.log.store.record(make_event(video_id=1, occurred_at=NOW - timedelta(hours=1)))
        self.store = InMemoryTrendingSnapshotStore()
        self.trending = Trending(self.catalog, self.log.proxy, snapshots=self.store, config=config)
        self.first = self.trending.top("sound", now=NOW)
        self.log.store.record(make_event(video_id=2, occurred_at=NOW))
        self.log.calls.clear()

    def reference(self, now: datetime) -> TrendingSnapshot:
        """The snapshot computed from scratch, by a separate instance that reuses nothing."""
        computer = Trending(self.catalog, self.log.store, config=TrendingConfig(reuse_seconds=0))
        return computer.top("sound", now=now, limit=AHEAD.snapshot_size)

    def wait_for_refresh(self) -> None:
        """Wait for the background computation of the sound's 24 h snapshot."""
        self.trending._refreshing[SOUND_24].result(timeout=30)


@pytest.fixture
def setup() -> Iterator[Setup]:
    built = Setup()
    yield built
    built.log.recover()
    built.trending.close()


def test_an_aged_snapshot_is_served_at_once_and_replaced_in_the_background(
    setup: Setup,
) -> None:
    assert [item.key for item in setup.first.items] == [3]
    setup.log.stall(30.0, methods=["columns_between"])
    # The log stalls: had the call read it, it would wait 30 s.
    served = setup.trending.top("sound", now=WITHIN)
    assert served == setup.first and served.stale_as_of is None
    assert setup.store.latest_snapshot(*SOUND_24) == setup.first
    setup.log.recover()
    setup.wait_for_refresh()
    assert setup.log.calls["columns_between"] == 1
    stored = setup.store.latest_snapshot(*SOUND_24)
    assert stored == setup.reference(WITHIN)
    assert stored is not None and [item.key for item in stored.items] == [4, 3]
    # The refreshed snapshot is served as is from then on.
    assert setup.trending.top("sound", now=WITHIN + timedelta(seconds=1)) == stored


def test_the_background_computation_gives_the_lease_back(setup: Setup) -> None:
    setup.trending.top("sound", now=WITHIN)
    setup.wait_for_refresh()
    assert setup.store.acquire_lease(TrendingKind.SOUND, 24.0, owner="next", seconds=30)


def test_a_lease_held_elsewhere_leaves_the_computation_to_its_holder(setup: Setup) -> None:
    assert setup.store.acquire_lease(TrendingKind.SOUND, 24.0, owner="other", seconds=30)
    assert setup.trending.top("sound", now=WITHIN) == setup.first
    setup.wait_for_refresh()
    assert setup.log.calls["columns_between"] == 0
    assert setup.store.latest_snapshot(*SOUND_24) == setup.first


def test_one_background_computation_at_a_time_per_kind_and_window(setup: Setup) -> None:
    setup.trending.top("sound", now=NOW, window_hours=12)
    setup.log.calls.clear()
    setup.log.stall(30.0, methods=["columns_between"])
    for _ in range(3):
        assert setup.trending.top("sound", now=WITHIN) == setup.first
    running = setup.trending._refreshing[SOUND_24]
    # Another window has its own computation, queued behind the first on the one thread.
    setup.trending.top("sound", now=WITHIN, window_hours=12)
    assert setup.trending._refreshing[SOUND_24] is running
    setup.log.recover()
    setup.wait_for_refresh()
    setup.trending._refreshing[(TrendingKind.SOUND, 12.0)].result(timeout=30)
    assert setup.log.calls["columns_between"] == 2
    assert setup.store.latest_snapshot(*SOUND_24) == setup.reference(WITHIN)


def test_once_a_computation_finished_the_next_aged_call_starts_another(setup: Setup) -> None:
    setup.trending.top("sound", now=WITHIN)
    setup.wait_for_refresh()
    later = WITHIN + timedelta(seconds=90)
    setup.trending.top("sound", now=later)
    setup.wait_for_refresh()
    assert setup.log.calls["columns_between"] == 2
    assert setup.store.latest_snapshot(*SOUND_24) == setup.reference(later)


def test_finished_computations_of_other_windows_are_forgotten(setup: Setup) -> None:
    windows = (2.0, 3.0, 4.0, 5.0)
    for window in windows:
        setup.trending.top("sound", now=NOW, window_hours=window)
    for window in windows:
        setup.trending.top("sound", now=WITHIN, window_hours=window)
        setup.trending._refreshing[(TrendingKind.SOUND, window)].result(timeout=30)
    assert list(setup.trending._refreshing) == [(TrendingKind.SOUND, 5.0)]


def test_past_the_bound_the_call_computes(setup: Setup) -> None:
    fresh = setup.trending.top("sound", now=PAST)
    assert setup.log.calls["columns_between"] == 1
    assert fresh == setup.reference(PAST)
    assert SOUND_24 not in setup.trending._refreshing


def test_without_refresh_ahead_an_aged_snapshot_is_computed_during_the_call() -> None:
    assert TrendingConfig().refresh_ahead_seconds == 0.0
    setup = Setup(TrendingConfig(reuse_seconds=60))
    fresh = setup.trending.top("sound", now=WITHIN)
    assert setup.log.calls["columns_between"] == 1
    assert fresh == setup.reference(WITHIN)
    assert setup.trending._refreshing == {}
    setup.trending.close()


def test_a_failing_log_in_the_background_leaves_the_snapshot_then_serves_it_stale(
    setup: Setup,
) -> None:
    setup.log.fail(methods=["columns_between"])
    served = setup.trending.top("sound", now=WITHIN)
    assert served == setup.first and served.stale_as_of is None
    setup.wait_for_refresh()  # raises nothing
    assert setup.store.latest_snapshot(*SOUND_24) == setup.first
    # As when the call itself computes and the log fails: the stored snapshot, marked.
    stale = setup.trending.top("sound", now=WITHIN + timedelta(seconds=1))
    assert stale.stale_as_of == NOW and stale.items == setup.first.items
    setup.wait_for_refresh()
    setup.log.recover()
    after_failures = setup.trending.top("sound", now=WITHIN + timedelta(seconds=2))
    assert after_failures.stale_as_of == NOW  # the retry started by this call succeeds...
    setup.wait_for_refresh()
    refreshed = setup.trending.top("sound", now=WITHIN + timedelta(seconds=3))
    assert refreshed == setup.reference(WITHIN + timedelta(seconds=2))  # ...and serves
    assert refreshed.stale_as_of is None


class _BrokenLog:
    """A log whose reads raise an error that is not a store's."""

    def __init__(self, log: EngagementLog) -> None:
        self._log = log
        self.broken = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)

    def columns_between(self, *args: Any, **kwargs: Any) -> Any:
        if self.broken:
            raise RuntimeError("a bug")
        return self._log.columns_between(*args, **kwargs)


def test_an_unexpected_error_in_the_background_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    catalog = InMemoryCatalog()
    catalog.put_creator(make_creator(1))
    catalog.put_video(make_video(1, published_at=EPOCH, sound_id=3))
    log = _BrokenLog(InMemoryEngagementLog())
    log.record(make_event(video_id=1, occurred_at=NOW))
    trending = Trending(catalog, log, config=AHEAD)
    first = trending.top("sound", now=NOW)
    log.broken = True
    with caplog.at_level(logging.ERROR, logger="reelrank"):
        assert trending.top("sound", now=WITHIN) == first
        trending.close()
    assert "trending computation failed" in caplog.text
    assert "RuntimeError: a bug" in caplog.text
    assert trending._refreshing[SOUND_24].exception() is None


def test_close_waits_for_the_computation_then_calls_compute(setup: Setup) -> None:
    setup.log.stall(30.0, methods=["columns_between"])
    assert setup.trending.top("sound", now=WITHIN) == setup.first
    setup.log.recover()
    setup.trending.close()
    assert setup.trending._refreshing[SOUND_24].done()
    assert setup.trending._refresh_pool is None
    assert setup.store.latest_snapshot(*SOUND_24) == setup.reference(WITHIN)
    # Closed: an aged snapshot is computed during the call, as without refresh ahead.
    later = WITHIN + timedelta(seconds=90)
    setup.log.calls.clear()
    assert setup.trending.top("sound", now=later) == setup.reference(later)
    assert setup.log.calls["columns_between"] == 1
    setup.trending.close()  # closing again does nothing


def test_close_gives_up_on_a_hung_computation_after_its_timeout(setup: Setup) -> None:
    setup.log.stall(60.0, methods=["columns_between"])
    setup.trending.top("sound", now=WITHIN)
    closing = threading.Thread(target=setup.trending.close, args=(0.1,))
    closing.start()
    closing.join(10)  # a hang bound: close waits 0.1 s, not for the stalled log
    assert not closing.is_alive()
    worker = [t for t in threading.enumerate() if t.name.startswith("reelrank-trending")]
    assert worker and all(thread.daemon for thread in worker), "it would hold the exit"


def test_close_without_refreshing_creates_no_thread() -> None:
    trending = Trending(InMemoryCatalog(), InMemoryEngagementLog(), config=AHEAD)
    trending.close()
    assert trending._refresh_pool is None
