"""Small builders of valid domain objects, for tests and examples."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import count
from typing import Any

from ..models._base import WEIGHT_FIELDS
from ..models._catalog import Creator, Video
from ..models._engagement import EngagementEvent, EngagementKind
from ..models._feed import FeedSnapshot
from ..models._registry import ModelInfo

__all__ = [
    "EPOCH",
    "make_creator",
    "make_event",
    "make_model",
    "make_snapshot",
    "make_video",
    "next_event_id",
]

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
"""Default timestamp of the builders: a fixed, timezone-aware instant."""

_event_numbers = count(1)


def next_event_id() -> str:
    """A fresh event id, unique within the process."""
    return f"evt-{next(_event_numbers)}"


def make_creator(creator_id: int = 1, **overrides: Any) -> Creator:
    """A valid creator; keyword arguments override any field."""
    fields: dict[str, Any] = {"creator_id": creator_id, "handle": f"creator{creator_id}"}
    fields.update(overrides)
    return Creator(**fields)


def make_video(video_id: int = 1, creator_id: int = 1, **overrides: Any) -> Video:
    """A valid ready 30-second video published at :data:`EPOCH`; override any field."""
    fields: dict[str, Any] = {
        "video_id": video_id,
        "creator_id": creator_id,
        "duration_seconds": 30.0,
        "published_at": EPOCH,
        "title": f"video {video_id}",
    }
    fields.update(overrides)
    return Video(**fields)


def make_event(
    kind: EngagementKind | str = EngagementKind.WATCH,
    *,
    user_id: int = 1,
    video_id: int = 1,
    **overrides: Any,
) -> EngagementEvent:
    """A valid event with a fresh ``event_id``.

    A watch defaults to ``completion=1.0`` and a share to ``channel="link"`` unless
    overridden.
    """
    kind = EngagementKind(kind)
    fields: dict[str, Any] = {
        "event_id": next_event_id(),
        "kind": kind,
        "user_id": user_id,
        "video_id": video_id,
        "occurred_at": EPOCH,
    }
    if kind is EngagementKind.WATCH and not {"completion", "watched_seconds"} & overrides.keys():
        fields["completion"] = 1.0
    if kind is EngagementKind.SHARE:
        fields["channel"] = "link"
    fields.update(overrides)
    return EngagementEvent(**fields)


def make_snapshot(
    user_id: int = 1,
    video_ids: Sequence[int] = (1, 2, 3),
    *,
    variant: str | None = None,
    **overrides: Any,
) -> FeedSnapshot:
    """A valid snapshot with decreasing scores and even per-signal contributions."""
    scores = [1.0 - index / (len(video_ids) + 1) for index in range(len(video_ids))]
    width = len(WEIGHT_FIELDS)
    fields: dict[str, Any] = {
        "user_id": user_id,
        "variant": variant,
        "video_ids": tuple(video_ids),
        "scores": tuple(scores),
        "contributions": tuple(tuple([score / width] * width) for score in scores),
        "created_at": EPOCH,
    }
    fields.update(overrides)
    return FeedSnapshot(**fields)


def make_model(name: str = "watch-time", version: str = "v1", **overrides: Any) -> ModelInfo:
    """A valid staging model version registered at :data:`EPOCH`."""
    fields: dict[str, Any] = {"name": name, "version": version, "created_at": EPOCH}
    fields.update(overrides)
    return ModelInfo(**fields)
