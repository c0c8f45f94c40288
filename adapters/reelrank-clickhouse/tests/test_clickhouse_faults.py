"""A paused or stopped server: every store call fails with a typed store error, raised
from the driver's exception, within the driver's bounded timeouts, and works again
once the server resumes.

Each test runs its own server (``fault_server``). Nothing is timed: the test's timeout
catches a call that hangs (clickhouse-driver's default reply timeout is 300 s).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from reelrank_clickhouse import (
    ClickHouseConfig,
    ClickHouseEngagementLog,
    ClickHouseEventStore,
    connect,
    create_schema,
)
from reelrank_clickhouse.testing import ClickHouseServer
from sqlalchemy.engine import Engine

from reelrank import StoreError, StoreTimeoutError
from reelrank.testing import EPOCH, make_event

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

HANG_GUARD_SECONDS = 30


@pytest.fixture
def engine(fault_server: ClickHouseServer) -> Iterator[Engine]:
    fault_server.execute("CREATE DATABASE feeds")
    config = ClickHouseConfig(
        port=fault_server.tcp_port,
        database="feeds",
        connect_timeout_seconds=0.5,
        send_receive_timeout_seconds=0.5,
        sync_request_timeout_seconds=0.5,
        pool_size=2,
    )
    built = connect(config)
    create_schema(built)
    yield built
    built.dispose()


def _calls(engine: Engine) -> dict[str, Callable[[], Any]]:
    events = ClickHouseEventStore(engine)
    log = ClickHouseEngagementLog(engine)
    return {
        "events.append": lambda: events.append(make_event("like"), creator_id=1),
        "events.get_stats": lambda: events.get_stats([1, 2]),
        "events.get_affinities": lambda: events.get_affinities(1, [1, 2]),
        "events.popular_video_ids": lambda: events.popular_video_ids(limit=5),
        "log.record": lambda: log.record(make_event("share")),
        "log.events_between": lambda: log.events_between(
            EPOCH, EPOCH + timedelta(hours=1), limit=5
        ),
        "log.columns_between": lambda: log.columns_between(
            EPOCH, EPOCH + timedelta(hours=1), limit=5
        ),
        "log.user_events": lambda: log.user_events(1, since=EPOCH, limit=5),
    }


def _fails_with(name: str, call: Callable[[], Any], error: type[StoreError]) -> None:
    with pytest.raises(error) as info:
        call()
    assert info.value.__cause__ is not None, name
    assert info.value.store in {"events", "engagement_log"}, name


@pytest.mark.timeout(HANG_GUARD_SECONDS)
def test_a_paused_server_times_out_every_call_and_serves_again_on_resume(
    fault_server: ClickHouseServer, engine: Engine
) -> None:
    calls = _calls(engine)
    for call in calls.values():
        call()  # the pool holds open connections when the server freezes
    fault_server.pause()
    try:
        for name, call in calls.items():
            _fails_with(name, call, StoreTimeoutError)
    finally:
        fault_server.resume()
    for call in calls.values():
        call()
    assert ClickHouseEventStore(engine).get_stats([1])[1].likes == 1


@pytest.mark.timeout(HANG_GUARD_SECONDS)
def test_a_stopped_server_fails_every_call_with_a_store_error(
    fault_server: ClickHouseServer, engine: Engine
) -> None:
    calls = _calls(engine)
    fault_server.stop()
    for name, call in calls.items():
        _fails_with(name, call, StoreError)
