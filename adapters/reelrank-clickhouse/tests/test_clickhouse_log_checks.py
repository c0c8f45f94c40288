"""The engagement log's known-id check: it reads the log itself, only the rows of the
seconds of the batch's events, so its cost does not grow with the events the log
holds; and the migration drops the table of ids it used to read."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from reelrank_clickhouse import (
    ClickHouseConfig,
    ClickHouseEngagementLog,
    connect,
    create_schema,
    drop_schema,
    migrate_schema,
)
from reelrank_clickhouse._engagement_log import _SECONDS_PER_CHECK, _known_check
from reelrank_clickhouse.testing import (
    ClickHouseCluster,
    ClickHouseServer,
    find_clickhouse_server,
)
from sqlalchemy import text
from sqlalchemy.engine import Engine

from reelrank.testing import make_event

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

_LOGGED_EVENTS = 100_000
_GRANULE = 8_192  # the log's index granularity, ClickHouse's default
_NOW = datetime(2026, 3, 20, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def logged_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseServer]:
    """A server of the test's own that records every query with the rows it read."""
    if find_clickhouse_server() is None:
        pytest.skip("clickhouse-server is not installed (scripts/test.sh installs it)")
    with ClickHouseServer(tmp_path_factory.mktemp("logged-clickhouse"), query_log=True) as server:
        yield server


def _engine(server: ClickHouseServer) -> Engine:
    server.execute("CREATE DATABASE logged")
    engine = connect(
        ClickHouseConfig(port=server.tcp_port, database="logged", send_receive_timeout_seconds=60)
    )
    create_schema(engine)
    return engine


def test_the_known_id_check_reads_the_seconds_of_its_batch_not_the_whole_log(
    logged_server: ClickHouseServer,
) -> None:
    engine = _engine(logged_server)
    try:
        # Past events, one every 12 s over the two weeks before _NOW (as a seed writes
        # them, through the log's own insert, so a table fed from it gets them too).
        start = int((_NOW - timedelta(days=14)).timestamp())
        logged_server.execute(
            "INSERT INTO logged.engagement_log (event_id, kind, user_id, video_id, "
            "occurred_at, occurred_us, completion, seq) "
            "SELECT concat('past-', toString(number)), 'watch', 1 + number % 1000, "
            f"1 + number % 5000, toDateTime({start} + number * 12), 0, 0.5, number "
            f"FROM numbers({_LOGGED_EVENTS})"
        )
        log = ClickHouseEngagementLog(engine)
        new = make_event("watch", occurred_at=_NOW)
        past = make_event("watch", occurred_at=datetime.fromtimestamp(start + 12 * 777, UTC))
        past = past.model_copy(update={"event_id": "past-777"})
        assert log.record_each([new, past]) == [True, False]
        assert log.record(new) is False
        logged_server.execute("SYSTEM FLUSH LOGS")
        read = [
            int(rows)
            for rows in logged_server.execute(
                "SELECT read_rows FROM system.query_log WHERE type = 2 "
                "AND query LIKE 'SELECT DISTINCT event_id FROM %' ORDER BY event_time"
            ).split()
        ]
        assert len(read) == 2
        # A granule or two per second named, in the one part the insert made, and
        # the new event's part: not the log's 100,000 rows.
        assert max(read) <= 2 * _GRANULE + 1
    finally:
        engine.dispose()


def test_a_batch_over_more_seconds_than_a_check_names_is_checked_whole(
    clickhouse_engine: Engine,
) -> None:
    log = ClickHouseEngagementLog(clickhouse_engine)
    count = _SECONDS_PER_CHECK + 200
    kept = [
        make_event("like", occurred_at=_NOW - timedelta(seconds=7 * number))
        for number in range(count)
    ]
    assert log.record_many(kept) == count
    again = [*kept[::2], make_event("like", occurred_at=_NOW - timedelta(days=3))]
    assert log.record_each(again) == [False] * len(kept[::2]) + [True]


def test_a_redelivery_at_the_end_of_a_second_is_found(clickhouse_engine: Engine) -> None:
    log = ClickHouseEngagementLog(clickhouse_engine)
    event = make_event("share", occurred_at=_NOW - timedelta(microseconds=1))
    assert log.record(event) is True
    assert log.record(event) is False
    assert log.record_each([event, make_event("share", occurred_at=_NOW)]) == [False, True]


@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=3 * _SECONDS_PER_CHECK))
def test_the_check_covers_every_second_of_its_batch(seconds: list[int]) -> None:
    query, params = _known_check("at", "within", seconds)
    distinct = sorted(set(seconds))
    if len(distinct) <= _SECONDS_PER_CHECK:
        assert (query, params) == ("at", {"seconds": tuple(distinct)})
    else:
        assert (query, params) == ("within", {"first": distinct[0], "last": distinct[-1]})


def _former_log_ids(engine: Engine) -> None:
    """The table of the log's ids and its view, as releases up to 0.1.0 made them."""
    with engine.connect() as conn:
        conn.execute(
            text(
                "CREATE TABLE engagement_log_ids (event_id String, occurred_at DateTime('UTC')) "
                "ENGINE = ReplacingMergeTree() PARTITION BY toYYYYMM(occurred_at) "
                "ORDER BY event_id"
            )
        )
        conn.execute(
            text(
                "CREATE MATERIALIZED VIEW engagement_log_ids_mv TO engagement_log_ids AS "
                "SELECT event_id, occurred_at FROM engagement_log"
            )
        )


def _tables(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return {row[0] for row in conn.execute(text("SHOW TABLES"))}


def test_migrate_schema_drops_the_former_table_of_log_ids(clickhouse_engine: Engine) -> None:
    assert not {"engagement_log_ids", "engagement_log_ids_mv"} & _tables(clickhouse_engine)
    log = ClickHouseEngagementLog(clickhouse_engine)
    before = make_event("watch", occurred_at=_NOW)
    assert log.record(before) is True
    _former_log_ids(clickhouse_engine)
    assert migrate_schema(clickhouse_engine) is True
    assert not {"engagement_log_ids", "engagement_log_ids_mv"} & _tables(clickhouse_engine)
    assert migrate_schema(clickhouse_engine) is False
    assert log.record(before) is False
    assert log.record(make_event("watch", occurred_at=_NOW)) is True


def test_drop_schema_drops_the_former_table_of_log_ids(clickhouse_engine: Engine) -> None:
    _former_log_ids(clickhouse_engine)
    drop_schema(clickhouse_engine)
    assert _tables(clickhouse_engine) == set()


def test_migrate_schema_drops_the_former_table_of_log_ids_on_every_shard(
    clickhouse_cluster: ClickHouseCluster, cluster_config: ClickHouseConfig, cluster_engine: Engine
) -> None:
    database, local = cluster_config.database, cluster_config.local_suffix
    former = {"engagement_log_ids", f"engagement_log_ids{local}", f"engagement_log_ids{local}_mv"}
    clickhouse_cluster.execute_everywhere(
        f"CREATE TABLE {database}.engagement_log_ids{local} (event_id String, "
        "occurred_at DateTime('UTC')) ENGINE = ReplacingMergeTree() "
        "PARTITION BY toYYYYMM(occurred_at) ORDER BY event_id"
    )
    clickhouse_cluster.execute_everywhere(
        f"CREATE MATERIALIZED VIEW {database}.engagement_log_ids{local}_mv "
        f"TO {database}.engagement_log_ids{local} AS "
        f"SELECT event_id, occurred_at FROM {database}.engagement_log{local}"
    )
    clickhouse_cluster.execute_everywhere(
        f"CREATE TABLE {database}.engagement_log_ids AS {database}.engagement_log_ids{local} "
        f"ENGINE = Distributed({cluster_config.cluster}, {database}, engagement_log_ids{local})"
    )
    assert migrate_schema(cluster_engine, cluster_config) is True
    for server in clickhouse_cluster.servers:
        assert not former & set(server.execute(f"SHOW TABLES FROM {database}").split())
    log = ClickHouseEngagementLog(cluster_engine, tables=cluster_config.tables)
    event = make_event("watch", user_id=3, occurred_at=_NOW)
    assert log.record(event) is True
    assert log.record(event) is False
