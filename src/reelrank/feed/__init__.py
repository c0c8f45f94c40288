"""Serving feeds: the feed service, engagement recording, the guards around store calls,
and the observer an application hears them through.
"""

from __future__ import annotations

from .._public import _public_module
from ._config import FeedServiceConfig, FeedServiceStats, StoreDeadlines, VariantResolver
from ._events import EngagementRecorder, RecorderConfig, watch_completion
from ._guarded_store import GuardedStore
from ._observer import (
    CacheLookupResult,
    CacheMissReason,
    FeedObserver,
    RefillOutcome,
    StoreCallOutcome,
)
from ._resilience import (
    BreakerAdmission,
    BreakerState,
    CircuitBreaker,
    DependencyGuard,
    DependencyStats,
    PendingCall,
    WorkerPool,
)
from ._service import FeedRankingService

__all__ = [
    "BreakerAdmission",
    "BreakerState",
    "CacheLookupResult",
    "CacheMissReason",
    "CircuitBreaker",
    "DependencyGuard",
    "DependencyStats",
    "EngagementRecorder",
    "FeedObserver",
    "FeedRankingService",
    "FeedServiceConfig",
    "FeedServiceStats",
    "GuardedStore",
    "PendingCall",
    "RecorderConfig",
    "RefillOutcome",
    "StoreCallOutcome",
    "StoreDeadlines",
    "VariantResolver",
    "WorkerPool",
    "watch_completion",
]

_public_module(__name__, __all__, globals())
