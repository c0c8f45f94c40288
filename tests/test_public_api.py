"""Pins the names reelrank exports, so an accidental addition or removal is noticed."""

from __future__ import annotations

import importlib
import inspect
import typing

import pytest

import reelrank
import reelrank.protocols

EXPECTED = {
    "AFFINITY_CREDITS",
    "AFFINITY_PRIOR_CREDIT",
    "MAX_ID",
    "Creator",
    "DegradedDependency",
    "DomainModel",
    "EngagementEvent",
    "EngagementEventColumns",
    "EngagementKind",
    "EngagementWindow",
    "ENGAGEMENT_KINDS",
    "FeedItem",
    "FeedPage",
    "FeedSnapshot",
    "ModelInfo",
    "ModelStatus",
    "ProcessingState",
    "Rendition",
    "Video",
    "VideoLabels",
    "VideoLabelColumns",
    "VideoStats",
    "VideoStatsColumns",
    "FollowedVideoColumns",
    "FollowedColumns",
    "NO_SOUND_ID",
    "affinity",
    "affinity_credit",
    "epoch_microseconds",
    "Catalog",
    "EventStore",
    "FeedCache",
    "FeedKey",
    "ModelRegistry",
    "SeenStore",
    "EngagementRecorder",
    "RecorderConfig",
    "RefillOutcome",
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
    "warmup_dask",
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
    "IdempotencyConflictError",
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
    "InMemoryProgressStore",
    "ProcessingProgress",
    "ProcessingTracker",
    "ProgressStore",
    "RenditionProgress",
    "RenditionStatus",
    "BreakerAdmission",
    "BreakerState",
    "AtomicSeenStore",
    "BulkReadCatalog",
    "BoundedAgeEventStore",
    "BulkReadEventStore",
    "BulkReadSeenStore",
    "FollowedCandidatesCatalog",
    "FollowedColumnsCatalog",
    "LabelColumnsCatalog",
    "PageOutcome",
    "PageRequest",
    "PageTakingSeenStore",
    "CoordinatedTrendingSnapshotStore",
    "CacheLookupResult",
    "CacheMissReason",
    "CacheStats",
    "CircuitBreaker",
    "DependencyGuard",
    "DependencyStats",
    "DiversityRule",
    "FeedObserver",
    "FeedRankingService",
    "FeedServiceConfig",
    "FeedServiceStats",
    "EventsAppendedEach",
    "EventsRecordedEach",
    "GroupCommitEngagementLog",
    "GroupCommitEventStore",
    "GuardedStore",
    "StoreProxy",
    "LRUFeedCache",
    "PendingCall",
    "StoreCallOutcome",
    "StoreDeadlines",
    "TieredFeedCache",
    "VariantResolver",
    "WorkerPool",
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


# Each public subpackage's exports, pinned like the top-level ones.
SUBPACKAGE_EXPECTED = {
    "reelrank.evaluation": {
        "ACCURACY_METRICS",
        "CandidateState",
        "Evaluation",
        "MovieLens",
        "SyntheticData",
        "TuningResult",
        "VARIANT_METRICS",
        "VariantOutcomes",
        "accuracy",
        "beyond_accuracy",
        "candidate_state",
        "check_catalog",
        "check_events",
        "compare_variants",
        "config_to_toml",
        "evaluate",
        "events_frame",
        "gini",
        "graded_relevance",
        "hold_last_split",
        "load_movielens_100k",
        "paired_bootstrap",
        "popularity_rankings",
        "random_rankings",
        "replay",
        "synthetic_events",
        "time_split",
        "tune_weights",
        "unpaired_bootstrap",
        "variant_outcomes",
        "with_weights",
    },
    "reelrank.models": {
        "AFFINITY_CREDITS",
        "AFFINITY_PRIOR_CREDIT",
        "Creator",
        "DegradedDependency",
        "DomainModel",
        "EngagementEvent",
        "EngagementEventColumns",
        "EngagementKind",
        "EngagementWindow",
        "ENGAGEMENT_KINDS",
        "FeedItem",
        "FeedPage",
        "FeedSnapshot",
        "PageOutcome",
        "PageRequest",
        "ModelInfo",
        "ModelStatus",
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
        "FollowedVideoColumns",
        "FollowedColumns",
        "NO_SOUND_ID",
        "WEIGHT_FIELDS",
        "affinity",
        "affinity_credit",
        "epoch_microseconds",
    },
    "reelrank.stores": {
        "AtomicSeenStore",
        "BulkReadCatalog",
        "BoundedAgeEventStore",
        "BulkReadEventStore",
        "BulkReadSeenStore",
        "bulk_affinities",
        "bulk_followed_videos",
        "bulk_recently_seen",
        "chunked",
        "FollowedCandidatesCatalog",
        "FollowedColumnsCatalog",
        "LabelColumnsCatalog",
        "PageTakingSeenStore",
        "take_page_in_steps",
        "EventsAppendedEach",
        "EventsRecordedEach",
        "GroupCommitEngagementLog",
        "GroupCommitEventStore",
        "CoordinatedTrendingSnapshotStore",
        "CacheStats",
        "Catalog",
        "EngagementLog",
        "EventStore",
        "FeedCache",
        "FeedKey",
        "InMemoryCatalog",
        "InMemoryEngagementLog",
        "InMemoryEventStore",
        "InMemoryFeedCache",
        "InMemoryModelRegistry",
        "InMemoryProgressStore",
        "InMemorySearchIndex",
        "InMemorySeenStore",
        "InMemoryTrendingSnapshotStore",
        "InProcessStore",
        "LRUFeedCache",
        "ModelRegistry",
        "ProgressStore",
        "SearchConfig",
        "SearchIndex",
        "SeenStore",
        "SelfBoundingStore",
        "StoreProxy",
        "TieredFeedCache",
        "TrendingSnapshotStore",
        "bounds_own_calls",
        "is_in_process",
        "parse_query",
        "tokenize",
    },
    "reelrank.scoring": {
        "Candidates",
        "DiversityRule",
        "Experiment",
        "Ranker",
        "Ranking",
        "RankingConfig",
        "Variant",
        "assignment_point",
        "score_frame",
    },
    "reelrank.feed": {
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
    },
    "reelrank.discovery": {
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
    },
    "reelrank.media": {
        "ManifestConfig",
        "ProcessingTracker",
        "build_dash_mpd",
        "build_hls_master_playlist",
        "iso8601_duration",
    },
    "reelrank.validation": {
        "MAX_ID",
        "check_aware",
        "check_feed_key",
        "check_id",
        "check_id_column",
        "check_ids",
        "check_ids_by_user",
        "check_lease_owner",
        "check_limit",
        "check_max_age",
        "check_tag",
        "check_ttl",
        "check_user_ids",
        "check_variant",
        "finite_or_raise",
        "utc_now",
    },
    "reelrank.exceptions": {
        "ConfigError",
        "CursorError",
        "FeedUnavailableError",
        "IdempotencyConflictError",
        "InvalidInputError",
        "InvalidTransitionError",
        "NotFoundError",
        "NotReadyError",
        "QueryError",
        "ReelrankError",
        "StoreError",
        "StoreTimeoutError",
        "StoreUnavailableError",
    },
    "reelrank.protocols": {
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
    },
    "reelrank.testing": {
        "AtomicSeenStoreContract",
        "CoordinatedTrendingSnapshotStoreContract",
        "EPOCH",
        "CatalogContract",
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
    },
}
# Exported by a subpackage for adapter authors, deliberately not re-exported at the top.
NOT_AT_TOP_LEVEL = {
    "StrictModel",
    "InProcessStore",
    "SelfBoundingStore",
    "bounds_own_calls",
    "is_in_process",
    "page_record",
    "take_page_in_steps",
    # validation helpers for third parties: public in reelrank.validation only
    "check_aware",
    "check_feed_key",
    "check_id",
    "check_id_column",
    "check_ids",
    "check_ids_by_user",
    "check_lease_owner",
    "check_limit",
    "check_max_age",
    "check_tag",
    "check_ttl",
    "check_user_ids",
    "check_variant",
    "finite_or_raise",
    "utc_now",
    # the bulk-read helpers: for warming and adapter authors, public in reelrank.stores
    "bulk_affinities",
    "bulk_followed_videos",
    "bulk_recently_seen",
    "chunked",
    # the trending stores' check of a kind: it returns the enum, which lives in a layer
    # above reelrank.validation
    "check_trending_kind",
}


def _exports(module_name: str) -> list[tuple[str, object]]:
    module = importlib.import_module(module_name)
    return [(name, getattr(module, name)) for name in module.__all__]


@pytest.mark.parametrize("module_name", sorted(SUBPACKAGE_EXPECTED))
def test_subpackage_exports_are_pinned(module_name: str) -> None:
    assert set(importlib.import_module(module_name).__all__) == SUBPACKAGE_EXPECTED[module_name]


# reelrank.testing needs pytest and reelrank.evaluation needs the eval extra: neither is
# imported by ``import reelrank``, so their names live only in the subpackage.
@pytest.mark.parametrize(
    "module_name",
    sorted(set(SUBPACKAGE_EXPECTED) - {"reelrank.testing", "reelrank.evaluation"}),
)
def test_subpackage_exports_are_the_top_level_objects(module_name: str) -> None:
    for name, obj in _exports(module_name):
        if name not in NOT_AT_TOP_LEVEL:
            assert getattr(reelrank, name) is obj, f"{module_name}.{name}"


# Exported functions still reporting the private module that defines them: none.
PRIVATE_MODULE_KNOWN: set[str] = set()


def _private_module_exports() -> set[str]:
    found = set()
    for module_name in ["reelrank", *SUBPACKAGE_EXPECTED]:
        for name, obj in _exports(module_name):
            if isinstance(obj, type) or inspect.isfunction(obj):
                assert obj.__module__.startswith("reelrank"), f"{module_name}.{name}"
                if "._" in obj.__module__:
                    found.add(f"{module_name}.{name}")
    return found


def test_exported_classes_and_functions_report_a_public_module() -> None:
    assert _private_module_exports() == PRIVATE_MODULE_KNOWN


def test_exports_report_the_subpackage_that_owns_them() -> None:
    assert reelrank.Video.__module__ == "reelrank.models"
    assert reelrank.InMemoryCatalog.__module__ == "reelrank.stores"
    assert reelrank.Ranker.__module__ == "reelrank.scoring"
    assert reelrank.FeedRankingService.__module__ == "reelrank.feed"
    assert reelrank.VideoSearch.__module__ == "reelrank.discovery"
    assert reelrank.build_dash_mpd.__module__ == "reelrank.media"
    assert reelrank.ReelrankError.__module__ == "reelrank.exceptions"


def _protocol_methods() -> list[tuple[str, str, object]]:
    methods = []
    for name, obj in _exports("reelrank.protocols"):
        if isinstance(obj, type):
            for attribute, member in vars(obj).items():
                if inspect.isfunction(member) and not attribute.startswith("__"):
                    methods.append((name, attribute, member))
    return methods


def test_protocols_have_methods_to_check() -> None:
    assert {name for name, _, _ in _protocol_methods()} == SUBPACKAGE_EXPECTED[
        "reelrank.protocols"
    ] - {"FeedKey"}


@pytest.mark.parametrize(
    ("protocol", "method"),
    [(name, attribute) for name, attribute, _ in _protocol_methods()],
)
def test_protocol_method_annotations_resolve(protocol: str, method: str) -> None:
    function = getattr(getattr(reelrank.protocols, protocol), method)
    # Annotations are strings under ``from __future__ import annotations``; every name
    # in them must resolve at run time, TYPE_CHECKING-only imports included.
    hints = typing.get_type_hints(function)
    assert "return" in hints
