"""The reels service's structured logs, over the Flask test client.

Every line the service writes while serving is one JSON object; a request's lines carry
its id and caller; tokens and cursors never appear; degraded fallbacks and store
failures each get a line.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import re
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from reelrank.testing import FaultInjector

EXAMPLE_ROOT = Path(__file__).resolve().parents[1] / "examples" / "flask_app"
sys.path.insert(0, str(EXAMPLE_ROOT))

from reelrank_example import (  # noqa: E402
    FIRST_USER_ID,
    FIRST_VIDEO_ID,
    ProblemError,
    Settings,
    Stores,
    build_services,
    configure_logging,
    create_app,
    issue_token,
    memory_stores,
    redact,
    seed_synthetic_catalog,
)

SECRET = "k" * 40
USER = FIRST_USER_ID
SETTINGS = Settings(
    auth_secret=SECRET, videos=40, pending_videos=2, users=6, events=300, creators=8
)


@pytest.fixture()
def log_output() -> Iterator[io.StringIO]:
    """The process's logging configured as in production, written to a buffer."""
    root = logging.getLogger()
    saved = {
        name: (logger.handlers[:], logger.level, logger.propagate)
        for name, logger in [("", root), *((n, logging.getLogger(n)) for n in
                                           ("gunicorn.error", "gunicorn.access"))]
    }  # fmt: skip
    buffer = io.StringIO()
    configure_logging(SETTINGS, stream=buffer)
    yield buffer
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name) if name else root
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
    logging.captureWarnings(False)
    structlog.reset_defaults()


def _build(wrap: Any = None) -> Any:
    stores = memory_stores()
    embeddings = seed_synthetic_catalog(stores, SETTINGS, now=datetime.now(UTC))
    stores = dataclasses.replace(stores, embeddings=embeddings)
    if wrap is not None:
        stores = wrap(stores)
    services = build_services(stores, SETTINGS)
    return create_app(services, SETTINGS), services


def _lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    text = buffer.getvalue()
    assert text.endswith("\n")
    lines = [json.loads(line) for line in text.splitlines()]
    for line in lines:
        assert isinstance(line, dict)
        assert {"timestamp", "level", "event", "logger"} <= line.keys(), line
        assert datetime.fromisoformat(line["timestamp"]).tzinfo is not None
    return lines


def test_request_lines_carry_id_route_status_latency_and_user(log_output: io.StringIO) -> None:
    app, services = _build()
    try:
        client = app.test_client()
        token = issue_token(SECRET, USER)
        response = client.get(
            "/api/v1/reels?limit=3",
            headers={"Authorization": f"Bearer {token}", "X-Request-ID": "edge-7f3a:2.b_c"},
        )
        assert response.status_code == 200
        assert response.headers["X-Request-ID"] == "edge-7f3a:2.b_c"
        anonymous = client.get(f"/api/v1/reels/{FIRST_VIDEO_ID}")
        # Ids that are too long or could inject into a header or a log are replaced.
        unsafe = client.get("/openapi.json", headers={"X-Request-ID": "a b<script>"})
        too_long = client.get("/openapi.json", headers={"X-Request-ID": "x" * 129})
        missing = client.get("/no/such/page", headers={"X-Request-ID": "nf-1"})
    finally:
        services.close()
    generated = [r.headers["X-Request-ID"] for r in (anonymous, unsafe, too_long)]
    for value in generated:
        assert len(value) == 32
        int(value, 16)
    assert len(set(generated)) == 3

    requests = [line for line in _lines(log_output) if line["event"] == "request"]
    assert [line["request_id"] for line in requests] == ["edge-7f3a:2.b_c", *generated, "nf-1"]
    assert missing.status_code == 404
    # No rule matched: no route, but the line is there.
    assert (requests[-1]["status"], "route" in requests[-1]) == (404, False)
    feed, video = requests[0], requests[1]
    assert feed["logger"] == "reelrank_example.requests"
    assert feed["level"] == "info"
    assert (feed["method"], feed["route"], feed["status"], feed["user_id"]) == (
        "GET", "/api/v1/reels", 200, USER,
    )  # fmt: skip
    assert feed["latency_ms"] > 0.0
    # The route is the URL rule, not the path, and an anonymous caller has no user id.
    assert video["route"] == "/api/v1/reels/<id>"
    assert "user_id" not in video


def _computing() -> str:
    """A handler that computes for 40 ms of its thread's CPU."""
    started = time.thread_time()
    while time.thread_time() - started < 0.040:
        pass
    return "computed"


def test_request_lines_split_the_handling_into_cpu_and_waiting(
    log_output: io.StringIO,
) -> None:
    """``cpu_ms`` is the handling thread's CPU: a handler that sleeps 40 ms shows the
    wait in ``latency_ms`` only, one that computes for 40 ms of CPU shows it in both."""
    app, services = _build()

    def sleeping() -> str:
        time.sleep(0.040)
        return "slept"

    app.add_url_rule("/test/sleeping", view_func=sleeping)
    app.add_url_rule("/test/computing", view_func=_computing)
    try:
        client = app.test_client()
        assert client.get("/test/sleeping").status_code == 200
        assert client.get("/test/computing").status_code == 200
    finally:
        services.close()
    slept, computed = (line for line in _lines(log_output) if line["event"] == "request")
    assert slept["route"] == "/test/sleeping"
    assert slept["latency_ms"] >= 40.0
    assert slept["cpu_ms"] < 20.0
    assert computed["route"] == "/test/computing"
    # The two clocks are read a few instructions apart: CPU may pass wall by a hair.
    assert 40.0 <= computed["cpu_ms"] <= computed["latency_ms"] + 0.5


def test_request_lines_give_the_time_spent_waiting_for_stores(
    log_output: io.StringIO,
) -> None:
    """``store_ms`` adds up the store calls the handling thread waited for: a catalog
    stalled 60 ms shows in it, and a request that calls no store shows none."""
    injectors: dict[str, FaultInjector[Any]] = {}

    def slow_catalog(stores: Stores) -> Stores:
        injectors["catalog"] = FaultInjector(stores.catalog, name="catalog")
        return dataclasses.replace(stores, catalog=injectors["catalog"].proxy)

    app, services = _build(slow_catalog)
    try:
        client = app.test_client()
        injectors["catalog"].stall(0.060)
        assert client.get(f"/api/v1/reels/{FIRST_VIDEO_ID}").status_code == 200
        injectors["catalog"].recover()
        assert client.get("/openapi.json").status_code == 200
    finally:
        services.close()
    video, spec = (line for line in _lines(log_output) if line["event"] == "request")
    assert video["route"] == "/api/v1/reels/<id>"
    assert video["store_calls"] >= 1
    assert 60.0 <= video["store_ms"] <= video["latency_ms"]
    assert video["cpu_ms"] < 30.0
    # The stalled call is the longest, named by its store and operation.
    assert video["slowest_store_call"].startswith("catalog.")
    assert 60.0 <= video["slowest_store_ms"] <= video["store_ms"]
    assert (spec["route"], spec["store_calls"], spec["store_ms"]) == ("/openapi.json", 0, 0.0)
    assert "slowest_store_call" not in spec and "slowest_store_ms" not in spec


@pytest.mark.skipif(
    not Path("/proc/thread-self/schedstat").exists() or not hasattr(os, "sched_setaffinity"),
    reason="the kernel's per-thread scheduler statistics are Linux-only",
)
def test_request_lines_give_the_time_spent_waiting_for_a_core(
    log_output: io.StringIO,
) -> None:
    """``run_queue_ms`` is the time the handling thread was ready but another had the
    core: 40 ms of computing on a core shared with two spinning processes waits about
    twice that for it (the scheduler gives each of the three a third), and every wait
    lies within the request's latency, with the spinners or without."""
    app, services = _build()

    app.add_url_rule("/test/computing", view_func=_computing)
    core = min(os.sched_getaffinity(0))
    saved = os.sched_getaffinity(0)
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in "ab"]

    def stop_spinners() -> None:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()

    try:
        for spinner in spinners:
            os.sched_setaffinity(spinner.pid, {core})
        # Pins this thread only: the test client handles the request on it.
        os.sched_setaffinity(0, {core})
        client = app.test_client()
        time.sleep(0.2)  # the spinners are running on the core
        assert client.get("/test/computing").status_code == 200
        stop_spinners()
        assert client.get("/test/computing").status_code == 200
    finally:
        os.sched_setaffinity(0, saved)
        stop_spinners()
        services.close()
    shared, alone = (line for line in _lines(log_output) if line["event"] == "request")
    # About 80 ms waiting against 40 computing: the wait, not the thread's run time
    # (which is its CPU), and all of it inside the latency.
    assert shared["run_queue_ms"] >= 1.4 * shared["cpu_ms"]
    assert shared["cpu_ms"] + shared["run_queue_ms"] <= shared["latency_ms"] + 0.5
    assert 0.0 <= alone["run_queue_ms"] <= alone["latency_ms"] - alone["cpu_ms"] + 0.5


def test_a_request_refused_before_its_id_is_drawn_still_gets_one(
    log_output: io.StringIO,
) -> None:
    app, services = _build()

    def draining() -> None:
        raise ProblemError(503, "unavailable", "the worker is draining")

    app.before_request_funcs.setdefault(None, []).insert(0, draining)
    try:
        client = app.test_client()
        given = client.get("/openapi.json", headers={"X-Request-ID": "kept-1"})
        drawn = client.get("/openapi.json", headers={"X-Request-ID": "not kept"})
    finally:
        services.close()
    assert (given.status_code, drawn.status_code) == (503, 503)
    assert given.headers["X-Request-ID"] == "kept-1"
    rid = drawn.headers["X-Request-ID"]
    assert len(rid) == 32
    lines = [line for line in _lines(log_output) if line["event"] == "request"]
    assert [line["request_id"] for line in lines] == ["kept-1", rid]
    line = lines[0]
    assert (line["status"], line["route"]) == (503, "/openapi.json")
    assert "latency_ms" not in line


def test_tokens_and_cursors_never_reach_the_logs(log_output: io.StringIO) -> None:
    app, services = _build()
    token = issue_token(SECRET, USER)
    auth = {"Authorization": f"Bearer {token}"}
    try:
        client = app.test_client()
        first = client.get("/api/v1/reels?limit=3", headers=auth).get_json()
        cursor = first["next_cursor"]
        assert cursor
        second = client.get(f"/api/v1/reels?limit=3&cursor={cursor}", headers=auth)
        assert second.status_code == 200
        hashtags = client.get("/api/v1/reels/trending-hashtags?limit=2").get_json()
        list_cursor = hashtags["next_cursor"]
        assert list_cursor
        client.get(f"/api/v1/reels/trending-hashtags?limit=2&cursor={list_cursor}")
        # A refused token and a forged cursor take the error paths.
        client.get("/api/v1/reels", headers={"Authorization": f"Bearer {token}x"})
        client.get(f"/api/v1/reels?cursor={cursor}tampered", headers=auth)
    finally:
        services.close()
    # Libraries log what they like: werkzeug's request line, an exception's message,
    # a warning, a structlog caller's keyword.
    logging.getLogger("werkzeug").info(
        '127.0.0.1 - - "GET /api/v1/reels?limit=3&cursor=%s HTTP/1.1" 200 -', cursor
    )
    try:
        raise RuntimeError(f"upstream refused Authorization: Bearer {token}")
    except RuntimeError:
        logging.getLogger("some.client").exception("call failed")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn(f"token {token} is about to expire", UserWarning, stacklevel=1)
    structlog.get_logger("reelrank_example").info("paged", cursor=list_cursor, next=cursor)

    text = log_output.getvalue()
    signature = token.rsplit(".", 1)[1]
    for secret in (token, signature, cursor, list_cursor):
        assert secret not in text
    lines = _lines(log_output)
    assert any("[redacted]" in line.get("exception", "") for line in lines)
    assert any(line["logger"] == "werkzeug" and "cursor=[redacted]" in line["event"]
               for line in lines)  # fmt: skip
    assert any(line["logger"] == "py.warnings" for line in lines)
    paged = next(line for line in lines if line["event"] == "paged")
    assert paged["cursor"] == "[redacted]"


def test_degraded_fallbacks_and_store_failures_get_a_line_each(
    log_output: io.StringIO,
) -> None:
    injectors: dict[str, FaultInjector[Any]] = {}

    def faulty(stores: Stores) -> Stores:
        injectors["events"] = FaultInjector(stores.events, name="events")
        injectors["catalog"] = FaultInjector(stores.catalog, name="catalog")
        return dataclasses.replace(
            stores, events=injectors["events"].proxy, catalog=injectors["catalog"].proxy
        )

    app, services = _build(faulty)
    auth = {"Authorization": f"Bearer {issue_token(SECRET, USER)}", "X-Request-ID": "deg-1"}
    try:
        client = app.test_client()
        injectors["events"].fail(methods=["get_affinities", "popular_video_ids"])
        response = client.get("/api/v1/reels?limit=3", headers=auth)
        assert response.status_code == 200
        degraded = response.get_json()["degraded"]
        assert degraded
        injectors["events"].recover()
        injectors["catalog"].fail()
        failed = client.get(f"/api/v1/reels/{FIRST_VIDEO_ID}", headers={"X-Request-ID": "sf-1"})
        assert failed.status_code == 503
    finally:
        services.close()
    lines = _lines(log_output)
    degraded_lines = [line for line in lines if line["event"] == "degraded"]
    assert sorted(line["dependency"] for line in degraded_lines) == sorted(degraded)
    for line in degraded_lines:
        assert line["level"] == "warning"
        assert line["fallback"]
        assert (line["request_id"], line["user_id"]) == ("deg-1", USER)
    failures = [line for line in lines if line["event"] == "store failure"]
    assert len(failures) == 1
    assert failures[0]["store"] == "catalog"
    assert failures[0]["status"] == 503
    assert failures[0]["request_id"] == "sf-1"


def test_console_format_renders_key_value_lines() -> None:
    buffer = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging(SETTINGS.model_copy(update={"log_format": "console"}), stream=buffer)
        logging.getLogger("reelrank_example.test").warning("hello", extra={"answer": 42})
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.captureWarnings(False)
        structlog.reset_defaults()
    line = buffer.getvalue()
    assert "hello" in line
    assert "answer=42" in line
    assert not line.lstrip().startswith("{")


def test_redact_by_key_and_by_shape() -> None:
    event = {
        "event": "GET /a?limit=2&cursor=abc.def&x=1 with Bearer opaque-token",
        "Authorization": "Bearer anything",
        "headers": {"cursor": "c1", "accept": "json"},
        "items": ["eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", "plain"],
        "count": 3,
    }
    assert redact(None, "info", event) == {
        "event": "GET /a?limit=2&cursor=[redacted]&x=1 with Bearer [redacted]",
        "Authorization": "[redacted]",
        "headers": {"cursor": "[redacted]", "accept": "json"},
        "items": ["[redacted]", "plain"],
        "count": 3,
    }


@settings(max_examples=60, deadline=None)
@given(prefix=st.text(max_size=20), suffix=st.text(max_size=20), user=st.integers(1, 2**62))
def test_no_token_survives_redaction_whatever_surrounds_it(
    prefix: str, suffix: str, user: int
) -> None:
    token = issue_token(SECRET, user)
    event = redact(None, "info", {"event": f"{prefix}{token}{suffix}"})
    assert token.rsplit(".", 1)[1] not in event["event"]


# The redaction as four substitutions over every string, written out here as the
# reference a string's redaction must equal whatever shortcut the service takes.
_REFERENCE_SUBSTITUTIONS = (
    (r"eyJ[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*", "[redacted]"),
    (r"[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{32,}", "[redacted]"),
    (r"(?i)\b(bearer)\s+[^\s\"',;]+", r"\1 [redacted]"),
    (r"(?i)\b((?:next_)?cursor=)[^&\s\"']*", r"\1[redacted]"),
)
_BASE64URL = "abcXYZ0189_-"
# "\u017f", the long s, matches "s" under the patterns' ignore-case.
_SHORTEST_SIGNED = "a" * 16 + "." + "Z9_-" * 8
_SECRET_PARTS = ("eyJ", ".", _SHORTEST_SIGNED, "a" * 16, "Z9_-" * 8, "Bearer ", "bEaReR\t",
                 "cursor=", "NEXT_CURSOR=", "cur\u017for=", "BEARER", "&", " ", '"', ",",
                 "?", ":", "é")  # fmt: skip
_TEXTS = st.lists(
    st.one_of(
        st.sampled_from(_SECRET_PARTS),
        st.text(alphabet=_BASE64URL, min_size=1, max_size=40),
        st.text(max_size=4),
    ),
    max_size=12,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(text=_TEXTS)
def test_redaction_of_a_string_is_the_four_substitutions(text: str) -> None:
    expected = text
    for pattern, replacement in _REFERENCE_SUBSTITUTIONS:
        expected = re.sub(pattern, replacement, expected)
    assert redact(None, "info", {"event": text, "nested": [{"value": text}]}) == {
        "event": expected,
        "nested": [{"value": expected}],
    }


def test_values_without_text_pass_redaction_unchanged() -> None:
    event = {"status": 200, "latency_ms": 3.125, "ok": True, "user_id": None, "n": 2**70}
    assert redact(None, "info", dict(event)) == event
