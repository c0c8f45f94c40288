"""Search documents and parsed queries, shared by every search backend."""

from __future__ import annotations

from pydantic import Field

from ..validation import MAX_ID
from ._base import DomainModel
from ._catalog import Creator, Video

__all__ = ["ParsedQuery", "QueryTerm", "SearchDocument"]


class SearchDocument(DomainModel):
    """The searchable text of one video."""

    video_id: int = Field(strict=True, ge=1, le=MAX_ID)
    """The video."""
    title: str = Field(default="", max_length=300)
    """The video's title."""
    description: str = Field(default="", max_length=5_000)
    """The video's description."""
    hashtags: tuple[str, ...] = ()
    """Hashtags without the leading ``#``."""
    sound_name: str = Field(default="", max_length=300)
    """Name of the sound the video uses, if any."""
    creator_name: str = Field(default="", max_length=300)
    """The creator's handle and display name."""

    @classmethod
    def from_video(
        cls, video: Video, *, creator: Creator | None = None, sound_name: str = ""
    ) -> SearchDocument:
        """The document of a catalog video, with its creator's handle and display name."""
        creator_name = f"{creator.handle} {creator.display_name}".strip() if creator else ""
        return cls(
            video_id=video.video_id,
            title=video.title,
            description=video.description,
            hashtags=video.hashtags,
            sound_name=sound_name,
            creator_name=creator_name,
        )


class QueryTerm(DomainModel):
    """One parsed query term."""

    text: str = Field(min_length=1)
    """Normalised term; starts with ``#`` for a hashtag term."""
    prefix: bool = False
    """Whether the term matches every indexed term that starts with it."""

    @property
    def hashtag(self) -> bool:
        """Whether the term only matches hashtags."""
        return self.text.startswith("#")


class ParsedQuery(DomainModel):
    """A query as terms; every term must match."""

    terms: tuple[QueryTerm, ...] = Field(min_length=1)
    """The terms, in query order, without duplicates."""
