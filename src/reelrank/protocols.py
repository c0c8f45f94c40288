"""The store protocols, under the module path reelrank has always offered them at.

They live in :mod:`reelrank.stores`; this module re-exports them unchanged.
"""

from .stores import (
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
    LabelColumnsCatalog,
    ModelRegistry,
    ProgressStore,
    SearchIndex,
    SeenStore,
    TrendingSnapshotStore,
)

__all__ = [
    "AtomicSeenStore",
    "BulkReadCatalog",
    "BoundedAgeEventStore",
    "BulkReadEventStore",
    "BulkReadSeenStore",
    "CoordinatedTrendingSnapshotStore",
    "Catalog",
    "EngagementLog",
    "EventStore",
    "FeedCache",
    "FeedKey",
    "FollowedCandidatesCatalog",
    "FollowedColumnsCatalog",
    "LabelColumnsCatalog",
    "ModelRegistry",
    "ProgressStore",
    "SearchIndex",
    "SeenStore",
    "TrendingSnapshotStore",
]
