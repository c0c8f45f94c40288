"""Feeds: the items and pages the feed service returns and the snapshots it caches."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Self

from pydantic import Field, model_validator

from ..exceptions import InvalidInputError
from ._base import WEIGHT_FIELDS, DomainModel, FiniteFloat, Id, Tag, UtcDatetime

__all__ = [
    "DegradedDependency",
    "FeedItem",
    "FeedPage",
    "FeedSnapshot",
    "PageOutcome",
    "PageRequest",
]


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


@dataclass(frozen=True, slots=True)
class PageRequest:
    """One cursor page to cut from a cached snapshot, and where it is remembered.

    What :meth:`~reelrank.PageTakingSeenStore.take_page` is asked. The *record* of the page is a
    :class:`~reelrank.FeedSnapshot` kept in the feed cache under :attr:`record_key`, so
    that a retried cursor gets the same page again:

    * ``user_id`` and ``variant``: :attr:`record_key`;
    * ``video_ids``, ``scores`` and ``contributions``: those of the taken rows of
      :attr:`snapshot`, in row order; ``signals``: the snapshot's;
    * ``created_at``: :attr:`at`;
    * ``config_tag``: where the next page starts: :attr:`end_tag` if the page reaches
      the end of the snapshot and :attr:`end_tag` is set, else ``f"{position}.{pin}"``
      (``position`` as in :class:`~reelrank.PageOutcome`).
    """

    record_key: tuple[int, str | None]
    """The feed-cache key the page is remembered under (a reserved variant of the user)."""
    snapshot: FeedSnapshot
    """The snapshot the page is cut from."""
    start: int
    """The first row of :attr:`snapshot` the page may take."""
    limit: int
    """The most rows the page takes, ``>= 1``."""
    since: datetime
    """Start of the seen window: an id seen at or after it is skipped."""
    at: datetime
    """When the page is served: the taken ids are marked seen at this time, and the
    record is created at it."""
    ttl_seconds: float
    """How long the record lives in the feed cache."""
    pin: str
    """The snapshot's id, written into the record's ``config_tag``."""
    end_tag: str | None
    """The record's ``config_tag`` when the page reaches the end of the snapshot and that
    ends the feed; ``None`` when the feed goes on past the snapshot."""


@dataclass(frozen=True, slots=True)
class PageOutcome:
    """What :meth:`~reelrank.PageTakingSeenStore.take_page` did: recalled a record, or took rows."""

    recalled: FeedSnapshot | None
    """The live record already under the request's key; nothing was taken or written."""
    rows: tuple[int, ...] = ()
    """The rows of the snapshot taken for the page (and marked seen), in order."""
    position: int = 0
    """Where the next page starts: after the last taken row if the page is full, else
    the snapshot's length."""
