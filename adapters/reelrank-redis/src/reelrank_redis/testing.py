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

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from reelrank.testing.servers import ServerProcess, free_port, spawn_logged, wait_until_ready

__all__ = ["RedisServer", "RedisServerError", "find_redis_server", "free_port"]

_START_TIMEOUT_SECONDS = 10.0
_PORT_ATTEMPTS = 3


class RedisServerError(RuntimeError):
    """The test server could not be started."""


def find_redis_server() -> str | None:
    """Path of the ``redis-server`` executable, or ``None`` when it is not installed."""
    return shutil.which("redis-server")


class RedisServer(ServerProcess):
    """A ``redis-server`` subprocess on ``127.0.0.1`` for tests.

    ``directory`` receives the server's log (and would hold its files, but
    ``--save ''`` and ``--appendonly no`` keep it from writing any). ``extra_args``
    are appended to the command line, for example ``["--maxmemory", "4mb"]``.
    """

    error_type = RedisServerError

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
        try:
            process = spawn_logged(command, self.log_path)
        except OSError as exc:
            raise RedisServerError(f"cannot run {self.executable}: {exc}") from exc
        self._adopt(process)
        probe = self.client(socket_timeout=0.5, socket_connect_timeout=0.5)

        def answers_ping() -> bool:
            try:
                return bool(probe.ping())
            except (redis.exceptions.RedisError, OSError):
                return False

        try:
            if wait_until_ready(
                answers_ping, process, timeout=_START_TIMEOUT_SECONDS, interval=0.01
            ):
                return
        finally:
            probe.close()
        self._terminate()
        raise RedisServerError(
            f"redis-server on port {self.port} did not answer PING; see {self.log_path}"
        )

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

    # -- access ---------------------------------------------------------------------

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
