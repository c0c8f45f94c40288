"""score_frame against a plain pandas implementation of the same formulas, same frame.

One million (user, video) rows (20k in quick mode) with a timezone-aware ``published_at``,
a per-row ``affinity`` and a ``dl_score`` with missing values. Both sides start from the
DataFrame and return a new DataFrame with the score and the five weighted contributions;
the baseline is what one would write without reelrank: Series arithmetic, one pass per
operation. Compare the two cases' means in the same run; the ratio is printed as well.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import pytest

from reelrank import WEIGHT_FIELDS, RankingConfig, score_frame

pd = pytest.importorskip("pandas")

QUICK = os.environ.get("REELRANK_BENCH_QUICK") == "1"
ROWS = 20_000 if QUICK else 1_000_000
NOW = pd.Timestamp("2026-01-15 12:00", tz="UTC")
CONFIG = RankingConfig()
OUTPUTS = ["score", *WEIGHT_FIELDS]


@pytest.fixture(scope="module")
def frame() -> Any:
    rng = np.random.default_rng(5)
    views = np.floor(rng.pareto(1.2, ROWS) * 50.0)
    dl_score = rng.uniform(0.0, 1.0, ROWS)
    dl_score[rng.random(ROWS) < 0.2] = np.nan
    return pd.DataFrame(
        {
            "user_id": rng.integers(1, 10_000, ROWS),
            "video_id": rng.integers(1, 200_000, ROWS),
            "creator_id": rng.integers(1, 20_000, ROWS),
            "published_at": NOW - pd.to_timedelta(rng.uniform(0, 30 * 86_400, ROWS), unit="s"),
            "views": views,
            "completion_sum": views * rng.uniform(0.0, 1.0, ROWS),
            "likes": np.floor(views * rng.uniform(0.0, 0.3, ROWS)),
            "shares": np.floor(views * rng.uniform(0.0, 0.05, ROWS)),
            "comments": np.floor(views * rng.uniform(0.0, 0.1, ROWS)),
            "affinity": rng.uniform(0.0, 1.0, ROWS),
            "dl_score": dl_score,
        }
    )


def pandas_score_frame(frame: Any, config: RankingConfig, now: Any) -> Any:
    """The scoring formulas written as pandas Series arithmetic."""
    views = frame["views"]
    age_hours = ((now - frame["published_at"]).dt.total_seconds() / 3600.0).clip(lower=0.0)
    freshness = np.exp2(-age_hours / config.freshness_half_life_hours)
    completion = (
        frame["completion_sum"].clip(upper=views)
        + config.completion_prior_mean * config.completion_prior_views
    ) / (views + config.completion_prior_views)
    weighted = (
        config.like_weight * frame["likes"].clip(upper=views)
        + config.share_weight * frame["shares"].clip(upper=views)
        + config.comment_weight * frame["comments"].clip(upper=views)
    )
    rate = (weighted + config.engagement_prior_rate * config.engagement_prior_views) / (
        views + config.engagement_prior_views
    )
    engagement = rate / (rate + config.engagement_half_saturation)
    deep_learning = frame["dl_score"].fillna(config.dl_neutral_score)
    contributions = {
        "freshness": config.freshness * freshness,
        "completion": config.completion * completion,
        "engagement": config.engagement * engagement,
        "affinity": config.affinity * frame["affinity"],
        "deep_learning": config.deep_learning * deep_learning,
    }
    score = sum(contributions.values())
    return frame.drop(columns="affinity").assign(score=score, **contributions)


def test_score_frame(benchmark: Any, frame: Any) -> None:
    scored = benchmark(score_frame, frame, config=CONFIG, now=NOW, progress=False)
    expected = pandas_score_frame(frame, CONFIG, NOW)
    np.testing.assert_allclose(
        scored[OUTPUTS].to_numpy(np.float64), expected[OUTPUTS].to_numpy(), atol=2e-6, rtol=0
    )


def test_score_frame_pandas_baseline(benchmark: Any, frame: Any) -> None:
    scored = benchmark(pandas_score_frame, frame, CONFIG, NOW)
    assert len(scored) == ROWS
    assert set(OUTPUTS) <= set(scored.columns)


def _best_seconds(function: Any, *args: Any, repeat: int, **kwargs: Any) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        function(*args, **kwargs)
        best = min(best, time.perf_counter() - started)
    return best


def test_score_frame_ratio_to_baseline(frame: Any) -> None:
    """Times both back to back (interleaved) and prints baseline / score_frame."""
    repeat = 3 if QUICK else 2
    ours, baseline = [], []
    score_frame(frame, config=CONFIG, now=NOW, progress=False)  # compile or load the kernels
    for _ in range(3):
        ours.append(
            _best_seconds(score_frame, frame, repeat=repeat, config=CONFIG, now=NOW, progress=False)
        )
        baseline.append(_best_seconds(pandas_score_frame, frame, CONFIG, NOW, repeat=repeat))
    fastest, reference = min(ours), min(baseline)
    print(
        f"\nscore_frame over {ROWS} rows: {fastest * 1e3:.1f} ms "
        f"({ROWS / fastest / 1e6:.1f}M rows/s), pandas {reference * 1e3:.1f} ms, "
        f"pandas/score_frame = {reference / fastest:.2f}x"
    )
