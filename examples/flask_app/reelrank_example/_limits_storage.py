"""The rate limit's Redis storage: the hit's answer carries the window for the headers.

Flask-Limiter writes an event request's ``X-RateLimit-*`` and ``Retry-After`` headers
from the limit's window (its count and when it resets), which the fixed-window strategy
reads back after the hit: ``limits``' Redis storage sends a ``GET`` of the count and a
``TTL`` of its key, two more round trips on the request thread after the hit's script.
This storage's hit runs one script that counts the hit and answers the count and the
key's ``TTL`` together, and answers the window read that follows on the same thread
from that answer. The headers are the same: the count is the one the hit left (which
the ``GET`` read back), the reset the same ``TTL`` measured at the hit. Only with
concurrent requests of one user do they differ: the remaining count is what this
request's hit left, where the ``GET`` also counted the hits that came in between.

It is ``limits``' own Redis storage otherwise (the same keys, the same
``INCRBY``/``EXPIRE`` of a fixed window, so workers on either storage share their
counts), registered under schemes of its own (``limits`` finds a storage by its URI's
scheme): :func:`window_answering_storage` turns the state Redis's URI into one.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from limits.storage import RedisStorage

_PREFIX = "reelrank-window+"

# limits' incr_expire.lua, and the key's TTL in the same answer (whole seconds, as the
# TTL command limits' get_expiry sends).
_INCR_EXPIRE_TTL = b"""
local amount = tonumber(ARGV[2])
local current = redis.call("incrby", KEYS[1], amount)
if tonumber(current) == amount then
    redis.call("expire", KEYS[1], ARGV[1])
end
return {current, redis.call("ttl", KEYS[1])}
"""


class _WindowAnsweringRedisStorage(RedisStorage):
    """``limits``' Redis storage whose hit remembers the window it answered, on the
    hitting thread, for the headers' read of it that follows."""

    # A list, as limits declares it on its storages.
    STORAGE_SCHEME = [  # noqa: RUF012
        _PREFIX + scheme for scheme in ("redis", "rediss", "redis+unix")
    ]

    def __init__(self, uri: str, **options: Any) -> None:
        super().__init__(uri.removeprefix(_PREFIX), **options)
        self._last_hit = threading.local()

    def initialize_storage(self, uri: str) -> None:
        super().initialize_storage(uri)
        self._incr_expire_ttl = self.get_connection().register_script(_INCR_EXPIRE_TTL)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Count ``amount`` hits of ``key``'s window (started with an expiry of
        ``expiry`` seconds by its first hit); the count, remembered with the window's
        reset for this thread's next read of the key's window."""
        # Forgotten first: a failed hit leaves nothing an earlier request's read could
        # take for its own.
        self._last_hit.window = None
        count, ttl = self._incr_expire_ttl([self.prefixed_key(key)], [expiry, amount])
        # The reset as limits' get_expiry computes it, from the TTL at the hit.
        self._last_hit.window = (key, int(count), max(int(ttl), 0) + time.time())
        return int(count)

    def _remembered(self, key: str) -> tuple[str, int, float] | None:
        window: tuple[str, int, float] | None = getattr(self._last_hit, "window", None)
        return window if window is not None and window[0] == key else None

    def get(self, key: str) -> int:
        """The count of ``key``'s window: the last hit's on this thread, else read."""
        window = self._remembered(key)
        return window[1] if window is not None else super().get(key)

    def get_expiry(self, key: str) -> float:
        """When ``key``'s window resets: the last hit's answer on this thread, used
        once (the headers' read is the last one of a request), else read."""
        window = self._remembered(key)
        if window is None:
            return super().get_expiry(key)
        self._last_hit.window = None
        return window[2]


def window_answering_storage(uri: str) -> str:
    """The URI of :class:`_WindowAnsweringRedisStorage` over the Redis at ``uri``
    (``redis://``, ``rediss://`` or ``redis+unix://``); any other URI unchanged."""
    scheme = uri.partition("://")[0]
    if _PREFIX + scheme in _WindowAnsweringRedisStorage.STORAGE_SCHEME:
        return _PREFIX + uri
    return uri
