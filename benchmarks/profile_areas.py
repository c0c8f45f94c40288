"""Fold ``py-spy record --format raw`` samples of the service's workers into areas.

``python benchmarks/profile_areas.py DIR`` reads every ``DIR/step<N>-worker<I>.txt``
that ``bench_http.py`` wrote with ``REELRANK_BENCH_HTTP_PROFILE=DIR`` (one collapsed
stack a line, root first, then the sample count) and prints, per step, each area's
share of the workers' samples, and with ``DIR/step<N>.json`` (the step's service CPU
and requests per endpoint) the CPU each area took per request of the step.

A sample goes to the first area of :data:`AREAS` with a frame in its stack. Store calls
run on the guards' worker threads, whose stacks do not show the request that asked for
them, so those samples go to an area by the store method they are in. Samples of
blocked threads are counted apart (:data:`IDLE`); the busy share of an area times the
step's service CPU per request is what the area cost per request, assuming a busy
sample costs the same CPU wherever it falls (a thread waiting in a driver's socket read
counts as busy, so the waits on a store's answer inflate the store areas).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("trending", ("Trending.", "_Handlers._trending", "TrendingSnapshotStore")),
    ("search on PostgreSQL", ("_Handlers.search", "VideoSearch.", "SqlSearchIndex.")),
    (
        "event writes (handlers, ClickHouse inserts)",
        (
            "_Handlers._event",
            "_Handlers._like",
            "_counting_events",
            "GroupCommit",
            "append_each",
            "record_each",
            "EngagementRecorder.",
            "SqlIdempotencyStore.",
        ),
    ),
    (
        "feed miss: ranking a snapshot",
        ("FeedRankingService._rank", "UserRanking.", "followed_videos", "Ranker.", "_rank_"),
    ),
    ("candidate pool refresh (background)", ("CandidatePool.", "refresh_candidates")),
    ("card counts refresh (background)", ("CardReader._refresh",)),
    ("feed: cards (catalog and counts read by the card reader)", ("_Handlers._cards",)),
    ("feed hit: paging, Redis, response", ("_Handlers.feed", "FeedRankingService.feed")),
    (
        "store calls on guard threads: ClickHouse counts (get_stats)",
        ("stats_columns", "ClickHouseEventStore.get_stats"),
    ),
    ("store calls on guard threads: ClickHouse, other", ("clickhouse_driver",)),
    ("store calls on guard threads: Redis", ("redis/",)),
    ("store calls on guard threads: PostgreSQL", ("sqlalchemy/", "psycopg/")),
    (
        "request log and metrics",
        ("_logging.py", "structlog/", "logging/__init__", "_metrics.py", "prometheus_client/"),
    ),
    ("auth", ("_auth.py", "jwt/")),
    ("Flask and gunicorn request handling", ("flask/", "werkzeug/", "handle_request")),
    ("gunicorn main loop (accept, keep-alive, epoll)", ("gunicorn/",)),
)
OTHER = "other (thread pools' own bookkeeping, GC...)"
IDLE = "idle: threads blocked (waiting for work, a store's answer, epoll)"
# py-spy's non-blocking sampling counts some blocked threads as active; their innermost
# Python frame is one of these waits.
_IDLE_LEAVES = (
    "_worker (concurrent/futures/thread.py",
    "WorkerPool._work (",
    "EpollSelector.select (",
    "Condition.wait (",
    "Event.wait (",
)


def area_of(stack: str) -> str:
    """:data:`IDLE` for a blocked thread, else the first area of :data:`AREAS` with a
    frame of ``stack`` (``;``-joined frames, root first)."""
    frames = stack.split(";")
    if frames[-1].startswith(_IDLE_LEAVES) or frames[-1].startswith("Thread."):
        return IDLE
    for name, needles in AREAS:
        if any(needle in stack for needle in needles):
            return name
    return OTHER


def fold(paths: list[Path]) -> Counter[str]:
    """Samples per area over the raw py-spy files ``paths``."""
    counts: Counter[str] = Counter()
    for path in paths:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if stack:
                counts[area_of(stack)] += int(count)
    return counts


def main(directory: Path) -> None:
    for steps in sorted(directory.glob("step*.json")):
        name = steps.stem
        counts = fold(sorted(directory.glob(f"{name}-worker*.txt")))
        total = sum(counts.values())
        figures = json.loads(steps.read_text())
        requests = sum(figures["requests"].values())
        cpu_ms = 1000 * figures["service_cpu_seconds"] / requests
        print(
            f"{name}: {figures['offered']:.0f} req/s offered, {requests} requests in "
            f"{figures['span_seconds']:.0f} s, service CPU {cpu_ms:.2f} ms/request, "
            f"{total} samples (load {figures['loadavg']})"
        )
        busy = total - counts[IDLE]
        print(f"{'area':<66} {'all':>6} {'busy':>6} {'CPU ms/request':>15}")
        for area, count in counts.most_common():
            if area == IDLE:
                print(f"{area:<66} {count / total:6.1%}")
                continue
            share = count / busy
            print(f"{area:<66} {count / total:6.1%} {share:6.1%} {share * cpu_ms:15.2f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
