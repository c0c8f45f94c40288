"""The Flask application: reelrank's services behind a small JSON API.

Every error leaves as ``{"error": {"type": ..., "field": ..., "message": ...}}`` with a
status taken from reelrank's exception hierarchy (see :data:`ERROR_STATUSES`), so
clients never have to parse an HTML error page.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any, NoReturn

from flask import Flask, Response, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from reelrank import (
    ConfigError,
    CursorError,
    FeedUnavailableError,
    InvalidInputError,
    InvalidTransitionError,
    NotFoundError,
    NotReadyError,
    QueryError,
    ReelrankError,
    StoreError,
    TrendingKind,
    build_dash_mpd,
    build_hls_master_playlist,
)

from ._metrics import AppMetrics
from ._services import Services

__all__ = [
    "DASH_CONTENT_TYPE",
    "DEFAULT_PAGE_SIZE",
    "ERROR_STATUSES",
    "HLS_CONTENT_TYPE",
    "RequestError",
    "create_app",
]

HLS_CONTENT_TYPE = "application/vnd.apple.mpegurl"
"""Media type of an HLS playlist (RFC 8216, section 4)."""
DASH_CONTENT_TYPE = "application/dash+xml"
"""Media type of a DASH MPD (ISO/IEC 23009-1, annex C)."""
DEFAULT_PAGE_SIZE = 20
"""Items per page (feed, search, similar videos...) when the request names no limit."""

ERROR_STATUSES: tuple[tuple[type[ReelrankError], int, str], ...] = (
    (CursorError, 400, "cursor_error"),
    (QueryError, 400, "query_error"),
    (InvalidInputError, 400, "invalid_input"),
    (ConfigError, 422, "config_error"),
    (NotFoundError, 404, "not_found"),
    (NotReadyError, 409, "not_ready"),
    (InvalidTransitionError, 409, "invalid_transition"),
    (FeedUnavailableError, 503, "feed_unavailable"),
    (StoreError, 503, "store_unavailable"),
)
"""HTTP status and error ``type`` of each reelrank error, most specific class first.

A request the client can fix (a malformed value, cursor or query) is a 400; a
configuration value that is well formed but cannot be applied is a 422; an outage is a
503 with ``Retry-After``, so clients back off instead of treating it as their fault.
"""

_logger = logging.getLogger(__name__)
_INTEGER = re.compile(r"-?[0-9]{1,20}")
_DECIMAL = re.compile(r"-?(?:[0-9]{1,20}(?:\.[0-9]{0,20})?|\.[0-9]{1,20})(?:[eE][-+]?[0-9]{1,3})?")
_TRUE = frozenset({"1", "true", "yes"})
_FALSE = frozenset({"0", "false", "no"})
_RETRY_AFTER_SECONDS = 1


class RequestError(Exception):
    """A request the HTTP layer refuses before any service sees it."""

    def __init__(self, status: int, error_type: str, message: str, field: str | None = None):
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.field = field


def _error_body(error_type: str, field: str | None, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"type": error_type, "field": field, "message": message, **extra}}


def _reelrank_error_response(exc: ReelrankError) -> tuple[Response, int]:
    mapped = next(
        ((status, name) for kind, status, name in ERROR_STATUSES if isinstance(exc, kind)), None
    )
    if mapped is None:
        _logger.error("unmapped reelrank error", exc_info=exc)
        return jsonify(_error_body("internal_error", None, "internal error")), 500
    status, error_type = mapped
    extra: dict[str, Any] = {}
    field: str | None = None
    message = str(exc)
    if isinstance(exc, InvalidInputError | ConfigError):
        field = exc.field
    elif isinstance(exc, NotFoundError):
        extra["kind"] = exc.kind
    elif isinstance(exc, NotReadyError):
        extra["state"] = exc.state
    elif isinstance(exc, StoreError):
        # The driver's message can name hosts and internals; the store's name is enough.
        extra["store"] = exc.store
        message = f"the {exc.store} store is unavailable; retry shortly"
    response = jsonify(_error_body(error_type, field, message, **extra))
    if status == 503:
        response.headers["Retry-After"] = str(_RETRY_AFTER_SECONDS)
    return response, status


# -- request parsing -----------------------------------------------------------------------


def _path_id(field: str, raw: str) -> int:
    if not _INTEGER.fullmatch(raw):
        raise InvalidInputError(field, f"must be an integer id, got {raw!r}")
    return int(raw)


def _int_arg(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not _INTEGER.fullmatch(raw):
        raise InvalidInputError(name, f"must be an integer, got {raw!r}")
    return int(raw)


def _optional_id_arg(name: str) -> int | None:
    raw = request.args.get(name)
    return None if raw is None else _path_id(name, raw)


def _float_arg(name: str) -> float | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    # float() alone would also take "nan", "inf", "1_0" and surrounding spaces.
    if not _DECIMAL.fullmatch(raw):
        raise InvalidInputError(name, f"must be a finite decimal number, got {raw!r}")
    return float(raw)


def _bool_arg(name: str) -> bool:
    raw = request.args.get(name)
    if raw is None:
        return False
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise InvalidInputError(name, f"must be true or false, got {raw!r}")


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _json_object() -> dict[str, Any]:
    """The request body as a JSON object; :class:`RequestError` if it is not one."""
    if not request.is_json:
        raise RequestError(
            415, "unsupported_media_type", "send the body as application/json", "body"
        )
    raw = request.get_data(cache=False)
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, "malformed_json", f"body is not valid JSON: {exc}", "body") from exc
    if not isinstance(body, dict):
        raise RequestError(400, "malformed_json", "body must be a JSON object", "body")
    return body


# -- the application -----------------------------------------------------------------------


def create_app(services: Services, *, max_body_bytes: int = 64 * 1024) -> Flask:
    """A Flask app serving ``services`` under ``/v1``, with ``/healthz`` and ``/metrics``.

    The app only translates HTTP to service calls and errors back to HTTP; build
    ``services`` with :func:`~reelrank_example.build_default_services` or by hand from
    stores of your choice. Close them with ``services.close()`` when the app stops.
    """
    app = Flask("reelrank_example")
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["reelrank_services"] = services
    metrics = AppMetrics(services.feed)
    _register_error_handlers(app)
    _register_timing(app, metrics)
    _register_routes(app, services, metrics)
    return app


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ReelrankError)
    def reelrank_error(exc: ReelrankError) -> tuple[Response, int]:
        return _reelrank_error_response(exc)

    @app.errorhandler(RequestError)
    def request_error(exc: RequestError) -> tuple[Response, int]:
        return jsonify(_error_body(exc.error_type, exc.field, exc.message)), exc.status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        name = (exc.name or "error").lower().replace(" ", "_")
        status = exc.code or 500
        response = jsonify(_error_body(name, None, exc.description or name))
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response, status

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception) -> tuple[Response, int]:
        _logger.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
        return jsonify(_error_body("internal_error", None, "internal error")), 500


def _register_timing(app: Flask, metrics: AppMetrics) -> None:
    @app.before_request
    def start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def observe_latency(response: Response) -> Response:
        started = g.get("request_started")
        if started is not None:
            rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
            metrics.latency.labels(request.method, rule, str(response.status_code)).observe(
                time.perf_counter() - started
            )
        return response


def _register_routes(app: Flask, services: Services, metrics: AppMetrics) -> None:
    @app.route("/healthz")
    def healthz() -> Response:
        breakers = {name: breaker.state.value for name, breaker in services.feed.breakers.items()}
        status = "ok" if all(state == "closed" for state in breakers.values()) else "degraded"
        return jsonify({"status": status, "breakers": breakers})

    @app.route("/metrics")
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST)

    @app.route("/v1/users/<user_id>/feed")
    def feed(user_id: str) -> Response:
        uid = _path_id("user_id", user_id)
        limit = _int_arg("limit", DEFAULT_PAGE_SIZE)
        page = services.feed.feed(uid, limit, request.args.get("cursor"))
        return jsonify({"user_id": uid, **page.model_dump(mode="json")})

    @app.route("/v1/events", methods=["POST"])
    def record_event() -> tuple[Response, int]:
        body = _json_object()
        applied = services.recorder.record(body)
        return jsonify({"event_id": body["event_id"], "applied": applied}), 201 if applied else 200

    def trending(kind: TrendingKind) -> Response:
        snapshot = services.trending.top(
            kind,
            now=services.clock(),
            window_hours=_float_arg("window_hours"),
            limit=_int_arg("limit", DEFAULT_PAGE_SIZE),
        )
        return jsonify(snapshot.model_dump(mode="json"))

    @app.route("/v1/trending/sounds")
    def trending_sounds() -> Response:
        return trending(TrendingKind.SOUND)

    @app.route("/v1/trending/hashtags")
    def trending_hashtags() -> Response:
        return trending(TrendingKind.HASHTAG)

    @app.route("/v1/users/<user_id>/recommended-creators")
    def recommended_creators(user_id: str) -> Response:
        uid = _path_id("user_id", user_id)
        recommendations = services.creators.recommend(
            uid, now=services.clock(), limit=_int_arg("limit", DEFAULT_PAGE_SIZE)
        )
        return jsonify(
            {"user_id": uid, "creators": [item.model_dump(mode="json") for item in recommendations]}
        )

    @app.route("/v1/search")
    def search() -> Response:
        text = request.args.get("q", "")
        hits = services.search.search(
            text, limit=_int_arg("limit", DEFAULT_PAGE_SIZE), as_you_type=_bool_arg("as_you_type")
        )
        return jsonify({"query": text, "hits": [hit.model_dump(mode="json") for hit in hits]})

    @app.route("/v1/videos/<video_id>/similar")
    def similar(video_id: str) -> Response:
        vid = _path_id("video_id", video_id)
        videos = services.similar.similar(
            vid,
            k=_int_arg("k", DEFAULT_PAGE_SIZE),
            user_id=_optional_id_arg("user_id"),
            now=services.clock(),
        )
        return jsonify({"video_id": vid, "items": [v.model_dump(mode="json") for v in videos]})

    @app.route("/v1/videos/<video_id>/manifest.m3u8")
    def hls_manifest(video_id: str) -> Response:
        video = services.stores.catalog.get_video(_path_id("video_id", video_id))
        playlist = build_hls_master_playlist(video, services.manifests)
        return Response(playlist, content_type=HLS_CONTENT_TYPE)

    @app.route("/v1/videos/<video_id>/manifest.mpd")
    def dash_manifest(video_id: str) -> Response:
        video = services.stores.catalog.get_video(_path_id("video_id", video_id))
        mpd = build_dash_mpd(video, services.manifests)
        return Response(mpd, content_type=DASH_CONTENT_TYPE)

    @app.route("/v1/videos/<video_id>/processing")
    def processing(video_id: str) -> Response:
        progress = services.processing.get(_path_id("video_id", video_id))
        return jsonify(progress.model_dump(mode="json"))
