"""The per-term video counts behind the prefix cap, and the search index's settings."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from reelrank_postgres import SqlSearchIndex, downgrade, migrate
from sqlalchemy import Engine, text

from reelrank import InMemorySearchIndex, InvalidInputError, ParsedQuery, QueryTerm, SearchDocument

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
from search_corpus import make_corpus

pytestmark = pytest.mark.integration


def _documents(size: int) -> list[SearchDocument]:
    return make_corpus(size).documents()


def test_counts_follow_replacements_and_removals_and_the_migration_rebuilds_them(
    engine: Engine,
) -> None:
    index = SqlSearchIndex(engine)
    documents = _documents(300)
    for document in documents:
        index.index(document)
    for document in documents[:50]:
        index.index(document.model_copy(update={"title": "replaced " + document.title[:20]}))
    for document in documents[50:100]:
        assert index.remove(document.video_id)
    assert not index.remove(documents[60].video_id)

    def counts() -> dict[str, int]:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT term, videos FROM search_terms")).all()
        return {row.term: row.videos for row in rows}

    memory = InMemorySearchIndex()
    for document in documents[:50]:
        memory.index(document.model_copy(update={"title": "replaced " + document.title[:20]}))
    for document in documents[100:]:
        memory.index(document)
    kept = counts()
    assert all(videos > 0 for videos in kept.values())
    # Each counted term matches exactly as many videos in memory as its count says.
    for term, videos in list(kept.items())[:200]:
        query = ParsedQuery(terms=(QueryTerm(text=term, prefix=False),))
        assert len(memory.search(query, limit=1_000)) == videos, term
    # Rebuilt from the documents alone, the counts come out the same.
    downgrade(engine, "0002")
    migrate(engine)
    assert counts() == kept


def _postings(engine: Engine) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    with engine.connect() as connection:
        postings = connection.execute(
            text("SELECT term, video_id, tf, length FROM search_postings ORDER BY video_id, term")
        ).all()
        stats = connection.execute(text("SELECT documents, total_length FROM search_stats")).all()
    return [tuple(row) for row in postings], [tuple(row) for row in stats]


def test_the_migration_back_fills_the_postings_the_writes_keep(engine: Engine) -> None:
    """The migration that adds the postings rebuilds from the documents the postings and
    statistics that indexing, replacing and removing wrote: 0006 from the ``tsvector``
    documents on PostgreSQL, 0007 from the FTS5 columns on SQLite. Without a catalog row
    the sound and the creator share a weight label in the ``tsvector``, so on PostgreSQL
    these documents have no sound; FTS5 keeps every field apart."""
    postgres = engine.dialect.name == "postgresql"
    index = SqlSearchIndex(engine)
    documents = [
        document.model_copy(
            update={"description": document.title}
            | ({"sound_name": ""} if postgres else {"sound_name": document.title[:12]})
        )
        for document in _documents(300)
    ]
    for document in documents:
        index.index(document)
    for document in documents[:30]:
        index.index(document.model_copy(update={"title": "replaced " + document.title[:20]}))
    for document in documents[30:60]:
        assert index.remove(document.video_id)
    written = _postings(engine)
    assert len(written[0]) > 1_000 and written[1][0][0] == 270
    downgrade(engine, "0005" if postgres else "0006")
    migrate(engine)
    assert _postings(engine) == written


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("rank_pool", {"rank_pool": 0}),
        ("rank_pool", {"rank_pool": True}),
        ("config", {"config": 3}),
    ],
)
def test_bad_settings_are_refused_by_name(
    engine: Engine, field: str, kwargs: dict[str, object]
) -> None:
    with pytest.raises(InvalidInputError) as info:
        SqlSearchIndex(engine, **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
