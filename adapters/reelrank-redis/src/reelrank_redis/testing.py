"""Throwaway ``redis-server`` processes for tests and benchmarks.

:class:`RedisServer` starts a real server on a free loopback port with persistence
switched off, waits until it answers ``PING`` and stops it again. It can also pause
(``SIGSTOP``), resume (``SIGCONT``), kill and restart the process on the same port,
which is how the fault tests simulate a hung or crashed Redis::

    with RedisServer(tmp_path) as server:
        client = server.client()
        client.ping()
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = ["RedisServer", "RedisServerError", "find_redis_server", "free_port"]

_START_TIMEOUT_SECONDS = 10.0
_STOP_TIMEOUT_SECONDS = 5.0
_PORT_ATTEMPTS = 3


class RedisServerError(RuntimeError):
    """The test server could not be started."""


def find_redis_server() -> str | None:
    """Path of the ``redis-server`` executable, or ``None`` when it is not installed."""
    return shutil.which("redis-server")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """A ``redis-server`` subprocess on ``127.0.0.1`` for tests.

    ``directory`` receives the server's log (and would hold its files, but
    ``--save ''`` and ``--appendonly no`` keep it from writing any). ``extra_args``
    are appended to the command line, for example ``["--maxmemory", "4mb"]``.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        executable: str | None = None,
    ) -> None:
        found = executable or find_redis_server()
        if found is None:
            raise RedisServerError("redis-server is not installed")
        self.executable = found
        self.directory = directory
        self.extra_args = tuple(extra_args)
        self._fixed_port = port
        self.port = port or 0
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Start the server and wait until it answers ``PING``.

        Without a fixed port, a new free port is tried when the chosen one was
        taken in the meantime.
        """
        if self._process is not None:
            raise RedisServerError("the server is already running")
        self.directory.mkdir(parents=True, exist_ok=True)
        attempts = 1 if self._fixed_port or self.port else _PORT_ATTEMPTS
        last_error: RedisServerError | None = None
        for _ in range(attempts):
            if not self.port:
                self.port = free_port()
            try:
                self._spawn()
                return
            except RedisServerError as exc:
                last_error = exc
                if self._fixed_port is None:
                    self.port = 0
        assert last_error is not None
        raise last_error

    def _spawn(self) -> None:
        command = [
            self.executable,
            "--bind", self.host,
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--daemonize", "no",
            *self.extra_args,
        ]
        log = (self.directory / f"redis-{self.port}.log").open("ab")
        try:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        except OSError as exc:
            raise RedisServerError(f"cannot run {self.executable}: {exc}") from exc
        finally:
            log.close()
        self._process = process
        self._paused = False
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        probe = self.client(socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    break
                try:
                    if probe.ping():
                        return
                except (redis.exceptions.RedisError, OSError):
                    time.sleep(0.01)
        finally:
            probe.close()
        self._terminate()
        raise RedisServerError(
            f"redis-server on port {self.port} did not answer PING; see {self.log_path}"
        )

    def stop(self) -> None:
        """Stop the server (resuming it first if it is paused); a no-op if not running."""
        self._terminate()

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        if self._paused:
            process.send_signal(signal.SIGCONT)
            self._paused = False
        process.terminate()
        try:
            process.wait(timeout=_STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """Kill the server with ``SIGKILL``, as a crash would."""
        process, self._process = self._process, None
        if process is None:
            return
        process.kill()
        process.wait()
        self._paused = False

    def restart(self) -> None:
        """Start a fresh server on the same port after :meth:`kill` or :meth:`stop`."""
        self._terminate()
        self._fixed_port = self.port
        self.start()

    def pause(self) -> None:
        """Freeze the server with ``SIGSTOP``: connections stay open but nothing answers."""
        self._signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """Unfreeze a paused server with ``SIGCONT``."""
        self._signal(signal.SIGCONT)
        self._paused = False

    def _signal(self, signum: int) -> None:
        if self._process is None or self._process.poll() is not None:
            raise RedisServerError("the server is not running")
        self._process.send_signal(signum)

    # -- access ---------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """Process id of the running server."""
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        """Whether the server process is alive (paused counts as alive)."""
        return self._process is not None and self._process.poll() is None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self.directory / f"redis-{self.port}.log"

    def client(self, **kwargs: Any) -> redis.Redis:
        """An administrative client with short timeouts and no retries (override with
        ``kwargs``): redis-py's default retries would stretch every failed call to seconds."""
        options: dict[str, Any] = {
            "socket_timeout": 2.0,
            "socket_connect_timeout": 2.0,
            "retry": Retry(NoBackoff(), 0),
        }
        options.update(kwargs)
        return redis.Redis(host=self.host, port=self.port, **options)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        # A test that fails between start and stop must not leave a server behind.
        with contextlib.suppress(Exception):
            if self._process is not None and self._process.poll() is None:
                os.kill(self._process.pid, signal.SIGKILL)
