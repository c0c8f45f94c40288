"""Structured logs: one JSON object per line for everything the service writes.

structlog renders every record, the service's own and those of the libraries it uses
(Flask, werkzeug, SQLAlchemy, gunicorn...), which reach it through the standard
:mod:`logging` module and structlog's :class:`~structlog.stdlib.ProcessorFormatter`.
Each line carries ``timestamp``, ``level``, ``event`` and ``logger``; a line written while
a request is served also carries its ``request_id`` (and ``user_id`` once the caller is
authenticated). Tokens and cursors never reach the output: see :func:`redact`.
"""

from __future__ import annotations

import logging
import logging.config
import re
import time
import uuid
from collections.abc import Mapping, MutableMapping
from typing import IO, Any

import structlog
from flask import Flask, Response, g, request

# gunicorn ships no type hints.
from gunicorn.glogging import Logger as _GunicornBaseLogger  # type: ignore[import-untyped]

from ._request_costs import begin_request, end_request
from ._settings import Settings

__all__ = [
    "REQUEST_ID_HEADER",
    "GunicornLogger",
    "configure_logging",
    "gunicorn_logconfig_dict",
    "logging_config",
    "redact",
]

REQUEST_ID_HEADER = "X-Request-ID"
"""Header a request id is read from, and echoed in on every response."""

REDACTED = "[redacted]"
"""What a secret is replaced with in the logs."""

# A proxy's or client's id is kept only if it is short and cannot inject anything into
# a log line or a header: UUIDs, hex and base64url ids pass.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
# Keys whose values are secrets wherever they appear in a log event.
_SECRET_KEYS = frozenset(
    {"authorization", "cursor", "next_cursor", "token", "auth_secret", "cursor_secret",
     "password", "cookie", "set-cookie"}
)  # fmt: skip
# A JWT: three base64url parts, the first one a JSON object ('{"' encodes as 'eyJ').
_JWT = re.compile(r"eyJ[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*")
# A signed token of any kind, the service's own cursors included: a base64url payload, a
# dot and a signature of at least 128 bits.
_SIGNED = re.compile(r"[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{32,}")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[^\s\"',;]+")
_CURSOR_PARAM = re.compile(r"(?i)\b((?:next_)?cursor=)[^&\s\"']*")
# Every match of the four patterns above holds a match of this one (the signed token's
# shortest form, the JWT's prefix, the two words), so a string without one is left as it
# is after one search instead of four substitutions: most of a line's strings (its
# level, logger, timestamp, route, request id).
_SECRET_SHAPED = re.compile(r"eyJ|[A-Za-z0-9_\-]{16}\.[A-Za-z0-9_\-]{32}|(?i:bearer)|(?i:cursor=)")
# Where a request's fields are left in the WSGI environ for gunicorn's access line.
_ENVIRON_KEY = "reelrank.access"

_requests = logging.getLogger("reelrank_example.requests")


def redact_text(text: str) -> str:
    """``text`` with every JWT, signed token, ``Bearer`` credential and cursor replaced."""
    if _SECRET_SHAPED.search(text) is None:
        return text
    text = _SIGNED.sub(REDACTED, _JWT.sub(REDACTED, text))
    text = _BEARER.sub(rf"\1 {REDACTED}", text)
    return _CURSOR_PARAM.sub(rf"\1{REDACTED}", text)


# Values a line carries most (status, latency, ids) and that hold no text: returned before
# the ``Mapping`` check, an abstract class's slower ``isinstance``.
_PLAIN_TYPES = frozenset({int, float, bool, type(None)})


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if type(value) in _PLAIN_TYPES:
        return value
    if isinstance(value, Mapping):
        return {
            key: REDACTED if str(key).lower() in _SECRET_KEYS else _redact_value(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact_value(item) for item in value]
    return value


def redact(
    logger: object, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: take every secret out of a log event.

    The value of a key named like a secret (``authorization``, ``cursor``,
    ``next_cursor``, ``token``...) is replaced, at any depth; in every string (the
    message, an exception's traceback, a library's request line) a JWT, anything
    shaped like a signed token (the service's cursors: a base64url payload, a dot, and
    a signature of 32 or more characters), a ``Bearer`` credential and the value of a
    ``cursor=`` query parameter are replaced.
    """
    for key, value in event_dict.items():
        if key.lower() in _SECRET_KEYS:
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _redact_value(value)
    return event_dict


def _shared_processors() -> list[Any]:
    """What every record goes through, whether it comes from structlog or logging."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
    ]


def _formatter(renderer: str) -> structlog.stdlib.ProcessorFormatter:
    """The formatter of every handler: ``json`` or ``console`` lines, always redacted."""
    final: Any = (
        structlog.processors.JSONRenderer()
        if renderer == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared_processors(), structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            # Last before rendering, so tracebacks formatted above are redacted too.
            redact,
            final,
        ],
    )


def logging_config(settings: Settings) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` dictionary: every logger to stderr, rendered by
    structlog as :attr:`Settings.log_format`, at :attr:`Settings.log_level`.

    gunicorn's ``gunicorn.error`` and ``gunicorn.access`` loggers are included, so the
    same dictionary serves as gunicorn's ``logconfig_dict``.
    """
    handler = {"class": "logging.StreamHandler", "formatter": "structured",
               "stream": "ext://sys.stderr"}  # fmt: skip
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"structured": {"()": _formatter, "renderer": settings.log_format}},
        "handlers": {"structured": handler},
        "root": {"level": settings.log_level, "handlers": ["structured"]},
        "loggers": {
            # gunicorn gives these handlers of its own and stops propagation; replace them.
            "gunicorn.error": {
                "level": settings.log_level,
                "handlers": ["structured"],
                "propagate": False,
            },
            "gunicorn.access": {"level": "INFO", "handlers": ["structured"], "propagate": False},
            # Every store checks the schema revision when built, and alembic reports each
            # check at INFO; the migrate command is where migrations are worth reading.
            "alembic": {"level": "WARNING"},
        },
    }


def configure_logging(settings: Settings | None = None, *, stream: IO[str] | None = None) -> None:
    """Send every log record of this process through structlog, one line each.

    Replaces the root logger's handlers (and gunicorn's), configures structlog for code
    that logs with :func:`structlog.get_logger`, and routes :mod:`warnings` into the
    logs. ``stream`` (default: stderr) is for tests. Calling it again reconfigures.
    """
    settings = settings or Settings()
    config = logging_config(settings)
    if stream is not None:
        config["handlers"]["structured"]["stream"] = stream
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    logging.config.dictConfig(config)
    logging.captureWarnings(True)


def gunicorn_logconfig_dict(settings: Settings | None = None) -> dict[str, Any]:
    """gunicorn's ``logconfig_dict``: its boot, error and access lines as JSON too.

    Level and format come from ``settings`` (default: the ``REELRANK_*`` environment,
    which the workers read too, so invalid settings stop the master at once).
    """
    return logging_config(settings or Settings())


class GunicornLogger(_GunicornBaseLogger):  # type: ignore[misc]
    """gunicorn's logger with a structured access line (``logger_class`` in its config).

    The line carries the method, the path without its query string (which may hold a
    cursor), the status, the time gunicorn measured, the bytes sent, and the request id
    and route the app answered with.
    """

    def setup(self, cfg: Any) -> None:
        """gunicorn's setup, then :mod:`warnings` into the logs (not bare on stderr)."""
        super().setup(cfg)
        logging.captureWarnings(True)

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        """Write one access line, unless gunicorn's access log is off."""
        if not self.access_log_enabled:
            return
        fields = {
            key: value
            for key, value in (environ.get(_ENVIRON_KEY) or {}).items()
            if value is not None
        }
        if "request_id" not in fields:
            for name, value in getattr(resp, "headers", ()):
                if name.lower() == "x-request-id":
                    fields["request_id"] = value
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        self.access_log.info(
            "access",
            extra={
                "method": environ.get("REQUEST_METHOD"),
                "path": environ.get("PATH_INFO"),
                "status": int(status),
                "latency_ms": round(request_time.total_seconds() * 1000.0, 3),
                "bytes": getattr(resp, "sent", None),
                "remote": environ.get("REMOTE_ADDR"),
                "user_agent": environ.get("HTTP_USER_AGENT"),
                **fields,
            },
        )


def note_user(user_id: int | None) -> None:
    """Record the authenticated caller of the current request for its log lines."""
    if user_id is not None:
        g.log_user_id = user_id
        structlog.contextvars.bind_contextvars(user_id=user_id)


def _request_id() -> str:
    given = request.headers.get(REQUEST_ID_HEADER)
    return given if given and _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def register_request_logging(app: Flask) -> None:
    """Give each request an id and write one ``request`` line when it is answered.

    The id is the caller's ``X-Request-ID`` when it is 1 to 128 characters of letters,
    digits and ``._:-``; otherwise a new one is drawn. It is echoed in the response,
    bound to every log line written during the request, and left in the WSGI environ
    for gunicorn's access line. The ``request`` line gives the handling's wall time
    (``latency_ms``), the CPU time of the thread that handled it (``cpu_ms``), and the
    time that thread waited for store calls and their number (``store_ms``,
    ``store_calls``), the longest of them (``slowest_store_call`` as
    ``store.operation``, ``slowest_store_ms``), and the time it waited for a core
    (``run_queue_ms``, where the kernel reports it).
    """

    @app.before_request
    def bind_request_id() -> None:
        g.request_id = _request_id()
        g.log_started = time.perf_counter()
        g.log_started_cpu = time.thread_time()
        begin_request()
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=g.request_id)

    @app.after_request
    def log_request(response: Response) -> Response:
        # An earlier before_request hook may have refused the request before ours ran.
        rid = g.get("request_id") or _request_id()
        response.headers[REQUEST_ID_HEADER] = rid
        route = request.url_rule.rule if request.url_rule is not None else None
        request.environ[_ENVIRON_KEY] = {
            "request_id": rid,
            "route": route,
            "user_id": g.get("log_user_id"),
        }
        fields: dict[str, Any] = {"method": request.method, "status": response.status_code}
        if route is not None:
            fields["route"] = route
        # Read in the reverse order of bind_request_id's, so that each span lies within
        # the one read before it: the run-queue wait within the CPU's, within the latency.
        costs = end_request()
        started = g.get("log_started")
        if started is not None:
            # The handling thread's own CPU: latency_ms less this is time spent waiting,
            # for stores, locks, the interpreter lock or a core.
            cpu_ms = round((time.thread_time() - g.log_started_cpu) * 1000.0, 3)
            fields["latency_ms"] = round((time.perf_counter() - started) * 1000.0, 3)
            fields["cpu_ms"] = cpu_ms
        if costs is not None:
            fields["store_ms"] = round(costs.store_seconds * 1000.0, 3)
            fields["store_calls"] = costs.store_calls
            if costs.slowest_call is not None:
                fields["slowest_store_call"] = costs.slowest_call
                fields["slowest_store_ms"] = round(costs.slowest_seconds * 1000.0, 3)
            if costs.run_queue_seconds is not None:
                fields["run_queue_ms"] = round(costs.run_queue_seconds * 1000.0, 3)
        if "request_id" not in structlog.contextvars.get_contextvars():
            fields["request_id"] = rid
        _requests.info("request", extra=fields)
        return response

    @app.teardown_request
    def unbind_request_id(_: BaseException | None) -> None:
        end_request()
        structlog.contextvars.clear_contextvars()
