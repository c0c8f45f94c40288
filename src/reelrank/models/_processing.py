"""Processing progress of an upload: its state, percent and per-rendition status."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import Field, model_validator

from ..exceptions import InvalidInputError, NotFoundError
from ._base import DomainModel, Id, Tag, UtcDatetime
from ._catalog import ProcessingState

Percent = Annotated[float, Field(ge=0.0, le=100.0, allow_inf_nan=False)]

ErrorMessage = Annotated[str, Field(min_length=1, max_length=2_000)]

__all__ = ["ProcessingProgress", "RenditionProgress", "RenditionStatus"]


class RenditionStatus(StrEnum):
    """Where one rendition is in transcoding."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class RenditionProgress(DomainModel):
    """Transcoding progress of one rendition of a video."""

    name: Tag
    """Rendition name, for example ``"720p"``."""
    status: RenditionStatus = RenditionStatus.PENDING
    """``pending`` before the first report, ``running``, then ``done`` or ``failed``."""
    percent: Percent = 0.0
    """How much of the rendition is transcoded, in ``[0, 100]``; 100 when ``done``."""
    error: ErrorMessage | None = None
    """Why the rendition failed; set exactly when ``status`` is ``failed``."""

    @model_validator(mode="after")
    def _check_status(self) -> Self:
        if (self.status is RenditionStatus.FAILED) != (self.error is not None):
            raise InvalidInputError("error", "a rendition carries an error exactly when failed")
        if self.status is RenditionStatus.DONE and self.percent != 100.0:
            raise InvalidInputError("percent", "a done rendition is at 100 percent")
        return self


class ProcessingProgress(DomainModel):
    """Where a video is in the upload pipeline, as shown to its creator."""

    video_id: Id
    """The video being processed."""
    state: ProcessingState = ProcessingState.QUEUED
    """Current state of the pipeline."""
    percent: Percent = 0.0
    """Progress within the current state, in ``[0, 100]``; while transcoding with
    renditions, the mean of their percents; 100 when ``ready``; where it stopped when
    ``failed``."""
    renditions: tuple[RenditionProgress, ...] = ()
    """Progress of each rendition being transcoded; names are unique."""
    error: ErrorMessage | None = None
    """Why processing failed; set exactly when ``state`` is ``failed``."""
    updated_at: UtcDatetime
    """When this progress last changed (UTC)."""

    @model_validator(mode="after")
    def _check_consistency(self) -> Self:
        if (self.state is ProcessingState.FAILED) != (self.error is not None):
            raise InvalidInputError("error", "progress carries an error exactly when failed")
        names = [rendition.name for rendition in self.renditions]
        if len(set(names)) != len(names):
            raise InvalidInputError("renditions", "rendition names must be unique")
        if self.state is ProcessingState.READY and self.percent != 100.0:
            raise InvalidInputError("percent", "a ready video is at 100 percent")
        return self

    def rendition(self, name: str) -> RenditionProgress:
        """The progress of the rendition called ``name``."""
        for rendition in self.renditions:
            if rendition.name == name:
                return rendition
        raise NotFoundError("rendition", name)
