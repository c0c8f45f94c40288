"""A first search's latency and SQL statements on PostgreSQL, for two or more checkouts of
the code side by side, on one database.

Each checkout (a directory holding ``src`` and ``adapters``, such as a ``git worktree``
or a ``git archive`` of a commit) searches in a process of its own through
``VideoSearch(SqlSearchIndex(engine)).search(limit=20)`` with no match reuse, so every
search asks the index (the index asked for ``candidate_pool`` 500 hits). Blocks of the
query set alternate between the checkouts, round by round. Each search's wall time and
the statements it ran (every statement is one round trip: reads run in autocommit) are
recorded; per query kind the p50 / p99 and their ratios to the first checkout are
printed, with the range of the load average over the rounds.

``--term-seconds`` sets :attr:`~reelrank.SearchConfig.term_statistics_seconds` in the
checkouts that have it (0: read on every search). The query sets:

* ``load``: the load client's twelve queries (``reelrank_example.testing``), on a
  database holding the example service's bulk catalog (``seed --bulk``);
* ``corpus``: :func:`search_corpus.query_mix` (300 queries, six kinds) and a long
  tail: 50 three-word queries from titles and 50 four-letter prefixes of rarer words,
  on a database :mod:`bench_search_sql` (or :func:`pg_bulk.copy_search_documents`)
  loaded with the corpus of ``REELRANK_SEARCH_SIZE`` (``100k`` or ``1M``).

::

    python benchmarks/search_sql_versions.py --url postgresql+psycopg://... \\
        --queries corpus /path/to/old /path/to/new --rounds 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

_LOAD_QUERIES = (
    "dance", "comedy", "cooking", "travel", "fitness", "music", "pets",
    "easy hack", "daily routine", "epic fail", "secret trick", "makeup tutorial",
)  # fmt: skip


def _queries(kind: str) -> list[tuple[str, str, bool]]:
    """(kind, text, as_you_type) of the query set."""
    if kind == "load":
        return [
            ("load " + ("one word" if " " not in q else "two words"), q, False)
            for q in _LOAD_QUERIES
        ]
    from search_corpus import SIZES, make_corpus, query_mix

    corpus = make_corpus(SIZES[os.environ.get("REELRANK_SEARCH_SIZE", "100k")])
    queries = [(q.kind, q.text, q.as_you_type) for q in query_mix(corpus, 300)]
    rng = np.random.default_rng(5)
    while len(queries) < 350:
        row = int(rng.integers(0, len(corpus)))
        start, end = int(corpus.title_starts[row]), int(corpus.title_starts[row + 1])
        if end - start >= 3:
            picked = sorted(rng.choice(end - start, size=3, replace=False).tolist())
            words = (corpus.words[int(corpus.title_words[start + i])] for i in picked)
            queries.append(("three_words", " ".join(words), False))
    for _ in range(50):
        queries.append(
            ("rare_prefix", corpus.words[int(rng.integers(2_000, 50_000))][:4] + "*", False)
        )
    return queries


def _worker(url: str, query_set: str, term_seconds: float) -> None:
    """Serve blocks: each stdin line runs the query set once, printing one JSON line."""
    from reelrank_postgres import SqlSearchIndex, SqlStoreConfig, connect
    from sqlalchemy import event

    from reelrank import SearchConfig, VideoSearch

    engine = connect(SqlStoreConfig(url=url))
    statements = [0]

    def count(*_: object) -> None:
        statements[0] += 1

    event.listen(engine, "before_cursor_execute", count)
    fields = SearchConfig.model_fields
    config = (
        SearchConfig(term_statistics_seconds=term_seconds)
        if "term_statistics_seconds" in fields
        else SearchConfig()
    )
    search = VideoSearch(SqlSearchIndex(engine, config=config))
    queries = _queries(query_set)
    for _, text, as_you_type in queries[:20]:
        search.search(text, limit=20, as_you_type=as_you_type)  # warm the pool and caches
    for _ in sys.stdin:
        rows = []
        for kind, text, as_you_type in queries:
            statements[0] = 0
            started = time.perf_counter()
            search.search(text, limit=20, as_you_type=as_you_type)
            rows.append((kind, time.perf_counter() - started, statements[0]))
        print(json.dumps(rows), flush=True)
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkouts", nargs="+", type=Path)
    parser.add_argument("--url", required=True)
    parser.add_argument("--queries", choices=("load", "corpus"), default="corpus")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--term-seconds", type=float, default=0.0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.url, args.queries, args.term_seconds)
        return
    here = Path(__file__).resolve().parent
    workers = {}
    for checkout in args.checkouts:
        folders = [checkout / "src", *sorted((checkout / "adapters").glob("*/src")), here]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(f) for f in folders)}
        workers[checkout] = subprocess.Popen(
            [sys.executable, __file__, "--worker", "--url", args.url, "--queries", args.queries,
             "--term-seconds", str(args.term_seconds), *map(str, args.checkouts)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
    results: dict[Path, list[tuple[str, float, int]]] = {checkout: [] for checkout in workers}
    loads = []
    for number in range(args.rounds):
        order = list(workers) if number % 2 == 0 else list(reversed(workers))
        start_load = os.getloadavg()[0]
        for checkout in order:
            worker = workers[checkout]
            assert worker.stdin is not None and worker.stdout is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
            results[checkout].extend(json.loads(worker.stdout.readline()))
        loads.append((start_load, os.getloadavg()[0]))
    for worker in workers.values():
        assert worker.stdin is not None
        worker.stdin.close()
        worker.wait()
    first = args.checkouts[0]
    kinds = ["all", *dict.fromkeys(kind for kind, _, _ in results[first])]
    print(
        f"{args.queries} queries, {args.rounds} rounds, term_statistics_seconds {args.term_seconds}"
    )
    seen = [value for pair in loads for value in pair]
    print(f"load average (1 min) over the rounds: {min(seen):.2f} to {max(seen):.2f}")
    for kind in kinds:
        base = None
        for checkout in args.checkouts:
            rows = [row for row in results[checkout] if kind in ("all", row[0])]
            times = np.array([seconds for _, seconds, _ in rows]) * 1e3
            p50, p99 = np.percentile(times, [50, 99])
            trips = np.mean([n for _, _, n in rows])
            ratio = (
                "" if base is None else f"  ratio p50 {p50 / base[0]:.2f} p99 {p99 / base[1]:.2f}"
            )
            base = base or (p50, p99)
            print(
                f"  {kind:16s} {checkout.name:14s} n={len(rows):5d} p50 {p50:6.2f} ms "
                f"p99 {p99:6.2f} ms statements {trips:.2f}{ratio}"
            )


if __name__ == "__main__":
    main()
