"""The scoring engine against straightforward baselines, on the same data in the same run.

One workload throughout: score every candidate (all five signals, a per-creator affinity
mapping), drop the videos the user has seen and return the best 50 in order. Three
implementations do it:

* ``python``: a pure-Python loop over lists with :mod:`heapq` (up to 100k candidates);
* ``numpy``: what one writes without a kernel: whole-column arithmetic, ``np.isin`` for
  the seen filter, ``argpartition`` and a ``lexsort`` for the ordered top 50;
* ``numba``: :meth:`reelrank.Ranker.rank`, including its argument handling.

``floor`` is a bare single-thread read of the seven feature rows and a ``uint32`` creator
column, summed by a numba loop: what a pass that looks up every candidate's creator reads,
so ``floor / numba`` is the fraction of that memory-read speed the call reaches.
``rows floor`` reads the feature rows alone, which is all the rank kernel streams when a
creator mapping covers few candidates (it then rescores those candidates on their own):
no ranking can beat it. The batch
case scores many users against shared candidates, and the cold-start case times the first
call in a new process whose numba cache is warm. The ratio table is printed at the end of
the run (see ``benchmarks/conftest.py``); ratios use each case's fastest round.
"""

from __future__ import annotations

import functools
import heapq
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import pytest
from conftest import QUICK, SUMMARY

from reelrank import Candidates, Ranker, RankingConfig, warmup
from reelrank._kernels._presets import FASTMATH

SIZES = [100, 1_000, 10_000] if QUICK else [100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000]
PYTHON_MAX = 1_000 if QUICK else 100_000
BATCH_USERS, BATCH_CANDIDATES = (50, 2_000) if QUICK else (1_000, 10_000)
K = 50
NOW = 1.7e9
FOLLOWED_CREATORS = 20

RESULTS: dict[tuple[str, int], float] = {}
"""Fastest round in seconds, by (implementation, candidates)."""


@dataclass(frozen=True)
class Workload:
    candidates: Candidates
    affinity: dict[int, float]
    seen: np.ndarray
    """Seen video ids, int64, in no particular order."""


@functools.lru_cache(maxsize=1)
def workload(n: int) -> Workload:
    rng = np.random.default_rng(n)
    views = np.floor(rng.pareto(1.2, n) * 50.0).astype(np.float32)
    creators = rng.integers(0, max(10, n // 50), n)
    video_ids = rng.permutation(4 * n)[:n]
    dl_score = rng.uniform(0.0, 1.0, n).astype(np.float32)
    dl_score[rng.random(n) < 0.2] = np.nan
    candidates = Candidates.from_arrays(
        video_id=video_ids,
        creator_id=creators,
        published_at=NOW - rng.uniform(0.0, 30 * 86_400.0, n),
        views=views,
        completion_sum=views * rng.uniform(0.0, 1.0, n).astype(np.float32),
        likes=np.floor(views * rng.uniform(0.0, 0.3, n).astype(np.float32)),
        shares=np.floor(views * rng.uniform(0.0, 0.05, n).astype(np.float32)),
        comments=np.floor(views * rng.uniform(0.0, 0.1, n).astype(np.float32)),
        dl_score=dl_score,
    )
    distinct = np.unique(creators)
    followed = rng.choice(distinct, min(FOLLOWED_CREATORS, distinct.size), replace=False)
    strengths = rng.uniform(0.2, 1.0, followed.size)
    affinity = {int(c): float(a) for c, a in zip(followed, strengths, strict=True)}
    seen = rng.choice(video_ids, min(max(10, n // 100), 10_000), replace=False)
    return Workload(candidates, affinity, seen)


# -- the three implementations ------------------------------------------------------------


def numba_rank(ranker: Ranker, w: Workload) -> np.ndarray:
    ranking = ranker.rank(w.candidates, k=K, now=NOW, affinity=w.affinity, seen=w.seen)
    return ranking.positions


def numpy_rank(config: RankingConfig, w: Workload) -> np.ndarray:
    c = w.candidates
    age_hours = np.maximum((NOW - c.published_at) / 3600.0, 0.0)
    freshness = np.exp2(-age_hours / config.freshness_half_life_hours)
    views = c.views
    with np.errstate(invalid="ignore", divide="ignore"):
        total = views + config.completion_prior_views
        completion = np.where(
            total > 0,
            (c.completion_sum + config.completion_prior_mean * config.completion_prior_views)
            / total,
            config.completion_prior_mean,
        )
        total = views + config.engagement_prior_views
        weighted = (
            config.like_weight * c.likes
            + config.share_weight * c.shares
            + config.comment_weight * c.comments
            + config.engagement_prior_rate * config.engagement_prior_views
        )
        rate = np.where(total > 0, weighted / total, config.engagement_prior_rate)
    engagement = rate / (rate + config.engagement_half_saturation)
    keys = np.fromiter(w.affinity.keys(), dtype=np.int64, count=len(w.affinity))
    values = np.fromiter(w.affinity.values(), dtype=np.float64, count=len(w.affinity))
    order = np.argsort(keys)
    keys, values = keys[order], values[order]
    slot = np.minimum(np.searchsorted(keys, c.creator_ids), keys.size - 1)
    affinity = np.where(keys[slot] == c.creator_ids, values[slot], 0.0)
    dl = np.where(np.isnan(c.dl_scores), config.dl_neutral_score, c.dl_scores)
    scores = (
        config.freshness * freshness
        + config.completion * completion
        + config.engagement * engagement
        + config.affinity * affinity
        + config.deep_learning * dl
    )
    scores[np.isin(c.video_ids, w.seen)] = -np.inf
    best = np.argpartition(-scores, K)[:K] if scores.size > K else np.arange(scores.size)
    best = best[np.lexsort((c.video_ids[best], -scores[best]))]
    return best[np.isfinite(scores[best])]


@functools.lru_cache(maxsize=1)
def python_columns(n: int) -> tuple[list[Any], ...]:
    """The workload as plain lists, the form a pure-Python implementation would hold."""
    c = workload(n).candidates
    return tuple(
        column.tolist()
        for column in (
            c.video_ids,
            c.creator_ids,
            c.published_at,
            c.views,
            c.completion_sum,
            c.likes,
            c.shares,
            c.comments,
            c.dl_scores,
        )
    )


def python_rank(config: RankingConfig, w: Workload, columns: tuple[list[Any], ...]) -> list[int]:
    video_ids, creator_ids, published, views, completion, likes, shares, comments, dl = columns
    seen = set(w.seen.tolist())
    affinity = w.affinity
    cfg = config
    completion_prior = cfg.completion_prior_mean * cfg.completion_prior_views
    engagement_prior = cfg.engagement_prior_rate * cfg.engagement_prior_views
    heap: list[tuple[float, int, int]] = []
    for i in range(len(video_ids)):
        video = video_ids[i]
        if video in seen:
            continue
        age_hours = max(0.0, (NOW - published[i]) / 3600.0)
        freshness = 2.0 ** (-age_hours / cfg.freshness_half_life_hours)
        v = views[i]
        total = v + cfg.completion_prior_views
        completion_signal = (
            (completion[i] + completion_prior) / total if total > 0 else cfg.completion_prior_mean
        )
        total = v + cfg.engagement_prior_views
        rate = (
            (
                cfg.like_weight * likes[i]
                + cfg.share_weight * shares[i]
                + cfg.comment_weight * comments[i]
                + engagement_prior
            )
            / total
            if total > 0
            else cfg.engagement_prior_rate
        )
        model = dl[i]
        score = (
            cfg.freshness * freshness
            + cfg.completion * completion_signal
            + cfg.engagement * rate / (rate + cfg.engagement_half_saturation)
            + cfg.affinity * affinity.get(creator_ids[i], 0.0)
            + cfg.deep_learning * (cfg.dl_neutral_score if math.isnan(model) else model)
        )
        item = (score, -video, -i)
        if len(heap) < K:
            heapq.heappush(heap, item)
        elif item > heap[0]:
            heapq.heapreplace(heap, item)
    return [-i for _, _, i in sorted(heap, reverse=True)]


@numba.njit(cache=True, fastmath=FASTMATH, error_model="numpy", nogil=True)
def bare_read(features: Any, creator_column: Any) -> float:
    """Sum the feature rows (and ``creator_column`` unless None) in one pass."""
    rows = (
        features[0],
        features[1],
        features[2],
        features[3],
        features[4],
        features[5],
        features[6],
    )
    total = np.float32(0.0)
    creators = 0
    for i in range(np.uint64(features.shape[1])):
        total += (
            rows[0][i] + rows[1][i] + rows[2][i] + rows[3][i] + rows[4][i] + rows[5][i] + rows[6][i]
        )
        if creator_column is not None:
            creators += creator_column[i]
    return float(total) + float(creators)


@functools.lru_cache(maxsize=1)
def creator_index(n: int) -> np.ndarray:
    """Each candidate's index among the distinct creators, ``uint32``."""
    inverse = np.unique(workload(n).candidates.creator_ids, return_inverse=True)[1]
    return np.ascontiguousarray(inverse, dtype=np.uint32)


# -- cases -----------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    warmup()
    yield
    SUMMARY.extend(_table())


def _rounds(n: int, implementation: str) -> int:
    if implementation == "python":
        return 2 if n >= 100_000 else 5
    return 5 if implementation == "numpy" else 15


def _run(benchmark: Any, key: tuple[str, int], function: Callable[[], Any]) -> Any:
    implementation, n = key
    if n >= 100_000:
        result = benchmark.pedantic(function, rounds=_rounds(n, implementation), warmup_rounds=1)
    else:
        result = benchmark(function)
    if benchmark.stats is not None:
        RESULTS[key] = benchmark.stats.stats.min
    return result


CASES = [
    (implementation, n)
    for n in SIZES
    for implementation in ("floor", "rows-floor", "numba", "numpy", "python")
    if implementation != "python" or n <= PYTHON_MAX
]


@pytest.mark.parametrize(("implementation", "n"), CASES, ids=[f"{i}-{n}" for i, n in CASES])
def test_rank(benchmark: Any, implementation: str, n: int) -> None:
    benchmark.group = f"rank n={n}"
    w = workload(n)
    ranker = Ranker()
    expected = numba_rank(ranker, w)
    scores = ranker.score(w.candidates, now=NOW, affinity=w.affinity)
    if implementation in ("floor", "rows-floor"):
        features = w.candidates._features
        index = creator_index(n) if implementation == "floor" else None
        _run(benchmark, (implementation, n), lambda: bare_read(features, index))
        return
    if implementation == "numba":
        got = _run(benchmark, (implementation, n), lambda: numba_rank(ranker, w))
    elif implementation == "numpy":
        got = _run(benchmark, (implementation, n), lambda: numpy_rank(ranker.config, w))
    else:
        columns = python_columns(n)
        got = np.array(
            _run(benchmark, (implementation, n), lambda: python_rank(ranker.config, w, columns))
        )
    # Baselines score in other precisions, so compare the scores they picked, not the order.
    assert len(got) == len(expected)
    np.testing.assert_allclose(scores[got], scores[expected], atol=1e-5)
    assert not np.isin(w.candidates.video_ids[got], w.seen).any()


@pytest.mark.parametrize("implementation", ["numba", "numpy"])
def test_batch(benchmark: Any, implementation: str) -> None:
    benchmark.group = f"batch {BATCH_USERS} users x {BATCH_CANDIDATES} candidates"
    w = workload(BATCH_CANDIDATES)
    ranker = Ranker()
    rng = np.random.default_rng(1)
    affinity = rng.uniform(0.0, 1.0, (BATCH_USERS, BATCH_CANDIDATES)).astype(np.float32)

    def numpy_batch() -> np.ndarray:
        if not ((affinity >= 0.0) & (affinity <= 1.0)).all():
            raise ValueError("affinity")
        shared = ranker.score(w.candidates, now=NOW)  # affinity-free part, computed once
        return np.minimum(shared + ranker.config.affinity * affinity, 1.0)

    def numba_batch() -> np.ndarray:
        return ranker.score_batch(w.candidates, affinity, now=NOW)

    function = numba_batch if implementation == "numba" else numpy_batch
    result = benchmark.pedantic(function, rounds=3 if QUICK else 10, warmup_rounds=1)
    if benchmark.stats is not None:
        RESULTS[(f"batch-{implementation}", BATCH_USERS * BATCH_CANDIDATES)] = (
            benchmark.stats.stats.min
        )
    np.testing.assert_allclose(result, numba_batch(), atol=1e-6)


COLD_START = """
import json, sys, time
if sys.argv[1] == "without-scipy":
    # numba's first compiled call imports scipy.linalg when it is installed (a test-only
    # dependency here); a production install without scipy does not pay for that.
    sys.modules["scipy"] = None
started = time.perf_counter()
import numpy as np
import reelrank
imported = time.perf_counter()
n = 1000
candidates = reelrank.Candidates.from_arrays(
    video_id=np.arange(n), creator_id=np.arange(n) % 50, published_at=np.full(n, 1.7e9),
    views=np.full(n, 100.0), completion_sum=np.full(n, 50.0), likes=np.full(n, 5.0),
    shares=np.ones(n), comments=np.ones(n),
)
built = time.perf_counter()
reelrank.Ranker().rank(candidates, k=50, now=1.7e9, affinity={3: 0.5}, seen=[1, 2])
called = time.perf_counter()
print(json.dumps({"import": imported - started, "first_call": called - built}))
"""


@pytest.mark.parametrize("variant", ["as-installed", "without-scipy"])
def test_cold_start_first_call(benchmark: Any, variant: str) -> None:
    """A new process with a warm numba cache: import, then the first rank call (reported)."""
    benchmark.group = "cold start (whole new process)"
    phases: list[dict[str, float]] = []

    def new_process() -> None:
        out = subprocess.run(
            [sys.executable, "-c", COLD_START, variant],
            check=True,
            capture_output=True,
            text=True,
            env=os.environ.copy(),
        )
        phases.append(json.loads(out.stdout))

    # The warm-up round fills the numba cache if this run has not done so yet.
    benchmark.pedantic(new_process, rounds=1 if QUICK else 3, warmup_rounds=1)
    timed = phases[1:]
    RESULTS[(f"cold-import-{variant}", 0)] = min(p["import"] for p in timed)
    RESULTS[(f"cold-first-call-{variant}", 0)] = min(p["first_call"] for p in timed)
    if benchmark.stats is not None:
        RESULTS[(f"cold-process-{variant}", 0)] = benchmark.stats.stats.min


# -- report ----------------------------------------------------------------------------------


def _us(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e6:,.1f}"


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or denominator is None or denominator == 0:
        return "-"
    return f"{numerator / denominator:,.2f}"


def _table() -> list[str]:
    lines = [
        f"scoring: score + seen filter + top-{K}, fastest round, one thread"
        f"{' (quick mode)' if QUICK else ''}",
        f"{'candidates':>11} {'python us':>12} {'numpy us':>11} {'numba us':>10} "
        f"{'floor us':>10} {'floor/numba':>11} {'rows floor/numba':>16} {'numpy/numba':>11} "
        f"{'python/numba':>12} "
        f"{'M cand/s':>9}",
    ]
    for n in SIZES:
        numba_s = RESULTS.get(("numba", n))
        lines.append(
            f"{n:>11,} {_us(RESULTS.get(('python', n))):>12} {_us(RESULTS.get(('numpy', n))):>11} "
            f"{_us(numba_s):>10} {_us(RESULTS.get(('floor', n))):>10} "
            f"{_ratio(RESULTS.get(('floor', n)), numba_s):>11} "
            f"{_ratio(RESULTS.get(('rows-floor', n)), numba_s):>16} "
            f"{_ratio(RESULTS.get(('numpy', n)), numba_s):>11} "
            f"{_ratio(RESULTS.get(('python', n)), numba_s):>12} "
            f"{_ratio(n / 1e6, numba_s):>9}"
        )
    scores = BATCH_USERS * BATCH_CANDIDATES
    batch_numba = RESULTS.get(("batch-numba", scores))
    batch_numpy = RESULTS.get(("batch-numpy", scores))
    if batch_numba is not None:
        lines.append(
            f"batch {BATCH_USERS} users x {BATCH_CANDIDATES} candidates on "
            f"{numba.get_num_threads()} threads ({numba.threading_layer()} layer): "
            f"numba {batch_numba * 1e3:.2f} ms "
            f"({scores / batch_numba / 1e6:,.0f} M scores/s), numpy "
            f"{(batch_numpy or 0) * 1e3:.2f} ms, numpy/numba {_ratio(batch_numpy, batch_numba)}"
        )
    for variant in ("as-installed", "without-scipy"):
        if (f"cold-first-call-{variant}", 0) in RESULTS:
            lines.append(
                f"new process, warm numba cache, {variant}: import numpy+reelrank "
                f"{RESULTS[(f'cold-import-{variant}', 0)]:.3f} s, first rank call "
                f"{RESULTS[(f'cold-first-call-{variant}', 0)]:.3f} s, whole process "
                f"{RESULTS.get((f'cold-process-{variant}', 0), float('nan')):.3f} s"
            )
    return lines
