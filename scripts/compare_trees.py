"""Time the same public-API workload on two source trees, alternately, in one run.

    python scripts/compare_trees.py OLD_SRC NEW_SRC [--rounds 3]

OLD_SRC and NEW_SRC are ``src`` directories of two checkouts (for example a worktree of
the previous release and this one). Each round starts one fresh process per tree, in
alternating order, so both see the same machine load; each process warms the kernels,
then times every case and prints its best-of-N and median in microseconds. The table
gives, per case, the best time over all rounds for each tree and NEW / OLD: below 1 is
faster. Only names exported by ``reelrank`` are used, so any two trees that keep the
public API compare.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

WORKLOAD = r"""
import json, statistics, time
from datetime import UTC, datetime, timedelta
import numpy as np
import pandas as pd
import reelrank as rr
from reelrank.testing import make_creator

def best_and_median(fn, repeat):
    fn()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return min(samples) * 1e6, statistics.median(samples) * 1e6

rr.warmup()
results = {}
rng = np.random.default_rng(7)
for n in (100, 1_000, 10_000, 100_000):
    candidates = rr.Candidates.from_arrays(
        video_id=np.arange(1, n + 1), creator_id=rng.integers(1, 2_000, n),
        published_at=rng.uniform(0, 14 * 86_400, n), views=rng.integers(0, 10_000, n),
        completion_sum=rng.uniform(0, 100, n), likes=rng.integers(0, 100, n),
        shares=rng.integers(0, 10, n), comments=rng.integers(0, 10, n),
        dl_score=rng.uniform(0, 1, n),
    )
    ranker = rr.Ranker()
    affinity = {int(c): 0.3 for c in rng.integers(1, 2_000, 30)}
    seen = rng.integers(1, n + 1, 50).tolist()
    results[f"rank {n:,} (k=50, affinity, seen)"] = best_and_median(
        lambda: ranker.rank(candidates, k=50, now=15 * 86_400.0, affinity=affinity, seen=seen),
        200 if n <= 10_000 else 30)

rows = 1_000_000
frame = pd.DataFrame({
    "video_id": np.arange(1, rows + 1), "creator_id": rng.integers(1, 5_000, rows),
    "published_at": pd.to_datetime(rng.uniform(0, 14 * 86_400, rows), unit="s", utc=True),
    "views": rng.integers(0, 10_000, rows), "completion_sum": rng.uniform(0, 100, rows),
    "likes": rng.integers(0, 100, rows), "shares": rng.integers(0, 10, rows),
    "comments": rng.integers(0, 10, rows),
})
moment = datetime(1970, 1, 16, tzinfo=UTC)
results["score_frame 1M rows"] = best_and_median(lambda: rr.score_frame(frame, now=moment), 5)

matrix = rng.standard_normal((100_000, 64)).astype(np.float32)
matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
ids = np.arange(1, 100_001, dtype=np.int64)
query = matrix[0].copy()
results["top_k_cosine 100k x 64, k=20"] = best_and_median(
    lambda: rr.top_k_cosine(matrix, query, ids, 20), 30)

now = datetime(2026, 11, 29, tzinfo=UTC)
size = 10_000
catalog, events, seen_store = rr.InMemoryCatalog(), rr.InMemoryEventStore(), rr.InMemorySeenStore()
for creator in range(1, size // 10 + 1):
    catalog.put_creator(make_creator(creator))
ages = rng.uniform(0, 14 * 86_400, size)
for video in range(1, size + 1):
    catalog.put_video(rr.Video(video_id=video, creator_id=1 + video % (size // 10),
        duration_seconds=30.0, published_at=now - timedelta(seconds=float(ages[video - 1])),
        sound_id=1 + video % 50))
for number, video in enumerate(rng.integers(1, size + 1, size // 2).tolist()):
    events.append(rr.EngagementEvent(event_id=f"w{number}", kind=rr.EngagementKind.WATCH,
        user_id=1 + number % 500, video_id=video, occurred_at=now - timedelta(hours=1),
        completion=float(rng.uniform())), creator_id=1 + video % (size // 10))
config = rr.FeedServiceConfig(recent_limit=size, popular_limit=500, followed_limit=200,
    snapshot_size=200, candidate_pool_ttl_seconds=3_600,
    cursor_secret="comparison-secret-0123456789")
def service(cache):
    return rr.FeedRankingService(catalog=catalog, events=events, seen=seen_store, cache=cache,
        config=config, clock=lambda: now)
users = iter(range(10_000, 10_000_000))
cached = service(rr.TieredFeedCache(rr.LRUFeedCache(max_entries=50_000), rr.InMemoryFeedCache()))
hit_user = next(users)
cached.feed(hit_user, 20)
results["feed cache hit (10k catalog)"] = best_and_median(lambda: cached.feed(hit_user, 20), 300)
uncached = service(None)
results["feed cache miss (10k catalog)"] = best_and_median(
    lambda: uncached.feed(next(users), 20), 60)
warmer = service(rr.TieredFeedCache(rr.LRUFeedCache(max_entries=50_000), rr.InMemoryFeedCache()))
results["warm 100 users (10k catalog)"] = best_and_median(
    lambda: warmer.warm([next(users) for _ in range(100)]), 5)
print("RESULTS " + json.dumps(results))
"""


def run(src: Path) -> dict[str, list[float]]:
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONHASHSEED": "0"}
    out = subprocess.run(
        [sys.executable, "-c", WORKLOAD], env=env, check=True, capture_output=True, text=True
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("RESULTS "))
    results: dict[str, list[float]] = json.loads(line.removeprefix("RESULTS "))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    best: dict[str, dict[str, float]] = {"old": {}, "new": {}}
    for round_number in range(args.rounds):
        order = ("old", "new") if round_number % 2 == 0 else ("new", "old")
        for tree in order:
            for case, (fastest, _median) in run(getattr(args, tree)).items():
                best[tree][case] = min(fastest, best[tree].get(case, float("inf")))
    print(f"{'case':38} {'old µs':>11} {'new µs':>11} {'new/old':>8}")
    for case, old in best["old"].items():
        new = best["new"][case]
        print(f"{case:38} {old:11.1f} {new:11.1f} {new / old:8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
