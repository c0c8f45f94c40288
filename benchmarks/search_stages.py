"""Where a search request of the example service spends its time, stage by stage, for
two or more checkouts of the code side by side, on one set of real stores (PostgreSQL,
ClickHouse, Redis), as ``miss_page_stages.py`` does for feed pages.

Each checkout (a directory holding ``src``, ``adapters`` and ``examples``, such as a
``git worktree``) serves in a process of its own, built as a gunicorn worker builds it
(metrics in multiprocess mode, JSON log lines written, here to ``/dev/null``). A
measured request is ``GET /api/v1/reels/search?q=...&limit=10`` through the Flask test
client, for the load client's queries (``reelrank_example.testing``) in turn, each
asked twice in a row: first after the process's kept text matches were dropped (not
timed), so the search asks the PostgreSQL index as a query's first search does
(``Cache-Status: reelrank; fwd=miss``), then again, reusing the matches (``hit``).
The counts the search blends are those the process keeps (``search_counts_seconds``),
from the event store's memory or ClickHouse when it has none recent enough, as in a
busy worker. Each store call, the index query, the counts the blend reads, the blend,
the cards (their reads and building) and the response body are timed (wall clock) by
wrappers set on the service's objects; the rest of the request (Flask, authentication,
rate limit, metrics, the log line) is the request's wall time less ``search()``, the
page of cards and the body. A store call another thread made during the request (a
background read of the counts) is shown apart, as ``(another thread)``.
``time.process_time()`` over a block gives each process's CPU per request (every
thread), and over each request the CPU during it. Blocks alternate between the
checkouts, round by round; p50 / p99 per stage and kind of search and the ratios to the
first checkout are printed with the load average::

    python benchmarks/search_stages.py /path/to/old /path/to/new --rounds 6

With ``--aged-counts`` the counts the process keeps for search are dropped too before
each first search (not timed), as when a query comes back after
``search_counts_seconds`` plus ``search_counts_stale_seconds`` (or its matches' counts
were dropped by events this process recorded): the search reads them during the
request, from the event store's memory when it holds the statistics' roll-up, else
from ClickHouse. With ``--fold-stats`` the statistics are rolled up once after seeding
(the deployment runs ``fold-stats`` every five minutes), past the seed's last arrival
bucket as ``miss_page_stages.py`` does, so the event store answers bounded-age reads
from memory.

``REELRANK_BENCH_SEARCH_VIDEOS`` sets the catalog (100,000 by default, seeded with
``seed --bulk``, about a minute).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

from stage_timing import (
    StageTimer,
    print_cpu,
    print_stage_table,
    run_checkouts,
    serve_with_metrics_dir,
)

PAGE_SIZE = 10
USERS = 50
KINDS = ("first", "reused")


def _serve_in(aged_counts: bool) -> None:
    from reelrank_example import (
        Settings,
        _api,
        _app,
        build_services,
        configure_logging,
        configured_stores,
        create_app,
        issue_token,
    )

    settings = Settings()
    configure_logging(settings, stream=open(os.devnull, "w"))  # noqa: SIM115
    services = build_services(configured_stores(settings), settings)
    stages = StageTimer()
    # Class-level: the handlers and the page model are made inside create_app / per call.
    stages.wrap(_app._Handlers, "_card_page", "page of cards")
    stages.wrap(_app._Handlers, "_cards", "page of cards: cards")
    stages.wrap(_api.CardPage, "model_dump_json", "response body")
    app = create_app(services, settings)
    client = app.test_client()
    secret = settings.auth_secret.get_secret_value()  # type: ignore[union-attr]
    headers = [
        {"Authorization": f"Bearer {issue_token(secret, user)}"} for user in range(1, 1 + USERS)
    ]
    search = services.search
    stages.wrap(search, "search", "search()")
    stages.wrap(search, "_matches", "search: matches")
    stages.wrap_store(services.stores.search_index, "index")
    counts = search._stats
    if counts is not None:
        stages.wrap(counts, "get_stats", "search: counts")
        events = getattr(counts, "_events", None)
        if events is not None:
            stages.wrap_store(events, "search counts events")
    cards = app.extensions["reelrank_cards"]
    stages.wrap(cards, "read", "page of cards: cards: reads")
    for label, store in (("card catalog", cards._catalog), ("card events", cards._events)):
        if id(store) not in stages.wrapped:
            stages.wrap_store(store, label)
    from reelrank_example.testing import _SEARCH_WORDS

    turn = [0]

    def one(kind: str, words: str) -> dict[str, float]:
        if kind == "first" and search._reuse is not None:
            search._reuse.drop_all()
        if kind == "first" and aged_counts and services.search_counts is not None:
            kept = services.search_counts._kept
            services.search_counts._kept = type(kept)(kept._ttl, kept._size, kept._clock)
        current: dict[str, float] = {}
        stages.request_thread = threading.get_ident()
        stages.current = current
        cpu_started = time.process_time()
        started = time.perf_counter()
        response = client.get(
            f"/api/v1/reels/search?q={words}&limit={PAGE_SIZE}",
            headers=headers[turn[0] % USERS],
        )
        current["request"] = 1e3 * (time.perf_counter() - started)
        current["CPU during the request (process)"] = 1e3 * (time.process_time() - cpu_started)
        stages.current = None
        turn[0] += 1
        assert response.status_code == 200, response.get_data(as_text=True)
        expected = "fwd=miss" if kind == "first" else "hit"
        assert response.headers["Cache-Status"] == f"reelrank; {expected}", kind
        search_ms = current["search()"]
        current["search: blend (search() less matches and counts)"] = (
            search_ms - current.get("search: matches", 0.0) - current.get("search: counts", 0.0)
        )
        current["rest (Flask, auth, limit, metrics, log)"] = (
            current["request"]
            - search_ms
            - current.get("page of cards", 0.0)
            - current.get("response body", 0.0)
        )
        return current

    print("ready", flush=True)
    for line in sys.stdin:
        count = int(line)
        rows: dict[str, list[dict[str, float]]] = {kind: [] for kind in KINDS}
        started = time.process_time()
        for number in range(count):
            words = _SEARCH_WORDS[number % len(_SEARCH_WORDS)].replace(" ", "+")
            for kind in KINDS:
                rows[kind].append(one(kind, words))
        cpu = 1e3 * (time.process_time() - started) / (count * len(KINDS))
        print(json.dumps({"cpu": cpu, "rows": rows}), flush=True)
    services.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkouts", nargs="+", type=Path, help="the first is the baseline")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--block", type=int, default=48, help="queries per block (each twice)")
    parser.add_argument(
        "--aged-counts",
        action="store_true",
        help="drop the counts kept for search before each first search of a query",
    )
    parser.add_argument(
        "--fold-stats",
        action="store_true",
        help="roll the statistics up once after seeding, as the deployment's job does",
    )
    args = parser.parse_args()
    videos = int(os.environ.get("REELRANK_BENCH_SEARCH_VIDEOS", "100000"))
    catalog = {
        "REELRANK_VIDEOS": str(videos),
        "REELRANK_PENDING_VIDEOS": "0",
        "REELRANK_USERS": str(USERS + 50),
        "REELRANK_EVENTS": str(videos),
        "REELRANK_CREATORS": str(max(10, videos // 100)),
    }
    blocks = run_checkouts(__file__, args.checkouts, args.aged_counts, catalog=catalog,
                           fold_stats=args.fold_stats, rounds=args.rounds,
                           block=args.block)  # fmt: skip
    print(f"aged counts: {args.aged_counts}, statistics rolled up: {args.fold_stats}")
    print(f"{videos} videos, {args.rounds} rounds of {args.block} queries x {len(KINDS)} "
          "searches per checkout")  # fmt: skip
    for kind in KINDS:
        print(f"\n{kind} searches of a query")
        print_stage_table(
            blocks.names,
            {name: [row for block in blocks.rows[name] for row in block[kind]]
             for name in blocks.names},
        )  # fmt: skip
    print()
    print_cpu(blocks, "search")
    print(f"load average after each round: {' '.join(blocks.loads)}; at the end {blocks.load}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve_with_metrics_dir(_serve_in, sys.argv[2] == "1")
    else:
        main()
