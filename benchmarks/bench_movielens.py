"""MovieLens-100k, time-based split: default weights, tuned weights and two baselines.

The data comes from RecBole's wheel (``pip download --no-deps recbole==1.2.1``, cached
under ``.cache/recbole``; the case is skipped when it cannot be fetched). The log is cut
at its 80th and 90th time percentiles: weights are tuned on the events between them
(history: before the first cut), and every ranking is then judged on the last 10 % of
the events (history: everything before the second cut). Compared: the default
:class:`RankingConfig`, the tuned one, the most popular unseen films, and random unseen
films. Quick mode keeps a seeded sample of 150 users and tunes with fewer trials.
Printed: NDCG@10, recall@10, MRR@10 and MAP@10 on the held-out part, and the paired
bootstrap interval of tuned - default.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import QUICK, SUMMARY

from reelrank import WEIGHT_FIELDS, RankingConfig

pd = pytest.importorskip("pandas")
pytest.importorskip("ranx")
evaluation = pytest.importorskip("reelrank.evaluation")

RECBOLE_VERSION = "1.2.1"
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "recbole"
SAMPLE_USERS = 150
K = 10


def recbole_wheel() -> Path:
    wheel = CACHE / f"recbole-{RECBOLE_VERSION}-py3-none-any.whl"
    if not wheel.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q"]
        command += [f"recbole=={RECBOLE_VERSION}", "-d", str(CACHE)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if done.returncode != 0 or not wheel.is_file():
            pytest.skip(f"could not download recbole=={RECBOLE_VERSION}: {done.stderr[-300:]}")
    return wheel


def test_movielens_default_tuned_and_baselines() -> None:
    started = time.perf_counter()
    movielens = evaluation.load_movielens_100k(recbole_wheel())
    events, catalog = movielens.events, movielens.catalog
    if QUICK:
        users = np.random.default_rng(0).choice(
            np.unique(events["user_id"]), SAMPLE_USERS, replace=False
        )
        events = events[events["user_id"].isin(users)].reset_index(drop=True)
    validation_cut, test_cut = (float(t) for t in events["time"].quantile([0.8, 0.9]))
    train, rest = evaluation.time_split(events, validation_cut)
    validation, _ = evaluation.time_split(rest, test_cut)
    tuned = evaluation.tune_weights(
        train,
        validation,
        catalog,
        now=validation_cut,
        k=K,
        trials=8 if QUICK else 40,
        refine_rounds=1 if QUICK else 3,
        seed=0,
    )
    history, test = evaluation.time_split(events, test_cut)
    held = evaluation.evaluate(
        history, test, catalog, {"default": RankingConfig(), "tuned": tuned.config},
        now=test_cut, k=K,
    )  # fmt: skip
    state = evaluation.candidate_state(history, catalog, test_cut)
    qrels = evaluation.graded_relevance(test)
    seen = history[["user_id", "video_id"]].drop_duplicates().assign(_seen=True)
    qrels = qrels.merge(seen, on=["user_id", "video_id"], how="left")
    qrels = qrels[qrels["_seen"].isna()].drop(columns="_seen")
    judged_users = np.unique(qrels["user_id"].to_numpy())
    baselines = pd.concat(
        [
            evaluation.popularity_rankings(state, judged_users, k=K),
            evaluation.random_rankings(state, judged_users, k=K, seed=0),
        ],
        ignore_index=True,
    )
    per_user = pd.concat(
        [held.per_user, evaluation.accuracy(baselines, qrels, K)], ignore_index=True
    )
    table = per_user.pivot_table(index="config", columns="metric", values="value", aggfunc="mean")
    table = table.loc[["default", "tuned", "popularity", "random"]]
    comparison = held.compare("default", "tuned", seed=0).set_index("metric")
    seconds = time.perf_counter() - started
    assert table.to_numpy().min() >= 0.0 and table.to_numpy().max() <= 1.0
    # popularity is a strong baseline on MovieLens; random must trail it
    assert table.loc["popularity", f"ndcg@{K}"] > table.loc["random", f"ndcg@{K}"]
    weights = ", ".join(
        f"{name} {value:.2f}"
        for name, value in zip(WEIGHT_FIELDS, tuned.config.weights, strict=True)
    )
    ndcg = comparison.loc[f"ndcg@{K}"]
    lines = [
        f"MovieLens-100k{' (sample)' if QUICK else ''}: {events['user_id'].nunique()} users, "
        f"{len(judged_users)} judged on the last 10 % of the log, {seconds:.0f} s",
        table.round(4).to_string(),
        f"tuned weights: {weights}; validation {tuned.metric} {tuned.baseline_value:.4f} -> "
        f"{tuned.best_value:.4f} over {len(tuned.trials)} configurations",
        f"held-out tuned - default ndcg@{K}: {ndcg['difference']:+.4f} "
        f"[{ndcg['ci_low']:+.4f}, {ndcg['ci_high']:+.4f}], p = {ndcg['p_value']:.3f}",
    ]
    print("\n" + "\n".join(lines))
    SUMMARY.extend(lines)
