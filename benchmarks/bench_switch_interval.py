"""Cache-hit pages while another thread of the worker runs Python, by switch interval.

A gunicorn worker of the example service runs requests on several threads, and
background work (the candidate pool's refresh, trending's computation, refills) on
threads of its own. A cache hit is about a millisecond of CPU, but it needs the
interpreter lock several times (after each socket read and store call), and while
another thread runs Python it gets the lock back only when that thread is asked to let
go, after the switch interval (:func:`sys.setswitchinterval`, 5 ms by default).

In one process, on the stores the load benchmark uses (real PostgreSQL, ClickHouse and
Redis started by the fixtures), a thread serves cache-hit cursor pages through the
Flask test client, one every 10 ms, and times each (wall clock), while a competing
thread runs without pause either

* ``python``: pure Python (building and summing lists), the worst case of another
  thread's work; or
* ``misses``: the service's own cache misses of other users (``feed()`` after
  dropping their snapshots), which wait on their stores between stretches of Python.

Blocks of pages alternate over the switch intervals round by round, so a noisy moment
of the shared machine falls on each alike. Reported per competitor and interval: the
hits' p50 and p99, and the competitor's own progress (its iterations a second), the
price of switching more often. A block with no competitor is the floor.

About a minute with the servers' start and seeding; quick mode
(``REELRANK_BENCH_QUICK=1``, in CI) runs 2 rounds of 40 pages, the full run 6 of 100.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import QUICK, SUMMARY, loadavg, p50_p99_ms

pytest.importorskip("reelrank_redis")
pytest.importorskip("reelrank_postgres")
pytest.importorskip("reelrank_clickhouse")
testing = pytest.importorskip("reelrank_example.testing")

from reelrank_example import (  # noqa: E402
    FIRST_USER_ID,
    build_services,
    configured_stores,
    create_app,
    issue_token,
)

pytestmark = pytest.mark.timeout(900)

USERS = 200
HIT_USERS = 100
PAGE_SIZE = 10
PAGE_GAP_SECONDS = 0.01
ROUNDS = 2 if QUICK else 6
PAGES_PER_BLOCK = 40 if QUICK else 100
PYTHON_DEFAULT_INTERVAL = 0.005
INTERVALS = (PYTHON_DEFAULT_INTERVAL, 0.001, 0.0005)
CATALOG = {
    "REELRANK_VIDEOS": "600",
    "REELRANK_PENDING_VIDEOS": "0",
    "REELRANK_USERS": str(USERS),
    "REELRANK_EVENTS": "2000",
    "REELRANK_CREATORS": "10",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with testing.ServiceStack(tmp_path_factory.mktemp("stack"), CATALOG, bulk=True) as started:
        yield started


class _Competitor:
    """A thread running ``work`` in a loop until stopped, counting its iterations."""

    def __init__(self, work: Callable[[], object]) -> None:
        self._work = work
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="competitor", daemon=True)
        self.iterations = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self._work()
            self.iterations += 1

    def __enter__(self) -> _Competitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _pure_python() -> object:
    values = [index * 3 for index in range(20_000)]
    return sum(value % 7 for value in values)


def test_cache_hits_beside_another_thread_by_switch_interval(benchmark: Any, stack: Any) -> None:
    settings = stack.settings()
    services = build_services(configured_stores(settings), settings)
    client = create_app(services, settings).test_client()
    assert settings.auth_secret is not None
    secret = settings.auth_secret.get_secret_value()
    hit_users = list(range(FIRST_USER_ID, FIRST_USER_ID + HIT_USERS))
    miss_users = list(range(FIRST_USER_ID + HIT_USERS, FIRST_USER_ID + USERS))
    headers = {user: {"Authorization": f"Bearer {issue_token(secret, user)}"} for user in hit_users}
    feed = services.feed
    feed.refresh_candidates()
    assert feed.warm(hit_users) == len(hit_users)
    cursors: dict[int, str | None] = {}
    turn = iter(range(10**9))

    def page(user: int) -> tuple[str | None, str]:
        path = f"/api/v1/reels?limit={PAGE_SIZE}"
        if user in cursors:
            path += f"&cursor={cursors[user]}"
        response = client.get(path, headers=headers[user])
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()["next_cursor"], response.headers["Cache-Status"]

    def next_hit() -> float:
        """One cache-hit page (a user whose snapshot runs low is warmed again, untimed)."""
        user = hit_users[next(turn) % len(hit_users)]
        if user in cursors and cursors[user] is None:
            del cursors[user]
        started = time.perf_counter()
        cursor, status = page(user)
        elapsed = time.perf_counter() - started
        if status != "reelrank; hit":
            raise AssertionError(f"page of user {user} was not a hit: {status}")
        cursors[user] = cursor
        if cursor is None:
            feed.invalidate(user)
            feed.warm([user])
        return elapsed

    miss_turn = iter(range(10**9))

    def one_miss() -> object:
        user = miss_users[next(miss_turn) % len(miss_users)]
        feed.invalidate(user)
        return feed.feed(user, PAGE_SIZE)

    competitors: dict[str, Callable[[], object] | None] = {
        "none": None,
        "python": _pure_python,
        "misses": one_miss,
    }
    latencies: dict[tuple[str, float], list[float]] = {}
    progress: dict[tuple[str, float], list[float]] = {}
    # Restored at the end: another benchmark's service may have set its own before.
    interval_before = sys.getswitchinterval()
    try:
        for _ in range(PAGES_PER_BLOCK // 2):  # warm-up, not counted
            next_hit()
        for _ in range(ROUNDS):
            for name, work in competitors.items():
                for interval in INTERVALS if work is not None else (PYTHON_DEFAULT_INTERVAL,):
                    sys.setswitchinterval(interval)
                    samples = latencies.setdefault((name, interval), [])
                    started = time.perf_counter()
                    if work is None:
                        for _ in range(PAGES_PER_BLOCK):
                            samples.append(next_hit())
                            time.sleep(PAGE_GAP_SECONDS)
                        continue
                    with _Competitor(work) as competitor:
                        for _ in range(PAGES_PER_BLOCK):
                            samples.append(next_hit())
                            time.sleep(PAGE_GAP_SECONDS)
                    rate = competitor.iterations / (time.perf_counter() - started)
                    progress.setdefault((name, interval), []).append(rate)
    finally:
        sys.setswitchinterval(interval_before)
        services.close()
    load = loadavg()
    lines = []
    for (name, interval), samples in latencies.items():
        p50, p99 = p50_p99_ms(samples)
        benchmark.extra_info[f"{name}_{interval}_hit_p99_ms"] = round(p99, 2)
        line = f"{name} at {interval * 1000:g} ms: hit p50 {p50:.1f} / p99 {p99:.1f} ms"
        if (name, interval) in progress and interval != PYTHON_DEFAULT_INTERVAL:
            rates = progress[(name, interval)]
            baseline = progress[(name, PYTHON_DEFAULT_INTERVAL)]
            ratio = (sum(rates) / len(rates)) / (sum(baseline) / len(baseline))
            line += f", competitor x{ratio:.2f} of its progress at 5 ms"
        lines.append(line)
    SUMMARY.append(
        f"cache-hit pages beside another thread, {ROUNDS} rounds of {PAGES_PER_BLOCK} "
        f"pages: {'; '.join(lines)} (load {load})"
    )
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
