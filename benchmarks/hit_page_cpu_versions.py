"""CPU per cache-hit feed page of the example service, for two or more checkouts of the
code side by side, on one set of real stores (PostgreSQL, ClickHouse, Redis).

Each checkout (a directory holding ``src``, ``adapters`` and ``examples``, such as a
``git worktree`` or a ``git archive`` of a commit) serves in a process of its own,
built as a gunicorn worker runs it (metrics in multiprocess mode, JSON log lines
written, here to ``/dev/null``), with users of its own: cache-hit cursor pages
(``GET /api/v1/reels?limit=10&cursor=...``), cache-hit first pages, and a bare Flask
endpoint (:func:`reelrank_example.testing.bare_app`) as the yardstick, all through the
Flask test client. Blocks alternate between the checkouts, round by round, and
``time.process_time()`` over a block gives each process's CPU per request; every
measured page must answer ``Cache-Status: reelrank; hit``. The medians and their
ratios to the first checkout are printed with the load average::

    python benchmarks/hit_page_cpu_versions.py /path/to/old /path/to/new --rounds 6

About five minutes on a busy two-core machine, most of it the servers' start and
seeding (600 videos) and each process's start-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PAGE_SIZE = 10
CURSOR_USERS = 350
FIRST_PAGE_USERS = 100
USERS_EACH = CURSOR_USERS + FIRST_PAGE_USERS
KINDS = ("cursor", "first", "bare")
SOURCE_DIRS = ("src", "adapters/reelrank-redis/src", "adapters/reelrank-postgres/src",
               "adapters/reelrank-clickhouse/src", "examples/flask_app")  # fmt: skip


def _serve(first_user: int) -> None:
    """A service process: answers ``KIND COUNT`` lines on stdin with the CPU ms per
    request of that many requests; its metrics files are removed when it ends."""
    with tempfile.TemporaryDirectory(prefix="reelrank-metrics-") as metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        _serve_in(first_user)


def _serve_in(first_user: int) -> None:
    from reelrank_example import (
        Settings,
        build_services,
        configure_logging,
        configured_stores,
        create_app,
        issue_token,
        testing,
    )

    from reelrank import FeedServiceConfig, StoreDeadlines

    settings = Settings()
    configure_logging(settings, stream=open(os.devnull, "w"))  # noqa: SIM115
    services = build_services(
        configured_stores(settings),
        settings,
        feed_config=FeedServiceConfig(
            cursor_secret=settings.cursor_secret,
            model_name=settings.model_name,
            deadlines=StoreDeadlines(cache=settings.shared_cache_deadline_seconds),
        ),
    )
    client = create_app(services, settings).test_client()
    bare = testing.bare_app().test_client()
    secret = settings.auth_secret.get_secret_value()  # type: ignore[union-attr]
    cursor_users = list(range(first_user, first_user + CURSOR_USERS))
    first_users = list(range(first_user + CURSOR_USERS, first_user + USERS_EACH))
    headers = {
        user: {"Authorization": f"Bearer {issue_token(secret, user)}"}
        for user in cursor_users + first_users
    }
    # Snapshots ranked ahead, so that no measured page is ranked during its request.
    services.feed.refresh_candidates()
    assert services.feed.warm(cursor_users + first_users) == USERS_EACH

    def page(user: int, cursor: str | None) -> str:
        path = f"/api/v1/reels?limit={PAGE_SIZE}" + (f"&cursor={cursor}" if cursor else "")
        response = client.get(path, headers=headers[user])
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.headers["Cache-Status"] == "reelrank; hit"
        next_cursor = response.get_json()["next_cursor"]
        assert next_cursor, "a snapshot was used up: give each process more users"
        return str(next_cursor)

    cursors = {user: page(user, None) for user in cursor_users}
    turns = {"cursor": 0, "first": 0}

    def cursor_pages(count: int) -> None:
        for _ in range(count):
            user = cursor_users[turns["cursor"] % CURSOR_USERS]
            turns["cursor"] += 1
            cursors[user] = page(user, cursors[user])

    def first_pages(count: int) -> None:
        for _ in range(count):
            page(first_users[turns["first"] % FIRST_PAGE_USERS], None)
            turns["first"] += 1

    def bare_requests(count: int) -> None:
        for _ in range(count):
            assert bare.get("/ping").status_code == 200

    blocks = {"cursor": cursor_pages, "first": first_pages, "bare": bare_requests}
    print("ready", flush=True)
    for line in sys.stdin:
        kind, count = line.split()
        started = time.process_time()
        blocks[kind](int(count))
        print(1e3 * (time.process_time() - started) / int(count), flush=True)
    services.close()


def _ask(process: Any, kind: str, count: int) -> float:
    process.stdin.write(f"{kind} {count}\n")
    process.stdin.flush()
    return float(process.stdout.readline())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkouts", nargs="+", type=Path, help="the first is the baseline")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--block", type=int, default=100, help="cursor pages per block")
    args = parser.parse_args()
    from reelrank_example import testing

    catalog = {"REELRANK_VIDEOS": "600", "REELRANK_PENDING_VIDEOS": "0",
               "REELRANK_USERS": str(USERS_EACH * len(args.checkouts) + 50),
               "REELRANK_EVENTS": "2000", "REELRANK_CREATORS": "10"}  # fmt: skip
    with (
        tempfile.TemporaryDirectory() as directory,
        testing.ServiceStack(Path(directory), catalog) as stack,
    ):
        processes: dict[str, Any] = {}
        for number, checkout in enumerate(args.checkouts):
            root = checkout.resolve()
            env = {**os.environ, **stack.env,
                   "PYTHONPATH": os.pathsep.join(str(root / part) for part in SOURCE_DIRS),
                   "NUMBA_CACHE_DIR": str(root / ".numba_cache")}  # fmt: skip
            processes[str(checkout)] = subprocess.Popen(
                [sys.executable, __file__, "--serve", str(1 + number * USERS_EACH)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
            )  # fmt: skip
        for name, process in processes.items():
            assert process.stdout.readline().strip() == "ready", f"{name} did not start"
        sizes = {"cursor": args.block, "first": args.block // 2, "bare": args.block}
        for process in processes.values():  # warm-up, not counted
            for kind in KINDS:
                _ask(process, kind, sizes[kind] // 3)
        cpu_ms: dict[tuple[str, str], list[float]] = {}
        for round_number in range(args.rounds):
            order = list(processes.items())
            shift = round_number % len(order)
            for kind in KINDS:
                for name, process in order[shift:] + order[:shift]:
                    cpu_ms.setdefault((name, kind), []).append(_ask(process, kind, sizes[kind]))
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        for process in processes.values():
            process.stdin.close()
            process.wait(timeout=60)
    baseline = str(args.checkouts[0])
    for kind in KINDS:
        base = statistics.median(cpu_ms[(baseline, kind)])
        print(f"{kind}:")
        for name in processes:
            values = cpu_ms[(name, kind)]
            median = statistics.median(values)
            print(f"  {name}: {median:.3f} ms per request ({min(values):.3f}-{max(values):.3f})"
                  f", x{median / base:.3f} of {baseline}")  # fmt: skip
    print(f"{args.rounds} rounds, load average {load}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        _serve(int(sys.argv[2]))
    else:
        main()
