"""Throwaway ``clickhouse-server`` processes for tests and benchmarks.

:class:`ClickHouseServer` writes a config of its own (every path under one directory,
loopback only, free ports, UTC), starts the server in the foreground as a child
process, waits until it answers a query and stops it again. It can also pause
(``SIGSTOP``) and resume (``SIGCONT``) the process, which is how the fault tests
simulate a hung server, and kill it and restart it on the same ports and data::

    with ClickHouseServer(tmp_path) as server:
        server.execute("CREATE DATABASE feeds")
        engine = connect(ClickHouseConfig(port=server.tcp_port, database="feeds"))

:class:`ClickHouseCluster` starts several such servers that list each other as a
``remote_servers`` cluster: shards of one server each, for the sharded mode::

    with ClickHouseCluster(tmp_path, shards=2) as cluster:
        cluster.execute_everywhere("CREATE DATABASE feeds")
        config = cluster.config("feeds")   # cluster=..., port of the first server
        engine = connect(config)
        create_schema(engine, config)
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import clickhouse_driver
import clickhouse_driver.errors

from reelrank.testing.servers import ServerProcess, free_port, spawn_logged, wait_until_ready

from ._config import ClickHouseConfig

__all__ = [
    "ClickHouseCluster",
    "ClickHouseServer",
    "ClickHouseServerError",
    "ZooKeeperServer",
    "find_clickhouse_server",
    "find_zookeeper",
    "free_port",
    "older_aggregates_view",
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
{query_log}{extra}
</yandex>
"""

# The table ``query_log=True`` fills (with every user's ``log_queries`` on).
_QUERY_LOG = """    <query_log>
        <database>system</database>
        <table>query_log</table>
        <flush_interval_milliseconds>7500</flush_interval_milliseconds>
    </query_log>
"""

_USERS = """<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>2000000000</max_memory_usage>
            <load_balancing>random</load_balancing>{log_queries}
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

    def __init__(
        self,
        directory: Path,
        *,
        executable: str | None = None,
        tcp_port: int = 0,
        http_port: int = 0,
        extra_config: str = "",
        query_log: bool = False,
    ) -> None:
        found = executable or find_clickhouse_server()
        if found is None:
            raise ClickHouseServerError("clickhouse-server is not installed")
        self.executable = found
        self.directory = directory.resolve()
        self.tcp_port = tcp_port
        self.http_port = http_port
        self.extra_config = extra_config
        """XML elements added to the ``<yandex>`` root of the config (a cluster's
        ``remote_servers``, ``macros``, ``zookeeper``)."""
        self.query_log = query_log
        """Whether the server records every query of every client in
        ``system.query_log`` (its text, the rows it read), for a test to see which
        statements another process ran: ``SYSTEM FLUSH LOGS`` writes what is pending."""
        self._fixed_ports = bool(tcp_port and http_port)
        self._interserver_port = 0

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Write the config, start the server and wait until it answers ``SELECT 1``.

        When a chosen port was taken in the meantime, new free ports are tried, unless
        the ports were given (a cluster's servers name each other's ports).
        """
        if self._process is not None:
            raise ClickHouseServerError("the server is already running")
        last_error: ClickHouseServerError | None = None
        for _ in range(1 if self._fixed_ports else _PORT_ATTEMPTS):
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
        log_queries = "\n            <log_queries>1</log_queries>" if self.query_log else ""
        (self.directory / "users.xml").write_text(
            _USERS.format(log_queries=log_queries), encoding="utf-8"
        )
        config = self.directory / "config.xml"
        config.write_text(
            _CONFIG_TEMPLATE.format(
                directory=self.directory,
                host=self.host,
                http_port=self.http_port,
                tcp_port=self.tcp_port,
                interserver_port=self._interserver_port,
                query_log=_QUERY_LOG if self.query_log else "",
                extra=self.extra_config,
            ),
            encoding="utf-8",
        )
        return config

    def _spawn(self) -> None:
        if not self._fixed_ports:
            self.tcp_port = free_port()
            self.http_port = free_port()
            while self.http_port == self.tcp_port:
                self.http_port = free_port()
        if not self._interserver_port:
            self._interserver_port = free_port()
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

    def kill(self) -> None:
        """Kill the server with ``SIGKILL``, as a crash would (no shutdown, parts being
        written are left behind half done)."""
        process, self._process = self._process, None
        if process is None:
            return
        process.kill()
        process.wait()
        self._paused = False

    def restart(self) -> None:
        """Start the server again on the same ports and data after :meth:`kill` or
        :meth:`stop`."""
        self._terminate()
        self._fixed_ports = True
        self.start()

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


# The aggregate view of schema versions 1 to 3 as those releases created it, with
# ``{arrivals}`` the rows each added by arrival bucket: version 2 the rows by coarse
# arrival bucket (2**36 ns) under tags 6 and 7; version 3 those by fine bucket (2**30
# ns) under tags 8 and 9 and the coarse totals under tag 7; none has the like state by
# bucket (tag 10, version 4).
_OLDER_VIEW = """CREATE MATERIALIZED VIEW {aggregates}_mv TO {aggregates} AS
SELECT key.1 AS tag, key.2 AS a, if(tag = 0, cityHash64(event_id), key.3) AS b,
       key.4 AS c,
       if(key.1 = 0, event_id, '') AS event_id,
       countState() AS events,
       sumState(ifNull(completion, 0.)) AS completion_sum,
       argMaxState(toUInt8(kind = 'like'), seq) AS liked,
       minState(seq) AS first_seq
FROM {events}
ARRAY JOIN if(kind IN ('like', 'unlike'),
    [(toUInt8(0), toUInt64(intDiv(toUInt32(occurred_at), 3600)), toUInt64(0), toUInt64(0)),
     (toUInt8(2), video_id, user_id, toUInt64(0)),
     (toUInt8(4), user_id, creator_id, video_id){arrivals}],
    [(toUInt8(0), toUInt64(intDiv(toUInt32(occurred_at), 3600)), toUInt64(0), toUInt64(0)),
     (toUInt8(1), video_id, toUInt64(0), toUInt64(toUInt8(kind))),
     (toUInt8(3), user_id, creator_id, toUInt64(toUInt8(kind))){arrivals}]) AS key
GROUP BY tag, a, b, c, event_id"""
_ARRIVALS_OF_VERSION = {
    1: "",
    2: """,
     (toUInt8(6), bitShiftRight(seq, 36), video_id, toUInt64(toUInt8(kind))),
     (toUInt8(7), bitShiftRight(seq, 36), toUInt64(0), toUInt64(0))""",
    3: """,
     (toUInt8(8), bitShiftRight(seq, 30), video_id, toUInt64(toUInt8(kind))),
     (toUInt8(9), bitShiftRight(seq, 30), toUInt64(0), toUInt64(0)),
     (toUInt8(7), bitShiftRight(seq, 36), toUInt64(0), toUInt64(0))""",
}


def older_aggregates_view(
    version: int, *, aggregates: str = "event_aggregates", events: str = "events"
) -> str:
    """The ``CREATE MATERIALIZED VIEW`` statement of the aggregate view as schema
    ``version`` 1, 2 or 3 created it, for tests of
    :func:`~reelrank_clickhouse.migrate_schema` and of the older schema's costs.

    The view ``{aggregates}_mv`` reads ``events`` and writes ``aggregates``: on a shard's
    server of a cluster, ``events_local`` and ``event_aggregates_local`` (qualified with
    a database when the connection's is another). Drop the current view first.
    Any other ``version`` raises :class:`ValueError`.
    """
    if version not in _ARRIVALS_OF_VERSION:
        raise ValueError(f"schema version {version} had no view of its own here; 1, 2 or 3")
    arrivals = _ARRIVALS_OF_VERSION[version]
    return _OLDER_VIEW.format(aggregates=aggregates, events=events, arrivals=arrivals)


def _cluster_xml(name: str, shards: Sequence[Sequence[int]]) -> str:
    """A ``remote_servers`` section: one ``<shard>`` per list of replica TCP ports."""
    shard_xml = "".join(
        "<shard><internal_replication>true</internal_replication>"
        + "".join(
            f"<replica><host>{ServerProcess.host}</host><port>{port}</port></replica>"
            for port in replicas
        )
        + "</shard>"
        for replicas in shards
    )
    return f"<remote_servers><{name}>{shard_xml}</{name}></remote_servers>"


class ClickHouseCluster:
    """Several :class:`ClickHouseServer` processes that form a ``remote_servers``
    cluster named :attr:`name`: ``shards`` shards of ``replicas`` servers each.

    Every server gets the same cluster section and its own ``shard`` and ``replica``
    macros. Replicas need ZooKeeper: pass ``zookeeper`` as ``(host, port)`` (see
    :class:`~reelrank_clickhouse.testing.ZooKeeperServer`). ``ON CLUSTER`` DDL is not
    used, so the adapter creates its schema on each server (:attr:`servers`, shard by
    shard).
    """

    def __init__(
        self,
        directory: Path,
        *,
        shards: int = 2,
        replicas: int = 1,
        name: str = "reelrank",
        zookeeper: tuple[str, int] | None = None,
    ) -> None:
        if shards < 1 or replicas < 1:
            raise ValueError("a cluster needs at least one shard of one replica")
        if replicas > 1 and zookeeper is None:
            raise ValueError("replicas need ZooKeeper")
        self.name = name
        self.directory = directory.resolve()
        ports = [[(free_port(), free_port()) for _ in range(replicas)] for _ in range(shards)]
        remote = _cluster_xml(name, [[tcp for tcp, _ in shard] for shard in ports])
        keeper = (
            ""
            if zookeeper is None
            else f"<zookeeper><node><host>{zookeeper[0]}</host><port>{zookeeper[1]}</port>"
            "</node><session_timeout_ms>10000</session_timeout_ms></zookeeper>"
        )
        self.servers: list[ClickHouseServer] = []
        """Every server, shard by shard, replicas of a shard together."""
        for shard, replica_ports in enumerate(ports, start=1):
            for replica, (tcp, http) in enumerate(replica_ports, start=1):
                macros = f"<macros><shard>{shard:02d}</shard><replica>r{replica}</replica></macros>"
                self.servers.append(
                    ClickHouseServer(
                        self.directory / f"shard{shard}-replica{replica}",
                        tcp_port=tcp,
                        http_port=http,
                        extra_config=remote + macros + keeper,
                    )
                )
        self.replicated = replicas > 1

    def start(self) -> None:
        """Start every server; stops the started ones again if one fails."""
        try:
            for server in self.servers:
                server.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every server."""
        for server in self.servers:
            server.stop()

    def execute_everywhere(self, sql: str) -> None:
        """Run one statement on every server (``CREATE DATABASE``, for one)."""
        for server in self.servers:
            server.execute(sql)

    def config(self, database: str, **settings: object) -> ClickHouseConfig:
        """Settings of the adapter in sharded mode, entering through the first server."""
        return ClickHouseConfig.model_validate(
            {
                "port": self.servers[0].tcp_port,
                "database": database,
                "cluster": self.name,
                "replicated": self.replicated,
                **settings,
            }
        )

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


_ZOOKEEPER_JAR = "/usr/share/java/zookeeper.jar"
_ZOOKEEPER_MAIN = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
_ZOOKEEPER_START_TIMEOUT_SECONDS = 60.0


def find_zookeeper() -> str | None:
    """Path of ZooKeeper's jar (Debian's ``zookeeper`` package), or ``None``."""
    if os.path.exists(_ZOOKEEPER_JAR) and shutil.which("java"):
        return _ZOOKEEPER_JAR
    return None


class ZooKeeperServer(ServerProcess):
    """A standalone ZooKeeper on ``127.0.0.1`` for the replicated mode's tests.

    Writes its own ``zoo.cfg`` and log configuration under ``directory`` (data, logs),
    starts the JVM from Debian's jar in the foreground of a child process and waits
    until it serves (``srvr``). ClickHouse 18.16 has no Keeper of its own.
    """

    error_type = ClickHouseServerError
    stop_timeout = _STOP_TIMEOUT_SECONDS

    def __init__(self, directory: Path) -> None:
        jar = find_zookeeper()
        if jar is None:
            raise ClickHouseServerError("zookeeper (and java) is not installed")
        self.jar = jar
        self.directory = directory.resolve()
        self.port = 0

    def start(self) -> None:
        """Write the config, start the JVM and wait until the server serves."""
        if self._process is not None:
            raise ClickHouseServerError("ZooKeeper is already running")
        (self.directory / "data").mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config = self.directory / "zoo.cfg"
        config.write_text(
            "tickTime=500\ninitLimit=10\nsyncLimit=5\n"
            f"dataDir={self.directory / 'data'}\nclientPort={self.port}\n"
            f"clientPortAddress={self.host}\nadmin.enableServer=false\n"
            "4lw.commands.whitelist=srvr\nmaxClientCnxns=0\n",
            encoding="utf-8",
        )
        (self.directory / "log4j.properties").write_text(
            "log4j.rootLogger=WARN, CONSOLE\n"
            "log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout\n",
            encoding="utf-8",
        )
        command = [
            "java",
            "-Xmx256m",
            f"-Dzookeeper.log.dir={self.directory}",
            "-cp",
            f"{self.directory}:{self.jar}",
            _ZOOKEEPER_MAIN,
            str(config),
        ]
        try:
            process = spawn_logged(command, self.directory / "zookeeper.log", cwd=self.directory)
        except OSError as exc:
            raise ClickHouseServerError(f"cannot run java: {exc}") from exc
        self._adopt(process)
        if wait_until_ready(
            self._answers, process, timeout=_ZOOKEEPER_START_TIMEOUT_SECONDS, interval=0.1
        ):
            return
        self._terminate()
        raise ClickHouseServerError(
            f"ZooKeeper on port {self.port} did not answer; see {self.directory}"
        )

    def _answers(self) -> bool:
        """Whether the server is serving: ``srvr`` reports its mode only then (``ruok``
        answers earlier, and ClickHouse's first session was seen refused after it)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as probe:
                probe.sendall(b"srvr")
                reply = b""
                while chunk := probe.recv(4096):
                    reply += chunk
        except OSError:
            return False
        return b"Mode: standalone" in reply

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)``, as :class:`ClickHouseCluster` takes it."""
        return (self.host, self.port)
