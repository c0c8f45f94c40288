"""The service's ``fold-stats`` command: the ClickHouse statistics roll-up its CronJob runs."""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

EXAMPLE_ROOT = Path(__file__).resolve().parents[1] / "examples" / "flask_app"
sys.path.insert(0, str(EXAMPLE_ROOT))

from reelrank_example.testing import arrival_bucket_end, service_environment  # noqa: E402

SECRET = "f" * 40


def _run(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "reelrank_example", *args],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize(
    ("seq", "end"),
    [
        # Bucket 3 (2**36 ns each) ends at 4 * 2**36 ns = 274.877906944 s, rounded up.
        (3 * 2**36 + 1, datetime(1970, 1, 1, 0, 4, 34, 877_907, tzinfo=UTC)),
        (4 * 2**36 - 1, datetime(1970, 1, 1, 0, 4, 34, 877_907, tzinfo=UTC)),
        # The first number of bucket 4 is in it: its end is 5 * 2**36 ns = 343.59738368 s.
        (4 * 2**36, datetime(1970, 1, 1, 0, 5, 43, 597_384, tzinfo=UTC)),
    ],
)
def test_the_seed_watermark_is_the_end_of_the_last_events_arrival_bucket(
    seq: int, end: datetime
) -> None:
    """What the benchmarks fold the seed with (``ServiceStack.wait_for_seed_watermark``)."""
    assert arrival_bucket_end(seq) == end


def test_without_clickhouse_there_is_nothing_to_fold(tmp_path: Path) -> None:
    env = service_environment(
        {"REELRANK_AUTH_SECRET": SECRET, "REELRANK_DATABASE_URL": f"sqlite:///{tmp_path}/r.db"}
    )
    assert _run(env, "fold-stats") == "no ClickHouse configured; nothing to fold\n"


def test_a_watermark_without_a_time_zone_is_refused(tmp_path: Path) -> None:
    env = service_environment({"REELRANK_AUTH_SECRET": SECRET})
    done = subprocess.run(
        [sys.executable, "-m", "reelrank_example", "fold-stats", "--until", "2026-12-06T10:00"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--until" in done.stderr and "time zone" in done.stderr


@pytest.mark.integration
def test_fold_stats_rolls_up_every_video_with_events_and_reads_agree(tmp_path: Path) -> None:
    from reelrank_clickhouse import ClickHouseConfig, ClickHouseEventStore, connect
    from reelrank_clickhouse.testing import ClickHouseServer

    with ClickHouseServer(tmp_path / "clickhouse") as server:
        env = service_environment(
            {
                "REELRANK_AUTH_SECRET": SECRET,
                "REELRANK_DATABASE_URL": f"sqlite:///{tmp_path}/reelrank.db",
                "REELRANK_CLICKHOUSE_URL": (
                    f"clickhouse://default@127.0.0.1:{server.tcp_port}/default"
                ),
                "REELRANK_VIDEOS": "60",
                "REELRANK_USERS": "12",
                "REELRANK_EVENTS": "400",
            }
        )
        _run(env, "migrate")
        _run(env, "seed")
        engine = connect(ClickHouseConfig(host="127.0.0.1", port=server.tcp_port))
        try:
            store = ClickHouseEventStore(engine)
            engaged = sorted(
                int(line) for line in server.execute("SELECT DISTINCT video_id FROM events").split()
            )
            assert engaged, "the seed wrote no events"
            before = store.get_stats(engaged)
            # A watermark past every arrival so far folds all of them.
            until = (datetime.now(UTC) + timedelta(minutes=3)).isoformat()
            out = _run(env, "fold-stats", "--until", until)
            assert out == f"rolled up the statistics of {len(engaged)} videos\n"
            after = store.get_stats(engaged)
            # Counts exactly; completion sums are float sums the server adds up in
            # another order through the roll-up (tag-6 rows) than merged (tag-1 rows).
            for video_id, stats in before.items():
                now = after[video_id]
                assert now.model_dump(exclude={"completion_sum"}) == stats.model_dump(
                    exclude={"completion_sum"}
                )
                assert math.isclose(now.completion_sum, stats.completion_sum, rel_tol=1e-12)
            # The same watermark again finds nothing newer to fold.
            assert _run(env, "fold-stats", "--until", until) == (
                "rolled up the statistics of 0 videos\n"
            )
        finally:
            engine.dispose()
