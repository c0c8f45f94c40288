"""The service under ``deploy/gunicorn.conf.py``: a real gunicorn master with two gthread
workers on the embedded database in demo mode, stopped with SIGTERM while requests are
in flight.

The app is the service plus one slow route (``tests/slow_service_app.py``): the service
itself has no request that takes seconds.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from reelrank.testing.servers import free_port, terminate_process, wait_until_ready
from test_service_http_processes import ROOT, _command, _environment

GRACEFUL_TIMEOUT = 4


def _get(port: int, path: str, timeout: float = 60) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
        return response.status


def test_sigterm_drains_requests_in_flight_within_graceful_timeout(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    env = _environment(
        {
            "REELRANK_DATABASE_URL": f"sqlite:///{tmp_path / 'reels.db'}",
            "REELRANK_DEMO": "true",
            "REELRANK_GRACEFUL_TIMEOUT": str(GRACEFUL_TIMEOUT),
            "SLOW_APP_MARKERS": str(markers),
        }
    )
    env["PYTHONPATH"] += f":{ROOT / 'tests'}"
    _command(env, "migrate")
    _command(env, "seed", "--if-empty")
    port = free_port()
    log = (tmp_path / "gunicorn.log").open("wb")
    master = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "deploy" / "gunicorn.conf.py"),
         "slow_service_app:create_slow_app()"],
        env={**env, "REELRANK_PORT": str(port)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def started() -> bool:
            try:
                return _get(port, "/healthz/startup", timeout=5) == 200
            except OSError:
                return False

        assert wait_until_ready(started, master, timeout=120.0, interval=0.2), (
            tmp_path / "gunicorn.log"
        ).read_text(errors="replace")

        # One request that ends well inside the grace period, one that cannot.
        outcomes: dict[float, int | str] = {}

        def call(seconds: float) -> None:
            try:
                outcomes[seconds] = _get(port, f"/_test/slow/{seconds}")
            except (OSError, urllib.error.URLError) as error:
                outcomes[seconds] = type(error).__name__

        short, long = 1.5, 60.0
        callers = [threading.Thread(target=call, args=(s,)) for s in (short, long)]
        for caller in callers:
            caller.start()
        deadline = time.monotonic() + 30
        while not all((markers / f"{s:g}").exists() for s in (short, long)):
            assert time.monotonic() < deadline, "the slow requests never started"
            time.sleep(0.02)

        master.send_signal(signal.SIGTERM)
        # The master waits graceful_timeout for its workers, then kills them and exits.
        assert master.wait(timeout=GRACEFUL_TIMEOUT + 10) == 0
        for caller in callers:
            caller.join(timeout=30)
        assert outcomes[short] == 200
        # The request longer than the grace period was cut, so the drain above is real.
        assert outcomes[long] != 200
        # Nothing listens any more.
        try:
            _get(port, "/healthz/live", timeout=5)
            raise AssertionError("the port still answers after the master exited")
        except OSError:
            pass
        text = (tmp_path / "gunicorn.log").read_text(errors="replace")
        assert "Handling signal: term" in text
    finally:
        terminate_process(master, timeout=10.0)
        log.close()
