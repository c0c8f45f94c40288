"""The three search backends on one benchmark catalog: the same matches everywhere.

A 2,000-video catalog and 120 queries from ``benchmarks/search_corpus.py`` (the
benchmarks' own seeded generator) are searched in memory, on PostgreSQL and on SQLite.
The match sets must be identical. The impact-ordered postings (PostgreSQL and SQLite)
rank by the in-memory BM25, so there the top results must be the same too (a query of
several terms cut short by its walk: the same ranking of the matches among its
candidates). The other paths' scores differ by design (``ts_rank`` on PostgreSQL, FTS5's
``bm25`` on SQLite, both without the postings): where a query matches at most 20 videos
the top 20 are the same set, and the overlap elsewhere stays at the level the adapter's
documentation gives."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_support import sqlite_engine
from reelrank_postgres import SqlSearchIndex, migrate
from sqlalchemy import Engine, text

from reelrank import (
    InMemorySearchIndex,
    ParsedQuery,
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
_OVERLAP_FLOOR = {"sqlite": 0.75, "postgresql": 0.35, "postgresql-gin": 0.35}
# A cap the catalog's three-letter prefixes exceed, so the choice of expansions counts.
_SMALL_CAP = 4


def _documents(size: int) -> list[SearchDocument]:
    return make_corpus(size).documents()


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
            connection.execute(
                text("TRUNCATE search_documents, search_terms, search_postings, search_stats")
            )
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


@pytest.mark.parametrize("use_rum_index", [True, False], ids=["rum", "gin"])
def test_every_query_matches_the_same_videos_as_in_memory(
    loaded: Engine, use_rum_index: bool
) -> None:
    if loaded.dialect.name == "sqlite" and not use_rum_index:
        pytest.skip("SQLite has one path")
    memory = _memory()
    # A pool of the whole catalog: PostgreSQL's GIN path ranks every match, as SQLite
    # does; the RUM path ranks every match in the index.
    sql = SqlSearchIndex(
        loaded, rank_pool=_VIDEOS, use_rum_index=use_rum_index, use_impact_postings=False
    )
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
    floor = _OVERLAP_FLOOR[loaded.dialect.name if use_rum_index else "postgresql-gin"]
    assert sum(overlaps) / len(overlaps) >= floor


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
    bounded = SqlSearchIndex(loaded, rank_pool=pool, use_rum_index=False, use_impact_postings=False)
    exact = SqlSearchIndex(
        loaded, rank_pool=_VIDEOS, use_rum_index=False, use_impact_postings=False
    )
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


def _every_match_ranked(engine: Engine, query: ParsedQuery, cap: int) -> list[tuple[int, float]]:
    """Every match scored one by one with RUM's rank (``1 / (document <=> query)``) on the
    heap, index scans off, worked out without the adapter: each prefix becomes the OR of
    its ``cap`` most frequent terms (ties alphabetical), read here from ``search_terms``."""
    with engine.begin() as connection:
        connection.execute(text("SET LOCAL enable_indexscan = off"))
        groups = []
        for term in query.terms:
            if not term.prefix:
                groups.append([term.text])
                continue
            found = connection.execute(
                text(
                    "SELECT term FROM search_terms WHERE starts_with(term, :prefix) "
                    "AND videos > 0 ORDER BY videos DESC, term LIMIT :cap"
                ),
                {"prefix": term.text, "cap": cap},
            ).scalars()
            groups.append(list(found))
        if not all(groups):
            return []
        lexemes = [
            "("
            + " | ".join("'" + t.replace("\\", "\\\\").replace("'", "''") + "'" for t in g)
            + ")"
            for g in groups
        ]
        rows = connection.execute(
            text(
                "SELECT video_id, 1.0 / (document <=> CAST(:query AS tsquery)) AS score "
                "FROM search_documents WHERE document @@ CAST(:query AS tsquery)"
            ),
            {"query": " & ".join(lexemes)},
        ).all()
    return sorted(((row.video_id, row.score) for row in rows), key=lambda hit: (-hit[1], hit[0]))


def test_rum_returns_the_exact_top_20_of_every_match(loaded: Engine) -> None:
    """The RUM index returns the 20 best of all matches by its rank, not an approximation
    (one-term queries: the adapter sends only those to RUM)."""
    if loaded.dialect.name != "postgresql":
        pytest.skip("RUM is a PostgreSQL index")
    rum = SqlSearchIndex(loaded, rank_pool=_VIDEOS, use_impact_postings=False)
    cap = SearchConfig().max_prefix_expansions
    beyond_top = 0
    for query in [query for query in _PARSED if _one_plain_term(query)]:
        want = _every_match_ranked(loaded, query, cap)
        got = rum.search(query, limit=_TOP)
        assert [score for _, score in got] == pytest.approx(
            [score for _, score in want[:_TOP]], rel=1e-5
        ), query
        # ids may differ only among videos tied (to float32) with the 20th score
        if len(want) > _TOP:
            beyond_top += 1
            boundary = want[_TOP - 1][1]
            above = {video for video, score in want if score > boundary * (1 + 1e-5)}
            assert above <= set(_ids(got)), query
        else:
            assert set(_ids(got)) == set(_ids(want)), query
    assert beyond_top >= _QUERIES // 8


def test_without_the_rum_index_search_falls_back_to_gin(loaded: Engine) -> None:
    """Dropping the RUM index (a server without the extension) switches new indexes to the
    bounded GIN path; the matches stay the same."""
    if loaded.dialect.name != "postgresql":
        pytest.skip("RUM is a PostgreSQL index")
    gin = SqlSearchIndex(loaded, use_rum_index=False, use_impact_postings=False)
    with_rum = [
        SqlSearchIndex(loaded, use_impact_postings=False).search(query, limit=_TOP)
        for query in _PARSED
    ]
    with loaded.begin() as connection:
        connection.execute(text("DROP INDEX ix_search_documents_rum"))
    try:
        detected = SqlSearchIndex(loaded, use_impact_postings=False)
        fallback = [detected.search(query, limit=_TOP) for query in _PARSED]
        assert fallback == [gin.search(query, limit=_TOP) for query in _PARSED]
        assert fallback != with_rum  # the paths rank differently, so the switch shows
    finally:
        with loaded.begin() as connection:
            connection.execute(
                text(
                    "CREATE INDEX ix_search_documents_rum ON search_documents "
                    "USING rum (document rum_tsvector_ops) WHERE video_id > 0"
                )
            )


def _one_plain_term(query: ParsedQuery) -> bool:
    return len(query.terms) == 1 and not query.terms[0].prefix


def test_rum_ranks_small_match_sets_and_the_newest_pool_of_large_ones(loaded: Engine) -> None:
    """With RUM, a one-term query with at most ``rank_pool`` matches is ranked exactly in
    the index; one with more matches than the walk-back threshold (at most
    sqrt(pool x videos)), and every query of several terms, the same as without RUM."""
    if loaded.dialect.name != "postgresql":
        pytest.skip("RUM is a PostgreSQL index")
    pool = 200
    walk_back_above = math.sqrt(pool * _VIDEOS)  # the adapter's threshold for the catalog
    hybrid = SqlSearchIndex(loaded, rank_pool=pool, use_impact_postings=False)
    exact = SqlSearchIndex(loaded, rank_pool=_VIDEOS, use_impact_postings=False)
    without_rum = SqlSearchIndex(
        loaded, rank_pool=pool, use_rum_index=False, use_impact_postings=False
    )
    memory = _memory()
    in_rum = like_gin = 0
    for query in _PARSED:
        matches = len(memory.search(query, limit=_VIDEOS))
        got = hybrid.search(query, limit=_TOP)
        if _one_plain_term(query) and matches <= pool:
            in_rum += 1  # a plain term's count is its number of matches
            assert got == exact.search(query, limit=_TOP), query
        elif len(query.terms) > 1 or (_one_plain_term(query) and matches > walk_back_above):
            # (a lone prefix goes to RUM when it expands to one term: left out here)
            like_gin += 1
            assert got == without_rum.search(query, limit=_TOP), query
    assert in_rum > 0 and like_gin > 0


def _assert_same_ranking(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> None:
    """The same hits in the same order with the same BM25 scores, except that videos whose
    scores differ by rounding only (the in-memory kernel compiles with fast math) may
    swap places; the last place is compared by score (a tie there may pick either video)."""
    assert len(got) == len(want)
    assert [score for _, score in got] == pytest.approx([score for _, score in want], rel=1e-9)
    boundary = want[-1][1] if want else 0.0
    above = {video for video, score in want if score > boundary * (1 + 1e-9)}
    assert above <= set(_ids(got))


def test_impact_postings_rank_exactly_as_in_memory(loaded: Engine) -> None:
    """With the impact-ordered postings both dialects rank by the in-memory index's BM25:
    the same matches and the same top ``limit`` for every query kind (a query of several
    terms here reads its rarest group's postings in full: the catalog is small)."""
    memory = _memory()
    sql = SqlSearchIndex(loaded)
    for query in _PARSED:
        want = memory.search(query, limit=_VIDEOS)
        got = sql.search(query, limit=_VIDEOS)
        assert set(_ids(got)) == set(_ids(want)), query
        assert _is_ranked(got)
        for limit in (1, _TOP, 100):
            _assert_same_ranking(sql.search(query, limit=limit), memory.search(query, limit=limit))


def test_several_terms_rank_the_best_postings_of_their_rarest_group(
    loaded: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above the walk, a query of several terms ranks exactly the matches among its rarest
    group's best postings by impact (worked out here from the table and the in-memory
    ranking), and only those; a walk that stopped early (SQLite), because no video left
    could reach its top, returned the exact top of every match."""
    from reelrank_postgres import _impact, _search

    # A walk some drivers of this catalog exceed, in batches of 20, 40, 80, 60 on SQLite.
    walk = 200
    monkeypatch.setattr(_search, "_WALK_POSTINGS", walk)
    monkeypatch.setattr(_search, "_WALK_PER_HIT", 1)
    monkeypatch.setattr(_search, "_FIRST_BATCH", 8)
    scored: list[int] = []
    if loaded.dialect.name == "sqlite":  # PostgreSQL scores the whole walk in one statement
        batch = _impact.SqlitePostings.batch

        def counted(
            self: _impact.SqlitePostings,
            scoring: _impact.Scoring,
            depths: list[int],
            start: int,
            count: int,
        ) -> tuple[dict[int, float], float | None]:
            scored.append(start + count)
            return batch(self, scoring, depths, start, count)

        monkeypatch.setattr(_impact.SqlitePostings, "batch", counted)
    memory = _memory()
    sql = SqlSearchIndex(loaded)
    cap = SearchConfig().max_prefix_expansions
    budget = max(walk, _TOP)
    bounded = stopped_early = 0
    with loaded.connect() as connection:
        documents = connection.execute(text("SELECT documents FROM search_stats")).scalar_one()
        for query in [query for query in _PARSED if len(query.terms) > 1]:
            groups = []
            for term in query.terms:
                found = connection.execute(
                    text(
                        "SELECT term, videos FROM search_terms WHERE substr(term, 1, "
                        "length(:prefix)) = :prefix AND (:prefix_term OR term = :prefix) "
                        "AND videos > 0 ORDER BY videos DESC, term LIMIT :cap"
                    ),
                    {"prefix": term.text, "prefix_term": term.prefix, "cap": cap},
                ).all()
                groups.append({row.term: row.videos for row in found})
            rarest = min(groups, key=lambda group: sum(group.values()))
            # The walk: the rarest group's best postings by impact, its videos best
            # bound (idf x impact) first, ties to the lower id, at most ``budget``.
            bounds: dict[int, float] = {}
            for (term, videos), depth in zip(
                rarest.items(), _search._depths(rarest, budget), strict=True
            ):
                idf = math.log(1.0 + (documents - videos + 0.5) / (videos + 0.5))
                for video_id, impact in connection.execute(
                    text(
                        "SELECT video_id, impact FROM search_postings WHERE term = :term "
                        "ORDER BY impact DESC, video_id LIMIT :depth"
                    ),
                    {"term": term, "depth": depth},
                ):
                    bounds[video_id] = max(bounds.get(video_id, 0.0), idf * impact)
            candidates = set(sorted(bounds, key=lambda video: (-bounds[video], video))[:budget])
            ranked = memory.search(query, limit=_VIDEOS)
            scored.clear()
            got = sql.search(query, limit=_TOP)
            if scored and scored[-1] < len(candidates):
                stopped_early += 1
                _assert_same_ranking(got, ranked[:_TOP])
            want = [hit for hit in ranked if hit[0] in candidates][:_TOP]
            _assert_same_ranking(got, want)
            bounded += len(want) < len(ranked[:_TOP]) or want != ranked[:_TOP]
    assert bounded > 0  # the walk did cut some queries short
    if loaded.dialect.name == "sqlite":
        assert stopped_early > 0  # and proved others exact before reading every candidate


def test_other_bm25_parameters_than_the_postings_rank_without_them(loaded: Engine) -> None:
    """The stored impacts bound scores only for the ``k1`` and ``b`` they were computed
    with: an index configured otherwise ranks as without the postings."""
    config = SearchConfig(k1=2.0)
    other = SqlSearchIndex(loaded, config=config)
    without = SqlSearchIndex(loaded, config=config, use_impact_postings=False)
    with_postings = SqlSearchIndex(loaded)
    queries = _PARSED[:30]
    got = [other.search(query, limit=_TOP) for query in queries]
    assert got == [without.search(query, limit=_TOP) for query in queries]
    assert got != [with_postings.search(query, limit=_TOP) for query in queries]
