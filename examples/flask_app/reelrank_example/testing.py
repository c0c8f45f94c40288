"""Real-process tools for the reels service: its stores, gunicorn, and an HTTP load.

* :class:`ServiceStack` starts PostgreSQL, ClickHouse and Redis with the adapters'
  throwaway servers on loopback ports, then migrates and seeds them through
  ``python -m reelrank_example``.
* :class:`Gunicorn` serves the service (or :func:`bare_app`, the baseline) from them,
  with 2 workers by default, in a process of its own.
* :class:`LoadSpec` and :func:`run_load` drive an *open-loop* mixed workload (requests
  are sent on a schedule, whatever the server's pace, and latency is counted from the
  scheduled time, so a stall shows in full) from one asyncio event loop over
  keep-alive connections, cheap per request so that it leaves the cores to the
  service it measures; ``python -m reelrank_example.testing SPEC.json OUT.json`` runs
  it in a process of its own.

The fault tests (``tests/test_service_faults.py``) and the HTTP load benchmark
(``benchmarks/bench_http.py``) are built on these. Needs the adapters with their
``testing`` modules and the servers they start (``scripts/test.sh`` installs them).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import http.client
import itertools
import json
import math
import os
import random
import select
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from flask import Flask, Response

from ._auth import issue_token
from ._request_costs import run_queue_ns
from ._services import FIRST_USER_ID, FIRST_VIDEO_ID
from ._settings import Settings

__all__ = [
    "Gunicorn",
    "LoadRecord",
    "LoadSpec",
    "LoadTally",
    "ServiceStack",
    "arrival_bucket_end",
    "bare_app",
    "percentile",
    "run_load",
    "run_load_process",
    "service_environment",
    "tally",
    "wait_for_load_start",
]

SECRET = "load-test-secret-" + "x" * 24
"""Auth secret of the stacks started here (tokens are signed with it)."""

_SEARCH_WORDS = (
    "dance", "comedy", "cooking", "travel", "fitness", "music", "pets",
    "easy hack", "daily routine", "epic fail", "secret trick", "makeup tutorial",
)  # fmt: skip
_TRENDING = ("/api/v1/reels/trending-hashtags?limit=10", "/api/v1/reels/trending-sounds?limit=10")
# The file a load process writes when its schedule starts (see wait_for_load_start).
_START_MARK = "load.started"
# Idle keep-alive connections are dropped before gunicorn closes them (--keep-alive 5).
_IDLE_RECONNECT_SECONDS = 2.0
_WATCH_BODIES = (b'{"completion": 0.25}', b'{"completion": 0.75}')


def service_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process of the service: this one's, without any
    ``REELRANK_*`` variable, with the source folders of reelrank, its adapters and this
    package first on ``PYTHONPATH``, and ``extra`` on top."""
    import reelrank

    modules = [reelrank, sys.modules[__package__ or "reelrank_example"]]
    for name in ("reelrank_postgres", "reelrank_redis", "reelrank_clickhouse"):
        with contextlib.suppress(ImportError):
            modules.append(__import__(name))
    folders = [str(Path(module.__file__ or "").resolve().parents[1]) for module in modules]
    env = {key: value for key, value in os.environ.items() if not key.startswith("REELRANK_")}
    env["PYTHONPATH"] = os.pathsep.join([*dict.fromkeys(folders), env.get("PYTHONPATH", "")])
    env.update(extra or {})
    return env


class ServiceStack:
    """PostgreSQL, ClickHouse and Redis for the service, migrated and seeded.

    ``catalog`` holds ``REELRANK_*`` seed settings (``REELRANK_VIDEOS``...); ``bulk``
    seeds with ``seed --bulk`` (COPY, for large catalogs); ``clickhouse_query_log``
    records every ClickHouse query in ``system.query_log`` (see
    :class:`reelrank_clickhouse.testing.ClickHouseServer`), to check which statements
    the service ran. Use it as a context manager; :attr:`env` is the environment a
    service process needs.
    """

    def __init__(
        self,
        directory: Path,
        catalog: Mapping[str, str],
        *,
        bulk: bool = False,
        clickhouse_query_log: bool = False,
    ) -> None:
        self.directory = directory
        self.catalog = dict(catalog)
        self.bulk = bulk
        self.clickhouse_query_log = clickhouse_query_log
        self._stack = contextlib.ExitStack()
        self.env: dict[str, str] = {}
        self.seed_seconds = 0.0

    def __enter__(self) -> ServiceStack:
        from reelrank_clickhouse.testing import ClickHouseServer
        from reelrank_postgres.testing import PostgresServer
        from reelrank_redis.testing import RedisServer

        try:
            self.postgres = self._stack.enter_context(PostgresServer())
            self.redis = self._stack.enter_context(RedisServer(self.directory / "redis"))
            self.clickhouse = self._stack.enter_context(
                ClickHouseServer(self.directory / "clickhouse", query_log=self.clickhouse_query_log)
            )
            self.env = service_environment(
                {
                    **self.catalog,
                    "REELRANK_AUTH_SECRET": SECRET,
                    "REELRANK_CURSOR_SECRET": "shared-cursor-secret",
                    "REELRANK_WORKERS": "2",
                    "REELRANK_DATABASE_URL": self.postgres.url,
                    "REELRANK_REDIS_URL": self.redis.url,
                    "REELRANK_CLICKHOUSE_URL": (
                        f"clickhouse://default@127.0.0.1:{self.clickhouse.tcp_port}/default"
                    ),
                    # The load's Zipf-heavy users would hit the per-user event limit.
                    "REELRANK_EVENTS_PER_MINUTE": "100000",
                }
            )
            started = time.perf_counter()
            self.command("migrate")
            self.command("seed", "--if-empty", *(["--bulk"] if self.bulk else []))
            self.seed_seconds = time.perf_counter() - started
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stack.close()

    def settings(self, overrides: Mapping[str, str] | None = None) -> Settings:
        """The service's settings as a worker on the stack reads them from its
        environment, with ``overrides`` (``REELRANK_*`` variables) on top."""
        values = {
            name: value
            for name, value in {**self.env, **(overrides or {})}.items()
            if name.startswith("REELRANK_")
        }
        saved = {name: os.environ.get(name) for name in values}
        os.environ.update(values)
        try:
            return Settings()
        finally:
            for name, value in saved.items():
                if value is None:
                    del os.environ[name]
                else:
                    os.environ[name] = value

    def command(self, *args: str) -> str:
        """Run ``python -m reelrank_example ARGS`` against the stack and return its
        output; a failure raises :class:`RuntimeError` with the end of the command's
        error output."""
        done = subprocess.run(
            [sys.executable, "-m", "reelrank_example", *args],
            env=self.env,
            timeout=3_600,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-4000:]}")
        return done.stdout

    def clickhouse_rows(self, sql: str) -> list[list[str]]:
        """Rows of a ClickHouse query, as tab-separated strings."""
        text = self.clickhouse.execute(sql).strip()
        return [line.split("\t") for line in text.splitlines()] if text else []

    def wait_for_seed_watermark(
        self, stopping: threading.Event | None = None
    ) -> tuple[datetime, float] | None:
        """The ``fold-stats --until`` that rolls up every event stored so far (the
        seed's), once it has passed, and the seconds waited for it; ``None`` when
        ``stopping`` was set meanwhile.

        ``fold-stats`` folds the arrival buckets (2**36 ns, about 69 s) that end at or
        before its watermark, and the seed's events carry arrival numbers of the seeding
        process's clock, so the command's default (a minute ago) would leave the last
        minute of them unrolled: the watermark is the end of the last event's bucket
        (:func:`arrival_bucket_end`). An event arriving before the watermark after the
        fold would be a late arrival, which sends every stats read back to merging the
        states until the next fold: waiting until the watermark has passed puts the
        events that follow after it.
        """
        last = int(self.clickhouse_rows("SELECT max(seq) FROM events")[0][0])
        until = arrival_bucket_end(last)
        waited = max(0.0, until.timestamp() - time.time() + 0.05)
        if (stopping or threading.Event()).wait(waited):
            return None
        return until, waited


def arrival_bucket_end(seq: int) -> datetime:
    """The end of the ClickHouse event store's arrival bucket of arrival number ``seq``
    (nanoseconds since the epoch), rounded up to the microsecond."""
    from reelrank_clickhouse._schema import ARRIVAL_BUCKET_SHIFT

    end_ns = ((seq >> ARRIVAL_BUCKET_SHIFT) + 1) << ARRIVAL_BUCKET_SHIFT
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=-(-end_ns // 1_000))


def bare_app() -> Flask:
    """A trivial Flask app: the baseline a service's throughput is compared with."""
    app = Flask("reelrank_bare")

    @app.get("/ping")
    def ping() -> Response:
        return Response('{"status":"ok"}', content_type="application/json")

    return app


class Gunicorn:
    """gunicorn serving ``app`` (a ``module:callable()`` spec) on a free loopback port.

    Threaded workers (``gthread``): a request held by a hanging store holds a thread,
    not the whole worker. The output goes to ``log``.
    """

    def __init__(
        self,
        app: str,
        env: Mapping[str, str],
        log: Path,
        *,
        workers: int = 2,
        threads: int = 8,
        ready_path: str = "/healthz/startup",
    ) -> None:
        self.app = app
        self.ready_path = ready_path
        self.env = dict(env)
        self.log = log
        self.workers = workers
        self.threads = threads
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Gunicorn:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 180.0) -> None:
        """Start gunicorn and wait until ``ready_path`` answers 200."""
        from reelrank.testing.servers import free_port, wait_until_ready

        self.port = free_port()
        command = [
            sys.executable, "-m", "gunicorn",
            "--bind", f"127.0.0.1:{self.port}",
            "--workers", str(self.workers),
            "--threads", str(self.threads),
            "--keep-alive", "5",
            "--graceful-timeout", "5",
            "--timeout", "30",
            # gunicorn's access lines, as the deployment's configuration writes them.
            "--access-logfile", "-",
            "--logger-class", "reelrank_example.GunicornLogger",
            # gunicorn's control socket has one default path for every master on the machine.
            "--no-control-socket",
            self.app,
        ]  # fmt: skip
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                command, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

        def answers() -> bool:
            try:
                return get(self.url + self.ready_path, timeout=2.0)[0] == 200
            except OSError:
                return False

        if not wait_until_ready(answers, self.process, timeout=timeout, interval=0.2):
            self.stop()
            raise RuntimeError(f"gunicorn did not start:\n{self.log.read_text(errors='replace')}")

    def worker_pids(self) -> list[int]:
        """The live worker processes (children of the gunicorn master)."""
        assert self.process is not None
        pid = self.process.pid
        try:
            text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        except OSError:
            return []
        return [int(part) for part in text.split()]

    def cpu_seconds(self) -> float:
        """CPU time used so far by the master and its workers, the exited ones included."""
        assert self.process is not None
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in (self.process.pid, *self.worker_pids()):
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{pid}/stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()
                # utime, stime, and for the master cutime, cstime (reaped workers)
                total += int(fields[11]) + int(fields[12])
                if pid == self.process.pid:
                    total += int(fields[13]) + int(fields[14])
        return total / ticks

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def get(
    url: str, headers: Mapping[str, str] | None = None, *, timeout: float = 10.0
) -> tuple[int, dict[str, str], Any]:
    """One GET on a fresh connection: status, headers and the JSON body (or text)."""
    host, _, rest = url.removeprefix("http://").partition("/")
    name, _, port = host.partition(":")
    connection = http.client.HTTPConnection(name, int(port or 80), timeout=timeout)
    try:
        connection.request("GET", "/" + rest, headers=dict(headers or {}))
        response = connection.getresponse()
        raw = response.read()
        kept = {key.lower(): value for key, value in response.getheaders()}
    finally:
        connection.close()
    body: Any = raw.decode("utf-8", errors="replace")
    if "json" in kept.get("content-type", ""):
        body = json.loads(raw)
    return response.status, kept, body


# -- the load --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LoadSpec:
    """One run of the mixed workload; every field travels as JSON to the load process."""

    base_url: str
    rate: float
    """Requests per second offered (open loop: sent on schedule, however slow the answers)."""
    duration: float
    """Seconds of scheduled requests; event retries may run on for ``retry_seconds``."""
    users: int
    videos: int
    first_user: int = FIRST_USER_ID
    first_video: int = FIRST_VIDEO_ID
    secret: str = SECRET
    seed: int = 1
    zipf_exponent: float = 1.1
    """User activity: the user of rank r sends requests in proportion to r**-exponent."""
    page_size: int = 10
    next_page: float = 0.6
    """Chance that a user's next feed request pages on (geometric session depth, mean
    1 / (1 - next_page) pages) rather than opening the feed afresh."""
    max_pages: int = 10
    feed_share: float = 0.725
    event_share: float = 0.145
    """Events at one per five feed requests: watches, likes and shares (6 : 2.5 : 1.5)."""
    search_share: float = 0.08
    trending_share: float = 0.05
    connections: int = 32
    timeout: float = 10.0
    event_key_prefix: str = "load"
    retry_seconds: float = 30.0
    """After the scheduled requests, how long unacknowledged events keep being retried."""
    only_path: str | None = None
    """Send only GETs of this path (the bare baseline) instead of the mix."""


@dataclasses.dataclass(frozen=True)
class LoadRecord:
    """One request of a load run (times are wall-clock seconds since the epoch)."""

    endpoint: str
    scheduled: float
    latency: float
    """From the scheduled send time to the end of the response."""
    status: int
    """HTTP status, or 0 when the connection failed."""
    cache: str = ""
    """The ``Cache-Status`` (``hit`` or ``miss``) of a feed page, or of a search (whether
    its text matches were reused)."""
    degraded: tuple[str, ...] = ()
    event_key: str = ""
    """The ``Idempotency-Key`` of an event request (retries send the same)."""
    event_id: str = ""
    """The id an acknowledged watch or share was stored under."""
    retry_after: str = ""
    """The ``Retry-After`` header of a refused request."""
    request_id: str = ""
    """The ``X-Request-ID`` the service answered with, which its ``request`` log line
    carries: joins this record to the service's own timing of the request."""
    send_delay: float = 0.0
    """Seconds from the scheduled send time to the client's starting to write the
    request (waiting for a free connection, or for the client's own event loop): the
    part of ``latency`` that is the client's, not the server's."""
    client_run_queue: float = 0.0
    """Seconds the client's event loop waited for a core between starting to write the
    request and reading its answer (from the kernel's scheduler statistics; 0 where it
    does not report them): on a machine the client shares with the service, a part of
    ``latency`` that is the client's too."""


@dataclasses.dataclass
class _Action:
    endpoint: str
    user: int
    video: int = 0
    path: str = ""
    key: str = ""
    attempt: int = 0


class _Connection:
    """One keep-alive HTTP/1.1 connection on asyncio streams, reopened after errors and
    idling.

    Hand-written: the load shares two cores with the service it measures, and this
    parses only what the load reads (the status, three headers, a body by
    ``Content-Length`` or chunks). h11 0.16, the well-kept alternative, took 49-61 us
    of CPU to write a request and parse a 1.2 KB feed answer in-process, against 5-6 us
    for this reader's parse: a quarter of the whole client's 0.2 ms per request.
    """

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._used = 0.0

    async def request(self, head: bytes, body: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
        """Send a request (``head`` is its request line and headers, blank line
        included) and read the answer: status, the headers the load reads, body."""
        if self._streams is not None and time.monotonic() - self._used > _IDLE_RECONNECT_SECONDS:
            self.close()
        if self._streams is None:
            self._streams = await asyncio.open_connection(self._host, self._port)
        reader, writer = self._streams
        try:
            writer.write(head + body)
            status, headers, data = await _read_response(reader)
        except BaseException:
            # An error or a timeout mid-answer leaves the connection unusable.
            self.close()
            raise
        self._used = time.monotonic()
        if headers.get(b"connection", b"").lower() == b"close":
            self.close()
        return status, headers, data

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


# The headers the load reads; the others are not even decoded.
_READ_HEADERS = (b"cache-status", b"retry-after", b"connection", b"content-length",
                 b"transfer-encoding", b"x-request-id")  # fmt: skip


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes], bytes]:
    block = await reader.readuntil(b"\r\n\r\n")
    lines = block.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.lower()
        if name in _READ_HEADERS:
            headers[name] = value.strip()
    if (
        lines[0].startswith(b"HTTP/1.0")
        and headers.get(b"connection", b"").lower() != b"keep-alive"
    ):
        headers[b"connection"] = b"close"
    if b"content-length" in headers:
        return status, headers, await reader.readexactly(int(headers[b"content-length"]))
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        chunks = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            chunks.append(await reader.readexactly(size + 2))
        await reader.readuntil(b"\r\n")  # the (empty) trailer section
        return status, headers, b"".join(chunk[:-2] for chunk in chunks)
    if status in (204, 304):
        return status, headers, b""
    # No length: the body runs to the end of the connection.
    headers[b"connection"] = b"close"
    return status, headers, await reader.read()


def run_load(
    spec: LoadSpec, *, on_start: Callable[[float], None] | None = None
) -> list[LoadRecord]:
    """Send ``spec``'s workload and return one record per request (retries included).

    One asyncio event loop in this thread drives ``spec.connections`` keep-alive
    connections: a request waits in the loop's queue while every connection is busy,
    and that wait counts in its latency. ``on_start``, if given, is called with the
    wall-clock time (``time.time()``) of the schedule's first instant once the users'
    tokens are signed and the workers started, shortly before that instant.
    """
    with asyncio.Runner(loop_factory=_new_event_loop) as runner:
        return runner.run(_LoadRun(spec).run(on_start))


class _PreciseEpollSelector(selectors.EpollSelector):
    """epoll, with timed waits to the microsecond.

    ``epoll_wait`` counts its timeout in whole milliseconds, rounded up, which would
    send each scheduled request up to 1 ms late and add that to its latency. A timed
    wait here is a ``select(2)`` on the epoll descriptor itself (microseconds, one
    descriptor whatever the number of connections), then an ``epoll_wait`` that does
    not block.
    """

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout > 0:
            select.select([self.fileno()], [], [], timeout)
            timeout = 0
        return super().select(timeout)


def _new_event_loop() -> asyncio.AbstractEventLoop:
    return asyncio.SelectorEventLoop(_PreciseEpollSelector())


class _LoadRun:
    """The state of one :func:`run_load`: the schedule, the users' cursors, the records."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        user_ids = [spec.first_user + index for index in range(spec.users)]
        self.rng.shuffle(user_ids)  # the most active user is not always the first seeded one
        self.user_ids = user_ids
        self.cumulative_weights = list(
            itertools.accumulate(rank**-spec.zipf_exponent for rank in range(1, spec.users + 1))
        )
        host = spec.base_url.removeprefix("http://").rstrip("/")
        self.host, _, port = host.partition(":")
        self.port = int(port or 80)
        # Each user's fixed request headers, encoded once.
        self.user_headers = {
            user: (
                f"Host: {host}\r\nAuthorization: Bearer {issue_token(spec.secret, user)}\r\n"
            ).encode()
            for user in user_ids
        }
        self.cursors: dict[int, tuple[str, int]] = {}
        self.records: list[LoadRecord] = []
        self.jobs: asyncio.Queue[tuple[float, _Action] | None] = asyncio.Queue()
        self.in_flight = 0  # requests queued or running
        self.retries_waiting = 0
        self.retry_timers: list[asyncio.TimerHandle] = []
        self.counter = itertools.count()
        # Loop time (monotonic) + offset = wall-clock time, for the records.
        self.wall_offset = 0.0

    def draw(self) -> _Action:
        spec, rng = self.spec, self.rng
        user = rng.choices(self.user_ids, cum_weights=self.cumulative_weights)[0]
        if spec.only_path is not None:
            return _Action("bare", user, path=spec.only_path)
        roll = rng.random() * (
            spec.feed_share + spec.event_share + spec.search_share + spec.trending_share
        )
        if roll < spec.feed_share:
            return _Action("feed", user, path="next" if rng.random() < spec.next_page else "")
        roll -= spec.feed_share
        if roll < spec.event_share:
            kind = rng.choices(("watch", "like", "share"), (6.0, 2.5, 1.5))[0]
            video = spec.first_video + rng.randrange(spec.videos)
            key = f"{spec.event_key_prefix}-{next(self.counter)}"
            return _Action(kind, user, video=video, key=key)
        roll -= spec.event_share
        if roll < spec.search_share:
            words = rng.choice(_SEARCH_WORDS).replace(" ", "+")
            return _Action("search", user, path=f"/api/v1/reels/search?q={words}&limit=10")
        return _Action("trending", user, path=rng.choice(_TRENDING))

    def enqueue(self, scheduled: float, action: _Action) -> None:
        self.in_flight += 1
        self.jobs.put_nowait((scheduled, action))

    def request(self, action: _Action) -> tuple[str, bytes, bytes]:
        """The endpoint name, the request line and headers, and the body of ``action``."""
        spec = self.spec
        endpoint, path, method = action.endpoint, action.path, "GET"
        extra, body = "", b""
        if endpoint == "feed":
            path = f"/api/v1/reels?limit={spec.page_size}"
            endpoint = "feed_first"
            held = self.cursors.get(action.user)
            if action.path == "next" and held is not None and held[1] < spec.max_pages:
                path += f"&cursor={held[0]}"
                endpoint = "feed_next"
        elif endpoint in ("watch", "share", "like"):
            method = "POST"
            path = f"/api/v1/reels/{action.video}/{endpoint}"
            if endpoint == "watch":
                body = _WATCH_BODIES[action.user % 2]
            elif endpoint == "share":
                body = b'{"channel": "link"}'
            else:
                body = b"{}"
            if endpoint != "like":
                extra = f"Idempotency-Key: {action.key}\r\n"
            extra += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        head = f"{method} {path} HTTP/1.1\r\n".encode() + self.user_headers[action.user]
        return endpoint, head + extra.encode() + b"\r\n", body

    async def execute(self, connection: _Connection, scheduled: float, action: _Action) -> None:
        spec, loop = self.spec, asyncio.get_running_loop()
        wall_scheduled = scheduled + self.wall_offset
        if loop.time() - scheduled > spec.timeout:
            # Queued past the client's timeout behind a saturated server: counted as a
            # failure (status 0) without being sent, so an overload ends the run in time.
            self.records.append(LoadRecord(action.endpoint, wall_scheduled, spec.timeout, 0))
            return
        endpoint, head, body = self.request(action)
        sending, queued_before = loop.time(), run_queue_ns()
        status, data = 0, b""
        answer: dict[bytes, bytes] = {}
        failures = (
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
            TimeoutError,
        )
        with contextlib.suppress(*failures):
            async with asyncio.timeout(spec.timeout):
                status, answer, data = await connection.request(head, body)
        done, queued_after = loop.time(), run_queue_ns()
        record = LoadRecord(
            endpoint,
            wall_scheduled,
            done - scheduled,
            status,
            event_key=action.key,
            retry_after=answer.get(b"retry-after", b"").decode(),
            request_id=answer.get(b"x-request-id", b"").decode(),
            send_delay=sending - scheduled,
            client_run_queue=(
                0.0
                if queued_before is None or queued_after is None
                else (queued_after - queued_before) / 1e9
            ),
        )
        if endpoint.startswith("feed") and status == 200:
            parsed = json.loads(data)
            record = dataclasses.replace(
                record,
                cache="hit" if b"hit" in answer.get(b"cache-status", b"") else "miss",
                degraded=tuple(parsed["degraded"]),
            )
            depth = self.cursors.get(action.user, ("", 0))[1] if endpoint == "feed_next" else 0
            if parsed["next_cursor"]:
                self.cursors[action.user] = (parsed["next_cursor"], depth + 1)
            else:
                self.cursors.pop(action.user, None)
        if endpoint == "search" and status == 200:
            hit = b"hit" in answer.get(b"cache-status", b"")
            record = dataclasses.replace(record, cache="hit" if hit else "miss")
        if action.key and action.endpoint != "like":
            if 200 <= status < 300:
                record = dataclasses.replace(record, event_id=json.loads(data)["event_id"])
            elif status == 0 or status >= 500:
                delay = float(record.retry_after or 1)
                again = dataclasses.replace(action, attempt=action.attempt + 1)
                # A retry's latency counts from when it was due: the wait before it is
                # the client's back-off, not the server's.
                due = done + min(max(delay, 0.5), 5.0)
                self.retries_waiting += 1
                self.retry_timers.append(loop.call_at(due, self.retry, due, again))
        self.records.append(record)

    def retry(self, due: float, action: _Action) -> None:
        self.retries_waiting -= 1
        self.enqueue(due, action)

    async def worker(self) -> None:
        connection = _Connection(self.host, self.port)
        try:
            while (job := await self.jobs.get()) is not None:
                try:
                    await self.execute(connection, *job)
                finally:
                    self.in_flight -= 1
        finally:
            connection.close()

    async def run(self, on_start: Callable[[float], None] | None) -> list[LoadRecord]:
        spec, loop = self.spec, asyncio.get_running_loop()
        self.wall_offset = time.time() - loop.time()
        workers = [asyncio.create_task(self.worker()) for _ in range(spec.connections)]
        start = loop.time() + 0.1
        if on_start is not None:
            on_start(self.wall_offset + start)
        end = start + spec.duration
        next_at = start
        while next_at < end:
            now = loop.time()
            if next_at > now:
                await asyncio.sleep(next_at - now)
                continue
            self.enqueue(next_at, self.draw())
            next_at += self.rng.expovariate(spec.rate)
        while (self.in_flight or self.retries_waiting) and loop.time() < end + spec.retry_seconds:
            await asyncio.sleep(0.01)
        for timer in self.retry_timers:
            timer.cancel()  # retries not yet due are dropped
        for _ in workers:
            self.jobs.put_nowait(None)
        _, late = await asyncio.wait(workers, timeout=spec.timeout + 5)
        for task in late:
            task.cancel()
        return sorted(self.records, key=lambda record: record.scheduled)


def run_load_process(spec: LoadSpec, directory: Path) -> subprocess.Popen[bytes]:
    """Start ``python -m reelrank_example.testing`` on ``spec`` in a process of its own;
    its records land in ``directory / "load.json"`` (read them with :func:`read_records`).

    The process needs a moment (seconds on a busy machine) to import and sign its
    users' tokens before its schedule starts: :func:`wait_for_load_start` waits for
    that, so a test that times a fault against the load starts its clock there."""
    directory.mkdir(parents=True, exist_ok=True)
    spec_path = directory / "spec.json"
    spec_path.write_text(json.dumps(dataclasses.asdict(spec)))
    (directory / _START_MARK).unlink(missing_ok=True)
    with (directory / "load.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "reelrank_example.testing", str(spec_path),
             str(directory / "load.json"), str(directory / _START_MARK)],
            env=service_environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip


def wait_for_load_start(
    process: subprocess.Popen[bytes], directory: Path, *, timeout: float = 60.0
) -> float:
    """Wait until the load process started by :func:`run_load_process` in ``directory``
    has begun its schedule, then return the wall-clock time (``time.time()``) of its
    first scheduled instant (at most 0.1 s away).

    Raises :class:`RuntimeError` if the process exits first or ``timeout`` seconds pass.
    """
    mark = directory / _START_MARK
    deadline = time.monotonic() + timeout
    while not mark.exists():
        if process.poll() is not None:
            log = (directory / "load.log").read_text(errors="replace")
            raise RuntimeError(f"the load process exited with {process.returncode}: {log}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the load process did not start its schedule in {timeout} s")
        time.sleep(0.02)
    return float(mark.read_text())


def read_records(path: Path) -> tuple[list[LoadRecord], dict[str, float]]:
    """The records a load process wrote, and its own resource use (``cpu_seconds``)."""
    data = json.loads(path.read_text())
    records = [
        LoadRecord(**{**item, "degraded": tuple(item["degraded"])}) for item in data["records"]
    ]
    return records, data["process"]


@dataclasses.dataclass(frozen=True)
class LoadTally:
    """What the records of one load run add up to (see :func:`tally`)."""

    requests: int
    """Requests sent."""
    succeeded: int
    """Requests answered with a 2xx status."""
    span_seconds: float
    """From the first request's scheduled time to the last answer."""
    errors: dict[str, dict[str, int]]
    """Failed requests by endpoint, then by kind: the status (``"503"``), or
    ``"no answer"`` when the connection failed or the client's timeout passed."""

    @property
    def succeeded_per_second(self) -> float:
        """The rate of successful answers over the run: what the service achieved."""
        return self.succeeded / self.span_seconds if self.span_seconds > 0 else 0.0

    @property
    def error_count(self) -> int:
        """Requests not answered with a 2xx status."""
        return self.requests - self.succeeded


def tally(records: Sequence[LoadRecord]) -> LoadTally:
    """Count ``records``: successes, the span, and the failures by endpoint and kind.

    A refusal (a 503 when a worker is overloaded, a 429) is an answer but not a served
    request, so it counts as an error and not towards :attr:`LoadTally.succeeded`.
    """
    if not records:
        return LoadTally(0, 0, 0.0, {})
    errors: dict[str, dict[str, int]] = {}
    for record in records:
        if not 200 <= record.status < 300:
            kind = str(record.status) if record.status else "no answer"
            by_kind = errors.setdefault(record.endpoint, {})
            by_kind[kind] = by_kind.get(kind, 0) + 1
    first = min(record.scheduled for record in records)
    last = max(record.scheduled + record.latency for record in records)
    return LoadTally(
        requests=len(records),
        succeeded=len(records) - sum(sum(kinds.values()) for kinds in errors.values()),
        span_seconds=last - first,
        errors={
            endpoint: dict(sorted(kinds.items())) for endpoint, kinds in sorted(errors.items())
        },
    )


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` in [0, 1]); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _mark_start(path: Path, wall_start: float) -> None:
    """Write the schedule's start for :func:`wait_for_load_start`, whole or not at all."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(repr(wall_start))
    partial.replace(path)


def _main(argv: Sequence[str]) -> int:
    spec_path, out_path, *start_mark = argv
    spec = LoadSpec(**json.loads(Path(spec_path).read_text()))
    started = time.process_time()
    on_start = functools.partial(_mark_start, Path(start_mark[0])) if start_mark else None
    records = run_load(spec, on_start=on_start)
    # The load's own CPU, without the interpreter's start-up and the token signing.
    cpu_seconds = time.process_time() - started
    Path(out_path).write_text(
        json.dumps(
            {
                "records": [dataclasses.asdict(record) for record in records],
                "process": {"cpu_seconds": cpu_seconds},
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
