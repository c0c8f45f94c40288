"""Every SQL store passes reelrank's reusable contract suite on SQLite and on PostgreSQL 15."""

from __future__ import annotations

import pytest
from reelrank_postgres import (
    SqlCatalog,
    SqlEngagementLog,
    SqlEventStore,
    SqlModelRegistry,
    SqlProgressStore,
    SqlSearchIndex,
    SqlSeenStore,
)
from sqlalchemy import Engine

from reelrank.testing import (
    CatalogContract,
    EngagementLogContract,
    EventStoreContract,
    ModelRegistryContract,
    ProgressStoreContract,
    SearchIndexContract,
    SeenStoreContract,
)

pytestmark = pytest.mark.integration


class TestSqlCatalog(CatalogContract):
    @pytest.fixture
    def catalog(self, engine: Engine) -> SqlCatalog:
        return SqlCatalog(engine)


class TestSqlEventStore(EventStoreContract):
    @pytest.fixture
    def event_store(self, engine: Engine) -> SqlEventStore:
        return SqlEventStore(engine)


class TestSqlSeenStore(SeenStoreContract):
    @pytest.fixture
    def seen_store(self, engine: Engine) -> SqlSeenStore:
        return SqlSeenStore(engine)


class TestSqlModelRegistry(ModelRegistryContract):
    @pytest.fixture
    def model_registry(self, engine: Engine) -> SqlModelRegistry:
        return SqlModelRegistry(engine)


class TestSqlProgressStore(ProgressStoreContract):
    @pytest.fixture
    def progress_store(self, engine: Engine) -> SqlProgressStore:
        return SqlProgressStore(engine)


class TestSqlSearchIndex(SearchIndexContract):
    @pytest.fixture
    def search_index(self, engine: Engine) -> SqlSearchIndex:
        return SqlSearchIndex(engine)


class TestSqlEngagementLog(EngagementLogContract):
    @pytest.fixture
    def engagement_log(self, engine: Engine) -> SqlEngagementLog:
        return SqlEngagementLog(engine)
