"""The HTTP contract: request and response models, the operations, and the OpenAPI document.

Every operation names the pydantic models of its query, body and response. The app
validates requests with exactly these models and :func:`openapi_document` renders the
same models as JSON Schema, so the document cannot drift from what is enforced.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic.json_schema import models_json_schema

from reelrank import ProcessingProgress

__all__ = [
    "DASH_CONTENT_TYPE",
    "DEFAULT_PAGE_SIZE",
    "HLS_CONTENT_TYPE",
    "MAX_PAGE_SIZE",
    "MAX_QUERY_LENGTH",
    "OPERATIONS",
    "Operation",
    "openapi_document",
]

HLS_CONTENT_TYPE = "application/vnd.apple.mpegurl"
"""Media type of an HLS playlist (RFC 8216, section 4)."""
DASH_CONTENT_TYPE = "application/dash+xml"
"""Media type of a DASH MPD (ISO/IEC 23009-1, annex C)."""
PROBLEM_CONTENT_TYPE = "application/problem+json"
"""Media type of an error (RFC 9457)."""
DEFAULT_PAGE_SIZE = 20
"""Items per page of every list endpoint when the request names no ``limit``."""
MAX_PAGE_SIZE = 50
"""Largest ``limit`` of every list endpoint."""
MAX_QUERY_LENGTH = 200
"""Longest search text ``q``, in characters."""

_INTEGER_TEXT = re.compile(r"[0-9]{1,19}")
_DECIMAL_TEXT = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,9})?")


def _query_int(value: object) -> object:
    # Query strings are text; only plain decimal digits become an int, so "1e2",
    # " 5", "+5" and "5.0" are refused the same way a JSON body refuses "12".
    if isinstance(value, str):
        if not _INTEGER_TEXT.fullmatch(value):
            raise ValueError("must be an integer written with digits only")
        return int(value)
    return value


def _query_decimal(value: object) -> object:
    if isinstance(value, str):
        if not _DECIMAL_TEXT.fullmatch(value):
            raise ValueError("must be a decimal number such as 24 or 1.5")
        return float(value)
    return value


# The constraints come before the validator, which then wraps the constrained int: that
# order keeps them in the JSON Schema.
Limit = Annotated[
    int,
    Field(ge=1, le=MAX_PAGE_SIZE, strict=True),
    BeforeValidator(_query_int),
]
Cursor = Annotated[str, Field(min_length=1, max_length=2048, pattern=r"^[A-Za-z0-9_.\-=]+$")]


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, use_attribute_docstrings=True
    )


class _Out(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)


class PageQuery(_Strict):
    """Query of a paged list."""

    limit: Limit = DEFAULT_PAGE_SIZE
    """Items per page, 1 to :data:`MAX_PAGE_SIZE`."""
    cursor: Cursor | None = None
    """``next_cursor`` of the previous page; none for the first page."""


class TrendingQuery(PageQuery):
    """Query of a trending list."""

    # Every distinct window is a computation of its own and a shared snapshot kept for
    # it; whole hours bound them to 168 per kind, whatever clients send.
    window_hours: Annotated[
        float,
        Field(ge=1.0, le=168.0, multiple_of=1.0, strict=True),
        BeforeValidator(_query_decimal),
    ] = 24.0
    """Length of the window ending now, in whole hours (1 to 168)."""


class SearchQuery(PageQuery):
    """Query of a video search."""

    q: str = Field(min_length=1, max_length=MAX_QUERY_LENGTH)
    """Search text."""


class StreamQuery(_Strict):
    """Query of a stream manifest."""

    format: Literal["hls", "dash"] = "hls"
    """``hls`` (an HLS master playlist) or ``dash`` (a DASH MPD)."""


class NoQuery(_Strict):
    """An endpoint that takes no query parameter."""


class _EventBody(_Strict):
    occurred_at: AwareDatetime | None = None
    """When the event happened, RFC 3339 with an offset (default: now). It may lie a few
    minutes in the future (clock skew) and as far back as the idempotency window."""

    @field_validator("occurred_at")
    @classmethod
    def _to_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("is out of range once converted to UTC") from None


class LikeBody(_EventBody):
    """Body of a like or unlike (optional; an empty body means now)."""


class WatchBody(_EventBody):
    """Body of a watch: watched seconds, completion or both."""

    watched_seconds: float | None = Field(default=None, ge=0.0, le=86_400.0, allow_inf_nan=False)
    """Seconds of the video the user watched."""
    completion: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)
    """Share of the video watched, 0 to 1."""

    @model_validator(mode="after")
    def _something_watched(self) -> WatchBody:
        if self.watched_seconds is None and self.completion is None:
            raise ValueError("give watched_seconds, completion or both")
        return self


class ShareBody(_EventBody):
    """Body of a share."""

    channel: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    """Where the video was shared (``link``, ``whatsapp``...)."""


class ProgressReport(_Strict):
    """A processing report from the transcoding pipeline: exactly one of a state move
    (``state``, with ``renditions`` to start a video, ``error`` to fail it), a
    rendition's progress (``rendition`` and ``percent``, ``error`` if it failed), or the
    progress within the current state (``percent`` alone)."""

    state: Literal["queued", "transcoding", "packaging", "ready", "failed"] | None = None
    """Move the video to this state; the processing state machine decides which moves
    are allowed (409 otherwise). ``queued`` starts processing, or retries a failed one."""
    renditions: tuple[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")], ...] | None = None
    """With ``state: queued`` on a video never processed: the renditions it will get."""
    rendition: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    """While transcoding: the rendition ``percent`` is about."""
    percent: float | None = Field(default=None, ge=0.0, le=100.0, allow_inf_nan=False)
    """Percent done, 0 to 100: of ``rendition``, or of the current state."""
    error: str | None = Field(default=None, min_length=1, max_length=500)
    """Why processing (with ``state: failed``) or ``rendition`` failed."""

    @model_validator(mode="after")
    def _one_report(self) -> ProgressReport:
        if self.state is not None:
            if self.rendition is not None or self.percent is not None:
                raise ValueError("a state move carries no rendition or percent")
            if self.renditions is not None and self.state != "queued":
                raise ValueError("renditions are given with state queued only")
            if (self.error is not None) != (self.state == "failed"):
                raise ValueError("error is given with state failed, and only then")
        elif self.rendition is not None:
            if self.percent is None:
                raise ValueError("a rendition report needs its percent")
        elif self.percent is None or self.error is not None or self.renditions is not None:
            raise ValueError("give a state, a rendition and its percent, or a percent")
        return self


class CreatorRef(_Out):
    """The creator of a video."""

    creator_id: int
    """Creator id."""
    handle: str
    """Creator handle (``@handle``)."""
    name: str
    """Display name."""


class Counts(_Out):
    """Engagement counts of a video."""

    views: int
    """Watches counted."""
    likes: int
    """Current likes."""
    shares: int
    """Shares."""
    comments: int
    """Comments."""


class Card(_Out):
    """What a client needs to render one video."""

    video_id: int
    """Video id."""
    creator: CreatorRef
    """Who published it."""
    title: str
    """Title."""
    duration_seconds: float
    """Length of the video."""
    published_at: datetime
    """Publication time (UTC)."""
    sound_id: int | None
    """Audio track, if any."""
    hashtags: list[str]
    """Hashtags, without ``#``."""
    thumbnail_url: str
    """Poster image."""
    stream_url: str
    """HLS manifest (``?format=dash`` for DASH)."""
    counts: Counts
    """Engagement counts."""


class FeedCard(Card):
    """A feed item: a card with its score and how each signal contributed."""

    score: float
    """Ranking score."""
    breakdown: dict[str, float]
    """Weighted contribution of each signal (freshness, completion...)."""


class ScoredCard(Card):
    """A search or similar-videos item."""

    score: float
    """Relevance score."""


class VideoDetail(Card):
    """One video's details."""

    description: str
    """Description."""
    state: str
    """Processing state (``ready`` once it can be played)."""


class FeedPageResponse(_Out):
    """A page of the caller's feed."""

    items: list[FeedCard]
    """Ranked videos."""
    next_cursor: str | None
    """Cursor of the next page; ``null`` on the last one."""
    variant: str | None
    """Experiment variant that ranked the page."""
    degraded: list[str]
    """Dependencies that failed and were worked around."""


class CardPage(_Out):
    """A page of search results or similar videos."""

    items: list[ScoredCard]
    """Videos, best first."""
    next_cursor: str | None
    """Cursor of the next page; ``null`` on the last one."""


class TrendingEntry(_Out):
    """A trending sound or hashtag."""

    key: int | str
    """Sound id or hashtag."""
    score: float
    """Trending score."""
    count: int
    """Engagements counted in the window."""
    delta: float
    """Score change from the previous window."""


class TrendingPage(_Out):
    """A page of a trending list."""

    kind: Literal["sound", "hashtag"]
    """What is trending."""
    window_hours: float
    """Window length."""
    computed_at: datetime
    """End of the window."""
    stale_as_of: datetime | None
    """Set when a store failed and an earlier result is served."""
    items: list[TrendingEntry]
    """Items by score."""
    next_cursor: str | None
    """Cursor of the next page; ``null`` on the last one."""


class CreatorCard(_Out):
    """A recommended creator."""

    creator_id: int
    """Creator id."""
    handle: str
    """Handle."""
    name: str
    """Display name."""
    score: float
    """Blended score."""


class CreatorPage(_Out):
    """A page of creator recommendations."""

    items: list[CreatorCard]
    """Creators, best first."""
    next_cursor: str | None
    """Cursor of the next page; ``null`` on the last one."""


class LikeResponse(_Out):
    """State of the caller's like after a like or unlike."""

    video_id: int
    """The video."""
    liked: bool
    """Whether the caller now likes it."""
    likes: int
    """Likes of the video."""


class EventResponse(_Out):
    """Outcome of a watch or share."""

    event_id: str
    """Id the event was stored under."""
    video_id: int
    """The video."""
    applied: bool
    """``false`` when the event had been recorded before (a retry)."""


class Health(_Out):
    """Health of the service."""

    status: Literal["ok", "degraded", "starting"]
    """Overall state."""
    checks: dict[str, str]
    """State of each dependency or start-up step."""


class Problem(_Out):
    """An RFC 9457 problem document."""

    type: str
    """URI naming the kind of problem."""
    title: str
    """Short summary of the kind."""
    status: int
    """HTTP status."""
    detail: str
    """What went wrong with this request."""
    field: str | None = None
    """Offending field (query parameter, body member or header), when there is one."""
    errors: list[dict[str, str]] | None = None
    """Every validation error, each with ``field`` and ``message``."""


Auth = Literal["required", "optional", "none", "service"]


@dataclasses.dataclass(frozen=True, slots=True)
class Operation:
    """One endpoint: its path, models and documented answers."""

    operation_id: str
    """Name of the handler and of the OpenAPI operation."""
    method: str
    """HTTP method."""
    path: str
    """Path with ``{id}`` for the video id, as in OpenAPI."""
    summary: str
    """One line for the OpenAPI document."""
    query: type[BaseModel] = NoQuery
    """Model of the query string."""
    body: type[BaseModel] | None = None
    """Model of the JSON body; ``None`` for no body."""
    response: type[BaseModel] | None = None
    """Model of a success; ``None`` for a non-JSON answer."""
    status: int = 200
    """Status of a success."""
    auth: Auth = "none"
    """Whether a user's bearer token is required, optional or ignored, or the service
    token (``service``) is required."""
    body_required: bool = True
    """Whether the body may be omitted."""
    idempotency_key: bool = False
    """Whether an ``Idempotency-Key`` header is read."""
    media_types: tuple[str, ...] = ("application/json",)
    """Media types of a success."""
    errors: tuple[int, ...] = (400,)
    """Error statuses documented besides the generic ones."""
    tag: str = "reels"
    """OpenAPI tag."""


_ID_ERRORS = (400, 404)
_EVENT_ERRORS = (400, 401, 404, 409, 413, 415, 429)

OPERATIONS: tuple[Operation, ...] = (
    Operation("feed", "GET", "/api/v1/reels", "The caller's personalized feed.",
              query=PageQuery, response=FeedPageResponse, auth="required",
              errors=(400, 401, 503)),
    Operation("trending_sounds", "GET", "/api/v1/reels/trending-sounds", "Trending sounds.",
              query=TrendingQuery, response=TrendingPage),
    Operation("trending_hashtags", "GET", "/api/v1/reels/trending-hashtags",
              "Trending hashtags.", query=TrendingQuery, response=TrendingPage),
    Operation("search", "GET", "/api/v1/reels/search", "Search videos.",
              query=SearchQuery, response=CardPage),
    Operation("stream", "GET", "/api/v1/reels/stream/{id}",
              "HLS master playlist (default) or DASH MPD (?format=dash).",
              query=StreamQuery, media_types=(HLS_CONTENT_TYPE, DASH_CONTENT_TYPE),
              errors=(*_ID_ERRORS, 409)),
    Operation("progress", "GET", "/api/v1/reels/progress/{id}", "Processing progress.",
              response=ProcessingProgress, errors=_ID_ERRORS),
    Operation("report_progress", "PUT", "/internal/v1/reels/progress/{id}",
              "Report processing progress (the transcoding pipeline; service token).",
              body=ProgressReport, response=ProcessingProgress, auth="service",
              errors=(400, 401, 403, 404, 409), tag="internal"),
    Operation("video", "GET", "/api/v1/reels/{id}", "One video's details.",
              response=VideoDetail, errors=_ID_ERRORS),
    Operation("like", "POST", "/api/v1/reels/{id}/like", "Like a video (idempotent).",
              body=LikeBody, body_required=False, response=LikeResponse, auth="required",
              errors=_EVENT_ERRORS),
    Operation("unlike", "DELETE", "/api/v1/reels/{id}/like", "Undo a like (idempotent).",
              body=LikeBody, body_required=False, response=LikeResponse, auth="required",
              errors=_EVENT_ERRORS),
    Operation("watch", "POST", "/api/v1/reels/{id}/watch", "Record a watch.",
              body=WatchBody, response=EventResponse, auth="required", idempotency_key=True,
              status=201, errors=(*_EVENT_ERRORS, 422)),
    Operation("share", "POST", "/api/v1/reels/{id}/share", "Record a share.",
              body=ShareBody, response=EventResponse, auth="required", idempotency_key=True,
              status=201, errors=(*_EVENT_ERRORS, 422)),
    Operation("similar", "GET", "/api/v1/reels/{id}/similar",
              "Similar videos (personalised with a token).", query=PageQuery,
              response=CardPage, auth="optional", errors=(*_ID_ERRORS, 401)),
    Operation("creators", "GET", "/api/v1/discover/creators",
              "Creators the caller may like to follow.", query=PageQuery,
              response=CreatorPage, auth="required", errors=(400, 401), tag="discover"),
    Operation("live", "GET", "/healthz/live", "The process answers.", response=Health,
              tag="health"),
    Operation("ready", "GET", "/healthz/ready", "Ready to serve traffic.", response=Health,
              errors=(503,), tag="health"),
    Operation("startup", "GET", "/healthz/startup", "Start-up has finished.",
              response=Health, errors=(503,), tag="health"),
)  # fmt: skip
"""Every endpoint of the service (``/metrics`` and ``/openapi.json`` aside)."""

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    503: "Service Unavailable",
}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of :data:`OPERATIONS`, schemas from their models."""
    models: list[type[BaseModel]] = [Problem]
    for op in OPERATIONS:
        models += [m for m in (op.query, op.body, op.response) if m is not None]
    unique = list(dict.fromkeys(models))
    keyed, schema = models_json_schema(
        [(model, mode) for model in unique for mode in ("validation", "serialization")],
        ref_template="#/components/schemas/{model}",
    )
    components: dict[str, Any] = schema.get("$defs", {})

    def ref(model: type[BaseModel], mode: Literal["validation", "serialization"]) -> Any:
        return keyed[(model, mode)]

    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        parameters: list[dict[str, Any]] = []
        if "{id}" in op.path:
            parameters.append(
                {
                    "name": "id",
                    "in": "path",
                    "required": True,
                    "description": "Video id.",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
                }
            )
        query_schema = components[ref(op.query, "validation")["$ref"].rsplit("/", 1)[1]]
        required = set(query_schema.get("required", ()))
        for name, prop in query_schema.get("properties", {}).items():
            # An optional parameter is simply left out: ``null`` cannot be sent.
            branches = [b for b in prop.get("anyOf", ()) if b.get("type") != "null"]
            if len(branches) == 1:
                prop = {**{k: v for k, v in prop.items() if k != "anyOf"}, **branches[0]}
                prop.pop("default", None)
            parameters.append(
                {
                    "name": name,
                    "in": "query",
                    "required": name in required,
                    "description": prop.get("description", ""),
                    "schema": {k: v for k, v in prop.items() if k != "description"},
                }
            )
        if op.idempotency_key:
            parameters.append(
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": "Retries with the same key get the same answer and "
                    "count once; the key with another payload is 422.",
                    "schema": {"type": "string", "pattern": r"^[\x21-\x7e]{1,255}$"},
                }
            )
        if op.response is not None:
            success = {"application/json": {"schema": ref(op.response, "serialization")}}
        else:
            success = {media: {"schema": {"type": "string"}} for media in op.media_types}
        responses: dict[str, Any] = {
            str(op.status): {"description": op.summary, "content": success}
        }
        problem = {PROBLEM_CONTENT_TYPE: {"schema": ref(Problem, "serialization")}}
        for status in sorted({*op.errors, 405, 413}):
            responses[str(status)] = {"description": _TITLES[status], "content": problem}
        operation: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": [op.tag],
            "parameters": parameters,
            "responses": responses,
        }
        if op.auth == "required":
            operation["security"] = [{"bearer": []}]
        elif op.auth == "optional":
            operation["security"] = [{"bearer": []}, {}]
        elif op.auth == "service":
            operation["security"] = [{"service": []}]
        if op.body is not None:
            operation["requestBody"] = {
                "required": op.body_required,
                "content": {"application/json": {"schema": ref(op.body, "validation")}},
            }
        paths.setdefault(op.path, {})[op.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "reelrank reels service",
            "version": "1.0.0",
            "description": "Feeds, events and discovery of short videos.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "service": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The service token (REELRANK_SERVICE_TOKEN), not a JWT.",
                },
            },
        },
    }
