"""Throwaway PostgreSQL clusters for tests and benchmarks.

:class:`PostgresServer` runs ``initdb`` into a fresh directory under ``/tmp``, starts
``postgres`` on a free loopback port with durability switched off, waits until it accepts
connections and removes everything again on :meth:`~PostgresServer.stop`. PostgreSQL
refuses to run as root, so as root both programs run as the ``postgres`` user through
``runuser``; the directory and its parents are made traversable for that user. Like
the other adapters' test servers it is a :class:`~reelrank.testing.servers.ServerProcess`:
it pauses (``SIGSTOP``) and resumes (``SIGCONT``) the whole cluster, which is how the
fault tests simulate a hung database::

    with PostgresServer() as server:
        engine = connect(SqlStoreConfig(url=server.url))
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from reelrank.testing.servers import ServerProcess, free_port, spawn_logged, wait_until_ready

__all__ = ["PostgresServer", "PostgresServerError", "find_postgres_bin", "free_port"]

_START_TIMEOUT_SECONDS = 15.0
_PORT_ATTEMPTS = 3
_SERVER_USER = "postgres"


class PostgresServerError(RuntimeError):
    """The test cluster could not be created or started."""


def find_postgres_bin() -> Path | None:
    """Directory holding ``initdb`` and ``postgres`` (PostgreSQL 15 preferred), or ``None``.

    ``REELRANK_POSTGRES_BIN`` overrides the search.
    """
    override = os.environ.get("REELRANK_POSTGRES_BIN")
    candidates = [Path(override)] if override else []
    candidates.append(Path("/usr/lib/postgresql/15/bin"))
    candidates.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True))
    for directory in candidates:
        if (directory / "postgres").is_file() and (directory / "initdb").is_file():
            return directory
    return None


def _run_as_server_user() -> bool:
    return os.geteuid() == 0


def _as_server_user(command: list[str]) -> list[str]:
    if _run_as_server_user():
        return ["runuser", "-u", _SERVER_USER, "--", *command]
    return command


def _child_pids(parent: int) -> list[int]:
    children: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command name: state, ppid, ...
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == parent:
            children.append(int(entry.name))
    return children


class PostgresServer(ServerProcess):
    """A PostgreSQL cluster of its own on ``127.0.0.1``, for tests.

    ``fsync``, ``synchronous_commit`` and ``full_page_writes`` are off: the data is
    thrown away, and tests should not wait for disks. Pausing, resuming and stopping
    differ from :class:`~reelrank.testing.servers.ServerProcess`'s single process: a
    cluster is a postmaster with a backend process per connection (and ``runuser``
    above them as root), and PostgreSQL shuts down fast on ``SIGINT``.
    """

    error_type = PostgresServerError
    stop_timeout = 10.0
    user = _SERVER_USER

    def __init__(self, *, bin_dir: Path | None = None) -> None:
        found = bin_dir or find_postgres_bin()
        if found is None:
            raise PostgresServerError("PostgreSQL server binaries are not installed")
        self.bin_dir = found
        self.port = 0
        self._root: Path | None = None
        self._paused_pids: list[int] = []

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Create the cluster and start the server; returns once it accepts connections."""
        if self._process is not None:
            raise PostgresServerError("the server is already running")
        self._create_cluster()
        last_error: PostgresServerError | None = None
        for _ in range(_PORT_ATTEMPTS):
            self.port = free_port()
            try:
                self._spawn()
                return
            except PostgresServerError as exc:
                last_error = exc
        self._remove_cluster()
        assert last_error is not None
        raise last_error

    def _create_cluster(self) -> None:
        # mkdtemp makes a 0700 directory; the server user must be able to enter it.
        root = Path(tempfile.mkdtemp(prefix="reelrank-pg-", dir="/tmp"))
        root.chmod(0o755)
        self._root = root
        for sub in (self.data_dir, self.socket_dir):
            sub.mkdir(mode=0o700)
            if _run_as_server_user():
                entry = pwd.getpwnam(_SERVER_USER)
                os.chown(sub, entry.pw_uid, entry.pw_gid)
        command = _as_server_user(
            [
                str(self.bin_dir / "initdb"),
                "-D", str(self.data_dir),
                "-A", "trust",
                "-U", _SERVER_USER,
                "-E", "UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            self._remove_cluster()
            raise PostgresServerError(f"initdb failed: {result.stderr.strip()}")

    def _spawn(self) -> None:
        command = _as_server_user(
            [
                str(self.bin_dir / "postgres"),
                "-D", str(self.data_dir),
                "-p", str(self.port),
                "-k", str(self.socket_dir),
                "-c", f"listen_addresses={self.host}",
                "-c", "fsync=off",
                "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off",
                "-c", "max_connections=100",
            ]
        )
        try:
            process = spawn_logged(command, self.log_path)
        except OSError as exc:
            raise PostgresServerError(f"cannot run postgres: {exc}") from exc
        self._adopt(process)
        if wait_until_ready(
            self._accepts_connections, process, timeout=_START_TIMEOUT_SECONDS, interval=0.02
        ):
            return
        self._terminate()
        raise PostgresServerError(
            f"postgres on port {self.port} did not start; see {self.log_path}"
        )

    def _accepts_connections(self) -> bool:
        try:
            with psycopg.connect(self.dsn, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def stop(self) -> None:
        """Stop the server (resuming it first if paused) and delete the cluster."""
        self._terminate()
        self._remove_cluster()

    def _terminate(self) -> None:
        if self._paused_pids:
            self.resume()
        process, self._process = self._process, None
        if process is None:
            return
        postmaster = self.postmaster_pid
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                # SIGINT is PostgreSQL's "fast" shutdown: abort sessions, stop at once.
                os.kill(postmaster or process.pid, signal.SIGINT)
            deadline = time.monotonic() + self.stop_timeout
            while process.poll() is None and time.monotonic() < deadline:
                # runuser may stop itself late, after seeing its child stopped by a
                # pause; continued, it reaps the server and exits.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGCONT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=0.05)
            if process.poll() is None:
                for pid in [postmaster, process.pid]:
                    if pid is not None:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                process.wait()

    def _remove_cluster(self) -> None:
        root, self._root = self._root, None
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)

    def pause(self) -> None:
        """Freeze the cluster with ``SIGSTOP``: ``runuser``, the postmaster and every backend.

        Backends are process-group leaders of their own (PostgreSQL calls ``setsid`` in
        each child), so they are found as the postmaster's children and stopped one by
        one, after the postmaster, so that it forks no new ones meanwhile. ``runuser`` is
        stopped first: it continues a child it saw stop (job control), and a late
        ``SIGCONT`` of its own would thaw the server behind the pause.
        """
        postmaster = self.postmaster_pid
        if self._process is None or self._process.poll() is not None or postmaster is None:
            raise PostgresServerError("the server is not running")
        pids = [self._process.pid, postmaster]
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        for child in _child_pids(postmaster):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGSTOP)
                pids.append(child)
        self._paused_pids = pids
        self._paused = True

    def resume(self) -> None:
        """Unfreeze every process :meth:`pause` stopped, in reverse order."""
        pids, self._paused_pids = self._paused_pids, []
        self._paused = False
        for pid in reversed(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    # -- access ---------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """Whether :meth:`pause` froze the cluster and :meth:`resume` has not run since."""
        return bool(self._paused_pids)

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        if self._root is None:
            raise PostgresServerError("the cluster does not exist")
        return self._root / "data"

    @property
    def socket_dir(self) -> Path:
        """Directory of the server's Unix socket."""
        if self._root is None:
            raise PostgresServerError("the cluster does not exist")
        return self._root / "socket"

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        if self._root is None:
            raise PostgresServerError("the cluster does not exist")
        return self._root / "postgres.log"

    @property
    def postmaster_pid(self) -> int | None:
        """Process id of the postmaster, from ``postmaster.pid``; ``None`` if not running."""
        if self._root is None:
            return None
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    @property
    def dsn(self) -> str:
        """libpq connection string of the ``postgres`` database."""
        return f"host={self.host} port={self.port} user={self.user} dbname=postgres"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` database, with psycopg 3."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/postgres"

    def __del__(self) -> None:
        # A test that fails between start and stop must not leave a cluster behind.
        with contextlib.suppress(Exception):
            if self._process is not None:
                self.resume()
                pid = self.postmaster_pid
                if pid is not None:
                    os.kill(pid, signal.SIGQUIT)
