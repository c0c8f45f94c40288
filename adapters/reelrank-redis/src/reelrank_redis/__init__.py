"""reelrank-redis: Redis-backed feed cache, seen store, event store and trending snapshots
for reelrank."""

from importlib.metadata import PackageNotFoundError, version

from ._config import RedisClient, RedisConfig, client_bounds_calls, connect
from ._errors import ReplicationError
from ._event_store import RedisEventStore
from ._feed_cache import FeedCacheStats, RedisFeedCache
from ._seen_store import RedisSeenStore
from ._trending import RedisTrendingSnapshotStore

try:
    __version__ = version("reelrank-redis")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "FeedCacheStats",
    "RedisClient",
    "RedisConfig",
    "RedisEventStore",
    "RedisFeedCache",
    "RedisSeenStore",
    "RedisTrendingSnapshotStore",
    "ReplicationError",
    "__version__",
    "client_bounds_calls",
    "connect",
]
