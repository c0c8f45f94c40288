"""The Redis stores pass reelrank's reusable contract suite against a real server and a
real three-master Redis Cluster (every test runs on both)."""

from __future__ import annotations

import pytest
from reelrank_redis import (
    RedisClient,
    RedisConfig,
    RedisEventStore,
    RedisFeedCache,
    RedisSeenStore,
    RedisTrendingSnapshotStore,
)

from reelrank.testing import (
    AtomicSeenStoreContract,
    CoordinatedTrendingSnapshotStoreContract,
    EventStoreContract,
    FeedCacheContract,
    PageTakingSeenStoreContract,
    SeenStoreContract,
    TrendingSnapshotStoreContract,
)

pytestmark = pytest.mark.integration


class TestRedisFeedCache(FeedCacheContract):
    """Redis expires keys on its own clock, so ``advance`` keeps the contract's real sleep."""

    @pytest.fixture
    def feed_cache(self, any_client: RedisClient, any_config: RedisConfig) -> RedisFeedCache:
        return RedisFeedCache(any_client, any_config)


class TestRedisSeenStore(SeenStoreContract):
    @pytest.fixture
    def seen_store(self, any_client: RedisClient, any_config: RedisConfig) -> RedisSeenStore:
        return RedisSeenStore(any_client, any_config)


class TestRedisAtomicSeenStore(AtomicSeenStoreContract):
    @pytest.fixture
    def seen_store(self, any_client: RedisClient, any_config: RedisConfig) -> RedisSeenStore:
        return RedisSeenStore(any_client, any_config)


class TestRedisPageTakingSeenStore(PageTakingSeenStoreContract):
    @pytest.fixture
    def seen_store(self, any_client: RedisClient, any_config: RedisConfig) -> RedisSeenStore:
        return RedisSeenStore(any_client, any_config)

    @pytest.fixture
    def feed_cache(self, any_client: RedisClient, any_config: RedisConfig) -> RedisFeedCache:
        return RedisFeedCache(any_client, any_config)


class TestRedisEventStore(EventStoreContract):
    @pytest.fixture
    def event_store(self, any_client: RedisClient, any_config: RedisConfig) -> RedisEventStore:
        return RedisEventStore(any_client, any_config)


class TestRedisTrendingSnapshotStore(
    TrendingSnapshotStoreContract, CoordinatedTrendingSnapshotStoreContract
):
    """Redis expires leases on its own clock, so ``advance`` keeps the contract's real
    sleep."""

    @pytest.fixture
    def trending_snapshot_store(
        self, any_client: RedisClient, any_config: RedisConfig
    ) -> RedisTrendingSnapshotStore:
        return RedisTrendingSnapshotStore(any_client, any_config)
