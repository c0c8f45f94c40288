"""Trending: kinds, trends, items and the snapshots a trending store keeps."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from ..exceptions import InvalidInputError
from ._base import DomainModel, UtcDatetime

MIN_WINDOW_HOURS = 1.0

MAX_WINDOW_HOURS = 168.0


def check_trending_kind(field: str, value: object) -> TrendingKind:
    """``value`` as a :class:`~reelrank.TrendingKind` (``"sound"`` or ``"hashtag"``),
    else raise :class:`~reelrank.InvalidInputError` naming ``field``."""
    if isinstance(value, str) and value in _KIND_VALUES:
        return TrendingKind(value)
    raise InvalidInputError(field, f"must be 'sound' or 'hashtag', got {value!r}")


__all__ = ["Trend", "TrendingItem", "TrendingKind", "TrendingSnapshot"]


class TrendingKind(StrEnum):
    """What is trending."""

    SOUND = "sound"
    HASHTAG = "hashtag"


_KIND_VALUES = frozenset(kind.value for kind in TrendingKind)


class Trend(StrEnum):
    """Direction of an item against the previous window."""

    NEW = "new"
    """No use at all in the previous window."""
    RISING = "rising"
    """The score grew by more than the steady tolerance."""
    FALLING = "falling"
    """The score shrank by more than the steady tolerance."""
    STEADY = "steady"
    """The score stayed within the steady tolerance of the previous one."""


class TrendingItem(DomainModel):
    """One trending sound or hashtag."""

    key: int | str
    """The sound id (sounds) or the lower-case hashtag without ``#`` (hashtags)."""
    score: float = Field(ge=0.0, allow_inf_nan=False)
    """Decayed, weighted usage in the window."""
    count: int = Field(strict=True, ge=0)
    """Uses in the window (posts plus events), undecayed and unweighted."""
    previous_score: float = Field(ge=0.0, allow_inf_nan=False)
    """The same score for the previous window."""
    delta: float = Field(allow_inf_nan=False)
    """``score - previous_score``."""
    ratio: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    """``score / previous_score``; ``None`` when the previous score is 0."""
    trend: Trend
    """Direction against the previous window."""


class TrendingSnapshot(DomainModel):
    """A ranked trending list, as computed at ``computed_at``."""

    kind: TrendingKind
    """Sounds or hashtags."""
    window_hours: float = Field(ge=MIN_WINDOW_HOURS, le=MAX_WINDOW_HOURS, allow_inf_nan=False)
    """Window length the scores cover."""
    computed_at: UtcDatetime
    """End of the window: the ``now`` of the computation."""
    items: tuple[TrendingItem, ...]
    """Items by score descending (ties: key ascending)."""
    stale_as_of: UtcDatetime | None = None
    """Set when a store failed and this stored snapshot was served instead of a fresh
    result: the time the snapshot was computed. ``None`` for a fresh result."""
