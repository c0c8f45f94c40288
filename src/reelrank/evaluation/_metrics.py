"""Metrics of replayed rankings: accuracy from ranx, beyond-accuracy, paired bootstrap."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from ..exceptions import InvalidInputError
from ..scoring._config import RankingConfig
from ..scoring._diversity import DiversityRule
from ._data import check_events, graded_relevance, moment_seconds, optional_import
from ._replay import CandidateState, candidate_state, replay

__all__ = [
    "ACCURACY_METRICS",
    "Evaluation",
    "accuracy",
    "beyond_accuracy",
    "evaluate",
    "gini",
    "paired_bootstrap",
]

ACCURACY_METRICS = ("ndcg", "recall", "mrr", "map")
"""The accuracy metrics, each computed by ranx at the cut-off ``k``."""

_HOURS = 3600.0


def gini(values: npt.ArrayLike) -> float:
    r"""Gini coefficient of non-negative ``values``: 0 for equal shares, near 1 for one taking all.

    .. math:: G = \frac{\sum_{i=1}^{n} (2i - n - 1)\, x_{(i)}}{n \sum_i x_i}

    with :math:`x_{(i)}` sorted ascending; 0 when every value is 0.
    """
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = x.shape[0]
    total = float(x.sum())
    if n == 0 or total == 0.0:
        return 0.0
    ranks = np.arange(1, n + 1, dtype=np.float64)
    return float(((2.0 * ranks - n - 1.0) * x).sum() / (n * total))


def accuracy(rankings: pd.DataFrame, qrels: pd.DataFrame, k: int) -> pd.DataFrame:
    """Per-user NDCG@k, recall@k, MRR@k and MAP@k of each config, computed by ranx.

    ``qrels`` has ``user_id``, ``video_id`` and integer ``relevance`` (>= 1). Every user
    in ``qrels`` is scored; a user with no ranked list scores 0. Returns the columns
    ``config``, ``user_id``, ``metric`` (e.g. ``"ndcg@10"``) and ``value``.
    """
    ranx = optional_import("ranx")
    if qrels.empty:
        raise InvalidInputError("qrels", "no relevant (user, video) pair to evaluate against")
    qrels_dict: dict[str, dict[str, int]] = {}
    for user, video, grade in qrels[["user_id", "video_id", "relevance"]].itertuples(index=False):
        qrels_dict.setdefault(str(user), {})[str(video)] = int(grade)
    judged = ranx.Qrels.from_dict(qrels_dict)
    metrics = [f"{name}@{k}" for name in ACCURACY_METRICS]
    rows: list[pd.DataFrame] = []
    for config, lists in rankings.groupby("config", sort=False):
        run_dict: dict[str, dict[str, float]] = {}
        for user, video, rank in lists[["user_id", "video_id", "rank"]].itertuples(index=False):
            # ranx orders by score; the replayed order (after the diversity re-rank) is
            # what a user sees, so the score given to ranx is the reversed rank.
            run_dict.setdefault(str(user), {})[str(video)] = float(-rank)
        run = ranx.Run.from_dict(run_dict, name=str(config))
        ranx.evaluate(judged, run, metrics, make_comparable=True)
        for metric in metrics:
            per_user = run.scores[metric]
            rows.append(
                pd.DataFrame(
                    {
                        "config": config,
                        "user_id": np.fromiter((int(u) for u in per_user), np.int64),
                        "metric": metric,
                        "value": np.fromiter(per_user.values(), np.float64),
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


def beyond_accuracy(rankings: pd.DataFrame, state: CandidateState) -> pd.DataFrame:
    r"""Catalog coverage, creator Gini, novelty and freshness of each config's lists.

    - ``coverage``: distinct recommended videos over the videos that were candidates.
    - ``creator_gini``: :func:`gini` of how often each candidate creator is recommended
      (creators never recommended count as 0).
    - ``novelty``: mean over recommended items of :math:`-\log_2 \frac{n_v + 1}{U + 1}`,
      where :math:`n_v` users of the :math:`U` in the history interacted with video
      :math:`v`: higher for videos few people have seen.
    - ``mean_age_hours``: mean age of recommended videos at the moment of ranking.

    Returns the columns ``config``, ``metric``, ``value``.
    """
    catalog = state.catalog.set_index("video_id")
    candidate_creators = catalog["creator_id"].unique()
    rows: list[dict[str, Any]] = []
    for config, lists in rankings.groupby("config", sort=False):
        videos = lists["video_id"].to_numpy()
        exposure = lists["creator_id"].value_counts().reindex(candidate_creators, fill_value=0)
        interactions = state.interactions.reindex(videos, fill_value=0).to_numpy(np.float64)
        novelty = -np.log2((interactions + 1.0) / (state.users + 1.0))
        ages = (state.now - catalog["published_at"].reindex(videos).to_numpy()) / _HOURS
        values = {
            "coverage": np.unique(videos).shape[0] / max(len(catalog), 1),
            "creator_gini": gini(exposure.to_numpy()),
            "novelty": float(novelty.mean()) if videos.size else math.nan,
            "mean_age_hours": float(ages.mean()) if videos.size else math.nan,
        }
        rows.extend({"config": config, "metric": m, "value": v} for m, v in values.items())
    return pd.DataFrame(rows, columns=["config", "metric", "value"])


def paired_bootstrap(
    per_user: pd.DataFrame,
    baseline: str,
    challenger: str,
    *,
    metrics: Sequence[str] | None = None,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    r"""Paired bootstrap confidence interval of ``challenger - baseline`` per metric.

    For each metric the per-user differences :math:`d_u` are resampled over users with
    replacement ``resamples`` times (users are the unit, so each user's two values stay
    paired); the interval is the percentile interval of the resampled means. ``p_value``
    is the two-sided bootstrap estimate :math:`2 \min(P(\bar d^* \le 0), P(\bar d^* \ge 0))`,
    capped at 1.

    Returns the columns ``metric``, ``baseline``, ``challenger``, ``difference`` (mean
    :math:`d_u`), ``ci_low``, ``ci_high``, ``p_value`` and ``users``.
    """
    if not 0.0 < confidence < 1.0:
        raise InvalidInputError("confidence", f"must lie in (0, 1), got {confidence!r}")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise InvalidInputError("resamples", f"must be a positive integer, got {resamples!r}")
    for name in (baseline, challenger):
        if name not in set(per_user["config"]):
            raise InvalidInputError("config", f"no per-user results for {name!r}")
    chosen = list(dict.fromkeys(per_user["metric"])) if metrics is None else list(metrics)
    rng = np.random.default_rng(seed)
    rows = []
    for metric in chosen:
        table = per_user[per_user["metric"] == metric].pivot_table(
            index="user_id", columns="config", values="value"
        )
        paired = table[[baseline, challenger]].dropna()
        d = (paired[challenger] - paired[baseline]).to_numpy(np.float64)
        n = d.shape[0]
        if n == 0:
            raise InvalidInputError("metric", f"no user has both configs for {metric!r}")
        means = d[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
        tail = (1.0 - confidence) / 2.0
        low, high = np.quantile(means, [tail, 1.0 - tail])
        p_value = min(1.0, 2.0 * min(float((means <= 0).mean()), float((means >= 0).mean())))
        rows.append(
            {
                "metric": metric,
                "baseline": baseline,
                "challenger": challenger,
                "difference": float(d.mean()),
                "ci_low": float(low),
                "ci_high": float(high),
                "p_value": p_value,
                "users": n,
            }
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The result of :func:`evaluate`: tidy pandas frames."""

    summary: pd.DataFrame
    """``config``, ``metric``, ``value``: accuracy means over users, then beyond-accuracy."""
    per_user: pd.DataFrame
    """``config``, ``user_id``, ``metric``, ``value``: the accuracy of every user."""
    rankings: pd.DataFrame
    """The replayed lists (see :func:`replay`)."""
    k: int
    """The list length evaluated."""

    def compare(
        self, baseline: str, challenger: str, *, resamples: int = 2000, seed: int = 0
    ) -> pd.DataFrame:
        """:func:`paired_bootstrap` of two evaluated configs over every accuracy metric."""
        return paired_bootstrap(self.per_user, baseline, challenger, resamples=resamples, seed=seed)

    def table(self) -> pd.DataFrame:
        """The summary as a wide table: one row per config, one column per metric."""
        wide = self.summary.pivot(index="config", columns="metric", values="value")
        order = list(dict.fromkeys(self.summary["metric"]))
        configs = list(dict.fromkeys(self.summary["config"]))
        return wide.loc[configs, order]


def evaluate(
    train: pd.DataFrame,
    test: pd.DataFrame,
    catalog: pd.DataFrame,
    configs: Mapping[str, RankingConfig] | RankingConfig,
    *,
    now: dt.datetime | float | None = None,
    k: int = 10,
    snapshot_size: int = 100,
    diversity: DiversityRule | None = None,
    completion_threshold: float = 0.5,
) -> Evaluation:
    """Replay ``train`` and score each config's lists against what users did in ``test``.

    Each user with a relevant test event (see :func:`graded_relevance`) gets a list of
    ``k`` videos per config from :func:`replay`, ranked at ``now`` with the counters,
    affinities and seen sets the train events give. Videos the user already had an
    event on in ``train`` are left out of the relevance judgements: the seen filter
    would never show them.

    Args:
        train: the event log before the moment of ranking.
        test: the event log after it.
        catalog: the videos (see :func:`check_catalog`); those published after ``now``
            are not candidates.
        configs: the configurations by name, or one config (named ``"config"``).
        now: the moment of ranking; the latest train event when ``None``.
        k: the list length, and the cut-off of every metric.
        snapshot_size: items ranked before the diversity re-rank.
        diversity: the re-rank; the feed's default rule when ``None``.
        completion_threshold: completion at which a watch counts as relevant.
    """
    named = {"config": configs} if isinstance(configs, RankingConfig) else dict(configs)
    history = check_events(train)
    if now is None:
        if history.empty:
            raise InvalidInputError("train", "no events: give now explicitly")
        moment = float(history["time"].max()) + 1e-3
    else:
        moment = moment_seconds(now, "now")
    state = candidate_state(history, catalog, moment)
    qrels = graded_relevance(test, completion_threshold=completion_threshold)
    seen_pairs = history[["user_id", "video_id"]].drop_duplicates().assign(_seen=True)
    qrels = qrels.merge(seen_pairs, on=["user_id", "video_id"], how="left")
    qrels = qrels[qrels["_seen"].isna()].drop(columns="_seen").reset_index(drop=True)
    users = np.unique(qrels["user_id"].to_numpy())
    rankings = replay(state, named, users, k=k, snapshot_size=snapshot_size, diversity=diversity)
    per_user = accuracy(rankings, qrels, k)
    means = per_user.groupby(["config", "metric"], sort=False)["value"].mean().reset_index()
    summary = pd.concat([means, beyond_accuracy(rankings, state)], ignore_index=True)
    return Evaluation(summary=summary, per_user=per_user, rankings=rankings, k=k)
