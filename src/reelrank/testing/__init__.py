"""Test support for reelrank and for the authors of store adapters.

* The contract suite (:mod:`reelrank.testing.contracts`): pytest classes that check a
  store against its protocol; subclass them in your adapter's tests.
* Fault injection (:class:`FaultInjector`) and a :class:`ManualClock`, for testing how
  code behaves when a store fails, stalls or time passes.
* Builders of valid domain objects (``make_video`` and friends).
* Pieces of throwaway test servers (:mod:`reelrank.testing.servers`): a free loopback
  port, readiness polling and :class:`ServerProcess`, which pauses, resumes and stops a
  server process; the adapters' ``testing`` modules build on them.

This package needs pytest (the ``test`` extra); ``import reelrank`` never imports it.
"""

from __future__ import annotations

from .contracts import (
    AtomicSeenStoreContract,
    CatalogContract,
    CoordinatedTrendingSnapshotStoreContract,
    EngagementLogContract,
    EventStoreContract,
    FeedCacheContract,
    FollowedCandidatesCatalogContract,
    FollowedColumnsCatalogContract,
    LabelColumnsCatalogContract,
    ModelRegistryContract,
    PageTakingSeenStoreContract,
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
from .servers import (
    ServerProcess,
    free_port,
    spawn_logged,
    terminate_process,
    wait_until_ready,
)

__all__ = [
    "EPOCH",
    "AtomicSeenStoreContract",
    "CatalogContract",
    "CoordinatedTrendingSnapshotStoreContract",
    "EngagementLogContract",
    "EventStoreContract",
    "FaultInjector",
    "FeedCacheContract",
    "FollowedCandidatesCatalogContract",
    "FollowedColumnsCatalogContract",
    "LabelColumnsCatalogContract",
    "ManualClock",
    "ModelRegistryContract",
    "PageTakingSeenStoreContract",
    "ProgressStoreContract",
    "SearchIndexContract",
    "SeenStoreContract",
    "ServerProcess",
    "TrendingSnapshotStoreContract",
    "free_port",
    "make_creator",
    "make_event",
    "make_model",
    "make_snapshot",
    "make_video",
    "next_event_id",
    "spawn_logged",
    "terminate_process",
    "wait_until_ready",
]
