"""Value types: everything that crosses a store or service boundary.

Every model is an immutable pydantic model that rejects unknown fields and raises
:class:`~reelrank.InvalidInputError` (domain models) or :class:`~reelrank.ConfigError`
(config models) naming the bad field.
"""

from __future__ import annotations

from .._public import _public_module
from ._base import WEIGHT_FIELDS, DomainModel, StrictModel
from ._catalog import Creator, ProcessingState, Rendition, Video, VideoLabels
from ._engagement import (
    AFFINITY_CREDITS,
    AFFINITY_PRIOR_CREDIT,
    EngagementEvent,
    EngagementKind,
    VideoStats,
    affinity,
    affinity_credit,
)
from ._event_columns import EngagementEventColumns
from ._feed import (
    DegradedDependency,
    FeedItem,
    FeedPage,
    FeedSnapshot,
    PageOutcome,
    PageRequest,
)
from ._followed_columns import NO_SOUND_ID, FollowedColumns, FollowedVideoColumns
from ._label_columns import VideoLabelColumns
from ._processing import ProcessingProgress, RenditionProgress, RenditionStatus
from ._registry import ModelInfo, ModelStatus
from ._search import ParsedQuery, QueryTerm, SearchDocument
from ._stats_columns import VideoStatsColumns
from ._trending import Trend, TrendingItem, TrendingKind, TrendingSnapshot
from ._window import ENGAGEMENT_KINDS, EngagementWindow, epoch_microseconds

__all__ = [
    "AFFINITY_CREDITS",
    "AFFINITY_PRIOR_CREDIT",
    "Creator",
    "DegradedDependency",
    "DomainModel",
    "ENGAGEMENT_KINDS",
    "EngagementEvent",
    "EngagementEventColumns",
    "EngagementKind",
    "EngagementWindow",
    "FeedItem",
    "FeedPage",
    "FeedSnapshot",
    "FollowedColumns",
    "FollowedVideoColumns",
    "PageOutcome",
    "PageRequest",
    "ModelInfo",
    "ModelStatus",
    "NO_SOUND_ID",
    "ParsedQuery",
    "ProcessingProgress",
    "ProcessingState",
    "QueryTerm",
    "Rendition",
    "RenditionProgress",
    "RenditionStatus",
    "SearchDocument",
    "StrictModel",
    "Trend",
    "TrendingItem",
    "TrendingKind",
    "TrendingSnapshot",
    "Video",
    "VideoLabels",
    "VideoLabelColumns",
    "VideoStats",
    "VideoStatsColumns",
    "WEIGHT_FIELDS",
    "affinity",
    "affinity_credit",
    "epoch_microseconds",
]

_public_module(__name__, __all__, globals())
