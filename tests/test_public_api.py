"""Pins the names reelrank exports, so an accidental addition or removal is noticed."""

from __future__ import annotations

import reelrank

EXPECTED = {
    "AFFINITY_CREDITS",
    "AFFINITY_PRIOR_CREDIT",
    "MAX_ID",
    "Creator",
    "DegradedDependency",
    "DomainModel",
    "EngagementEvent",
    "EngagementKind",
    "FeedItem",
    "FeedPage",
    "FeedSnapshot",
    "ModelInfo",
    "ModelStatus",
    "ProcessingState",
    "Rendition",
    "Video",
    "VideoStats",
    "affinity",
    "affinity_credit",
    "Catalog",
    "EventStore",
    "FeedCache",
    "FeedKey",
    "ModelRegistry",
    "SeenStore",
    "EngagementRecorder",
    "RecorderConfig",
    "watch_completion",
    "InMemoryCatalog",
    "InMemoryEventStore",
    "InMemoryFeedCache",
    "InMemoryModelRegistry",
    "InMemorySeenStore",
    "Candidates",
    "Ranker",
    "Ranking",
    "warmup",
    "score_frame",
    "EmbeddingIndex",
    "SimilarityConfig",
    "SimilarVideo",
    "SimilarVideos",
    "metadata_similarity",
    "top_k_cosine",
    "InMemorySearchIndex",
    "ParsedQuery",
    "QueryTerm",
    "SearchConfig",
    "SearchDocument",
    "SearchHit",
    "SearchIndex",
    "VideoSearch",
    "parse_query",
    "tokenize",
    "video_quality",
    "EngagementLog",
    "InMemoryEngagementLog",
    "InMemoryTrendingSnapshotStore",
    "Trend",
    "Trending",
    "TrendingConfig",
    "TrendingItem",
    "TrendingKind",
    "TrendingSnapshot",
    "TrendingSnapshotStore",
    "decayed_scores",
    "CreatorRecommendation",
    "CreatorRecommender",
    "CreatorRecommenderConfig",
    "WEIGHT_FIELDS",
    "ConfigError",
    "CursorError",
    "FeedUnavailableError",
    "InvalidInputError",
    "InvalidTransitionError",
    "NotFoundError",
    "NotReadyError",
    "QueryError",
    "RankingConfig",
    "ReelrankError",
    "StoreError",
    "StoreTimeoutError",
    "StoreUnavailableError",
    "Experiment",
    "Variant",
    "assignment_point",
    "ManifestConfig",
    "build_dash_mpd",
    "build_hls_master_playlist",
    "iso8601_duration",
    "__version__",
}


def test_exported_names_are_pinned() -> None:
    assert set(reelrank.__all__) == EXPECTED


def test_every_exported_name_exists() -> None:
    for name in reelrank.__all__:
        assert hasattr(reelrank, name), name


def test_every_exception_derives_from_the_root() -> None:
    for name in reelrank.__all__:
        obj = getattr(reelrank, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, reelrank.ReelrankError), name
