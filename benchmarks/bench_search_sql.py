"""SQL search at catalog scale: PostgreSQL (RUM or GIN) and SQLite (FTS5), before and after.

Loads the :mod:`search_corpus` catalog (100,000 videos; 10,000 with
``REELRANK_BENCH_QUICK=1``; ``REELRANK_SEARCH_SIZE=10k|100k|1M`` picks one) into a
throwaway PostgreSQL 15 cluster (with COPY, :mod:`pg_bulk`) and a SQLite file
(``executemany``), then times the 200-query mix through
``VideoSearch.search(limit=20)``, the issue's measure:

* **after**: :class:`~reelrank_postgres.SqlSearchIndex` as shipped: the impact-ordered
  postings (migration 0006 on PostgreSQL, 0007 on SQLite), ranked by the in-memory
  index's BM25 (exact for one term or one prefix; several terms walk the rarest group's
  best postings and stop once the rest cannot reach the top, or after a bounded number
  of candidates);
* **FTS5 (0.x)** (SQLite): the previous path, ``use_impact_postings=False``: FTS5's
  ``bm25`` over the ``rank_pool`` newest matches;
* **rank_pool (0.x)** (PostgreSQL): the previous path, ``use_impact_postings=False``:
  queries whose term counts bound their matches by ``rank_pool`` ranked exactly with
  ``ts_rank`` (by the RUM index when the server has the extension), larger ones over
  the ``rank_pool`` newest matches; and the same **GIN only**, without the RUM index;
* **before** (up to 100k; index calls only): the statements before the prefix cap, an
  uncapped prefix and every match ranked before the LIMIT.

The report gives p50/p95/p99 per query kind, whether every query matches the same videos
as the in-memory index, and each path's top-20 recall against the same ranking applied
to every match (for "after": the in-memory index's BM25, at 20 and at the 500 hits
``VideoSearch`` asks for, per query kind), with the load average (the machine
may be shared).

Run as a script for the report (``python benchmarks/bench_search_sql.py``) or through
pytest, which also checks the match sets. With ``REELRANK_SEARCH_PG_URL`` (and
``REELRANK_SEARCH_SQLITE_DIR``) it uses a database this benchmark loaded before instead
of a new cluster, loading only what is missing. With ``REELRANK_SEARCH_SQLITE_COLD=1``
each SQLite path is timed from a cold cache: the file's pages are evicted from the
operating system's cache (``posix_fadvise``) and the warm-up queries are skipped. Skips
when ``reelrank-postgres`` or the PostgreSQL server binaries are not installed.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pg_bulk
from search_corpus import QUERY_KINDS, SIZES, Query, make_corpus, query_mix

from reelrank import (
    InMemorySearchIndex,
    ParsedQuery,
    SearchConfig,
    SearchDocument,
    VideoSearch,
    parse_query,
)

_LIMIT = SearchConfig().candidate_pool


def _size() -> int:
    named = os.environ.get("REELRANK_SEARCH_SIZE")
    if named:
        return SIZES[named]
    return SIZES["10k"] if os.environ.get("REELRANK_BENCH_QUICK") == "1" else SIZES["100k"]


def _load(engine: object, documents: list[SearchDocument]) -> float:
    """Write the documents and the term counts into SQLite; documents per second."""
    from reelrank_postgres import _search
    from sqlalchemy import Engine, text

    assert isinstance(engine, Engine)
    started = time.perf_counter()
    batch = 5_000
    columns = _search._FTS_COLUMNS
    with engine.begin() as connection:
        for start in range(0, len(documents), batch):
            rows = []
            for document in documents[start : start + batch]:
                fields = _search._fields(document)
                rows.append(
                    {
                        "video_id": document.video_id,
                        **{
                            name: " ".join(_search._fts_token(term) for term in fields[name])
                            for name in columns
                        },
                    }
                )
            connection.execute(
                text(
                    f"INSERT INTO search_documents (rowid, {', '.join(columns)}) "
                    f"VALUES (:video_id, {', '.join(':' + name for name in columns)})"
                ),
                rows,
            )
        # The counts, built the way migration 0003 builds them from existing documents.
        connection.execute(
            text("CREATE VIRTUAL TABLE temp.vocab USING fts5vocab(main, search_documents, row)")
        )
        counts = connection.execute(text("SELECT term, doc FROM temp.vocab")).all()
        connection.execute(text("DROP TABLE temp.vocab"))
        connection.execute(
            text("INSERT INTO search_terms (term, videos) VALUES (:term, :videos)"),
            [{"term": bytes.fromhex(t[1:]).decode(), "videos": n} for t, n in counts],
        )
        _load_sqlite_postings(connection, documents)
    return len(documents) / (time.perf_counter() - started)


def _load_sqlite_postings(connection: Any, documents: list[SearchDocument]) -> None:
    """The impact-ordered postings of migration 0007, as its back-fill writes them: staged
    unsorted, then copied in the table's key order (SQLite sorts them), the video index
    built after the rows are in."""
    from reelrank_postgres import _search
    from sqlalchemy import text

    config = SearchConfig()
    connection.execute(text("DROP INDEX ix_search_postings_video"))
    connection.execute(
        text("CREATE TEMPORARY TABLE staged (term TEXT, video_id INTEGER, tf REAL, length REAL)")
    )
    lengths: list[float] = []
    batch: list[tuple[str, int, float, float]] = []
    raw = connection.connection.driver_connection
    for document in documents:
        frequencies, length = _search._weighted(_search._fields(document), config)
        lengths.append(length)
        batch.extend((term, document.video_id, tf, length) for term, tf in frequencies.items())
        if len(batch) >= 100_000:
            raw.executemany("INSERT INTO temp.staged VALUES (?, ?, ?, ?)", batch)
            batch.clear()
    raw.executemany("INSERT INTO temp.staged VALUES (?, ?, ?, ?)", batch)
    total = math.fsum(lengths)
    reference = total / len(lengths) if lengths and total > 0 else 1.0
    connection.execute(
        text(
            # Migration 0007 wrote the row of an empty index.
            "INSERT OR REPLACE INTO search_stats "
            "(id, documents, total_length, reference_length, k1, b) "
            "VALUES (1, :documents, :total, :reference, :k1, :b)"
        ),
        {
            "documents": len(lengths),
            "total": total,
            "reference": reference,
            "k1": config.k1,
            "b": config.b,
        },
    )
    connection.execute(
        text(
            "INSERT INTO search_postings (term, impact, video_id, tf, length) "
            "SELECT p.term, p.tf * (s.k1 + 1) / (p.tf + s.k1 * (1 - s.b + s.b * p.length / "
            "s.reference_length)) AS impact, p.video_id, p.tf, p.length "
            "FROM temp.staged AS p, search_stats AS s ORDER BY p.term, impact DESC, p.video_id"
        )
    )
    connection.execute(text("DROP TABLE temp.staged"))
    connection.execute(
        text(
            "CREATE INDEX ix_search_postings_video ON search_postings (video_id, term, tf, length)"
        )
    )


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
    search: Callable[[Query], object], queries: list[Query], *, warm: bool = True
) -> dict[str, list[float]]:
    for query in queries[:20] if warm else []:
        search(query)  # warm the caches and the connection pool
    times: dict[str, list[float]] = {kind: [] for kind in ("all", *QUERY_KINDS)}
    for query in queries:
        started = time.perf_counter()
        search(query)
        elapsed = time.perf_counter() - started
        times["all"].append(elapsed)
        times[query.kind].append(elapsed)
    return times


def _index_call(search: Callable[..., object]) -> Callable[[Query], object]:
    """An index's search asked for ``candidate_pool`` hits, as :class:`VideoSearch` asks."""

    def call(query: Query) -> object:
        return search(parse_query(query.text, as_you_type=query.as_you_type), limit=_LIMIT)

    return call


def _video_search_call(index: Any) -> Callable[[Query], object]:
    """The issue's measure: ``VideoSearch.search(limit=20)`` over the index."""
    search = VideoSearch(index)

    def call(query: Query) -> object:
        return search.search(query.text, limit=20, as_you_type=query.as_you_type)

    return call


def _recall(bounded: Any, reference: Any, parsed: list[ParsedQuery], k: int) -> float:
    """Share of ``reference``'s top ``k`` that ``bounded``'s top ``k`` keeps."""
    kept = total = 0
    for query in parsed:
        want = {video for video, _ in reference.search(query, limit=k)}
        got = {video for video, _ in bounded.search(query, limit=k)}
        kept += len(want & got)
        total += len(want)
    return kept / total if total else 1.0


def _recall_by_kind(bounded: Any, reference: Any, queries: list[Query], k: int) -> str:
    """:func:`_recall` per query kind, as ``kind=recall`` pairs."""
    kinds = {}
    for kind in QUERY_KINDS:
        parsed = [
            parse_query(query.text, as_you_type=query.as_you_type)
            for query in queries
            if query.kind == kind
        ]
        kinds[kind] = _recall(bounded, reference, parsed, k)
    return " ".join(f"{kind}={value:.3f}" for kind, value in kinds.items())


@contextmanager
def _engines() -> Iterator[dict[str, object]]:
    from reelrank_postgres import SqlStoreConfig, connect, migrate
    from reelrank_postgres.testing import PostgresServer

    # Ranking every match of a common term at 1M takes seconds (the recall reference).
    config = {"statement_timeout_seconds": 600.0}
    loaded = os.environ.get("REELRANK_SEARCH_PG_URL")
    if loaded:
        # A database (and a SQLite file) this benchmark loaded before: minutes saved at 1M.
        directory = os.environ.get("REELRANK_SEARCH_SQLITE_DIR", tempfile.gettempdir())
        postgres = connect(SqlStoreConfig(url=loaded, **config))
        sqlite = connect(SqlStoreConfig(url=f"sqlite:///{Path(directory) / 'search.db'}"))
        migrate(postgres)
        migrate(sqlite)
        try:
            yield {"postgresql": postgres, "sqlite": sqlite}
        finally:
            postgres.dispose()
            sqlite.dispose()
        return
    # A buffer cache that holds the 1M catalog's table and indexes, as a server sized for it.
    server_settings = {"shared_buffers": "1GB"}
    with (
        tempfile.TemporaryDirectory() as directory,
        PostgresServer(settings=server_settings) as server,
    ):
        postgres = connect(SqlStoreConfig(url=server.url, **config))
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
    documents = corpus.documents()
    queries = query_mix(corpus)
    parsed = [parse_query(query.text, as_you_type=query.as_you_type) for query in queries]
    memory = InMemorySearchIndex.from_documents(documents)
    # "before" ranks every match of every query: minutes at 1M, so only up to 100k.
    with_before = size <= SIZES["100k"]
    lines = _PrintedLines()
    lines.append(
        f"SQL search, {size:,} videos, {len(queries)} queries; latency p50 / p95 / p99 ms "
        f"of VideoSearch.search(limit=20) (the index asked for {_LIMIT}); "
        f"load average {_load_average()}"
    )
    mismatches: dict[str, list[str]] = {}
    with _engines() as engines:
        for name, engine in engines.items():
            postgres = name == "postgresql"
            if _document_count(engine) == size:
                lines.append(f"{name}: already loaded")
            else:
                rate = (
                    pg_bulk.copy_search_documents(engine, corpus)
                    if postgres
                    else _load(engine, documents)
                )
                lines.append(f"{name}: loaded at {rate:,.0f} documents/s")
            paths = {"after": SqlSearchIndex(engine)}  # type: ignore[arg-type]
            if not postgres:
                paths["FTS5 (0.x)"] = SqlSearchIndex(engine, use_impact_postings=False)  # type: ignore[arg-type]
            if postgres:
                paths["rank_pool (0.x)"] = SqlSearchIndex(engine, use_impact_postings=False)  # type: ignore[arg-type]
                paths["rank_pool (0.x), GIN only"] = SqlSearchIndex(
                    engine,  # type: ignore[arg-type]
                    use_rum_index=False,
                    use_impact_postings=False,
                )
            cold = not postgres and os.environ.get("REELRANK_SEARCH_SQLITE_COLD") == "1"
            runs = {}
            for label, index in paths.items():
                if cold:
                    _drop_cached_pages(engine)
                runs[label] = _time(_video_search_call(index), queries, warm=not cold)
            if with_before:
                runs["before (index only)"] = _time(_index_call(_before(engine)), queries)
            for label, times in runs.items():
                lines.append(f"  {label}")
                for kind in ("all", *QUERY_KINDS):
                    lines.append(f"    {kind:12s} {_percentiles(times[kind])}")
            # The exact references rank every match (RUM on PostgreSQL when present).
            exact = SqlSearchIndex(engine, rank_pool=size, use_impact_postings=False)  # type: ignore[arg-type]
            wrong = []
            # Every match of every query: at 1M that is 200 result sets of up to 400k
            # videos on each side, so the match sets are compared up to 100k (and on
            # 2,000 videos in the adapter's tests).
            for query in parsed if with_before else []:
                got = {video for video, _ in exact.search(query, limit=size)}
                want = {video for video, _ in memory.search(query, limit=size)}
                if got != want:
                    wrong.append(f"{query}: {len(got)} vs {len(want)} in memory")
            mismatches[name] = wrong
            if with_before:
                lines.append(
                    f"  match sets equal to in-memory: {len(queries) - len(wrong)}/{len(queries)}"
                )
            # The impact-ordered postings rank by the in-memory index's BM25: their
            # reference is that index's exact top k (every match scored).
            for k in (20, _LIMIT):
                lines.append(
                    f"  after: top-{k} recall against the in-memory BM25 top {k} "
                    f"{_recall(paths['after'], memory, parsed, k):.3f} "
                    f"per kind {_recall_by_kind(paths['after'], memory, queries, k)}"
                )
            references = {"rank_pool (0.x)" if postgres else "FTS5 (0.x)": exact}
            if postgres and with_before:  # at 1M, only the default 0.x path's recall
                references["rank_pool (0.x), GIN only"] = SqlSearchIndex(
                    engine,  # type: ignore[arg-type]
                    rank_pool=size,
                    use_rum_index=False,
                    use_impact_postings=False,
                )
            for label, reference in references.items():
                started = time.perf_counter()
                recall = _recall(paths[label], reference, parsed, 20)
                seconds = time.perf_counter() - started
                lines.append(
                    f"  {label}: top-20 recall against every match ranked by the same "
                    f"score {recall:.3f} (both searches: {seconds / len(parsed) * 1e3:.0f} ms "
                    "a query)"
                )
    lines.append(f"load average at the end: {_load_average()}")
    return lines, mismatches


class _PrintedLines(list[str]):
    """Report lines, each also printed when added: a 1M run takes long enough to watch."""

    def append(self, line: str) -> None:
        print(line, flush=True)
        super().append(line)


def _drop_cached_pages(engine: Any) -> None:
    """Evict the SQLite file's pages from the operating system's cache (no root needed):
    the next search reads them from disk, as after a restart or a larger file's reads."""
    path = engine.url.database
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(descriptor)


def _document_count(engine: Any) -> int:
    from sqlalchemy import text

    with engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM search_documents")).scalar())


def _load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


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
    run(_size())  # prints its lines as it goes
    sys.exit(0)
