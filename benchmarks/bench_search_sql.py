"""SQL search at catalog scale: PostgreSQL (tsvector + GIN) and SQLite (FTS5), before and after.

Loads the :mod:`search_corpus` catalog (100,000 videos; 10,000 with
``REELRANK_BENCH_QUICK=1``; ``REELRANK_SEARCH_SIZE=10k|100k|1M`` picks one) into a
throwaway PostgreSQL 15 cluster and a SQLite file, then times the 200-query mix on each,
two ways in the same run:

* **before**: the previous statements, an uncapped prefix (``'abc':*`` / ``"abc"*``)
  and every match ranked before the LIMIT (``ts_rank`` / ``bm25``);
* **after**: :class:`~reelrank_postgres.SqlSearchIndex` as shipped: the shared
  ``max_prefix_expansions`` cap read from ``search_terms``, and on PostgreSQL only the
  ``rank_pool`` newest matches ranked.

Each call asks for ``SearchConfig.candidate_pool`` (500) hits, what
:class:`~reelrank.VideoSearch` asks its index for. The report gives p50/p95/p99 latency
per backend and query kind, and for PostgreSQL the recall of the bounded ranking: the
share of the exact ``ts_rank`` top 20 (every capped match ranked) that the bounded top
20 keeps, per pool size.

The catalog is written with ``executemany`` in the adapter's own format and the term
counts are built by the migration's statements, as loading 100,000 videos one
``index()`` call at a time would take minutes.

Run as a script for the report (``python benchmarks/bench_search_sql.py``) or through
pytest, which also checks that "after" matches the same videos as the in-memory index.
Skips when ``reelrank-postgres`` or the PostgreSQL server binaries are not installed.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from search_corpus import QUERY_KINDS, SIZES, Corpus, make_corpus, query_mix

from reelrank import InMemorySearchIndex, ParsedQuery, SearchConfig, SearchDocument, parse_query

POOLS = (500, 2_000, 10_000)
"""``rank_pool`` sizes whose recall the report measures (the default is 2,000)."""

_LIMIT = SearchConfig().candidate_pool


def _size() -> int:
    named = os.environ.get("REELRANK_SEARCH_SIZE")
    if named:
        return SIZES[named]
    return SIZES["10k"] if os.environ.get("REELRANK_BENCH_QUICK") == "1" else SIZES["100k"]


def _documents(corpus: Corpus) -> list[SearchDocument]:
    return [
        SearchDocument(
            video_id=video_id, title=title, hashtags=tags, sound_name=sound, creator_name=creator
        )
        for video_id, title, tags, sound, creator in zip(
            corpus.video_ids.tolist(),
            corpus.titles,
            corpus.hashtags,
            corpus.sound_names,
            corpus.creator_names,
            strict=True,
        )
    ]


def _load(engine: object, documents: list[SearchDocument]) -> float:
    """Write the documents and the term counts; documents per second."""
    from reelrank_postgres import _search
    from sqlalchemy import Engine, text

    assert isinstance(engine, Engine)
    postgres = engine.dialect.name == "postgresql"
    started = time.perf_counter()
    batch = 5_000
    with engine.begin() as connection:
        for start in range(0, len(documents), batch):
            rows = []
            for document in documents[start : start + batch]:
                fields = _search._fields(document)
                if postgres:
                    rows.append(
                        {
                            "video_id": document.video_id,
                            "document": _search._tsvector_literal(fields),
                        }
                    )
                else:
                    rows.append(
                        {
                            "video_id": document.video_id,
                            **{
                                name: " ".join(_search._fts_token(term) for term in fields[name])
                                for name in _search._FTS_COLUMNS
                            },
                        }
                    )
            if postgres:
                connection.execute(
                    text(
                        "INSERT INTO search_documents (video_id, document) "
                        "VALUES (:video_id, CAST(:document AS tsvector))"
                    ),
                    rows,
                )
            else:
                columns = _search._FTS_COLUMNS
                connection.execute(
                    text(
                        f"INSERT INTO search_documents (rowid, {', '.join(columns)}) "
                        f"VALUES (:video_id, {', '.join(':' + name for name in columns)})"
                    ),
                    rows,
                )
        # The counts, built the way migration 0003 builds them from existing documents.
        if postgres:
            connection.execute(
                text(
                    "INSERT INTO search_terms (term, videos) "
                    "SELECT word, ndoc FROM ts_stat('SELECT document FROM search_documents')"
                )
            )
        else:
            connection.execute(
                text("CREATE VIRTUAL TABLE temp.vocab USING fts5vocab(main, search_documents, row)")
            )
            counts = connection.execute(text("SELECT term, doc FROM temp.vocab")).all()
            connection.execute(text("DROP TABLE temp.vocab"))
            connection.execute(
                text("INSERT INTO search_terms (term, videos) VALUES (:term, :videos)"),
                [{"term": bytes.fromhex(t[1:]).decode(), "videos": n} for t, n in counts],
            )
    if postgres:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE search_documents"))
            connection.execute(text("VACUUM ANALYZE search_terms"))
    return len(documents) / (time.perf_counter() - started)


def _before(engine: object) -> Callable[..., list[tuple[int, float]]]:
    """The previous search: uncapped prefixes, every match ranked before the LIMIT."""
    from reelrank_postgres import _search
    from sqlalchemy import Engine, text

    assert isinstance(engine, Engine)
    if engine.dialect.name == "postgresql":
        statement = text(
            "SELECT video_id, ts_rank(document, query) AS score "
            "FROM search_documents, CAST(:query AS tsquery) AS query "
            "WHERE document @@ query ORDER BY score DESC, video_id LIMIT :limit"
        )

        def render(query: ParsedQuery) -> str:
            return " & ".join(
                _search._quote(term.text) + (":*" if term.prefix else "") for term in query.terms
            )
    else:
        statement = text(
            "SELECT rowid AS video_id, "
            f"-bm25(search_documents, {_search._FTS_WEIGHTS}) AS score "
            "FROM search_documents WHERE search_documents MATCH :query "
            "ORDER BY score DESC, video_id LIMIT :limit"
        )

        def render(query: ParsedQuery) -> str:
            return " AND ".join(
                f'"{_search._fts_token(term.text)}"' + ("*" if term.prefix else "")
                for term in query.terms
            )

    def search(query: ParsedQuery, *, limit: int) -> list[tuple[int, float]]:
        with engine.connect() as connection:
            rows = connection.execute(statement, {"query": render(query), "limit": limit}).all()
        return [(int(row.video_id), float(row.score)) for row in rows]

    return search


def _percentiles(times: list[float]) -> str:
    p50, p95, p99 = np.percentile(np.array(times) * 1000.0, [50, 95, 99])
    return f"{p50:7.2f} / {p95:7.2f} / {p99:7.2f}"


def _time(
    search: Callable[..., object], queries: list[tuple[str, ParsedQuery]]
) -> dict[str, list[float]]:
    for _, query in queries[:20]:
        search(query, limit=_LIMIT)  # warm the caches and the connection pool
    times: dict[str, list[float]] = {kind: [] for kind in ("all", *QUERY_KINDS)}
    for kind, query in queries:
        started = time.perf_counter()
        search(query, limit=_LIMIT)
        elapsed = time.perf_counter() - started
        times["all"].append(elapsed)
        times[kind].append(elapsed)
    return times


@contextmanager
def _engines() -> Iterator[dict[str, object]]:
    from reelrank_postgres import SqlStoreConfig, connect, migrate
    from reelrank_postgres.testing import PostgresServer

    with tempfile.TemporaryDirectory() as directory, PostgresServer() as server:
        postgres = connect(SqlStoreConfig(url=server.url))
        sqlite = connect(SqlStoreConfig(url=f"sqlite:///{Path(directory) / 'search.db'}"))
        migrate(postgres)
        migrate(sqlite)
        try:
            yield {"postgresql": postgres, "sqlite": sqlite}
        finally:
            postgres.dispose()
            sqlite.dispose()


def run(size: int) -> tuple[list[str], dict[str, list[str]]]:
    """The report lines, and each backend's mismatches against the in-memory index."""
    from reelrank_postgres import SqlSearchIndex

    corpus = make_corpus(size)
    documents = _documents(corpus)
    queries = [
        (query.kind, parse_query(query.text, as_you_type=query.as_you_type))
        for query in query_mix(corpus)
    ]
    memory = InMemorySearchIndex.from_documents(documents)
    lines = [
        f"SQL search, {size:,} videos, {len(queries)} queries, limit {_LIMIT} (ms p50/p95/p99)"
    ]
    mismatches: dict[str, list[str]] = {}
    with _engines() as engines:
        for name, engine in engines.items():
            rate = _load(engine, documents)
            lines.append(f"{name}: loaded at {rate:,.0f} documents/s")
            after = SqlSearchIndex(engine)  # type: ignore[arg-type]
            runs = {
                "before": _time(_before(engine), queries),
                "after": _time(after.search, queries),
            }
            for kind in ("all", *QUERY_KINDS):
                lines.append(
                    f"  {kind:12s} before {_percentiles(runs['before'][kind])}"
                    f"   after {_percentiles(runs['after'][kind])}"
                )
            exact = SqlSearchIndex(engine, rank_pool=size)  # type: ignore[arg-type]
            wrong = []
            for _, query in queries:
                got = {video for video, _ in exact.search(query, limit=size)}
                want = {video for video, _ in memory.search(query, limit=size)}
                if got != want:
                    wrong.append(f"{query}: {len(got)} vs {len(want)} in memory")
            mismatches[name] = wrong
            lines.append(
                f"  match sets equal to in-memory: {len(queries) - len(wrong)}/{len(queries)}"
            )
            if name != "postgresql":
                continue
            full = {id(query): exact.search(query, limit=20) for _, query in queries}
            for pool in POOLS:
                bounded = SqlSearchIndex(engine, rank_pool=pool)  # type: ignore[arg-type]
                kept = total = 0
                for _, query in queries:
                    want = {video for video, _ in full[id(query)]}
                    got = {video for video, _ in bounded.search(query, limit=20)}
                    kept += len(want & got)
                    total += len(want)
                pool_times = _time(bounded.search, queries)["all"]
                lines.append(
                    f"  rank_pool {pool:6,d}: top-20 recall {kept / total:.3f}, "
                    f"latency {_percentiles(pool_times)}"
                )
            exact_times = _time(exact.search, queries)["all"]
            lines.append(f"  every match ranked: latency {_percentiles(exact_times)}")
    return lines, mismatches


def test_search_sql_report() -> None:
    """Prints the report; "after" matches the same videos as the in-memory index."""
    import pytest

    pytest.importorskip("reelrank_postgres")
    testing = pytest.importorskip("reelrank_postgres.testing")
    if testing.find_postgres_bin() is None:
        pytest.skip("PostgreSQL server binaries are not installed")
    lines, mismatches = run(_size())
    print("\n" + "\n".join(lines))
    assert mismatches == {"postgresql": [], "sqlite": []}


if __name__ == "__main__":
    report, _ = run(_size())
    print("\n".join(report))
    sys.exit(0)
