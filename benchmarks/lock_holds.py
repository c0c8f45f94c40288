"""How long a call holds the interpreter lock without letting another thread run.

A request thread that needs the lock back (after a socket read, a store call handed to
a worker thread) waits for whoever holds it. Python asks a thread running bytecode to
let go after the switch interval (5 ms), but C code that never returns to the
interpreter (a driver building thousands of rows, a decoder, a validator) holds it to
its end. On a shared machine latency tails mostly measure waiting for a core; the
longest hold of each call does not, and is what this module measures:

* :class:`HoldProbe` is a thread that sleeps 1 ms in a loop. Each wake-up's lateness,
  minus the part its thread spent in the kernel's run queue (waiting for a core, from
  ``/proc/thread-self/schedstat``), is how long it waited for the lock.
* :func:`measure_holds` runs a call in another thread with the probe running, several
  times, and gives per run the longest wait for the lock that overlapped the call and
  the call's own thread CPU time, with the garbage collections during the runs (the
  allocating thread runs each, holding the lock).

Linux only (``schedstat``). Other threads of the process running Python during the
measurement count as holders too: measure in a process doing nothing else.

Run as a script, it compares the service's store reads (:func:`_service_cases`) in a
baseline source tree (``git worktree add`` or ``git archive`` of the commit to compare
with) and in this one, on a seeded stack (PostgreSQL, ClickHouse, Redis; 100,000
videos, as the capacity runs), in turns, the order swapped each round::

    python benchmarks/lock_holds.py ROUNDS RUNS BASELINE_TREE

Each turn is a fresh process that reads once, freezes what is alive (as the service
does after start-up) and measures each read ``RUNS`` times.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

__all__ = ["CallHolds", "HoldProbe", "measure_holds"]

_PERIOD_SECONDS = 0.001
# A wake-up is never exactly on time: the timer's slack (50 us by default) and the
# probe's own bookkeeping are below this, and are not counted as waits for the lock.
_NOISE_SECONDS = 0.0002


def _run_queue_seconds(fd: int) -> float:
    # schedstat: time on a core, time waiting in the run queue (both in ns), time slices.
    return int(os.pread(fd, 128, 0).split()[1]) / 1e9


class HoldProbe:
    """A thread that records every wait for the interpreter lock over ~0.2 ms: as
    ``(start, end)`` in :func:`time.perf_counter` seconds, the part spent waiting for a
    core left out of its length (``end - start``) but not of its span."""

    def __init__(self) -> None:
        self.waits: list[tuple[float, float, float]] = []
        """``(start, end, seconds waiting for the lock)`` of each wait."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hold-probe", daemon=True)

    def __enter__(self) -> HoldProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        try:
            while not self._stop.is_set():
                queued = _run_queue_seconds(fd)
                due = time.perf_counter() + _PERIOD_SECONDS
                time.sleep(_PERIOD_SECONDS)
                woke = time.perf_counter()
                lock_wait = woke - due - (_run_queue_seconds(fd) - queued)
                if lock_wait > _NOISE_SECONDS:
                    self.waits.append((due, woke, lock_wait))
        finally:
            os.close(fd)

    def longest_wait(self, start: float, end: float) -> float:
        """The longest wait for the lock overlapping ``[start, end]``, in seconds."""
        return max(
            (wait for begun, ended, wait in list(self.waits) if begun < end and ended > start),
            default=0.0,
        )


@dataclass(frozen=True)
class CallHolds:
    """A call measured over several runs: per run, in milliseconds."""

    longest_hold_ms: list[float]
    """The longest wait for the lock that overlapped the run."""
    thread_cpu_ms: list[float]
    """The CPU time of the run's thread."""
    collections: list[tuple[int, float]]
    """``(generation, milliseconds)`` of each garbage collection during the runs: the
    allocating thread runs it, holding the lock throughout."""

    def summary(self) -> dict[str, float]:
        """Median and maximum of the runs' longest holds, median CPU time, and the
        collections: how many, the longest, and how many were full."""
        return {
            "hold_p50_ms": round(statistics.median(self.longest_hold_ms), 2),
            "hold_max_ms": round(max(self.longest_hold_ms), 2),
            "cpu_p50_ms": round(statistics.median(self.thread_cpu_ms), 2),
            "collections": len(self.collections),
            "full_collections": sum(1 for generation, _ in self.collections if generation == 2),
            "collection_max_ms": round(max((ms for _, ms in self.collections), default=0.0), 2),
        }


def _timed_run(call: Callable[[], object]) -> tuple[float, float, float]:
    """``call()`` in a thread of its own: its start and end (:func:`time.perf_counter`)
    and its thread's CPU time, in seconds."""
    span: list[float] = []

    def timed() -> None:
        began, began_cpu = time.perf_counter(), time.thread_time()
        call()
        span.extend((began, time.perf_counter(), time.thread_time() - began_cpu))

    worker = threading.Thread(target=timed)
    worker.start()
    worker.join()
    began, ended, thread_cpu = span
    return began, ended, thread_cpu


def measure_holds(call: Callable[[], object], *, runs: int = 20) -> CallHolds:
    """Run ``call`` ``runs`` times in a thread of its own, each after a 20 ms pause,
    while a :class:`HoldProbe` runs; the main thread only waits."""
    holds: list[float] = []
    cpu: list[float] = []
    collections: list[tuple[int, float]] = []
    started: list[float] = []

    def collected(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[:] = [time.perf_counter()]
        elif started:
            collections.append((info["generation"], (time.perf_counter() - started[0]) * 1000))

    interval = sys.getswitchinterval()
    gc.callbacks.append(collected)
    try:
        with HoldProbe() as probe:
            for _ in range(runs):
                time.sleep(0.02)
                began, ended, thread_cpu = _timed_run(call)
                # The probe records a wait once it has the lock back, after the call.
                time.sleep(max(0.005, 2 * interval))
                holds.append(probe.longest_wait(began, ended) * 1000)
                cpu.append(thread_cpu * 1000)
    finally:
        gc.callbacks.remove(collected)
    return CallHolds(holds, cpu, collections)


def _service_cases() -> dict[str, Callable[[], object]]:
    """The service's store reads on the stack ``REELRANK_*`` names, with the sizes the
    service asks for: a cache miss's followed videos, the candidate pool's refresh
    (recent videos, the popular ones' videos, their counts), a page's cards, search's
    counts and a whole search, and trending's computation (a background refresh that
    runs in a request worker once a minute) with its read of recent videos' labels, as
    rows and, where the catalog has it, as columns."""
    from reelrank_example import FIRST_USER_ID
    from reelrank_example._services import configured_stores
    from reelrank_example._settings import Settings

    from reelrank import (
        FeedServiceConfig,
        FollowedColumnsCatalog,
        SearchConfig,
        Trending,
        TrendingConfig,
        VideoSearch,
    )

    stores = configured_stores(Settings())
    catalog, events = stores.catalog, stores.events
    assert isinstance(catalog, FollowedColumnsCatalog)
    feed = FeedServiceConfig(cursor_secret="x" * 32)
    recent_ids = [video.video_id for video in catalog.recent_videos(limit=feed.recent_limit)]
    # The user with the most followed videos among the first few hundred seeded (the
    # seed's follows are random): a cache miss reads at most followed_limit of them.
    user_id = max(
        range(FIRST_USER_ID, FIRST_USER_ID + 300),
        key=lambda user: len(catalog.followed_columns(user, limit=feed.followed_limit)),
    )
    pool = SearchConfig().candidate_pool
    search = VideoSearch(stores.search_index, stats=events)
    # Computed on every call: no snapshot is reused.
    trending = Trending(catalog, stores.log, config=TrendingConfig(reuse_seconds=0.0))
    window = timedelta(hours=2 * trending.config.window_hours)
    cases: dict[str, Callable[[], object]] = {
        "followed_columns": lambda: catalog.followed_columns(user_id, limit=feed.followed_limit),
        "recent_videos": lambda: catalog.recent_videos(limit=feed.recent_limit),
        "get_videos (popular fill)": lambda: catalog.get_videos(recent_ids),
        "stats_columns (pool)": lambda: events.stats_columns(recent_ids),
        "get_videos (a page's cards)": lambda: catalog.get_videos(recent_ids[:20]),
        "get_stats (search's counts)": lambda: events.get_stats(recent_ids[:pool]),
        "search": lambda: search.search("dance"),
        "recent_labels (trending's windows)": lambda: catalog.recent_labels(
            limit=trending.config.max_videos, since=datetime.now(UTC) - window
        ),
        "trending hashtags": lambda: trending.top("hashtag", now=datetime.now(UTC)),
    }
    # A baseline tree from before the columnar read has no such case.
    if hasattr(catalog, "recent_label_columns"):
        cases["recent_label_columns (trending's windows)"] = lambda: catalog.recent_label_columns(
            limit=trending.config.max_videos, since=datetime.now(UTC) - window
        )
    return cases


def _measure(runs: int) -> None:
    """Print each service case's :meth:`CallHolds.summary` as JSON."""
    cases = _service_cases()
    for call in cases.values():
        call()  # connections opened, kernels compiled
    # As the service after start-up: what is alive now is left out of collections.
    gc.collect()
    gc.freeze()
    summaries = {name: measure_holds(call, runs=runs).summary() for name, call in cases.items()}
    print(json.dumps(summaries))


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _source_path(tree: Path) -> str:
    folders = ["src", *(f"adapters/{name}/src" for name in _ADAPTERS), "examples/flask_app"]
    return os.pathsep.join(str(tree / folder) for folder in folders)


def _compare(rounds: int, runs: int, baseline: Path) -> None:
    """Seed a stack, then measure the ``baseline`` source tree's code and this tree's in
    turn, ``rounds`` times (the order swapped each round); print each measurement as a
    JSON line, then per case the medians of both and their ratio."""
    from reelrank_example.testing import ServiceStack

    here = Path(__file__).resolve().parents[1]
    trees = {"baseline": baseline.resolve(), "this tree": here}
    results: dict[str, list[dict[str, dict[str, float]]]] = {name: [] for name in trees}
    with (
        tempfile.TemporaryDirectory() as directory,
        ServiceStack(Path(directory), _CATALOG, bulk=True) as stack,
    ):
        for round_number in range(rounds):
            order = list(trees) if round_number % 2 == 0 else list(reversed(trees))
            for name in order:
                env = {**stack.env, "PYTHONPATH": _source_path(trees[name])}
                before = _loadavg()
                output = subprocess.run(
                    [sys.executable, __file__, "--measure", str(runs)],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                cases = json.loads(output)
                results[name].append(cases)
                line = {"round": round_number + 1, "code": name, "loadavg": before}
                print(json.dumps({**line, "loadavg after": _loadavg(), "cases": cases}))
    for case in results["baseline"][0]:
        medians = {
            name: {
                figure: statistics.median(measured[case][figure] for measured in runs_of)
                for figure in ("hold_p50_ms", "hold_max_ms", "cpu_p50_ms", "collections")
            }
            for name, runs_of in results.items()
        }
        old, new = medians["baseline"], medians["this tree"]
        print(
            f"{case}: longest hold p50 {old['hold_p50_ms']:.2f} -> {new['hold_p50_ms']:.2f} ms, "
            f"max {old['hold_max_ms']:.2f} -> {new['hold_max_ms']:.2f} ms, thread CPU "
            f"{old['cpu_p50_ms']:.2f} -> {new['cpu_p50_ms']:.2f} ms "
            f"({new['cpu_p50_ms'] / old['cpu_p50_ms']:.2f}x), collections "
            f"{old['collections']:.0f} -> {new['collections']:.0f} (medians over rounds)"
        )


_ADAPTERS = ("reelrank-postgres", "reelrank-redis", "reelrank-clickhouse")
# The capacity runs' catalog (bench_http.py at REELRANK_BENCH_HTTP_VIDEOS=100000).
_CATALOG = {
    "REELRANK_VIDEOS": "100000",
    "REELRANK_PENDING_VIDEOS": "0",
    "REELRANK_USERS": "2000",
    "REELRANK_EVENTS": "100000",
    "REELRANK_CREATORS": "1000",
}


def main() -> None:
    """``--measure RUNS``: measure the stack ``REELRANK_*`` names with the code on
    ``PYTHONPATH``; ``ROUNDS RUNS BASELINE_TREE``: compare a baseline source tree with
    this one on a stack of their own (see the module's docstring)."""
    if sys.argv[1] == "--measure":
        _measure(int(sys.argv[2]))
    else:
        _compare(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))


if __name__ == "__main__":
    main()
