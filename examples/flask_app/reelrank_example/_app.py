"""The Flask application: the reels service's HTTP contract over reelrank's services.

Each endpoint is an :class:`~reelrank_example._api.Operation`; one generic view checks
the path id, the query, the token and the body against the operation's models before
the handler runs, so a rejected request never reaches a store. Every error leaves as an
RFC 9457 problem document (``application/problem+json``).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from importlib import resources
from typing import Any

from flask import Flask, Response, g, request
from flask_limiter import Limiter
from pydantic import BaseModel, ValidationError
from pydantic_core import to_json
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge

from reelrank import (
    WEIGHT_FIELDS,
    BreakerState,
    CircuitBreaker,
    ConfigError,
    CursorError,
    FeedPage,
    FeedUnavailableError,
    InvalidInputError,
    InvalidTransitionError,
    NotFoundError,
    NotReadyError,
    QueryError,
    RankingConfig,
    ReelrankError,
    StoreError,
    TrendingKind,
    Video,
    build_dash_mpd,
    build_hls_master_playlist,
)

from ._api import (
    DASH_CONTENT_TYPE,
    HLS_CONTENT_TYPE,
    MAX_PAGE_SIZE,
    OPERATIONS,
    PROBLEM_CONTENT_TYPE,
    Card,
    CardPage,
    Counts,
    CreatorCard,
    CreatorPage,
    CreatorRef,
    EventResponse,
    Health,
    LikeBody,
    LikeResponse,
    Operation,
    PageQuery,
    ProgressReport,
    ScoredCard,
    SearchQuery,
    ShareBody,
    StreamQuery,
    TrendingEntry,
    TrendingPage,
    TrendingQuery,
    VideoDetail,
    WatchBody,
    openapi_document,
)
from ._auth import Authenticator, AuthError, ForbiddenError
from ._cards import CardReader
from ._health import ReadinessChecks, StartupProgress
from ._limits_storage import window_answering_storage
from ._logging import note_user, register_request_logging
from ._metrics import AppMetrics
from ._progress import apply_progress_report
from ._services import IdempotencyRecord, Services
from ._settings import Settings

__all__ = ["ERROR_STATUSES", "ProblemError", "create_app", "prefetch_cards"]

ERROR_STATUSES: tuple[tuple[type[ReelrankError], int, str], ...] = (
    (CursorError, 400, "invalid-cursor"),
    (QueryError, 400, "invalid-query"),
    (InvalidInputError, 400, "invalid-input"),
    (ConfigError, 400, "invalid-input"),
    (NotFoundError, 404, "not-found"),
    (NotReadyError, 409, "not-ready"),
    (InvalidTransitionError, 409, "conflict"),
    (FeedUnavailableError, 503, "unavailable"),
    (StoreError, 503, "unavailable"),
)
"""HTTP status and problem type of each reelrank error, most specific class first.

A request the client can fix is a 400; an outage is a 503 with ``Retry-After``, so
clients back off instead of treating it as their fault.
"""

_PROBLEM_BASE = "urn:reelrank:problem:"
_logger = logging.getLogger(__name__)
_PATH_ID = re.compile(r"[1-9][0-9]{0,18}")
_MAX_ID = 2**63 - 1
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_RETRY_AFTER_SECONDS = 1
# Non-feed lists are cut from one ranked result; a cursor reaches this deep at most.
_LIST_DEPTH = 4 * MAX_PAGE_SIZE
_READ_CHUNK = 16 * 1024


class ProblemError(Exception):
    """A request refused by the HTTP layer, answered as a problem document."""

    def __init__(
        self,
        status: int,
        kind: str,
        detail: str,
        field: str | None = None,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.field = field
        self.errors = errors
        self.headers = headers or {}


def _problem(
    status: int,
    kind: str,
    detail: str,
    field: str | None = None,
    *,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": _PROBLEM_BASE + kind,
        "title": kind.replace("-", " ").capitalize(),
        "status": status,
        "detail": detail,
    }
    if field is not None:
        body["field"] = field
    if errors is not None:
        body["errors"] = errors
    response = Response(json.dumps(body), status=status, content_type=PROBLEM_CONTENT_TYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    if status == 503 and "Retry-After" not in response.headers:
        response.headers["Retry-After"] = str(_RETRY_AFTER_SECONDS)
    return response


def _validation_problem(exc: ValidationError, prefix: str = "") -> ProblemError:
    errors = []
    for error in exc.errors(include_url=False):
        loc = ".".join(str(part) for part in error["loc"])
        errors.append({"field": prefix + loc if loc else prefix.rstrip(".") or "body",
                       "message": error["msg"]})  # fmt: skip
    first = errors[0]
    return ProblemError(
        400, "validation", f"{first['field']}: {first['message']}", first["field"], errors=errors
    )


class _Cursors:
    """Signed offsets into the non-feed lists, bound to the endpoint, query and caller."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _sign(self, payload: bytes) -> str:
        return hmac.new(self._secret, payload, hashlib.sha256).hexdigest()[:32]

    def encode(self, scope: str, offset: int) -> str:
        payload = json.dumps({"s": scope, "o": offset}, separators=(",", ":")).encode()
        text = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        return f"{text}.{self._sign(payload)}"

    def decode(self, scope: str, cursor: str | None) -> int:
        if cursor is None:
            return 0
        text, _, signature = cursor.partition(".")
        try:
            payload = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            data = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            raise ProblemError(400, "invalid-cursor", "the cursor is malformed", "cursor") from None
        if not hmac.compare_digest(self._sign(payload), signature):
            raise ProblemError(400, "invalid-cursor", "the cursor is not valid", "cursor")
        if not isinstance(data, dict) or data.get("s") != scope:
            raise ProblemError(
                400, "invalid-cursor", "the cursor belongs to another list or caller", "cursor"
            )
        offset = data.get("o")
        if not isinstance(offset, int) or not 0 <= offset <= _LIST_DEPTH:
            raise ProblemError(400, "invalid-cursor", "the cursor is not valid", "cursor")
        return offset


class _RateLimit:
    """Per-user limit on event requests, shared through the state Redis when there is one.

    Flask-Limiter checks a limit at the start of a request by default, before the
    caller is known; here the limit is entered after authentication, keyed by the
    token's user, and shared by every event endpoint. The service sets no default or
    application limits, so Flask-Limiter's own check before every request is taken off
    the app: it looked up limits for every request and found none (about 0.1 ms of
    CPU per request, a cache-hit feed page's included). In Redis the limit is counted on
    the service's storage (:mod:`._limits_storage`), whose hit also answers the window
    the headers are written from: one round trip instead of three.
    """

    def __init__(
        self, app: Flask, storage_uri: str, per_minute: int, *, timeout_seconds: float
    ) -> None:
        options: dict[str, Any] = {}
        if not storage_uri.startswith("memory://"):
            from redis.backoff import NoBackoff  # the redis extra, needed by this storage only
            from redis.retry import Retry

            # redis-py's defaults wait 5 s and retry with backoff: a frozen Redis would
            # hold every event request for seconds. A limit that cannot be checked is
            # let through (swallow_errors): an outage of the limiter loses no events.
            options = {
                "socket_timeout": timeout_seconds,
                "socket_connect_timeout": timeout_seconds,
                "retry": Retry(NoBackoff(), 0),
            }
        self._limiter = Limiter(
            key_func=lambda: "anonymous",
            app=app,
            # The hit's own answer gives the headers their window (_limits_storage).
            storage_uri=window_answering_storage(storage_uri),
            storage_options=options,
            strategy="fixed-window",
            headers_enabled=True,
            swallow_errors=True,
        )
        # Flask-Limiter has no switch for its per-request check, so its hook is found
        # by what it is bound to rather than by the extension's private method name.
        hooks = app.before_request_funcs[None]
        hooks[:] = [hook for hook in hooks if getattr(hook, "__self__", None) is not self._limiter]
        self._rate = f"{per_minute}/minute"

    def hit(self, user_id: int) -> None:
        with self._limiter.shared_limit(
            self._rate, scope="events", key_func=lambda: f"user:{user_id}"
        ):
            pass


def create_app(
    services: Services,
    settings: Settings | None = None,
    *,
    authenticator: Authenticator | None = None,
    startup: StartupProgress | None = None,
) -> Flask:
    """The service's Flask app over ``services``.

    ``authenticator`` defaults to one built from ``settings`` (which then needs an auth
    secret or key). ``startup`` is the progress ``/healthz/startup`` reports; without
    it, start-up counts as finished. Close ``services`` with ``services.close()`` when
    the app stops: that also stops the threads the app started (start-up, the card
    reader's background reads and its guards' worker pools, the readiness checks).
    """
    settings = settings or Settings()
    authenticator = authenticator or Authenticator(settings)
    app = Flask("reelrank_example")
    app.extensions["reelrank_services"] = services
    metrics = services.metrics
    cursor_secret = (
        settings.cursor_secret.get_secret_value().encode()
        if settings.cursor_secret is not None
        else secrets.token_bytes(32)
    )
    state = settings.redis_state_url or settings.redis_url
    progress = startup or StartupProgress.finished()
    handlers = _Handlers(
        services,
        settings,
        _Cursors(cursor_secret),
        _RateLimit(
            app,
            "memory://" if state is None else state,
            settings.events_per_minute,
            timeout_seconds=settings.redis_timeout_seconds,
        ),
        progress,
        CardReader(
            services.stores.catalog,
            services.stores.events,
            ttl=settings.card_cache_seconds,
            details_stale=settings.card_details_stale_seconds,
            counts_ttl=settings.card_counts_seconds,
            observer=services.metrics.observer,
            search_counts=services.search_counts,
            bounded_age=settings.bounded_counts_seconds,
        ),
    )
    app.extensions["reelrank_cards"] = handlers.card_reader
    # Closing the services stops what this app started on them, before their stores.
    services.stop_on_close(progress.stop)
    services.stop_on_close(handlers.card_reader.close)
    services.stop_on_close(handlers.readiness.close)
    for guard in handlers.card_reader.guards:
        services.close_guard(guard)
    if services.shared_counts is not None and settings.card_counts_seconds > 0:
        # The cards reuse the counts the ranking reads (read on every page otherwise).
        services.shared_counts.share_with(handlers.card_reader)
    if services.shared_videos is not None and settings.card_cache_seconds > 0:
        # The cards reuse the videos the ranking reads (read on every cold page otherwise).
        services.shared_videos.share_with(handlers.card_reader)
    document = openapi_document()
    _register_errors(app)
    _register_timing(app, metrics)
    register_request_logging(app)
    for operation in OPERATIONS:
        _register(app, operation, getattr(handlers, operation.operation_id), authenticator,
                  settings.max_body_bytes, metrics)  # fmt: skip

    @app.get("/openapi.json")
    def openapi() -> Response:
        return Response(json.dumps(document), content_type="application/json")

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        return Response(metrics.render(), content_type=metrics.content_type)

    _register_explorer(app, settings, authenticator)
    if settings.tracing:
        from ._tracing import instrument_app

        instrument_app(app, settings)
    if progress.complete:
        # Built from services started beforehand; otherwise whoever runs the start-up
        # steps reports their end (see create_default_app).
        metrics.startup_complete()
    return app


def prefetch_cards(app: Flask, videos: Iterable[Video]) -> int:
    """Keep the card details of ``videos`` in ``app``, so their cards can still be built
    while the catalog is down; returns how many were kept."""
    reader = app.extensions["reelrank_cards"]
    assert isinstance(reader, CardReader)
    return reader.prefetch(videos)


def _register_explorer(app: Flask, settings: Settings, authenticator: Authenticator) -> None:
    """The explorer page at ``/`` and the two helpers it reads (not part of the API)."""
    page = resources.files(__package__).joinpath("explorer.html").read_text(encoding="utf-8")
    weights = dict(zip(WEIGHT_FIELDS, RankingConfig().weights, strict=True))

    @app.get("/")
    def explorer() -> Response:
        return Response(page, content_type="text/html; charset=utf-8")

    @app.get("/explorer/config")
    def explorer_config() -> Response:
        return Response(
            json.dumps({"demo": settings.demo, "weights": weights}),
            content_type="application/json",
        )

    @app.get("/explorer/token")
    def explorer_token() -> Response:
        # Minting tokens for any user is what demo mode is for, and nothing else.
        if not settings.demo:
            raise ProblemError(404, "not-found", "tokens are issued in demo mode only")
        raw = request.args.get("user_id", "")
        if set(request.args) != {"user_id"} or not _PATH_ID.fullmatch(raw) or int(raw) > _MAX_ID:
            raise ProblemError(400, "validation", "user_id: a positive integer", "user_id")
        token = authenticator.issue(int(raw))
        return Response(json.dumps({"token": token}), content_type="application/json")


def _register_errors(app: Flask) -> None:
    @app.errorhandler(ProblemError)
    def problem_error(exc: ProblemError) -> Response:
        return _problem(
            exc.status, exc.kind, exc.detail, exc.field, errors=exc.errors, headers=exc.headers
        )

    @app.errorhandler(ReelrankError)
    def reelrank_error(exc: ReelrankError) -> Response:
        for kind, status, name in ERROR_STATUSES:
            if isinstance(exc, kind):
                field = exc.field if isinstance(exc, InvalidInputError | ConfigError) else None
                detail = str(exc)
                if isinstance(exc, StoreError | FeedUnavailableError):
                    store = exc.store if isinstance(exc, StoreError) else "catalog"
                    _logger.warning(
                        "store failure",
                        extra={"store": store, "error": type(exc).__name__, "status": status},
                    )
                if isinstance(exc, StoreError):
                    # The driver's message can name hosts; the store's name is enough.
                    detail = f"the {exc.store} store is unavailable; retry shortly"
                return _problem(status, name, detail, field)
        _logger.error("unmapped reelrank error", exc_info=exc)
        return _problem(500, "internal", "internal error")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        headers = {}
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            headers["Allow"] = ", ".join(exc.valid_methods)
        kind = (exc.name or "error").lower().replace(" ", "-")
        return _problem(status, kind, exc.description or kind, headers=headers)

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception) -> Response:
        _logger.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
        return _problem(500, "internal", "internal error")


def _route() -> str:
    """The URL rule of the request (never its raw path, whose ids are unbounded)."""
    return request.url_rule.rule if request.url_rule is not None else "unmatched"


def _register_timing(app: Flask, metrics: AppMetrics) -> None:
    @app.before_request
    def start_timer() -> None:
        g.request_started = time.perf_counter()
        metrics.in_flight.inc()

    @app.after_request
    def observe_latency(response: Response) -> Response:
        started = g.get("request_started")
        if started is not None:
            metrics.request_answered(
                request.method,
                _route(),
                response.status_code,
                time.perf_counter() - started,
                g.get("feed_cache", "none"),
            )
        return response

    @app.teardown_request
    def request_done(_: BaseException | None) -> None:
        # Only requests that were counted in: another before_request may have answered
        # before ours ran.
        if g.pop("request_started", None) is not None:
            metrics.in_flight.dec()


_EVENT_KINDS = {"like": "like", "unlike": "unlike", "watch": "watch", "share": "share"}
"""The event kind each event operation records."""


def _event_outcome(exc: Exception) -> str:
    """How an event request that raised ends: ``rejected`` (4xx) or ``failed`` (5xx)."""
    if isinstance(exc, ProblemError):
        return "failed" if exc.status >= 500 else "rejected"
    if isinstance(exc, HTTPException):
        return "failed" if (exc.code or 500) >= 500 else "rejected"
    if isinstance(exc, StoreError | FeedUnavailableError):
        return "failed"
    return "rejected" if isinstance(exc, ReelrankError) else "failed"


def _counting_events(
    view: Callable[..., Response], kind: str, metrics: AppMetrics
) -> Callable[..., Response]:
    """``view``, counting each request in ``reelrank_events_total`` by its outcome."""

    @functools.wraps(view)
    def counted(**path: str) -> Response:
        try:
            response = view(**path)
        except Exception as exc:
            metrics.event(kind, _event_outcome(exc))
            raise
        metrics.event(kind, g.pop("event_outcome", "recorded"))
        return response

    return counted


class Call:
    """One validated request, as a handler sees it."""

    def __init__(
        self,
        video_id: int | None,
        query: BaseModel,
        body: BaseModel | None,
        user_id: int | None,
        idempotency_key: str | None,
    ) -> None:
        self.video_id = video_id
        self.query = query
        self.body = body
        self.user_id = user_id
        self.idempotency_key = idempotency_key

    @property
    def vid(self) -> int:
        """The path's video id (operations on a video only)."""
        assert self.video_id is not None
        return self.video_id

    @property
    def user(self) -> int:
        """The authenticated caller (operations that require a token only)."""
        assert self.user_id is not None
        return self.user_id


Handler = Callable[[Call], Response | BaseModel | tuple[BaseModel, int]]


def _register(
    app: Flask,
    op: Operation,
    handler: Handler,
    auth: Authenticator,
    max_body: int,
    metrics: AppMetrics,
) -> None:
    def view(**path: str) -> Response:
        video_id = _path_id(path["id"]) if "id" in path else None
        query = _query(op)
        user_id: int | None = None
        header = request.headers.get("Authorization")
        if op.auth == "service":
            _check_service(auth, header)
        elif op.auth == "required" or (op.auth == "optional" and header is not None):
            try:
                user_id = auth.user_id(header)
            except AuthError as exc:
                raise ProblemError(
                    401,
                    "unauthorized",
                    exc.message,
                    "Authorization",
                    headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
                ) from None
        note_user(user_id)
        key = None
        if op.idempotency_key:
            key = request.headers.get("Idempotency-Key")
            if key is not None and not _IDEMPOTENCY_KEY.fullmatch(key):
                raise ProblemError(400, "validation", "Idempotency-Key: 1 to 255 visible ASCII "
                                   "characters", "Idempotency-Key")  # fmt: skip
        body = _body(op, max_body)
        result = handler(Call(video_id, query, body, user_id, key))
        if isinstance(result, Response):
            return result
        model, status = result if isinstance(result, tuple) else (result, op.status)
        return Response(model.model_dump_json(), status=status, content_type="application/json")

    rule = op.path.replace("{id}", "<id>")
    kind = _EVENT_KINDS.get(op.operation_id)
    endpoint = view if kind is None else _counting_events(view, kind, metrics)
    app.add_url_rule(rule, op.operation_id, endpoint, methods=[op.method])


def _check_service(auth: Authenticator, header: str | None) -> None:
    try:
        auth.check_service(header)
    except AuthError as exc:
        raise ProblemError(
            401,
            "unauthorized",
            exc.message,
            "Authorization",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        ) from None
    except ForbiddenError as exc:
        raise ProblemError(403, "forbidden", exc.message, "Authorization") from None


def _path_id(raw: str) -> int:
    if not _PATH_ID.fullmatch(raw) or int(raw) > _MAX_ID:
        raise ProblemError(400, "validation", "id: must be a positive integer video id", "id")
    return int(raw)


def _query(op: Operation) -> BaseModel:
    args: dict[str, str] = {}
    for name in request.args:
        values = request.args.getlist(name)
        if len(values) > 1:
            raise ProblemError(400, "validation", f"{name}: given more than once", name)
        args[name] = values[0]
    try:
        return op.query.model_validate(args)
    except ValidationError as exc:
        raise _validation_problem(exc) from None


def _read_body(max_body: int) -> bytes:
    length = request.content_length
    if length is not None and length > max_body:
        raise ProblemError(413, "too-large", f"the body must be at most {max_body} bytes", "body")
    stream = request.environ["wsgi.input"]
    chunks: list[bytes] = []
    total = 0
    remaining = length
    try:
        while remaining is None or remaining > 0:
            want = _READ_CHUNK if remaining is None else min(_READ_CHUNK, remaining)
            chunk = stream.read(want)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if remaining is not None:
                remaining -= len(chunk)
            if total > max_body:
                raise ProblemError(
                    413, "too-large", f"the body must be at most {max_body} bytes", "body"
                )
    except RequestEntityTooLarge:
        raise ProblemError(
            413, "too-large", f"the body must be at most {max_body} bytes", "body"
        ) from None
    return b"".join(chunks)


def _body(op: Operation, max_body: int) -> BaseModel | None:
    if op.body is None:
        return None
    raw = _read_body(max_body)
    if not raw.strip():
        if op.body_required:
            raise ProblemError(400, "validation", "body: a JSON object is required", "body")
        return op.body.model_validate({})
    if request.mimetype != "application/json":
        raise ProblemError(415, "unsupported-media-type", "send the body as application/json",
                           "Content-Type")  # fmt: skip
    try:
        return op.body.model_validate_json(raw)
    except ValidationError as exc:
        raise _validation_problem(exc) from None


def feed_page_json(page: FeedPage, cards: dict[int, Card], degraded: list[str]) -> bytes:
    """The JSON body of a feed page (a ``FeedPageResponse``), its items in ``cards``
    (the others left out).

    Written from the cards' own dumps, without building a ``FeedCard`` per item
    and the page around them only to serialise them: the cards were validated when they
    were built and the items by the feed service, so those models would copy the same
    values again, and at about twice the CPU of this. The serialiser is the one the
    models use, so the bytes are theirs; scores are made floats as the models' fields
    would make them.
    """
    return to_json(
        {
            "items": [
                {
                    **cards[item.video_id].model_dump(),
                    "score": float(item.score),
                    "breakdown": {name: float(value) for name, value in item.breakdown.items()},
                }
                for item in page.items
                if item.video_id in cards
            ],
            "next_cursor": page.next_cursor,
            "variant": page.variant,
            "degraded": degraded,
        }
    )


class _EventWrite:
    """Whether an event write let through by the event-write breaker called the store
    (a keyed request may be answered from its record instead)."""

    __slots__ = ("reached_store",)

    def __init__(self) -> None:
        self.reached_store = False

    def reach_store(self) -> None:
        """The store is called now: from here on, the outcome is the store's."""
        self.reached_store = True


class _Handlers:
    """One method per operation id of :data:`~reelrank_example._api.OPERATIONS`."""

    def __init__(
        self,
        services: Services,
        settings: Settings,
        cursors: _Cursors,
        rate: _RateLimit,
        startup: StartupProgress,
        cards: CardReader,
    ) -> None:
        self._services = services
        self._settings = settings
        self._cursors = cursors
        self._rate = rate
        self._startup = startup
        self.card_reader = cards
        self.readiness = ReadinessChecks(
            services.stores, services.feed, timeout=settings.ready_check_timeout_seconds
        )
        # While the event store is down, event requests answer 503 at once instead of
        # each waiting for the driver's timeout.
        self._event_writes = CircuitBreaker(
            "events", failure_threshold=3, reset_timeout_seconds=2.0
        )

    # -- cards ---------------------------------------------------------------------------

    def _cards(
        self, video_ids: list[int], degraded: list[str] | None = None, *, fresh_counts: bool = False
    ) -> dict[int, Card]:
        data = self.card_reader.read(video_ids, fresh_counts=fresh_counts)
        if degraded is not None:
            degraded += [name for name in data.degraded if name not in degraded]
        videos, creators, stats = data.videos, data.creators, data.stats
        # Search and similar extend a card with ``**dict(card)``: its fields as they
        # are, so the creator and counts, validated here once, are not dumped and
        # validated again; the feed writes the cards' dumps (feed_page_json).
        cards: dict[int, Card] = {}
        for video_id, video in videos.items():
            creator = creators.get(video.creator_id)
            stat = stats.get(video_id)
            cards[video_id] = Card(
                video_id=video_id,
                creator=CreatorRef(
                    creator_id=video.creator_id,
                    handle=creator.handle if creator else "",
                    name=creator.display_name if creator else "",
                ),
                title=video.title,
                duration_seconds=video.duration_seconds,
                published_at=video.published_at,
                sound_id=video.sound_id,
                hashtags=list(video.hashtags),
                thumbnail_url=f"{self._settings.media_base_url}/v/{video_id}/thumb.jpg",
                stream_url=f"/api/v1/reels/stream/{video_id}",
                counts=Counts(
                    views=stat.views if stat else 0,
                    likes=stat.likes if stat else 0,
                    shares=stat.shares if stat else 0,
                    comments=stat.comments if stat else 0,
                ),
            )
        return cards

    def _scored(self, scored: list[tuple[int, float]], offset: int, limit: int) -> list[ScoredCard]:
        window = scored[offset : offset + limit]
        cards = self._cards([video_id for video_id, _ in window])
        return [
            ScoredCard(**dict(cards[video_id]), score=score)
            for video_id, score in window
            if video_id in cards
        ]

    def _next(self, scope: str, offset: int, limit: int, available: int) -> str | None:
        end = offset + limit
        return self._cursors.encode(scope, end) if end < available else None

    @staticmethod
    def _scope(name: str, query: BaseModel, user_id: int | None, *extra: object) -> str:
        params = query.model_dump(exclude={"cursor", "limit"}, mode="json")
        return json.dumps([name, user_id, params, *extra], sort_keys=True, separators=(",", ":"))

    # -- reads ---------------------------------------------------------------------------

    def feed(self, call: Call) -> Response:
        query = call.query
        assert isinstance(query, PageQuery)
        page = self._services.feed.feed(call.user, query.limit, query.cursor)
        for fallback in page.degraded:
            _logger.warning(
                "degraded",
                extra={"dependency": fallback.dependency, "fallback": fallback.fallback},
            )
        degraded = [fallback.dependency for fallback in page.degraded]
        try:
            cards = self._cards([item.video_id for item in page.items], degraded)
        except StoreError as exc:
            self._services.metrics.feed_unavailable(exc.store)
            raise
        self._services.metrics.feed_page(
            page.from_cache, end_of_feed=not page.items and page.next_cursor is None
        )
        body = feed_page_json(page, cards, degraded)
        # RFC 9211: whether the page was cut from a cached snapshot (load tests and
        # operators tell cache-hit from ranked pages by it).
        status = "hit" if page.from_cache else "fwd=miss"
        g.feed_cache = "hit" if page.from_cache else "miss"
        return Response(
            body,
            content_type="application/json",
            headers={"Cache-Status": f"reelrank; {status}"},
        )

    def _trending(self, call: Call, kind: TrendingKind) -> BaseModel:
        query = call.query
        assert isinstance(query, TrendingQuery)
        scope = self._scope(kind.value, query, None)
        offset = self._cursors.decode(scope, query.cursor)
        snapshot = self._services.trending.top(
            kind,
            now=self._services.clock(),
            window_hours=query.window_hours,
            limit=min(_LIST_DEPTH, offset + query.limit + 1),
        )
        items = snapshot.items
        if snapshot.stale_as_of is not None:
            _logger.warning(
                "degraded",
                extra={"dependency": "engagement log", "fallback": "last trending snapshot"},
            )
        return TrendingPage(
            kind=kind.value,
            window_hours=snapshot.window_hours,
            computed_at=snapshot.computed_at,
            stale_as_of=snapshot.stale_as_of,
            items=[
                TrendingEntry(key=item.key, score=item.score, count=item.count, delta=item.delta)
                for item in items[offset : offset + query.limit]
            ],
            next_cursor=self._next(scope, offset, query.limit, len(items)),
        )

    def trending_sounds(self, call: Call) -> BaseModel:
        return self._trending(call, TrendingKind.SOUND)

    def trending_hashtags(self, call: Call) -> BaseModel:
        return self._trending(call, TrendingKind.HASHTAG)

    def search(self, call: Call) -> Response:
        query = call.query
        assert isinstance(query, SearchQuery)
        scope = self._scope("search", query, None)
        offset = self._cursors.decode(scope, query.cursor)
        hits = self._services.search.search(
            query.q, limit=min(_LIST_DEPTH, offset + query.limit + 1)
        )
        page = self._card_page(scope, offset, query.limit, [(h.video_id, h.score) for h in hits])
        # RFC 9211, as the feed's: whether the query's text matches were reused from
        # this process's memory (load tests split search latency by it).
        status = "hit" if g.get("search_matches") == "hit" else "fwd=miss"
        return Response(
            page.model_dump_json(),
            content_type="application/json",
            headers={"Cache-Status": f"reelrank; {status}"},
        )

    def similar(self, call: Call) -> BaseModel:
        query = call.query
        assert isinstance(query, PageQuery)
        scope = self._scope("similar", query, call.user_id, call.vid)
        offset = self._cursors.decode(scope, query.cursor)
        videos = self._services.similar.similar(
            call.vid,
            k=min(_LIST_DEPTH, offset + query.limit + 1),
            user_id=call.user_id,
            now=self._services.clock(),
        )
        return self._card_page(
            scope, offset, query.limit, [(video.video_id, video.score) for video in videos]
        )

    def _card_page(
        self, scope: str, offset: int, limit: int, scored: list[tuple[int, float]]
    ) -> CardPage:
        """The page at ``offset`` of ``scored`` (ranked ids, read one past the page so
        the cursor knows whether more follow)."""
        return CardPage(
            items=self._scored(scored, offset, limit),
            next_cursor=self._next(scope, offset, limit, len(scored)),
        )

    def creators(self, call: Call) -> BaseModel:
        query = call.query
        assert isinstance(query, PageQuery)
        scope = self._scope("creators", query, call.user)
        offset = self._cursors.decode(scope, query.cursor)
        recommended = self._services.creators.recommend(
            call.user,
            now=self._services.clock(),
            limit=min(_LIST_DEPTH, offset + query.limit + 1),
        )
        window = recommended[offset : offset + query.limit]
        known = self._services.stores.catalog.get_creators([r.creator_id for r in window])
        return CreatorPage(
            items=[
                CreatorCard(
                    creator_id=rec.creator_id,
                    handle=known[rec.creator_id].handle if rec.creator_id in known else "",
                    name=known[rec.creator_id].display_name if rec.creator_id in known else "",
                    score=rec.score,
                )
                for rec in window
            ],
            next_cursor=self._next(scope, offset, query.limit, len(recommended)),
        )

    def stream(self, call: Call) -> Response:
        query = call.query
        assert isinstance(query, StreamQuery)
        video = self._services.stores.catalog.get_video(call.vid)
        if query.format == "dash":
            return Response(
                build_dash_mpd(video, self._services.manifests), content_type=DASH_CONTENT_TYPE
            )
        playlist = build_hls_master_playlist(video, self._services.manifests)
        return Response(playlist, content_type=HLS_CONTENT_TYPE)

    def progress(self, call: Call) -> BaseModel:
        return self._services.processing.get(call.vid)

    def report_progress(self, call: Call) -> BaseModel:
        assert isinstance(call.body, ProgressReport)
        return apply_progress_report(self._services, call.vid, call.body)

    def video(self, call: Call) -> BaseModel:
        video = self._services.stores.catalog.get_video(call.vid)
        card = self._cards([video.video_id], fresh_counts=True).get(video.video_id)
        if card is None:
            raise StoreError("catalog", "the video's details are unavailable")
        return VideoDetail(**dict(card), description=video.description, state=video.state.value)

    # -- events --------------------------------------------------------------------------

    def _occurred_at(self, body: BaseModel) -> datetime:
        now = self._services.clock()
        occurred: datetime | None = getattr(body, "occurred_at", None)
        if occurred is None:
            return now
        latest = now + timedelta(seconds=300)
        earliest = now - timedelta(hours=self._settings.idempotency_hours)
        if not earliest <= occurred <= latest:
            raise ProblemError(
                400,
                "validation",
                f"occurred_at: must lie between {earliest.isoformat()} and {latest.isoformat()}",
                "occurred_at",
            )
        return occurred

    def _ready_video(self, video_id: int) -> Video:
        video = self._services.stores.catalog.get_video(video_id)
        if video.state.value != "ready":
            raise NotReadyError(video_id, video.state.value)
        return video

    def _like(self, call: Call, liked: bool) -> BaseModel:
        body = call.body
        assert isinstance(body, LikeBody)
        occurred_at = self._occurred_at(body)
        # Handed to the recorder, which would otherwise read it again.
        video = self._ready_video(call.vid)
        self._refuse_writes_while_failing()
        self._rate.hit(call.user)
        record = self._services.recorder.like if liked else self._services.recorder.unlike
        event_id = f"l-{secrets.token_hex(16)}"
        with self._event_write(call.vid) as write:
            write.reach_store()
            applied = record(
                call.user, call.vid, event_id=event_id, occurred_at=occurred_at, video=video
            )
        g.event_outcome = "recorded" if applied else "duplicate"
        # Kept as the card counts too: the video's next card needs no read of its own.
        stats = self.card_reader.read_counts([call.vid]).get(call.vid)
        return LikeResponse(video_id=call.vid, liked=liked, likes=stats.likes if stats else 0)

    def like(self, call: Call) -> BaseModel:
        return self._like(call, True)

    def unlike(self, call: Call) -> BaseModel:
        return self._like(call, False)

    def _event(self, call: Call, kind: str) -> tuple[BaseModel, int]:
        body = call.body
        assert isinstance(body, WatchBody | ShareBody)
        occurred_at = self._occurred_at(body)
        video = self._ready_video(call.vid)
        # Refused before the key's record is written: a refused request leaves none
        # behind, so the key stays free for a request with another body.
        self._refuse_writes_while_failing()
        self._rate.hit(call.user)
        fingerprint = hashlib.sha256(
            json.dumps(
                [kind, call.vid, body.model_dump(mode="json", exclude_none=True)], sort_keys=True
            ).encode()
        ).hexdigest()
        scope: str | None = None
        event_id = f"{kind[0]}-{secrets.token_hex(20)}"
        # Whether a keyed body without its own time is stamped here (a pending record
        # then holds the stamp for a retry), and whether the key has a pending record,
        # which the answer replaces.
        stamping = False
        pending_there = False
        if call.idempotency_key is not None:
            scope = f"{call.user}:{call.idempotency_key}"
            event_id = f"{kind[0]}-" + hashlib.sha256(scope.encode()).hexdigest()[:40]
            stamping = getattr(body, "occurred_at", None) is None
            if not stamping:
                previous = self._recall_answer(scope)
                answered = self._earlier_answer(previous, fingerprint)
                if answered is not None:
                    return answered
                pending_there = previous is not None
        recorder = self._services.recorder
        with self._event_write(call.vid) as write:
            if scope is not None and stamping:
                # The stamp is recorded before the write: a retry after a lost answer
                # redelivers the event with the same occurred_at, which the ClickHouse
                # event store needs to recognise it past the hour. Recorded once the
                # breaker let the write through, so that no refusal leaves it behind.
                pending = IdempotencyRecord.pending_for(fingerprint, occurred_at)
                stored = self._remember_first(scope, pending)
                pending_there = stored is True
                if stored is not True:
                    # Taken (or unknown): the record there decides.
                    previous = self._recall_answer(scope)
                    answered = self._earlier_answer(previous, fingerprint)
                    if answered is not None:
                        return answered
                    if previous is not None:
                        pending_there = True
                        occurred_at = previous.occurred_at or occurred_at
            write.reach_store()
            if isinstance(body, WatchBody):
                applied = recorder.watch(
                    call.user,
                    call.vid,
                    event_id=event_id,
                    occurred_at=occurred_at,
                    watched_seconds=body.watched_seconds,
                    completion=body.completion,
                    video=video,
                )
            else:
                applied = recorder.share(
                    call.user, call.vid, event_id=event_id, occurred_at=occurred_at,
                    channel=body.channel, video=video,
                )  # fmt: skip
        status = 201 if applied else 200
        g.event_outcome = "recorded" if applied else "duplicate"
        response = EventResponse(event_id=event_id, video_id=call.vid, applied=applied)
        if scope is not None:
            final = IdempotencyRecord(
                fingerprint=fingerprint, status=status, response=response.model_dump_json()
            )
            if pending_there:
                self._replace_pending(scope, final)
            else:
                self._remember_first(scope, final)
        return response, status

    def _earlier_answer(
        self, previous: IdempotencyRecord | None, fingerprint: str
    ) -> tuple[BaseModel, int] | None:
        """The answer a keyed request gets from the key's earlier record: its first
        answer again, 422 for another body, or ``None`` to write the event (no record,
        or a pending one)."""
        if previous is None:
            return None
        if previous.fingerprint != fingerprint:
            raise ProblemError(
                422,
                "idempotency-key-reused",
                "this Idempotency-Key was used with another request",
                "Idempotency-Key",
            )
        if previous.pending:
            return None
        self._services.metrics.idempotent_replay(_route())
        g.event_outcome = "duplicate"
        return EventResponse.model_validate_json(previous.response), previous.status

    # An Idempotency-Key's event id is derived from the key, so the event store counts a
    # retried event once even when the stored answer cannot be read or written. While the
    # idempotency store is down the service therefore keeps taking events: a retry is
    # answered 200 with applied=false instead of the first answer, and a key reused with
    # another body is refused by the event store's own id check rather than the
    # fingerprint's 422 when the payload differs.
    def _recall_answer(self, scope: str) -> IdempotencyRecord | None:
        try:
            return self._services.stores.idempotency.get(scope)
        except StoreError as exc:
            _logger.warning("idempotency store unavailable", extra={"error": str(exc)})
            return None

    def _remember_first(self, scope: str, record: IdempotencyRecord) -> bool | None:
        """``put``: whether ``record`` was stored, ``None`` when unknown (the store is
        down, or was written before ``put`` answered and returns nothing)."""
        ttl = timedelta(hours=self._settings.idempotency_hours)
        try:
            # None from a store written before put answered passes through: unknown.
            return self._services.stores.idempotency.put(scope, record, ttl=ttl)
        except StoreError as exc:
            _logger.warning("idempotency store unavailable", extra={"error": str(exc)})
            return None

    def _replace_pending(self, scope: str, record: IdempotencyRecord) -> None:
        ttl = timedelta(hours=self._settings.idempotency_hours)
        try:
            self._services.stores.idempotency.replace(scope, record, ttl=ttl)
        except StoreError as exc:
            _logger.warning("idempotency store unavailable", extra={"error": str(exc)})

    def _refuse_writes_while_failing(self) -> None:
        # Before the rate limit is counted: a refused write must not use up the
        # caller's allowance (nor get the limit window's reset as its Retry-After).
        if self._event_writes.state is BreakerState.OPEN:
            raise StoreError("events", "recent writes failed; not trying again yet")

    @contextlib.contextmanager
    def _event_write(self, video_id: int) -> Iterator[_EventWrite]:
        """One event write through the event-store breaker: a refused or failed write
        raises :class:`~reelrank.StoreError` (503 with ``Retry-After``). The block
        calls :meth:`_EventWrite.reach_store` just before it calls the store; only
        then is the outcome the store's. Afterwards the video's counts are read afresh
        on this process's cards, since even a failed write may have landed (a timeout
        after the store applied it)."""
        admission = self._event_writes.admit()
        if admission is None:
            raise StoreError("events", "recent writes failed; not trying again yet")
        write = _EventWrite()
        failed = False
        try:
            yield write
        except StoreError:
            failed = True
            raise
        finally:
            if not write.reached_store:
                # Answered from the key's record (a concurrent request with the same
                # key won the race), or refused before the write (a key reused with
                # another body): the store was not tried, so a half-open breaker's
                # trial is given back rather than the circuit closed untested.
                self._event_writes.release_trial(admission)
            elif failed:
                self._event_writes.record_failure(admission)
            else:
                # Also when the store answered and the call was wrong: the store works.
                self._event_writes.record_success(admission)
            self.card_reader.forget_counts([video_id])

    def watch(self, call: Call) -> tuple[BaseModel, int]:
        return self._event(call, "watch")

    def share(self, call: Call) -> tuple[BaseModel, int]:
        return self._event(call, "share")

    # -- health --------------------------------------------------------------------------

    def live(self, call: Call) -> BaseModel:
        # Touches no store: an outage elsewhere must not get a working process restarted.
        return Health(status="ok", checks={})

    def ready(self, call: Call) -> BaseModel:
        if not self._startup.complete:
            raise ProblemError(
                503, "unavailable", "not ready: start-up has not finished",
                errors=[{"field": step, "message": state}
                        for step, state in self._startup.checks().items() if state != "done"],
            )  # fmt: skip
        checks = self.readiness.run()
        for dependency, state in checks.items():
            self._services.metrics.readiness_check(dependency, state == "ok")
        failing = ReadinessChecks.failing(checks)
        if failing:
            raise ProblemError(
                503,
                "unavailable",
                "not ready: " + ", ".join(f"{name} {state}" for name, state in failing.items()),
                errors=[{"field": name, "message": state} for name, state in failing.items()],
            )
        status = "ok" if all(state == "ok" for state in checks.values()) else "degraded"
        return Health(status=status, checks=checks)

    def startup(self, call: Call) -> BaseModel:
        checks = self._startup.checks()
        if not self._startup.complete:
            raise ProblemError(
                503, "unavailable", "starting: " + ", ".join(
                    f"{step} {state}" for step, state in checks.items() if state != "done"),
                errors=[{"field": step, "message": state} for step, state in checks.items()
                        if state != "done"],
            )  # fmt: skip
        return Health(status="ok", checks=checks)
