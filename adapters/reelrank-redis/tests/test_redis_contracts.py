"""The Redis stores pass reelrank's reusable contract suite against a real server."""

from __future__ import annotations

import pytest
import redis
from reelrank_redis import RedisConfig, RedisFeedCache

from reelrank.testing import FeedCacheContract

pytestmark = pytest.mark.integration


class TestRedisFeedCache(FeedCacheContract):
    @pytest.fixture
    def feed_cache(self, redis_client: redis.Redis, redis_config: RedisConfig) -> RedisFeedCache:
        return RedisFeedCache(redis_client, redis_config)
