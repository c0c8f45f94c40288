"""What the request a thread is handling spent in store calls, for its log line.

The store guards report every call to the metrics' observer on the thread that waited
for it; while that thread handles a request, the call is also added here. Calls made
on other threads (refills, refreshes, a store's own worker pool) are not the
request's.
"""

from __future__ import annotations

import threading

_local = threading.local()


def begin_request() -> None:
    """Start counting the store calls of the request this thread now handles."""
    _local.seconds = 0.0
    _local.calls = 0
    _local.active = True


def add_store_call(seconds: float) -> None:
    """Add a store call that this thread waited ``seconds`` for, if it handles a request."""
    if getattr(_local, "active", False):
        _local.seconds += seconds
        _local.calls += 1


def end_request() -> tuple[float, int] | None:
    """The seconds and number of store calls since :func:`begin_request`, and stop
    counting; ``None`` when this thread was not counting."""
    if not getattr(_local, "active", False):
        return None
    _local.active = False
    return _local.seconds, _local.calls
