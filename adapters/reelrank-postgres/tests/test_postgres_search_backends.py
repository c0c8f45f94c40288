"""The three search backends on one benchmark catalog: the same matches everywhere.

A 2,000-video catalog and 120 queries from ``benchmarks/search_corpus.py`` (the
benchmarks' own seeded generator) are searched in memory, on PostgreSQL and on SQLite.
The match sets must be identical; the top 20 may differ only through the scoring
functions, which differ by design (BM25 in memory, ``ts_rank`` on PostgreSQL, FTS5's
``bm25`` on SQLite): where a query matches at most 20 videos the top 20 are the same
set, and the overlap elsewhere stays at the level the adapter's documentation gives.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_support import sqlite_engine
from reelrank_postgres import SqlSearchIndex, migrate
from sqlalchemy import Engine, text

from reelrank import (
    InMemorySearchIndex,
    SearchConfig,
    SearchDocument,
    parse_query,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
from search_corpus import make_corpus, query_mix

pytestmark = pytest.mark.integration

_VIDEOS = 2_000
_QUERIES = 120
_TOP = 20
# Mean share of the in-memory top 20 that each backend's top 20 holds, over the 47
# queries here matching more than 20 videos: measured 0.78 (SQLite) and 0.40 (PostgreSQL),
# rounded down. The floors catch a ranking drifting away from BM25 without pinning either
# engine's scores; the query mix is seeded, so the figures do not move between runs.
_OVERLAP_FLOOR = {"sqlite": 0.75, "postgresql": 0.35}
# A cap the catalog's three-letter prefixes exceed, so the choice of expansions counts.
_SMALL_CAP = 4


def _documents(size: int) -> list[SearchDocument]:
    corpus = make_corpus(size)
    return [
        SearchDocument(
            video_id=video_id,
            title=title,
            hashtags=hashtags,
            sound_name=sound,
            creator_name=creator,
        )
        for video_id, title, hashtags, sound, creator in zip(
            corpus.video_ids.tolist(),
            corpus.titles,
            corpus.hashtags,
            corpus.sound_names,
            corpus.creator_names,
            strict=True,
        )
    ]


_DOCUMENTS = _documents(_VIDEOS)
_PARSED = [
    parse_query(query.text, as_you_type=query.as_you_type)
    for query in query_mix(make_corpus(_VIDEOS), _QUERIES)
]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def loaded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """A database of each dialect holding the catalog, indexed through the public API."""
    if request.param == "sqlite":
        engine = sqlite_engine(tmp_path_factory.mktemp("search") / "search.db")
        migrate(engine)
    else:
        engine = request.getfixturevalue("postgres_engine")
        with engine.begin() as connection:
            connection.execute(text("TRUNCATE search_documents, search_terms"))
    index = SqlSearchIndex(engine)
    for document in _DOCUMENTS:
        index.index(document)
    yield engine
    if request.param == "sqlite":
        engine.dispose()


def _memory(config: SearchConfig | None = None) -> InMemorySearchIndex:
    memory = InMemorySearchIndex(config)
    for document in _DOCUMENTS:
        memory.index(document)
    return memory


def _ids(hits: list[tuple[int, float]]) -> list[int]:
    return [video for video, _ in hits]


def _is_ranked(hits: list[tuple[int, float]]) -> bool:
    keys = [(-score, video) for video, score in hits]
    return keys == sorted(keys)


def test_every_query_matches_the_same_videos_as_in_memory(loaded: Engine) -> None:
    memory = _memory()
    # A pool of the whole catalog: PostgreSQL ranks every match, as SQLite does.
    sql = SqlSearchIndex(loaded, rank_pool=_VIDEOS)
    overlaps: list[float] = []
    for query in _PARSED:
        want = memory.search(query, limit=_VIDEOS)
        got = sql.search(query, limit=_VIDEOS)
        assert set(_ids(got)) == set(_ids(want)), query
        assert _is_ranked(got)
        want_top, got_top = set(_ids(want[:_TOP])), set(_ids(got[:_TOP]))
        if len(want) <= _TOP:
            assert got_top == want_top, query
        else:
            overlaps.append(len(got_top & want_top) / _TOP)
    assert len(overlaps) >= _QUERIES // 4  # enough queries match more than the top 20
    assert sum(overlaps) / len(overlaps) >= _OVERLAP_FLOOR[loaded.dialect.name]


def test_a_binding_prefix_cap_picks_the_same_expansions(loaded: Engine) -> None:
    config = SearchConfig(max_prefix_expansions=_SMALL_CAP)
    memory = _memory(config)
    sql = SqlSearchIndex(loaded, config=config, rank_pool=_VIDEOS)
    uncapped = SqlSearchIndex(loaded, rank_pool=_VIDEOS)
    narrowed = 0
    for query in _PARSED:
        if not any(term.prefix for term in query.terms):
            continue
        got = set(_ids(sql.search(query, limit=_VIDEOS)))
        assert got == set(_ids(memory.search(query, limit=_VIDEOS))), query
        narrowed += len(got) < len(uncapped.search(query, limit=_VIDEOS))
    assert narrowed > 0  # the cap did bind, so the expansions' order was exercised


def test_postgres_ranks_the_newest_pool_of_matches_exactly(loaded: Engine) -> None:
    if loaded.dialect.name != "postgresql":
        pytest.skip("SQLite ranks every match")
    pool = 200
    bounded = SqlSearchIndex(loaded, rank_pool=pool)
    exact = SqlSearchIndex(loaded, rank_pool=_VIDEOS)
    truncated = 0
    for query in _PARSED:
        ranked = exact.search(query, limit=_VIDEOS)
        newest = set(sorted(_ids(ranked), reverse=True)[:pool])
        # Reference: the full ranking restricted to the pool's videos keeps its order.
        want = [hit for hit in ranked if hit[0] in newest][:_TOP]
        got = bounded.search(query, limit=_TOP)
        assert _ids(got) == _ids(want), query
        assert [score for _, score in got] == pytest.approx([score for _, score in want])
        truncated += len(ranked) > pool
    assert truncated > 0
