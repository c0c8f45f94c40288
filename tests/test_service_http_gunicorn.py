"""The reels service under gunicorn with two workers: one scrape shows the whole pod, and
its counters do not go backwards when a worker is killed and replaced.

gunicorn runs with ``deploy/gunicorn.conf.py`` on a free loopback port, over the
embedded SQLite database (migrated, left empty) in demo mode, with
``PROMETHEUS_MULTIPROC_DIR`` in the test's temporary directory, so the test can also
read each worker's own files and know that its requests reached both workers. It takes
about 20 s, most of it two workers starting and one starting again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from reelrank_example import Settings, migrate
from reelrank_example._metrics import FAMILIES
from test_service_http_processes import ROOT, _environment

from reelrank.testing.servers import free_port, terminate_process, wait_until_ready

LIVE = {"method": "GET", "route": "/healthz/live", "status": "200"}
REQUESTS_NAME = "reelrank_http_requests_total"


class Gunicorn:
    """A gunicorn master with its workers, and what its metrics directory holds."""

    def __init__(self, env: dict[str, str], metrics: Path, log: Path) -> None:
        self.port = free_port()
        self.metrics = metrics
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "deploy" / "gunicorn.conf.py")],
            cwd=ROOT,
            env={
                **env,
                "REELRANK_HOST": "127.0.0.1",
                "REELRANK_PORT": str(self.port),
                "PROMETHEUS_MULTIPROC_DIR": str(metrics),
            },
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def workers(self) -> set[int]:
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return {int(child) for child in children}

    def get(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.port}{path}"
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()

    def families(self) -> dict[str, Any]:
        """The pod's metric families, from ``/metrics``."""
        status, text = self.get("/metrics")
        assert status == 200
        return {family.name: family for family in text_string_to_metric_families(text)}

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The pod's samples by name and labels."""
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in self.families().values()
            for s in family.samples
        }

    def worker_value(self, pid: int, name: str, labels: dict[str, str]) -> float:
        """One sample as a single worker wrote it to its own files."""
        files = [str(path) for path in self.metrics.glob(f"*_{pid}.db")]
        for metric in MultiProcessCollector.merge(files):
            for sample in metric.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return 0.0

    def wait_for_workers(self, exclude: frozenset[int] = frozenset()) -> set[int]:
        """The two workers, once both have finished starting (none of ``exclude``)."""
        workers: set[int] = set()

        def started() -> bool:
            nonlocal workers
            workers = self.workers()
            if len(workers) != 2 or workers & exclude:
                return False
            if not all((self.metrics / f"gauge_livemin_{pid}.db").exists() for pid in workers):
                return False
            try:
                return self.scrape()[("reelrank_startup_complete", ())] == 1
            except OSError:
                return False

        if not wait_until_ready(started, self.process, timeout=120.0, interval=0.1):
            self._log.flush()
            log = Path(self._log.name).read_text(errors="replace")
            raise AssertionError(f"gunicorn's workers did not start:\n{log}")
        return workers

    def stop(self) -> None:
        terminate_process(self.process, timeout=15.0)
        self._log.close()


@pytest.fixture()
def gunicorn(tmp_path: Path) -> Iterator[Gunicorn]:
    database = f"sqlite:///{tmp_path / 'reels.db'}"
    env = _environment({"REELRANK_DATABASE_URL": database, "REELRANK_DEMO": "true"})
    # An empty catalog is enough to count requests; migrating here saves a process start.
    migrate(Settings(database_url=database))
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "counter_1.db").write_bytes(b"left by an earlier run")
    server = Gunicorn(env, metrics, tmp_path / "gunicorn.log")
    try:
        yield server
    finally:
        server.stop()


def _live_requests(server: Gunicorn, count: int) -> None:
    # Concurrent requests: while one sync worker is busy, the other accepts.
    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(lambda _: server.get("/healthz/live")[0], range(count)))
    assert statuses == [200] * count


def test_one_scrape_shows_both_workers_and_survives_a_killed_worker(gunicorn: Gunicorn) -> None:
    workers = gunicorn.wait_for_workers()
    assert not (gunicorn.metrics / "counter_1.db").exists()  # emptied at start
    families = gunicorn.families()
    for family in FAMILIES:
        parsed = families[family.name.removesuffix("_total")]
        assert (parsed.type, parsed.documentation) == (family.type, family.help)
    key = (REQUESTS_NAME, tuple(sorted(LIVE.items())))

    sent = 0
    for _ in range(20):
        _live_requests(gunicorn, 20)
        sent += 20
        per_worker = {pid: gunicorn.worker_value(pid, REQUESTS_NAME, LIVE) for pid in workers}
        if all(per_worker.values()):
            break
    assert all(per_worker.values()), per_worker  # both workers answered some
    assert sum(per_worker.values()) == sent
    before = gunicorn.scrape()
    assert before[key] == sent

    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    replaced = gunicorn.wait_for_workers(exclude=frozenset({victim}))
    assert victim not in replaced and len(replaced & workers) == 1
    after = gunicorn.scrape()
    # The dead worker's requests are still counted, and no counter of the pod went
    # backwards. (The process collector's families describe whichever worker answered
    # the scrape, not the pod, so they may.)
    assert after[key] == sent
    for sample, value in before.items():
        if sample[0].startswith("reelrank_") and sample[0].endswith(
            ("_total", "_count", "_bucket", "_sum")
        ):
            assert after.get(sample, 0.0) >= value, sample

    _live_requests(gunicorn, 10)
    assert gunicorn.scrape()[key] == sent + 10
    # The dead worker's live gauges are gone: the pod is the two workers now running.
    assert not list(gunicorn.metrics.glob(f"gauge_live*_{victim}.db"))
