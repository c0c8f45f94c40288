"""What the request a thread is handling spent in store calls and waiting for a core,
for its log line.

The store guards report every call to the metrics' observer on the thread that waited
for it; while that thread handles a request, the call is also added here. Calls made
on other threads (refills, refreshes, a store's own worker pool) are not the
request's.

The time waiting for a core is the kernel's run-queue delay of the handling thread
(the second field of ``/proc/thread-self/schedstat``, in nanoseconds): time it was
runnable but another thread or process had the core. Where the file does not exist
(not Linux, or a kernel without scheduler statistics) it is not reported.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass

_SCHEDSTAT = "/proc/thread-self/schedstat"

_local = threading.local()


@dataclass(frozen=True, slots=True)
class RequestCosts:
    """What one request's handling thread waited for."""

    store_seconds: float
    """The store calls' waits, added up."""
    store_calls: int
    """How many store calls the thread waited for."""
    slowest_call: str | None
    """The longest of those calls, as ``store.operation`` (``None`` without calls)."""
    slowest_seconds: float
    """Its wait."""
    run_queue_seconds: float | None
    """Time the thread was ready to run but waited for a core; ``None`` where the
    kernel does not say."""


class _ThreadSchedstat:
    """The calling thread's schedstat file, open while the thread's locals hold it:
    closed when the thread ends and its locals go."""

    __slots__ = ("fd",)

    def __init__(self) -> None:
        self.fd = os.open(_SCHEDSTAT, os.O_RDONLY)

    def __del__(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def run_queue_ns() -> int | None:
    """This thread's run-queue delay so far, in nanoseconds (``None`` where the kernel
    does not report it).

    Each thread keeps its own descriptor of its own schedstat file (the path names the
    thread that opens it), read again from the start with ``pread``: about a
    microsecond, against eight to open and read it each time.
    """
    handle = getattr(_local, "schedstat", None)
    if handle is None:
        if getattr(_local, "no_schedstat", False):
            return None
        try:
            handle = _ThreadSchedstat()
        except OSError:
            _local.no_schedstat = True
            return None
        _local.schedstat = handle
    try:
        return int(os.pread(handle.fd, 64, 0).split()[1])
    except (OSError, ValueError, IndexError):
        return None


def begin_request() -> None:
    """Start counting the store calls of the request this thread now handles."""
    _local.seconds = 0.0
    _local.calls = 0
    _local.slowest_call = None
    _local.slowest_seconds = 0.0
    _local.run_queue_ns = run_queue_ns()
    _local.active = True


def add_store_call(store: str, operation: str, seconds: float) -> None:
    """Add a call of ``store``'s ``operation`` that this thread waited ``seconds`` for,
    if it handles a request."""
    if getattr(_local, "active", False):
        _local.seconds += seconds
        _local.calls += 1
        if seconds > _local.slowest_seconds or _local.slowest_call is None:
            _local.slowest_seconds = seconds
            _local.slowest_call = f"{store}.{operation}"


def end_request() -> RequestCosts | None:
    """What the thread waited for since :func:`begin_request`, and stop counting;
    ``None`` when this thread was not counting."""
    if not getattr(_local, "active", False):
        return None
    _local.active = False
    started, ended = _local.run_queue_ns, run_queue_ns()
    run_queue = None if started is None or ended is None else (ended - started) / 1e9
    return RequestCosts(
        store_seconds=_local.seconds,
        store_calls=_local.calls,
        slowest_call=_local.slowest_call,
        slowest_seconds=_local.slowest_seconds,
        run_queue_seconds=run_queue,
    )
