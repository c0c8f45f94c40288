"""``reelrank demo``: rank a synthetic catalog and print each item's per-signal breakdown.

It uses the core only (numpy, numba, pydantic), so it runs right after ``pip install reelrank``.
The catalog, the user and the clock are all derived from the seed, so the output is
reproducible.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

import numpy as np
import numpy.typing as npt

from ._config import WEIGHT_FIELDS, RankingConfig
from ._scoring import Candidates, Ranker

__all__ = ["DEMO_NOW", "DemoRow", "format_table", "run_demo", "synthetic_catalog"]

DEMO_NOW = dt.datetime(2026, 1, 15, 12, 0, tzinfo=dt.UTC)
"""The fixed moment the demo ranks at, so its output does not change with the clock."""

_CREATORS = 40
_MAX_AGE_HOURS = 14 * 24.0
_SEEN_VIDEOS = 5


@dataclass(frozen=True, slots=True)
class DemoRow:
    """One ranked item as the demo prints it."""

    rank: int
    video_id: int
    creator_id: int
    age_hours: float
    views: int
    score: float
    contributions: tuple[float, ...]
    """Weighted contributions in :data:`~reelrank.WEIGHT_FIELDS` order."""


@dataclass(frozen=True, slots=True)
class _Catalog:
    candidates: Candidates
    ages_hours: npt.NDArray[np.float64]
    views: npt.NDArray[np.int64]
    affinity: dict[int, float]
    seen: list[int]


def synthetic_catalog(seed: int, size: int) -> _Catalog:
    """A long-tailed catalog, one user's creator affinities and a few videos already seen."""
    rng = np.random.default_rng(seed)
    video_ids = np.arange(10_001, 10_001 + size, dtype=np.int64)
    creator_ids = rng.integers(1, _CREATORS + 1, size).astype(np.int64)
    ages_hours = rng.uniform(0.0, _MAX_AGE_HOURS, size)
    views = np.floor(rng.lognormal(mean=6.0, sigma=1.6, size=size)).astype(np.int64)
    watched = rng.beta(2.0, 2.5, size)
    completion_sum = views * watched
    engagement = rng.beta(1.2, 30.0, size)
    likes = rng.binomial(views, np.minimum(engagement * 3.0, 1.0))
    shares = rng.binomial(views, engagement / 4.0)
    comments = rng.binomial(views, engagement / 2.0)
    dl_score = rng.beta(2.0, 2.0, size)
    dl_score[rng.random(size) < 0.2] = np.nan  # not every video has a model score yet
    published_at = DEMO_NOW.timestamp() - ages_hours * 3600.0
    candidates = Candidates.from_arrays(
        video_id=video_ids,
        creator_id=creator_ids,
        published_at=published_at,
        views=views,
        completion_sum=completion_sum,
        likes=likes,
        shares=shares,
        comments=comments,
        dl_score=dl_score,
    )
    followed = rng.choice(np.arange(1, _CREATORS + 1), size=6, replace=False)
    strengths = rng.uniform(0.3, 1.0, followed.size)
    affinity = {int(c): round(float(a), 2) for c, a in zip(followed, strengths, strict=True)}
    seen = [int(v) for v in rng.choice(video_ids, size=min(_SEEN_VIDEOS, size), replace=False)]
    return _Catalog(candidates, ages_hours, views, affinity, seen)


def ranked_rows(seed: int, catalog_size: int, page_size: int) -> tuple[list[DemoRow], _Catalog]:
    """Rank the synthetic catalog for its user and return the top ``page_size`` rows."""
    catalog = synthetic_catalog(seed, catalog_size)
    ranking = Ranker(RankingConfig()).rank(
        catalog.candidates,
        k=page_size,
        now=DEMO_NOW,
        affinity=catalog.affinity,
        seen=catalog.seen,
        explain=True,
    )
    contributions = ranking.contributions
    if contributions is None:  # explain=True always fills it; this narrows the type
        raise RuntimeError("the ranking came back without contributions")
    rows = [
        DemoRow(
            rank=rank,
            video_id=int(ranking.video_ids[rank - 1]),
            creator_id=int(catalog.candidates.creator_ids[position]),
            age_hours=float(catalog.ages_hours[position]),
            views=int(catalog.views[position]),
            score=float(ranking.scores[rank - 1]),
            contributions=tuple(float(x) for x in contributions[rank - 1]),
        )
        for rank, position in enumerate(ranking.positions.tolist(), start=1)
    ]
    return rows, catalog


def format_table(rows: Sequence[DemoRow], weights: Sequence[float]) -> list[str]:
    """Lay the rows out as a fixed-width text table, one line per item."""
    signal_width = max(len(name) for name in WEIGHT_FIELDS)
    head = f"{'rank':>4}  {'video':>6}  {'creator':>7}  {'age':>7}  {'views':>7}  {'score':>6}"
    signals = "  ".join(f"{name:>{signal_width}}" for name in WEIGHT_FIELDS)
    weight_line = (
        " " * len(head)
        + "  "
        + "  ".join(f"{'w=' + format(w, '.2f'):>{signal_width}}" for w in weights)
    )
    lines = [f"{head}  {signals}", weight_line]
    for row in rows:
        cells = (
            f"{row.rank:>4}  {row.video_id:>6}  {row.creator_id:>7}  "
            f"{_age(row.age_hours):>7}  {row.views:>7}  {row.score:>6.4f}"
        )
        parts = "  ".join(f"{value:>{signal_width}.4f}" for value in row.contributions)
        lines.append(f"{cells}  {parts}")
    return lines


def _age(hours: float) -> str:
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} d"


def run_demo(out: TextIO, *, seed: int = 7, catalog_size: int = 500, page_size: int = 10) -> None:
    """Print the demo feed for the synthetic catalog to ``out``."""
    config = RankingConfig()
    rows, catalog = ranked_rows(seed, catalog_size, page_size)
    when = DEMO_NOW.strftime("%Y-%m-%d %H:%M UTC")
    followed = ", ".join(f"{c}: {a:.2f}" for c, a in sorted(catalog.affinity.items()))
    print(
        f"reelrank demo: top {len(rows)} of {catalog_size} synthetic videos (seed {seed}), "
        f"ranked at {when}",
        file=out,
    )
    print(f"user affinity by creator: {followed}", file=out)
    print(f"already seen, left out: {', '.join(map(str, sorted(catalog.seen)))}", file=out)
    print(file=out)
    for line in format_table(rows, config.weights):
        print(line, file=out)
    print(file=out)
    print(
        "Each signal column is weight x signal; the five add up to score. "
        "The documentation writes out every formula.",
        file=out,
    )
