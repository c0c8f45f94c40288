"""The throwaway-cluster tool the tests and benchmarks rely on."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psycopg
import pytest
from pg_support import require_pgbouncer, require_postgres
from reelrank_postgres.testing import (
    PgBouncer,
    PostgresReplica,
    PostgresServer,
    PostgresServerError,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


def _settled_states(pids: list[int], accepted: set[str]) -> list[str]:
    """States of ``pids`` once each is in ``accepted``, or after a few seconds: signals are
    delivered asynchronously. A backend that exited just before the pause stays a zombie
    ("Z") until the postmaster, stopped, reaps it."""
    for _ in range(200):
        states = [_state(pid) for pid in pids]
        if set(states) <= accepted:
            break
        time.sleep(0.01)
    return states


def test_start_pause_resume_stop() -> None:
    require_postgres()
    server = PostgresServer()
    server.start()
    root = server.data_dir.parent
    try:
        assert oct(root.stat().st_mode & 0o777) == "0o755"
        with psycopg.connect(server.dsn, connect_timeout=5) as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)
        postmaster = server.postmaster_pid
        assert postmaster is not None
        server.pause()
        assert server.paused
        paused = server._paused_pids
        # runuser, the postmaster and its children
        assert paused[1] == postmaster and len(paused) > 2
        assert set(_settled_states(paused, {"T", "Z"})) <= {"T", "Z"}
        assert _state(postmaster) == "T"
        server.resume()
        assert not server.paused
        assert "T" not in _settled_states([postmaster], {"S", "R"})
        with psycopg.connect(server.dsn, connect_timeout=5) as connection:
            assert connection.execute("SELECT 2").fetchone() == (2,)
    finally:
        server.stop()
    assert not root.exists()
    assert server.postmaster_pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(postmaster, 0)


def test_stop_resumes_a_paused_cluster_first() -> None:
    require_postgres()
    with PostgresServer() as server:
        postmaster = server.postmaster_pid
        assert postmaster is not None
        server.pause()
    with pytest.raises(ProcessLookupError):
        os.kill(postmaster, signal.SIG_DFL)


def test_shut_down_and_restart_keep_the_data_and_the_port() -> None:
    require_postgres()
    with PostgresServer() as server:
        with psycopg.connect(server.dsn, autocommit=True) as connection:
            connection.execute("CREATE TABLE kept (n int)")
            connection.execute("INSERT INTO kept VALUES (7)")
        port = server.port
        server.shut_down()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(server.dsn, connect_timeout=2)
        with pytest.raises(PostgresServerError):
            server.pause()
        server.restart()
        assert server.port == port
        with psycopg.connect(server.dsn) as connection:
            assert connection.execute("SELECT n FROM kept").fetchone() == (7,)
        with pytest.raises(PostgresServerError):
            server.restart()


def test_pausing_a_stopped_server_is_an_error() -> None:
    require_postgres()
    server = PostgresServer()
    with pytest.raises(PostgresServerError):
        server.pause()


def test_extra_settings_reach_the_server() -> None:
    require_postgres()
    with (
        PostgresServer(settings={"work_mem": "7MB"}) as server,
        psycopg.connect(server.dsn) as connection,
    ):
        assert connection.execute("SHOW work_mem").fetchone() == ("7MB",)


def test_a_replica_needs_a_running_primary_and_a_sane_delay() -> None:
    require_postgres()
    primary = PostgresServer()
    with pytest.raises(PostgresServerError):
        PostgresReplica(primary, apply_delay_seconds=-1.0)
    replica = PostgresReplica(primary)
    with pytest.raises(PostgresServerError, match="primary is not running"):
        replica.start()
    assert not replica.running


def test_pgbouncer_pools_only_the_databases_it_was_given(
    postgres_server: PostgresServer,
) -> None:
    require_pgbouncer()
    with pytest.raises(PostgresServerError):
        PgBouncer({})
    with PgBouncer({"feeds": postgres_server}) as pooler:
        with psycopg.connect(pooler.dsn("feeds"), prepare_threshold=None) as connection:
            assert connection.execute("SELECT current_database()").fetchone() == ("postgres",)
        with pytest.raises(PostgresServerError):
            pooler.url("other")
        root = pooler.log_path.parent
    assert not root.exists()
