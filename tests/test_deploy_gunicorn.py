"""The service under ``deploy/gunicorn.conf.py``: a real gunicorn master with two gthread
workers on the embedded database in demo mode, stopped with SIGTERM while requests are
in flight.

The app is the service plus one slow route (``tests/slow_service_app.py``): the service
itself has no request that takes seconds.
"""

from __future__ import annotations

import inspect
import os
import runpy
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_service_http_processes import ROOT, _command, _environment

from reelrank.testing.servers import free_port, terminate_process, wait_until_ready

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
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(ROOT / "deploy" / "gunicorn.conf.py"),
            "slow_service_app:create_slow_app()",
        ],
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
    finally:
        terminate_process(master, timeout=10.0)
        log.close()


CONFIG = ROOT / "deploy" / "gunicorn.conf.py"


def _load_config(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    for name in list(os.environ):
        if name.startswith("REELRANK_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # Reading the settings points PROMETHEUS_MULTIPROC_DIR at a new temporary directory
    # when it is unset or empty; undo that and remove the directory. (setenv, not delenv:
    # monkeypatch forgets a delenv of a variable that was not set, and would not undo.)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    config = runpy.run_path(str(CONFIG))
    for directory in config["_metrics_temp_dir"]:
        shutil.rmtree(directory, ignore_errors=True)
    return {k: v for k, v in config.items() if not k.startswith("_")}


def test_every_name_in_the_config_is_a_gunicorn_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from gunicorn.config import Config

    settings = Config().settings
    names = {k for k, v in _load_config({}, monkeypatch).items() if not inspect.ismodule(v)}
    names -= {"annotations"}  # from __future__ import annotations
    assert names <= set(settings), names - set(settings)


def test_settings_follow_their_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = _load_config({}, monkeypatch)
    assert defaults["worker_class"] == "gthread"
    assert defaults["preload_app"] is False
    assert defaults["control_socket_disable"] is True
    assert 0 < defaults["graceful_timeout"] < 40  # terminationGracePeriodSeconds - preStop
    changed = _load_config(
        {
            "REELRANK_HOST": "0.0.0.0",
            "REELRANK_PORT": "9000",
            "REELRANK_WORKERS": "3",
            "REELRANK_CURSOR_SECRET": "a-cursor-secret-shared-by-every-worker-0123",
            "REELRANK_THREADS": "8",
            "REELRANK_GRACEFUL_TIMEOUT": "5",
            "REELRANK_KEEPALIVE": "2",
            "REELRANK_MAX_REQUESTS": "0",
            "REELRANK_PRELOAD": "true",
            "REELRANK_CONTROL_SOCKET": "yes",
        },
        monkeypatch,
    )
    assert changed["bind"] == "0.0.0.0:9000"
    assert (changed["workers"], changed["threads"]) == (3, 8)
    assert (changed["graceful_timeout"], changed["keepalive"], changed["max_requests"]) == (5, 2, 0)
    assert changed["preload_app"] is True
    assert changed["control_socket_disable"] is False


def test_worker_exit_closes_the_workers_services(monkeypatch: pytest.MonkeyPatch) -> None:
    worker_exit = _load_config({}, monkeypatch)["worker_exit"]
    closed: list[str] = []

    class Services:
        def close(self) -> None:
            closed.append("services")

    worker = SimpleNamespace(wsgi=SimpleNamespace(extensions={"reelrank_services": Services()}))
    worker_exit(None, worker)
    assert closed == ["services"]
    worker_exit(None, SimpleNamespace())  # a worker that exited before loading the app
    assert closed == ["services"]
