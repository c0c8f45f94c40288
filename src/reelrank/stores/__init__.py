"""Store protocols, their in-memory implementations, and the text analysis they share.

Every backend (the embedded in-memory stores, the adapters, your own) implements the
structural protocols here; :mod:`reelrank.stores.adapter` is the public ground an
adapter author builds on, and :mod:`reelrank.testing` holds the contract suite.
"""

from __future__ import annotations

from .._public import _public_module
from ._bulk_reads import bulk_affinities, bulk_followed_videos, bulk_recently_seen, chunked
from ._cache import CacheStats, InMemoryFeedCache, LRUFeedCache, TieredFeedCache
from ._catalog import InMemoryCatalog
from ._events import InMemoryEventStore
from ._group_commit import (
    EventsAppendedEach,
    EventsRecordedEach,
    GroupCommitEngagementLog,
    GroupCommitEventStore,
)
from ._log import InMemoryEngagementLog
from ._pages import take_page_in_steps
from ._progress import InMemoryProgressStore
from ._protocols import (
    AtomicSeenStore,
    BoundedAgeEventStore,
    BulkReadCatalog,
    BulkReadEventStore,
    BulkReadSeenStore,
    Catalog,
    CoordinatedTrendingSnapshotStore,
    EngagementLog,
    EventStore,
    FeedCache,
    FeedKey,
    FollowedCandidatesCatalog,
    FollowedColumnsCatalog,
    InProcessStore,
    LabelColumnsCatalog,
    ModelRegistry,
    PageTakingSeenStore,
    ProgressStore,
    SearchIndex,
    SeenStore,
    SelfBoundingStore,
    TrendingSnapshotStore,
    bounds_own_calls,
    is_in_process,
)
from ._proxy import StoreProxy
from ._registry import InMemoryModelRegistry
from ._search import InMemorySearchIndex
from ._seen import InMemorySeenStore
from ._text import SearchConfig, parse_query, tokenize
from ._trending import InMemoryTrendingSnapshotStore

__all__ = [
    "InProcessStore",
    "SelfBoundingStore",
    "bounds_own_calls",
    "is_in_process",
    "AtomicSeenStore",
    "BulkReadCatalog",
    "BoundedAgeEventStore",
    "BulkReadEventStore",
    "BulkReadSeenStore",
    "CoordinatedTrendingSnapshotStore",
    "CacheStats",
    "Catalog",
    "EngagementLog",
    "EventStore",
    "EventsAppendedEach",
    "EventsRecordedEach",
    "FeedCache",
    "FeedKey",
    "FollowedCandidatesCatalog",
    "FollowedColumnsCatalog",
    "LabelColumnsCatalog",
    "GroupCommitEngagementLog",
    "GroupCommitEventStore",
    "InMemoryCatalog",
    "InMemoryEngagementLog",
    "InMemoryEventStore",
    "InMemoryFeedCache",
    "InMemoryModelRegistry",
    "InMemoryProgressStore",
    "InMemorySearchIndex",
    "InMemorySeenStore",
    "InMemoryTrendingSnapshotStore",
    "LRUFeedCache",
    "ModelRegistry",
    "PageTakingSeenStore",
    "ProgressStore",
    "SearchConfig",
    "SearchIndex",
    "SeenStore",
    "StoreProxy",
    "TieredFeedCache",
    "TrendingSnapshotStore",
    "bulk_affinities",
    "bulk_followed_videos",
    "bulk_recently_seen",
    "chunked",
    "parse_query",
    "take_page_in_steps",
    "tokenize",
]

_public_module(__name__, __all__, globals())
