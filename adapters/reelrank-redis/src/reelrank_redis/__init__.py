"""reelrank-redis: Redis-backed feed cache, seen store and event store for reelrank."""

from ._config import RedisConfig, client_bounds_calls, create_client
from ._event_store import RedisEventStore
from ._feed_cache import FeedCacheStats, RedisFeedCache
from ._seen_store import RedisSeenStore

__version__ = "0.1.0"

__all__ = [
    "FeedCacheStats",
    "RedisConfig",
    "RedisEventStore",
    "RedisFeedCache",
    "RedisSeenStore",
    "__version__",
    "client_bounds_calls",
    "create_client",
]
