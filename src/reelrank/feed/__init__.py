"""Serving feeds: the feed service, engagement recording, and the guards around store calls.
"""

from __future__ import annotations

from .._public import _public_module
from ._config import FeedServiceConfig, FeedServiceStats, StoreDeadlines, VariantResolver
from ._events import EngagementRecorder, RecorderConfig, watch_completion
from ._resilience import BreakerState, CircuitBreaker, DependencyStats
from ._service import FeedRankingService

__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "DependencyStats",
    "EngagementRecorder",
    "FeedRankingService",
    "FeedServiceConfig",
    "FeedServiceStats",
    "RecorderConfig",
    "StoreDeadlines",
    "VariantResolver",
    "watch_completion",
]

_public_module(__name__, __all__, globals())
