"""The catalog's value types: videos, their renditions and processing state, and creators."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, NamedTuple, Self

from pydantic import AfterValidator, Field, model_validator

from ..exceptions import InvalidTransitionError
from ._base import DomainModel, Id, UtcDatetime

__all__ = ["Creator", "ProcessingState", "Rendition", "Video", "VideoLabels"]


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


class VideoLabels(NamedTuple):
    """What trending counts a video under: its sound and hashtags, and when it was published.

    A few fields of a :class:`Video`, read by :meth:`Catalog.get_labels
    <reelrank.Catalog.get_labels>` and :meth:`~reelrank.Catalog.recent_labels` without
    the rest of the row (title, description, renditions). Built from a stored video, so
    not validated again.
    """

    video_id: int
    """The video."""
    published_at: datetime
    """When it was published (UTC)."""
    sound_id: int | None
    """Its sound, if any."""
    hashtags: tuple[str, ...]
    """Its hashtags, in the video's order."""

    @classmethod
    def of(cls, video: Video) -> VideoLabels:
        """The labels of ``video``."""
        return cls(video.video_id, video.published_at, video.sound_id, video.hashtags)
