"""The in-memory search index: CSR postings scored by a BM25 kernel with pruning."""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterable, Sequence
from itertools import chain

import numpy as np

from .._kernels._bm25 import (
    block_bounds,
    build_csr,
    merge_segments,
    postings_from_tokens,
    slot_terms,
    top_k_bm25,
)
from ..exceptions import InvalidInputError
from ..models._search import ParsedQuery, QueryTerm, SearchDocument
from ..validation import MAX_ID, check_id, check_limit
from ._text import _TOKEN, SearchConfig, _normalise, tokenize

__all__ = ["InMemorySearchIndex"]

# The delta segment is folded into the main postings (dropping dead documents) once the
# delta and dead slots together number this many, or an eighth of the main segment if
# that is more: small enough that searching the delta stays cheap, large enough that the
# merge (linear in all postings) is rare.
_MIN_DELTA = 4_096

# Rows tokenized together by the bulk build.
_BUILD_CHUNK = 65_536

# Longest text a column may hold, as SearchDocument allows.
_COLUMN_LIMITS = {
    "titles": 300,
    "descriptions": 5_000,
    "sound_names": 300,
    "creator_names": 300,
}

_EMPTY_INT64 = np.zeros(0, dtype=np.int64)
_EMPTY_FLOAT32 = np.zeros(0, dtype=np.float32)
_EMPTY_FLOAT64 = np.zeros(0, dtype=np.float64)


def _tokenize_column(texts: Sequence[str]) -> list[list[str]]:
    """:func:`tokenize` of every text, normalising the column in one call where it can."""
    # NFKC and case folding work character by character and never join across a NUL, so
    # normalising the joined column equals normalising each text.
    if not texts or any("\x00" in text for text in texts):
        return [tokenize(text) for text in texts]
    normalised = _normalise("\x00".join(texts)).split("\x00")
    find = _TOKEN.findall
    # A "#word" also yields "word": texts holding "#" go through tokenize itself.
    return [
        find(folded) if "#" not in folded else tokenize(text)
        for text, folded in zip(texts, normalised, strict=True)
    ]


class _TokenCache(dict[str, list[str]]):
    """:func:`tokenize` results by text, filled on first lookup."""

    def __missing__(self, text: str) -> list[str]:
        terms = self[text] = tokenize(text)
        return terms


def _grow(values: np.ndarray, size: int) -> np.ndarray:
    if size <= values.shape[0]:
        return values
    grown = np.zeros(max(size, 2 * values.shape[0], 16), dtype=values.dtype)
    grown[: values.shape[0]] = values
    return grown


class InMemorySearchIndex:
    """A :class:`~reelrank.SearchIndex` kept in process: CSR postings searched by a numba kernel.

    Each term's postings are contiguous arrays (document slots ascending, field-weighted
    term frequencies as float32) cut in blocks of 128 whose largest term frequency and
    shortest document bound every score in the block, so a one-term search skips blocks
    that cannot reach its top ``limit`` (block-max pruning). A query of several terms
    takes candidates from its rarest term and checks the others by streaming or binary
    search. Prefix terms find their expansions by binary search in the sorted term list,
    capped at :attr:`SearchConfig.max_prefix_expansions` (the most frequent ones).

    :meth:`index` and :meth:`remove` write to a small delta segment (removing a document
    of the main segment only marks it dead); a search folds the delta into the main
    postings once delta and dead documents outnumber ``max(4096, documents / 8)``.
    Build a large index with :meth:`from_columns`. Thread-safe.
    """

    def __init__(self, config: SearchConfig | None = None) -> None:
        self._config = config or SearchConfig()
        self._lock = threading.Lock()
        self._term_ids: dict[str, int] = {}
        self._sorted_terms: list[str] = []
        self._sorted_ids = np.zeros(0, dtype=np.int32)
        self._df = np.zeros(0, dtype=np.int64)
        # Document slots: [0, _n_base) are the main segment, sorted by video id; later
        # slots belong to the delta segment.
        self._video_ids = np.zeros(0, dtype=np.int64)
        self._lengths = np.zeros(0, dtype=np.float64)
        self._alive = np.zeros(0, dtype=np.uint8)
        self._n_slots = 0
        self._n_base = 0
        self._count = 0
        self._total_length = 0.0
        self._offsets = np.zeros(1, dtype=np.int64)
        self._docs = np.zeros(0, dtype=np.int32)
        self._tfs = np.zeros(0, dtype=np.float32)
        self._block_starts = np.zeros(1, dtype=np.int64)
        self._block_max_tf = np.zeros(0, dtype=np.float32)
        self._block_min_length = np.zeros(0, dtype=np.float64)
        self._delta_slots: dict[int, int] = {}
        self._delta_terms: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._delta_csr: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        # Per-slot scratch for the kernels, reused by every search (under the lock);
        # the kernels leave _marks all zero.
        self._marks = np.zeros(0, dtype=np.int32)
        self._total = np.zeros(0, dtype=np.float64)
        self._best = np.zeros(0, dtype=np.float64)

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        """Bytes held by the index's arrays (postings, blocks, documents, term counts)."""
        arrays = (
            self._sorted_ids,
            self._df,
            self._video_ids,
            self._lengths,
            self._alive,
            self._offsets,
            self._docs,
            self._tfs,
            self._block_starts,
            self._block_max_tf,
            self._block_min_length,
            self._marks,
            self._total,
            self._best,
        )
        return sum(values.nbytes for values in arrays)

    # -- analysis ------------------------------------------------------------------------

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

    def _term_id(self, term: str) -> int:
        term_id = self._term_ids.get(term)
        if term_id is None:
            term_id = self._term_ids[term] = len(self._term_ids)
            self._df = _grow(self._df, term_id + 1)
            position = bisect.bisect_left(self._sorted_terms, term)
            self._sorted_terms.insert(position, term)
            self._sorted_ids = np.insert(self._sorted_ids, position, term_id)
        return term_id

    # -- writes --------------------------------------------------------------------------

    def index(self, document: SearchDocument) -> None:
        """Add (or replace) a video's document."""
        if not isinstance(document, SearchDocument):
            raise InvalidInputError("document", "must be a SearchDocument")
        frequencies, length = self._weighted_terms(document)
        with self._lock:
            self._remove_locked(document.video_id)
            slot = self._n_slots
            self._n_slots += 1
            self._video_ids = _grow(self._video_ids, slot + 1)
            self._lengths = _grow(self._lengths, slot + 1)
            self._alive = _grow(self._alive, slot + 1)
            self._video_ids[slot] = document.video_id
            self._lengths[slot] = length
            self._alive[slot] = 1
            term_ids = np.array([self._term_id(term) for term in frequencies], dtype=np.int32)
            self._df[term_ids] += 1
            tfs = np.array(list(frequencies.values()), dtype=np.float32)
            self._delta_slots[document.video_id] = slot
            self._delta_terms[slot] = (term_ids, tfs)
            self._delta_csr = None
            self._count += 1
            self._total_length += length

    def remove(self, video_id: int) -> bool:
        """Drop a video's document; ``True`` if it was indexed."""
        check_id("video_id", video_id)
        with self._lock:
            return self._remove_locked(video_id)

    def _remove_locked(self, video_id: int) -> bool:
        slot = self._delta_slots.pop(video_id, None)
        if slot is not None:
            term_ids, _ = self._delta_terms.pop(slot)
            self._delta_csr = None
        else:
            position = int(np.searchsorted(self._video_ids[: self._n_base], video_id))
            if (
                position == self._n_base
                or self._video_ids[position] != video_id
                or not self._alive[position]
            ):
                return False
            slot = position
            term_ids = slot_terms(self._offsets, self._docs, slot)
        self._df[term_ids] -= 1
        self._alive[slot] = 0
        self._count -= 1
        self._total_length -= float(self._lengths[slot])
        return True

    # -- bulk build ----------------------------------------------------------------------

    @classmethod
    def from_documents(
        cls, documents: Iterable[SearchDocument], *, config: SearchConfig | None = None
    ) -> InMemorySearchIndex:
        """An index of ``documents`` (video ids must be unique), built in one pass."""
        documents = list(documents)
        for document in documents:
            if not isinstance(document, SearchDocument):
                raise InvalidInputError("documents", "must hold SearchDocument items only")
        return cls.from_columns(
            [document.video_id for document in documents],
            titles=[document.title for document in documents],
            descriptions=[document.description for document in documents],
            hashtags=[document.hashtags for document in documents],
            sound_names=[document.sound_name for document in documents],
            creator_names=[document.creator_name for document in documents],
            config=config,
        )

    @classmethod
    def from_columns(
        cls,
        video_ids: Sequence[int] | np.ndarray,
        *,
        titles: Sequence[str] | None = None,
        descriptions: Sequence[str] | None = None,
        hashtags: Sequence[Sequence[str]] | None = None,
        sound_names: Sequence[str] | None = None,
        creator_names: Sequence[str] | None = None,
        config: SearchConfig | None = None,
    ) -> InMemorySearchIndex:
        """An index built from columns: row ``i`` is the document of ``video_ids[i]``.

        Same analysis as :meth:`index` on the equivalent :class:`SearchDocument` (a
        missing column is empty text). Video ids must be unique integers in
        ``[1, MAX_ID]``; every column as long as ``video_ids``. Raises
        :class:`~reelrank.InvalidInputError` naming the offending column.
        """
        ids = cls._checked_ids(video_ids)
        n = ids.shape[0]
        text_columns = {
            name: cls._checked_texts(name, column, n)
            for name, column in (
                ("titles", titles),
                ("descriptions", descriptions),
                ("sound_names", sound_names),
                ("creator_names", creator_names),
            )
        }
        tags = cls._checked_hashtags(hashtags, n)
        index = cls(config)
        config = index._config
        order = np.argsort(ids, kind="stable")
        slots = np.empty(n, dtype=np.int32)
        slots[order] = np.arange(n, dtype=np.int32)
        # Sound names, creator names and hashtags repeat across many videos: each distinct
        # text is tokenized once.
        cache = _TokenCache()
        lookup = cache.__getitem__
        titles_, descriptions_ = text_columns["titles"], text_columns["descriptions"]
        sounds_, creators_ = text_columns["sound_names"], text_columns["creator_names"]
        term_ids = index._term_ids
        is_hashtag: list[bool] = []
        token_slots: list[np.ndarray] = []
        token_terms: list[np.ndarray] = []
        token_fields: list[np.ndarray] = []
        # Rows go in chunks so the token lists (one string per token) stay small; within
        # a chunk the fields follow each other in the order _weighted_terms sums them.
        for low in range(0, n, _BUILD_CHUNK):
            high = min(n, low + _BUILD_CHUNK)
            fields: list[list[list[str]] | None] = [
                _tokenize_column(titles_[low:high]) if titles_ is not None else None,
                _tokenize_column(descriptions_[low:high]) if descriptions_ is not None else None,
                [
                    list(chain.from_iterable(map(lookup, map("#".__add__, row))))
                    for row in tags[low:high]
                ]
                if tags is not None
                else None,
                list(map(lookup, sounds_[low:high])) if sounds_ is not None else None,
                list(map(lookup, creators_[low:high])) if creators_ is not None else None,
            ]
            for field, rows in enumerate(fields):
                if rows is None:
                    continue
                flat = list(chain.from_iterable(rows))
                for term in dict.fromkeys(flat):
                    if term not in term_ids:
                        term_ids[term] = len(term_ids)
                        is_hashtag.append(term.startswith("#"))
                counts = np.fromiter(map(len, rows), dtype=np.int64, count=high - low)
                token_slots.append(np.repeat(slots[low:high], counts))
                token_terms.append(
                    np.fromiter(map(term_ids.__getitem__, flat), dtype=np.int32, count=len(flat))
                )
                token_fields.append(np.full(len(flat), field, dtype=np.uint8))
        n_terms = len(term_ids)
        field_weights = np.array(
            [
                config.title_weight,
                config.description_weight,
                config.hashtag_weight,
                config.sound_weight,
                config.creator_weight,
            ],
            dtype=np.float64,
        )
        index._offsets, index._docs, index._tfs, index._lengths = postings_from_tokens(
            np.concatenate([np.zeros(0, np.int32), *token_slots]),
            np.concatenate([np.zeros(0, np.int32), *token_terms]),
            np.concatenate([np.zeros(0, np.uint8), *token_fields]),
            field_weights,
            np.array(is_hashtag, dtype=np.uint8),
            n,
            n_terms,
        )
        del token_slots, token_terms, token_fields
        index._sorted_terms = sorted(term_ids)
        index._sorted_ids = np.fromiter(
            map(term_ids.__getitem__, index._sorted_terms), dtype=np.int32, count=n_terms
        )
        index._df = np.diff(index._offsets)
        index._video_ids = ids[order]
        index._alive = np.ones(n, dtype=np.uint8)
        index._n_slots = index._n_base = index._count = n
        index._total_length = math.fsum(index._lengths.tolist())
        index._refresh_blocks()
        return index

    @staticmethod
    def _checked_ids(video_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        values = np.asarray(video_ids)
        if values.ndim != 1 or not (values.size == 0 or np.issubdtype(values.dtype, np.integer)):
            raise InvalidInputError("video_ids", "must be a 1-D sequence of integers")
        ids = values.astype(np.int64)
        if ids.size and (ids.min() < 1 or ids.max() > MAX_ID):
            raise InvalidInputError("video_ids", f"must lie in [1, {MAX_ID}]")
        if np.unique(ids).size != ids.size:
            raise InvalidInputError("video_ids", "must be unique")
        return ids

    @staticmethod
    def _checked_texts(name: str, column: Sequence[str] | None, n: int) -> Sequence[str] | None:
        if column is None:
            return None
        if len(column) != n:
            raise InvalidInputError(name, f"must hold {n} items, got {len(column)}")
        limit = _COLUMN_LIMITS[name]
        # The type set is a fast path; str subclasses (numpy's str_) take the slow check.
        strings = set(map(type, column)) <= {str} or all(isinstance(t, str) for t in column)
        if not strings or max(map(len, column), default=0) > limit:
            raise InvalidInputError(name, f"must hold strings of at most {limit} characters")
        return column

    @staticmethod
    def _checked_hashtags(
        column: Sequence[Sequence[str]] | None, n: int
    ) -> Sequence[Sequence[str]] | None:
        if column is None:
            return None
        if len(column) != n:
            raise InvalidInputError("hashtags", f"must hold {n} items, got {len(column)}")
        try:
            valid = not any(isinstance(tags, str) for tags in column) and all(
                isinstance(tag, str) for tag in chain.from_iterable(column)
            )
        except TypeError:
            valid = False
        if not valid:
            raise InvalidInputError("hashtags", "must hold sequences of strings")
        return column

    # -- segments ------------------------------------------------------------------------

    def _refresh_blocks(self) -> None:
        self._block_starts, self._block_max_tf, self._block_min_length = block_bounds(
            self._offsets, self._docs, self._tfs, self._lengths
        )

    def _delta_postings(self, slot_keys: np.ndarray | None) -> tuple[np.ndarray, ...]:
        """The delta documents as CSR, rows laid down by ``slot_keys`` (default: slot)."""
        slots = np.fromiter(self._delta_terms, dtype=np.int64, count=len(self._delta_terms))
        rows = [self._delta_terms[int(slot)] for slot in slots]
        row_starts = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([terms.shape[0] for terms, _ in rows], out=row_starts[1:])
        terms = np.concatenate([terms for terms, _ in rows]) if rows else np.zeros(0, np.int32)
        tfs = np.concatenate([tfs for _, tfs in rows]) if rows else _EMPTY_FLOAT32
        keys = slots if slot_keys is None else slot_keys[slots]
        order = np.argsort(keys, kind="stable")
        csr: tuple[np.ndarray, ...] = build_csr(
            row_starts, terms, tfs, order, slots, len(self._term_ids)
        )
        return csr

    def _compact(self) -> None:
        """Fold the delta into the main postings, dropping dead slots (slots by video id)."""
        live = np.flatnonzero(self._alive[: self._n_slots])
        new_slot = np.full(self._n_slots, -1, dtype=np.int64)
        new_slot[live[np.argsort(self._video_ids[live], kind="stable")]] = np.arange(live.size)
        delta_offsets, delta_docs, delta_tfs = self._delta_postings(new_slot)
        self._offsets, self._docs, self._tfs = merge_segments(
            self._offsets,
            self._docs,
            self._tfs,
            delta_offsets,
            delta_docs,
            delta_tfs,
            new_slot,
            len(self._term_ids),
        )
        order = np.empty(live.size, dtype=np.int64)
        order[new_slot[live]] = live
        self._video_ids = self._video_ids[order]
        self._lengths = self._lengths[order]
        self._alive = np.ones(live.size, dtype=np.uint8)
        self._n_slots = self._n_base = live.size
        self._delta_slots.clear()
        self._delta_terms.clear()
        self._delta_csr = None
        self._refresh_blocks()

    # -- search --------------------------------------------------------------------------

    def _expansions(self, term: QueryTerm) -> np.ndarray:
        """Term ids a query term matches (live terms only), capped for prefix terms."""
        if not term.prefix:
            term_id = self._term_ids.get(term.text)
            if term_id is None or self._df[term_id] == 0:
                return np.zeros(0, dtype=np.int32)
            return np.array([term_id], dtype=np.int32)
        start = bisect.bisect_left(self._sorted_terms, term.text)
        end = bisect.bisect_left(self._sorted_terms, term.text + "\U0010ffff", lo=start)
        ids = self._sorted_ids[start:end]
        ids = ids[self._df[ids] > 0]
        cap = self._config.max_prefix_expansions
        if ids.shape[0] > cap:
            # Most frequent first; the stable sort keeps term order among equal counts.
            ids = ids[np.argsort(-self._df[ids], kind="stable")[:cap]]
        return ids

    def search(self, query: ParsedQuery, *, limit: int) -> list[tuple[int, float]]:
        """Videos matching every term, best BM25 first (ties: lower id first)."""
        if not isinstance(query, ParsedQuery):
            raise InvalidInputError("query", "must be a ParsedQuery (see parse_query)")
        check_limit("limit", limit)
        with self._lock:
            count = self._count
            if count == 0 or limit == 0:
                return []
            groups = [self._expansions(term) for term in query.terms]
            if any(ids.shape[0] == 0 for ids in groups):
                return []
            # The rarest term picks the candidates; the other terms only look those up.
            groups.sort(key=lambda ids: int(self._df[ids].sum()))
            terms = np.concatenate(groups)
            group_starts = np.zeros(len(groups) + 1, dtype=np.int64)
            np.cumsum([ids.shape[0] for ids in groups], out=group_starts[1:])
            idfs = np.array(
                [
                    math.log(1.0 + (count - df + 0.5) / (df + 0.5))
                    for df in self._df[terms].tolist()
                ],
                dtype=np.float64,
            )
            # Delta slots plus dead slots: what a merge would tidy up.
            pending = 2 * self._n_slots - self._n_base - self._count
            if pending > max(_MIN_DELTA, self._n_base // 8):
                self._compact()
            if self._marks.shape[0] < self._n_slots:
                self._marks = np.zeros(self._n_slots, dtype=np.int32)
                self._total = np.zeros(self._n_slots, dtype=np.float64)
                self._best = np.zeros(self._n_slots, dtype=np.float64)
            scratch = (self._marks, self._total, self._best)
            k1, b = self._config.k1, self._config.b
            mean_length = self._total_length / count or 1.0
            lengths = self._lengths[: self._n_slots]
            alive = self._alive[: self._n_slots]
            video_ids = self._video_ids[: self._n_slots]
            ids, scores = top_k_bm25(
                self._offsets,
                self._docs,
                self._tfs,
                self._block_starts,
                self._block_max_tf,
                self._block_min_length,
                lengths,
                alive,
                video_ids,
                terms,
                group_starts,
                idfs,
                k1,
                b,
                mean_length,
                limit,
                *scratch,
            )
            hits = list(zip(ids.tolist(), scores.tolist(), strict=True))
            if self._delta_terms:
                if self._delta_csr is None:
                    delta = self._delta_postings(None)
                    self._delta_csr = (delta[0], delta[1], delta[2])
                offsets, docs, tfs = self._delta_csr
                delta_ids, delta_scores = top_k_bm25(
                    offsets,
                    docs,
                    tfs,
                    _EMPTY_INT64,
                    _EMPTY_FLOAT32,
                    _EMPTY_FLOAT64,
                    lengths,
                    alive,
                    video_ids,
                    terms,
                    group_starts,
                    idfs,
                    k1,
                    b,
                    mean_length,
                    limit,
                    *scratch,
                )
                hits.extend(zip(delta_ids.tolist(), delta_scores.tolist(), strict=True))
                hits.sort(key=lambda hit: (-hit[1], hit[0]))
                del hits[limit:]
        return hits
