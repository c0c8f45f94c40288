"""Refilling ahead: ranking a user's next snapshot before their current one is used up.

A page cut from a cached snapshot that leaves fewer than
:attr:`~reelrank.FeedServiceConfig.refill_ahead_items` items after it hands the user to a
:class:`Refiller`. Its worker threads rank the user's next snapshot off the request
path, after the page was marked seen, and store it, so the page after is cut from the
cache instead of waiting for a ranking.

The work is bounded: at most one refill per ``(user, variant)`` is pending or running in
a process, at most ``refill_threads`` run at once, and at most ``refill_queue_max`` wait;
a refill that finds the queue full, or the refiller closed, is dropped (the user's next
page is then ranked on the request path, as without refilling). A refill never raises
into a request: whatever it raises is counted as failed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from ..stores._protocols import FeedKey

RefillOutcome = Literal["stored", "degraded", "superseded", "failed", "dropped"]
"""How one refill ahead ended: ``stored`` (the next snapshot is cached), ``degraded``
(not cached: a store failed or timed out while it was ranked), ``superseded`` (not
cached: a request had cached a newer snapshot meanwhile), ``failed`` (it raised, or
the cache refused it), ``dropped`` (not run: the queue was full or the service
closing)."""

_logger = logging.getLogger(__name__)


class Refiller:
    """A small pool of threads running one job per feed key at a time.

    ``report`` hears how each job submitted ended; ``job()`` returns how it ended
    (``failed`` if it raises). Threads start with the first jobs.
    """

    def __init__(
        self, *, threads: int, queue_max: int, report: Callable[[RefillOutcome], None]
    ) -> None:
        self._threads_max = threads
        self._queue_max = queue_max
        self._report = report
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queued: deque[tuple[FeedKey, Callable[[], RefillOutcome]]] = deque()
        self._pending: set[FeedKey] = set()
        """Keys queued or running."""
        self._threads: list[threading.Thread] = []
        self._closed = False

    def submit(self, key: FeedKey, job: Callable[[], RefillOutcome]) -> bool:
        """Run ``job`` for ``key`` on a refill thread; ``False`` if it is not run because
        one for ``key`` is pending already (not reported), or it was dropped."""
        with self._lock:
            if key in self._pending:
                return False
            dropped = self._closed or len(self._queued) >= self._queue_max
            if not dropped:
                self._queued.append((key, job))
                self._pending.add(key)
                self._changed.notify()
                if len(self._threads) < min(self._threads_max, len(self._pending)):
                    self._start_thread()
        if dropped:
            self._report("dropped")
        return not dropped

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no refill is pending or running; ``False`` if ``timeout`` passed."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._pending, timeout)

    def close(self, timeout: float) -> None:
        """Drop the refills still queued, wait up to ``timeout`` seconds for those
        running, and stop the threads; later submissions are dropped."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            dropped = len(self._queued)
            for key, _ in self._queued:
                self._pending.discard(key)
            self._queued.clear()
            threads = list(self._threads)
            self._changed.notify_all()
        for _ in range(dropped):
            self._report("dropped")
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _start_thread(self) -> None:
        thread = threading.Thread(
            target=self._work, name=f"reelrank-refill-{len(self._threads) + 1}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _next_job(self) -> tuple[FeedKey, Callable[[], RefillOutcome]] | None:
        """The next queued job, waiting for one; ``None`` once the refiller is closed."""
        with self._changed:
            self._changed.wait_for(lambda: self._queued or self._closed)
            return None if self._closed else self._queued.popleft()

    def _work(self) -> None:
        while (entry := self._next_job()) is not None:
            key, job = entry
            outcome: RefillOutcome
            try:
                outcome = job()
            except Exception:
                # A refill only saves a later request a ranking; that request ranks
                # itself if this one failed, so the failure is logged, not raised.
                _logger.warning("refilling the feed of %s failed", key, exc_info=True)
                outcome = "failed"
            with self._changed:
                self._pending.discard(key)
                self._changed.notify_all()
            try:
                self._report(outcome)
            except Exception:
                _logger.warning("reporting a refill failed", exc_info=True)
