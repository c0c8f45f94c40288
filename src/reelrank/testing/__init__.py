"""Test support for reelrank and for the authors of store adapters.

* The contract suite (:mod:`reelrank.testing.contracts`): pytest classes that check a
  store against its protocol; subclass them in your adapter's tests.
* Fault injection (:class:`FaultInjector`) and a :class:`ManualClock`, for testing how
  code behaves when a store fails, stalls or time passes.
* Builders of valid domain objects (``make_video`` and friends).

This package needs pytest (the ``test`` extra); ``import reelrank`` never imports it.
"""

from __future__ import annotations

from .contracts import (
    CatalogContract,
    EngagementLogContract,
    EventStoreContract,
    FeedCacheContract,
    ModelRegistryContract,
    ProgressStoreContract,
    SearchIndexContract,
    SeenStoreContract,
    TrendingSnapshotStoreContract,
)
from .factories import (
    EPOCH,
    make_creator,
    make_event,
    make_model,
    make_snapshot,
    make_video,
    next_event_id,
)
from .faults import FaultInjector, ManualClock

__all__ = [
    "EPOCH",
    "CatalogContract",
    "EngagementLogContract",
    "EventStoreContract",
    "FaultInjector",
    "FeedCacheContract",
    "ManualClock",
    "ModelRegistryContract",
    "ProgressStoreContract",
    "SearchIndexContract",
    "SeenStoreContract",
    "TrendingSnapshotStoreContract",
    "make_creator",
    "make_event",
    "make_model",
    "make_snapshot",
    "make_video",
    "next_event_id",
]
