"""gunicorn with ``deploy/gunicorn.conf.py`` and 2 workers writes nothing but JSON lines.

The service runs on a migrated and seeded SQLite file, on a free loopback port; every
line of its stdout and stderr, gunicorn's boot and shutdown lines included, must parse
as one JSON object, and its access lines must carry the request id the client sent.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from reelrank_example import FIRST_USER_ID, issue_token
from test_service_http_processes import ROOT, SECRET, _command, _environment

from reelrank.testing.servers import free_port, terminate_process, wait_until_ready

# Two processes boot, load the kernels and warm their feeds: tens of seconds.
pytestmark = pytest.mark.slow


def _get(port: int, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, dict(response.headers), json.loads(response.read())


def test_every_line_gunicorn_writes_is_json(tmp_path: Path) -> None:
    env = _environment({"REELRANK_DATABASE_URL": f"sqlite:///{tmp_path / 'reels.db'}"})
    _command(env, "migrate")
    _command(env, "seed", "--if-empty")
    port = free_port()
    stdout, stderr = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "deploy" / "gunicorn.conf.py")],
            env={**env, "REELRANK_PORT": str(port), "REELRANK_WORKERS": "2"},
            cwd=ROOT,
            stdout=out,
            stderr=err,
        )
        try:

            def ready() -> bool:
                try:
                    return _get(port, "/healthz/startup", {})[0] == 200
                except OSError:
                    return False

            assert wait_until_ready(ready, process, timeout=120.0, interval=0.2), stderr.read_text(
                errors="replace"
            )
            token = issue_token(SECRET, FIRST_USER_ID)
            auth = {"Authorization": f"Bearer {token}"}
            status, headers, page = _get(
                port, "/api/v1/reels?limit=3", {**auth, "X-Request-ID": "gunicorn-test-1"}
            )
            assert status == 200
            assert headers["X-Request-ID"] == "gunicorn-test-1"
            cursor = page["next_cursor"]
            assert cursor
            status, _, _ = _get(
                port,
                f"/api/v1/reels?limit=3&cursor={cursor}",
                {**auth, "X-Request-ID": "gunicorn-test-2"},
            )
            assert status == 200
        finally:
            terminate_process(process, timeout=20.0)

    text = stdout.read_text() + stderr.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all(isinstance(line, dict) and "event" in line and "level" in line for line in lines)
    errors = [line for line in lines if line["logger"] == "gunicorn.error"]
    assert any("Starting gunicorn" in line["event"] for line in errors)
    assert sum("Booting worker" in line["event"] for line in errors) >= 2
    access = {line.get("request_id"): line for line in lines if line["logger"] == "gunicorn.access"}
    first, second = access["gunicorn-test-1"], access["gunicorn-test-2"]
    assert (first["method"], first["path"], first["status"]) == ("GET", "/api/v1/reels", 200)
    assert (first["route"], first["user_id"]) == ("/api/v1/reels", FIRST_USER_ID)
    assert not any("alembic" in line["logger"] for line in lines)
    assert first["latency_ms"] > 0
    assert second["path"] == "/api/v1/reels"
    # The app's own request line, written by whichever worker served it, agrees.
    app_lines = [line for line in lines if line["event"] == "request"]
    assert {"gunicorn-test-1", "gunicorn-test-2"} <= {line["request_id"] for line in app_lines}
    assert token not in text
    assert cursor not in text
