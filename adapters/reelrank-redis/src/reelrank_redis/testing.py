"""Throwaway ``redis-server`` processes for tests and benchmarks.

:class:`RedisServer` starts a real server on a free loopback port with persistence
switched off, waits until it answers ``PING`` and stops it again. It can also pause
(``SIGSTOP``), resume (``SIGCONT``), kill and restart the process on the same port,
which is how the fault tests simulate a hung or crashed Redis::

    with RedisServer(tmp_path) as server:
        client = server.client()
        client.ping()

:class:`RedisClusterServer` runs several such servers with ``--cluster-enabled yes``,
joins them into one cluster with ``redis-cli --cluster create`` (three masters, and a
replica for each when asked) and can move a slot to another master or kill a master
and wait for its replica to take over.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from reelrank.testing.servers import ServerProcess, free_port, spawn_logged, wait_until_ready

__all__ = [
    "RedisClusterServer",
    "RedisServer",
    "RedisServerError",
    "find_redis_server",
    "free_port",
]

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
            "--bind",
            self.host,
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            "--daemonize",
            "no",
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

    def wait_until_synced(self, *, replica: bool = False, timeout: float = 20.0) -> None:
        """Wait until this server is a master, or a replica whose link to its master is
        up (with ``replica=True``: until it is such a replica).

        Raises :class:`RedisServerError` after ``timeout`` seconds.
        """
        admin = self.client()
        deadline = time.monotonic() + timeout
        try:
            while True:
                info = admin.info("replication")
                linked = info["role"] == "slave" and info.get("master_link_status") == "up"
                if linked or (info["role"] == "master" and not replica):
                    return
                if time.monotonic() > deadline:
                    wanted = "an up-to-date replica" if replica else "a master or synced"
                    raise RedisServerError(f"port {self.port} did not become {wanted}")
                time.sleep(0.05)
        finally:
            admin.close()

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


_CLUSTER_START_TIMEOUT_SECONDS = 30.0
_NODE_TIMEOUT_MILLISECONDS = 1_000
_SLOTS = 16_384


def _find_redis_cli() -> str:
    found = shutil.which("redis-cli")
    if found is None:
        raise RedisServerError("redis-cli is not installed")
    return found


class RedisClusterServer:
    """A Redis Cluster of ``masters`` nodes on ``127.0.0.1``, each with ``replicas`` replicas.

    Every node is a :class:`RedisServer` (so a :class:`~reelrank.testing.servers.ServerProcess`)
    in a directory of its own under ``directory``. ``cluster-node-timeout`` is one second,
    so a killed master is replaced within a few seconds. Use it as a context manager, or
    call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, directory: Path, *, masters: int = 3, replicas: int = 0) -> None:
        if masters < 3:
            raise RedisServerError("a Redis Cluster needs at least three masters")
        self.directory = directory
        self.masters = masters
        self.replicas = replicas
        self.nodes: list[RedisServer] = []

    def __enter__(self) -> RedisClusterServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start every node, create the cluster and wait until every node reports it ok."""
        if self.nodes:
            raise RedisServerError("the cluster is already running")
        for index in range(self.masters * (1 + self.replicas)):
            node_dir = self.directory / f"node{index}"
            node = RedisServer(
                node_dir,
                port=_cluster_port(),
                extra_args=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(node_dir / "nodes.conf"),
                    "--cluster-node-timeout",
                    str(_NODE_TIMEOUT_MILLISECONDS),
                    # A replica that never finished its first sync cannot take over;
                    # the default 5 s delay of the first sync would outlast short tests.
                    "--repl-diskless-sync-delay",
                    "0",
                ],
            )
            self.nodes.append(node)
            node.start()
        self._cli(
            "--cluster",
            "create",
            *(f"{node.host}:{node.port}" for node in self.nodes),
            "--cluster-replicas",
            str(self.replicas),
            "--cluster-yes",
        )
        self.wait_until_ok(expected_masters=self.masters)
        self._wait_until_replicas_synced()

    def _wait_until_replicas_synced(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            node.wait_until_synced(timeout=max(0.0, deadline - time.monotonic()))

    def stop(self) -> None:
        """Stop every node."""
        nodes, self.nodes = self.nodes, []
        for node in nodes:
            node.stop()

    def _cli(self, *args: str) -> str:
        completed = subprocess.run(
            [_find_redis_cli(), *args],
            capture_output=True,
            text=True,
            timeout=_CLUSTER_START_TIMEOUT_SECONDS,
            check=False,
        )
        if completed.returncode != 0 or "[ERR]" in completed.stdout:
            raise RedisServerError(f"redis-cli {' '.join(args[:2])} failed: {completed.stdout}")
        return completed.stdout

    def wait_until_ok(self, *, expected_masters: int, timeout: float = 20.0) -> None:
        """Wait until every running node sees the cluster ok with ``expected_masters``
        masters serving all slots."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._node_ok(node, expected_masters) for node in self.running_nodes()):
                return
            time.sleep(0.05)
        raise RedisServerError("the cluster did not become ok in time")

    @staticmethod
    def _node_ok(node: RedisServer, expected_masters: int) -> bool:
        admin = node.client()
        try:
            info = admin.cluster("info")
            masters = [
                entry
                for entry in admin.cluster("nodes").values()
                if "master" in entry["flags"] and "fail" not in entry["flags"] and entry["slots"]
            ]
        except (redis.exceptions.RedisError, OSError):
            return False
        finally:
            admin.close()
        return info.get("cluster_state") == "ok" and len(masters) == expected_masters

    # -- access ---------------------------------------------------------------------

    def running_nodes(self) -> list[RedisServer]:
        """The nodes whose process is alive."""
        return [node for node in self.nodes if node.running]

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0`` of the first node; a cluster client discovers the rest."""
        return self.nodes[0].url

    def client(self, **kwargs: Any) -> RedisCluster:
        """An administrative cluster client with short timeouts (override with ``kwargs``)."""
        options: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}
        options.update(kwargs)
        node = self.running_nodes()[0]
        return RedisCluster(host=node.host, port=node.port, **options)

    def node_serving(self, slot: int) -> RedisServer:
        """The master that currently serves ``slot``."""
        admin = self.running_nodes()[0].client()
        try:
            for start, end, host, port in _slot_ranges(admin):
                if start <= slot <= end:
                    return self._node_on(host, port)
        finally:
            admin.close()
        raise RedisServerError(f"no master serves slot {slot}")

    def _node_on(self, host: str, port: int) -> RedisServer:
        for node in self.nodes:
            if node.port == port and node.host == host:
                return node
        raise RedisServerError(f"no node listens on {host}:{port}")

    def flush(self) -> None:
        """Empty every master."""
        for node in self.master_nodes():
            admin = node.client()
            try:
                admin.flushall()
            finally:
                admin.close()

    # -- topology changes -----------------------------------------------------------

    def begin_slot_migration(self, slot: int, target: RedisServer) -> RedisServer:
        """Mark ``slot`` as migrating from its master to ``target`` (``CLUSTER SETSLOT``
        ``IMPORTING`` / ``MIGRATING``) without moving any key yet; returns the source.

        While the slot is in this state, a key still on the source is served there and a
        missing one is answered with an ``ASK`` redirect to the target."""
        source = self.node_serving(slot)
        source_id, target_id = self._node_id(source), self._node_id(target)
        source_admin, target_admin = source.client(), target.client()
        try:
            target_admin.cluster("setslot", slot, "importing", source_id)
            source_admin.cluster("setslot", slot, "migrating", target_id)
        finally:
            source_admin.close()
            target_admin.close()
        return source

    def move_slot_keys(self, slot: int, source: RedisServer, target: RedisServer) -> None:
        """``MIGRATE`` every key of ``slot`` from ``source`` to ``target``; after
        :meth:`begin_slot_migration`, the source then answers every command on the slot
        with an ``ASK`` redirect."""
        source_admin = source.client()
        try:
            while keys := source_admin.cluster("getkeysinslot", slot, 100):
                source_admin.migrate(target.host, target.port, keys, 0, 5_000)
        finally:
            source_admin.close()

    def assign_slot(self, slot: int, target: RedisServer) -> None:
        """End a migration: every master assigns ``slot`` to ``target``
        (``CLUSTER SETSLOT ... NODE``), and clients still asking the source get ``MOVED``."""
        target_id = self._node_id(target)
        for node in self.master_nodes():
            admin = node.client()
            try:
                admin.cluster("setslot", slot, "node", target_id)
            finally:
                admin.close()

    def master_nodes(self) -> list[RedisServer]:
        """The running nodes that are masters."""
        return [node for node in self.running_nodes() if self._role(node) == "master"]

    def replicas_of(self, master: RedisServer) -> list[RedisServer]:
        """The running nodes replicating ``master``."""
        master_id = self._node_id(master)
        admin = self.running_nodes()[0].client()
        try:
            nodes = admin.cluster("nodes")
        finally:
            admin.close()
        ports = {
            int(address.rsplit(":", 1)[1].split("@")[0])
            for address, entry in nodes.items()
            if entry["master_id"] == master_id
        }
        return [node for node in self.running_nodes() if node.port in ports]

    @staticmethod
    def _node_id(node: RedisServer) -> str:
        admin = node.client()
        try:
            node_id = admin.cluster("myid")
        finally:
            admin.close()
        return node_id.decode() if isinstance(node_id, bytes) else str(node_id)

    @staticmethod
    def _role(node: RedisServer) -> str:
        admin = node.client()
        try:
            role = admin.role()[0]
        finally:
            admin.close()
        return role.decode() if isinstance(role, bytes) else str(role)

    def wait_until_replicated(self, master: RedisServer, timeout: float = 10.0) -> None:
        """Wait until every replica of ``master`` has acknowledged all its writes so far."""
        admin = master.client()
        deadline = time.monotonic() + timeout
        try:
            while True:
                info = admin.info("replication")
                offset = info["master_repl_offset"]
                acked = [
                    value["offset"]
                    for name, value in info.items()
                    if name.startswith("slave") and isinstance(value, dict)
                ]
                if acked and all(ack >= offset for ack in acked):
                    return
                if time.monotonic() > deadline:
                    raise RedisServerError(f"the replicas of port {master.port} lag behind")
                time.sleep(0.02)
        finally:
            admin.close()

    def kill_master_of(self, slot: int) -> RedisServer:
        """Kill (``SIGKILL``) the master serving ``slot`` and wait until one of its
        replicas has taken over and every surviving node sees the cluster ok again."""
        master = self.node_serving(slot)
        master.kill()
        self.wait_for_failover(slot, master)
        return master

    def wait_for_failover(self, slot: int, old_master: RedisServer) -> None:
        """Wait until a node other than ``old_master`` serves ``slot`` and every
        surviving node sees the cluster ok again."""
        deadline = time.monotonic() + 20.0
        while self._serving_or_none(slot) in (old_master, None):
            if time.monotonic() > deadline:
                raise RedisServerError(f"no replica took over slot {slot}")
            time.sleep(0.05)
        self.wait_until_ok(expected_masters=self.masters)

    def _serving_or_none(self, slot: int) -> RedisServer | None:
        # While a failover is under way the surviving nodes may list no master for the
        # slot at all; that is "not yet", not an error.
        try:
            return self.node_serving(slot)
        except RedisServerError:
            return None


# A cluster node also listens on its port + 10000 (the cluster bus), so Redis refuses a
# port above 55535: the kernel's ephemeral range reaches 60999.
_HIGHEST_CLUSTER_PORT = 55535


def _cluster_port() -> int:
    """A free loopback port for a cluster node whose bus port is free too."""
    for _ in range(1000):
        port = free_port()
        if port > _HIGHEST_CLUSTER_PORT:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RedisServerError("found no free port pair for a cluster node")


def _slot_ranges(admin: redis.Redis) -> list[tuple[int, int, str, int]]:
    ranges: list[tuple[int, int, str, int]] = []
    for entry in admin.cluster("slots"):
        start, end, master = entry[0], entry[1], entry[2]
        host = master[0].decode() if isinstance(master[0], bytes) else master[0]
        ranges.append((int(start), int(end), host, int(master[1])))
    return ranges
