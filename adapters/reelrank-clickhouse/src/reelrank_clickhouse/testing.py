"""Throwaway ``clickhouse-server`` processes for tests and benchmarks.

:class:`ClickHouseServer` writes a config of its own (every path under one directory,
loopback only, free ports, UTC), starts the server in the foreground as a child
process, waits until it answers a query and stops it again. It can also pause
(``SIGSTOP``) and resume (``SIGCONT``) the process, which is how the fault tests
simulate a hung server::

    with ClickHouseServer(tmp_path) as server:
        server.execute("CREATE DATABASE feeds")
        engine = connect(ClickHouseConfig(port=server.tcp_port, database="feeds"))
"""

from __future__ import annotations

import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import clickhouse_driver
import clickhouse_driver.errors

from reelrank.testing.servers import ServerProcess, free_port, spawn_logged, wait_until_ready

__all__ = [
    "ClickHouseServer",
    "ClickHouseServerError",
    "find_clickhouse_server",
    "free_port",
]

_SERVER_PATH = "/usr/sbin/clickhouse-server"
_START_TIMEOUT_SECONDS = 20.0
_STOP_TIMEOUT_SECONDS = 5.0
_PORT_ATTEMPTS = 3

_WHERE_IS_METADATA_SQL = "SELECT metadata_path FROM system.tables WHERE database = 'system' LIMIT 1"
_WHERE_IS_METADATA = urllib.parse.quote(_WHERE_IS_METADATA_SQL)

_CONFIG_TEMPLATE = """<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>{directory}/log/server.log</log>
        <errorlog>{directory}/log/error.log</errorlog>
        <console>0</console>
    </logger>
    <listen_host>{host}</listen_host>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <interserver_http_port>{interserver_port}</interserver_http_port>
    <path>{directory}/data/</path>
    <tmp_path>{directory}/tmp/</tmp_path>
    <user_files_path>{directory}/user_files/</user_files_path>
    <format_schema_path>{directory}/format_schemas/</format_schema_path>
    <users_config>{directory}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mark_cache_size>67108864</mark_cache_size>
    <uncompressed_cache_size>0</uncompressed_cache_size>
    <max_concurrent_queries>100</max_concurrent_queries>
</yandex>
"""

_USERS = """<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>2000000000</max_memory_usage>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
"""


def _task_state(task: Path) -> str:
    """The state letter of one thread from ``/proc/PID/task/TID/stat`` (``T``: stopped)."""
    stat = (task / "stat").read_text(encoding="ascii")
    # The command name in parentheses may hold spaces; the state follows the last ")".
    return stat.rsplit(")", 1)[1].split()[0]


class ClickHouseServerError(RuntimeError):
    """The test server could not be started."""


def find_clickhouse_server() -> str | None:
    """Path of the ``clickhouse-server`` executable, or ``None`` when it is not installed."""
    if os.access(_SERVER_PATH, os.X_OK):
        return _SERVER_PATH
    return shutil.which("clickhouse-server")


class ClickHouseServer(ServerProcess):
    """A ``clickhouse-server`` child process on ``127.0.0.1`` for tests.

    ``directory`` receives the generated config, users file, data, temporary files
    and logs. The server runs in the foreground of a child process (in a session of
    its own), so stopping the test process's fixtures stops it.
    """

    error_type = ClickHouseServerError
    stop_timeout = _STOP_TIMEOUT_SECONDS

    def __init__(self, directory: Path, *, executable: str | None = None) -> None:
        found = executable or find_clickhouse_server()
        if found is None:
            raise ClickHouseServerError("clickhouse-server is not installed")
        self.executable = found
        self.directory = directory.resolve()
        self.tcp_port = 0
        self.http_port = 0

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Write the config, start the server and wait until it answers ``SELECT 1``.

        When a chosen port was taken in the meantime, new free ports are tried.
        """
        if self._process is not None:
            raise ClickHouseServerError("the server is already running")
        last_error: ClickHouseServerError | None = None
        for _ in range(_PORT_ATTEMPTS):
            try:
                self._spawn()
                return
            except ClickHouseServerError as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    def _write_config(self) -> Path:
        for sub in ("data", "tmp", "user_files", "format_schemas", "log"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        (self.directory / "users.xml").write_text(_USERS, encoding="utf-8")
        config = self.directory / "config.xml"
        config.write_text(
            _CONFIG_TEMPLATE.format(
                directory=self.directory,
                host=self.host,
                http_port=self.http_port,
                tcp_port=self.tcp_port,
                interserver_port=free_port(),
            ),
            encoding="utf-8",
        )
        return config

    def _spawn(self) -> None:
        self.tcp_port = free_port()
        self.http_port = free_port()
        while self.http_port == self.tcp_port:
            self.http_port = free_port()
        config = self._write_config()
        command = [
            self.executable,
            f"--config-file={config}",
            f"--pid-file={self.directory / 'server.pid'}",
        ]
        try:
            process = spawn_logged(
                command, self.directory / "log" / "stdout.log", cwd=self.directory
            )
        except OSError as exc:
            raise ClickHouseServerError(f"cannot run {self.executable}: {exc}") from exc
        self._adopt(process)
        if wait_until_ready(self._answers, process, timeout=_START_TIMEOUT_SECONDS, interval=0.02):
            return
        self._terminate()
        raise ClickHouseServerError(
            f"clickhouse-server on ports {self.tcp_port}/{self.http_port} did not answer; "
            f"see {self.directory / 'log'}"
        )

    def _answers(self) -> bool:
        """Whether *this* server answers on both ports.

        Another server may have taken a port between :func:`free_port` and this
        server's bind; this one then exits, but until it does the other one would
        answer a bare ``SELECT 1``. So the probe asks each port where the server keeps
        its metadata, which only this server places under :attr:`directory`.
        """
        try:
            with urllib.request.urlopen(
                f"http://{self.host}:{self.http_port}/?query={_WHERE_IS_METADATA}", timeout=0.5
            ) as reply:
                over_http = reply.read().decode("utf-8").strip()
            client = clickhouse_driver.Client(
                self.host,
                port=self.tcp_port,
                connect_timeout=0.5,
                send_receive_timeout=0.5,
                sync_request_timeout=0.5,
            )
            try:
                over_native = str(client.execute(_WHERE_IS_METADATA_SQL)[0][0])
            finally:
                client.disconnect()
        except (urllib.error.URLError, OSError, clickhouse_driver.errors.Error, EOFError):
            return False
        mine = str(self.directory)
        return over_http.startswith(mine) and over_native.startswith(mine)

    def pause(self) -> None:
        """Freeze the server with ``SIGSTOP``: connections stay open but nothing answers.

        Returns once every thread of the server has stopped: the signal only asks
        them to, and right after start a thread was seen to answer a query after
        ``kill`` had returned.
        """
        super().pause()
        self._wait_until_stopped()

    def _wait_until_stopped(self) -> None:
        assert self._process is not None
        tasks = Path(f"/proc/{self._process.pid}/task")
        deadline = time.monotonic() + _STOP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            try:
                states = [_task_state(task) for task in tasks.iterdir()]
            except OSError:
                return  # no /proc to watch (not Linux): rely on the signal alone
            if all(state in "tTZX" for state in states):  # stopped, or exited
                return
            time.sleep(0.005)
        raise ClickHouseServerError("the server's threads did not stop after SIGSTOP")

    # -- access ---------------------------------------------------------------------

    def execute(self, sql: str, *, timeout: float = 10.0) -> str:
        """Run one statement over HTTP (for setup, such as ``CREATE DATABASE``) and
        return the server's reply."""
        request = urllib.request.Request(
            f"http://{self.host}:{self.http_port}/", data=sql.encode("utf-8"), method="POST"
        )
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            text: str = reply.read().decode("utf-8")
            return text
