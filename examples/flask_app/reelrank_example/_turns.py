"""Turns between the worker processes of one gunicorn master, for start-up work done once.

Each worker warms the feed cache at start-up. With a shared cache level (Redis), what
one worker warmed serves the others too; when they warm at the same time, each ranks
and stores every user, so the pod ranks each user once per worker and
``reelrank_warming_users_total`` counts each as many times. Taking turns, the worker
that comes second finds the first one's snapshots in the shared level and skips them.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import time
from collections.abc import Iterator

from ._metrics import MULTIPROCESS_DIR_ENV

__all__ = ["workers_take_turns"]

_logger = logging.getLogger(__name__)

_POLL_SECONDS = 0.1


def _lock_path(name: str) -> str:
    """A file the workers of this process's parent (the gunicorn master) share: in the
    metrics directory when there is one (made per master), else the temporary
    directory, named after the parent."""
    directory = os.environ.get(MULTIPROCESS_DIR_ENV) or tempfile.gettempdir()
    return os.path.join(directory, f"reelrank-{name}-{os.getppid()}.lock")


@contextlib.contextmanager
def workers_take_turns(name: str, *, wait_seconds: float) -> Iterator[bool]:
    """Run the block while no other worker of the same master runs a block of ``name``.

    Waits up to ``wait_seconds`` for the worker whose turn it is (a dead worker's turn
    ends with it: the lock is the operating system's, held by an open file), then runs
    the block anyway; yields whether it got its turn.
    """
    with open(_lock_path(name), "a+b") as lock:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    _logger.warning("another worker still holds the %s turn; going ahead", name)
                    yield False
                    return
                time.sleep(_POLL_SECONDS)
                continue
            try:
                yield True
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
            return
