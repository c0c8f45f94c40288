"""The backend-neutral pieces of throwaway test servers, run on a tiny Python HTTP server."""

from __future__ import annotations

import signal
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from reelrank.testing import (
    ServerProcess,
    free_port,
    spawn_logged,
    terminate_process,
    wait_until_ready,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads process states from /proc")


class HttpServerError(RuntimeError):
    """The test HTTP server misbehaved."""


class HttpServer(ServerProcess):
    """``python -m http.server`` on a free loopback port."""

    error_type = HttpServerError

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = 0

    def start(self) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "http.server", "--bind", self.host, str(self.port)]
        process = spawn_logged(command, self.directory / "http.log", cwd=self.directory)
        self._adopt(process)
        if not wait_until_ready(self.answers, process, timeout=30.0, interval=0.02):
            self.stop()
            raise HttpServerError("http.server did not answer")

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.port}/", timeout=0.5) as reply:
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError):
            return False


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    return stat.rsplit(")", 1)[1].split()[0]


def test_free_port_can_be_bound_on_loopback() -> None:
    port = free_port()
    assert 0 < port < 65536
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", port))


def test_spawn_logged_appends_output_and_starts_a_new_session(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    log.write_bytes(b"before\n")
    script = "import os, sys; print(os.getsid(0) == os.getpid()); print('err', file=sys.stderr)"
    process = spawn_logged([sys.executable, "-c", script], log)
    assert process.wait(timeout=30) == 0
    assert log.read_text().splitlines() == ["before", "True", "err"]


def test_wait_until_ready_polls_until_the_check_succeeds(tmp_path: Path) -> None:
    process = spawn_logged(["sleep", "30"], tmp_path / "sleep.log")
    try:
        answers = iter([False, False, True])
        calls: list[bool] = []

        def ready() -> bool:
            calls.append(True)
            return next(answers)

        assert wait_until_ready(ready, process, timeout=30.0, interval=0.001)
        assert len(calls) == 3
    finally:
        terminate_process(process, timeout=5.0)
    assert process.returncode is not None


def test_wait_until_ready_gives_up_when_the_process_exits(tmp_path: Path) -> None:
    process = spawn_logged([sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "x.log")
    assert not wait_until_ready(lambda: False, process, timeout=60.0, interval=0.01)
    assert process.returncode == 3


def test_wait_until_ready_gives_up_after_the_timeout(tmp_path: Path) -> None:
    process = spawn_logged(["sleep", "30"], tmp_path / "sleep.log")
    try:
        assert not wait_until_ready(lambda: False, process, timeout=0.05, interval=0.01)
        assert process.poll() is None
    finally:
        terminate_process(process, timeout=5.0)


def test_terminate_process_stops_a_paused_process(tmp_path: Path) -> None:
    process = spawn_logged(["sleep", "30"], tmp_path / "sleep.log")
    process.send_signal(signal.SIGSTOP)
    terminate_process(process, timeout=5.0, paused=True)
    assert process.returncode is not None
    terminate_process(process, timeout=5.0)  # already gone: a no-op


def test_terminate_process_kills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    script = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    log = tmp_path / "stubborn.log"
    process = spawn_logged([sys.executable, "-c", script], log)
    assert wait_until_ready(lambda: "ready" in log.read_text(), process, timeout=30, interval=0.01)
    terminate_process(process, timeout=0.2)
    assert process.returncode == -9


def test_server_process_pauses_resumes_and_stops(tmp_path: Path) -> None:
    with HttpServer(tmp_path) as server:
        assert server.running
        pid = server.pid
        process = server._process
        assert pid is not None
        assert process is not None
        assert server.answers()

        server.pause()
        assert server.running
        assert wait_until_ready(lambda: _state(pid) in "tT", process, timeout=30, interval=0.005)
        assert not server.answers()

        server.resume()
        assert _state(pid) not in "tT"
        assert server.answers()

        server.pause()  # stop() must continue a paused server before terminating it
    assert not server.running
    assert server.pid is None
    with pytest.raises(HttpServerError, match="not running"):
        server.pause()
    with pytest.raises(HttpServerError, match="not running"):
        server.resume()
    server.stop()  # stopping twice is a no-op


def test_dropping_a_running_server_kills_it(tmp_path: Path) -> None:
    server = HttpServer(tmp_path)
    server.start()
    process = server._process
    assert process is not None
    del server
    assert process.wait(timeout=30) == -9


def test_the_base_class_does_not_know_how_to_start() -> None:
    with pytest.raises(NotImplementedError):
        ServerProcess().start()
