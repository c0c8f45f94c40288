"""The three probes' logic: start-up progress and bounded readiness checks of the stores.

Liveness needs nothing here: a process that answers is alive, and ``/healthz/live``
touches no store, so an outage elsewhere never gets a healthy process restarted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import wait as wait_for

from reelrank import BreakerState, FeedRankingService, WorkerPool

from ._services import Stores

__all__ = ["ReadinessChecks", "StartupProgress"]

_logger = logging.getLogger(__name__)

STARTUP_STEPS = ("kernels", "migrations", "warming")
"""What start-up does before ``/healthz/startup`` answers 200, in order."""


class StartupProgress:
    """Which start-up steps of this process are done; the startup probe reports it.

    ``StartupProgress.finished()`` is the progress of an app whose services were
    started before it was made (tests, notebooks).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._steps = dict.fromkeys(STARTUP_STEPS, "pending")
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def finished(cls) -> StartupProgress:
        progress = cls()
        for step in STARTUP_STEPS:
            progress.mark(step, "done")
        return progress

    def mark(self, step: str, state: str) -> None:
        """Record ``state`` (``"done"``, or what went wrong) for ``step``."""
        with self._lock:
            self._steps[step] = state

    def checks(self) -> dict[str, str]:
        with self._lock:
            return dict(self._steps)

    @property
    def complete(self) -> bool:
        """Whether every step is done."""
        with self._lock:
            return all(state == "done" for state in self._steps.values())

    def run(
        self,
        steps: Sequence[tuple[str, Callable[[], None]]],
        on_complete: Callable[[], None] | None = None,
    ) -> threading.Thread:
        """Run ``steps`` in order on a background thread, marking each as it ends, then
        call ``on_complete`` once every step is done.

        A step that raises is marked ``"failed: <error type>"`` and start-up stops
        there: the probe keeps answering 503 and the orchestrator restarts the process.
        """

        def work() -> None:
            for step, action in steps:
                if self._stopping.is_set():
                    return
                try:
                    action()
                except Exception as exc:
                    _logger.exception("start-up step %s failed", step)
                    self.mark(step, f"failed: {type(exc).__name__}")
                    return
                self.mark(step, "done")
            if on_complete is not None:
                on_complete()

        thread = threading.Thread(target=work, name="reelrank-startup", daemon=True)
        self._thread = thread
        thread.start()
        return thread

    def stop(self, timeout: float) -> None:
        """Start no further step, and wait up to ``timeout`` seconds for the step under
        way (its store calls run under the start-up read deadline). Stopping again, or
        a progress never run, does nothing more."""
        self._stopping.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)


class ReadinessChecks:
    """Concurrent checks of the stores, each under ``timeout`` seconds.

    One method per check, named ``check_<dependency>``. The *required* checks are the
    stores no request can be answered without: the catalog (SQL) and the event store.
    The feed cache is reported but never fails readiness: without it feeds are ranked
    on every request, slower but correct, and taking every replica out of service for
    a cache outage would turn a slowdown into an outage. Its state is the feed
    service's circuit breaker, so probing it costs no cache lookup.

    A check still running from an earlier probe (its store hangs) is not started again
    and reads ``"timed out"``, so a hanging store holds one thread per check at most.
    """

    required = ("catalog", "events")
    """The checks whose failure makes ``/healthz/ready`` answer 503."""

    def __init__(self, stores: Stores, feed: FeedRankingService, *, timeout: float) -> None:
        self._stores = stores
        self._feed = feed
        self._timeout = timeout
        # Daemon threads: a check hung on its store cannot keep the process from exiting.
        self._pool = WorkerPool(len(self.required), name="reelrank-ready")
        self._running: dict[str, Future[None]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def check_catalog(self) -> None:
        """The SQL database answers a catalog read."""
        self._stores.catalog.recent_videos(limit=1)

    def check_events(self) -> None:
        """The event store answers a stats read (ClickHouse when configured)."""
        self._stores.events.get_stats([1])

    def cache_state(self) -> str:
        """``"ok"``, or ``"degraded"`` while the feed cache's breaker is not closed."""
        breaker = self._feed.breakers.get("cache")
        return "ok" if breaker is None or breaker.state is BreakerState.CLOSED else "degraded"

    def run(self) -> dict[str, str]:
        """Every check's outcome: ``"ok"``, ``"failed"``, ``"timed out"`` (required) or
        ``"ok"`` / ``"degraded"`` (the cache)."""
        futures: dict[str, Future[None]] = {}
        outcomes: dict[str, str] = {}
        with self._lock:
            for name in self.required:
                if self._closed:
                    outcomes[name] = "failed"
                    continue
                previous = self._running.get(name)
                if previous is not None and not previous.done():
                    outcomes[name] = "timed out"
                    continue
                futures[name] = self._running[name] = self._pool.submit(
                    getattr(self, f"check_{name}")
                )
        wait_for(futures.values(), timeout=self._timeout)
        for name, future in futures.items():
            outcomes[name] = _outcome(name, future)
        outcomes["cache"] = self.cache_state()
        return {name: outcomes[name] for name in (*self.required, "cache")}

    def close(self, timeout: float) -> None:
        """Start no more checks (a probe answers them ``"failed"``), and wait up to
        ``timeout`` seconds for those under way. A check hung on its store past that is
        left to the driver's own timeout, on a daemon thread. Closing again does nothing
        more."""
        with self._lock:
            self._closed = True
            running = list(self._running.values())
        self._pool.shutdown()
        wait_for(running, timeout=timeout)

    @staticmethod
    def failing(outcomes: Mapping[str, str]) -> dict[str, str]:
        """The required checks among ``outcomes`` that did not pass."""
        return {
            name: state
            for name, state in outcomes.items()
            if name in ReadinessChecks.required and state != "ok"
        }


def _outcome(name: str, future: Future[None]) -> str:
    if not future.done():
        return "timed out"
    error = future.exception()
    if error is None:
        return "ok"
    _logger.warning("readiness check %s failed: %s", name, type(error).__name__)
    return "failed"
