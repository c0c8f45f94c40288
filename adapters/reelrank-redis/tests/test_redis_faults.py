"""A paused, killed or restarted Redis: calls fail within their deadline and recover.

Each test runs its own server (``fault_server``). Elapsed times are checked against a
generous bound only to prove nothing hangs (redis-py's defaults would wait close to a
minute on a paused server); they are not speed goals.
"""

from __future__ import annotations

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
    create_client,
)
from reelrank_redis.testing import RedisServer

from reelrank import StoreError, StoreTimeoutError
from reelrank.testing.factories import EPOCH, make_event, make_snapshot

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SOCKET_TIMEOUT = 0.2
# A hung call is caught by the test's timeout, not by timing it: with redis-py's
# defaults (5 s timeouts, 10 retries with backoff) one call on a paused server took
# about a minute, so a test making several calls finishes inside this guard only if
# each fails after about one short socket timeout. The slack keeps a loaded machine
# from failing it.
HANG_GUARD_SECONDS = 20


class Stores:
    def __init__(self, client: redis.Redis, config: RedisConfig) -> None:
        self.client = client
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
    config = RedisConfig(url=fault_server.url, prefix="faults", socket_timeout=SOCKET_TIMEOUT)
    client = create_client(config)
    yield Stores(client, config)
    client.close()


def _fails_with(call: Callable[[], Any], error: type[StoreError]) -> None:
    with pytest.raises(error) as info:
        call()
    assert isinstance(info.value.__cause__, redis.exceptions.RedisError | OSError)


@pytest.mark.timeout(HANG_GUARD_SECONDS)
def test_a_paused_server_fails_every_call_within_the_deadline(
    fault_server: RedisServer, stores: Stores
) -> None:
    stores.cache.put(make_snapshot(1), ttl_seconds=60)
    fault_server.pause()
    try:
        for call in stores.calls().values():
            _fails_with(call, StoreTimeoutError)
    finally:
        fault_server.resume()


def test_calls_recover_after_the_server_resumes(
    fault_server: RedisServer, stores: Stores
) -> None:
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
        _fails_with(call, StoreError)
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
