"""Slow, obviously correct references for every compiled kernel.

For scoring, a float64 reference of the formulas: it works from the raw columns given to
``Candidates.from_arrays`` (not from the packed float32 block), applies the formulas of
*How scoring works* one candidate at a time in plain Python, and ranks with a full stable
sort. For similar videos, every eligible row scored in float64 and sorted; for the
diversity rule, the rule as documented, one list scan per position. The kernels are
tested against them.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from reelrank import RankingConfig
from reelrank._kernels._diversity import NO_SOUND

FLOAT32_SMALLEST_NORMAL = float(np.finfo(np.float32).tiny)
"""View totals below this count as no views (as ``0``), as documented."""


@dataclass(frozen=True)
class Columns:
    """Raw candidate columns, as given to ``Candidates.from_arrays``."""

    video_id: npt.NDArray[np.int64]
    creator_id: npt.NDArray[np.int64]
    published_at: npt.NDArray[np.float64]
    views: npt.NDArray[np.float64]
    completion_sum: npt.NDArray[np.float64]
    likes: npt.NDArray[np.float64]
    shares: npt.NDArray[np.float64]
    comments: npt.NDArray[np.float64]
    dl_score: npt.NDArray[np.float64] | None = None

    def as_kwargs(self) -> dict[str, object]:
        return {
            "video_id": self.video_id,
            "creator_id": self.creator_id,
            "published_at": self.published_at,
            "views": self.views,
            "completion_sum": self.completion_sum,
            "likes": self.likes,
            "shares": self.shares,
            "comments": self.comments,
            "dl_score": self.dl_score,
        }

    def __len__(self) -> int:
        return len(self.video_id)


def freshness(published_at: float, now: float, config: RankingConfig) -> float:
    age_hours = max(0.0, (now - published_at) / 3600.0)
    return float(2.0 ** (-age_hours / config.freshness_half_life_hours))


def completion(views: float, completion_sum: float, config: RankingConfig) -> float:
    total = views + config.completion_prior_views
    if total < FLOAT32_SMALLEST_NORMAL:
        return config.completion_prior_mean
    prior = config.completion_prior_mean * config.completion_prior_views
    return (min(completion_sum, views) + prior) / total


def engagement(
    views: float, likes: float, shares: float, comments: float, config: RankingConfig
) -> float:
    total = views + config.engagement_prior_views
    if total < FLOAT32_SMALLEST_NORMAL:
        rate = config.engagement_prior_rate
    else:
        weighted = (
            config.like_weight * min(likes, views)
            + config.share_weight * min(shares, views)
            + config.comment_weight * min(comments, views)
        )
        rate = (weighted + config.engagement_prior_rate * config.engagement_prior_views) / total
    return rate / (rate + config.engagement_half_saturation)


def deep_learning(dl: float, config: RankingConfig) -> float:
    return config.dl_neutral_score if math.isnan(dl) else dl


def affinity_per_candidate(
    columns: Columns, affinity: Mapping[int, float] | npt.NDArray[np.floating] | None
) -> list[float]:
    if affinity is None:
        return [0.0] * len(columns)
    if isinstance(affinity, np.ndarray):
        return [float(a) for a in affinity]
    return [float(affinity.get(int(c), 0.0)) for c in columns.creator_id]


def signals(
    columns: Columns,
    now: float,
    config: RankingConfig,
    affinity: Mapping[int, float] | npt.NDArray[np.floating] | None = None,
) -> npt.NDArray[np.float64]:
    """The five unweighted signals, shape ``(n, 5)`` in ``WEIGHT_FIELDS`` order."""
    aff = affinity_per_candidate(columns, affinity)
    rows = []
    for i in range(len(columns)):
        dl = math.nan if columns.dl_score is None else float(columns.dl_score[i])
        views = float(columns.views[i])
        rows.append(
            [
                freshness(float(columns.published_at[i]), now, config),
                completion(views, float(columns.completion_sum[i]), config),
                engagement(
                    views,
                    float(columns.likes[i]),
                    float(columns.shares[i]),
                    float(columns.comments[i]),
                    config,
                ),
                aff[i],
                deep_learning(dl, config),
            ]
        )
    return np.array(rows, dtype=np.float64).reshape(len(columns), 5)


def explain(
    columns: Columns,
    now: float,
    config: RankingConfig,
    affinity: Mapping[int, float] | npt.NDArray[np.floating] | None = None,
) -> npt.NDArray[np.float64]:
    """Weighted contributions, shape ``(n, 5)``."""
    return signals(columns, now, config, affinity) * np.array(config.weights)


def score(
    columns: Columns,
    now: float,
    config: RankingConfig,
    affinity: Mapping[int, float] | npt.NDArray[np.floating] | None = None,
) -> npt.NDArray[np.float64]:
    return explain(columns, now, config, affinity).sum(axis=1)


def top_k(
    scores: npt.NDArray[np.floating],
    video_ids: npt.NDArray[np.int64],
    k: int,
    seen: Collection[int] = (),
) -> list[int]:
    """Positions of the ``k`` best unseen candidates: full stable sort by (-score, video id)."""
    seen_set = {int(v) for v in seen}
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), int(video_ids[i])))
    return [i for i in order if int(video_ids[i]) not in seen_set][:k]


def random_columns(
    rng: np.random.Generator,
    n: int,
    *,
    n_creators: int = 20,
    with_dl: bool = True,
    now: float = 1.7e9,
) -> Columns:
    """Plausible random candidates, including lagging counters and missing model scores."""
    views = np.floor(rng.pareto(1.2, n) * 50.0)
    views[rng.random(n) < 0.1] = 0.0
    completion_sum = views * rng.uniform(0.0, 1.0, n)
    likes = np.floor(views * rng.uniform(0.0, 0.3, n))
    # Counters updated out of step with views: sometimes larger than views.
    lagging = rng.random(n) < 0.05
    likes[lagging] += rng.integers(1, 10, int(lagging.sum()))
    completion_sum[lagging] += 3.0
    dl_score = None
    if with_dl:
        dl_score = rng.uniform(0.0, 1.0, n)
        dl_score[rng.random(n) < 0.2] = np.nan
    return Columns(
        video_id=rng.permutation(n * 3)[:n].astype(np.int64),
        creator_id=rng.integers(0, n_creators, n).astype(np.int64),
        published_at=now - rng.uniform(-3600.0, 30 * 86_400.0, n),
        views=views,
        completion_sum=completion_sum,
        likes=likes,
        shares=np.floor(views * rng.uniform(0.0, 0.05, n)),
        comments=np.floor(views * rng.uniform(0.0, 0.1, n)),
        dl_score=dl_score,
    )


def cosine_top_k(
    matrix: npt.NDArray[np.float32],
    query: npt.NDArray[np.float32],
    ids: npt.NDArray[np.int64],
    k: int,
    excluded: npt.NDArray[np.bool_],
) -> list[tuple[int, float]]:
    """``(video id, score)`` of the ``k`` best eligible rows, sorted by (-score, id, row)."""
    query64 = query.astype(np.float64)
    scored = [
        (float(np.dot(matrix[row].astype(np.float64), query64)), int(ids[row]), row)
        for row in range(matrix.shape[0])
        if not excluded[row]
    ]
    scored.sort(key=lambda item: (-item[0], item[1], item[2]))
    return [(vid, score) for score, vid, _ in scored[:k]]


def diversity_order(
    creators: list[int], sounds: list[int], max_creator: int | None, max_sound: int | None
) -> list[int]:
    """The diversity rule as documented, one list scan per position."""
    remaining = list(range(len(creators)))
    out: list[int] = []

    def run_length(key: list[int], value: int) -> int:
        length = 0
        for index in reversed(out):
            if key[index] != value:
                break
            length += 1
        return length

    def allowed(i: int) -> bool:
        if max_creator is not None and run_length(creators, creators[i]) >= max_creator:
            return False
        return not (
            max_sound is not None
            and sounds[i] != NO_SOUND
            and run_length(sounds, sounds[i]) >= max_sound
        )

    while remaining:
        chosen = next((i for i in remaining if allowed(i)), remaining[0])
        remaining.remove(chosen)
        out.append(chosen)
    return out
