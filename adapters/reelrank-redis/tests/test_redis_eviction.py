"""Memory pressure: in the recommended layout, a flood of feed snapshots never costs a
seen set or an idempotency key.

Recommended layout: the feed cache on its own instance with ``allkeys-lru`` (snapshots
and hit counters are rebuildable), seen sets and events on another instance with
``noeviction``. A separate logical database would not do: ``maxmemory`` and the
eviction policy apply to a whole instance. The second test shows what the layout
prevents: one shared ``allkeys-lru`` instance drops seen sets.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import redis
from reelrank_redis import (
    RedisConfig,
    RedisEventStore,
    RedisFeedCache,
    RedisSeenStore,
    connect,
)
from reelrank_redis.testing import RedisServer, find_redis_server

from reelrank import FeedSnapshot
from reelrank.testing.factories import EPOCH, make_event, make_snapshot

pytestmark = pytest.mark.integration

USERS = 200
SEEN_PER_USER = 100
ITEMS = 200
FLOOD_USERS = 3_000  # about 8 MB of packed snapshots
CACHE_MAXMEMORY = ["--maxmemory", "4mb", "--maxmemory-policy", "allkeys-lru"]


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[RedisServer]]:
    if find_redis_server() is None:
        pytest.skip("redis-server is not installed (scripts/test.sh installs it)")
    servers: list[RedisServer] = []
    yield servers
    for server in servers:
        server.stop()


def _start(started: list[RedisServer], directory: Path, args: list[str]) -> RedisConfig:
    server = RedisServer(directory, extra_args=args)
    server.start()
    started.append(server)
    return RedisConfig(url=server.url, prefix="app")


def _flood(cache: RedisFeedCache) -> list[FeedSnapshot]:
    rng = np.random.default_rng(3)
    ids = list(range(1, ITEMS + 1))
    scores = tuple(np.sort(rng.random(ITEMS, dtype=np.float32))[::-1].tolist())
    rows = tuple(map(tuple, rng.random((ITEMS, 5), dtype=np.float32).tolist()))
    written = []
    for first in range(1, FLOOD_USERS + 1, 100):
        batch = [
            make_snapshot(user, ids, scores=scores, contributions=rows)
            for user in range(first, first + 100)
        ]
        cache.put_many(batch, ttl_seconds=900)
        written.extend(batch)
    return written


def _mark_everyone_seen(seen: RedisSeenStore) -> None:
    for user in range(1, USERS + 1):
        seen.mark_seen(user, list(range(1, SEEN_PER_USER + 1)), EPOCH)


def _users_with_seen_sets(client: redis.Redis) -> int:
    return sum(client.exists(f"app:seen:v2:{{u{user}}}") for user in range(1, USERS + 1))


def test_recommended_layout_keeps_seen_sets_under_cache_pressure(
    started: list[RedisServer], tmp_path: Path
) -> None:
    cache_config = _start(started, tmp_path / "cache", CACHE_MAXMEMORY)
    durable_config = _start(started, tmp_path / "durable", ["--maxmemory-policy", "noeviction"])
    cache_client, durable_client = connect(cache_config), connect(durable_config)
    cache = RedisFeedCache(cache_client, cache_config)
    seen = RedisSeenStore(durable_client, durable_config)
    events = RedisEventStore(durable_client, durable_config)
    _mark_everyone_seen(seen)
    accepted = make_event("watch", completion=0.5)
    assert events.append(accepted, creator_id=1)

    written = _flood(cache)

    assert cache_client.info("stats")["evicted_keys"] > 0
    survivors = cache.get_many([snapshot.key for snapshot in written])
    assert 0 < len(survivors) < len(written)
    by_key = {snapshot.key: snapshot for snapshot in written}
    assert all(snapshot == by_key[key] for key, snapshot in survivors.items())
    assert _users_with_seen_sets(durable_client) == USERS
    since = EPOCH - timedelta(days=1)
    assert seen.seen_among(USERS, list(range(1, 150)), since=since) == set(
        range(1, SEEN_PER_USER + 1)
    )
    assert events.append(accepted, creator_id=1) is False
    cache_client.close()
    durable_client.close()


def test_a_shared_allkeys_lru_instance_loses_seen_sets(
    started: list[RedisServer], tmp_path: Path
) -> None:
    config = _start(started, tmp_path / "shared", CACHE_MAXMEMORY)
    client = connect(config)
    _mark_everyone_seen(RedisSeenStore(client, config))
    _flood(RedisFeedCache(client, config))
    assert _users_with_seen_sets(client) < USERS
    client.close()
