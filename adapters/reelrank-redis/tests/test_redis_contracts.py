"""The Redis stores pass reelrank's reusable contract suite against a real server."""

from __future__ import annotations

import pytest
import redis
from reelrank_redis import RedisConfig, RedisEventStore, RedisFeedCache, RedisSeenStore

from reelrank.testing import (
    AtomicSeenStoreContract,
    EventStoreContract,
    FeedCacheContract,
    SeenStoreContract,
)

pytestmark = pytest.mark.integration


class TestRedisFeedCache(FeedCacheContract):
    """Redis expires keys on its own clock, so ``advance`` keeps the contract's real sleep."""

    @pytest.fixture
    def feed_cache(self, redis_client: redis.Redis, redis_config: RedisConfig) -> RedisFeedCache:
        return RedisFeedCache(redis_client, redis_config)


class TestRedisSeenStore(SeenStoreContract):
    @pytest.fixture
    def seen_store(self, redis_client: redis.Redis, redis_config: RedisConfig) -> RedisSeenStore:
        return RedisSeenStore(redis_client, redis_config)


class TestRedisAtomicSeenStore(AtomicSeenStoreContract):
    @pytest.fixture
    def seen_store(self, redis_client: redis.Redis, redis_config: RedisConfig) -> RedisSeenStore:
        return RedisSeenStore(redis_client, redis_config)


class TestRedisEventStore(EventStoreContract):
    @pytest.fixture
    def event_store(self, redis_client: redis.Redis, redis_config: RedisConfig) -> RedisEventStore:
        return RedisEventStore(redis_client, redis_config)
