"""reelrank-redis: Redis-backed feed cache, seen store and event store for reelrank."""

from ._config import RedisConfig, create_client
from ._feed_cache import FeedCacheStats, RedisFeedCache

__version__ = "0.1.0"

__all__ = [
    "FeedCacheStats",
    "RedisConfig",
    "RedisFeedCache",
    "__version__",
    "create_client",
]
