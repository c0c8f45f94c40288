"""How redis-py and socket failures become reelrank's store errors."""

from __future__ import annotations

import redis

from reelrank.stores.adapter import StoreErrorTranslator

__all__ = ["store_errors"]


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, redis.exceptions.TimeoutError | TimeoutError)


store_errors = StoreErrorTranslator((redis.exceptions.RedisError, OSError), is_timeout=_is_timeout)
"""``store_errors(store, operation)``: a reply or connect timeout becomes
:class:`~reelrank.StoreTimeoutError`, any other Redis or socket failure
:class:`~reelrank.StoreError`."""
