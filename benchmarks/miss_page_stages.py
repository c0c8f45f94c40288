"""Where a cache-miss feed page of the example service spends its time, stage by stage,
for two or more checkouts of the code side by side, on one set of real stores
(PostgreSQL, ClickHouse, Redis).

Each checkout (a directory holding ``src``, ``adapters`` and ``examples``, such as a
``git worktree``) serves in a process of its own, built as a gunicorn worker builds it
(metrics in multiprocess mode, JSON log lines written, here to ``/dev/null``), for the
same 300 users (with users of their own, the processes' pages differed by 15 to 20% in
every stage, the code's changes or not: the users' follows and histories differ). A
measured request is a first page (``GET /api/v1/reels?limit=10``)
through the Flask test client after the user's snapshot was dropped (not timed), so
every page is ranked during its request: it must answer ``Cache-Status: reelrank;
fwd=miss``. Each store call, the snapshot lookup and write, the ranking, the page cut
and the cards are timed (wall clock, on whichever thread ran them) by wrappers set on
the service's objects; the rest of the request (Flask, authentication, the body,
metrics, the log line) is the request's wall time less ``feed()`` and the cards. With
``--cold-cards`` the card reader keeps nothing of a page's videos but what the feed's
ranking read, as for videos the process never showed: before each request (untimed) it
drops every detail, creator and count it kept and the candidate pool is read again, as
its background refresh does every ``candidate_pool_ttl_seconds`` (code whose card
reader keeps the ranking's counts, or videos, then has the pool's; else a page's cards
are mostly kept from earlier requests, as in a busy worker). ``time.process_time()``
over a block gives each process's CPU per request (every thread; with ``--cold-cards``
the pool's reads too), and over each request alone the CPU during the request. Blocks
alternate between the checkouts, round by round; p50 / p99 per stage and the ratios to
the first checkout are printed with the load average::

    python benchmarks/miss_page_stages.py /path/to/old /path/to/new --rounds 6

With ``--fold-stats`` the statistics are rolled up once after seeding (the deployment
runs ``fold-stats`` every five minutes), past the seed's last arrival bucket as
``bench_http.py`` does (waiting for it to end, up to a minute), so count reads add what
arrived since the roll-up to it rather than merge every requested video's states, and
the ClickHouse store holds the roll-up (and answers bounded-age reads from memory).
A checkout with ``REELRANK_FEED_AFFINITY_REUSE_SECONDS`` reuses a user's affinity read
as the service does (30 s by default): the 300 users come round again within it, so
from the second pass over them (``--rounds`` above 6 with blocks of 50) a measured miss
makes no affinity read unless the setting is ``0`` in the environment.
``REELRANK_BENCH_MISS_VIDEOS`` sets the catalog (100,000 by default, seeded with
``seed --bulk``, about a minute).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from stage_timing import (
    StageTimer,
    print_cpu,
    print_stage_table,
    quantile,
    run_checkouts,
    serve_with_metrics_dir,
)

PAGE_SIZE = 10
USERS = 300


def _serve_in(cold_cards: bool) -> None:
    from reelrank_example import (
        Settings,
        build_services,
        configure_logging,
        configured_stores,
        create_app,
        issue_token,
    )

    from reelrank import FeedServiceConfig, StoreDeadlines

    settings = Settings()
    configure_logging(settings, stream=open(os.devnull, "w"))  # noqa: SIM115
    # As the service reuses affinity reads; a checkout from before has no such setting.
    reuse = getattr(settings, "feed_affinity_reuse_seconds", None)
    services = build_services(
        configured_stores(settings),
        settings,
        feed_config=FeedServiceConfig(
            cursor_secret=settings.cursor_secret,
            model_name=settings.model_name,
            deadlines=StoreDeadlines(cache=settings.shared_cache_deadline_seconds),
            **({} if reuse is None else {"affinity_reuse_seconds": reuse}),
        ),
    )
    app = create_app(services, settings)
    client = app.test_client()
    secret = settings.auth_secret.get_secret_value()  # type: ignore[union-attr]
    users = list(range(1, 1 + USERS))
    headers = {user: {"Authorization": f"Bearer {issue_token(secret, user)}"} for user in users}
    feed = services.feed
    services.feed.refresh_candidates()
    stages = StageTimer()
    for label, store in (("catalog", feed._users._catalog), ("events", feed._users._events),
                         ("seen", feed._users._seen),
                         ("shared cache", feed._snapshots.shared_level)):  # fmt: skip
        if store is not None and id(store) not in stages.wrapped:
            stages.wrap_store(store, label)
    cards = app.extensions["reelrank_cards"]
    for label, store in (("card catalog", cards._catalog), ("card events", cards._events)):
        if id(store) not in stages.wrapped:
            stages.wrap_store(store, label)
    stages.wrap(feed, "feed", "feed()")
    stages.wrap(feed._snapshots, "get", "feed: snapshot lookup")
    stages.wrap(feed._users, "rank", "feed: ranking (reads + kernels)")
    stages.wrap(feed._users, "rank_from", "feed: ranking kernels and packing")
    stages.wrap(feed._snapshots, "put", "feed: snapshot write")
    stages.wrap(feed._pager, "page", "feed: page cut and seen mark")
    stages.wrap(cards, "read", "cards")
    turn = [0]

    def miss() -> dict[str, float]:
        user = users[turn[0] % USERS]
        turn[0] += 1
        feed.invalidate(user)
        if cold_cards:
            # As for videos no request of this process showed before: the details,
            # creators and counts this process kept are those its ranking read since
            # (the pool's, by code whose card reader keeps them).
            for kept in ("_videos", "_creators", "_stats"):
                old = getattr(cards, kept)
                setattr(cards, kept, type(old)(old._ttl, old._size, old._clock))
            feed.refresh_candidates()
        current: dict[str, float] = {}
        stages.current = current
        cpu_started = time.process_time()
        started = time.perf_counter()
        response = client.get(f"/api/v1/reels?limit={PAGE_SIZE}", headers=headers[user])
        current["request"] = 1e3 * (time.perf_counter() - started)
        current["CPU during the request (process)"] = 1e3 * (time.process_time() - cpu_started)
        stages.current = None
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.headers["Cache-Status"] == "reelrank; fwd=miss"
        current["rest (Flask, auth, body, metrics, log)"] = (
            current["request"] - current["feed()"] - current.get("cards", 0.0)
        )
        return current

    print("ready", flush=True)
    for line in sys.stdin:
        count = int(line)
        rows = []
        started = time.process_time()
        for _ in range(count):
            rows.append(miss())
        cpu = 1e3 * (time.process_time() - started) / count
        print(json.dumps({"cpu": cpu, "rows": rows}), flush=True)
    services.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkouts", nargs="+", type=Path, help="the first is the baseline")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--block", type=int, default=50, help="misses per block")
    parser.add_argument(
        "--cold-cards",
        action="store_true",
        help="read each page's cards afresh but for the counts the ranking read, as for "
        "videos the process never showed",
    )
    parser.add_argument(
        "--fold-stats",
        action="store_true",
        help="roll the statistics up once after seeding, as the deployment's job does",
    )
    args = parser.parse_args()
    videos = int(os.environ.get("REELRANK_BENCH_MISS_VIDEOS", "100000"))
    catalog = {
        "REELRANK_VIDEOS": str(videos),
        "REELRANK_PENDING_VIDEOS": "0",
        "REELRANK_USERS": str(USERS + 50),
        "REELRANK_EVENTS": str(videos),
        "REELRANK_CREATORS": str(max(10, videos // 100)),
    }
    blocks = run_checkouts(__file__, args.checkouts, args.cold_cards, catalog=catalog,
                           fold_stats=args.fold_stats, rounds=args.rounds,
                           block=args.block)  # fmt: skip
    rows = {name: [row for block in blocks.rows[name] for row in block] for name in blocks.names}
    print(f"{videos} videos, {args.rounds} rounds of {args.block} misses per checkout")
    print_stage_table(blocks.names, rows)
    print_cpu(blocks, "miss")
    for name in blocks.names:
        # Misses whose ranking read the user's affinities, and those that reused a read.
        read = [row for row in rows[name] if any("get_affinities" in stage for stage in row)]
        reused = [row for row in rows[name] if row not in read]
        for label, group in (("read affinities", read), ("reused affinities", reused)):
            if group:
                requests = [row["request"] for row in group]
                print(f"{name}: {label}: {len(group)} misses, request p50 "
                      f"{statistics.median(requests):.2f} / p99 "
                      f"{quantile(requests, 0.99):.2f} ms")  # fmt: skip
    print(f"load average after each round: {' '.join(blocks.loads)}; at the end {blocks.load}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve_with_metrics_dir(_serve_in, sys.argv[2] == "1")
    else:
        main()
