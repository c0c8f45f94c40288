"""Engagement: events, per-video statistics, and the affinity every event store keeps."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Self

from pydantic import Field, model_validator

from ..exceptions import InvalidInputError
from ._base import DomainModel, Id, NonNegativeFloat, NonNegativeInt, Tag, UtcDatetime

__all__ = [
    "AFFINITY_CREDITS",
    "AFFINITY_PRIOR_CREDIT",
    "EngagementEvent",
    "EngagementKind",
    "VideoStats",
    "affinity",
    "affinity_credit",
]


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
