"""Discovery: trending sounds and hashtags, creator recommendations, search and similar videos."""

from __future__ import annotations

from .._public import _public_module
from ._creators import CreatorRecommendation, CreatorRecommender, CreatorRecommenderConfig
from ._quality import video_quality
from ._search import SearchHit, VideoSearch
from ._similar import (
    EmbeddingIndex,
    SimilarityConfig,
    SimilarVideo,
    SimilarVideos,
    metadata_similarity,
    top_k_cosine,
)
from ._trending import Trending, TrendingConfig, decayed_scores

__all__ = [
    "CreatorRecommendation",
    "CreatorRecommender",
    "CreatorRecommenderConfig",
    "EmbeddingIndex",
    "SearchHit",
    "SimilarVideo",
    "SimilarVideos",
    "SimilarityConfig",
    "Trending",
    "TrendingConfig",
    "VideoSearch",
    "decayed_scores",
    "metadata_similarity",
    "top_k_cosine",
    "video_quality",
]

_public_module(__name__, __all__, globals())
