"""OpenTelemetry tracing of the reels service, read back from the SDK's in-memory exporter.

With tracing on, a request continues the trace of its ``traceparent`` header: a Flask
server span, a ranking span under it, and the SQL statements, Redis commands and
ClickHouse store calls the request makes. With tracing off, nothing is traced, and no
OpenTelemetry module is even imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_ROOT = ROOT / "examples" / "flask_app"
sys.path.insert(0, str(EXAMPLE_ROOT))

from reelrank_example import (  # noqa: E402
    FIRST_USER_ID,
    FIRST_VIDEO_ID,
    Services,
    Settings,
    build_default_services,
    build_services,
    configure_tracing,
    configured_stores,
    create_app,
    issue_token,
    migrate,
    seed_synthetic_catalog,
)

SECRET = "t" * 40
SMALL = {"videos": 40, "pending_videos": 2, "users": 5, "events": 150, "creators": 8}
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
AUTH = {"Authorization": f"Bearer {issue_token(SECRET, FIRST_USER_ID)}"}


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    """Every span of the process's tracer provider (set up once per process)."""
    memory = InMemorySpanExporter()
    configure_tracing(Settings(tracing=True), memory)
    yield memory
    memory.shutdown()


def _settings(**overrides: Any) -> Settings:
    return Settings(auth_secret=SECRET, tracing=True, **SMALL, **overrides)


def _served(settings: Settings) -> tuple[Flask, Services]:
    migrate(settings)
    stores = configured_stores(settings)
    seed_synthetic_catalog(stores, settings, now=datetime.now(UTC))
    services = build_services(stores, settings)
    return create_app(services, settings), services


def _trace(spans: tuple[ReadableSpan, ...], trace_id: int) -> list[ReadableSpan]:
    return [
        span for span in spans if span.context is not None and span.context.trace_id == trace_id
    ]


def _children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def test_a_feed_request_continues_the_callers_trace(
    exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    app, services = _served(_settings(database_url=f"sqlite:///{tmp_path / 'reels.db'}"))
    try:
        client = app.test_client()
        exporter.clear()
        response = client.get("/api/v1/reels?limit=3", headers={**AUTH, "traceparent": TRACEPARENT})
        assert response.status_code == 200
        finished = exporter.get_finished_spans()
        first = _trace(finished, int(TRACE_ID, 16))
        exporter.clear()
        again = client.get("/api/v1/reels?limit=3", headers=AUTH)
        assert again.status_code == 200
        second = exporter.get_finished_spans()
        cursor = again.get_json()["next_cursor"]
        exporter.clear()
        assert client.get(f"/api/v1/reels?limit=3&cursor={cursor}", headers=AUTH).status_code == 200
        paged = exporter.get_finished_spans()
    finally:
        services.close()

    (server,) = [span for span in first if span.kind is SpanKind.SERVER]
    assert server.parent is not None
    assert (server.parent.span_id, server.parent.is_remote) == (int(PARENT_ID, 16), True)
    assert server.name == "GET /api/v1/reels"
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/api/v1/reels"
    (ranking,) = [span for span in _children(first, server) if span.name == "reelrank.feed"]
    assert ranking.attributes == {
        "reelrank.user_id": FIRST_USER_ID,
        "reelrank.limit": 3,
        "reelrank.first_page": True,
        "reelrank.items": 3,
        "reelrank.cache_hit": False,
        "reelrank.degraded": (),
    }
    # The ranking's store calls, made on the feed service's worker threads, and the
    # cards read afterwards are SQLite statements inside the request's trace: nothing
    # the request did lands in a trace of its own.
    assert len(first) == len(finished)
    for parent in (ranking, server):
        statements = [
            span
            for span in _children(first, parent)
            if (span.attributes or {}).get("db.system") == "sqlite"
        ]
        assert statements
        assert all(span.kind is SpanKind.CLIENT for span in statements)
    # A new trace starts without a traceparent, and the second page comes from the cache.
    (server_again,) = [span for span in second if span.kind is SpanKind.SERVER]
    assert server_again.parent is None
    assert server_again.context is not None
    assert server_again.context.trace_id != int(TRACE_ID, 16)
    (cached,) = [span for span in second if span.name == "reelrank.feed"]
    assert cached.attributes is not None
    assert cached.attributes["reelrank.cache_hit"] is True
    # The cursor stays out of the trace, as out of the logs; the token never enters it.
    (server_paged,) = [span for span in paged if span.kind is SpanKind.SERVER]
    assert server_paged.attributes is not None
    assert server_paged.attributes["http.target"] == "/api/v1/reels?limit=3&cursor=[redacted]"
    recorded = repr([dict(span.attributes or {}) for span in (*first, *second, *paged)])
    assert cursor not in recorded
    assert AUTH["Authorization"].split()[1] not in recorded


def test_discovery_endpoints_get_ranking_spans(exporter: InMemorySpanExporter) -> None:
    settings = Settings(auth_secret=SECRET, tracing=True, **SMALL)
    services = build_default_services(settings)
    app = create_app(services, settings)
    try:
        client = app.test_client()
        exporter.clear()
        for path in (
            "/api/v1/reels/search?q=dance&limit=2",
            f"/api/v1/reels/{FIRST_VIDEO_ID}/similar?limit=2",
            "/api/v1/reels/trending-hashtags?limit=2",
        ):
            assert client.get(path, headers=AUTH).status_code == 200, path
        # Probes and scrapes are not traced.
        assert client.get("/healthz/live").status_code == 200
    finally:
        services.close()
    spans = exporter.get_finished_spans()
    servers = [span for span in spans if span.kind is SpanKind.SERVER]
    assert [span.name for span in servers] == [
        "GET /api/v1/reels/search",
        "GET /api/v1/reels/<id>/similar",
        "GET /api/v1/reels/trending-hashtags",
    ]
    names = [span.name for span in spans if span.name.startswith("reelrank.")]
    assert names == ["reelrank.search", "reelrank.similar", "reelrank.trending"]
    similar = next(span for span in spans if span.name == "reelrank.similar")
    assert similar.attributes is not None
    assert similar.attributes["reelrank.video_id"] == FIRST_VIDEO_ID
    assert similar.attributes["reelrank.user_id"] == FIRST_USER_ID
    assert similar.attributes["reelrank.candidates"] >= 2


def test_with_tracing_off_nothing_is_traced(exporter: InMemorySpanExporter) -> None:
    settings = Settings(auth_secret=SECRET, **SMALL)
    services = build_default_services(settings)
    app = create_app(services, settings)
    try:
        exporter.clear()
        response = app.test_client().get(
            "/api/v1/reels?limit=3", headers={**AUTH, "traceparent": TRACEPARENT}
        )
        assert response.status_code == 200
    finally:
        services.close()
    assert exporter.get_finished_spans() == ()
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
    assert type(services.feed).__name__ == "FeedRankingService"


def test_with_tracing_off_no_opentelemetry_module_is_imported() -> None:
    script = f"""
import sys
sys.path.insert(0, {str(EXAMPLE_ROOT)!r})
from reelrank_example import FIRST_USER_ID, Settings, build_default_services, create_app
from reelrank_example import issue_token
settings = Settings(auth_secret={SECRET!r}, videos=20, users=3, events=50, creators=4)
services = build_default_services(settings)
app = create_app(services, settings)
token = issue_token({SECRET!r}, FIRST_USER_ID)
status = app.test_client().get(
    "/api/v1/reels?limit=2", headers={{"Authorization": "Bearer " + token}}
).status_code
services.close()
print(status, sorted(name for name in sys.modules if name.startswith("opentelemetry")))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REELRANK_", "OTEL_"))}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    status, _, modules = result.stdout.strip().splitlines()[-1].partition(" ")
    assert status == "200"
    assert json.loads(modules.replace("'", '"')) == []


@pytest.fixture()
def real_servers(tmp_path: Path) -> Iterator[dict[str, str]]:
    from reelrank_clickhouse.testing import ClickHouseServer, find_clickhouse_server
    from reelrank_redis.testing import RedisServer, find_redis_server

    if None in (find_redis_server(), find_clickhouse_server()):
        pytest.skip("ClickHouse and Redis are needed (scripts/test.sh installs them)")
    with (
        RedisServer(tmp_path / "redis") as redis,
        ClickHouseServer(tmp_path / "clickhouse") as clickhouse,
    ):
        yield {
            "redis_url": redis.url,
            "clickhouse_url": f"clickhouse://default@127.0.0.1:{clickhouse.tcp_port}/default",
        }


@pytest.mark.integration
def test_redis_commands_and_clickhouse_calls_join_the_trace(
    exporter: InMemorySpanExporter, tmp_path: Path, real_servers: dict[str, str]
) -> None:
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    settings = _settings(database_url=f"sqlite:///{tmp_path / 'reels.db'}", **real_servers)
    try:
        app, services = _served(settings)
        try:
            exporter.clear()
            response = app.test_client().get(
                "/api/v1/reels?limit=3", headers={**AUTH, "traceparent": TRACEPARENT}
            )
            assert response.status_code == 200
        finally:
            services.close()
    finally:
        RedisInstrumentor().uninstrument()
    spans = _trace(exporter.get_finished_spans(), int(TRACE_ID, 16))
    systems = {(span.attributes or {}).get("db.system") for span in spans}
    assert {"redis", "clickhouse", "sqlite"} <= systems
    clickhouse = [s for s in spans if (s.attributes or {}).get("db.system") == "clickhouse"]
    assert all(span.name.startswith("clickhouse events.") for span in clickhouse)
    # The ranking's count read (the cards show the counts it read).
    assert "clickhouse events.stats_columns" in {span.name for span in clickhouse}


def test_an_event_requests_log_write_beside_the_event_store_stays_in_its_trace(
    exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    settings = _settings(database_url=f"sqlite:///{tmp_path / 'reels.db'}")
    assert settings.parallel_event_writes
    app, services = _served(settings)
    try:
        client = app.test_client()
        exporter.clear()
        response = client.post(
            f"/api/v1/reels/{FIRST_VIDEO_ID}/watch",
            json={"completion": 0.5},
            headers={**AUTH, "traceparent": TRACEPARENT, "Idempotency-Key": "traced-watch"},
        )
        assert response.status_code == 201, response.get_data(as_text=True)
        finished = exporter.get_finished_spans()
    finally:
        services.close()
    # The log's insert, made on a recorder thread, is in the request's trace like the
    # event store's: nothing the request did lands in a trace of its own.
    traced = _trace(finished, int(TRACE_ID, 16))
    assert len(traced) == len(finished)
    statements = " ".join(
        str((span.attributes or {}).get("db.statement", "")) for span in traced
    ).lower()
    assert "insert into engagement_log" in statements, statements
