"""What every Redis-backed store shares: the client, its settings and key layout."""

from __future__ import annotations

from ._config import RedisClient, RedisConfig, client_bounds_calls
from ._keys import KeyLayout

__all__ = ["RedisStore"]


class RedisStore:
    """Base of the Redis stores: keeps ``client``, ``config`` (the defaults when omitted)
    and the key layout of ``config.prefix``, and tells the feed service whether the
    client's own timeouts bound each call."""

    users_per_pipeline = 500
    """The users one pipeline of a read of many users (``get_affinities_many``,
    ``recently_seen_many``) reads; a larger batch takes one pipeline per slice of this
    many. A cluster client sends a pipeline's commands to each master in one batch."""

    def __init__(self, client: RedisClient, config: RedisConfig | None = None) -> None:
        self._client = client
        self._config = config or RedisConfig()
        self._keys = KeyLayout(self._config.prefix)
        self._bounds_own_calls = client_bounds_calls(client, self._config)

    def shares_keys_with(self, other: RedisStore) -> bool:
        """Whether ``other`` uses the same client and key prefix: a script may then
        touch both stores' keys of one user."""
        return other._client is self._client and other._keys == self._keys

    @property
    def config(self) -> RedisConfig:
        """The settings this store was built with."""
        return self._config

    @property
    def bounds_own_calls(self) -> bool:
        """Whether each call ends within the client's short timeouts (see
        :func:`~reelrank_redis.client_bounds_calls`); the feed service then calls this
        store on the request's thread, and a paused server fails a call after one
        ``socket_timeout_seconds``."""
        return self._bounds_own_calls
