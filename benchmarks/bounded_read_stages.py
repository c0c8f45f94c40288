"""Where the ClickHouse store's bounded-age read spends its time, in-process, on
synthetic held data of the ingest benchmark's sizes (no server).

Builds the held roll-up (100,000 videos, as 10 M events over the benchmark's videos
fold into), the liked pairs at its watermark, the since-sums the refresh thread holds
(``--chunks`` coarse buckets of ``--since-events`` events each, as a writer at 10,000
events/s leaves them) and no corrections, then times ``stats_columns_within`` of 10,000
candidates: wall and thread CPU per read, p50/p99, and the garbage collections meanwhile;
``--stages`` also times each stage of the read as it runs chunk by chunk.
``--refresher`` runs a thread that extends the since-sums and parses corrections
every second meanwhile, as the store's refresh thread does. Run it against two
checkouts' ``src`` trees, round by round, to compare them::

    PYTHONPATH=<tree>/src:<tree>/adapters/reelrank-clickhouse/src \\
        python benchmarks/bounded_read_stages.py --reads 400
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import threading
import time
from typing import Any

import numpy as np
import reelrank_clickhouse._event_store as es
from numpy.typing import NDArray
from reelrank_clickhouse._schema import FINE_BUCKET_SHIFT, FINE_PER_COARSE_BITS

VIDEOS = 100_000
USERS = 200_000
CANDIDATES = 10_000
LIKED_PAIRS = 1_400_000


def _since_columns(rng: np.random.Generator, coarse: int, events: int) -> list[Any]:
    """Rows of ``arrived_between`` for ``events`` events of one coarse bucket."""
    video = rng.integers(1, VIDEOS + 1, events)
    kind = np.arange(events) % 7  # watch, watch, watch, like, share, comment, unlike
    ids, rows = np.unique(video, return_inverse=True)

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(rows[mask], minlength=ids.shape[0]).astype(np.int64)

    watch = kind < 3
    completion = np.bincount(
        rows[watch], weights=(np.arange(events)[watch] % 10) / 10, minlength=ids.shape[0]
    )
    return [
        np.full(ids.shape[0], coarse, dtype=np.int64),
        ids,
        count(watch),
        completion,
        count((kind == 3) | (kind == 6)),
        count(kind == 4),
        count(kind == 5),
    ]


def _pair_columns(rng: np.random.Generator, coarse: int, events: int) -> list[Any]:
    """Rows of ``pairs_between`` for the likes and unlikes of ``events`` events."""
    count = events * 2 // 7
    video = rng.integers(1, VIDEOS + 1, count)
    user = rng.integers(1, USERS + 1, count)
    keys, first = np.unique((video << 32) | user, return_index=True)
    return [
        np.full(keys.shape[0], coarse, dtype=np.int64),
        keys >> 32,
        keys & 0xFFFFFFFF,
        (first % 2 == 0).astype(np.int64),
        np.ones(keys.shape[0], dtype=np.int64),
    ]


def build(chunks: int, since_events: int, seed: int = 1) -> Any:
    rng = np.random.default_rng(seed)
    now_ns = time.time_ns()
    fold = (now_ns >> (FINE_BUCKET_SHIFT + FINE_PER_COARSE_BITS)) - chunks + 1
    ids = np.arange(1, VIDEOS + 1, dtype=np.int64)
    held = es._HeldRollUp(
        fold=fold,
        arrivals=10_000_000,
        video_ids=ids,
        values=es._Sums(
            rng.integers(40, 60, VIDEOS),
            rng.random(VIDEOS) * 40,
            rng.integers(10, 20, VIDEOS),
            rng.integers(10, 20, VIDEOS),
            rng.integers(10, 20, VIDEOS),
        ),
    )
    keys = np.unique(
        (rng.integers(1, VIDEOS + 1, LIKED_PAIRS) << 32) | rng.integers(1, USERS + 1, LIKED_PAIRS)
    )
    liked = es._HeldLikes.of_pairs(fold, keys)
    start = fold << FINE_PER_COARSE_BITS
    since = es._HeldSince(start, start, (), fold, now_ns)
    for coarse in range(fold, fold + chunks):
        unheld = (coarse + 1) << FINE_PER_COARSE_BITS
        since = since.extended(
            fold,
            unheld,
            _since_columns(rng, coarse, since_events),
            _pair_columns(rng, coarse, since_events),
            now_ns,
        )
    # As the refresh thread does, in the trees that compute like counts ahead.
    if hasattr(since, "with_like_counts"):
        since = since.with_like_counts(liked)
    store = object.__new__(es.ClickHouseEventStore)
    store._held_videos_limit = 1_000_000
    store._hold_arrivals = True
    store._held = held
    store._liked = liked
    store._likes_since = es._NO_LIKES_SINCE
    far = 1 << 62  # the held data count as checked and read far in the future
    store._since = es.replace(since, checked_ns=far, checked_all=True)
    empty = np.zeros(0, dtype=np.int64)
    store._corrections = es._HeldCorrections(far, empty, es._Sums.zeros(0), empty, {})
    store._clock_ns = time.time_ns
    store._keep_fresh = lambda: None
    return store, rng


def _refresh_forever(
    store: Any, rng: np.random.Generator, stop: threading.Event, passes: list[float]
) -> None:
    """What the store's refresh thread parses each second: corrections and since-sums
    extended by a second's 10,000 events."""
    since = store._since
    coarse = since.chunks[-1].coarse
    corrections = [
        np.array([f"e{i}" for i in range(2_000)], dtype=object),
        np.ones(2_000, dtype=np.int64),
        rng.integers(1, VIDEOS + 1, 2_000),
        -np.ones(2_000, dtype=np.int64),
        -np.ones(2_000, dtype=np.float64) / 2,
        np.zeros(2_000, dtype=np.int64),
        np.zeros(2_000, dtype=np.int64),
    ]
    while not stop.wait(1.0):
        columns = _since_columns(rng, coarse, 10_000)
        pairs = _pair_columns(rng, coarse, 10_000)
        began = time.thread_time()
        es._HeldCorrections.of_rows(corrections, 0, 0, store._corrections)
        extended = since.extended(store._held.fold, since.unheld, columns, pairs, 0)
        if hasattr(extended, "with_like_counts"):
            extended.with_like_counts(store._liked)
        passes.append(time.thread_time() - began)


def chunk_by_chunk_stages(store: Any, candidates: list[int], rounds: int) -> dict[str, float]:
    """Median thread CPU (ms) of each stage of the read as it runs without folded
    since-sums or like counts computed ahead: the roll-up's rows, each chunk's sums,
    cutting each chunk's changed pairs down to the liked or unliked candidates, merging
    them, looking them up among the liked pairs, and building the checked columns."""
    held, since = store._held, store._since
    requested = np.sort(np.array(candidates, dtype=np.int64))
    times: dict[str, list[float]] = {}

    def timed(name: str, stage: Any, *args: Any) -> Any:
        began = time.thread_time()
        result = stage(*args)
        times.setdefault(name, []).append(time.thread_time() - began)
        return result

    def cut(videos: NDArray[np.int64]) -> list[Any]:
        return [part.of_videos(videos) for part in since.changed_pairs(held.fold)]

    for _ in range(rounds):
        values = timed("roll-up rows", held.rows_of, requested)
        arrived = es._Sums.zeros(requested.shape[0])
        for number, chunk in enumerate(since.chunks):
            timed(f"since-chunk {number}", chunk.add_to, requested, arrived)
        videos = requested[arrived.likes != 0]
        parts = timed("cut pairs", cut, videos)
        latest = timed("merge pairs", es._ChangedPairs.latest, parts)
        timed("liked-pair lookups", store._liked.likes, videos, latest)
        timed("checked columns", values.columns, requested)
    return {name: round(float(np.median(each)) * 1e3, 3) for name, each in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("--chunks", type=int, default=2)
    parser.add_argument("--since-events", type=int, default=300_000)
    parser.add_argument("--refresher", action="store_true")
    parser.add_argument("--label", default="")
    parser.add_argument(
        "--stages", action="store_true", help="time the chunk-by-chunk read's stages too"
    )
    args = parser.parse_args()
    store, rng = build(args.chunks, args.since_events)
    candidates = (
        np.random.default_rng(7)
        .choice(np.arange(1, VIDEOS + 1), CANDIDATES, replace=False)
        .tolist()
    )
    pauses: list[float] = []
    started_gc = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started_gc[0] = time.perf_counter()
        else:
            pauses.append(time.perf_counter() - started_gc[0])

    stop = threading.Event()
    refresh_passes: list[float] = []
    refresher = None
    if args.refresher:
        refresher = threading.Thread(
            target=_refresh_forever, args=(store, rng, stop, refresh_passes)
        )
        refresher.start()
    gc.callbacks.append(on_gc)
    walls, cpus = [], []
    first = store.stats_columns_within(candidates, max_age_seconds=10.0)
    assert first is not None
    for _ in range(args.reads):
        wall, cpu = time.perf_counter(), time.thread_time()
        found = store.stats_columns_within(candidates, max_age_seconds=10.0)
        cpus.append(time.thread_time() - cpu)
        walls.append(time.perf_counter() - wall)
        assert found is not None
        time.sleep(0.005)
    gc.callbacks.remove(on_gc)
    stop.set()
    if refresher is not None:
        refresher.join()

    def ms(values: list[float], q: float) -> float:
        return float(np.percentile(values, q) * 1e3)

    print(
        json.dumps(
            {
                "label": args.label,
                "wall_p50_ms": round(ms(walls, 50), 3),
                "wall_p99_ms": round(ms(walls, 99), 3),
                "cpu_p50_ms": round(ms(cpus, 50), 3),
                "cpu_p99_ms": round(ms(cpus, 99), 3),
                "gc_pauses": len(pauses),
                "gc_max_ms": round(max(pauses, default=0.0) * 1e3, 3),
                "chunks": len(store._since.chunks),
                "refresh_passes": len(refresh_passes),
                "refresh_cpu_ms": round(float(np.median(refresh_passes or [0.0])) * 1e3, 3),
                "checksum": int(first.views.sum() + first.likes.sum()),
                "loadavg": os.getloadavg()[0],
                **(
                    {"stages_ms": chunk_by_chunk_stages(store, candidates, 60)}
                    if args.stages
                    else {}
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
