"""Offline evaluation: splits, relevance, replay, ranx metrics, bootstrap and tuning."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

pd = pytest.importorskip("pandas")
pytest.importorskip("ranx")

from reelrank import RankingConfig, affinity  # noqa: E402
from reelrank.evaluation import (  # noqa: E402
    accuracy,
    beyond_accuracy,
    candidate_state,
    config_to_toml,
    evaluate,
    gini,
    graded_relevance,
    hold_last_split,
    load_movielens_100k,
    paired_bootstrap,
    popularity_rankings,
    random_rankings,
    replay,
    synthetic_events,
    time_split,
    tune_weights,
    with_weights,
)
from reelrank.exceptions import InvalidInputError  # noqa: E402
from reelrank.scoring import Candidates, DiversityRule, Ranker  # noqa: E402

T0 = 1_767_225_600.0
HOUR = 3600.0


def log(*rows: tuple[int, int, float, str, float]) -> Any:
    return pd.DataFrame(rows, columns=["user_id", "video_id", "time", "kind", "completion"])


CATALOG = pd.DataFrame(
    {
        "video_id": [1, 2, 3, 4, 5],
        "creator_id": [10, 10, 20, 30, 30],
        "published_at": [T0 - 10 * HOUR, T0 - 5 * HOUR, T0 - 2 * HOUR, T0 - HOUR, T0 + HOUR],
    }
)

HISTORY = log(
    (1, 1, T0 - 4 * HOUR, "watch", 0.9),
    (1, 1, T0 - 4 * HOUR + 5, "like", math.nan),
    (1, 3, T0 - 3 * HOUR, "watch", 0.2),
    (2, 1, T0 - 3 * HOUR, "watch", 0.5),
    (2, 1, T0 - 3 * HOUR + 1, "share", math.nan),
    (2, 2, T0 - 2 * HOUR, "watch", 1.0),
    (2, 2, T0 - 2 * HOUR + 1, "like", math.nan),
    (2, 2, T0 - 2 * HOUR + 2, "unlike", math.nan),
)


# -- splits and relevance -----------------------------------------------------------------


def test_time_split_puts_events_at_the_cutoff_in_test() -> None:
    train, test = time_split(HISTORY, T0 - 3 * HOUR)
    assert train["time"].max() < T0 - 3 * HOUR
    assert len(train) == 2 and len(test) == 6


def test_hold_last_split_holds_each_users_last_watched_video() -> None:
    events = log(
        (1, 1, 0.0, "watch", 0.5),
        (1, 2, 10.0, "watch", 0.5),
        (1, 2, 11.0, "like", math.nan),
        (1, 1, 20.0, "watch", 0.5),  # a re-watch does not make video 1 the last one
        (2, 3, 5.0, "watch", 0.5),  # a single watched video stays in train
    )
    train, test = hold_last_split(events)
    assert sorted(zip(test["user_id"], test["video_id"], test["kind"], strict=True)) == [
        (1, 2, "like"),
        (1, 2, "watch"),
    ]
    assert len(train) == 3


def test_graded_relevance_by_hand() -> None:
    grades = graded_relevance(HISTORY).set_index(["user_id", "video_id"])["relevance"]
    # user 1: video 1 completed 0.9 (1) + like (1); video 3 at 0.2 is not relevant.
    # user 2: video 1 at 0.5 (1) + share (2); video 2 completed (1), like taken back.
    assert grades.to_dict() == {(1, 1): 2, (2, 1): 3, (2, 2): 1}


def test_event_log_errors_name_the_column() -> None:
    with pytest.raises(InvalidInputError) as info:
        graded_relevance(log((1, 1, 0.0, "watch", 1.5)))
    assert info.value.field == "completion"
    with pytest.raises(InvalidInputError) as info:
        graded_relevance(log((1, 1, 0.0, "view", 1.0)))
    assert info.value.field == "kind"
    with pytest.raises(InvalidInputError) as info:
        graded_relevance(HISTORY.drop(columns="kind"))
    assert info.value.field == "kind"


# -- candidate state and replay -----------------------------------------------------------


def test_candidate_state_rebuilds_counters_affinity_and_seen() -> None:
    state = candidate_state(HISTORY, CATALOG, T0)
    # video 5 is published after now and is not a candidate
    assert state.catalog["video_id"].tolist() == [1, 2, 3, 4]
    # user 1: credits creator 10 = 0.9 + 1 (like), creator 20 = 0.2
    assert state.affinity[1][10] == pytest.approx(affinity(1.9, 2.1))
    assert state.affinity[1][20] == pytest.approx(affinity(0.2, 2.1))
    # user 2: creator 10 = 0.5 + 2 (share) + 1.0 + 1 (like) - 1 (unlike) = 3.5
    assert state.affinity[2] == {10: pytest.approx(affinity(3.5, 3.5))}
    assert state.users == 2
    assert state.interactions.to_dict() == {1: 2, 2: 1, 3: 1}


def test_baselines_rank_unseen_candidates_by_popularity_or_at_random() -> None:
    state = candidate_state(HISTORY, CATALOG, T0)
    # distinct users per video: 1 -> 2, 2 -> 1, 3 -> 1, 4 -> 0; user 1 saw 1 and 3,
    # user 2 saw 1 and 2, user 9 saw nothing
    popular = popularity_rankings(state, [1, 2, 9], k=3)
    lists = popular.groupby("user_id")["video_id"].agg(list).to_dict()
    assert lists == {1: [2, 4], 2: [3, 4], 9: [1, 2, 3]}
    assert popular.loc[popular["user_id"] == 9, "score"].tolist() == [2.0, 1.0, 1.0]
    assert set(popular["config"]) == {"popularity"}
    drawn = random_rankings(state, [1, 2, 9], k=3, seed=4)
    again = random_rankings(state, [1, 2, 9], k=3, seed=4)
    pd.testing.assert_frame_equal(drawn, again)
    sets = drawn.groupby("user_id")["video_id"].agg(set).to_dict()
    assert sets[1] == {2, 4} and sets[2] == {3, 4}
    assert len(sets[9]) == 3 and sets[9] <= {1, 2, 3, 4}
    assert drawn.groupby("user_id")["rank"].agg(list).to_dict()[9] == [1, 2, 3]


def test_replay_follows_rank_with_seen_filter_then_diversity() -> None:
    state = candidate_state(HISTORY, CATALOG, T0)
    config = RankingConfig()
    lists = replay(state, {"base": config}, [1, 3], k=3, snapshot_size=4)
    # The counters as of T0 written out by hand: views, completion_sum, likes, shares.
    candidates = Candidates.from_arrays(
        video_id=[1, 2, 3, 4],
        creator_id=[10, 10, 20, 30],
        published_at=CATALOG["published_at"][:4],
        views=[2, 1, 1, 0],
        completion_sum=[1.4, 1.0, 0.2, 0.0],
        likes=[1, 0, 0, 0],
        shares=[1, 0, 0, 0],
        comments=[0, 0, 0, 0],
    )
    ranker = Ranker(config)
    for user, seen in ((1, [1, 3]), (3, None)):
        expected = ranker.rank(
            candidates, k=4, now=T0, affinity=state.affinity.get(user), seen=seen
        )
        creators = np.array([10, 10, 20, 30])[expected.positions]
        order = DiversityRule().order(creators)[:3]
        got = lists[lists["user_id"] == user]
        assert got["video_id"].tolist() == expected.video_ids[order].tolist()
        assert got["rank"].tolist() == list(range(1, len(order) + 1))
    assert set(lists.loc[lists["user_id"] == 1, "video_id"]) == {2, 4}  # seen 1 and 3


# -- metrics ------------------------------------------------------------------------------


def test_ranx_metrics_match_hand_worked_values() -> None:
    rankings = pd.DataFrame(
        {
            "config": "a",
            "user_id": [1, 1, 1, 2, 2],
            "rank": [1, 2, 3, 1, 2],
            "video_id": [7, 8, 9, 5, 6],
            "creator_id": 0,
            "score": 0.0,
        }
    )
    qrels = pd.DataFrame({"user_id": [1, 1, 2], "video_id": [7, 9, 6], "relevance": [2, 1, 1]})
    values = accuracy(rankings, qrels, 3).set_index(["user_id", "metric"])["value"]
    # user 1: gains 2, 0, 1 -> DCG = 2 + 1/log2(4); ideal 2, 1 -> 2 + 1/log2(3)
    assert values[(1, "ndcg@3")] == pytest.approx((2 + 0.5) / (2 + 1 / math.log2(3)))
    assert values[(1, "recall@3")] == 1.0
    assert values[(1, "mrr@3")] == 1.0
    assert values[(1, "map@3")] == pytest.approx((1 / 1 + 2 / 3) / 2)
    # user 2: the only relevant video at rank 2
    assert values[(2, "ndcg@3")] == pytest.approx(1 / math.log2(3))
    assert values[(2, "mrr@3")] == 0.5


def test_ranx_order_is_the_replayed_order_not_the_score() -> None:
    # After the diversity re-rank scores are not sorted; rank decides.
    rankings = pd.DataFrame(
        {
            "config": "a",
            "user_id": [1, 1],
            "rank": [1, 2],
            "video_id": [7, 8],
            "creator_id": 0,
            "score": [0.1, 0.9],
        }
    )
    qrels = pd.DataFrame({"user_id": [1], "video_id": [7], "relevance": [1]})
    values = accuracy(rankings, qrels, 2).set_index("metric")["value"]
    assert values["mrr@2"] == 1.0


def test_gini_by_hand() -> None:
    assert gini([1, 1, 1, 1]) == 0.0
    assert gini([0, 0, 0, 1]) == pytest.approx(3 / 4)
    assert gini([1, 3]) == pytest.approx((-1 * 1 + 1 * 3) / (2 * 4))
    assert gini([0, 0]) == 0.0


@given(st.lists(st.integers(0, 1_000), min_size=1, max_size=40), st.integers(1, 50))
def test_gini_is_bounded_and_ignores_order_and_scale(values: list[int], scale: int) -> None:
    n = len(values)
    g = gini(values)
    assert 0.0 <= g <= 1.0 - 1.0 / n + 1e-12
    assert gini(values[::-1]) == pytest.approx(g, abs=1e-12)
    assert gini([scale * value for value in values]) == pytest.approx(g, abs=1e-12)


@given(st.lists(st.floats(0.0, 100.0), min_size=5, max_size=5).filter(lambda w: sum(w) > 1e-3))
def test_with_weights_always_gives_a_valid_config(weights: list[float]) -> None:
    config = with_weights(RankingConfig(), weights)
    assert sum(config.weights) == pytest.approx(1.0, abs=1e-6)
    expected = np.asarray(weights) / sum(weights)
    np.testing.assert_allclose(config.weights, expected, atol=1e-12)


def test_beyond_accuracy_by_hand() -> None:
    state = candidate_state(HISTORY, CATALOG, T0)
    rankings = pd.DataFrame(
        {
            "config": "a",
            "user_id": [1, 1, 2],
            "rank": [1, 2, 1],
            "video_id": [2, 4, 4],
            "creator_id": [10, 30, 30],
            "score": 0.0,
        }
    )
    values = beyond_accuracy(rankings, state).set_index("metric")["value"]
    assert values["coverage"] == 2 / 4
    assert values["creator_gini"] == pytest.approx(gini([1, 0, 2]))
    # video 2: 1 of 2 users interacted, video 4: none
    expected_novelty = (-math.log2(2 / 3) - 2 * math.log2(1 / 3)) / 3
    assert values["novelty"] == pytest.approx(expected_novelty)
    assert values["mean_age_hours"] == pytest.approx((5 + 1 + 1) / 3)


def test_paired_bootstrap_of_a_constant_shift_and_of_identical_configs() -> None:
    rng = np.random.default_rng(0)
    base = rng.random(50)
    per_user = pd.DataFrame(
        {
            "config": ["a"] * 50 + ["b"] * 50 + ["c"] * 50,
            "user_id": np.tile(np.arange(50), 3),
            "metric": "ndcg@10",
            "value": np.concatenate([base, base + 0.1, base]),
        }
    )
    shifted = paired_bootstrap(per_user, "a", "b").iloc[0]
    assert shifted["difference"] == pytest.approx(0.1)
    assert shifted["ci_low"] == pytest.approx(0.1) and shifted["ci_high"] == pytest.approx(0.1)
    assert shifted["p_value"] == 0.0
    same = paired_bootstrap(per_user, "a", "c").iloc[0]
    assert (same["difference"], same["ci_low"], same["ci_high"], same["p_value"]) == (
        0.0,
        0.0,
        0.0,
        1.0,
    )


def test_paired_bootstrap_interval_covers_the_mean_difference() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.random(200), rng.random(200)
    per_user = pd.DataFrame(
        {
            "config": ["a"] * 200 + ["b"] * 200,
            "user_id": np.tile(np.arange(200), 2),
            "metric": "m",
            "value": np.concatenate([a, b]),
        }
    )
    row = paired_bootstrap(per_user, "a", "b", resamples=4000, seed=3).iloc[0]
    d = b - a
    standard_error = d.std(ddof=1) / math.sqrt(200)
    assert row["ci_low"] < d.mean() < row["ci_high"]
    # the percentile interval is close to the normal one, +-1.96 standard errors
    assert row["ci_high"] - row["ci_low"] == pytest.approx(2 * 1.96 * standard_error, rel=0.1)


# -- synthetic data and tuning --------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic() -> Any:
    return synthetic_events(seed=1)


def test_synthetic_log_is_seeded_heavy_tailed_and_has_arriving_videos(synthetic: Any) -> None:
    again = synthetic_events(seed=1)
    pd.testing.assert_frame_equal(synthetic.events, again.events)
    per_user = synthetic.events.groupby("user_id").size()
    assert per_user.max() > 8 * per_user.median()
    assert (synthetic.catalog["published_at"] > synthetic.start + 7 * 86_400).sum() > 300
    assert set(synthetic.events["kind"]) == {"watch", "like", "comment", "share"}


def test_evaluate_gives_a_tidy_summary(synthetic: Any) -> None:
    cut = synthetic.start + 10 * 86_400
    train, test = time_split(synthetic.events, cut)
    result = evaluate(train, test, synthetic.catalog, RankingConfig(), now=cut, k=5)
    assert list(result.summary.columns) == ["config", "metric", "value"]
    assert list(result.table().columns) == [
        "ndcg@5",
        "recall@5",
        "mrr@5",
        "map@5",
        "coverage",
        "creator_gini",
        "novelty",
        "mean_age_hours",
    ]
    assert (result.rankings.groupby("user_id").size() == 5).all()
    assert result.per_user["user_id"].nunique() == result.rankings["user_id"].nunique()


def test_tuned_weights_beat_the_defaults_on_held_out_data(synthetic: Any, tmp_path: Any) -> None:
    day = 86_400
    validation_cut, test_cut = synthetic.start + 10 * day, synthetic.start + 12 * day
    train, rest = time_split(synthetic.events, validation_cut)
    validation, _ = time_split(rest, test_cut)
    tuned = tune_weights(
        train, validation, synthetic.catalog, now=validation_cut, trials=30, seed=0
    )
    assert tuned.best_value >= tuned.baseline_value
    assert len(tuned.trials) > 30
    # Held out: rank at the later cut with everything before it, judge the last two days.
    history, test = time_split(synthetic.events, test_cut)
    held = evaluate(
        history,
        test,
        synthetic.catalog,
        {"default": RankingConfig(), "tuned": tuned.config},
        now=test_cut,
    )
    ndcg = held.summary.set_index(["config", "metric"])["value"]
    assert ndcg[("tuned", "ndcg@10")] >= ndcg[("default", "ndcg@10")] + 0.02
    comparison = held.compare("default", "tuned").set_index("metric")
    assert comparison.loc["ndcg@10", "ci_low"] > 0
    path = tmp_path / "tuned.toml"
    path.write_text(config_to_toml(tuned.config))
    assert RankingConfig.from_toml(path) == tuned.config
    assert RankingConfig.from_json(tuned.config.model_dump_json()) == tuned.config


@pytest.fixture(scope="module")
def small_tuning() -> tuple[Any, Any, Any, float]:
    """A small log split for quick tuning runs: train, validation, catalog, cut."""
    data = synthetic_events(users=120, videos=600, seed=2)
    cut = data.start + 10 * 86_400
    train, rest = time_split(data.events, cut)
    validation, _ = time_split(rest, data.start + 12 * 86_400)
    return train, validation, data.catalog, cut


def _tune_small(small_tuning: Any, **options: Any) -> Any:
    train, validation, catalog, cut = small_tuning
    return tune_weights(
        train, validation, catalog, now=cut, **{"trials": 4, "refine_rounds": 1, **options}
    )


def test_a_seeded_tuning_rerun_gives_the_same_config(small_tuning: Any) -> None:
    first = _tune_small(small_tuning, seed=5)
    again = _tune_small(small_tuning, seed=5, progress=True)  # the bar draws no numbers
    assert again.config == first.config
    assert again.best_value == first.best_value
    pd.testing.assert_frame_equal(again.trials, first.trials)
    # Another seed draws other random points, so the comparison above can fail.
    other = _tune_small(small_tuning, seed=6)
    random_points = ["freshness", "completion", "engagement", "affinity", "deep_learning"]
    assert not np.allclose(
        other.trials.loc[other.trials["phase"] == "random", random_points].to_numpy(),
        first.trials.loc[first.trials["phase"] == "random", random_points].to_numpy(),
    )


class _Terminal:
    """A text stream that says it is a terminal, as stderr in an interactive shell does."""

    def __init__(self) -> None:
        self.text: list[str] = []

    def write(self, text: str) -> int:
        self.text.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True


def test_the_tuning_progress_bar_is_drawn_on_stderr_only_when_asked(
    small_tuning: Any, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = 1 + 4 + 1 * 5 * 2  # the base, 4 random points, one round of 10 moves
    result = _tune_small(small_tuning, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "tuning" in captured.err and f"{steps}/{steps}" in captured.err
    assert f"best ndcg@10={result.best_value:.4f}" in captured.err
    # Not asked for: the default draws only on a terminal (capsys's stderr is not one).
    _tune_small(small_tuning)
    _tune_small(small_tuning, progress=False)
    assert capsys.readouterr().err == ""
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    _tune_small(small_tuning)
    assert f"{steps}/{steps}" in "".join(terminal.text)
    terminal.text.clear()
    _tune_small(small_tuning, progress=False)
    assert terminal.text == []


def test_the_tuning_progress_bar_without_tqdm(
    small_tuning: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert _tune_small(small_tuning).best_value >= 0.0  # the default goes without a bar
    with pytest.raises(ImportError, match=r"reelrank\[eval\]"):
        _tune_small(small_tuning, progress=True)
    with pytest.raises(InvalidInputError, match="progress"):
        _tune_small(small_tuning, progress="yes")
    with pytest.raises(InvalidInputError, match="refine_rounds"):
        _tune_small(small_tuning, refine_rounds=-1)


def test_with_weights_normalizes_and_keeps_other_fields() -> None:
    base = RankingConfig(freshness_half_life_hours=6.0)
    config = with_weights(base, [1, 1, 1, 1, 0])
    assert config.weights == (0.25, 0.25, 0.25, 0.25, 0.0)
    assert config.freshness_half_life_hours == 6.0
    with pytest.raises(InvalidInputError):
        with_weights(base, [0, 0, 0, 0, 0])


# -- MovieLens-100k -------------------------------------------------------------------------


def test_movielens_mapping_on_hand_written_atomic_files(tmp_path: Any) -> None:
    (tmp_path / "ml-100k.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "1\t10\t5\t100\n"
        "2\t10\t3\t50\n"
        "1\t11\t1\t200\n"
    )
    (tmp_path / "ml-100k.item").write_bytes(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "10\tCaf\u00e9\t1995\tDrama Romance\n"
        "11\tUnknown Year\t\tComedy\n".encode("latin-1")
    )
    data = load_movielens_100k(tmp_path)
    events = data.events
    assert events[["user_id", "video_id", "time", "kind"]].values.tolist() == [
        [2, 10, 50.0, "watch"],
        [1, 10, 100.0, "watch"],
        [1, 10, 101.0, "like"],
        [1, 11, 200.0, "watch"],
    ]
    assert events.loc[events["kind"] == "watch", "completion"].tolist() == [0.6, 1.0, 0.2]
    assert data.genres == ("Comedy", "Drama")
    catalog = data.catalog.set_index("video_id")
    assert catalog.loc[10, "creator_id"] == 1 and catalog.loc[11, "creator_id"] == 0
    assert catalog.loc[10, "published_at"] == 788_918_400.0  # 1995-01-01T00:00:00Z
    assert catalog.loc[11, "published_at"] == 200.0  # no year: its first rating
    assert catalog.loc[10, "title"] == "Caf\u00e9"
    grades = graded_relevance(events).set_index(["user_id", "video_id"])["relevance"]
    assert grades.to_dict() == {(1, 10): 2, (2, 10): 1}


RECBOLE_VERSION = "1.2.1"
RECBOLE_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "recbole"


@pytest.fixture(scope="session")
def recbole_wheel() -> Path:
    """RecBole's wheel (which bundles MovieLens-100k), downloaded once into .cache/."""
    given_wheel = os.environ.get("REELRANK_RECBOLE_WHEEL")
    if given_wheel and Path(given_wheel).is_file():
        return Path(given_wheel)
    wheel = RECBOLE_CACHE / f"recbole-{RECBOLE_VERSION}-py3-none-any.whl"
    if not wheel.is_file():
        RECBOLE_CACHE.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q"]
        command += [f"recbole=={RECBOLE_VERSION}", "-d", str(RECBOLE_CACHE)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            pytest.skip(f"downloading recbole=={RECBOLE_VERSION} timed out")
        if done.returncode != 0 or not wheel.is_file():
            pytest.skip(f"could not download recbole=={RECBOLE_VERSION}: {done.stderr[-300:]}")
    return wheel


@pytest.mark.integration
def test_movielens_sample_evaluates_against_baselines(recbole_wheel: Path) -> None:
    data = load_movielens_100k(recbole_wheel)
    assert (data.events["kind"] == "watch").sum() == 100_000
    assert data.events["user_id"].nunique() == 943
    assert len(data.catalog) == 1682
    users = np.random.default_rng(0).choice(np.unique(data.events["user_id"]), 120, replace=False)
    events = data.events[data.events["user_id"].isin(users)].reset_index(drop=True)
    cut = float(events["time"].quantile(0.9))
    history, test = time_split(events, cut)
    result = evaluate(history, test, data.catalog, RankingConfig(), now=cut, k=10)
    judged = np.unique(result.per_user["user_id"])
    assert judged.size > 10
    state = candidate_state(history, data.catalog, cut)
    qrels = graded_relevance(test)
    seen = history[["user_id", "video_id"]].drop_duplicates().assign(_seen=True)
    qrels = qrels.merge(seen, on=["user_id", "video_id"], how="left")
    qrels = qrels[qrels["_seen"].isna()].drop(columns="_seen")
    baselines = pd.concat(
        [popularity_rankings(state, judged, k=10), random_rankings(state, judged, k=10)],
        ignore_index=True,
    )
    per_user = pd.concat([result.per_user, accuracy(baselines, qrels, 10)], ignore_index=True)
    ndcg = per_user[per_user["metric"] == "ndcg@10"].groupby("config")["value"].mean()
    assert ((ndcg >= 0.0) & (ndcg <= 1.0)).all()
    # Real users favour popular films: popularity clearly beats random picks.
    assert ndcg["popularity"] > ndcg["random"] + 0.05


def test_movielens_source_errors() -> None:
    with pytest.raises(InvalidInputError) as info:
        load_movielens_100k("missing.zip")
    assert info.value.field == "source"
