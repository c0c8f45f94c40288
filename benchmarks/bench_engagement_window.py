"""Reading the engagement window that trending and creator recommendations read, on
ClickHouse: :meth:`ClickHouseEngagementLog.columns_between` (four columns, one columnar
read, numpy arrays) against :meth:`~ClickHouseEngagementLog.events_between` (every
column, one :class:`~reelrank.EngagementEvent` per row), the read both used before,
interleaved in the same run.

The log holds 100,000 events spread over 14 days (20,000 in quick mode), as the
service's load benchmark seeds at 100k videos (about 7,000 events a day). The windows
read are trending's (its two 24-hour windows: 2 days, about 14,000 events) and the
creators' audience graph (30 days: every event). Both reads return the same events in
the same order; the benchmark checks it before timing. Skips when ``clickhouse-server``
or ``reelrank-clickhouse`` is not installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import QUICK, SUMMARY, interleaved, loadavg, p50_p99_ms

from reelrank import EngagementWindow

reelrank_clickhouse = pytest.importorskip("reelrank_clickhouse")
clickhouse_testing = pytest.importorskip("reelrank_clickhouse.testing")
clickhouse_driver = pytest.importorskip("clickhouse_driver")

pytestmark = pytest.mark.timeout(600)

if clickhouse_testing.find_clickhouse_server() is None:
    pytest.skip("clickhouse-server is not installed", allow_module_level=True)

EVENTS = 20_000 if QUICK else 100_000
DAYS = 14
VIDEOS = 100_000
USERS = 2_000
ROUNDS = 5 if QUICK else 15
NOW = datetime(2026, 3, 1, tzinfo=UTC)

# Generated on the server: a mix of 60% watches, 20% likes, 10% shares and 10%
# comments (each with the fields its kind needs), times spread evenly over DAYS.
_GENERATE = """INSERT INTO engagement_log
(event_id, kind, user_id, video_id, occurred_at, occurred_us, watched_seconds, completion,
 channel, variant, seq)
SELECT
  lower(hex(cityHash64(number))) AS event_id,
  multiIf(number % 10 < 6, 'watch', number % 10 < 8, 'like', number % 10 < 9, 'share',
          'comment') AS kind,
  1 + cityHash64(number, 1) % {users} AS user_id,
  1 + cityHash64(number, 2) % {videos} AS video_id,
  toDateTime({start} + intDiv(number * {span}, {count}), 'UTC') AS occurred_at,
  toUInt32(cityHash64(number, 3) % 1000000) AS occurred_us,
  CAST(NULL AS Nullable(Float64)) AS watched_seconds,
  if(number % 10 < 6, (number % 100) / 100., NULL) AS completion,
  if(number % 10 = 8, 'link', NULL) AS channel,
  CAST(NULL AS Nullable(String)) AS variant,
  number AS seq
FROM numbers({count})"""


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    directory: Path = tmp_path_factory.mktemp("bench-window")
    with clickhouse_testing.ClickHouseServer(directory) as started:
        started.execute("CREATE DATABASE bench")
        config = reelrank_clickhouse.ClickHouseConfig(
            port=started.tcp_port, database="bench", send_receive_timeout_seconds=60.0
        )
        engine = reelrank_clickhouse.connect(config)
        reelrank_clickhouse.create_schema(engine)
        client = clickhouse_driver.Client.from_url(
            engine.dialect.create_connect_args(engine.url)[0][0]
        )
        span = DAYS * 86_400
        start = int((NOW - timedelta(days=DAYS)).timestamp())
        client.execute(
            _GENERATE.format(users=USERS, videos=VIDEOS, start=start, span=span, count=EVENTS)
        )
        client.disconnect()
        yield reelrank_clickhouse.ClickHouseEngagementLog(engine)
        engine.dispose()


@pytest.mark.parametrize(
    ("reader", "days", "limit"),
    [("trending", 2.0, 1_000_000), ("creators", 30.0, 200_000)],
)
def test_window_read_as_columns_against_event_models(
    benchmark: Any, log: Any, reader: str, days: float, limit: int
) -> None:
    start, end = NOW - timedelta(days=days), NOW + timedelta(microseconds=1)
    events = log.events_between(start, end, limit=limit)
    columns = log.columns_between(start, end, limit=limit)
    assert len(events) > 0
    assert columns == EngagementWindow.from_events(events)
    model_samples, column_samples = interleaved(
        [
            lambda: log.events_between(start, end, limit=limit),
            lambda: log.columns_between(start, end, limit=limit),
        ],
        ROUNDS,
    )
    model_p50, model_p99 = p50_p99_ms(model_samples)
    column_p50, column_p99 = p50_p99_ms(column_samples)
    SUMMARY.append(
        f"clickhouse {reader} window ({days:g} days, {len(events):,} of {EVENTS:,} events): "
        f"columns_between p50 {column_p50:.1f} / p99 {column_p99:.1f} ms; events_between "
        f"(models) p50 {model_p50:.1f} / p99 {model_p99:.1f} ms; models / columns = "
        f"{model_p50 / column_p50:.1f}x at p50; loadavg {loadavg()}"
    )
    benchmark.extra_info.update(
        {
            "events": len(events),
            "columns_p50_ms": column_p50,
            "models_p50_ms": model_p50,
            "ratio_p50": model_p50 / column_p50,
        }
    )
    benchmark.pedantic(lambda: log.columns_between(start, end, limit=limit), rounds=3)
