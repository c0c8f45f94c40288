"""A pool of daemon worker threads, for calls that may never return.

Below every layer that runs store calls in the background (the feed service's guards,
trending's refresh ahead), so each can bound its wait for a hung call and never keep
the interpreter from exiting.
"""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from .exceptions import ConfigError

__all__ = ["WorkerPool"]

T = TypeVar("T")

_Task = tuple[Future[Any], Callable[[], Any]]


class WorkerPool:
    """A pool of daemon worker threads that grows on demand up to ``max_workers``.

    Unlike :class:`concurrent.futures.ThreadPoolExecutor`, its threads are daemons: a
    store call that never returns does not block interpreter exit. The pool starts a new
    worker whenever every existing one is busy; at ``max_workers`` further calls wait in
    a queue, within their caller's deadline. Sized above the stalled calls the bulkheads
    allow, stalled calls never take the workers that healthy calls need.
    """

    def __init__(self, max_workers: int, *, name: str = "reelrank-store") -> None:
        if max_workers < 1:
            raise ConfigError("max_workers", max_workers, "must be at least 1")
        self._max_workers = max_workers
        self._name = name
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers = 0
        self._unfinished = 0
        self._closed = False
        self._threads: list[threading.Thread] = []

    @property
    def worker_count(self) -> int:
        """Threads started so far."""
        with self._lock:
            return self._workers

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Run ``fn`` on a worker thread and return its future.

        ``fn`` runs in a copy of the caller's :mod:`contextvars` context, as with
        :func:`asyncio.to_thread`: what a request bound there (its trace span, its log
        fields) follows its store calls onto the worker.
        """
        future: Future[T] = Future()
        context = contextvars.copy_context()
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker pool is shut down")
            self._unfinished += 1
            if self._unfinished > self._workers and self._workers < self._max_workers:
                self._workers += 1
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{self._workers}", daemon=True
                )
                thread.start()
                self._threads.append(thread)
        self._tasks.put((future, lambda: context.run(fn)))
        return future

    def shutdown(self, timeout: float | None = 0.0) -> None:
        """Let every worker exit once the calls queued before have run; later
        submissions are refused.

        Waits up to ``timeout`` seconds (``None``: as long as they take) for the workers
        to exit; a call still running then is left to finish on its daemon thread.
        Shutting down again only waits.
        """
        with self._lock:
            first = not self._closed
            self._closed = True
            threads = list(self._threads)
        if first:
            for _ in threads:
                self._tasks.put(None)
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            if thread is threading.current_thread():
                continue  # a worker shutting down its own pool exits once it returns
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            future, fn = task
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        result = fn()
                    except BaseException as exc:
                        future.set_exception(exc)
                    else:
                        future.set_result(result)
            finally:
                with self._lock:
                    self._unfinished -= 1
