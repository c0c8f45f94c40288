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

:class:`PostgresReplica` adds a streaming replica of such a server (``pg_basebackup -R``),
optionally applying the primary's changes with a delay so that tests can provoke stale
reads, and :class:`PgBouncer` runs the pgbouncer connection pooler in transaction mode
in front of them::

    with PostgresServer(settings=PostgresReplica.PRIMARY_SETTINGS) as primary:
        with PostgresReplica(primary, apply_delay_seconds=0.5) as replica:
            with PgBouncer({"primary": primary, "replica": replica}) as pooler:
                engine = connect(SqlStoreConfig(url=pooler.url("primary"),
                                                transaction_pooling=True))
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
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import psycopg

from reelrank.testing.servers import ServerProcess, free_port, spawn_logged, wait_until_ready

__all__ = [
    "PgBouncer",
    "PostgresReplica",
    "PostgresServer",
    "PostgresServerError",
    "find_pgbouncer",
    "find_postgres_bin",
    "free_port",
]

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


def _server_user_dir(prefix: str) -> Path:
    # mkdtemp makes a 0700 directory; the server user must be able to enter it.
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    root.chmod(0o755)
    return root


def _give_to_server_user(path: Path) -> None:
    if _run_as_server_user():
        entry = pwd.getpwnam(_SERVER_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


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

    def __init__(
        self, *, bin_dir: Path | None = None, settings: Mapping[str, str] | None = None
    ) -> None:
        found = bin_dir or find_postgres_bin()
        if found is None:
            raise PostgresServerError("PostgreSQL server binaries are not installed")
        self.bin_dir = found
        self.settings = dict(settings or {})
        """Server settings passed as ``-c name=value`` after (and over) the defaults."""
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
        self._root = _server_user_dir("reelrank-pg-")
        for sub in (self.data_dir, self.socket_dir):
            sub.mkdir(mode=0o700)
            _give_to_server_user(sub)
        self._fill_data_dir()

    def _fill_data_dir(self) -> None:
        command = _as_server_user(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-A",
                "trust",
                "-U",
                _SERVER_USER,
                "-E",
                "UTF8",
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
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-k",
                str(self.socket_dir),
                "-c",
                f"listen_addresses={self.host}",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=100",
                *(part for item in self.settings.items() for part in ("-c", "=".join(item))),
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

    def shut_down(self) -> None:
        """Stop the server but keep the cluster, as an outage would; :meth:`restart`
        brings it back with its data, on the same port."""
        self._terminate()

    def restart(self) -> None:
        """Start the server again on the cluster :meth:`shut_down` kept, on the same port."""
        if self._process is not None:
            raise PostgresServerError("the server is already running")
        if self._root is None:
            raise PostgresServerError("there is no cluster to start; call start()")
        self._spawn()

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


class PostgresReplica(PostgresServer):
    """A hot-standby streaming replica of a running :class:`PostgresServer`, for tests.

    :meth:`start` copies the primary with ``pg_basebackup -D DIR -R -X stream`` (``-R``
    writes ``primary_conninfo`` and ``standby.signal``) and starts it like any
    :class:`PostgresServer`; it then accepts read-only connections. With
    ``apply_delay_seconds`` the replica applies each transaction that long after its
    commit on the primary (``recovery_min_apply_delay``), which makes stale reads easy to
    provoke. The primary should run with :attr:`PRIMARY_SETTINGS` (or
    :attr:`SYNCHRONOUS_PRIMARY_SETTINGS`); initdb's default ``pg_hba.conf`` already lets
    loopback connections replicate.
    """

    PRIMARY_SETTINGS: ClassVar[Mapping[str, str]] = {"synchronous_commit": "on"}
    """Settings of a primary with an asynchronous replica: each commit is written
    before it returns, so :meth:`wait_for_replay` waits for it (the test servers'
    default ``synchronous_commit=off`` leaves the commit record in memory for up to
    ``wal_writer_delay``)."""

    SYNCHRONOUS_PRIMARY_SETTINGS: ClassVar[Mapping[str, str]] = {
        "synchronous_commit": "remote_apply",
        "synchronous_standby_names": "*",
    }
    """Settings of a primary whose commits return only once the replica has applied
    them, so every read on the replica sees every earlier write (read-your-writes). The
    replica must be running before anything commits on such a primary."""

    def __init__(
        self,
        primary: PostgresServer,
        *,
        apply_delay_seconds: float = 0.0,
        bin_dir: Path | None = None,
    ) -> None:
        if not 0.0 <= apply_delay_seconds <= 3_600.0:
            raise PostgresServerError("apply_delay_seconds must be in [0, 3600]")
        settings = {}
        if apply_delay_seconds > 0:
            settings["recovery_min_apply_delay"] = f"{round(apply_delay_seconds * 1000)}ms"
        super().__init__(bin_dir=bin_dir or primary.bin_dir, settings=settings)
        self.primary = primary
        self.apply_delay_seconds = apply_delay_seconds

    def _fill_data_dir(self) -> None:
        if not self.primary.running:
            self._remove_cluster()
            raise PostgresServerError("the primary is not running")
        command = _as_server_user(
            [
                str(self.bin_dir / "pg_basebackup"),
                "-D",
                str(self.data_dir),
                "-R",
                "-X",
                "stream",
                "-h",
                self.primary.host,
                "-p",
                str(self.primary.port),
                "-U",
                _SERVER_USER,
                "--no-sync",
            ]
        )
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            self._remove_cluster()
            raise PostgresServerError(f"pg_basebackup failed: {result.stderr.strip()}")

    def wait_for_replay(self, *, timeout: float = 10.0) -> float:
        """Wait until the replica has replayed everything the primary wrote so far.

        Reads the primary's ``pg_current_wal_lsn()`` once, then polls the replica until
        ``pg_last_wal_replay_lsn()`` reaches it; returns the seconds waited. Raises
        :class:`PostgresServerError` after ``timeout`` seconds.
        """
        started = time.monotonic()
        with psycopg.connect(self.primary.dsn, connect_timeout=2) as primary:
            target = primary.execute("SELECT pg_current_wal_lsn()").fetchone()
        assert target is not None
        with psycopg.connect(self.dsn, connect_timeout=2, autocommit=True) as replica:
            while True:
                row = replica.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target[0],)
                ).fetchone()
                waited = time.monotonic() - started
                if row is not None and row[0]:
                    return waited
                if waited > timeout:
                    raise PostgresServerError(
                        f"the replica did not replay up to {target[0]} within {timeout} s"
                    )
                time.sleep(0.005)


def find_pgbouncer() -> Path | None:
    """The ``pgbouncer`` program (Debian's package puts it in ``/usr/sbin``), or ``None``.

    ``REELRANK_PGBOUNCER`` overrides the search.
    """
    override = os.environ.get("REELRANK_PGBOUNCER")
    candidates = [Path(override)] if override else []
    found = shutil.which("pgbouncer")
    if found is not None:
        candidates.append(Path(found))
    candidates.append(Path("/usr/sbin/pgbouncer"))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


class PgBouncer(ServerProcess):
    """pgbouncer in transaction mode on a free loopback port, in front of test servers.

    Each entry of ``databases`` becomes a pgbouncer database of that name, pooling
    connections to the ``postgres`` database of its server; :meth:`url` is the
    SQLAlchemy URL of one. Authentication is ``trust`` (the servers trust loopback too),
    with a user list naming the ``postgres`` user. As root, pgbouncer drops to the
    ``postgres`` user itself (``-u``) rather than through ``runuser``, so the process
    started is pgbouncer's own.
    """

    error_type = PostgresServerError

    def __init__(
        self,
        databases: Mapping[str, PostgresServer],
        *,
        pool_size: int = 10,
        program: Path | None = None,
    ) -> None:
        found = program or find_pgbouncer()
        if found is None:
            raise PostgresServerError("pgbouncer is not installed")
        if not databases:
            raise PostgresServerError("pgbouncer needs at least one database")
        self.program = found
        self.databases = dict(databases)
        self.pool_size = pool_size
        self.port = 0
        self._root: Path | None = None

    def start(self) -> None:
        """Write the configuration and start pgbouncer; returns once it accepts clients."""
        if self._process is not None:
            raise PostgresServerError("pgbouncer is already running")
        root = _server_user_dir("reelrank-pgbouncer-")
        _give_to_server_user(root)
        self._root = root
        (root / "userlist.txt").write_text(f'"{_SERVER_USER}" ""\n')
        last_error: PostgresServerError | None = None
        for _ in range(_PORT_ATTEMPTS):
            self.port = free_port()
            try:
                self._spawn(root)
                return
            except PostgresServerError as exc:
                last_error = exc
        self._remove()
        assert last_error is not None
        raise last_error

    def _spawn(self, root: Path) -> None:
        entries = "\n".join(
            f"{name} = host={server.host} port={server.port} dbname=postgres"
            for name, server in self.databases.items()
        )
        config = root / "pgbouncer.ini"
        config.write_text(
            f"""[databases]
{entries}

[pgbouncer]
listen_addr = {self.host}
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {root / "userlist.txt"}
pool_mode = transaction
default_pool_size = {self.pool_size}
max_client_conn = 500
logfile = {self.log_path}
pidfile = {root / "pgbouncer.pid"}
"""
        )
        command = [str(self.program)]
        if _run_as_server_user():
            command += ["-u", _SERVER_USER]
        command.append(str(config))
        try:
            # pgbouncer logs to its logfile; the captured output holds start-up errors.
            process = spawn_logged(command, root / "pgbouncer.out")
        except OSError as exc:
            raise PostgresServerError(f"cannot run pgbouncer: {exc}") from exc
        self._adopt(process)
        first = next(iter(self.databases))
        if wait_until_ready(
            lambda: self._accepts(first), process, timeout=_START_TIMEOUT_SECONDS, interval=0.02
        ):
            return
        self._terminate()
        raise PostgresServerError(f"pgbouncer on port {self.port} did not start; see {root}")

    def _accepts(self, database: str) -> bool:
        try:
            with psycopg.connect(
                self.dsn(database), connect_timeout=2, prepare_threshold=None
            ) as connection:
                connection.execute("SELECT 1")
                return True
        except psycopg.OperationalError:
            return False

    def stop(self) -> None:
        """Stop pgbouncer and delete its directory."""
        self._terminate()
        self._remove()

    def _remove(self) -> None:
        root, self._root = self._root, None
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)

    @property
    def log_path(self) -> Path:
        """pgbouncer's log file."""
        if self._root is None:
            raise PostgresServerError("pgbouncer is not configured")
        return self._root / "pgbouncer.log"

    def dsn(self, database: str) -> str:
        """libpq connection string of one of the pooled databases."""
        self._check(database)
        return f"host={self.host} port={self.port} user={_SERVER_USER} dbname={database}"

    def url(self, database: str) -> str:
        """SQLAlchemy URL (psycopg 3) of one of the pooled databases."""
        self._check(database)
        return f"postgresql+psycopg://{_SERVER_USER}@{self.host}:{self.port}/{database}"

    def _check(self, database: str) -> None:
        if database not in self.databases:
            raise PostgresServerError(f"pgbouncer pools no database named {database!r}")
