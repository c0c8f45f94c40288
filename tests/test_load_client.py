"""The open-loop load client of :mod:`reelrank_example.testing` against a real HTTP server.

A small Flask app served by werkzeug's threaded server on a loopback port (HTTP/1.1,
keep-alive) stands in for the service: it can stall, hands out cursors, and refuses
an event's first attempt, and it records what it received. Each test runs the client
in-process for about a second.
"""

from __future__ import annotations

import itertools
import json
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from flask import Flask, Response, request
from werkzeug.serving import make_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "flask_app"))

from reelrank_example import testing as load_testing
from reelrank_example.testing import (
    LoadSpec,
    read_records,
    run_load,
    run_load_process,
    wait_for_load_start,
)

PAGES_PER_FEED = 3
"""The stand-in feed hands out cursors for this many pages, then ``next_cursor`` null."""


@dataclass
class Received:
    """What the stand-in server saw, in arrival order."""

    stall_from: float = 0.0
    stall_until: float = 0.0
    """A request arriving between these wall-clock times is held until the second."""
    feeds: list[tuple[str, str | None, str]] = field(default_factory=list)
    """(Authorization, cursor sent, next_cursor answered) per feed request."""
    events: list[tuple[str, str, str | None, bytes, int]] = field(default_factory=list)
    """(kind, path, Idempotency-Key, body, status answered) per event request."""
    request_ids: list[str] = field(default_factory=list)
    """The ``X-Request-ID`` given to each answer, in answer order."""
    lock: threading.Lock = field(default_factory=threading.Lock)


def _stand_in(received: Received) -> Flask:
    app = Flask("load_client_stand_in")
    refused_once: set[str] = set()

    @app.before_request
    def stall() -> None:
        now = time.time()
        if received.stall_from <= now < received.stall_until:
            time.sleep(received.stall_until - now)

    @app.after_request
    def identify(response: Response) -> Response:
        with received.lock:
            rid = f"rid-{len(received.request_ids)}"
            received.request_ids.append(rid)
        response.headers["X-Request-ID"] = rid
        return response

    @app.get("/ping")
    def ping() -> Response:
        return Response('{"status":"ok"}', content_type="application/json")

    @app.get("/chunked")
    def chunked() -> Response:
        # A generator body has no length: werkzeug sends it in chunks.
        return Response((part for part in (b'{"status":', b'"ok"}')), mimetype="application/json")

    @app.get("/api/v1/reels")
    def feed() -> Response:
        cursor = request.args.get("cursor")
        page = int(cursor.rsplit("-", 1)[1]) if cursor else 0
        token = request.headers["Authorization"]
        next_cursor = f"{token[-8:]}-{page + 1}" if page + 1 < PAGES_PER_FEED else None
        with received.lock:
            received.feeds.append((token, cursor, next_cursor or ""))
        body = {"items": [], "next_cursor": next_cursor, "degraded": []}
        status = "reelrank; hit" if cursor else "reelrank; fwd=miss"
        return Response(
            json.dumps(body), content_type="application/json", headers={"Cache-Status": status}
        )

    @app.post("/api/v1/reels/<int:video>/<kind>")
    def event(video: int, kind: str) -> Response:
        key = request.headers.get("Idempotency-Key")
        status, body, headers = 201, {"event_id": f"id-{key}"}, {}
        if kind == "like":
            status, body = 200, {"liked": True}
        elif key not in refused_once:
            refused_once.add(key or "")
            status, body, headers = 503, {"title": "busy"}, {"Retry-After": "0"}
        with received.lock:
            received.events.append((kind, request.path, key, request.get_data(), status))
        return Response(json.dumps(body), status, headers, content_type="application/json")

    return app


@pytest.fixture
def server() -> Iterator[tuple[str, Received]]:
    received = Received()
    http = make_server("127.0.0.1", 0, _stand_in(received), threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{http.server_port}", received
    finally:
        http.shutdown()
        thread.join(timeout=10)


def _reference_gaps(spec: LoadSpec, count: int) -> list[float]:
    """The gaps between scheduled sends, drawn as the client draws them for
    ``only_path`` (a user per request, one ``random()``, then the Poisson gap)."""
    rng = random.Random(spec.seed)
    rng.shuffle(list(range(spec.users)))
    gaps = []
    for _ in range(count):
        rng.random()
        gaps.append(rng.expovariate(spec.rate))
    return gaps


def test_a_stall_delays_no_send_and_counts_from_the_scheduled_time(
    server: tuple[str, Received],
) -> None:
    url, received = server
    spec = LoadSpec(
        base_url=url, rate=40.0, duration=1.2, users=5, videos=10, only_path="/ping",
        connections=2, retry_seconds=0.0, seed=3,
    )  # fmt: skip
    # The run starts 0.1 s after the call; the server stalls from 0.4 s to 0.9 s in.
    stall_start = time.time() + 0.5
    stall_end = stall_start + 0.5
    received.stall_from, received.stall_until = stall_start, stall_end
    records = run_load(spec)
    assert records and all(record.status == 200 for record in records)
    # Open loop: the sends keep the Poisson schedule drawn from the seed, stall or not.
    scheduled = [record.scheduled for record in records]
    gaps = [later - earlier for earlier, later in itertools.pairwise(scheduled)]
    assert gaps == pytest.approx(_reference_gaps(spec, len(gaps)), abs=1e-6)
    assert len(records) == sum(1 for _ in _cumulative_under(_reference_gaps(spec, 200), 1.2))
    # Latency runs from the scheduled time: a request scheduled during the stall, or
    # queued behind it, shows the rest of the stall in full.
    held = [record for record in records if stall_start + 0.05 <= record.scheduled < stall_end]
    assert held
    for record in held:
        assert record.scheduled + record.latency >= stall_end - 0.01
    assert max(record.latency for record in held) >= 0.4
    # Of that latency, the wait for one of the two connections (both held by stalled
    # requests) is the client's own: sent once the stall ended, answered at once.
    assert all(0.0 <= record.send_delay <= record.latency for record in records)
    queued = [record for record in held if record.send_delay >= 0.2]
    assert queued
    for record in queued:
        assert record.scheduled + record.send_delay >= stall_end - 0.01
        assert record.latency - record.send_delay < 0.1
    before = [record.send_delay for record in records if record.scheduled < stall_start - 0.05]
    assert before and statistics.median(before) < 0.05


def _cumulative_under(gaps: list[float], limit: float) -> Iterator[float]:
    """Send offsets from the start: 0, then the running sums of ``gaps``, under ``limit``."""
    offset = 0.0
    for gap in gaps:
        if offset >= limit:
            return
        yield offset
        offset += gap


def test_feed_requests_follow_each_users_cursor(server: tuple[str, Received]) -> None:
    url, received = server
    spec = LoadSpec(
        base_url=url, rate=80.0, duration=0.8, users=4, videos=10, feed_share=1.0,
        event_share=0.0, search_share=0.0, trending_share=0.0, next_page=0.8,
        connections=1, seed=5,
    )  # fmt: skip
    records = run_load(spec)
    assert len(records) == len(received.feeds) > 20
    # One connection: the server saw the requests in the order they were scheduled.
    last_answer: dict[str, str] = {}
    paged = 0
    for record, (token, cursor, answered) in zip(records, received.feeds, strict=True):
        assert record.status == 200
        if cursor is not None:
            paged += 1
            assert cursor == last_answer[token]  # the cursor this user got last
            assert (record.endpoint, record.cache) == ("feed_next", "hit")
        else:
            assert (record.endpoint, record.cache) == ("feed_first", "miss")
        last_answer[token] = answered
    assert paged > 5
    tokens = {token for token, _, _ in received.feeds}
    assert len(tokens) > 1 and all(token.startswith("Bearer ") for token in tokens)


def test_each_record_carries_the_request_id_of_its_answer(
    server: tuple[str, Received],
) -> None:
    url, received = server
    spec = LoadSpec(
        base_url=url, rate=80.0, duration=0.6, users=4, videos=10, next_page=0.5,
        connections=1, seed=11, event_key_prefix="r", retry_seconds=0.0,
    )  # fmt: skip
    records = run_load(spec)
    assert len(records) > 20 and {record.endpoint for record in records} >= {
        "feed_first", "watch", "search",
    }  # fmt: skip
    # One connection: the answers came back in the order the records were made.
    assert [record.request_id for record in records] == received.request_ids


def test_each_record_keeps_the_clients_wait_for_a_core_during_it(
    server: tuple[str, Received], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``client_run_queue`` is the growth of the client thread's run-queue delay from
    sending a request to reading its answer: with a stand-in counter that grows 1 ms at
    each reading, one connection (so each request's two readings are its own) gives
    every record 1 ms; where the kernel gives no reading, 0."""
    url, _ = server
    readings = itertools.count()
    monkeypatch.setattr(load_testing, "run_queue_ns", lambda: next(readings) * 1_000_000)
    spec = LoadSpec(
        base_url=url, rate=60.0, duration=0.3, users=4, videos=10, connections=1, seed=5,
        event_key_prefix="q", retry_seconds=0.0,
    )  # fmt: skip
    records = run_load(spec)
    assert records and all(record.status > 0 for record in records)
    assert [record.client_run_queue for record in records] == [0.001] * len(records)
    monkeypatch.setattr(load_testing, "run_queue_ns", lambda: None)
    assert {record.client_run_queue for record in run_load(spec)} == {0.0}


def test_events_carry_idempotency_keys_and_retries_send_the_same(
    server: tuple[str, Received],
) -> None:
    url, received = server
    spec = LoadSpec(
        base_url=url, rate=40.0, duration=0.6, users=4, videos=10, feed_share=0.0,
        event_share=1.0, search_share=0.0, trending_share=0.0, connections=4, seed=9,
        event_key_prefix="t", retry_seconds=5.0,
    )  # fmt: skip
    records = run_load(spec)
    watches_and_shares = [event for event in received.events if event[0] != "like"]
    assert watches_and_shares and any(event[0] == "like" for event in received.events)
    for kind, path, key, body, _ in received.events:
        assert path.startswith("/api/v1/reels/") and path.endswith("/" + kind)
        if kind == "like":
            assert key is None and body == b"{}"
        else:
            assert key is not None and key.startswith("t-")
            expected = {"watch": ("completion",), "share": ("channel",)}[kind]
            assert tuple(json.loads(body)) == expected
    # Each refused first attempt was retried with the same key, and acknowledged.
    by_key: dict[str, list[int]] = {}
    for _, _, key, _, status in watches_and_shares:
        by_key.setdefault(key or "", []).append(status)
    assert all(statuses == [503, 201] for statuses in by_key.values())
    acknowledged = {record.event_key: record.event_id for record in records if record.event_id}
    assert acknowledged == {key: f"id-{key}" for key in by_key}
    refused = [record for record in records if record.status == 503]
    assert len(refused) == len(by_key) and {record.retry_after for record in refused} == {"0"}


def test_chunked_answers_leave_the_connection_in_step(server: tuple[str, Received]) -> None:
    url, _ = server
    spec = LoadSpec(
        base_url=url, rate=100.0, duration=0.3, users=2, videos=10, only_path="/chunked",
        connections=1, retry_seconds=0.0,
    )  # fmt: skip
    records = run_load(spec)
    # One connection: a body read short or long would break every later answer.
    assert len(records) > 10 and {record.status for record in records} == {200}


def test_a_load_process_tells_when_its_schedule_starts(
    server: tuple[str, Received], tmp_path: Path
) -> None:
    url, _ = server
    spec = LoadSpec(
        base_url=url, rate=40.0, duration=0.5, users=5, videos=10, only_path="/ping",
        connections=2, retry_seconds=0.0, seed=5,
    )  # fmt: skip
    asked = time.time()
    process = run_load_process(spec, tmp_path)
    started_at = wait_for_load_start(process, tmp_path)
    # The mark is written before the first instant, which is after the process began.
    assert asked < started_at
    assert time.time() < started_at + 0.1
    assert process.wait(timeout=60) == 0
    records, _ = read_records(tmp_path / "load.json")
    assert records
    assert min(record.scheduled for record in records) == pytest.approx(started_at, abs=1e-6)


def test_waiting_for_a_load_that_died_raises_with_its_log(tmp_path: Path) -> None:
    (tmp_path / "load.log").write_text("ImportError: the load could not start\n")
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(RuntimeError, match="exited with 3: ImportError"):
        wait_for_load_start(process, tmp_path, timeout=30.0)
