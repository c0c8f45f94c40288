"""Real-process tools for the reels service: its stores, gunicorn, and an HTTP load.

* :class:`ServiceStack` starts PostgreSQL, ClickHouse and Redis with the adapters'
  throwaway servers on loopback ports, then migrates and seeds them through
  ``python -m reelrank_example``.
* :class:`Gunicorn` serves the service (or :func:`bare_app`, the baseline) from them,
  with 2 workers by default, in a process of its own.
* :class:`LoadSpec` and :func:`run_load` drive an *open-loop* mixed workload (requests
  are sent on a schedule, whatever the server's pace, and latency is counted from the
  scheduled time, so a stall shows in full); ``python -m reelrank_example.testing
  SPEC.json OUT.json`` runs it in a process of its own.

The fault tests (``tests/test_service_faults.py``) and the HTTP load benchmark
(``benchmarks/bench_http.py``) are built on these. Needs the adapters with their
``testing`` modules and the servers they start (``scripts/test.sh`` installs them).
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import math
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from flask import Flask, Response

from ._auth import issue_token
from ._services import FIRST_USER_ID, FIRST_VIDEO_ID

__all__ = [
    "Gunicorn",
    "LoadRecord",
    "LoadSpec",
    "ServiceStack",
    "bare_app",
    "percentile",
    "run_load",
    "run_load_process",
    "service_environment",
]

SECRET = "load-test-secret-" + "x" * 24
"""Auth secret of the stacks started here (tokens are signed with it)."""

_SEARCH_WORDS = (
    "dance", "comedy", "cooking", "travel", "fitness", "music", "pets",
    "easy hack", "daily routine", "epic fail", "secret trick", "makeup tutorial",
)  # fmt: skip
_TRENDING = ("/api/v1/reels/trending-hashtags?limit=10", "/api/v1/reels/trending-sounds?limit=10")
# Idle keep-alive connections are dropped before gunicorn closes them (--keep-alive 5).
_IDLE_RECONNECT_SECONDS = 2.0


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
    seeds with ``seed --bulk`` (COPY, for large catalogs). Use it as a context manager;
    :attr:`env` is the environment a service process needs.
    """

    def __init__(self, directory: Path, catalog: Mapping[str, str], *, bulk: bool = False) -> None:
        self.directory = directory
        self.catalog = dict(catalog)
        self.bulk = bulk
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
                ClickHouseServer(self.directory / "clickhouse")
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

    def command(self, *args: str) -> None:
        """Run ``python -m reelrank_example ARGS`` against the stack; a failure raises
        :class:`RuntimeError` with the end of the command's error output."""
        done = subprocess.run(
            [sys.executable, "-m", "reelrank_example", *args],
            env=self.env,
            timeout=3_600,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-4000:]}")

    def clickhouse_rows(self, sql: str) -> list[list[str]]:
        """Rows of a ClickHouse query, as tab-separated strings."""
        text = self.clickhouse.execute(sql).strip()
        return [line.split("\t") for line in text.splitlines()] if text else []


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
        threads: int = 4,
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
    """The feed's ``Cache-Status`` (``hit`` or ``miss``)."""
    degraded: tuple[str, ...] = ()
    event_key: str = ""
    """The ``Idempotency-Key`` of an event request (retries send the same)."""
    event_id: str = ""
    """The id an acknowledged watch or share was stored under."""
    retry_after: str = ""
    """The ``Retry-After`` header of a refused request."""


@dataclasses.dataclass
class _Action:
    endpoint: str
    user: int
    video: int = 0
    path: str = ""
    key: str = ""
    attempt: int = 0


class _Client:
    """One keep-alive connection per worker thread, reopened after errors and idling."""

    def __init__(self, base_url: str, timeout: float) -> None:
        host = base_url.removeprefix("http://").rstrip("/")
        self._host, _, port = host.partition(":")
        self._port = int(port)
        self._timeout = timeout
        self._connection: http.client.HTTPConnection | None = None
        self._used = 0.0

    def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, dict[str, str], bytes]:
        if self._connection is not None and time.monotonic() - self._used > _IDLE_RECONNECT_SECONDS:
            self.close()
        if self._connection is None:
            self._connection = http.client.HTTPConnection(
                self._host, self._port, timeout=self._timeout
            )
        try:
            self._connection.request(method, path, body=body, headers=headers)
            response = self._connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        self._used = time.monotonic()
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def run_load(spec: LoadSpec) -> list[LoadRecord]:
    """Send ``spec``'s workload and return one record per request (retries included)."""
    rng = random.Random(spec.seed)
    weights = [rank**-spec.zipf_exponent for rank in range(1, spec.users + 1)]
    user_ids = [spec.first_user + index for index in range(spec.users)]
    rng.shuffle(user_ids)  # the most active user is not always the first seeded one
    tokens = {user: issue_token(spec.secret, user) for user in user_ids}
    cursors: dict[int, tuple[str, int]] = {}
    cursor_lock = threading.Lock()
    records: list[LoadRecord] = []
    record_lock = threading.Lock()
    jobs: queue.Queue[tuple[float, _Action] | None] = queue.Queue()
    retries: list[tuple[float, _Action]] = []
    retry_lock = threading.Lock()
    in_flight = [0]  # requests queued or running, under retry_lock
    counter = iter(range(10**9))

    def draw() -> _Action:
        user = rng.choices(user_ids, weights)[0]
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
            return _Action(kind, user, video=video, key=f"{spec.event_key_prefix}-{next(counter)}")
        roll -= spec.event_share
        if roll < spec.search_share:
            words = rng.choice(_SEARCH_WORDS).replace(" ", "+")
            return _Action("search", user, path=f"/api/v1/reels/search?q={words}&limit=10")
        return _Action("trending", user, path=rng.choice(_TRENDING))

    def execute(client: _Client, scheduled: float, action: _Action) -> None:
        if time.time() - scheduled > spec.timeout:
            # Queued past the client's timeout behind a saturated server: counted as a
            # failure (status 0) without being sent, so an overload ends the run in time.
            with record_lock:
                records.append(LoadRecord(action.endpoint, scheduled, spec.timeout, 0))
            with retry_lock:
                in_flight[0] -= 1
            return
        headers = {"Authorization": f"Bearer {tokens[action.user]}"}
        body: bytes | None = None
        method = "GET"
        endpoint = action.endpoint
        path = action.path
        if action.endpoint == "feed":
            path = f"/api/v1/reels?limit={spec.page_size}"
            endpoint = "feed_first"
            with cursor_lock:
                held = cursors.get(action.user)
            if action.path == "next" and held is not None and held[1] < spec.max_pages:
                path += f"&cursor={held[0]}"
                endpoint = "feed_next"
        elif action.endpoint in ("watch", "share", "like"):
            method = "POST"
            path = f"/api/v1/reels/{action.video}/{action.endpoint}"
            headers["Content-Type"] = "application/json"
            payload: dict[str, Any] = {}
            if action.endpoint == "watch":
                payload = {"completion": 0.25 + 0.5 * (action.user % 2)}
                headers["Idempotency-Key"] = action.key
            elif action.endpoint == "share":
                payload = {"channel": "link"}
                headers["Idempotency-Key"] = action.key
            body = json.dumps(payload).encode()
        status, data = 0, b""
        answer: dict[str, str] = {}
        with contextlib.suppress(OSError, http.client.HTTPException):
            status, answer, data = client.request(method, path, headers, body)
        done = time.time()
        record = LoadRecord(
            endpoint,
            scheduled,
            done - scheduled,
            status,
            event_key=action.key,
            retry_after=answer.get("retry-after", ""),
        )
        if endpoint.startswith("feed") and status == 200:
            parsed = json.loads(data)
            record = dataclasses.replace(
                record,
                cache="hit" if "hit" in answer.get("cache-status", "") else "miss",
                degraded=tuple(parsed["degraded"]),
            )
            with cursor_lock:
                depth = cursors.get(action.user, ("", 0))[1] if endpoint == "feed_next" else 0
                if parsed["next_cursor"]:
                    cursors[action.user] = (parsed["next_cursor"], depth + 1)
                else:
                    cursors.pop(action.user, None)
        if action.key and action.endpoint != "like":
            if 200 <= status < 300:
                record = dataclasses.replace(record, event_id=json.loads(data)["event_id"])
            elif status == 0 or status >= 500:
                delay = float(answer.get("retry-after", "1") or 1)
                again = dataclasses.replace(action, attempt=action.attempt + 1)
                with retry_lock:
                    retries.append((time.time() + min(max(delay, 0.5), 5.0), again))
        with record_lock:
            records.append(record)
        with retry_lock:
            in_flight[0] -= 1

    def worker() -> None:
        client = _Client(spec.base_url, spec.timeout)
        while (job := jobs.get()) is not None:
            execute(client, *job)
        client.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(spec.connections)]
    for thread in threads:
        thread.start()
    start = time.time() + 0.1
    end = start + spec.duration
    next_at = start
    while True:
        now = time.time()
        with retry_lock:
            due = [entry for entry in retries if entry[0] <= now]
            retries[:] = [entry for entry in retries if entry[0] > now]
            in_flight[0] += len(due)
            # A retry's latency counts from when it was due: the wait before it is the
            # client's back-off, not the server's.
            for at, action in due:
                jobs.put((at, action))
        if next_at < end:
            if next_at > now:
                time.sleep(min(next_at - now, 0.002))
                continue
            with retry_lock:
                in_flight[0] += 1
            jobs.put((next_at, draw()))
            next_at += rng.expovariate(spec.rate)
            continue
        with retry_lock:
            finished = not retries and in_flight[0] == 0
        if finished or now > end + spec.retry_seconds:
            break
        time.sleep(0.01)
    for _ in threads:
        jobs.put(None)
    for thread in threads:
        thread.join(timeout=spec.timeout + 5)
    with record_lock:
        return sorted(records, key=lambda record: record.scheduled)


def run_load_process(spec: LoadSpec, directory: Path) -> subprocess.Popen[bytes]:
    """Start ``python -m reelrank_example.testing`` on ``spec`` in a process of its own;
    its records land in ``directory / "load.json"`` (read them with :func:`read_records`)."""
    directory.mkdir(parents=True, exist_ok=True)
    spec_path = directory / "spec.json"
    spec_path.write_text(json.dumps(dataclasses.asdict(spec)))
    with (directory / "load.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "reelrank_example.testing", str(spec_path),
             str(directory / "load.json")],
            env=service_environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip


def read_records(path: Path) -> tuple[list[LoadRecord], dict[str, float]]:
    """The records a load process wrote, and its own resource use (``cpu_seconds``)."""
    data = json.loads(path.read_text())
    records = [
        LoadRecord(**{**item, "degraded": tuple(item["degraded"])}) for item in data["records"]
    ]
    return records, data["process"]


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` in [0, 1]); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _main(argv: Sequence[str]) -> int:
    spec_path, out_path = argv
    spec = LoadSpec(**json.loads(Path(spec_path).read_text()))
    started = time.process_time()
    records = run_load(spec)
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
