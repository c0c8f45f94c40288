"""The core contract suites, run against a real ClickHouse server."""

from __future__ import annotations

import pytest
from reelrank_clickhouse import ClickHouseEngagementLog, ClickHouseEventStore
from sqlalchemy.engine import Engine

from reelrank.testing import EngagementLogContract, EventStoreContract

pytestmark = pytest.mark.integration


class TestClickHouseEventStore(EventStoreContract):
    @pytest.fixture
    def event_store(self, clickhouse_engine: Engine) -> ClickHouseEventStore:
        return ClickHouseEventStore(clickhouse_engine)


class TestClickHouseEngagementLog(EngagementLogContract):
    @pytest.fixture
    def engagement_log(self, clickhouse_engine: Engine) -> ClickHouseEngagementLog:
        return ClickHouseEngagementLog(clickhouse_engine)
