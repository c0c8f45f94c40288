"""Every SQL store passes reelrank's reusable contract suite on SQLite, on PostgreSQL 15,
on PostgreSQL with the reads on a streaming replica, and through pgbouncer in
transaction mode (the replicated pair behind it).

The stores that take no replica (seen marks, progress, the engagement log) run on the
deployments without one: with a replica they would run on the primary alone anyway.
"""

from __future__ import annotations

import pytest
from pg_support import Engines
from reelrank_postgres import (
    SqlCatalog,
    SqlEngagementLog,
    SqlEventStore,
    SqlFeedCache,
    SqlModelRegistry,
    SqlProgressStore,
    SqlSearchIndex,
    SqlSeenStore,
    SqlTrendingSnapshotStore,
)

from reelrank import SearchConfig
from reelrank.testing import (
    CatalogContract,
    CoordinatedTrendingSnapshotStoreContract,
    EngagementLogContract,
    EventStoreContract,
    FeedCacheContract,
    FollowedCandidatesCatalogContract,
    FollowedColumnsCatalogContract,
    LabelColumnsCatalogContract,
    ModelRegistryContract,
    ProgressStoreContract,
    SearchIndexContract,
    SeenStoreContract,
    TrendingSnapshotStoreContract,
)

pytestmark = pytest.mark.integration

# The deployments for stores that take no read engine.
without_replica = pytest.mark.parametrize(
    "engines", ["sqlite", "postgresql", "pgbouncer"], indirect=True
)


class TestSqlCatalog(CatalogContract):
    @pytest.fixture
    def catalog(self, engines: Engines) -> SqlCatalog:
        return SqlCatalog(engines.engine, read_engine=engines.read_engine)


class TestSqlEventStore(EventStoreContract):
    @pytest.fixture
    def event_store(self, engines: Engines) -> SqlEventStore:
        return SqlEventStore(engines.engine, read_engine=engines.read_engine)


@without_replica
class TestSqlSeenStore(SeenStoreContract):
    @pytest.fixture
    def seen_store(self, engines: Engines) -> SqlSeenStore:
        return SqlSeenStore(engines.engine)


class TestSqlModelRegistry(ModelRegistryContract):
    @pytest.fixture
    def model_registry(self, engines: Engines) -> SqlModelRegistry:
        return SqlModelRegistry(engines.engine, read_engine=engines.read_engine)


@without_replica
class TestSqlProgressStore(ProgressStoreContract):
    @pytest.fixture
    def progress_store(self, engines: Engines) -> SqlProgressStore:
        return SqlProgressStore(engines.engine)


class TestSqlSearchIndex(SearchIndexContract):
    @pytest.fixture
    def search_index(self, engines: Engines) -> SqlSearchIndex:
        return SqlSearchIndex(engines.engine, read_engine=engines.read_engine)


class TestSqlSearchIndexKeepingTermStatistics(SearchIndexContract):
    """The contract with the term counts and index statistics kept for an hour: every
    search follows the index's own writes."""

    @pytest.fixture
    def search_index(self, engines: Engines) -> SqlSearchIndex:
        return SqlSearchIndex(
            engines.engine,
            read_engine=engines.read_engine,
            config=SearchConfig(term_statistics_seconds=3_600.0),
        )


@without_replica
class TestSqlEngagementLog(EngagementLogContract):
    @pytest.fixture
    def engagement_log(self, engines: Engines) -> SqlEngagementLog:
        return SqlEngagementLog(engines.engine)


@without_replica
class TestSqlFeedCache(FeedCacheContract):
    """Expiry on an injected clock: the contract's expiry test moves it, taking no time."""

    @pytest.fixture
    def feed_cache(self, engines: Engines) -> SqlFeedCache:
        self.now = 1_000_000.0
        return SqlFeedCache(engines.engine, clock=lambda: self.now)

    def advance(self, seconds: float) -> None:
        self.now += seconds


@without_replica
class TestSqlTrendingSnapshotStore(
    TrendingSnapshotStoreContract, CoordinatedTrendingSnapshotStoreContract
):
    """Leases expire on an injected clock: the contract's expiry test moves it."""

    @pytest.fixture
    def trending_snapshot_store(self, engines: Engines) -> SqlTrendingSnapshotStore:
        self.now = 1_000_000.0
        return SqlTrendingSnapshotStore(engines.engine, clock=lambda: self.now)

    def advance(self, seconds: float) -> None:
        self.now += seconds


class TestSqlCatalogFollowedColumns(FollowedColumnsCatalogContract):
    @pytest.fixture
    def catalog(self, engines: Engines) -> SqlCatalog:
        return SqlCatalog(engines.engine, read_engine=engines.read_engine)


class TestSqlCatalogLabelColumns(LabelColumnsCatalogContract):
    @pytest.fixture
    def catalog(self, engines: Engines) -> SqlCatalog:
        return SqlCatalog(engines.engine, read_engine=engines.read_engine)


class TestSqlCatalogFollowedCandidates(FollowedCandidatesCatalogContract):
    @pytest.fixture
    def catalog(self, engines: Engines) -> SqlCatalog:
        return SqlCatalog(engines.engine, read_engine=engines.read_engine)

    @pytest.fixture
    def event_store(self, engines: Engines) -> SqlEventStore:
        return SqlEventStore(engines.engine, read_engine=engines.read_engine)
