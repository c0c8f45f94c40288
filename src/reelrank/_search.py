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

import bisect
import heapq
import math
import re
import threading
import unicodedata

from pydantic import Field, model_validator

from ._config import RankingConfig, StrictModel
from ._models import (
    MAX_ID,
    Creator,
    DomainModel,
    ProcessingState,
    Video,
    VideoStats,
    check_id,
    check_limit,
)
from .exceptions import ConfigError, InvalidInputError, QueryError
from .protocols import EventStore, SearchIndex

__all__ = [
    "InMemorySearchIndex",
    "ParsedQuery",
    "QueryTerm",
    "SearchConfig",
    "SearchDocument",
    "SearchHit",
    "VideoSearch",
    "parse_query",
    "tokenize",
    "video_quality",
]

_TOKEN = re.compile(r"#?[^\W_]\w*")
_QUERY_TOKEN = re.compile(r"#?[^\W_]\w*\*?")


def _normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def tokenize(text: str) -> list[str]:
    """Split text into lower-case index terms.

    A term is a run of letters, digits and underscores starting with a letter or digit,
    after NFKC normalisation and case folding. A ``#word`` yields both ``#word`` (so
    hashtag queries find it) and ``word``.
    """
    terms: list[str] = []
    for token in _TOKEN.findall(_normalise(text)):
        if token.startswith("#"):
            terms.append(token)
            terms.append(token[1:])
        else:
            terms.append(token)
    return terms


class SearchConfig(StrictModel):
    r"""How queries are parsed and results scored.

    Term frequency in a video is weighted by field:
    :math:`tf(t, d) = \sum_f w_f \cdot n_f(t, d)` with :math:`n_f` the count of
    term :math:`t` in field :math:`f`, and the document length is
    :math:`|d| = \sum_f w_f \cdot |d_f|`. BM25 then gives

    .. math::

        \mathrm{bm25}(t, d) = \mathrm{idf}(t) \cdot
            \frac{tf(t, d) (k_1 + 1)}{tf(t, d) + k_1 (1 - b + b |d| / \overline{|d|})},
        \qquad \mathrm{idf}(t) = \ln\left(1 + \frac{N - n_t + 0.5}{n_t + 0.5}\right)

    with :math:`N` indexed videos, :math:`n_t` of them holding :math:`t`. A query scores
    the sum over its terms; a prefix term scores its best-scoring expansion. The final
    score is ``text_weight * bm25 / max_bm25 + quality_weight * quality``, where
    ``max_bm25`` is the best text score among the matches.
    """

    k1: float = Field(default=1.2, ge=0.0, le=10.0, allow_inf_nan=False)
    """BM25 term-frequency saturation: larger lets repeated terms count for more."""
    b: float = Field(default=0.75, ge=0.0, le=1.0, allow_inf_nan=False)
    """BM25 length normalisation: 0 ignores document length, 1 normalises fully."""
    title_weight: float = Field(default=3.0, ge=0.0, allow_inf_nan=False)
    """Weight of a term occurrence in the title."""
    description_weight: float = Field(default=1.0, ge=0.0, allow_inf_nan=False)
    """Weight of a term occurrence in the description."""
    hashtag_weight: float = Field(default=2.0, ge=0.0, allow_inf_nan=False)
    """Weight of a term occurrence in the hashtags."""
    sound_weight: float = Field(default=1.5, ge=0.0, allow_inf_nan=False)
    """Weight of a term occurrence in the sound name."""
    creator_weight: float = Field(default=2.0, ge=0.0, allow_inf_nan=False)
    """Weight of a term occurrence in the creator's handle or display name."""
    text_weight: float = Field(default=0.8, ge=0.0, le=1.0, allow_inf_nan=False)
    """Weight of the normalised BM25 score in the final score."""
    quality_weight: float = Field(default=0.2, ge=0.0, le=1.0, allow_inf_nan=False)
    """Weight of the video's quality (:func:`video_quality`) in the final score."""
    max_query_length: int = Field(default=200, ge=1, le=10_000)
    """Longest query accepted, in characters; longer raises :class:`~reelrank.QueryError`."""
    max_terms: int = Field(default=16, ge=1, le=256)
    """Most terms a query may hold; more raises :class:`~reelrank.QueryError`."""
    max_prefix_expansions: int = Field(default=64, ge=1, le=10_000)
    """A prefix term matches at most this many indexed terms (the most frequent ones)."""
    candidate_pool: int = Field(default=500, ge=1, le=100_000)
    """How many of the best text matches are re-ranked with quality."""
    max_limit: int = Field(default=200, ge=1, le=10_000)
    """Largest number of hits one search may return."""

    @model_validator(mode="after")
    def _check_blend(self) -> SearchConfig:
        total = self.text_weight + self.quality_weight
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ConfigError("weights", total, "text_weight and quality_weight must sum to 1")
        return self


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


def parse_query(
    text: str, *, config: SearchConfig | None = None, as_you_type: bool = False
) -> ParsedQuery:
    """Parse a search box's text into terms.

    ``danc*`` is a prefix term, ``#dance`` a hashtag term (``#danc*`` both). With
    ``as_you_type``, the last term is a prefix term unless the text ends in whitespace
    (the user finished the word). Raises :class:`~reelrank.QueryError` when the text is
    not a string, is longer than :attr:`SearchConfig.max_query_length`, holds no term
    or more than :attr:`SearchConfig.max_terms` terms.
    """
    config = config or SearchConfig()
    if not isinstance(text, str):
        raise QueryError(f"must be a string, got {type(text).__name__}")
    if len(text) > config.max_query_length:
        raise QueryError(f"longer than {config.max_query_length} characters ({len(text)})")
    tokens = _QUERY_TOKEN.findall(_normalise(text))
    if not tokens:
        raise QueryError("holds no searchable term")
    if len(tokens) > config.max_terms:
        raise QueryError(f"holds {len(tokens)} terms, more than {config.max_terms}")
    last_is_open = as_you_type and not text[-1].isspace()
    terms: dict[tuple[str, bool], QueryTerm] = {}
    for position, token in enumerate(tokens):
        prefix = token.endswith("*") or (last_is_open and position == len(tokens) - 1)
        word = token.rstrip("*")
        terms.setdefault((word, prefix), QueryTerm(text=word, prefix=prefix))
    return ParsedQuery(terms=tuple(terms.values()))


class InMemorySearchIndex:
    """A :class:`~reelrank.SearchIndex` kept in process: postings lists plus a sorted term list.

    Each term maps to its postings (video id -> field-weighted term frequency); prefix
    terms find their expansions by binary search in the sorted list of indexed terms.
    Adding or removing a document updates only that document's terms. Thread-safe.
    """

    def __init__(self, config: SearchConfig | None = None) -> None:
        self._config = config or SearchConfig()
        self._lock = threading.Lock()
        self._postings: dict[str, dict[int, float]] = {}
        self._sorted_terms: list[str] = []
        self._lengths: dict[int, float] = {}
        self._document_terms: dict[int, tuple[str, ...]] = {}
        self._total_length = 0.0

    def __len__(self) -> int:
        return len(self._lengths)

    def _weighted_terms(self, document: SearchDocument) -> tuple[dict[str, float], float]:
        config = self._config
        fields = (
            (tokenize(document.title), config.title_weight),
            (tokenize(document.description), config.description_weight),
            (
                [term for tag in document.hashtags for term in tokenize("#" + tag)],
                config.hashtag_weight,
            ),
            (tokenize(document.sound_name), config.sound_weight),
            (tokenize(document.creator_name), config.creator_weight),
        )
        frequencies: dict[str, float] = {}
        length = 0.0
        for terms, weight in fields:
            for term in terms:
                frequencies[term] = frequencies.get(term, 0.0) + weight
                # A "#tag" is the same word as "tag": count it once in the length.
                if not term.startswith("#"):
                    length += weight
        return {term: tf for term, tf in frequencies.items() if tf > 0.0}, length

    def index(self, document: SearchDocument) -> None:
        """Add (or replace) a video's document."""
        if not isinstance(document, SearchDocument):
            raise InvalidInputError("document", "must be a SearchDocument")
        frequencies, length = self._weighted_terms(document)
        with self._lock:
            self._remove_locked(document.video_id)
            for term, tf in frequencies.items():
                postings = self._postings.get(term)
                if postings is None:
                    postings = self._postings[term] = {}
                    bisect.insort(self._sorted_terms, term)
                postings[document.video_id] = tf
            self._lengths[document.video_id] = length
            self._document_terms[document.video_id] = tuple(frequencies)
            self._total_length += length

    def remove(self, video_id: int) -> bool:
        """Drop a video's document; ``True`` if it was indexed."""
        check_id("video_id", video_id)
        with self._lock:
            return self._remove_locked(video_id)

    def _remove_locked(self, video_id: int) -> bool:
        length = self._lengths.pop(video_id, None)
        if length is None:
            return False
        self._total_length -= length
        for term in self._document_terms.pop(video_id):
            postings = self._postings[term]
            del postings[video_id]
            if not postings:
                del self._postings[term]
                del self._sorted_terms[bisect.bisect_left(self._sorted_terms, term)]
        return True

    def _expansions(self, term: QueryTerm) -> list[str]:
        if not term.prefix:
            return [term.text] if term.text in self._postings else []
        start = bisect.bisect_left(self._sorted_terms, term.text)
        end = bisect.bisect_left(self._sorted_terms, term.text + "\U0010ffff")
        matches = self._sorted_terms[start:end]
        if len(matches) <= self._config.max_prefix_expansions:
            return matches
        return heapq.nsmallest(
            self._config.max_prefix_expansions,
            matches,
            key=lambda match: (-len(self._postings[match]), match),
        )

    def _add_term(
        self, terms: list[str], totals: dict[int, float] | None, count: int
    ) -> dict[int, float]:
        """Add one query term's best BM25 over its expansions to each candidate's total.

        ``totals`` ``None`` means no term has been applied yet (every video is a
        candidate); videos the term does not match drop out.
        """
        k1, b = self._config.k1, self._config.b
        mean_length = self._total_length / count or 1.0
        best: dict[int, float] = {}
        for term in terms:
            postings = self._postings[term]
            idf = math.log(1.0 + (count - len(postings) + 0.5) / (len(postings) + 0.5))
            if totals is not None and len(totals) < len(postings):
                pairs = [(vid, postings[vid]) for vid in totals if vid in postings]
            else:
                pairs = list(postings.items())
            for video_id, tf in pairs:
                if totals is not None and video_id not in totals:
                    continue
                norm = k1 * (1.0 - b + b * self._lengths[video_id] / mean_length)
                score = idf * tf * (k1 + 1.0) / (tf + norm)
                if score > best.get(video_id, 0.0):
                    best[video_id] = score
        if totals is None:
            return best
        return {vid: totals[vid] + score for vid, score in best.items()}

    def search(self, query: ParsedQuery, *, limit: int) -> list[tuple[int, float]]:
        """Videos matching every term, best BM25 first (ties: lower id first)."""
        if not isinstance(query, ParsedQuery):
            raise InvalidInputError("query", "must be a ParsedQuery (see parse_query)")
        check_limit(limit)
        with self._lock:
            count = len(self._lengths)
            if count == 0 or limit == 0:
                return []
            expansions = [self._expansions(term) for term in query.terms]
            # The rarest term picks the candidates; the other terms only look those up.
            expansions.sort(key=lambda terms: sum(len(self._postings[t]) for t in terms))
            totals: dict[int, float] | None = None
            for terms in expansions:
                totals = self._add_term(terms, totals, count)
                if not totals:
                    return []
        assert totals is not None
        return heapq.nsmallest(limit, totals.items(), key=lambda item: (-item[1], item[0]))


def video_quality(stats: VideoStats, config: RankingConfig | None = None) -> float:
    r"""Quality of a video in ``[0, 1]``: the mean of its smoothed completion and
    engagement signals, with the priors of ``config`` (the ranking config).

    .. math::

        c = \min\left(1, \frac{S + \mu_c V_c}{v + V_c}\right), \quad
        r = \frac{w_l l + w_s s + w_m m + \rho V_e}{v + V_e}, \quad
        q = \frac{1}{2}\left(c + \frac{r}{r + h}\right)

    with ``v`` views, ``S`` the completion sum, ``l, s, m`` likes, shares and
    comments, and the priors (:math:`\mu_c, V_c, \rho, V_e`), weights and half
    saturation ``h`` of :class:`~reelrank.RankingConfig`. Before any view (and with
    zero prior views) the priors themselves are used.
    """
    config = config or RankingConfig()
    completion_total = stats.views + config.completion_prior_views
    completion = (
        min(
            1.0,
            (stats.completion_sum + config.completion_prior_mean * config.completion_prior_views)
            / completion_total,
        )
        if completion_total > 0
        else config.completion_prior_mean
    )
    engagement_total = stats.views + config.engagement_prior_views
    weighted = (
        config.like_weight * stats.likes
        + config.share_weight * stats.shares
        + config.comment_weight * stats.comments
    )
    rate = (
        (weighted + config.engagement_prior_rate * config.engagement_prior_views)
        / engagement_total
        if engagement_total > 0
        else config.engagement_prior_rate
    )
    engagement = rate / (rate + config.engagement_half_saturation)
    return 0.5 * (completion + engagement)


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
        check_limit(limit)
        if limit > self._config.max_limit:
            raise InvalidInputError("limit", f"must be <= {self._config.max_limit}, got {limit}")
        query = parse_query(text, config=self._config, as_you_type=as_you_type)
        if limit == 0:
            return []
        matches = self._index.search(query, limit=max(limit, self._config.candidate_pool))
        if not matches:
            return []
        best = max(score for _, score in matches)
        stats = self._stats.get_stats([vid for vid, _ in matches]) if self._stats else {}
        blended: list[tuple[float, int, float, float]] = []
        for video_id, text_score in matches:
            video_stats = stats.get(video_id) or VideoStats(video_id=video_id)
            quality = video_quality(video_stats, self._ranking)
            relevance = min(1.0, text_score / best) if best > 0 else 0.0
            score = min(
                1.0,
                self._config.text_weight * relevance + self._config.quality_weight * quality,
            )
            blended.append((-score, video_id, relevance, quality))
        return [
            SearchHit(video_id=video_id, score=-negative, text=relevance, quality=quality)
            for negative, video_id, relevance, quality in heapq.nsmallest(limit, blended)
        ]
