"""Search: BM25 text relevance over an inverted index, blended with video quality.

A video is indexed as a :class:`SearchDocument` (title, description, hashtags, sound
name, creator name). Queries are parsed by :func:`parse_query` into terms; a term ending
in ``*`` (or the last term when searching as the user types) matches every indexed term
it is a prefix of, and a term starting with ``#`` matches hashtags only. Every query
term must match for a video to be returned.

Text relevance is BM25 over field-weighted term frequencies (see :class:`SearchConfig`);
:class:`VideoSearch` then blends it with the video's quality (:func:`video_quality`).
:class:`~reelrank.SearchIndex` is the protocol a backend implements (the in-memory
:class:`InMemorySearchIndex`, or a database full-text index).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from ..exceptions import InvalidInputError
from ..models._base import DomainModel
from ..models._catalog import Creator, ProcessingState, Video
from ..models._search import SearchDocument
from ..scoring._config import RankingConfig
from ..stores._protocols import EventStore, SearchIndex
from ..stores._text import SearchConfig, parse_query
from ..validation import MAX_ID, check_id, check_limit
from ._quality import _qualities

__all__ = ["SearchHit", "VideoSearch"]

# The counts of a match the event store has nothing for: views, completion sum, likes,
# shares, comments.
_NO_COUNTS = (0, 0.0, 0, 0, 0)


class SearchHit(DomainModel):
    """One search result."""

    video_id: int = Field(strict=True, ge=1, le=MAX_ID)
    """The matching video."""
    score: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)
    """Final score: ``text_weight * text + quality_weight * quality``."""
    text: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)
    """BM25 score divided by the best BM25 score of this search."""
    quality: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)
    """The video's quality (:func:`video_quality`)."""


class VideoSearch:
    """Searches videos: text relevance from a :class:`~reelrank.SearchIndex`, blended with quality.

    Keep the index current with :meth:`index_video` when a video is added, edited or
    changes state (only ``ready`` videos are searchable) and :meth:`remove_video` when it
    is deleted. Quality comes from ``stats`` (all videos get the prior quality without
    one).
    """

    def __init__(
        self,
        index: SearchIndex,
        *,
        stats: EventStore | None = None,
        config: SearchConfig | None = None,
        ranking: RankingConfig | None = None,
    ) -> None:
        self._index = index
        self._stats = stats
        self._config = config or SearchConfig()
        self._ranking = ranking or RankingConfig()

    @property
    def config(self) -> SearchConfig:
        """The search configuration in use."""
        return self._config

    def index_video(
        self, video: Video, *, creator: Creator | None = None, sound_name: str = ""
    ) -> bool:
        """Index a ready video, or drop a video that is not ready.

        Returns whether the video is searchable afterwards.
        """
        if not isinstance(video, Video):
            raise InvalidInputError("video", "must be a Video")
        if creator is not None and not isinstance(creator, Creator):
            raise InvalidInputError("creator", "must be None or a Creator")
        if video.state is not ProcessingState.READY:
            self._index.remove(video.video_id)
            return False
        self._index.index(SearchDocument.from_video(video, creator=creator, sound_name=sound_name))
        return True

    def remove_video(self, video_id: int) -> bool:
        """Drop a video from the index; ``True`` if it was there."""
        return self._index.remove(check_id("video_id", video_id))

    def search(self, text: str, *, limit: int = 20, as_you_type: bool = False) -> list[SearchHit]:
        """The best ``limit`` videos for the query, by blended score (ties: lower id).

        Raises :class:`~reelrank.QueryError` for an empty or overlong query and
        :class:`~reelrank.InvalidInputError` naming ``limit`` for a bad limit.
        """
        check_limit("limit", limit)
        if limit > self._config.max_limit:
            raise InvalidInputError("limit", f"must be <= {self._config.max_limit}, got {limit}")
        query = parse_query(text, config=self._config, as_you_type=as_you_type)
        if limit == 0:
            return []
        matches = self._index.search(query, limit=max(limit, self._config.candidate_pool))
        if not matches:
            return []
        stats = self._stats.get_stats([vid for vid, _ in matches]) if self._stats else {}
        video_ids = np.fromiter((vid for vid, _ in matches), np.int64, len(matches))
        text_scores = np.fromiter((score for _, score in matches), np.float64, len(matches))
        rows = (stats.get(video_id) for video_id, _ in matches)
        counts = np.array(
            [
                (row.views, row.completion_sum, row.likes, row.shares, row.comments)
                if row is not None
                else _NO_COUNTS
                for row in rows
            ],
            dtype=np.float64,
        ).reshape(len(matches), len(_NO_COUNTS))
        quality = _qualities(counts, self._ranking)
        best = float(text_scores.max())
        relevance = np.minimum(text_scores / best, 1.0) if best > 0 else np.zeros(len(matches))
        score = np.minimum(
            self._config.text_weight * relevance + self._config.quality_weight * quality, 1.0
        )
        # Best score first, ties by lower id (a stable sort on the ids, then on the score).
        by_id = np.argsort(video_ids, kind="stable")
        order = by_id[np.argsort(-score[by_id], kind="stable")][:limit]
        return [
            SearchHit(
                video_id=int(video_ids[row]),
                score=float(score[row]),
                text=float(relevance[row]),
                quality=float(quality[row]),
            )
            for row in order.tolist()
        ]
