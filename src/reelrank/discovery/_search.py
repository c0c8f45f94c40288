"""Search: BM25 text relevance over an inverted index, blended with video quality.

A video is indexed as a :class:`SearchDocument` (title, description, hashtags, sound
name, creator name). Queries are parsed by :func:`parse_query` into terms; a term ending
in ``*`` (or the last term when searching as the user types) matches every indexed term
it is a prefix of, and a term starting with ``#`` matches hashtags only. Every query
term must match for a video to be returned.

Text relevance is BM25 over field-weighted term frequencies (see :class:`SearchConfig`);
:class:`VideoSearch` then blends it with the video's quality (:func:`video_quality`).
:class:`~reelrank.SearchIndex` is the protocol a backend implements (the in-memory
:class:`InMemorySearchIndex`, or a database full-text index). With
:attr:`~reelrank.SearchConfig.match_reuse_seconds` set, a query's matches are kept in
the process for that long.
"""

from __future__ import annotations

import itertools
import operator
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
from pydantic import Field

from ..exceptions import InvalidInputError
from ..models._base import DomainModel
from ..models._catalog import Creator, ProcessingState, Video
from ..models._search import ParsedQuery, SearchDocument
from ..scoring._config import RankingConfig
from ..stores._protocols import EventStore, SearchIndex
from ..stores._text import SearchConfig, parse_query
from ..validation import MAX_ID, check_id, check_limit
from ._quality import _qualities

__all__ = ["SearchHit", "VideoSearch"]

# The counts of a match the event store has nothing for: views, completion sum, likes,
# shares, comments.
_NO_COUNTS = (0, 0.0, 0, 0, 0)
# A match's counts, in the order of _NO_COUNTS.
_counts_of = operator.attrgetter("views", "completion_sum", "likes", "shares", "comments")

# A parsed query's terms as (text, prefix) pairs, in query order, and the number of
# matches asked of the index.
_MatchKey = tuple[tuple[tuple[str, bool], ...], int]


class _MatchReuse:
    """A query's matches (video ids and text scores, read-only arrays) kept for
    ``seconds``, at most ``queries`` of them, the least recently used dropped first.

    :meth:`drop_all` empties it and starts a new generation: matches read from the
    index before it (a search racing an index or remove call) are not kept, so a video
    this process removed is never served from here afterwards.
    """

    def __init__(self, seconds: float, queries: int, clock: Callable[[], float]) -> None:
        self._seconds = seconds
        self._queries = queries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[_MatchKey, tuple[float, np.ndarray, np.ndarray]] = OrderedDict()
        self._generation = 0

    def get(self, key: _MatchKey) -> tuple[np.ndarray, np.ndarray] | None:
        """The kept matches of ``key`` if younger than ``seconds``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            stored_at, video_ids, text_scores = entry
            if self._clock() - stored_at >= self._seconds:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return video_ids, text_scores

    def generation(self) -> int:
        """The generation to pass to :meth:`put` for matches read from now on."""
        with self._lock:
            return self._generation

    def put(
        self,
        key: _MatchKey,
        generation: int,
        stored_at: float,
        video_ids: np.ndarray,
        text_scores: np.ndarray,
    ) -> None:
        """Keep matches read from the index from ``stored_at`` on, unless
        :meth:`drop_all` ran since ``generation`` was taken."""
        video_ids.setflags(write=False)
        text_scores.setflags(write=False)
        with self._lock:
            if generation != self._generation:
                return
            self._entries[key] = (stored_at, video_ids, text_scores)
            self._entries.move_to_end(key)
            while len(self._entries) > self._queries:
                self._entries.popitem(last=False)

    def drop_all(self) -> None:
        """Forget every kept match, and any read from the index before this call."""
        with self._lock:
            self._entries.clear()
            self._generation += 1

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


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

    With :attr:`~reelrank.SearchConfig.match_reuse_seconds` above 0, a query's text
    matches are kept in this object (shared by the threads calling it) for that long
    (at most :attr:`~reelrank.SearchConfig.match_reuse_queries` queries), measured by
    ``clock`` (seconds from any fixed origin, :func:`time.monotonic` by default; tests
    pass a fake clock); :meth:`index_video` and :meth:`remove_video` drop them all.
    ``on_matches``, when given, is called in the searching thread once per search that
    needed matches, with whether they were reused (for metrics).
    """

    def __init__(
        self,
        index: SearchIndex,
        *,
        stats: EventStore | None = None,
        config: SearchConfig | None = None,
        ranking: RankingConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_matches: Callable[[bool], None] | None = None,
    ) -> None:
        self._index = index
        self._stats = stats
        self._config = config or SearchConfig()
        self._ranking = ranking or RankingConfig()
        self._clock = clock
        self._on_matches = on_matches
        self._reuse = (
            _MatchReuse(self._config.match_reuse_seconds, self._config.match_reuse_queries, clock)
            if self._config.match_reuse_seconds > 0
            else None
        )

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
        try:
            if video.state is not ProcessingState.READY:
                self._index.remove(video.video_id)
                return False
            self._index.index(
                SearchDocument.from_video(video, creator=creator, sound_name=sound_name)
            )
            return True
        finally:
            # After the index changed (or failed part-way): matches read before it may
            # hold the old document.
            if self._reuse is not None:
                self._reuse.drop_all()

    def remove_video(self, video_id: int) -> bool:
        """Drop a video from the index; ``True`` if it was there."""
        video_id = check_id("video_id", video_id)
        try:
            return self._index.remove(video_id)
        finally:
            if self._reuse is not None:
                self._reuse.drop_all()

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
        video_ids, text_scores = self._matches(query, max(limit, self._config.candidate_pool))
        if not len(video_ids):
            return []
        ids = video_ids.tolist()
        stats = self._stats.get_stats(ids) if self._stats else {}
        # One flat run of numbers rather than a list of tuples for np.array to parse:
        # building the counts is the blend's largest part (500 matches, 500 rows).
        counts = np.fromiter(
            itertools.chain.from_iterable(
                _NO_COUNTS if row is None else _counts_of(row) for row in map(stats.get, ids)
            ),
            np.float64,
            len(ids) * len(_NO_COUNTS),
        ).reshape(len(ids), len(_NO_COUNTS))
        quality = _qualities(counts, self._ranking)
        best = float(text_scores.max())
        relevance = np.minimum(text_scores / best, 1.0) if best > 0 else np.zeros(len(ids))
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

    def _matches(self, query: ParsedQuery, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """The index's best ``depth`` matches of ``query`` as video ids and text scores,
        kept ones when younger than :attr:`~reelrank.SearchConfig.match_reuse_seconds`."""
        reuse = self._reuse
        if reuse is None:
            if self._on_matches is not None:
                self._on_matches(False)
            return self._read_matches(query, depth)
        key: _MatchKey = (tuple((term.text, term.prefix) for term in query.terms), depth)
        kept = reuse.get(key)
        if self._on_matches is not None:
            self._on_matches(kept is not None)
        if kept is not None:
            return kept
        # Taken before the read: an index or remove call during it makes the read stale.
        generation = reuse.generation()
        read_at = self._clock()
        video_ids, text_scores = self._read_matches(query, depth)
        reuse.put(key, generation, read_at, video_ids, text_scores)
        return video_ids, text_scores

    def _read_matches(self, query: ParsedQuery, depth: int) -> tuple[np.ndarray, np.ndarray]:
        matches = self._index.search(query, limit=depth)
        video_ids = np.fromiter((vid for vid, _ in matches), np.int64, len(matches))
        text_scores = np.fromiter((score for _, score in matches), np.float64, len(matches))
        return video_ids, text_scores
