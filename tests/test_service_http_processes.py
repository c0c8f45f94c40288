"""Two real processes of the reels service sharing their stores, as two workers or replicas.

Each process is ``python -m reelrank_example serve`` on a loopback port of its own, on
one migrated and seeded database: the embedded SQLite file in the unit session, and a
real PostgreSQL cluster, ClickHouse (events and the engagement log) and Redis (feed
cache level, seen sets, rate limits) in the integration session. One user's requests
alternate between the two.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from reelrank.testing.servers import free_port, terminate_process, wait_until_ready

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_ROOT = ROOT / "examples" / "flask_app"
sys.path.insert(0, str(EXAMPLE_ROOT))

from reelrank_example import FIRST_USER_ID, FIRST_VIDEO_ID, issue_token  # noqa: E402

SECRET = "p" * 40
SMALL_CATALOG = {
    "REELRANK_VIDEOS": "40",
    "REELRANK_PENDING_VIDEOS": "2",
    "REELRANK_USERS": "5",
    "REELRANK_EVENTS": "150",
    "REELRANK_CREATORS": "8",
}


def _environment(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELRANK_")}
    source = [
        str(ROOT / "src"),
        *(str(path / "src") for path in sorted((ROOT / "adapters").iterdir())),
        str(EXAMPLE_ROOT),
    ]
    env["PYTHONPATH"] = os.pathsep.join([*source, env.get("PYTHONPATH", "")])
    env.update(SMALL_CATALOG)
    env.update(
        REELRANK_AUTH_SECRET=SECRET,
        REELRANK_CURSOR_SECRET="shared-cursor-secret",
        REELRANK_WORKERS="2",
        **extra,
    )
    return env


def _command(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "reelrank_example", *args],
        env=env,
        check=True,
        timeout=600,
        capture_output=True,
    )


class Service:
    """One running process and a tiny JSON client for it."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "reelrank_example", "serve"],
            env={**env, "REELRANK_PORT": str(self.port)},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait(self) -> None:
        def ready() -> bool:
            try:
                return self.call("GET", "/healthz/startup")[0] == 200
            except OSError:
                return False

        if not wait_until_ready(ready, self.process, timeout=120.0, interval=0.2):
            raise AssertionError(f"the reels service did not start:\n{self.log()}")

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, method=method
        )
        request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def chunked_status(self, path: str, headers: dict[str, str], size: int) -> str:
        """Status line of a POST whose ``size``-byte body is sent chunked, over a raw socket."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as connection:
            head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            connection.sendall(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                f"Content-Type: application/json\r\nConnection: close\r\n{head}\r\n".encode()
            )
            chunk = b"x" * 8192
            try:
                for _ in range(size // len(chunk)):
                    connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                connection.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # the server may answer and close before the whole body is sent
            return connection.recv(200).decode("latin-1").split("\r\n")[0]

    def log(self) -> str:
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")

    def stop(self) -> None:
        terminate_process(self.process, timeout=10.0)
        self._log.close()


def _serve_pair(env: dict[str, str], tmp_path: Path) -> Iterator[tuple[Service, Service]]:
    _command(env, "migrate")
    _command(env, "seed", "--if-empty")
    with ExitStack() as stack:
        services = []
        for name in ("a", "b"):
            service = Service(env, tmp_path / f"{name}.log")
            stack.callback(service.stop)
            services.append(service)
        for service in services:
            service.wait()
        # Both started at once on the same stores; each warmed its recent users' feeds.
        for service in services:
            assert "could not warm" not in service.log()
        yield services[0], services[1]


@pytest.fixture()
def sqlite_pair(tmp_path: Path) -> Iterator[tuple[Service, Service]]:
    env = _environment({"REELRANK_DATABASE_URL": f"sqlite:///{tmp_path / 'reels.db'}"})
    yield from _serve_pair(env, tmp_path)


@pytest.fixture()
def servers_pair(tmp_path: Path) -> Iterator[tuple[Service, Service]]:
    from reelrank_clickhouse.testing import ClickHouseServer, find_clickhouse_server
    from reelrank_postgres.testing import PostgresServer, find_postgres_bin
    from reelrank_redis.testing import RedisServer, find_redis_server

    if None in (find_postgres_bin(), find_redis_server(), find_clickhouse_server()):
        pytest.skip("PostgreSQL, ClickHouse and Redis are needed (scripts/test.sh installs them)")
    with (
        PostgresServer() as postgres,
        RedisServer(tmp_path / "redis") as redis,
        ClickHouseServer(tmp_path / "clickhouse") as clickhouse,
    ):
        env = _environment(
            {
                "REELRANK_DATABASE_URL": postgres.url,
                "REELRANK_REDIS_URL": redis.url,
                "REELRANK_CLICKHOUSE_URL": f"clickhouse://default@127.0.0.1:{clickhouse.tcp_port}/default",
            }
        )
        yield from _serve_pair(env, tmp_path)


def _auth(user: int = FIRST_USER_ID) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(SECRET, user)}"}


def _shared_behaviour(a: Service, b: Service) -> None:
    # A feed paged across both processes: every cursor is honoured by the other one and
    # no video is served twice.
    served: list[int] = []
    pages: list[tuple[Service, str, list[int]]] = []
    cursor = None
    for turn in range(4):
        service = (a, b)[turn % 2]
        path = "/api/v1/reels?limit=5" + (f"&cursor={cursor}" if cursor else "")
        status, page = service.call("GET", path, headers=_auth())
        assert status == 200, page
        items = [item["video_id"] for item in page["items"]]
        served += items
        if cursor:
            pages.append((service, path, items))
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(served) == len(set(served))
    assert len(served) >= 10

    # A retried cursor gets its page again, whichever process the retry reaches: the
    # page is remembered in the shared cache level (Redis, or the SQL database on the
    # embedded default). The retries alternate, the other process first.
    for service, path, items in pages:
        other = b if service is a else a
        for retry_on in (other, service, other, service):
            status, page = retry_on.call("GET", path, headers=_auth())
            assert status == 200, page
            assert [item["video_id"] for item in page["items"]] == items

    # One watch sent to both with the same key is counted once, and both see it.
    video = f"/api/v1/reels/{FIRST_VIDEO_ID}"
    views = a.call("GET", video)[1]["counts"]["views"]
    headers = {**_auth(), "Idempotency-Key": "shared-retry"}
    first = a.call("POST", f"{video}/watch", {"completion": 0.8}, headers)
    second = b.call("POST", f"{video}/watch", {"completion": 0.8}, headers)
    assert first == second
    assert first[0] == 201
    assert a.call("GET", video)[1]["counts"]["views"] == views + 1
    assert b.call("GET", video)[1]["counts"]["views"] == views + 1
    conflict = b.call("POST", f"{video}/watch", {"completion": 0.2}, headers)
    assert conflict[0] == 422

    # Trending is computed from the shared log after new events, once: the first
    # process stores its result in the shared trending store and the other serves that
    # same snapshot (same time, same scores to the last bit) instead of its own.
    for number in range(3):
        share = {**_auth(FIRST_USER_ID + number), "Idempotency-Key": f"share-{number}"}
        assert b.call("POST", f"{video}/share", {"channel": "link"}, share)[0] == 201
    trending = [
        service.call("GET", "/api/v1/reels/trending-hashtags?limit=10&window_hours=23")[1]
        for service in (a, b, a)
    ]
    assert trending[0]["items"]
    assert trending[0] == trending[1] == trending[2]

    # A chunked body over the limit is refused, not truncated or left hanging.
    status_line = a.chunked_status(f"{video}/watch", _auth(), 80_000)
    assert status_line.split()[1] == "413"
    assert a.call("GET", video)[1]["counts"]["views"] == views + 1

    # Search and lists page across processes too: the list cursors share the secret.
    status, page = a.call("GET", "/api/v1/reels/trending-hashtags?limit=2")
    assert status == 200
    assert page["next_cursor"]
    status, following = b.call(
        "GET", f"/api/v1/reels/trending-hashtags?limit=2&cursor={page['next_cursor']}"
    )
    assert status == 200
    assert {i["key"] for i in page["items"]}.isdisjoint(i["key"] for i in following["items"])


def test_two_processes_share_the_embedded_database(sqlite_pair: tuple[Service, Service]) -> None:
    _shared_behaviour(*sqlite_pair)


@pytest.mark.integration
def test_two_processes_share_postgres_clickhouse_and_redis(
    servers_pair: tuple[Service, Service],
) -> None:
    _shared_behaviour(*servers_pair)
