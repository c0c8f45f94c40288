"""Turning redis-py and socket errors into reelrank's store errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis

from reelrank.exceptions import StoreError, StoreTimeoutError

__all__ = ["store_errors"]


@contextmanager
def store_errors(store: str, operation: str) -> Iterator[None]:
    """Re-raise any Redis or socket failure inside the block as a reelrank store error.

    Timeouts become :class:`~reelrank.StoreTimeoutError`, everything else
    :class:`~reelrank.StoreError`; both name ``store`` and keep the driver's
    exception as ``__cause__``.
    """
    try:
        yield
    except (redis.exceptions.TimeoutError, TimeoutError) as exc:
        raise StoreTimeoutError(store, f"{operation} timed out: {exc}") from exc
    except (redis.exceptions.RedisError, OSError) as exc:
        raise StoreError(store, f"{operation} failed: {type(exc).__name__}: {exc}") from exc
