"""Backend-neutral pieces of throwaway test servers.

The store adapters start real servers (Redis, PostgreSQL, ClickHouse) for their tests
and benchmarks. What those tools share lives here: a free loopback port, starting a
child process in a session of its own with its output in a log file, polling until it
is ready, and :class:`ServerProcess`, a base class that pauses (``SIGSTOP``), resumes
(``SIGCONT``) and stops such a process, which is how fault tests simulate a hung or
crashed server. Nothing here runs at import time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

__all__ = ["ServerProcess", "free_port", "spawn_logged", "terminate_process", "wait_until_ready"]

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def spawn_logged(
    command: Sequence[str], log_path: Path, *, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``command`` in a session of its own, appending its output to ``log_path``.

    A session of its own keeps terminal signals meant for the test run away from the
    server. Raises :class:`OSError` when the program cannot be run.
    """
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(command), stdout=log, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True
        )


def wait_until_ready(
    ready: Callable[[], bool],
    process: subprocess.Popen[bytes],
    *,
    timeout: float,
    interval: float,
) -> bool:
    """Call ``ready`` every ``interval`` seconds until it returns ``True``.

    Returns ``False`` when ``timeout`` seconds pass first or ``process`` exits: a
    server that died will not become ready.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if ready():
            return True
        time.sleep(interval)
    return False


def terminate_process(
    process: subprocess.Popen[bytes], *, timeout: float, paused: bool = False
) -> None:
    """Stop ``process`` with ``SIGTERM``, and ``SIGKILL`` if it outlives ``timeout`` seconds.

    A ``paused`` process is continued first: a stopped process does not act on
    ``SIGTERM``. A process that has already exited is left alone.
    """
    if process.poll() is not None:
        return
    if paused:
        process.send_signal(signal.SIGCONT)
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class ServerProcess:
    """A server that runs as one child process, for tests.

    Subclasses start the process (with :func:`spawn_logged`), store it with
    :meth:`_adopt` and define :meth:`start`; this class pauses, resumes and stops it,
    and kills it if the object is dropped while it still runs. ``error_type`` is the
    exception raised when the server is not running.
    """

    host: ClassVar[str] = LOOPBACK
    error_type: ClassVar[type[Exception]] = RuntimeError
    stop_timeout: ClassVar[float] = 5.0

    _process: subprocess.Popen[bytes] | None = None
    _paused: bool = False

    def start(self) -> None:
        """Start the server; subclasses define how."""
        raise NotImplementedError

    def _adopt(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process
        self._paused = False

    def stop(self) -> None:
        """Stop the server (resuming it first if it is paused); a no-op if not running."""
        self._terminate()

    def _terminate(self) -> None:
        process, self._process = self._process, None
        paused, self._paused = self._paused, False
        if process is not None:
            terminate_process(process, timeout=self.stop_timeout, paused=paused)

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
            raise self.error_type("the server is not running")
        self._process.send_signal(signum)

    @property
    def pid(self) -> int | None:
        """Process id of the running server."""
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        """Whether the server process is alive (paused counts as alive)."""
        return self._process is not None and self._process.poll() is None

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
