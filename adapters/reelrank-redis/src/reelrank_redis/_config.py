"""Connection, key and retention settings of the Redis stores."""

from __future__ import annotations

from typing import Any, TypeAlias

import redis
from pydantic import Field, SecretStr, model_validator
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from reelrank import ConfigError
from reelrank.stores.adapter import AdapterSettings

__all__ = ["RedisClient", "RedisConfig", "client_bounds_calls", "connect"]

RedisClient: TypeAlias = redis.Redis | RedisCluster
"""What the stores accept: a single-server client or a Redis Cluster client."""

_DAY_SECONDS = 86_400


class RedisConfig(AdapterSettings):
    """How the Redis stores connect, name their keys and retain data.

    The timeouts are deliberately short: the stores sit on the request path, and a
    paused or unreachable Redis must fail a call quickly (so the feed service can
    degrade) rather than block it. redis-py's own defaults (5 s timeouts, 10 retries
    with backoff) kept a call waiting close to a minute on a paused server.
    """

    url: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:6379/0"), min_length=1, max_length=2048
    )
    """Server URL (``redis://``, ``rediss://`` or ``unix://``), used by :func:`connect`;
    with ``cluster``, the URL of any node of the cluster.

    A secret, because it may carry the password (``redis://:password@host:6379/0``):
    it is masked in reprs and errors.
    """
    prefix: str = Field(default="reelrank", pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    """Namespace of every key (``{prefix}:feed:v1:...``), so several apps can share a Redis."""
    socket_timeout_seconds: float = Field(default=0.2, gt=0.0, le=60.0, allow_inf_nan=False)
    """Seconds to wait for a reply before a call fails with ``StoreTimeoutError``."""
    connect_timeout_seconds: float = Field(default=0.2, gt=0.0, le=60.0, allow_inf_nan=False)
    """Seconds to wait for a new connection to open."""
    connection_retries: int = Field(default=1, ge=0, le=5)
    """Immediate retries after a *connection* error (a reset socket after a server restart).

    Timeouts are never retried, so a hung server costs one ``socket_timeout_seconds``, not several.
    """
    max_connections: int = Field(default=64, ge=1, le=10_000)
    """Size of the connection pool :func:`connect` builds (per node on a cluster)."""
    cluster: bool = False
    """Whether ``url`` names one node of a Redis Cluster: :func:`connect` then builds a
    :class:`redis.cluster.RedisCluster`, which discovers the other nodes and follows
    ``MOVED`` and ``ASK`` redirects."""
    seen_window_seconds: int = Field(default=30 * _DAY_SECONDS, ge=1, le=3650 * _DAY_SECONDS)
    """How long a seen video stays seen; older entries are trimmed on write."""
    seen_max_items: int = Field(default=5_000, ge=1, le=10_000_000)
    """Most seen videos kept per user; the oldest are dropped beyond it."""
    idempotency_ttl_seconds: int = Field(default=7 * _DAY_SECONDS, ge=1, le=365 * _DAY_SECONDS)
    """How long an accepted event id is remembered; longer than any client retry horizon."""
    counters_ttl_seconds: int | None = Field(default=None, ge=1, le=365 * _DAY_SECONDS)
    """Lifetime of a video's and a user's real-time counters after their last event, or
    ``None`` to keep them. Set it when Redis only bridges the gap until an analytics
    store has caught up."""
    min_replicas_acked: int = Field(default=0, ge=0, le=16)
    """Replicas that must hold an event before :meth:`RedisEventStore.append
    <reelrank_redis.RedisEventStore.append>` returns; ``0`` does not wait.

    Redis replicates asynchronously: without waiting, an event its master acknowledged
    but had not yet sent to a replica is lost if that master fails and the replica takes
    over. With ``n > 0``, ``append`` sends ``WAIT n`` on the same connection as the
    event's writes (on each node that took a half of it) and raises
    :class:`~reelrank_redis.ReplicationError` when fewer than ``n`` replicas acknowledged
    them within ``replication_timeout_seconds``; the client retries, and the event id
    makes the retry count it once. Every master must have at least ``n`` replicas, or
    every append fails.
    """
    replication_timeout_seconds: float = Field(default=0.05, gt=0.0, le=60.0, allow_inf_nan=False)
    """How long ``WAIT`` lets the replicas take to acknowledge an event (rounded to whole
    milliseconds, at least one) when ``min_replicas_acked`` is set. It must be shorter
    than ``socket_timeout_seconds``, which bounds the reply that carries it."""

    @model_validator(mode="after")
    def _check_replication_timeout(self) -> RedisConfig:
        if self.min_replicas_acked and (
            self.replication_timeout_seconds >= self.socket_timeout_seconds
        ):
            raise ConfigError(
                "replication_timeout_seconds",
                self.replication_timeout_seconds,
                f"must be shorter than socket_timeout_seconds "
                f"({self.socket_timeout_seconds}) when min_replicas_acked is set, or the "
                "socket times out before WAIT answers",
            )
        return self


class _BoundedRedisCluster(RedisCluster):
    """A cluster client that retries a call after a connection error or a cluster
    reconfiguration, but never after a timeout, like :func:`connect`'s single-server client.

    redis-py's cluster client retries timeouts too (and refreshes its topology in
    between), so one paused node would cost a call several ``socket_timeout_seconds``.
    """

    # redis-py annotates the attribute as the exact tuple of its own four error types.
    ERRORS_ALLOW_RETRY = (  # type: ignore[assignment]
        redis.exceptions.ConnectionError,
        redis.exceptions.ClusterDownError,
        redis.exceptions.SlotNotCoveredError,
    )


def connect(config: RedisConfig) -> RedisClient:
    """Build a client for ``config.url`` with the config's timeouts and retry policy:
    a :class:`redis.Redis`, or a :class:`redis.cluster.RedisCluster` when ``config.cluster``.

    The stores take a ready client, so an application may also pass its own; it should
    then set short timeouts itself.
    """
    retry = Retry(
        NoBackoff(),
        config.connection_retries,
        supported_errors=(redis.exceptions.ConnectionError,),
    )
    if config.cluster:
        return _BoundedRedisCluster.from_url(
            config.url.get_secret_value(),
            socket_timeout=config.socket_timeout_seconds,
            socket_connect_timeout=config.connect_timeout_seconds,
            retry=retry,
            max_connections=config.max_connections,
        )
    return redis.Redis.from_url(
        config.url.get_secret_value(),
        socket_timeout=config.socket_timeout_seconds,
        socket_connect_timeout=config.connect_timeout_seconds,
        retry=retry,
        max_connections=config.max_connections,
    )


def client_bounds_calls(client: RedisClient, config: RedisConfig) -> bool:
    """Whether every call on ``client`` ends within ``config``'s short timeouts.

    True when the client's socket and connect timeouts are set and no longer than the
    config's, and it retries no more often than ``connection_retries`` (as
    :func:`connect` builds it). A cluster client must also not retry after a timeout
    (redis-py's own does; :func:`connect`'s does not); its timeouts are those of the
    per-node connection pools. A store on such a client tells the feed service it
    bounds its own calls, so the service calls it on the request's thread.
    """
    kwargs: dict[str, Any]
    retry: Retry | None
    if isinstance(client, RedisCluster):
        kwargs = client.nodes_manager.connection_kwargs
        retry = client.retry
        if redis.exceptions.TimeoutError in type(client).ERRORS_ALLOW_RETRY:
            return False
    else:
        kwargs = client.connection_pool.connection_kwargs
        retry = client.get_retry()
    socket_timeout = kwargs.get("socket_timeout")
    connect_timeout = kwargs.get("socket_connect_timeout")
    return (
        isinstance(socket_timeout, int | float)
        and 0 < socket_timeout <= config.socket_timeout_seconds
        and isinstance(connect_timeout, int | float)
        and 0 < connect_timeout <= config.connect_timeout_seconds
        and (retry is None or retry.get_retries() <= config.connection_retries)
    )
