"""Text analysis every search backend shares: the tokenizer, the query parser and SearchConfig."""

from __future__ import annotations

import math
import re
import unicodedata

from pydantic import Field, model_validator

from ..exceptions import ConfigError, QueryError
from ..models._base import StrictModel
from ..models._search import ParsedQuery, QueryTerm

__all__ = ["SearchConfig", "parse_query", "tokenize"]

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
    """A prefix term matches at most this many indexed terms: the ones held by the most
    videos, ties going to the alphabetically smaller term.

    The one cap every backend applies (in-memory, PostgreSQL, SQLite), so all of them
    match the same videos for ``danc*``; a prefix with more expansions drops its rarest.
    """
    candidate_pool: int = Field(default=500, ge=1, le=100_000)
    """How many of the best text matches are re-ranked with quality."""
    max_limit: int = Field(default=200, ge=1, le=10_000)
    """Largest number of hits one search may return."""
    match_reuse_seconds: float = Field(default=0.0, ge=0.0, le=3600.0, allow_inf_nan=False)
    """How long :class:`~reelrank.VideoSearch` reuses a query's text matches (the
    index's video ids and text scores) in this process; 0 (the default) asks the index
    on every search.

    A video's text relevance only changes when the catalog is indexed again, so the
    matches are kept per parsed query (its terms and prefix flags, so ``Cat  Videos``
    and ``cat videos`` share them) and candidate-pool depth; the quality blend is still
    computed on every search. This process's own
    :meth:`~reelrank.VideoSearch.index_video` and
    :meth:`~reelrank.VideoSearch.remove_video` drop every kept match at once; a video
    another process indexes or removes shows (or stops showing) here at most this many
    seconds later.
    """
    match_reuse_queries: int = Field(default=1_000, ge=1, le=1_000_000)
    """Most queries whose matches are kept at once, the least recently used dropped
    first: about 8.7 KB each at ``candidate_pool`` 500 (two 500-element 8-byte arrays
    and the entry's bookkeeping)."""
    term_statistics_seconds: float = Field(default=0.0, ge=0.0, le=3600.0, allow_inf_nan=False)
    """How long a SQL search index (``reelrank_postgres.SqlSearchIndex``) reuses, in this
    process, what a search reads before ranking: how many videos hold each query term,
    which indexed terms a prefix expands to, and the whole-index statistics BM25 takes
    (video count, total length); 0 (the default) reads them on every search. The
    in-memory index always ranks on its current counts.

    The index's own ``index`` and ``remove`` calls drop everything kept, so a search
    in the writing process always sees its writes. A write by another process (or by
    ``bulk_load``, or a migration) shows here at most this many seconds later: until
    then a term first indexed elsewhere may match nothing, and scores use the older
    counts (an idf or mean length off by what was written meanwhile). With a replica
    for the reads, what is kept after a write is what the replica had replayed.
    """

    @model_validator(mode="after")
    def _check_blend(self) -> SearchConfig:
        total = self.text_weight + self.quality_weight
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ConfigError("weights", total, "text_weight and quality_weight must sum to 1")
        return self


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
