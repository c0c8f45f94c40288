"""A paused, killed or restarted Redis: calls fail within their deadline and recover.

Each test runs its own server (``fault_server``). Each failing call is timed against a
bound derived from the config's timeouts (see :func:`call_bound_seconds`) plus a
generous scheduling margin: that proves the timeouts are what ends the call (redis-py's
defaults would wait close to a minute on a paused server); it is not a speed goal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from reelrank_redis import (
    RedisConfig,
    RedisEventStore,
    RedisFeedCache,
    RedisSeenStore,
    connect,
)
from reelrank_redis.testing import RedisServer

from reelrank import StoreError, StoreTimeoutError
from reelrank.testing.factories import EPOCH, make_event, make_snapshot

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SOCKET_TIMEOUT = 0.2
CONNECT_TIMEOUT = 0.2
# What a busy machine (two cores shared with other test runs) may add to a call on top
# of its socket waits: scheduling delays, a pool checkout, encoding a batch. Generous,
# yet far below what a retried or unbounded call costs (seconds to a minute).
SCHEDULING_MARGIN_SECONDS = 1.0
# The test's own timeout catches a call that hangs outright, before it can be timed.
HANG_GUARD_SECONDS = 20


def call_bound_seconds(config: RedisConfig) -> float:
    """Longest a failing call may take under ``config``.

    A call waits at most for a new connection and one reply on it, and only a
    connection error is retried (``connection_retries`` times, without backoff);
    timeouts never are.
    """
    one_attempt = config.connect_timeout_seconds + config.socket_timeout_seconds
    return one_attempt * (1 + config.connection_retries) + SCHEDULING_MARGIN_SECONDS


class Stores:
    def __init__(self, client: redis.Redis, config: RedisConfig) -> None:
        self.client = client
        self.config = config
        self.cache = RedisFeedCache(client, config)
        self.seen = RedisSeenStore(client, config)
        self.events = RedisEventStore(client, config)

    def calls(self) -> dict[str, Callable[[], Any]]:
        since = EPOCH - timedelta(days=1)
        return {
            "cache.get": lambda: self.cache.get(1),
            "cache.get_many": lambda: self.cache.get_many([(1, None), (2, None)]),
            "cache.put_many": lambda: self.cache.put_many(
                [make_snapshot(user, [1, 2, 3]) for user in range(1, 300)], ttl_seconds=60
            ),
            "cache.invalidate_user": lambda: self.cache.invalidate_user(1),
            "seen.mark_seen": lambda: self.seen.mark_seen(1, [1, 2], EPOCH),
            "seen.seen_among": lambda: self.seen.seen_among(1, list(range(1, 500)), since=since),
            "events.append": lambda: self.events.append(make_event("like"), creator_id=1),
            "events.get_stats": lambda: self.events.get_stats([1, 2]),
        }


@pytest.fixture
def stores(fault_server: RedisServer) -> Iterator[Stores]:
    config = RedisConfig(
        url=fault_server.url,
        prefix="faults",
        socket_timeout_seconds=SOCKET_TIMEOUT,
        connect_timeout_seconds=CONNECT_TIMEOUT,
    )
    client = connect(config)
    yield Stores(client, config)
    client.close()


def _fails_with(
    call: Callable[[], Any], error: type[StoreError], *, within: float | None = None
) -> None:
    started = time.monotonic()
    with pytest.raises(error) as info:
        call()
    elapsed = time.monotonic() - started
    assert isinstance(info.value.__cause__, redis.exceptions.RedisError | OSError)
    if within is not None:
        assert elapsed <= within, f"took {elapsed:.2f} s, bound {within:.2f} s"


@pytest.mark.timeout(HANG_GUARD_SECONDS)
def test_a_paused_server_fails_every_call_within_the_deadline(
    fault_server: RedisServer, stores: Stores
) -> None:
    stores.cache.put(make_snapshot(1), ttl_seconds=60)
    bound = call_bound_seconds(stores.config)
    fault_server.pause()
    try:
        for call in stores.calls().values():
            _fails_with(call, StoreTimeoutError, within=bound)
    finally:
        fault_server.resume()


def test_calls_recover_after_the_server_resumes(fault_server: RedisServer, stores: Stores) -> None:
    snapshot = make_snapshot(1)
    stores.cache.put(snapshot, ttl_seconds=60)
    fault_server.pause()
    _fails_with(lambda: stores.cache.get(1), StoreTimeoutError)
    fault_server.resume()
    assert stores.cache.get(1) == snapshot
    for call in stores.calls().values():
        call()


@pytest.mark.timeout(HANG_GUARD_SECONDS)
def test_a_killed_server_fails_fast_and_a_restarted_one_is_used_again(
    fault_server: RedisServer, stores: Stores
) -> None:
    stores.cache.put(make_snapshot(1), ttl_seconds=60)
    stores.events.append(make_event("watch", completion=1.0), creator_id=1)
    fault_server.kill()
    for call in stores.calls().values():
        _fails_with(call, StoreError, within=call_bound_seconds(stores.config))
    fault_server.restart()
    # The restarted server is empty (no persistence) and has no cached Lua scripts:
    # the pooled connections reconnect and the scripts are loaded again.
    assert stores.cache.get(1) is None
    snapshot = make_snapshot(1, [7, 8])
    stores.cache.put(snapshot, ttl_seconds=60)
    assert stores.cache.get(1) == snapshot
    assert stores.events.append(make_event("watch", completion=1.0), creator_id=1)
    assert stores.events.get_stats([1])[1].views == 1
    assert stores.cache.stats().hits == 1


def test_a_restart_while_connections_sit_in_the_pool_costs_no_failed_call(
    fault_server: RedisServer, stores: Stores
) -> None:
    stores.seen.mark_seen(1, [1], EPOCH)
    fault_server.kill()
    fault_server.restart()
    # Stale pooled sockets are detected before use (or retried once on a reset).
    assert stores.seen.seen_among(1, [1], since=EPOCH) == set()
