"""stores._search."""

from __future__ import annotations

import bisect
import heapq
import math
import threading

from ..exceptions import InvalidInputError
from ..models._search import ParsedQuery, QueryTerm, SearchDocument
from ..validation import check_id, check_limit
from ._text import SearchConfig, tokenize

__all__ = ["InMemorySearchIndex"]


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
        check_limit("limit", limit)
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
