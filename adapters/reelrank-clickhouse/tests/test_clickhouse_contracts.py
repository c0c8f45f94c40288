"""The core contract suites, run against a real ClickHouse server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from reelrank_clickhouse import ClickHouseEngagementLog, ClickHouseEventStore
from sqlalchemy.engine import Engine

from reelrank.testing import EngagementLogContract, EventStoreContract

pytestmark = pytest.mark.integration


class TestClickHouseEventStore(EventStoreContract):
    @pytest.fixture
    def event_store(self, clickhouse_engine: Engine) -> Iterator[ClickHouseEventStore]:
        store = ClickHouseEventStore(clickhouse_engine)
        yield store
        store.close(timeout=30)  # its background reads, before the engine goes


class TestClickHouseEngagementLog(EngagementLogContract):
    @pytest.fixture
    def engagement_log(self, clickhouse_engine: Engine) -> ClickHouseEngagementLog:
        return ClickHouseEngagementLog(clickhouse_engine)
