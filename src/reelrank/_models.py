"""Domain models: every value that crosses a store or service boundary.

All models are immutable pydantic models that reject unknown fields. A validation
failure raises :class:`~reelrank.InvalidInputError` whose ``field`` names the bad field
(dotted for nested values, for example ``renditions.0.height``).

Identifiers (video, creator and user ids) are positive 64-bit integers,
``1 <= id <= 2**63 - 1``: the scoring kernels hold video ids in ``int64`` arrays, so any
id a store hands out fits them without a lookup table. Booleans, floats and numeric
strings are refused as ids (JSON integers are fine).

Timestamps must carry a timezone; they are converted to UTC on the way in, so every
stored or returned datetime is a timezone-aware UTC datetime.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    Field,
    ValidationError,
    model_validator,
)

from ._config import WEIGHT_FIELDS, TypedErrorModel
from .exceptions import InvalidInputError, InvalidTransitionError, ReelrankError

__all__ = [
    "AFFINITY_CREDITS",
    "AFFINITY_PRIOR_CREDIT",
    "MAX_ID",
    "DegradedDependency",
    "DomainModel",
    "EngagementEvent",
    "EngagementKind",
    "Creator",
    "FeedItem",
    "FeedPage",
    "FeedSnapshot",
    "ModelInfo",
    "ModelStatus",
    "ProcessingState",
    "Rendition",
    "Video",
    "VideoStats",
    "affinity",
    "affinity_credit",
    "input_error_from",
]

MAX_ID = 2**63 - 1
"""Largest valid id: ids are positive and fit a signed 64-bit integer."""


def input_error_from(exc: ValidationError) -> InvalidInputError:
    """Turn pydantic's first validation error into an :class:`InvalidInputError`."""
    first = exc.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, InvalidInputError):
        # Raised by a nested model or a model validator: its field is relative to
        # the model that raised it, so prefix where that model sits.
        if not location:
            return cause
        return InvalidInputError(f"{location}.{cause.field}", cause.reason)
    return InvalidInputError(location or "<root>", f"{first['msg']} (got {first.get('input')!r})")


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


Id = Annotated[int, Field(strict=True, ge=1, le=MAX_ID)]
"""A positive int64 identifier."""

UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timezone-aware datetime, normalised to UTC."""

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
NonNegativeInt = Annotated[int, Field(strict=True, ge=0)]

Tag = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")]
"""A short identifier-like label: variants, model names and versions, config tags."""


class DomainModel(TypedErrorModel):
    """Base for every reelrank domain model.

    Unknown fields are rejected, instances are immutable, and every validation
    failure surfaces as :class:`~reelrank.InvalidInputError` naming the field, whether
    the model is built by calling the class, :meth:`model_validate` or
    :meth:`model_validate_json`.
    """

    @classmethod
    def _typed_error(cls, exc: ValidationError) -> ReelrankError:
        """:class:`~reelrank.InvalidInputError` naming the first bad field."""
        return input_error_from(exc)


# -- catalog ----------------------------------------------------------------------


class ProcessingState(StrEnum):
    """Where a video is in its upload pipeline.

    The allowed moves are ``queued -> transcoding -> packaging -> ready``; any state but
    ``ready`` may move to ``failed``, and ``failed`` may move back to ``queued`` to retry.
    ``ready`` is final. Only ``ready`` videos are served in feeds.
    """

    QUEUED = "queued"
    TRANSCODING = "transcoding"
    PACKAGING = "packaging"
    READY = "ready"
    FAILED = "failed"

    def can_move_to(self, target: ProcessingState) -> bool:
        """Whether the state machine allows moving from this state to ``target``."""
        return target in _TRANSITIONS[self]

    def check_move_to(self, target: ProcessingState) -> None:
        """Raise :class:`~reelrank.InvalidTransitionError` unless the move is allowed."""
        if not self.can_move_to(target):
            raise InvalidTransitionError(self.value, target.value)


_TRANSITIONS: dict[ProcessingState, frozenset[ProcessingState]] = {
    ProcessingState.QUEUED: frozenset({ProcessingState.TRANSCODING, ProcessingState.FAILED}),
    ProcessingState.TRANSCODING: frozenset({ProcessingState.PACKAGING, ProcessingState.FAILED}),
    ProcessingState.PACKAGING: frozenset({ProcessingState.READY, ProcessingState.FAILED}),
    ProcessingState.READY: frozenset(),
    ProcessingState.FAILED: frozenset({ProcessingState.QUEUED}),
}


class Rendition(DomainModel):
    """One encoded variant of a video that a player can stream."""

    width: int = Field(strict=True, ge=1, le=16_384)
    """Frame width in pixels."""
    height: int = Field(strict=True, ge=1, le=16_384)
    """Frame height in pixels."""
    bitrate_kbps: int = Field(strict=True, ge=1)
    """Average bitrate in kilobits per second."""
    codec: str = Field(min_length=1, max_length=64)
    """Codec string as players expect it, for example ``avc1.64001f``."""
    uri: str = Field(min_length=1, max_length=2048)
    """Where the rendition (or its playlist) is served from."""


class Creator(DomainModel):
    """A person or account that publishes videos."""

    creator_id: Id
    """The creator's id (positive int64)."""
    handle: str = Field(pattern=r"^[A-Za-z0-9_.]{1,64}$")
    """Unique public handle, without a leading ``@``."""
    display_name: str = Field(default="", max_length=200)
    """Name shown next to the creator's videos."""


def _normalise_hashtag(tag: str) -> str:
    return tag.removeprefix("#").lower()


Hashtag = Annotated[
    str,
    AfterValidator(_normalise_hashtag),
    Field(pattern=r"^#?[A-Za-z0-9_]{1,100}$"),
]


class Video(DomainModel):
    """A short video in the catalog."""

    video_id: Id
    """The video's id (positive int64)."""
    creator_id: Id
    """Id of the creator who published it."""
    duration_seconds: float = Field(gt=0.0, le=86_400.0, allow_inf_nan=False)
    """Length in seconds; positive and finite."""
    published_at: UtcDatetime
    """When the video was published (UTC)."""
    title: str = Field(default="", max_length=300)
    """Title shown in the player."""
    description: str = Field(default="", max_length=5_000)
    """Free-text description."""
    hashtags: tuple[Hashtag, ...] = ()
    """Hashtags, stored lower-case without the leading ``#`` and without duplicates."""
    sound_id: Id | None = None
    """Id of the sound (music track) used, if any."""
    renditions: tuple[Rendition, ...] = ()
    """Encoded variants ready for streaming; empty until packaging is done."""
    state: ProcessingState = ProcessingState.READY
    """Processing state; only ``ready`` videos are served in feeds."""

    @model_validator(mode="after")
    def _dedupe_hashtags(self) -> Self:
        unique = tuple(dict.fromkeys(self.hashtags))
        if unique != self.hashtags:
            object.__setattr__(self, "hashtags", unique)
        return self


# -- engagement -------------------------------------------------------------------


class EngagementKind(StrEnum):
    """What a user did with a video."""

    WATCH = "watch"
    LIKE = "like"
    UNLIKE = "unlike"
    SHARE = "share"
    COMMENT = "comment"


class EngagementEvent(DomainModel):
    """One engagement of a user with a video.

    ``event_id`` makes delivery idempotent: stores count an event id once, however
    often it arrives. A ``watch`` carries ``watched_seconds``, ``completion`` or both;
    a ``share`` carries its ``channel``; other kinds carry neither.
    """

    event_id: str = Field(pattern=r"^[A-Za-z0-9_.:\-]{1,128}$")
    """Client-chosen unique id of this event (a UUID, for example); the idempotency key."""
    kind: EngagementKind
    """What happened."""
    user_id: Id
    """The user who engaged."""
    video_id: Id
    """The video engaged with."""
    occurred_at: UtcDatetime
    """When it happened on the client (UTC)."""
    watched_seconds: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    """Watch events: seconds watched (may exceed the duration when the video looped)."""
    completion: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)
    """Watch events: share of the video watched, in ``[0, 1]``."""
    channel: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    """Share events: where the video was shared (``"whatsapp"``, ``"link"``...)."""
    variant: Tag | None = None
    """Experiment variant the user was served, for attributing the engagement."""

    @model_validator(mode="after")
    def _check_kind_fields(self) -> Self:
        is_watch = self.kind is EngagementKind.WATCH
        if is_watch and self.watched_seconds is None and self.completion is None:
            raise InvalidInputError(
                "watched_seconds", "a watch needs watched_seconds or completion"
            )
        if not is_watch:
            for name in ("watched_seconds", "completion"):
                if getattr(self, name) is not None:
                    raise InvalidInputError(name, f"only watch events carry it, not {self.kind}")
        is_share = self.kind is EngagementKind.SHARE
        if is_share and self.channel is None:
            raise InvalidInputError("channel", "a share needs its channel")
        if not is_share and self.channel is not None:
            raise InvalidInputError("channel", f"only share events carry it, not {self.kind}")
        return self


class VideoStats(DomainModel):
    """Aggregated engagement of one video; what the scoring signals read."""

    video_id: Id
    """The video these counts belong to."""
    views: NonNegativeInt = 0
    """Number of counted watch events."""
    completion_sum: NonNegativeFloat = 0.0
    """Sum of the completions of those watches; ``completion_sum <= views``."""
    likes: NonNegativeInt = 0
    """Users currently liking the video (likes minus the unlikes that reversed them)."""
    shares: NonNegativeInt = 0
    """Number of counted share events."""
    comments: NonNegativeInt = 0
    """Number of counted comment events."""

    @model_validator(mode="after")
    def _check_completion_sum(self) -> Self:
        # A little slack for float rounding accumulated over many additions.
        if self.completion_sum > self.views * (1.0 + 1e-9) + 1e-9:
            raise InvalidInputError("completion_sum", "cannot exceed views")
        return self

    @property
    def mean_completion(self) -> float | None:
        """``completion_sum / views``, or ``None`` before the first view."""
        return self.completion_sum / self.views if self.views else None


# -- feeds --------------------------------------------------------------------------


class FeedItem(DomainModel):
    """One ranked video of a feed page, with its explanation."""

    video_id: Id
    """The ranked video."""
    score: FiniteFloat
    """Final score; items are ordered by it, highest first."""
    breakdown: Mapping[str, FiniteFloat] = Field(default_factory=dict)
    """Contribution of each signal to ``score`` (``weight * signal``), by signal name."""


class DegradedDependency(DomainModel):
    """A dependency that failed while serving a page, and what was used instead."""

    dependency: str = Field(min_length=1, max_length=64)
    """The failed dependency (``"stats"``, ``"seen"``, ``"cache"``...)."""
    fallback: str = Field(min_length=1, max_length=200)
    """What the page used instead (``"neutral affinity"``, ``"cached snapshot"``...)."""


class FeedPage(DomainModel):
    """One page of a user's feed."""

    items: tuple[FeedItem, ...]
    """The ranked items of this page, best first."""
    next_cursor: str | None = None
    """Opaque cursor for the next page, or ``None`` on the last page."""
    from_cache: bool = False
    """Whether the page was cut from a cached snapshot rather than ranked fresh."""
    degraded: tuple[DegradedDependency, ...] = ()
    """Dependencies that failed and the fallback used for each; empty when all was well."""
    variant: Tag | None = None
    """Experiment variant that produced the page, if any."""


class FeedSnapshot(DomainModel):
    """A ranked feed kept in the feed cache, keyed by ``(user_id, variant)``.

    Parallel sequences keep it compact: ``video_ids[i]`` scored ``scores[i]`` and
    ``contributions[i][j]`` is the contribution of signal ``signals[j]`` to that score.
    Video ids are unique.
    """

    user_id: Id
    """The user this feed was ranked for."""
    variant: Tag | None = None
    """Experiment variant, or ``None`` for the default feed."""
    video_ids: tuple[Id, ...]
    """Ranked video ids, best first."""
    scores: tuple[FiniteFloat, ...]
    """Score of each video, same order as ``video_ids``."""
    signals: tuple[str, ...] = WEIGHT_FIELDS
    """Names of the signals in each row of ``contributions``."""
    contributions: tuple[tuple[FiniteFloat, ...], ...]
    """Per-video rows of per-signal contributions, same order as ``video_ids``."""
    created_at: UtcDatetime
    """When the feed was ranked (UTC)."""
    config_tag: Tag = "default"
    """Tag of the ranking config that produced the feed, to drop snapshots of an old one."""

    @model_validator(mode="after")
    def _check_shapes(self) -> Self:
        count = len(self.video_ids)
        if len(self.scores) != count:
            raise InvalidInputError("scores", f"expected {count} scores, got {len(self.scores)}")
        if len(self.contributions) != count:
            raise InvalidInputError(
                "contributions", f"expected {count} rows, got {len(self.contributions)}"
            )
        width = len(self.signals)
        for index, row in enumerate(self.contributions):
            if len(row) != width:
                raise InvalidInputError(
                    f"contributions.{index}", f"expected {width} values, got {len(row)}"
                )
        if len(set(self.video_ids)) != count:
            raise InvalidInputError("video_ids", "video ids must be unique")
        if len(set(self.signals)) != width:
            raise InvalidInputError("signals", "signal names must be unique")
        return self

    @property
    def key(self) -> tuple[int, str | None]:
        """The cache key, ``(user_id, variant)``."""
        return (self.user_id, self.variant)

    def items(self) -> tuple[FeedItem, ...]:
        """The snapshot as feed items, best first."""
        return tuple(
            FeedItem(
                video_id=video_id,
                score=score,
                breakdown=dict(zip(self.signals, row, strict=True)),
            )
            for video_id, score, row in zip(
                self.video_ids, self.scores, self.contributions, strict=True
            )
        )


# -- models ------------------------------------------------------------------------


class ModelStatus(StrEnum):
    """Lifecycle of a registered deep-learning model version."""

    STAGING = "staging"
    ACTIVE = "active"
    RETIRED = "retired"


class ModelInfo(DomainModel):
    """One version of a deep-learning model that scores videos."""

    name: Tag
    """Model name, for example ``"watch-time"``."""
    version: Tag
    """Version label, unique per name, for example ``"2026-11-29"`` or ``"v3"``."""
    status: ModelStatus = ModelStatus.STAGING
    """Lifecycle status; at most one version per name is ``active``."""
    metrics: Mapping[str, FiniteFloat] = Field(default_factory=dict)
    """Offline evaluation metrics by name (``"auc"``, ``"ndcg@10"``...)."""
    created_at: UtcDatetime
    """When the version was registered (UTC)."""


def finite_or_raise(field: str, value: object) -> float:
    """Return ``value`` if it is a finite number, else raise ``InvalidInputError``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInputError(field, f"must be a finite number, got {value!r}")
    return float(value)


def check_id(field: str, value: object) -> int:
    """Return ``value`` if it is a valid id (positive int64), else raise ``InvalidInputError``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise InvalidInputError(field, f"must be an int in [1, 2**63 - 1], got {value!r}")
    return value


def check_ids(field: str, values: object) -> list[int]:
    """Return ``values`` as a list if it is a sequence of valid ids, else raise.

    A string is refused (it is a sequence, but not of ids); the error names ``field``.
    """
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise InvalidInputError(field, f"must be a sequence of ids, got {values!r}")
    ids = list(values)
    # Fast path for the common case of a clean batch; check_id names the culprit otherwise.
    if all(type(value) is int for value in ids) and (
        not ids or 1 <= min(ids) <= max(ids) <= MAX_ID
    ):
        return ids
    return [check_id(field, value) for value in ids]


# -- affinity ----------------------------------------------------------------------

AFFINITY_CREDITS: Mapping[EngagementKind, float] = {
    EngagementKind.LIKE: 1.0,
    EngagementKind.UNLIKE: -1.0,
    EngagementKind.SHARE: 2.0,
    EngagementKind.COMMENT: 1.0,
}
"""Affinity credit of each non-watch event kind; a watch earns its completion."""

AFFINITY_PRIOR_CREDIT = 1.0
"""Pseudo-credit added to a user's total, so a single engagement does not mean affinity 1."""


def affinity_credit(kind: EngagementKind, completion: float | None = None) -> float:
    """Credit one applied event adds to its (user, creator) pair.

    A watch earns its ``completion`` (in ``[0, 1]``, so long videos do not dominate);
    other kinds earn :data:`AFFINITY_CREDITS`. An ``unlike`` takes back what its like
    earned; stores only apply like and unlike credit when the like state changes.
    """
    if kind is EngagementKind.WATCH:
        if completion is None:
            raise InvalidInputError("completion", "a watch needs completion to earn credit")
        return completion
    return AFFINITY_CREDITS[kind]


def affinity(creator_credit: float, total_credit: float) -> float:
    r"""Affinity in ``[0, 1)`` of a user with one creator.

    .. math:: a(u, c) = \frac{C(u, c)}{\sum_{c'} C(u, c') + C_0}

    where :math:`C(u, c)` is the user's accumulated credit with creator :math:`c` and
    :math:`C_0` is :data:`AFFINITY_PRIOR_CREDIT`: the smoothed share of the user's
    engagement that went to this creator. Negative credits (float rounding after an
    unlike) count as zero.
    """
    own = max(creator_credit, 0.0)
    total = max(total_credit, own)
    return own / (total + AFFINITY_PRIOR_CREDIT)


# -- argument checks shared by store implementations ----------------------------------

_TAG_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


def check_limit(value: object, field: str = "limit") -> int:
    """Return ``value`` if it is an int ``>= 0``, else raise ``InvalidInputError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(field, f"must be an int >= 0, got {value!r}")
    return value


def check_aware(field: str, value: object) -> datetime:
    """Return ``value`` in UTC if it is a timezone-aware datetime, else raise."""
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise InvalidInputError(field, f"must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


def check_variant(value: object, field: str = "variant") -> str | None:
    """Return ``value`` if it is ``None`` or a valid variant tag, else raise."""
    if value is None:
        return None
    if not isinstance(value, str) or not _TAG_PATTERN.fullmatch(value):
        raise InvalidInputError(field, f"must be None or a short tag, got {value!r}")
    return value


def check_tag(field: str, value: object) -> str:
    """Return ``value`` if it is a valid tag (model name, version...), else raise."""
    if not isinstance(value, str) or not _TAG_PATTERN.fullmatch(value):
        raise InvalidInputError(field, f"must be a short tag, got {value!r}")
    return value


def check_ttl(value: object, field: str = "ttl_seconds") -> float:
    """Return ``value`` as a float if it is finite and positive, else raise."""
    seconds = finite_or_raise(field, value)
    if seconds <= 0.0:
        raise InvalidInputError(field, f"must be > 0, got {value!r}")
    return seconds


def check_feed_key(key: object, field: str = "keys") -> tuple[int, str | None]:
    """Return ``key`` if it is a feed cache key ``(user_id, variant)``, else raise."""
    if not isinstance(key, tuple) or len(key) != 2:
        raise InvalidInputError(field, f"each key must be (user_id, variant), got {key!r}")
    return (check_id(field, key[0]), check_variant(key[1], field))


def utc_now() -> datetime:
    """The current time as a timezone-aware UTC datetime (the default clock)."""
    return datetime.now(UTC)
