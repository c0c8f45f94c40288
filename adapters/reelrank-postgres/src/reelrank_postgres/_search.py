"""Full-text search in SQL: a ``tsvector`` with a GIN index on PostgreSQL, FTS5 on SQLite.

Both dialects index the terms of reelrank's own :func:`~reelrank.tokenize` (not a
database text-search configuration), so a document matches exactly the queries it
matches in :class:`~reelrank.InMemorySearchIndex`: no stemming, no stop words, ``#tag``
terms only match hashtags. A prefix term expands to the same capped set of terms as in
memory (:attr:`~reelrank.SearchConfig.max_prefix_expansions`, most frequent first, read
from the ``search_terms`` counts kept with every write) and is searched as the OR of
those terms.

Both dialects also keep impact-ordered postings (``search_postings``, migration 0006 on
PostgreSQL, 0007 on SQLite): per term and video the field-weighted term frequency and
document length the in-memory index uses, so they rank by the same BM25 (same idf, same
mean length, from ``search_stats``) while reading only the postings that can reach the
top ``limit`` (the algorithms are in ``_impact``). Without them (other BM25 parameters,
``use_impact_postings=False``) PostgreSQL ranks with ``ts_rank`` and SQLite with FTS5's
``bm25``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Connection, Engine, Row, TextClause, text

from reelrank.models import ParsedQuery, QueryTerm, SearchDocument
from reelrank.stores import SearchConfig, tokenize
from reelrank.stores.adapter import InvalidInputError, check_id, check_limit

from ._base import ReplicaReadStore, check_instance
from ._errors import store_errors
from ._impact import Scoring, SqlitePostings, one_group, postgres_walk, several_groups
from ._term_statistics import IndexStatistics, TermKey, TermStatistics

__all__ = ["SqlSearchIndex"]

# ts_rank's default weights are {D: 0.1, C: 0.2, B: 0.4, A: 1.0}.
_POSTGRES_WEIGHTS = {"title": "A", "hashtags": "B", "creator": "C", "sound": "C"}
_POSTGRES_DEFAULT_WEIGHT = "D"
_MAX_POSITION = 16_383  # tsvector positions above this are clamped by PostgreSQL

# FTS5 bm25 column weights, in column order, following SearchConfig's field weights.
_FTS_COLUMNS = ("title", "description", "hashtags", "sound", "creator")
_FTS_WEIGHTS = "3.0, 1.0, 2.0, 1.5, 2.0"

# Above every code point a term can hold after a prefix: [prefix, prefix + this) is the
# range of terms starting with the prefix, the bound the in-memory index bisects with.
_PREFIX_END = "\U0010ffff"

_TERM_COUNT = text("SELECT videos FROM search_terms WHERE term = :term AND videos > 0")
_EXPANSIONS = text(
    "SELECT term, videos FROM search_terms WHERE term >= :low AND term < :high AND videos > 0 "
    "ORDER BY videos DESC, term LIMIT :cap"
)
# One statement per changed term, in term order, so concurrent writers lock the shared
# count rows in the same order and cannot deadlock.
_COUNT_CHANGE = text(
    "INSERT INTO search_terms (term, videos) VALUES (:term, :delta) "
    "ON CONFLICT (term) DO UPDATE SET videos = search_terms.videos + excluded.videos"
)
_COUNT_DROP = text("DELETE FROM search_terms WHERE term = :term AND videos <= 0")

# Impact-ordered postings (migration 0006): one row per (term, video).
_POSTINGS_DELETE = text("DELETE FROM search_postings WHERE video_id = :video_id RETURNING length")
# The stored impact is BM25's term-frequency part with the reference length in
# search_stats, set once by the first write into an empty index (the migration's back-fill
# or a bulk load: their mean length; a single index(): that document's length).
_POSTINGS_IMPACT = (
    "p.tf * (s.k1 + 1) / (p.tf + s.k1 * (1 - s.b + s.b * p.length / s.reference_length))"
)
_POSTINGS_INSERT = text(
    "INSERT INTO search_postings (term, video_id, impact, tf, length) "
    f"SELECT p.term, p.video_id, {_POSTINGS_IMPACT}, p.tf, p.length "
    "FROM (SELECT t.term, t.tf, CAST(:video_id AS bigint) AS video_id, "
    "CAST(:length AS float8) AS length "
    "FROM unnest(CAST(:terms AS text[]), CAST(:tfs AS real[])) AS t(term, tf)) AS p, "
    "search_stats AS s"
)
# An upsert, so emptied tables (TRUNCATE) start over; a new row takes the writer's k1 and b.
_STATS_CHANGE = text(
    "INSERT INTO search_stats AS t (id, documents, total_length, reference_length, k1, b) "
    "VALUES (1, greatest(CAST(:documents AS bigint), 0), "
    "CAST(:added AS float8) - CAST(:removed AS float8), CAST(:reference AS float8), "
    "CAST(:k1 AS float8), CAST(:b AS float8)) "
    "ON CONFLICT (id) DO UPDATE SET documents = t.documents + CAST(:documents AS bigint), "
    "total_length = t.total_length - CAST(:removed AS float8) + CAST(:added AS float8), "
    "reference_length = CASE WHEN t.reference_length > 0 THEN t.reference_length "
    "ELSE CAST(:reference AS float8) END"
)
_STATS = text("SELECT documents, total_length, reference_length, k1, b FROM search_stats")
# Every query term's counts in one round trip on PostgreSQL: a plain term's own row, a
# prefix's capped expansions (``_TERM_COUNT`` and ``_EXPANSIONS`` per term), tagged with
# the term's place in the query (``ord``, from 1).
_TERM_ROWS = (
    "SELECT q.ord, e.term, e.videos{statistics_nulls} "
    "FROM unnest(CAST(:texts AS text[]), CAST(:prefixes AS boolean[])) "
    "WITH ORDINALITY AS q(text, prefix, ord) CROSS JOIN LATERAL ("
    "SELECT t.term, t.videos FROM search_terms AS t "
    'WHERE NOT q.prefix AND t.term = q.text COLLATE "C" AND t.videos > 0 '
    "UNION ALL (SELECT t.term, t.videos FROM search_terms AS t "
    'WHERE q.prefix AND t.term >= q.text COLLATE "C" '
    'AND t.term < (q.text || CAST(:end AS text)) COLLATE "C" AND t.videos > 0 '
    "ORDER BY t.videos DESC, t.term LIMIT :cap)) AS e"
)
_TERM_COUNTS = text(_TERM_ROWS.format(statistics_nulls=""))
# The same, and the search_stats row (``ord`` 0) when the impact-ordered postings rank.
_TERM_COUNTS_AND_STATISTICS = text(
    "SELECT 0 AS ord, NULL AS term, NULL AS videos, "
    "documents, total_length, reference_length, k1, b FROM search_stats UNION ALL "
    + _TERM_ROWS.format(
        statistics_nulls=", NULL::bigint, NULL::float8, NULL::float8, NULL::float8, NULL::float8"
    )
)
# How many query terms' counts a search index keeps at most (term_statistics_seconds):
# a prefix's 64 expansions are about 6 KB, so at most about 60 MB.
_KEPT_TERMS = 10_000
# The same writes on SQLite (migration 0007): no arrays, so one posting per parameter set.
_SQLITE_POSTINGS_INSERT = text(
    "INSERT INTO search_postings (term, impact, video_id, tf, length) "
    "SELECT :term, CAST(:tf AS REAL) * (s.k1 + 1) / (:tf + s.k1 * "
    "(1 - s.b + s.b * :length / s.reference_length)), :video_id, :tf, :length "
    "FROM search_stats AS s"
)
_SQLITE_STATS_CHANGE = text(
    "INSERT INTO search_stats (id, documents, total_length, reference_length, k1, b) "
    "VALUES (1, max(:documents, 0), :added - :removed, :reference, :k1, :b) "
    "ON CONFLICT (id) DO UPDATE SET documents = documents + :documents, "
    "total_length = total_length - :removed + :added, "
    "reference_length = CASE WHEN reference_length > 0 THEN reference_length "
    "ELSE :reference END"
)
# BM25 of a posting ``s`` for a query term ``q``, the in-memory kernel's expression in the
# same order of operations (IEEE double in both), so the scores come out the same.
_BM25 = (
    "q.idf * s.tf * (CAST(:k1 AS float8) + 1.0) / (s.tf + CAST(:k1 AS float8) * "
    "(1.0 - CAST(:b AS float8) + CAST(:b AS float8) * s.length / CAST(:mean AS float8)))"
)
_QUERY_TERMS = (
    'q AS (SELECT t.term COLLATE "C" AS term, t.grp, t.idf, t.depth, t.ord '
    "FROM unnest(CAST(:terms AS text[]), CAST(:groups AS int[]), CAST(:idfs AS float8[]), "
    "CAST(:depths AS bigint[])) WITH ORDINALITY AS t(term, grp, idf, depth, ord))"
)
# One group (a term, or a prefix's expansions): the best ``depth`` postings of each term
# give a floor, the ``offset + 1``-th best score among them; then every posting whose
# impact could reach the floor is read and ranked (a video scores its best expansion).
# A posting's score is at most idf x impact x ``slack`` (see _IMPACT_SLACK), so nothing
# below ``floor / (idf x slack)`` can enter the top ``limit``: exact in one statement.
_ONE_GROUP = text(
    f"WITH {_QUERY_TERMS}, "
    "first AS (SELECT p.video_id, max(p.score) AS score FROM q CROSS JOIN LATERAL ("
    f"SELECT s.video_id, {_BM25} AS score FROM search_postings AS s WHERE s.term = q.term "
    "ORDER BY s.impact DESC, s.video_id LIMIT q.depth) AS p GROUP BY p.video_id), "
    "floor AS (SELECT coalesce((SELECT score FROM first ORDER BY score DESC "
    "LIMIT 1 OFFSET :offset), 0.0) AS score), "
    "second AS (SELECT p.video_id, max(p.score) AS score FROM q CROSS JOIN floor AS f "
    f"CROSS JOIN LATERAL (SELECT s.video_id, {_BM25} AS score FROM search_postings AS s "
    "WHERE s.term = q.term AND s.impact >= f.score / (q.idf * CAST(:slack AS float8)) "
    "ORDER BY s.impact DESC, s.video_id LIMIT :cap) AS p GROUP BY p.video_id) "
    "SELECT video_id, score FROM second ORDER BY score DESC, video_id LIMIT :limit"
)
# One plain term: the same two passes, without grouping by video (a video holds one
# posting of a term). At 1M videos, a common term whose second pass reads 4,800 tied
# postings: 1.7 against 2.8 ms (load 4.9).
_ONE_TERM = text(
    f"WITH {_QUERY_TERMS}, "
    "first AS (SELECT p.score FROM q CROSS JOIN LATERAL ("
    f"SELECT {_BM25} AS score FROM search_postings AS s WHERE s.term = q.term "
    "ORDER BY s.impact DESC, s.video_id LIMIT q.depth) AS p), "
    "floor AS (SELECT coalesce((SELECT score FROM first ORDER BY score DESC "
    "LIMIT 1 OFFSET :offset), 0.0) AS score) "
    f"SELECT s.video_id, {_BM25} AS score FROM q CROSS JOIN floor AS f "
    "CROSS JOIN LATERAL (SELECT s.video_id, s.tf, s.length FROM search_postings AS s "
    "WHERE s.term = q.term AND s.impact >= f.score / (q.idf * CAST(:slack AS float8)) "
    "ORDER BY s.impact DESC, s.video_id LIMIT :cap) AS s "
    "ORDER BY score DESC, s.video_id LIMIT :limit"
)
# Stored impacts are float4 and the in-memory kernel compiles with fast math: bounds get
# this relative margin, so rounding can only make a search read a few more postings.
_IMPACT_SLACK = 1.0 + 1e-6
# A query of several groups scores at most max(_WALK_POSTINGS, _WALK_PER_HIT x limit)
# candidates, its rarest group's best postings by impact. Each costs a look-up of the
# video's postings (one index descent: about 6 us at 1M videos on PostgreSQL, more under
# load): about 10 ms for the 500 hits VideoSearch asks for. At 1M videos, half as many
# candidates cut the top-20 recall from 0.85 to 0.68 (two words) and from 0.67 to 0.57
# (as you type); twice as many raised it to 0.94 and 0.78 at 2 to 3 times the cost. SQLite
# scores them in batches of _FIRST_BATCH (or _WALK_PER_HIT x limit: the top cannot be
# proved before ``limit`` matches are found), then twice as many each time.
_WALK_POSTINGS = 1_000
_WALK_PER_HIT = 2
_FIRST_BATCH = 256
# One group: the second pass reads at most this many postings per term (the rows whose
# impact can reach the floor; more only through enormous runs of tied scores).
_MAX_SECOND_PASS = 200_000

_RUM_INDEX = "ix_search_documents_rum"
# With a RUM index (migration 0005, when the server has the extension) the index ranks
# every match from the positions it stores (``<=>`` is 1 / RUM's rank, a ts_rank-like
# score) and returns them in rank order: no heap row is read to rank. ``video_id > 0`` is
# the partial index's predicate (see migration 0005).
_POSTGRES_RUM = text(
    "SELECT video_id, 1.0 / (document <=> query) AS score "
    "FROM search_documents, CAST(:query AS tsquery) AS query "
    "WHERE document @@ query AND video_id > 0 ORDER BY document <=> query LIMIT :limit"
)
# Otherwise the ``rank_pool`` newest matches are ranked with ts_rank, found one of two ways.
_RANK_CANDIDATES = (
    "SELECT video_id, ts_rank(document, query) AS score FROM ({candidates}) AS candidates, "
    "CAST(:rank_query AS tsquery) AS query ORDER BY score DESC, video_id LIMIT :limit"
)
# Matches first, for few matches: only the rarest term group (``driver``) is searched with
# ``@@`` (a bitmap scan of the text index); the whole query is checked with ``ts_match_vq``,
# which no index answers, so a common group (a 64-way OR) filters the driver's rows instead
# of reading its posting lists. ``video_id + 0`` keeps the planner off the primary key.
_POSTGRES_MATCHES_FIRST = text(
    _RANK_CANDIDATES.format(
        candidates="SELECT video_id, document FROM search_documents "
        "WHERE document @@ CAST(:driver AS tsquery) "
        "AND ts_match_vq(document, CAST(:query AS tsquery)) "
        "ORDER BY video_id + 0 DESC LIMIT :pool"
    )
)
# Newest first, for many matches: the primary key walked backwards, each row checked, until
# the pool is full (no ``@@``, so no text index is read).
_POSTGRES_NEWEST_FIRST = text(
    _RANK_CANDIDATES.format(
        candidates="SELECT video_id, document FROM search_documents "
        "WHERE ts_match_vq(document, CAST(:query AS tsquery)) "
        "ORDER BY video_id DESC LIMIT :pool"
    )
)
_DOCUMENT_COUNT = text(
    "SELECT greatest(reltuples, 0) FROM pg_class WHERE oid = 'search_documents'::regclass"
)
_DOCUMENT_COUNT_SECONDS = 60.0

# SQLite: the ``rank_pool`` newest matches (FTS5 walks its doclists in descending rowid
# order and stops at the pool), then bm25 over the matches from the pool's oldest on.
_SQLITE_BOUNDED = text(
    f"SELECT rowid AS video_id, -bm25(search_documents, {_FTS_WEIGHTS}) AS score "
    "FROM search_documents WHERE search_documents MATCH :query AND rowid >= ("
    "SELECT coalesce(min(rowid), 0) FROM (SELECT rowid FROM search_documents "
    "WHERE search_documents MATCH :query ORDER BY rowid DESC LIMIT :pool)) "
    "ORDER BY score DESC, video_id LIMIT :limit"
)


def _fields(document: SearchDocument) -> dict[str, list[str]]:
    return {
        "title": tokenize(document.title),
        "description": tokenize(document.description),
        "hashtags": [term for tag in document.hashtags for term in tokenize("#" + tag)],
        "sound": tokenize(document.sound_name),
        "creator": tokenize(document.creator_name),
    }


def _quote(term: str) -> str:
    """A term as a quoted tsvector / tsquery lexeme (taken verbatim, not parsed)."""
    escaped = term.replace("\\", "\\\\").replace("'", "''")
    return f"'{escaped}'"


def _tsvector_literal(fields: dict[str, list[str]]) -> str:
    positions: dict[str, list[str]] = {}
    position = 0
    for field, terms in fields.items():
        weight = _POSTGRES_WEIGHTS.get(field, _POSTGRES_DEFAULT_WEIGHT)
        for term in terms:
            position = min(position + 1, _MAX_POSITION)
            positions.setdefault(term, []).append(f"{position}{weight}")
    return " ".join(f"{_quote(term)}:{','.join(found)}" for term, found in positions.items())


def _tsquery_literal(groups: Iterable[Iterable[str]]) -> str:
    return " & ".join("(" + " | ".join(_quote(term) for term in group) + ")" for group in groups)


def _prefix_tsquery(terms: Iterable[QueryTerm]) -> str:
    """The query with each prefix term as one ``'prefix':*`` lexeme (uncapped; ranking only)."""
    return " & ".join(_quote(term.text) + (":*" if term.prefix else "") for term in terms)


def _fts_token(term: str) -> str:
    # FTS5's tokenizers would split "#tag" and fold accents; hex of the UTF-8 bytes keeps
    # every term one token, and a prefix of a term is a prefix of its token.
    return "x" + term.encode().hex()


def _fts_query(groups: Iterable[Iterable[str]]) -> str:
    return " AND ".join(
        "(" + " OR ".join(f'"{_fts_token(term)}"' for term in group) + ")" for group in groups
    )


def _fts_terms(columns: Iterable[str]) -> set[str]:
    """The terms of an FTS5 row's columns (space-separated tokens, see :func:`_fts_token`)."""
    return {bytes.fromhex(token[1:]).decode() for column in columns for token in column.split()}


def _weighted(fields: dict[str, list[str]], config: SearchConfig) -> tuple[dict[str, float], float]:
    """Field-weighted term frequencies (tf > 0) and document length, summed in the order
    and by the rule of :class:`~reelrank.InMemorySearchIndex`: a ``#tag`` term counts
    towards its frequency but not towards the length (its plain word does)."""
    weights = {
        "title": config.title_weight,
        "description": config.description_weight,
        "hashtags": config.hashtag_weight,
        "sound": config.sound_weight,
        "creator": config.creator_weight,
    }
    frequencies: dict[str, float] = {}
    length = 0.0
    for field, terms in fields.items():
        weight = weights[field]
        for term in terms:
            frequencies[term] = frequencies.get(term, 0.0) + weight
            if not term.startswith("#"):
                length += weight
    return {term: tf for term, tf in frequencies.items() if tf > 0.0}, length


def _idf(documents: int, videos: int) -> float:
    """BM25's idf, as the in-memory index computes it."""
    return math.log(1.0 + (documents - videos + 0.5) / (videos + 0.5))


def _depths(group: dict[str, int], total: int) -> list[int]:
    """How many of each term's best postings to read for about ``total`` in the group.

    Even shares, what a short term cannot use going to the others (every posting when the
    group holds at most ``total``), at least 4 a term: the best scores sit in the rarer
    expansions (higher idf), so shares by document frequency would spend the reads on
    the commonest ones.
    """
    dfs = list(group.values())
    depths = [0] * len(dfs)
    left = total
    for rank, position in enumerate(sorted(range(len(dfs)), key=dfs.__getitem__)):
        depths[position] = min(dfs[position], max(4, math.ceil(left / (len(dfs) - rank))))
        left -= depths[position]
    return depths


def _first_pass_depths(group: dict[str, int], limit: int) -> list[int]:
    """How many of each term's best postings the first pass of a one-group search reads.

    Its ``limit``-th best score is the floor of the second pass, which reads every
    posting that can reach it: the higher the floor, the less it reads. One term reads a
    few more than ``limit``. A prefix's expansions read four times ``limit`` between
    them, evenly: the best scores sit in the rarer expansions (higher idf), so shares by
    document frequency would spend the pass on the commonest, lowest-scoring ones.
    """
    return _depths(group, limit + 16 if len(group) == 1 else 4 * limit)


def _statistics(row: Row[Any] | None) -> IndexStatistics | None:
    """The ``search_stats`` row read, or ``None`` when the index has none."""
    if row is None:
        return None
    return IndexStatistics(
        documents=int(row.documents),
        total_length=float(row.total_length),
        reference_length=float(row.reference_length),
        k1=float(row.k1),
        b=float(row.b),
    )


def _change_counts(connection: Connection, old: set[str], new: set[str]) -> None:
    """Move the ``search_terms`` counts from a video's ``old`` terms to its ``new`` ones."""
    changes = [{"term": term, "delta": -1} for term in old - new]
    changes += [{"term": term, "delta": 1} for term in new - old]
    if not changes:
        return
    changes.sort(key=lambda change: str(change["term"]))
    connection.execute(_COUNT_CHANGE, changes)
    dropped = [{"term": term} for term in sorted(old - new)]
    if dropped:
        connection.execute(_COUNT_DROP, dropped)


def _rum_hits(
    connection: Connection, params: dict[str, object], limit: int
) -> list[tuple[int, float]]:
    """The RUM top ``limit``, ties at the cut going to the lower ids.

    RUM returns equal distances in index order, so the scan is read on past the cut until
    the score drops (doubling what it reads), and the ties are then sorted by id.
    """
    fetch = limit + 1
    while True:
        rows = connection.execute(_POSTGRES_RUM, {**params, "limit": fetch}).all()
        hits = [(int(row.video_id), float(row.score)) for row in rows]
        if len(hits) < fetch or hits[-1][1] != hits[limit - 1][1]:
            break
        fetch *= 2
    hits.sort(key=lambda hit: (-hit[1], hit[0]))
    return hits[:limit]


class SqlSearchIndex(ReplicaReadStore):
    """A :class:`~reelrank.SearchIndex` in PostgreSQL or SQLite, ranked by BM25 over
    impact-ordered postings (``tsvector`` + GIN, or FTS5, without them).

    PostgreSQL keeps one ``tsvector`` per video with the title's terms at weight A,
    hashtags at B, creator and sound at C and the description at D, searched with
    ``@@``. SQLite keeps an FTS5 row per video (rowid = video id) and ranks with
    ``bm25`` weighted per column like :class:`~reelrank.SearchConfig`. Both keep, in
    ``search_terms``, how many videos hold each term; a prefix term becomes the OR of
    its ``config.max_prefix_expansions`` most frequent expansions.

    **Impact-ordered postings (migration 0006 on PostgreSQL, 0007 on SQLite).** Every
    write also keeps, per (term, video), the field-weighted term frequency and document
    length the in-memory index computes (``search_postings``) and the document count and
    total length (``search_stats``), so both dialects rank by the same BM25 as
    :class:`~reelrank.InMemorySearchIndex`, reading each term's postings best impact
    first. One term or one prefix: exact (a first pass over each expansion's best
    postings sets a floor, a second reads every posting that can reach it). Several
    terms: the best ``max(1000, 2 x limit)`` postings of the rarest term group are the
    candidates, scored exactly on every term (on SQLite in batches, best bound first,
    stopping, exact, once no video left can reach the top ``limit``); exact when the
    group holds no more postings, otherwise the best matches among those candidates
    (the recall loss is measured in the adapter's documentation). The
    postings hold the field weights of the writer's ``config``
    (:func:`~reelrank_postgres.bulk_load` and the migrations use the defaults); an index
    whose ``k1`` or ``b`` differ from those the postings were built with, or
    ``use_impact_postings=False``, ranks as below.

    **Without them** ranking is bounded by ``rank_pool``. Every query first reads how
    many videos hold each of its terms (``search_terms``); the smallest group total
    bounds its matches. When that bound is at most ``rank_pool``, every match is ranked
    exactly: a one-term (or one-prefix) query by the RUM index on PostgreSQL when
    migration 0005 could create it (the ``rum`` extension is installed on the server;
    ``use_rum_index=False`` turns it off), anything else like a larger query. Above it,
    only the ``rank_pool`` newest matches (highest video ids, read in primary-key order
    without computing a rank) are ranked, with ``ts_rank`` on PostgreSQL and ``bm25`` on
    SQLite, so such a query misses better-ranked older videos; the loss is measured in
    the adapter's documentation. ``ts_rank`` sees a prefix term as ``'prefix':*``
    (cheaper than the OR of its expansions), so an expansion beyond the cap that a
    matched video also holds adds to its score; it never makes a video match. RUM ranks
    the capped OR itself.

    **Before ranking** a search reads each term's count (a prefix's capped expansions)
    and, for the postings, the ``search_stats`` row: one statement on PostgreSQL. With
    ``config.term_statistics_seconds`` above 0 they are kept in this object (shared by
    the threads calling it) for that long, measured by ``clock`` (seconds from any
    fixed origin, :func:`time.monotonic` by default; tests pass a fake clock), so a
    search whose terms were read lately runs one statement, the ranking; :meth:`index`
    and :meth:`remove` drop them all, and writes from elsewhere show here at most that
    late (see :attr:`~reelrank.SearchConfig.term_statistics_seconds`).

    With a ``read_engine``, :meth:`search` runs on the replica; :meth:`index` and
    :meth:`remove` on the primary. Raises :class:`~reelrank.InvalidInputError` naming
    ``config`` or ``rank_pool`` when those are not a :class:`~reelrank.SearchConfig` and
    an int ``>= 1``.
    """

    _store = "search"

    def __init__(
        self,
        engine: Engine,
        *,
        read_engine: Engine | None = None,
        verify_schema: bool = True,
        config: SearchConfig | None = None,
        rank_pool: int = 2_000,
        use_rum_index: bool = True,
        use_impact_postings: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(engine, read_engine=read_engine, verify_schema=verify_schema)
        self._config = check_instance("config", config or SearchConfig(), SearchConfig)
        if isinstance(rank_pool, bool) or not isinstance(rank_pool, int) or rank_pool < 1:
            raise InvalidInputError("rank_pool", f"must be an int >= 1, got {rank_pool!r}")
        self._rank_pool = rank_pool
        self._use_rum_index = use_rum_index
        self._use_impact_postings = use_impact_postings
        self._postings: bool | None = None  # whether search_postings exists, read once
        self._rum: bool | None = None  # whether the RUM index exists, read at first search
        self._document_count = 0.0
        self._documents_read_at = -math.inf
        seconds = self._config.term_statistics_seconds
        self._kept = TermStatistics(seconds, _KEPT_TERMS, clock) if seconds > 0 else None

    def index(self, document: SearchDocument) -> None:
        """Add (or replace) a video's document."""
        check_instance("document", document, SearchDocument)
        try:
            self._index(document)
        finally:
            # After the write committed (or failed part-way): counts read before it may
            # miss its terms.
            if self._kept is not None:
                self._kept.drop_all()

    def _index(self, document: SearchDocument) -> None:
        fields = _fields(document)
        new = {term for terms in fields.values() for term in terms}
        video = {"video_id": document.video_id}
        with store_errors(self._store, "index"), self._engine.begin() as connection:
            if self._postgres:
                # Insert an empty row first, then lock it: two writers of one video take
                # turns, and each sees the terms the other left for the counts.
                created = connection.execute(
                    text(
                        "INSERT INTO search_documents (video_id, document) "
                        "VALUES (:video_id, ''::tsvector) ON CONFLICT (video_id) DO NOTHING "
                        "RETURNING video_id"
                    ),
                    video,
                ).first()
                old = connection.execute(
                    text(
                        "SELECT tsvector_to_array(document) FROM search_documents "
                        "WHERE video_id = :video_id FOR UPDATE"
                    ),
                    video,
                ).scalar_one()
                connection.execute(
                    text(
                        "UPDATE search_documents SET document = CAST(:document AS tsvector) "
                        "WHERE video_id = :video_id"
                    ),
                    {**video, "document": _tsvector_literal(fields)},
                )
                if self._has_postings(connection):
                    self._write_postings(connection, document.video_id, fields, created is not None)
                _change_counts(connection, set(old), new)
                return
            row = connection.execute(
                text(
                    f"SELECT {', '.join(_FTS_COLUMNS)} FROM search_documents "
                    "WHERE rowid = :video_id"
                ),
                video,
            ).first()
            connection.execute(text("DELETE FROM search_documents WHERE rowid = :video_id"), video)
            values = {name: " ".join(_fts_token(term) for term in fields[name]) for name in fields}
            connection.execute(
                text(
                    f"INSERT INTO search_documents (rowid, {', '.join(_FTS_COLUMNS)}) "
                    f"VALUES (:video_id, {', '.join(':' + name for name in _FTS_COLUMNS)})"
                ),
                {"video_id": document.video_id, **values},
            )
            if self._has_postings(connection):
                self._write_postings(connection, document.video_id, fields, row is None)
            _change_counts(connection, _fts_terms(row) if row else set(), new)

    def remove(self, video_id: int) -> bool:
        """Drop a video's document; ``True`` if it was indexed."""
        check_id("video_id", video_id)
        try:
            return self._remove(video_id)
        finally:
            if self._kept is not None:
                self._kept.drop_all()

    def _remove(self, video_id: int) -> bool:
        video = {"video_id": video_id}
        with store_errors(self._store, "remove"), self._engine.begin() as connection:
            if self._postgres:
                removed = connection.execute(
                    text(
                        "DELETE FROM search_documents WHERE video_id = :video_id "
                        "RETURNING tsvector_to_array(document)"
                    ),
                    video,
                ).scalar()
                if removed is None:
                    return False
                if self._has_postings(connection):
                    self._remove_postings(connection, video_id)
                _change_counts(connection, set(removed), set())
                return True
            row = connection.execute(
                text(
                    f"SELECT {', '.join(_FTS_COLUMNS)} FROM search_documents "
                    "WHERE rowid = :video_id"
                ),
                video,
            ).first()
            if row is None:
                return False
            connection.execute(text("DELETE FROM search_documents WHERE rowid = :video_id"), video)
            if self._has_postings(connection):
                self._remove_postings(connection, video_id)
            _change_counts(connection, _fts_terms(row), set())
            return True

    def _has_postings(self, connection: Connection) -> bool:
        """Whether ``search_postings`` exists (PostgreSQL at migration 0006 or later,
        SQLite at 0007 or later)."""
        if self._postings is None:
            found = connection.execute(
                text("SELECT to_regclass('search_postings') IS NOT NULL")
                if self._postgres
                else text(
                    "SELECT count(*) FROM sqlite_master "
                    "WHERE type = 'table' AND name = 'search_postings'"
                )
            ).scalar_one()
            self._postings = bool(found)
        return self._postings

    def _remove_postings(self, connection: Connection, video_id: int) -> None:
        """Drop a video's postings and take it out of the whole-index statistics."""
        lengths = connection.execute(_POSTINGS_DELETE, {"video_id": video_id}).scalars().all()
        connection.execute(
            _STATS_CHANGE if self._postgres else _SQLITE_STATS_CHANGE,
            {
                "documents": -1,
                "removed": max(lengths, default=0.0),
                "added": 0.0,
                "reference": 0.0,
                "k1": self._config.k1,
                "b": self._config.b,
            },
        )

    def _write_postings(
        self,
        connection: Connection,
        video_id: int,
        fields: dict[str, list[str]],
        created: bool,
    ) -> None:
        """Replace a video's postings and move the whole-index statistics with them (the
        statistics row before the term counts: every writer locks in that order)."""
        frequencies, length = _weighted(fields, self._config)
        lengths = connection.execute(_POSTINGS_DELETE, {"video_id": video_id}).scalars().all()
        connection.execute(
            _STATS_CHANGE if self._postgres else _SQLITE_STATS_CHANGE,
            {
                "documents": 1 if created else 0,
                "removed": max(lengths, default=0.0),
                "added": length,
                "reference": length,
                "k1": self._config.k1,
                "b": self._config.b,
            },
        )
        if frequencies and not self._postgres:
            connection.execute(
                _SQLITE_POSTINGS_INSERT,
                [
                    {"term": term, "tf": tf, "video_id": video_id, "length": length}
                    for term, tf in frequencies.items()
                ],
            )
        elif frequencies:
            connection.execute(
                _POSTINGS_INSERT,
                {
                    "video_id": video_id,
                    "length": length,
                    "terms": list(frequencies),
                    "tfs": list(frequencies.values()),
                },
            )

    def _expand(self, connection: Connection, term: str, prefix: bool) -> dict[str, int]:
        """The indexed terms ``term`` matches, with how many videos hold each: itself, or
        (a ``prefix``) its capped expansions; empty when no indexed term matches."""
        if not prefix:
            found = connection.execute(_TERM_COUNT, {"term": term}).scalar()
            return {term: int(found)} if found else {}
        rows = connection.execute(
            _EXPANSIONS,
            {
                "low": term,
                "high": term + _PREFIX_END,
                "cap": self._config.max_prefix_expansions,
            },
        ).all()
        return {row.term: int(row.videos) for row in rows}

    def search(self, query: ParsedQuery, *, limit: int) -> list[tuple[int, float]]:
        """Videos matching every term, best score first (ties: lower id first)."""
        check_instance("query", query, ParsedQuery)
        check_limit("limit", limit)
        if limit == 0:
            return []
        with store_errors(self._store, "search"), self._reader.connect() as connection:
            impact = self._use_impact_postings and self._has_postings(connection)
            counts, statistics = self._term_statistics(connection, query.terms, impact)
            if not all(counts):
                return []  # a term (or prefix) no indexed video holds matches no video
            if impact:
                impact_hits = self._impact_search(connection, counts, statistics, limit)
                if impact_hits is not None:
                    return impact_hits
            if self._postgres:
                statement, params = self._postgres_statement(connection, query, counts, limit)
            else:
                statement = _SQLITE_BOUNDED
                params = {"query": _fts_query(counts), "limit": limit, "pool": self._rank_pool}
            if statement is _POSTGRES_RUM:
                hits = _rum_hits(connection, params, limit)
            else:
                rows = connection.execute(statement, params).all()
                hits = [(int(row.video_id), float(row.score)) for row in rows]
        return hits

    def _term_statistics(
        self, connection: Connection, terms: tuple[QueryTerm, ...], statistics: bool
    ) -> tuple[list[dict[str, int]], IndexStatistics | None]:
        """Each term's matching indexed terms with their counts (see :meth:`_expand`),
        and the index statistics when ``statistics`` (the postings rank): kept ones
        younger than ``term_statistics_seconds``, the rest read in one statement on
        PostgreSQL."""
        keys: list[TermKey] = [(term.text, term.prefix) for term in terms]
        kept = self._kept
        if kept is None:
            read, read_statistics = self._read_term_statistics(
                connection, list(dict.fromkeys(keys)), statistics
            )
            return [read[key] for key in keys], read_statistics[0] if read_statistics else None
        found = kept.counts(keys)
        have_statistics, index_statistics = kept.statistics()
        missing = list(dict.fromkeys(key for key in keys if key not in found))
        if missing or (statistics and not have_statistics):
            # Taken before the read: a write of this process during it makes it stale.
            generation = kept.generation()
            read_at = kept.now()
            read, read_statistics = self._read_term_statistics(connection, missing, statistics)
            found.update(read)
            if read_statistics is not None:
                index_statistics = read_statistics[0]
            kept.put(generation, read_at, read, read_statistics)
        return [found[key] for key in keys], index_statistics

    def _read_term_statistics(
        self, connection: Connection, keys: list[TermKey], statistics: bool
    ) -> tuple[dict[TermKey, dict[str, int]], tuple[IndexStatistics | None] | None]:
        """Read ``keys``' counts, and the index statistics (as a 1-tuple) when asked."""
        if not self._postgres:
            counts = {key: self._expand(connection, *key) for key in keys}
            if not statistics:
                return counts, None
            row = connection.execute(_STATS).first()
            return counts, (_statistics(row),)
        counts = {key: {} for key in keys}
        read: IndexStatistics | None = None
        rows = connection.execute(
            _TERM_COUNTS_AND_STATISTICS if statistics else _TERM_COUNTS,
            {
                "texts": [text for text, _ in keys],
                "prefixes": [prefix for _, prefix in keys],
                "end": _PREFIX_END,
                "cap": self._config.max_prefix_expansions,
            },
        ).all()
        for row in rows:
            if row.ord == 0:
                read = _statistics(row)
            else:
                counts[keys[row.ord - 1]][row.term] = int(row.videos)
        return counts, ((read,) if statistics else None)

    def _impact_search(
        self,
        connection: Connection,
        counts: list[dict[str, int]],
        stats: IndexStatistics | None,
        limit: int,
    ) -> list[tuple[int, float]] | None:
        """BM25 top ``limit`` from the impact-ordered postings, or ``None`` when they were
        built with other BM25 parameters than this index's config (then ``ts_rank``)."""
        if stats is None or stats.documents <= 0:
            return []
        config = self._config
        if (stats.k1, stats.b) != (config.k1, config.b) or stats.reference_length <= 0:
            return None
        documents = int(stats.documents)
        mean = float(stats.total_length) / documents or 1.0
        # The rarest group first, as the in-memory index sums them (a stable sort).
        groups = sorted(counts, key=lambda group: sum(group.values()))
        terms = [term for group in groups for term in group]
        idfs = [_idf(documents, df) for group in groups for df in group.values()]
        params: dict[str, object] = {
            "terms": terms,
            "groups": [number for number, group in enumerate(groups) for _ in group],
            "idfs": idfs,
            "k1": config.k1,
            "b": config.b,
            "mean": mean,
            "limit": limit,
        }
        # A score at the current mean length exceeds the one the impact was stored with
        # by at most mean / reference_length (only the length term of BM25 moves).
        slack = max(1.0, mean / float(stats.reference_length)) * _IMPACT_SLACK
        if len(groups) == 1 and self._postgres:
            rows = connection.execute(
                _ONE_TERM if len(groups[0]) == 1 else _ONE_GROUP,
                {
                    **params,
                    "depths": _first_pass_depths(groups[0], limit),
                    "offset": limit - 1,
                    "slack": slack,
                    "cap": _MAX_SECOND_PASS,
                },
            ).all()
            return [(int(row.video_id), float(row.score)) for row in rows]
        scoring = Scoring(
            groups=[list(group) for group in groups],
            idfs=dict(zip(terms, idfs, strict=True)),
            k1=config.k1,
            b=config.b,
            mean_length=mean,
            slack=slack,
        )
        if len(groups) == 1:
            return one_group(
                SqlitePostings(connection),
                scoring,
                _first_pass_depths(groups[0], limit),
                limit,
                _MAX_SECOND_PASS,
            )
        budget = max(_WALK_POSTINGS, _WALK_PER_HIT * limit)
        depths = _depths(groups[0], budget)
        if self._postgres:
            # One statement: scored in batches with the early stop SQLite uses, a
            # statement per batch cost more than the look-ups it saved (at 1M videos,
            # limit 20: p50 9.1 to 10.1 ms in batches, 7.5 to 7.8 ms in one, load 6.9).
            return postgres_walk(connection, scoring, depths, budget, limit)
        first_batch = min(budget, max(_FIRST_BATCH, _WALK_PER_HIT * limit))
        return several_groups(
            SqlitePostings(connection), scoring, depths, budget, first_batch, limit
        )

    def _uses_rum(self, connection: Connection) -> bool:
        if self._rum is None:
            found = connection.execute(
                text("SELECT to_regclass(:name) IS NOT NULL"), {"name": _RUM_INDEX}
            ).scalar_one()
            self._rum = bool(found)
        return self._rum

    def _documents(self, connection: Connection) -> float:
        """About how many videos are indexed (the planner's estimate, read once a minute)."""
        now = time.monotonic()
        if now - self._documents_read_at > _DOCUMENT_COUNT_SECONDS:
            self._document_count = float(connection.execute(_DOCUMENT_COUNT).scalar() or 0.0)
            self._documents_read_at = now
        return self._document_count

    def _postgres_statement(
        self,
        connection: Connection,
        query: ParsedQuery,
        counts: list[dict[str, int]],
        limit: int,
    ) -> tuple[TextClause, dict[str, object]]:
        # At most this many videos match: the rarest group's videos, counted with repeats
        # when a video holds several of its terms.
        driver = min(counts, key=lambda group: sum(group.values()))
        bound = sum(driver.values())
        tsquery = _tsquery_literal(counts)
        # Reading the matches costs about ``bound`` rows; walking back from the newest
        # video until the pool is full costs about pool x documents / matches. The walk is
        # cheaper above the square root of pool x documents.
        few = bound <= max(
            self._rank_pool, math.sqrt(self._rank_pool * self._documents(connection))
        )
        # RUM ranks one term fast; an OR of many it merges slowly (1.4 s for 64 at 1M).
        single = len(counts) == 1 and len(driver) == 1
        if few and single and self._use_rum_index and self._uses_rum(connection):
            return _POSTGRES_RUM, {"query": tsquery, "limit": limit}
        params: dict[str, object] = {
            "driver": _tsquery_literal([driver]),
            "query": tsquery,
            # ts_rank costs in proportion to the query's lexemes: a 64-way OR ranks
            # about twice as slowly as the one prefix lexeme it came from.
            "rank_query": _prefix_tsquery(query.terms),
            "limit": limit,
            "pool": self._rank_pool,
        }
        return (_POSTGRES_MATCHES_FIRST if few else _POSTGRES_NEWEST_FIRST), params
