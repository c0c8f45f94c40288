"""OpenTelemetry tracing of the reels service, imported only when :attr:`Settings.tracing`
is on (off, the service neither imports nor installs any of it).

Spans come from the contrib instrumentations (Flask server spans, SQLAlchemy statements
on the SQL database, Redis commands) and from two proxies of this module: one around the
ClickHouse stores (one span per store call) and one around the ranking services (one
span per feed, similar, search or trending computation). An incoming W3C
``traceparent`` header continues the caller's trace.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from flask import Flask
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, Tracer

from reelrank import (
    CreatorRecommender,
    FeedPage,
    FeedRankingService,
    SimilarVideos,
    StoreProxy,
    Trending,
    VideoSearch,
)

from ._logging import redact_text
from ._services import Services
from ._settings import Settings

__all__ = [
    "EXCLUDED_URLS",
    "TRACER_NAME",
    "configure_tracing",
    "instrument_app",
    "trace_clickhouse_store",
    "trace_redis",
    "trace_services",
    "trace_sql_engine",
]

TRACER_NAME = "reelrank_example"
"""Instrumentation scope of the manual spans."""
EXCLUDED_URLS = "/healthz,/metrics"
"""Paths the Flask instrumentation leaves untraced: probes and scrapes would drown the
traces worth reading."""

_lock = threading.Lock()
_provider: TracerProvider | None = None
_traced_engines: set[int] = set()
T = TypeVar("T")


def configure_tracing(settings: Settings, exporter: SpanExporter | None = None) -> TracerProvider:
    """The process's tracer provider, built from ``settings`` on the first call.

    Spans are sampled ``trace_sample_ratio`` of the time for new traces and as the
    caller decided for continued ones, and are exported in batches to the OTLP
    collector or the console. An ``exporter`` passed here (the SDK's
    ``InMemorySpanExporter`` in tests) receives every span as soon as it ends. The
    provider becomes OpenTelemetry's global one; later calls return it unchanged.
    """
    global _provider
    with _lock:
        if _provider is not None:
            return _provider
        provider = TracerProvider(
            resource=Resource.create({"service.name": settings.service_name}),
            sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_ratio)),
        )
        if exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            provider.add_span_processor(BatchSpanProcessor(_exporter(settings)))
        trace.set_tracer_provider(provider)
        _provider = provider
        return provider


def _exporter(settings: Settings) -> SpanExporter:
    if settings.tracing_exporter == "console":
        return ConsoleSpanExporter()
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise ImportError(
            "tracing_exporter='otlp' needs opentelemetry-exporter-otlp-proto-http "
            "(pip install 'reelrank-example[tracing]')"
        ) from exc
    return OTLPSpanExporter(endpoint=settings.otlp_endpoint)


def _tracer() -> Tracer:
    return trace.get_tracer(TRACER_NAME)


def instrument_app(app: Flask, settings: Settings) -> Flask:
    """Give ``app`` a server span per request, continuing an incoming ``traceparent``."""
    provider = configure_tracing(settings)
    FlaskInstrumentor.instrument_app(  # type: ignore[no-untyped-call]
        app,
        tracer_provider=provider,
        excluded_urls=EXCLUDED_URLS,
        response_hook=_redact_url_attributes,
    )
    return app


_URL_ATTRIBUTES = ("http.target", "http.url", "url.query", "url.full")


def _redact_url_attributes(span: Span, status: object, headers: object) -> None:
    """Take cursors and tokens out of the server span's URL, by the logs' rules.

    A response hook: the instrumentation sets the URL attributes again after its request
    hook, and calls this one once they are final.
    """
    attributes = getattr(span, "attributes", None) or {}
    for key in _URL_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, str):
            span.set_attribute(key, redact_text(value))


def trace_sql_engine(engine: sa.Engine) -> sa.Engine:
    """Give every statement ``engine`` runs a span (the contrib SQLAlchemy tracer).

    The engine is instrumented on its own, not through SQLAlchemy's ``create_engine``,
    which the adapters imported before tracing could patch it.
    """
    with _lock:
        if id(engine) in _traced_engines:
            return engine
        _traced_engines.add(id(engine))
    scope = EngineTracer.__module__.rpartition(".")[0]  # the contrib instrumentation's name
    usage = metrics.get_meter(scope).create_up_down_counter(
        "db.client.connections.usage", unit="connections"
    )
    EngineTracer(trace.get_tracer(scope), engine, usage)  # type: ignore[no-untyped-call]
    return engine


def trace_redis() -> None:
    """Give every Redis command a span (the contrib Redis instrumentation, process-wide)."""
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    instrumentor = RedisInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=trace.get_tracer_provider())


class _ClickHouseStore(StoreProxy):
    """Forwards everything to a ClickHouse store; each method call gets a client span."""

    def __init__(self, store: object, name: str) -> None:
        super().__init__(store)
        self._name = name

    def _forward(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        with _tracer().start_as_current_span(
            f"clickhouse {self._name}.{method}",
            kind=trace.SpanKind.CLIENT,
            attributes={
                "db.system": "clickhouse",
                "reelrank.store": self._name,
                "reelrank.operation": method,
            },
        ):
            return getattr(self._wrapped, method)(*args, **kwargs)


def trace_clickhouse_store(store: T, name: str) -> T:
    """``store`` behind a proxy that traces each call (``name``: ``events``, ``log``)."""
    return cast(T, _ClickHouseStore(store, name))


@contextmanager
def _ranking_span(name: str, **attributes: Any) -> Iterator[Span]:
    with _tracer().start_as_current_span(
        f"reelrank.{name}",
        attributes={f"reelrank.{key}": value for key, value in attributes.items()},
    ) as span:
        yield span


class _TracedFeed(StoreProxy):
    def feed(self, user_id: int, limit: int = 20, cursor: str | None = None) -> FeedPage:
        with _ranking_span("feed", user_id=user_id, limit=limit, first_page=cursor is None) as span:
            page: FeedPage = self._wrapped.feed(user_id, limit, cursor)
            span.set_attribute("reelrank.items", len(page.items))
            span.set_attribute("reelrank.cache_hit", page.from_cache)
            span.set_attribute("reelrank.degraded", [d.dependency for d in page.degraded])
            return page


class _TracedSimilar(StoreProxy):
    def similar(self, video_id: int, *args: Any, **kwargs: Any) -> Any:
        user_id = kwargs.get("user_id")
        with _ranking_span(
            "similar",
            video_id=video_id,
            limit=kwargs.get("k", args[0] if args else 0),
            user_id=user_id if user_id is not None else 0,
        ) as span:
            result = self._wrapped.similar(video_id, *args, **kwargs)
            span.set_attribute("reelrank.candidates", len(result))
            return result


class _TracedSearch(StoreProxy):
    def search(self, text: str, *args: Any, **kwargs: Any) -> Any:
        # The query text is the caller's and may be personal: only its length is kept.
        with _ranking_span("search", query_length=len(text), limit=kwargs.get("limit", 20)) as span:
            result = self._wrapped.search(text, *args, **kwargs)
            span.set_attribute("reelrank.candidates", len(result))
            return result


class _TracedTrending(StoreProxy):
    def top(self, kind: Any, *args: Any, **kwargs: Any) -> Any:
        with _ranking_span("trending", kind=str(kind.value), limit=kwargs.get("limit", 0)) as span:
            snapshot = self._wrapped.top(kind, *args, **kwargs)
            span.set_attribute("reelrank.candidates", len(snapshot.items))
            span.set_attribute("reelrank.degraded", snapshot.stale_as_of is not None)
            return snapshot


class _TracedCreators(StoreProxy):
    def recommend(self, user_id: int, *args: Any, **kwargs: Any) -> Any:
        with _ranking_span("creators", user_id=user_id, limit=kwargs.get("limit", 0)) as span:
            result = self._wrapped.recommend(user_id, *args, **kwargs)
            span.set_attribute("reelrank.candidates", len(result))
            return result


def trace_services(services: Services) -> Services:
    """``services`` with its ranking services behind proxies that give each computation
    a span (feed, similar, search, trending, creators); every other method and attribute
    is forwarded (a :class:`~reelrank.StoreProxy` each), so the proxies stand in for the
    services."""
    return dataclasses.replace(
        services,
        feed=cast(FeedRankingService, _TracedFeed(services.feed)),
        similar=cast(SimilarVideos, _TracedSimilar(services.similar)),
        search=cast(VideoSearch, _TracedSearch(services.search)),
        trending=cast(Trending, _TracedTrending(services.trending)),
        creators=cast(CreatorRecommender, _TracedCreators(services.creators)),
    )
