"""CPU and latency per search request of the example service, for two or more checkouts
of the code side by side, on one set of real stores (PostgreSQL, ClickHouse, Redis).

Each checkout (a directory holding ``src``, ``adapters`` and ``examples``, such as a
``git worktree`` or a ``git archive`` of a commit) serves in a process of its own,
built as a gunicorn worker builds it (:func:`reelrank_example.create_default_app`:
guarded stores, metrics in multiprocess mode, JSON log lines written, here to a file),
with its start-up waited for. Each answers the load client's search requests
(``GET /api/v1/reels/search?q=...&limit=10``, its twelve queries in turn) through the
Flask test client, and a bare Flask endpoint (:func:`reelrank_example.testing.bare_app`)
as the yardstick. Blocks alternate between the checkouts, round by round;
``time.process_time()`` over a block gives each process's CPU per request (every
thread, so the guards' store calls and background count reads count), and each
request's wall time its latency.

``--pace`` starts a request every that many milliseconds (the process's CPU over the
block, idle time included, so the background count reads the requests leave count),
measured against an idle block of the same length (each process's own background
work: the feed's refreshes, the metrics, the group commits' timers), and
``--counts-seconds`` sets ``REELRANK_SEARCH_COUNTS_SECONDS``: with ``--pace 30
--counts-seconds 0.2`` each query comes back after 0.36 s, past the counts' reuse, as
at the HTTP benchmark's 10 requests/s, where a query comes back about every 15 s
against the default 10 s; without them, back-to-back requests reuse every count.
``--fold-stats`` rolls the statistics up once after seeding, with a watermark past the
seed's last arrival bucket, so the ClickHouse store holds its roll-up (and answers
bounded-age reads from memory); ``--bounded-seconds`` sets
``REELRANK_BOUNDED_COUNTS_SECONDS`` (default 10, the service's).
``--stale-seconds`` sets ``REELRANK_SEARCH_COUNTS_STALE_SECONDS``: with ``--pace 30
--counts-seconds 0.2 --stale-seconds 0`` no query finds its matches' counts recent
enough, as for the first search of a query on a process. Every count read made on
the request's thread (search's blend of its matches, the cards' counts never read) is
timed, and the searches are split into those that made none and those that made some.
The medians and p50 / p99 latencies, and their ratios to the first checkout, are
printed with the load average::

    python benchmarks/search_cpu_versions.py /path/to/old /path/to/new --rounds 6

About three minutes, with the servers' start and seeding (20,000 videos, ``seed
--bulk``) and each process's start-up.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

VIDEOS = 20_000
USERS = 200
KINDS = ("search", "bare", "idle")
# The load client's search words (reelrank_example.testing).
SEARCH_WORDS = (
    "dance", "comedy", "cooking", "travel", "fitness", "music", "pets",
    "easy hack", "daily routine", "epic fail", "secret trick", "makeup tutorial",
)  # fmt: skip
SOURCE_DIRS = ("src", "adapters/reelrank-redis/src", "adapters/reelrank-postgres/src",
               "adapters/reelrank-clickhouse/src", "examples/flask_app")  # fmt: skip


def _serve(pace_ms: float) -> None:
    """A service process: answers ``KIND COUNT`` lines on stdin with a JSON line of
    the CPU ms per request and each request's wall ms; its metrics files are removed
    when it ends."""
    with tempfile.TemporaryDirectory(prefix="reelrank-metrics-") as metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        _serve_in(pace_ms / 1e3)


def _serve_in(pace: float) -> None:
    from reelrank_example import FIRST_USER_ID, Settings, create_default_app, issue_token, testing

    settings = Settings()
    app = create_default_app(settings)
    client = app.test_client()
    # Count reads made on this thread, the requests' (background reads run on others):
    # their number and ms in the current request; and the block's 503 answers.
    events = app.extensions["reelrank_services"].stores.events
    guarded_read = events.get_stats
    request_thread = threading.get_ident()
    in_request = [0, 0.0, 0]

    def timed_read(video_ids: Any) -> Any:
        if threading.get_ident() != request_thread:
            return guarded_read(video_ids)
        started = time.perf_counter()
        try:
            return guarded_read(video_ids)
        finally:
            in_request[0] += 1
            in_request[1] += 1e3 * (time.perf_counter() - started)

    events.get_stats = timed_read
    deadline = time.monotonic() + 300
    while client.get("/healthz/startup").status_code != 200:
        assert time.monotonic() < deadline, "start-up did not finish"
        time.sleep(0.2)
    bare = testing.bare_app().test_client()
    secret = settings.auth_secret.get_secret_value()  # type: ignore[union-attr]
    users = itertools.cycle(range(FIRST_USER_ID, FIRST_USER_ID + USERS))
    headers = {
        user: {"Authorization": f"Bearer {issue_token(secret, user)}"}
        for user in range(FIRST_USER_ID, FIRST_USER_ID + USERS)
    }
    words = itertools.cycle(SEARCH_WORDS)

    def search() -> None:
        path = f"/api/v1/reels/search?q={next(words).replace(' ', '+')}&limit=10"
        response = client.get(path, headers=headers[next(users)])
        # A 503 (a count read past its deadline on a busy machine) is counted, not fatal.
        assert response.status_code in (200, 503), response.get_data(as_text=True)
        in_request[2] += response.status_code == 503

    def ping() -> None:
        assert bare.get("/ping").status_code == 200

    def idle() -> None:
        time.sleep(pace)

    requests = {"search": search, "bare": ping, "idle": idle}
    print("ready", flush=True)
    for line in sys.stdin:
        kind, count = line.split()
        request = requests[kind]
        paced = bool(pace) and kind == "search"
        wall_ms: list[float] = []
        reads: list[int] = []
        read_ms: list[float] = []
        in_request[2] = 0
        cpu_started = time.process_time()
        next_start = time.perf_counter()
        for _ in range(int(count)):
            if paced:
                time.sleep(max(0.0, next_start - time.perf_counter()))
                next_start += pace
            in_request[:2] = [0, 0.0]
            started = time.perf_counter()
            request()
            wall_ms.append(1e3 * (time.perf_counter() - started))
            reads.append(int(in_request[0]))
            read_ms.append(float(in_request[1]))
        if paced:
            # The background work the last request left (count reads) is its CPU too.
            time.sleep(max(0.0, next_start - time.perf_counter()))
        cpu = time.process_time() - cpu_started
        answer = {"cpu_ms": 1e3 * cpu / int(count), "wall_ms": wall_ms, "reads": reads,
                  "read_ms": read_ms, "unavailable": int(in_request[2])}  # fmt: skip
        print(json.dumps(answer), flush=True)
    app.extensions["reelrank_services"].close()


def past_the_seed() -> str:
    """A roll-up watermark past the arrival bucket (2**36 ns, about 69 s) of every event
    seeded so far, so that the roll-up holds them all and reads take the held path
    (the default, a minute ago, may leave a seed of the last minute out entirely). The
    benchmarks record no events afterwards, which would arrive before it."""
    return (datetime.now(UTC) + timedelta(seconds=70)).isoformat()


def _ask(process: Any, kind: str, count: int) -> dict[str, Any]:
    process.stdin.write(f"{kind} {count}\n")
    process.stdin.flush()
    answer: dict[str, Any] = json.loads(process.stdout.readline())
    return answer


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkouts", nargs="+", type=Path, help="the first is the baseline")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--block", type=int, default=60, help="searches per block")
    parser.add_argument("--pace", type=float, default=0.0, help="ms from a search's start")
    parser.add_argument("--counts-seconds", type=float, default=10.0)
    parser.add_argument("--stale-seconds", type=float, default=30.0)
    parser.add_argument("--bounded-seconds", type=float, default=10.0)
    parser.add_argument("--videos", type=int, default=VIDEOS)
    parser.add_argument(
        "--fold-stats",
        action="store_true",
        help="roll the statistics up once after seeding, past the seed's last arrival "
        "bucket, as the deployment's job does",
    )
    args = parser.parse_args()
    from reelrank_example import testing

    catalog = {"REELRANK_VIDEOS": str(args.videos), "REELRANK_PENDING_VIDEOS": "0",
               "REELRANK_USERS": str(USERS), "REELRANK_EVENTS": str(args.videos),
               "REELRANK_CREATORS": str(args.videos // 100)}  # fmt: skip
    with (
        tempfile.TemporaryDirectory() as directory,
        testing.ServiceStack(Path(directory), catalog, bulk=True) as stack,
    ):
        if args.fold_stats:
            stack.command("fold-stats", "--until", past_the_seed())
        processes: dict[str, Any] = {}
        logs = []
        for number, checkout in enumerate(args.checkouts):
            root = checkout.resolve()
            env = {**os.environ, **stack.env,
                   "PYTHONPATH": os.pathsep.join(str(root / part) for part in SOURCE_DIRS),
                   "NUMBA_CACHE_DIR": str(root / ".numba_cache"),
                   "REELRANK_SEARCH_COUNTS_SECONDS": str(args.counts_seconds),
                   "REELRANK_SEARCH_COUNTS_STALE_SECONDS": str(args.stale_seconds),
                   "REELRANK_BOUNDED_COUNTS_SECONDS": str(args.bounded_seconds)}  # fmt: skip
            log = open(Path(directory) / f"service-{number}.log", "w")  # noqa: SIM115
            logs.append(log)
            processes[str(checkout)] = subprocess.Popen(
                [sys.executable, __file__, "--serve", str(args.pace)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, env=env,
            )  # fmt: skip
        for name, process in processes.items():
            assert process.stdout.readline().strip() == "ready", f"{name} did not start"
        sizes = {"search": args.block, "bare": 4 * args.block, "idle": args.block}
        kinds = KINDS if args.pace else KINDS[:2]
        for process in processes.values():  # warm-up, not counted
            for kind in kinds:
                _ask(process, kind, sizes[kind] // 2)
        cpu_ms: dict[tuple[str, str], list[float]] = {}
        wall_ms: dict[str, list[float]] = {}
        # Per search: (wall ms, count reads on the request's thread, their ms).
        searches: dict[str, list[tuple[float, int, float]]] = {}
        unavailable = dict.fromkeys(processes, 0)
        for round_number in range(args.rounds):
            order = list(processes.items())
            shift = round_number % len(order)
            for kind in kinds:
                for name, process in order[shift:] + order[:shift]:
                    answer = _ask(process, kind, sizes[kind])
                    cpu_ms.setdefault((name, kind), []).append(answer["cpu_ms"])
                    if kind == "search":
                        unavailable[name] += answer["unavailable"]
                        wall_ms.setdefault(name, []).extend(answer["wall_ms"])
                        searches.setdefault(name, []).extend(
                            zip(answer["wall_ms"], answer["reads"], answer["read_ms"], strict=True)
                        )
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        for process in processes.values():
            process.stdin.close()
            process.wait(timeout=60)
        for log in logs:
            log.close()
    baseline = str(args.checkouts[0])
    for kind in kinds:
        base = statistics.median(cpu_ms[(baseline, kind)])
        print(f"{kind}, CPU per request:")
        for name in processes:
            values = cpu_ms[(name, kind)]
            median = statistics.median(values)
            print(f"  {name}: {median:.3f} ms ({min(values):.3f}-{max(values):.3f})"
                  f", x{median / base:.3f} of {baseline}")  # fmt: skip
    if args.pace:
        net = {
            name: statistics.median(cpu_ms[(name, "search")])
            - statistics.median(cpu_ms[(name, "idle")])
            for name in processes
        }
        print("search less the idle process's CPU over the same time, per request:")
        for name in processes:
            print(f"  {name}: {net[name]:.3f} ms, x{net[name] / net[baseline]:.3f}")
    base_p50, base_p99 = (_percentile(wall_ms[baseline], share) for share in (0.5, 0.99))
    print("search, latency in-process:")
    for name in processes:
        p50, p99 = (_percentile(wall_ms[name], share) for share in (0.5, 0.99))
        print(f"  {name}: p50 {p50:.2f} ms (x{p50 / base_p50:.3f}), p99 {p99:.2f} ms "
              f"(x{p99 / base_p99:.3f}), {len(wall_ms[name])} requests, "
              f"{unavailable[name]} answered 503")  # fmt: skip
    print("search, by count reads on the request's thread:")
    for name in processes:
        for label, group in (
            ("none", [s for s in searches[name] if s[1] == 0]),
            ("some", [s for s in searches[name] if s[1] > 0]),
        ):
            if not group:
                print(f"  {name}, {label}: 0 requests")
                continue
            walls = [s[0] for s in group]
            p50, p99 = (_percentile(walls, share) for share in (0.5, 0.99))
            reads_ms = [s[2] for s in group]
            read_p50, read_p99 = (_percentile(reads_ms, share) for share in (0.5, 0.99))
            print(f"  {name}, {label}: {len(group)} requests, p50 {p50:.2f} ms, p99 {p99:.2f}"
                  f" ms; reads per request {statistics.mean(s[1] for s in group):.2f}, their"
                  f" ms p50 {read_p50:.2f}, p99 {read_p99:.2f}")  # fmt: skip
    print(f"{args.rounds} rounds of {args.block} searches, pace {args.pace} ms, "
          f"search counts reused {args.counts_seconds} s (+{args.stale_seconds} s aged), "
          f"{args.videos} videos, load average {load}")  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        _serve(float(sys.argv[2]))
    else:
        main()
