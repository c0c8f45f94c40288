"""The reels service at the HTTP level: gunicorn, 2 workers, real PostgreSQL, ClickHouse, Redis.

Two load tools, each in a process of its own:

* **wrk** (closed loop, C) measures saturation throughput: of a bare Flask endpoint
  under the same gunicorn settings (the baseline, :func:`reelrank_example.testing.bare_app`)
  and of cached feed pages for Zipf-distributed users. wrk costs little CPU per
  request, so on 2 cores it takes the least from the server it measures.
* **the open-loop mixed workload** of :mod:`reelrank_example.testing` (one asyncio
  event loop over keep-alive connections, reading only the status, the headers and
  the bodies it uses) steps the *offered* rate: requests leave on a Poisson
  schedule whatever the server's pace and latency counts from the scheduled time, so
  a queue shows in the percentiles (wrk's closed loop would hide it, and wrk cannot
  hold a fixed rate). It scripts each request from the last answers: users drawn
  from a Zipf law, feed paging with the cursor the user got (geometric depth, mean
  2.5 pages), watches, likes and shares at one per five feed requests (with
  Idempotency-Keys), search and trending. Its own CPU is reported.

Reported per step: the achieved rate (successful answers per second: a 503 refusal is
an error, not a served request), p50/p95/p99 per endpoint (feed pages split by their
``Cache-Status``: hit or miss; searches by theirs: whether the query's text matches were
reused), the errors by endpoint and kind, the cache hit rate (the pages the
service served from a cached snapshot, from ``/metrics``), the service's CPU per
request, and which p99 goals hold (cache-hit feed 10 ms, cache-miss feed 30 ms,
search 20 ms, no errors, 95% hits). The largest offered rate meeting the p99 goals
and the saturation figures as fractions of the bare baseline go to the summary.

The catalog is seeded with ``python -m reelrank_example seed --bulk`` (COPY through
:func:`reelrank_postgres.bulk_load`, events in batches). ClickHouse's statistics are
rolled up as the deployment's CronJob does (``deploy/k8s/cronjob-fold-stats.yaml``):
``python -m reelrank_example fold-stats`` in a process of its own, once over the
seeded events before the load (with a watermark past their last arrival bucket), then
every ``REELRANK_BENCH_HTTP_FOLD_SECONDS`` (default: the CronJob's 300 s) while the
load runs; quick mode folds once only, unless that variable is set. ``0`` turns the
roll-up off, for a comparison with every stats read merging every state. The folds,
when they ran and how long they took, are printed. Quick mode
(``REELRANK_BENCH_QUICK=1``, in CI): a 2,000-video catalog, two short steps. Full mode
on a quiet machine: 1,000,000 videos and 2,000 users by default
(``REELRANK_BENCH_HTTP_VIDEOS`` and ``REELRANK_BENCH_HTTP_USERS`` override them)::

    python -m pytest benchmarks/bench_http.py -s -p no:cacheprovider

To profile the service under one steady load, ``REELRANK_BENCH_HTTP_HOLD=SECONDS``
replaces the steps by one step held that long at ``REELRANK_BENCH_HTTP_RATE`` requests/s
(default: the first step's rate), and ``REELRANK_BENCH_HTTP_PROFILE=DIR`` samples both
gunicorn workers with ``py-spy record --format raw`` (100 Hz, threads doing work only)
through each measured step, once ``/healthz/startup`` answered 200 and the warm-up step
is over, into ``DIR/step<N>-worker<I>.txt``, with the step's figures in
``DIR/step<N>.json``; ``benchmarks/profile_areas.py DIR`` folds them into areas::

    REELRANK_BENCH_HTTP_VIDEOS=100000 REELRANK_BENCH_HTTP_HOLD=60 \\
    REELRANK_BENCH_HTTP_RATE=50 REELRANK_BENCH_HTTP_PROFILE=/tmp/profile \\
        python -m pytest benchmarks/bench_http.py -s -p no:cacheprovider

``REELRANK_BENCH_HTTP_SERVICE_SETTINGS`` gives the measured service settings of its
own (``NAME=VALUE`` pairs, comma-separated), to compare a setting's values run by run
(this process's ``REELRANK_*`` variables never reach the service)::

    REELRANK_BENCH_HTTP_VIDEOS=100000 \
    REELRANK_BENCH_HTTP_SERVICE_SETTINGS=REELRANK_SEARCH_WAITS_FOR_UNKNOWN_COUNTS=false \
        python -m pytest benchmarks/bench_http.py -s -p no:cacheprovider

``REELRANK_BENCH_HTTP_WORKERS`` and ``REELRANK_BENCH_HTTP_THREADS`` set gunicorn's
processes and threads per process (default 2 and 8, the deployment's), for the service
and the bare baseline alike::

    REELRANK_BENCH_HTTP_VIDEOS=100000 REELRANK_BENCH_HTTP_WORKERS=4 \\
    REELRANK_BENCH_HTTP_THREADS=2 python -m pytest benchmarks/bench_http.py -s -p no:cacheprovider

Wall-clock figures on a shared machine mostly measure waiting for a core: every
figure is printed with the load average next to it.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import QUICK, SUMMARY

EXAMPLE_ROOT = Path(__file__).resolve().parents[1] / "examples" / "flask_app"
sys.path.insert(0, str(EXAMPLE_ROOT))

pytest.importorskip("reelrank_redis.testing")
pytest.importorskip("reelrank_clickhouse.testing")
pytest.importorskip("reelrank_postgres.testing")

from reelrank_clickhouse.testing import find_clickhouse_server  # noqa: E402
from reelrank_example import issue_token  # noqa: E402
from reelrank_example.testing import (  # noqa: E402
    SECRET,
    Gunicorn,
    LoadRecord,
    LoadSpec,
    ServiceStack,
    get,
    percentile,
    read_records,
    run_load_process,
    tally,
)
from reelrank_postgres.testing import find_postgres_bin  # noqa: E402
from reelrank_redis.testing import find_redis_server  # noqa: E402

if None in (find_postgres_bin(), find_redis_server(), find_clickhouse_server()):
    pytest.skip("PostgreSQL, ClickHouse and Redis are needed", allow_module_level=True)
if shutil.which("wrk") is None:
    pytest.skip("wrk is not installed (Debian package wrk)", allow_module_level=True)

# Seeding the full run's catalog alone outlasts the suite's 300 s default.
pytestmark = pytest.mark.timeout(600 if QUICK else 7_200)

VIDEOS = 2_000 if QUICK else int(os.environ.get("REELRANK_BENCH_HTTP_VIDEOS", "1000000"))
# The users the load draws from (Zipf): the feeds of those active in the last day are
# warmed at start-up, as a deployment's would be.
USERS = 40 if QUICK else int(os.environ.get("REELRANK_BENCH_HTTP_USERS", "2000"))
CATALOG = {
    "REELRANK_VIDEOS": str(VIDEOS),
    "REELRANK_PENDING_VIDEOS": "0",
    "REELRANK_USERS": str(USERS),
    "REELRANK_EVENTS": str(2_000 if QUICK else min(VIDEOS, 1_000_000)),
    "REELRANK_CREATORS": str(10 if QUICK else min(10_000, max(30, VIDEOS // 100))),
}
# Stepped up until the service no longer keeps up (successful answers under 80% of
# offered). Full mode starts low enough to find a rate meeting the p99 goals.
RATES: tuple[float, ...] = (
    (20.0, 40.0) if QUICK else (10.0, 25.0, 50.0, 100.0, 150.0, 200.0, 300.0, 400.0, 500.0, 600.0)
)
STEP_SECONDS = 3.0 if QUICK else 20.0
# A full step lasts long enough for this many requests: at 20 s, a step at 10 requests/s
# held about 140 cache hits, whose p99 was the second slowest one.
STEP_REQUESTS = 0 if QUICK else int(os.environ.get("REELRANK_BENCH_HTTP_STEP_REQUESTS", "1000"))
HOLD_SECONDS = float(os.environ.get("REELRANK_BENCH_HTTP_HOLD", "0"))
if HOLD_SECONDS > 0:
    RATES = (float(os.environ.get("REELRANK_BENCH_HTTP_RATE", RATES[0])),)
    STEP_SECONDS = HOLD_SECONDS
    STEP_REQUESTS = 0


def _step_seconds(rate: float) -> float:
    """How long the step at ``rate`` runs: ``STEP_SECONDS``, or longer for
    ``STEP_REQUESTS`` requests."""
    return max(STEP_SECONDS, STEP_REQUESTS / rate)


PROFILE_DIR = os.environ.get("REELRANK_BENCH_HTTP_PROFILE")
WARMUP_SECONDS = 2.0 if QUICK else 10.0
WRK_SECONDS = 3 if QUICK else 15
WRK_CONNECTIONS = 16
GOALS_MS = {"feed hit": 10.0, "feed miss": 30.0, "search": 20.0}
HIT_RATE_GOAL = 0.95
# The deployment rolls the statistics up every five minutes (its CronJob's schedule);
# 0: never, so that every stats read merges every state.
_FOLD_SETTING = os.environ.get("REELRANK_BENCH_HTTP_FOLD_SECONDS")
FOLD_SECONDS = float(_FOLD_SETTING or "300")
FOLDING = FOLD_SECONDS > 0
# Quick mode's steps last seconds: one fold after seeding, unless an interval is set.
PERIODIC_FOLD_SECONDS = FOLD_SECONDS if FOLDING and (not QUICK or _FOLD_SETTING) else 0.0
# Text of the event store's statements (reelrank_clickhouse/_event_store.py) telling a
# stats read's path apart in ``system.query_log``: only the read with a held roll-up
# asks for the arrival buckets' totals (``total_part``), and only the read merging every
# state sums the corrections by ``fixed_video AS a``.
HELD_READ_TEXT = "total_part"
MERGED_READ_TEXT = "fixed_video AS a, toUInt64"
# Service settings for the measured gunicorn (``REELRANK_*`` variables of this process
# are dropped from the service's environment), for comparing a setting's values in
# separate runs: ``NAME=VALUE`` pairs separated by commas, each name a service setting
# (``REELRANK_SEARCH_WAITS_FOR_UNKNOWN_COUNTS=false``, for example).
SERVICE_SETTINGS = dict(
    pair.strip().split("=", 1)
    for pair in os.environ.get("REELRANK_BENCH_HTTP_SERVICE_SETTINGS", "").split(",")
    if pair.strip()
)
if any(not name.startswith("REELRANK_") for name in SERVICE_SETTINGS):
    raise ValueError("REELRANK_BENCH_HTTP_SERVICE_SETTINGS names REELRANK_* settings only")
# gunicorn's processes and threads per process, for the measured service and the bare
# baseline alike (the deployment's defaults: 2 workers of 8 threads).
WORKERS = int(os.environ.get("REELRANK_BENCH_HTTP_WORKERS", "2"))
THREADS = int(os.environ.get("REELRANK_BENCH_HTTP_THREADS", "8"))


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@dataclass
class Step:
    offered: float
    started: float
    """Wall-clock time the step's load process was started."""
    achieved: float
    """Successful (2xx) answers per second."""
    requests: int
    errors: int
    hit_rate: float
    cpu_ms_per_request: float
    generator_cpu_ms_per_request: float
    percentiles: dict[str, tuple[int, float, float, float]] = field(default_factory=dict)
    loadavg: str = ""
    error_kinds: dict[str, dict[str, int]] = field(default_factory=dict)
    """Errors by endpoint, then by kind: the status, or ``no answer`` (the connection
    failed or the client's timeout passed)."""
    misses_by_reason: dict[str, int] = field(default_factory=dict)
    """Feed pages ranked for the request in the step, by why the cache missed."""
    refills: dict[str, int] = field(default_factory=dict)
    """Refills ahead in the step, by outcome."""
    affinity_reads: int = 0
    """``get_affinities`` calls in the step (requests' and refills' rankings), as the
    guards they pass count them: twice each in the example service, by the feed's guard
    and by the event store's :class:`~reelrank.GuardedStore`."""
    pages: int = 0
    """Feed pages the service served in the step, cut from a cached snapshot or ranked."""
    cached_pages: int = 0
    """Of those, pages cut from a cached snapshot (``hit_rate`` is their share)."""
    ended_pages: int = 0
    """Of those, pages answered with a held end of the feed (a user shown every
    candidate they had): cache hits that carry no items."""
    app_split: dict[str, AppSplit] = field(default_factory=dict)
    """Per group of :func:`_percentiles` (feed and search by cache status, events by
    kind), where the answered requests' time went: in the app's handling or outside it."""
    redis_slow: dict[str, tuple[int, float]] = field(default_factory=dict)
    """Redis commands that ran ``REDIS_SLOW_MS`` or longer inside the server during the
    step (its ``SLOWLOG``: the command's own time, not waiting for a core or the
    network), by command (a script by the first characters of its digest): how many,
    and the longest in ms."""

    @property
    def hit_rate_without_ended(self) -> float:
        """The hit rate over the pages that were not a held end of the feed."""
        pages = self.pages - self.ended_pages
        return (self.cached_pages - self.ended_pages) / pages if pages else float("nan")

    @property
    def meets_p99_goals(self) -> bool:
        return (
            all(
                name in self.percentiles and self.percentiles[name][3] < goal
                for name, goal in GOALS_MS.items()
            )
            and self.achieved >= 0.9 * self.offered
        )

    @property
    def meets_all_goals(self) -> bool:
        return self.meets_p99_goals and self.errors == 0 and self.hit_rate >= HIT_RATE_GOAL


@dataclass
class AppSplit:
    """Where a group of requests' time went, from the service's ``request`` and
    gunicorn's ``access`` log lines joined to the load client's records by
    ``X-Request-ID``: p50 / p99 in ms.

    ``client`` is the load client's latency (from the scheduled send); ``app`` the app's
    handling (``latency_ms``: the ``before_request`` hook of the service's logging to its
    ``after_request``), of which ``cpu`` is the handling thread's CPU (``cpu_ms``) and
    ``store`` its waits for store calls (``store_ms``), and ``run_queue`` its waits for
    a core (``run_queue_ms``, inside store calls too); the rest of ``app`` is waiting
    for a lock or the interpreter lock. ``sending`` is the client's own wait before it
    wrote the request (a free connection, its event loop: ``LoadRecord.send_delay``),
    ``wsgi`` gunicorn's own handling around the app's (its ``access`` line's
    ``latency_ms`` less the app's: the WSGI environ, Flask around the app's hooks,
    writing the answer), ``client_queue`` the client's own wait for a core while the
    request was out (``LoadRecord.client_run_queue``), and ``outside`` the rest of
    ``client - app`` per request: the socket, gunicorn's accepting and parsing, waiting
    for a thread and the interpreter lock to start on, the client's reading the
    answer. ``served`` is ``client`` less the client's own wait for a core, which a
    client on cores of its own would not have waited (the service's time stays as
    measured, on cores it shared with the client). ``slowest_*`` are medians over the
    requests at or above the client's p99, and ``slowest_calls`` counts their longest
    store calls (``slowest_store_call``).
    """

    joined: int
    client: tuple[float, float]
    served: tuple[float, float]
    app: tuple[float, float]
    cpu: tuple[float, float]
    store: tuple[float, float]
    run_queue: tuple[float, float]
    sending: tuple[float, float]
    wsgi: tuple[float, float]
    client_queue: tuple[float, float]
    outside: tuple[float, float]
    slowest: int
    slowest_app: float
    slowest_cpu: float
    slowest_store: float
    slowest_run_queue: float
    slowest_sending: float
    slowest_wsgi: float
    slowest_client_queue: float
    slowest_outside: float
    slowest_calls: dict[str, int]


@dataclass
class Fold:
    """One run of ``python -m reelrank_example fold-stats``."""

    started: float
    """Wall-clock time (``time.time()``) the command started."""
    seconds: float
    """How long the command took, the interpreter's start included."""
    until: str
    """The ``--until`` watermark given, or ``""`` for the command's default."""
    output: str
    loadavg: str


@dataclass
class Results:
    bare_rps: float = 0.0
    bare_loadavg: str = ""
    feed_rps: float = 0.0
    feed_p99_ms: float = 0.0
    feed_loadavg: str = ""
    seed_seconds: float = 0.0
    steps: list[Step] = field(default_factory=list)
    load_started: float = 0.0
    """Wall-clock time the warm-up step started: fold times are counted from there."""
    folds: list[Fold] = field(default_factory=list)
    seed_fold_wait_seconds: float = 0.0
    """How long the first fold waited for the seed's last arrival bucket to end."""
    stats_reads: dict[str, int] = field(default_factory=dict)
    warmed_snapshots: int = 0
    """Snapshots start-up warming stored, summed over the workers (which warm at once, so
    a user may count twice)."""
    """Stats reads from the warm-up on, by path (quick mode, from ``system.query_log``)."""


RESULTS = Results()


class StatsFolds:
    """The deployment's ``fold-stats`` CronJob for the benchmark's stack.

    Each fold is ``python -m reelrank_example fold-stats`` in a process of its own, as the
    CronJob runs it, so the service's workers find a new roll-up as a deployment's do.
    :meth:`start` begins the first fold, over the seeded events, in the background;
    :meth:`wait_for_first` waits for it; :meth:`every` then folds every ``seconds``
    (with the command's default watermark, as the CronJob) until :meth:`stop`.
    """

    def __init__(self, stack: ServiceStack) -> None:
        self.stack = stack
        self.folds: list[Fold] = []
        self.wait_seconds = 0.0
        """How long the first fold waited for the seed's last arrival bucket to end."""
        self._failure: BaseException | None = None
        self._stopping = threading.Event()
        self._first = threading.Thread(target=self._guarded, args=(self._fold_seed,))
        self._periodic: threading.Thread | None = None

    def start(self) -> None:
        self._first.start()

    def wait_for_first(self) -> None:
        self._first.join()
        self._raise_failure()

    def every(self, seconds: float) -> None:
        self._periodic = threading.Thread(target=self._guarded, args=(self._fold_every, seconds))
        self._periodic.start()

    def stop(self) -> None:
        """Stop folding; a fold under way is waited for (the CronJob's runs finish)."""
        self._stopping.set()
        for thread in (self._first, self._periodic):
            if thread is not None and thread.ident is not None:
                thread.join()
        self._raise_failure()

    def _fold_seed(self) -> None:
        watermark = self.stack.wait_for_seed_watermark(self._stopping)
        if watermark is None:
            return
        until, self.wait_seconds = watermark
        self._fold("--until", until.isoformat())

    def _fold_every(self, seconds: float) -> None:
        while not self._stopping.wait(seconds):
            self._fold()

    def _fold(self, *args: str) -> None:
        started = time.time()
        output = self.stack.command("fold-stats", *args).strip()
        self.folds.append(
            Fold(started, time.time() - started, args[-1] if args else "", output, _loadavg())
        )

    def _guarded(self, run: Callable[..., None], *args: Any) -> None:
        try:
            run(*args)
        except BaseException as exc:  # raised again in the test's thread
            self._failure = exc

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceStack]:
    # Quick mode checks in ClickHouse's query log which path the stats reads took; the
    # log costs the server a little, so full runs measure without it.
    with ServiceStack(
        tmp_path_factory.mktemp("stack"), CATALOG, bulk=True, clickhouse_query_log=QUICK
    ) as started:
        RESULTS.seed_seconds = started.seed_seconds
        yield started


@pytest.fixture(scope="module")
def folds(stack: ServiceStack) -> Iterator[StatsFolds | None]:
    """The roll-up of the seeded events, begun right after seeding (``None`` when folding
    is off); its wait for the seed's last arrival bucket to end overlaps the bare
    baseline and the service's start."""
    if not FOLDING:
        yield None
        return
    started = StatsFolds(stack)
    started.start()
    try:
        yield started
    finally:
        started.stop()


def _stats_reads(stack: ServiceStack, since: float) -> dict[str, int]:
    """The service's stats reads that started at or after ``since`` (wall-clock, rounded
    up to the second), by path: with the held roll-up, or merging every state."""
    stack.clickhouse.execute("SYSTEM FLUSH LOGS")
    held, merged = stack.clickhouse_rows(
        f"""SELECT countIf(query LIKE '%{HELD_READ_TEXT}%'),
       countIf(query LIKE '%{MERGED_READ_TEXT}%')
FROM system.query_log
WHERE type = 2 AND query_start_time >= toDateTime({math.ceil(since)})
  AND query NOT LIKE '%system.query_log%'"""
    )[0]
    return {"held roll-up": int(held), "merging every state": int(merged)}


def _wrk(url: str, seconds: int, script: Path | None = None) -> dict[str, float]:
    command = ["wrk", "-t2", f"-c{WRK_CONNECTIONS}", f"-d{seconds}s", "--latency", url]
    if script is not None:
        command[1:1] = ["-s", str(script)]
    output = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", output)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "rps": rps,
        "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan"),
        "errors": float(non_2xx.group(1)) if non_2xx else 0.0,
    }


def _zipf_script(directory: Path, draws: int = 5_000) -> Path:
    """A wrk script asking for the first feed page of Zipf-drawn users, with their tokens."""
    import random

    rng = random.Random(7)
    users = list(range(100_001, 100_001 + USERS))
    weights = [rank**-1.1 for rank in range(1, USERS + 1)]
    drawn = rng.choices(users, weights, k=draws)
    tokens = ",\n".join(f'"Bearer {issue_token(SECRET, user)}"' for user in drawn)
    script = directory / "feeds.lua"
    script.write_text(
        f"local tokens = {{\n{tokens}\n}}\n"
        "local n = 0\n"
        "request = function()\n"
        "  n = n % #tokens + 1\n"
        '  return wrk.format("GET", "/api/v1/reels?limit=10", '
        '{["Authorization"] = tokens[n]})\n'
        "end\n"
    )
    return script


_FEED_COUNTERS = re.compile(
    r"^reelrank_(?:feed_)?(pages|cache_misses|refills|warming_users)_total"
    r'\{(?:source|reason|outcome)="(\w+)"\} (\S+)$',
    re.M,
)
# The feed's affinity reads (every outcome), counted as ``affinity_reads/<outcome>``;
# the multiprocess exposition sorts the labels.
_AFFINITY_READS = re.compile(
    r'^reelrank_store_calls_total\{operation="get_affinities",outcome="(\w+)",'
    r'store="events"\} (\S+)$',
    re.M,
)
# Pages cut from a held end-of-feed answer (every one of them a cache hit).
_ENDED_PAGES = re.compile(r"^reelrank_feed_ended_pages_total (\S+)$", re.M)


def _feed_counters(url: str) -> dict[str, int]:
    """Feed pages by source, misses by reason, refills by outcome and users warmed
    (``pages/cache``, ``cache_misses/used_up``, ``refills/stored``,
    ``warming_users/warmed``...), summed over the workers.

    Each worker keeps its own counters, and a scrape reaches one worker; the load is
    stopped while scraping, so each worker shows one fixed set of counts and the
    distinct sets seen over a few scrapes sum to the service's totals.
    """
    seen: set[tuple[tuple[str, int], ...]] = set()
    for _ in range(16):
        text = get(url + "/metrics")[2]
        counts: dict[str, int] = {
            f"{family}/{label}": int(float(value))
            for family, label, value in _FEED_COUNTERS.findall(text)
        }
        for outcome, value in _AFFINITY_READS.findall(text):
            counts[f"affinity_reads/{outcome}"] = int(float(value))
        for value in _ENDED_PAGES.findall(text):
            counts["ended_pages/held"] = int(float(value))
        seen.add(tuple(sorted(counts.items())))
    totals: dict[str, int] = {}
    for worker in seen:
        for name, value in worker:
            totals[name] = totals.get(name, 0) + value
    return totals


def _by_label(counts: dict[str, int], family: str) -> dict[str, int]:
    return {
        name.partition("/")[2]: value
        for name, value in sorted(counts.items())
        if name.startswith(family + "/") and value
    }


def _percentiles(records: list[LoadRecord]) -> dict[str, tuple[int, float, float, float]]:
    groups: dict[str, list[float]] = {}
    for record in records:
        group = _group(record)
        if group is not None:
            groups.setdefault(group, []).append(record.latency * 1000)
        groups.setdefault(record.endpoint, []).append(record.latency * 1000)
    return {
        name: (len(values), percentile(values, 0.5), percentile(values, 0.95),
               percentile(values, 0.99))
        for name, values in sorted(groups.items())
    }  # fmt: skip


def _group(record: LoadRecord) -> str | None:
    """The :func:`_percentiles` group of an answered feed page or search."""
    name = record.endpoint
    if (name.startswith("feed") or name == "search") and record.status == 200:
        return f"{name.split('_')[0]} {record.cache}"
    return None


_EVENTS = ("watch", "like", "share")


def _app_split(records: list[LoadRecord], log: Path) -> dict[str, AppSplit]:
    """Join ``records`` to the service's ``request`` and gunicorn's ``access`` lines in
    ``log`` by request id."""
    wanted = {record.request_id: record for record in records if record.request_id}
    handled: dict[str, tuple[float, float, float, float, str]] = {}
    served: dict[str, float] = {}
    with log.open(errors="replace") as lines:
        for line in lines:
            if line.startswith('{"event": "access"'):
                fields = json.loads(line)
                if fields.get("request_id") in wanted:
                    served[fields["request_id"]] = fields["latency_ms"]
                continue
            if not line.startswith('{"event": "request"'):
                continue
            fields = json.loads(line)
            rid = fields.get("request_id")
            if rid in wanted and "cpu_ms" in fields:
                handled[rid] = (
                    fields["latency_ms"],
                    fields["cpu_ms"],
                    fields["store_ms"],
                    fields.get("run_queue_ms", 0.0),
                    fields.get("slowest_store_call", "none"),
                )
    # Per group: each request's times in ms, in the order of _SPLIT_COLUMNS, and its
    # longest store call.
    groups: dict[str, list[tuple[tuple[float, ...], str]]] = {}
    for rid, (app_ms, cpu_ms, store_ms, run_queue_ms, call) in handled.items():
        record = wanted[rid]
        # Feed pages and searches by cache status; events (acknowledged) by kind.
        group = _group(record) or (record.endpoint if record.endpoint in _EVENTS else None)
        if group is not None and 200 <= record.status < 300:
            client_ms, sending_ms = record.latency * 1000, record.send_delay * 1000
            gunicorn_ms = served.get(rid, app_ms)
            client_queue_ms = record.client_run_queue * 1000
            times = (
                client_ms, app_ms, cpu_ms, store_ms, run_queue_ms, sending_ms,
                gunicorn_ms - app_ms, client_queue_ms,
                client_ms - sending_ms - gunicorn_ms - client_queue_ms,
            )  # fmt: skip
            groups.setdefault(group, []).append((times, call))
    split = {}
    for group, rows in sorted(groups.items()):
        columns = _by_column(times for times, _ in rows)
        client, own_wait = columns["client"], columns["client_queue"]
        threshold = percentile(client, 0.99)
        slowest = [(times, call) for times, call in rows if times[0] >= threshold]
        slow = _by_column(times for times, _ in slowest)
        ends: dict[str, Any] = {name: _p50_p99(values) for name, values in columns.items()}
        ends.update(
            (f"slowest_{name}", percentile(values, 0.5))
            for name, values in slow.items()
            if name != "client"
        )
        split[group] = AppSplit(
            joined=len(rows),
            served=_p50_p99([total - own for total, own in zip(client, own_wait, strict=True)]),
            slowest=len(slowest),
            slowest_calls=dict(Counter(call for _, call in slowest).most_common()),
            **ends,
        )
    return split


_SPLIT_COLUMNS = (
    "client", "app", "cpu", "store", "run_queue", "sending", "wsgi", "client_queue", "outside",
)  # fmt: skip
"""The times :func:`_app_split` keeps per request, named as :class:`AppSplit`'s fields."""


def _by_column(rows: Iterable[tuple[float, ...]]) -> dict[str, list[float]]:
    """Rows of times in the order of ``_SPLIT_COLUMNS``, as one list per column."""
    return {
        name: list(column)
        for name, column in zip(_SPLIT_COLUMNS, zip(*rows, strict=True), strict=True)
    }


REDIS_SLOW_MS = 1.0
"""Redis commands that took this long or longer inside the server are counted per step."""


def _redis_slowlog_reset(client: Any) -> None:
    client.config_set("slowlog-log-slower-than", int(REDIS_SLOW_MS * 1000))
    client.config_set("slowlog-max-len", 10_000)
    client.slowlog_reset()


def _redis_slow_commands(client: Any) -> dict[str, tuple[int, float]]:
    """The slow log since :func:`_redis_slowlog_reset`, by command: count, longest ms."""
    slow: dict[str, tuple[int, float]] = {}
    for entry in client.slowlog_get(10_000):
        words = entry["command"].split()
        name = words[0].decode().upper() if words else "?"
        if name in ("EVALSHA", "EVALSHA_RO") and len(words) > 1:
            name = f"{name} {words[1].decode()[:8]}"
        count, longest = slow.get(name, (0, 0.0))
        slow[name] = (count + 1, max(longest, entry["duration"] / 1000.0))
    return dict(sorted(slow.items(), key=lambda item: -item[1][0]))


def _p50_p99(values: list[float]) -> tuple[float, float]:
    return percentile(values, 0.5), percentile(values, 0.99)


def _py_spy(service: Gunicorn, seconds: float, name: str) -> list[subprocess.Popen[bytes]]:
    """``py-spy record`` on each worker for ``seconds``, into ``PROFILE_DIR``."""
    if PROFILE_DIR is None:
        return []
    out = Path(PROFILE_DIR)
    out.mkdir(parents=True, exist_ok=True)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    samplers = []
    for index, pid in enumerate(service.worker_pids(), start=1):
        command = [
            py_spy, "record", "--pid", str(pid), "--rate", "100", "--format", "raw",
            "--nonblocking", "--duration", str(round(seconds)),
            "--output", str(out / f"{name}-worker{index}.txt"),
        ]  # fmt: skip
        with (out / f"{name}-worker{index}.log").open("wb") as log:
            samplers.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
    return samplers


def _step(
    service: Gunicorn,
    directory: Path,
    rate: float,
    seconds: float,
    seed: int,
    name: str = "",
    redis_client: Any = None,
) -> Step:
    if redis_client is not None:
        _redis_slowlog_reset(redis_client)
    counters_before = _feed_counters(service.url)
    cpu_before = service.cpu_seconds()
    started = time.time()
    spec = LoadSpec(
        base_url=service.url,
        rate=rate,
        duration=seconds,
        users=USERS,
        videos=VIDEOS,
        seed=seed,
        event_key_prefix=f"bench-{seed}",
        connections=64,
        retry_seconds=0.0,
    )
    process = run_load_process(spec, directory)
    samplers = _py_spy(service, seconds, name) if name else []
    assert process.wait(timeout=seconds + 120) == 0, (directory / "load.log").read_text()
    for sampler in samplers:
        sampler.wait(timeout=60)
    loadavg = _loadavg()
    cpu = service.cpu_seconds() - cpu_before
    counters_after = _feed_counters(service.url)
    records, generator = read_records(directory / "load.json")
    counted_in_step = {
        name: value - counters_before.get(name, 0) for name, value in counters_after.items()
    }
    cached = counted_in_step.get("pages/cache", 0)
    pages = cached + counted_in_step.get("pages/ranked", 0)
    counted = tally(records)
    span = counted.span_seconds
    step = Step(
        offered=rate,
        started=started,
        achieved=counted.succeeded_per_second,
        requests=counted.requests,
        errors=counted.error_count,
        error_kinds=counted.errors,
        hit_rate=cached / pages if pages else float("nan"),
        misses_by_reason=_by_label(counted_in_step, "cache_misses"),
        refills=_by_label(counted_in_step, "refills"),
        affinity_reads=sum(_by_label(counted_in_step, "affinity_reads").values()),
        pages=pages,
        cached_pages=cached,
        ended_pages=counted_in_step.get("ended_pages/held", 0),
        cpu_ms_per_request=1000 * cpu / len(records),
        generator_cpu_ms_per_request=1000 * generator["cpu_seconds"] / len(records),
        percentiles=_percentiles(records),
        loadavg=loadavg,
        app_split=_app_split(records, service.log),
        redis_slow={} if redis_client is None else _redis_slow_commands(redis_client),
    )
    if samplers:
        assert PROFILE_DIR is not None
        by_endpoint: dict[str, int] = {}
        for record in records:
            by_endpoint[record.endpoint] = by_endpoint.get(record.endpoint, 0) + 1
        figures = {"service_cpu_seconds": cpu, "span_seconds": span, "requests": by_endpoint}
        Path(PROFILE_DIR, f"{name}.json").write_text(json.dumps({**asdict(step), **figures}))
    return step


def test_bare_flask_baseline(stack: ServiceStack, folds: StatsFolds | None, tmp_path: Path) -> None:
    """Saturation throughput of a trivial endpoint under the service's gunicorn settings
    (``folds`` starts here, so the first fold's wait overlaps this test)."""
    app = "reelrank_example.testing:bare_app()"
    with Gunicorn(
        app,
        stack.env,
        tmp_path / "bare.log",
        workers=WORKERS,
        threads=THREADS,
        ready_path="/ping",
    ) as bare:
        measured = _wrk(bare.url + "/ping", WRK_SECONDS)
    RESULTS.bare_rps = measured["rps"]
    RESULTS.bare_loadavg = _loadavg()
    assert measured["errors"] == 0
    assert measured["rps"] > 0


def test_service_under_mixed_load(
    stack: ServiceStack, folds: StatsFolds | None, tmp_path: Path
) -> None:
    """The mixed workload at each offered rate, then cached-feed saturation (wrk); the
    statistics rolled up once before the warm-up and periodically during the load."""
    log = tmp_path / "service.log"
    env = {**stack.env, "REELRANK_WORKERS": str(WORKERS), **SERVICE_SETTINGS}
    if SERVICE_SETTINGS:
        print(f"HTTP: service settings {SERVICE_SETTINGS}")
    print(f"HTTP: gunicorn {WORKERS} workers of {THREADS} threads")
    app = "reelrank_example:create_default_app()"
    with Gunicorn(app, env, log, workers=WORKERS, threads=THREADS) as service:
        if folds is not None:
            folds.wait_for_first()
            if PERIODIC_FOLD_SECONDS:
                folds.every(PERIODIC_FOLD_SECONDS)
        RESULTS.load_started = time.time()
        RESULTS.warmed_snapshots = _feed_counters(service.url).get("warming_users/warmed", 0)
        _step(service, tmp_path / "warmup", RATES[0], WARMUP_SECONDS, seed=0)
        with stack.redis.client() as redis_client:  # reads each step's slow log
            for number, rate in enumerate(RATES, start=1):
                step = _step(
                    service,
                    tmp_path / f"step{number}",
                    rate,
                    _step_seconds(rate),
                    number,
                    f"step{number}",
                    redis_client=redis_client,
                )
                RESULTS.steps.append(step)
                assert step.requests > 0
                # Every answered feed page and search has its line in the service's log.
                for group, split in step.app_split.items():
                    if group not in _EVENTS:  # (the events' percentiles count refusals too)
                        assert split.joined == step.percentiles[group][0], group
                if step.achieved < 0.8 * rate:
                    break  # saturated: higher offered rates would only queue or be refused
        # Last: wrk's thousands of pages for the same users mark much of the candidates
        # seen, which would leave the mixed steps fewer cache hits than real users get.
        feeds = _wrk(service.url + "/api/v1/reels?limit=10", WRK_SECONDS, _zipf_script(tmp_path))
        RESULTS.feed_rps, RESULTS.feed_p99_ms = feeds["rps"], feeds["p99_ms"]
        RESULTS.feed_loadavg = _loadavg()
        assert feeds["errors"] == 0
        if folds is not None:
            folds.stop()
            RESULTS.folds = folds.folds
            RESULTS.seed_fold_wait_seconds = folds.wait_seconds
    if QUICK:
        # Which path the stats reads took: after the fold, each worker holds the roll-up
        # and no read merges every state (an event that arrived before the watermark
        # after the fold would send them all back to the states).
        reads = _stats_reads(stack, RESULTS.load_started)
        RESULTS.stats_reads = reads
        if FOLDING:
            assert reads["held roll-up"] > 0 and reads["merging every state"] == 0, reads
        else:
            assert reads["held roll-up"] == 0 and reads["merging every state"] > 0, reads
    _summarise()


def _summarise() -> None:
    results = RESULTS
    bare = results.bare_rps
    SUMMARY.append(
        f"HTTP: catalog {VIDEOS} videos, {USERS} users (seeded in {results.seed_seconds:.0f} s)"
    )
    if not FOLDING:
        SUMMARY.append("HTTP: statistics never rolled up (REELRANK_BENCH_HTTP_FOLD_SECONDS=0)")
    elif results.seed_fold_wait_seconds:
        SUMMARY.append(
            f"HTTP: the first fold waited {results.seed_fold_wait_seconds:.1f} s for the "
            "seed's last arrival bucket to end"
        )
    for fold in results.folds:
        SUMMARY.append(f"HTTP: {_fold_line(fold, results)}")
    if results.stats_reads:
        SUMMARY.append(
            "HTTP: stats reads from the warm-up on (system.query_log): "
            + ", ".join(f"{count} {path}" for path, count in results.stats_reads.items())
        )
    if bare:
        SUMMARY.append(
            f"HTTP: bare Flask {bare:,.0f} req/s (load {results.bare_loadavg}); cached feed "
            f"pages {results.feed_rps:,.0f} req/s = {results.feed_rps / bare:.2f}x bare, "
            f"p99 {results.feed_p99_ms:.1f} ms (load {results.feed_loadavg})"
        )
    else:
        # The bare endpoint's test was deselected (``-k mixed``, a held step).
        SUMMARY.append("HTTP: bare Flask not measured in this run; no ratios to it")
    SUMMARY.append(
        f"HTTP: start-up warming stored {results.warmed_snapshots} snapshots "
        f"(the workers warm in turns; {USERS} users draw the load)"
    )
    for step in results.steps:
        goals = "all goals met" if step.meets_all_goals else (
            "p99 goals met" if step.meets_p99_goals else "goals missed")  # fmt: skip
        SUMMARY.append(
            f"HTTP: offered {step.offered:.0f} req/s{_of_bare(step.offered, bare)}: "
            f"achieved {step.achieved:.0f} served/s, {step.errors} errors, "
            f"hit rate {step.hit_rate:.1%}, "
            f"CPU {step.cpu_ms_per_request:.1f} ms/request (generator "
            f"{step.generator_cpu_ms_per_request:.1f}), {goals} (load {step.loadavg})"
        )
        if step.misses_by_reason or step.refills:
            misses = ", ".join(f"{n} {r}" for r, n in step.misses_by_reason.items()) or "none"
            refills = ", ".join(f"{n} {o}" for o, n in step.refills.items()) or "none"
            SUMMARY.append(
                f"HTTP:   cache misses: {misses}; refills ahead: {refills}; "
                f"affinity reads: {step.affinity_reads}; held ends of the feed: "
                f"{step.ended_pages} of {step.pages} pages (hit rate without them "
                f"{step.hit_rate_without_ended:.1%})"
            )
        for endpoint, kinds in step.error_kinds.items():
            listed = ", ".join(f"{count} {kind}" for kind, count in kinds.items())
            SUMMARY.append(f"HTTP:   errors {endpoint:<12} {listed}")
        for name, (count, p50, p95, p99) in step.percentiles.items():
            SUMMARY.append(
                f"HTTP:   {name:<12} n={count:<6} p50 {p50:7.1f} p95 {p95:7.1f} p99 {p99:7.1f} ms"
            )
        for name, split in step.app_split.items():
            SUMMARY.append(
                f"HTTP:   {name:<12} p50/p99 client {_ends(split.client)} (less its own "
                f"wait for a core {_ends(split.served)}), in the app "
                f"{_ends(split.app)} (its thread's CPU {_ends(split.cpu)}, stores "
                f"{_ends(split.store)}, run queue {_ends(split.run_queue)}), client's "
                f"wait to send {_ends(split.sending)}, gunicorn around the app "
                f"{_ends(split.wsgi)}, client's wait for a core "
                f"{_ends(split.client_queue)}, outside {_ends(split.outside)}; the "
                f"{split.slowest} slowest: in the app {split.slowest_app:.1f} (CPU "
                f"{split.slowest_cpu:.1f}, stores {split.slowest_store:.1f}, run queue "
                f"{split.slowest_run_queue:.1f}), client's wait to send "
                f"{split.slowest_sending:.1f}, gunicorn around the app "
                f"{split.slowest_wsgi:.1f}, client's wait for a core "
                f"{split.slowest_client_queue:.1f}, outside {split.slowest_outside:.1f} ms, "
                f"longest calls "
                f"{_calls(split.slowest_calls)} ({split.joined} joined)"
            )
        if step.redis_slow:
            listed = ", ".join(
                f"{command} x{count} (longest {longest:.1f} ms)"
                for command, (count, longest) in step.redis_slow.items()
            )
            SUMMARY.append(f"HTTP:   redis commands of {REDIS_SLOW_MS:g} ms or more: {listed}")
    meeting = [step.offered for step in results.steps if step.meets_p99_goals]
    best = f"{max(meeting):.0f} req/s{_of_bare(max(meeting), bare)}" if meeting else "none"
    SUMMARY.append(f"HTTP: largest offered rate meeting the p99 goals: {best}")
    out = os.environ.get("REELRANK_BENCH_HTTP_OUT")
    if out:
        Path(out).write_text(json.dumps(_as_json(results), indent=2))


def _calls(counts: dict[str, int]) -> str:
    return ", ".join(f"{call} x{count}" for call, count in counts.items())


def _ends(pair: tuple[float, float]) -> str:
    return f"{pair[0]:.1f}/{pair[1]:.1f}"


def _fold_line(fold: Fold, results: Results) -> str:
    """When a fold ran (from the warm-up's start, and in which step), how long it took."""
    at = fold.started - results.load_started if results.load_started else math.nan
    during = [step for step in results.steps if step.started <= fold.started]
    if not at >= 0:
        where = "before the warm-up"
    elif during:
        where = f"after the step offering {during[-1].offered:.0f} req/s began"
    else:
        where = "during the warm-up"
    watermark = f"--until {fold.until}" if fold.until else "default watermark"
    return (
        f"fold-stats ({watermark}) at {at:+.1f} s, {where}: {fold.seconds:.1f} s, "
        f"{fold.output} (load {fold.loadavg})"
    )


def _of_bare(rate: float, bare: float) -> str:
    """`` (0.005x bare)``, or nothing when the bare endpoint was not measured."""
    return f" ({rate / bare:.3f}x bare)" if bare else ""


def _as_json(results: Results) -> dict[str, Any]:
    return {
        "videos": VIDEOS,
        "users": USERS,
        "seed_seconds": results.seed_seconds,
        "fold_seconds": FOLD_SECONDS if FOLDING else 0,
        "folds": [fold.__dict__ for fold in results.folds],
        "stats_reads": results.stats_reads,
        "warmed_snapshots": results.warmed_snapshots,
        "bare_rps": results.bare_rps,
        "feed_rps": results.feed_rps,
        "feed_p99_ms": results.feed_p99_ms,
        "steps": [
            {**asdict(step), "meets_p99_goals": step.meets_p99_goals,
             "meets_all_goals": step.meets_all_goals,
             "hit_rate_without_ended": step.hit_rate_without_ended}
            for step in results.steps
        ],
    }  # fmt: skip
