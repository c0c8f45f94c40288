"""Full-text search in SQL: a ``tsvector`` with a GIN index on PostgreSQL, FTS5 on SQLite.

Both dialects index the terms of reelrank's own :func:`~reelrank.tokenize` (not a
database text-search configuration), so a document matches exactly the queries it
matches in :class:`~reelrank.InMemorySearchIndex`: no stemming, no stop words, ``#tag``
terms only match hashtags. Only the scores differ: ``ts_rank`` on PostgreSQL, FTS5's
``bm25`` on SQLite, BM25 in memory.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import text

from reelrank.models import ParsedQuery, QueryTerm, SearchDocument
from reelrank.stores import tokenize
from reelrank.stores.adapter import check_id, check_limit

from ._base import ReplicaReadStore, check_instance
from ._errors import store_errors

__all__ = ["SqlSearchIndex"]

# ts_rank's default weights are {D: 0.1, C: 0.2, B: 0.4, A: 1.0}.
_POSTGRES_WEIGHTS = {"title": "A", "hashtags": "B", "creator": "C", "sound": "C"}
_POSTGRES_DEFAULT_WEIGHT = "D"
_MAX_POSITION = 16_383  # tsvector positions above this are clamped by PostgreSQL

# FTS5 bm25 column weights, in column order, following SearchConfig's field weights.
_FTS_COLUMNS = ("title", "description", "hashtags", "sound", "creator")
_FTS_WEIGHTS = "3.0, 1.0, 2.0, 1.5, 2.0"


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


def _tsquery_literal(terms: Iterable[QueryTerm]) -> str:
    return " & ".join(_quote(term.text) + (":*" if term.prefix else "") for term in terms)


def _fts_token(term: str) -> str:
    # FTS5's tokenizers would split "#tag" and fold accents; hex of the UTF-8 bytes keeps
    # every term one token, and a prefix of a term is a prefix of its token.
    return "x" + term.encode().hex()


def _fts_query(terms: Iterable[QueryTerm]) -> str:
    return " AND ".join(
        f'"{_fts_token(term.text)}"' + ("*" if term.prefix else "") for term in terms
    )


class SqlSearchIndex(ReplicaReadStore):
    """A :class:`~reelrank.SearchIndex` in PostgreSQL (``tsvector`` + GIN) or SQLite (FTS5).

    PostgreSQL keeps one ``tsvector`` per video with the title's terms at weight A,
    hashtags at B, creator and sound at C and the description at D, searched with
    ``@@`` and ranked with ``ts_rank``; prefix terms become ``'term':*``. SQLite keeps
    an FTS5 row per video (rowid = video id) and ranks with ``bm25`` weighted per
    column like :class:`~reelrank.SearchConfig`.

    With a ``read_engine``, :meth:`search` runs on the replica; :meth:`index` and
    :meth:`remove` on the primary.
    """

    _store = "search"

    def index(self, document: SearchDocument) -> None:
        """Add (or replace) a video's document."""
        check_instance("document", document, SearchDocument)
        fields = _fields(document)
        with store_errors(self._store, "index"), self._engine.begin() as connection:
            if self._postgres:
                connection.execute(
                    text(
                        "INSERT INTO search_documents (video_id, document) "
                        "VALUES (:video_id, CAST(:document AS tsvector)) "
                        "ON CONFLICT (video_id) DO UPDATE SET document = EXCLUDED.document"
                    ),
                    {"video_id": document.video_id, "document": _tsvector_literal(fields)},
                )
                return
            connection.execute(
                text("DELETE FROM search_documents WHERE rowid = :video_id"),
                {"video_id": document.video_id},
            )
            values = {name: " ".join(_fts_token(term) for term in fields[name]) for name in fields}
            connection.execute(
                text(
                    f"INSERT INTO search_documents (rowid, {', '.join(_FTS_COLUMNS)}) "
                    f"VALUES (:video_id, {', '.join(':' + name for name in _FTS_COLUMNS)})"
                ),
                {"video_id": document.video_id, **values},
            )

    def remove(self, video_id: int) -> bool:
        """Drop a video's document; ``True`` if it was indexed."""
        check_id("video_id", video_id)
        column = "video_id" if self._postgres else "rowid"
        with store_errors(self._store, "remove"), self._engine.begin() as connection:
            removed = connection.execute(
                text(f"DELETE FROM search_documents WHERE {column} = :video_id"),
                {"video_id": video_id},
            ).rowcount
        return bool(removed)

    def search(self, query: ParsedQuery, *, limit: int) -> list[tuple[int, float]]:
        """Videos matching every term, best score first (ties: lower id first)."""
        check_instance("query", query, ParsedQuery)
        check_limit("limit", limit)
        if limit == 0:
            return []
        if self._postgres:
            statement = text(
                "SELECT video_id, ts_rank(document, query) AS score "
                "FROM search_documents, CAST(:query AS tsquery) AS query "
                "WHERE document @@ query ORDER BY score DESC, video_id LIMIT :limit"
            )
            params = {"query": _tsquery_literal(query.terms), "limit": limit}
        else:
            statement = text(
                f"SELECT rowid AS video_id, -bm25(search_documents, {_FTS_WEIGHTS}) AS score "
                "FROM search_documents WHERE search_documents MATCH :query "
                "ORDER BY score DESC, video_id LIMIT :limit"
            )
            params = {"query": _fts_query(query.terms), "limit": limit}
        with store_errors(self._store, "search"), self._reader.connect() as connection:
            rows = connection.execute(statement, params).all()
        return [(int(row.video_id), float(row.score)) for row in rows]
