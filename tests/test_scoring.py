"""The public scoring API against the float64 reference, its invariants and its input checks."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
import reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st

from reelrank import (
    WEIGHT_FIELDS,
    Candidates,
    InvalidInputError,
    Ranker,
    Ranking,
    RankingConfig,
    warmup,
)
from reelrank._kernels import _rank as kernels

NOW = 1.7e9
# Scores are float32 sums of five float32 terms in [0, 1]; the publish time is stored
# as float32 hours, so a few ulps of 0.5 plus a little freshness error is the budget.
ATOL = 2e-6
CONFIGS = [
    RankingConfig(),
    RankingConfig(
        freshness=0.3,
        completion=0.1,
        engagement=0.2,
        affinity=0.3,
        deep_learning=0.1,
        freshness_half_life_hours=6.0,
        completion_prior_views=0.0,
        engagement_prior_views=0.0,
        dl_neutral_score=0.0,
    ),
    RankingConfig(freshness=1.0, completion=0.0, engagement=0.0, affinity=0.0, deep_learning=0.0),
]


def build(columns: ref.Columns) -> Candidates:
    return Candidates.from_arrays(**columns.as_kwargs())  # type: ignore[arg-type]


def affinities(columns: ref.Columns, rng: np.random.Generator) -> list[Any]:
    creators = np.unique(columns.creator_id)
    mapping = {int(c): float(rng.uniform()) for c in creators[::2]}
    mapping[10**12] = 0.9  # a creator absent from the candidates is ignored
    return [None, mapping, rng.uniform(0.0, 1.0, len(columns))]


@pytest.fixture(scope="module", autouse=True)
def _compiled() -> None:
    warmup()


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("seed", [0, 1])
def test_score_and_explain_match_reference(config: RankingConfig, seed: int) -> None:
    rng = np.random.default_rng(seed)
    columns = ref.random_columns(rng, 300, with_dl=seed == 0, now=NOW)
    candidates = build(columns)
    ranker = Ranker(config)
    for affinity in affinities(columns, rng):
        expected = ref.explain(columns, NOW, config, affinity)
        got = ranker.explain(candidates, now=NOW, affinity=affinity)
        np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)
        scores = ranker.score(candidates, now=NOW, affinity=affinity)
        assert scores.dtype == np.float32 and scores.shape == (len(columns),)
        np.testing.assert_allclose(scores, expected.sum(axis=1), atol=ATOL, rtol=0)
        np.testing.assert_allclose(got.sum(axis=1), scores, atol=ATOL, rtol=0)


@pytest.mark.parametrize("k", [0, 1, 7, 50, 299, 300, 1000])
def test_rank_matches_full_stable_sort(k: int) -> None:
    rng = np.random.default_rng(k)
    columns = ref.random_columns(rng, 300, now=NOW)
    candidates = build(columns)
    ranker = Ranker()
    for affinity in affinities(columns, rng):
        seen = set(rng.choice(columns.video_id, 40, replace=False).tolist())
        ranking = ranker.rank(candidates, k=k, now=NOW, affinity=affinity, seen=seen)
        scores = ranker.score(candidates, now=NOW, affinity=affinity)
        expected = ref.top_k(scores, columns.video_id, k, seen)
        assert ranking.positions.tolist() == expected
        assert ranking.video_ids.tolist() == columns.video_id[expected].tolist()
        np.testing.assert_array_equal(ranking.scores, scores[expected])
        reference_scores = ref.score(columns, NOW, ranker.config, affinity)
        np.testing.assert_allclose(ranking.scores, reference_scores[expected], atol=ATOL, rtol=0)
        assert ranking.contributions is None


def test_rank_explain_rows_sum_to_scores() -> None:
    rng = np.random.default_rng(5)
    columns = ref.random_columns(rng, 200, now=NOW)
    candidates = build(columns)
    mapping = {int(c): 0.5 for c in columns.creator_id[:5]}
    ranking = Ranker().rank(candidates, k=20, now=NOW, affinity=mapping, explain=True)
    assert ranking.contributions is not None
    assert ranking.contributions.shape == (20, len(WEIGHT_FIELDS))
    assert ranking.contributions.dtype == np.float32
    np.testing.assert_allclose(ranking.contributions.sum(axis=1), ranking.scores, atol=ATOL)
    expected = ref.explain(columns, NOW, RankingConfig(), mapping)[ranking.positions]
    np.testing.assert_allclose(ranking.contributions, expected, atol=ATOL)


def test_seen_as_ids_set_array_or_mask_agree() -> None:
    rng = np.random.default_rng(3)
    columns = ref.random_columns(rng, 150, now=NOW)
    candidates = build(columns)
    ranker = Ranker()
    seen_ids = columns.video_id[rng.random(150) < 0.5]
    forms: list[Any] = [
        set(seen_ids.tolist()),
        list(seen_ids.tolist()),
        seen_ids,
        seen_ids.astype(np.uint32),
        np.isin(columns.video_id, seen_ids),
    ]
    results = [ranker.rank(candidates, k=30, now=NOW, seen=form) for form in forms]
    for ranking in results:
        assert not set(ranking.video_ids.tolist()) & set(seen_ids.tolist())
        assert ranking.positions.tolist() == results[0].positions.tolist()


def test_everything_seen_returns_nothing() -> None:
    columns = ref.random_columns(np.random.default_rng(4), 40, now=NOW)
    ranking = Ranker().rank(build(columns), k=10, now=NOW, seen=columns.video_id)
    assert len(ranking) == 0 and ranking.scores.dtype == np.float32
    assert ranking.video_ids.dtype == np.int64 and ranking.positions.dtype == np.int64


def test_empty_candidates() -> None:
    empty = np.array([], dtype=np.int64)
    candidates = Candidates.from_arrays(
        video_id=empty,
        creator_id=empty,
        published_at=empty,
        views=empty,
        completion_sum=empty,
        likes=empty,
        shares=empty,
        comments=empty,
    )
    ranker = Ranker()
    assert len(candidates) == 0
    assert len(ranker.rank(candidates, k=5, now=NOW, affinity={1: 0.5})) == 0
    assert ranker.score(candidates, now=NOW).shape == (0,)
    assert ranker.explain(candidates, now=NOW).shape == (0, 5)
    assert ranker.score_batch(candidates, np.zeros((3, 0)), now=NOW).shape == (3, 0)


def one_candidate(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "video_id": [1],
        "creator_id": [2],
        "published_at": [NOW],
        "views": [100.0],
        "completion_sum": [50.0],
        "likes": [10.0],
        "shares": [1.0],
        "comments": [2.0],
        "dl_score": [0.5],
    }
    values.update(overrides)
    return values


def test_counters_above_views_are_clipped_to_views() -> None:
    ranker = Ranker()
    lagging = Candidates.from_arrays(
        **one_candidate(completion_sum=[130.0], likes=[500.0], shares=[101.0], comments=[1e6])
    )
    clipped = Candidates.from_arrays(
        **one_candidate(completion_sum=[100.0], likes=[100.0], shares=[100.0], comments=[100.0])
    )
    assert lagging.likes[0] == 100.0 and lagging.completion_sum[0] == 100.0
    np.testing.assert_array_equal(
        ranker.explain(lagging, now=NOW), ranker.explain(clipped, now=NOW)
    )


def test_future_publish_time_counts_as_age_zero() -> None:
    config = RankingConfig()
    future = Candidates.from_arrays(**one_candidate(published_at=[NOW + 86_400.0]))
    contributions = Ranker(config).explain(future, now=NOW)
    assert contributions[0, 0] == np.float32(config.freshness)


def test_freshness_halves_every_half_life() -> None:
    config = RankingConfig(freshness_half_life_hours=10.0)
    ages = np.array([0.0, 10.0, 20.0, 35.0])
    columns = {key: value * 4 for key, value in one_candidate().items()}
    columns.update(video_id=[1, 2, 3, 4], published_at=NOW - ages * 3600.0)
    candidates = Candidates.from_arrays(**columns)
    freshness = Ranker(config).explain(candidates, now=NOW)[:, 0] / np.float32(config.freshness)
    np.testing.assert_allclose(freshness, 2.0 ** (-ages / 10.0), rtol=1e-6)


def test_no_views_and_no_prior_use_the_prior_values() -> None:
    config = RankingConfig(
        completion_prior_views=0.0,
        engagement_prior_views=0.0,
        completion_prior_mean=0.3,
        engagement_prior_rate=0.1,
        engagement_half_saturation=0.1,
    )
    candidates = Candidates.from_arrays(
        **one_candidate(
            views=[0.0], completion_sum=[0.0], likes=[0.0], shares=[0.0], comments=[0.0]
        )
    )
    contributions = Ranker(config).explain(candidates, now=NOW)[0]
    assert contributions[1] == pytest.approx(config.completion * 0.3, abs=1e-7)
    assert contributions[2] == pytest.approx(config.engagement * 0.5, abs=1e-7)


def test_missing_model_score_uses_neutral_value() -> None:
    config = RankingConfig(dl_neutral_score=0.25)
    ranker = Ranker(config)
    missing = Candidates.from_arrays(**one_candidate(dl_score=[np.nan]))
    absent = Candidates.from_arrays(**one_candidate(dl_score=None))
    for candidates in (missing, absent):
        assert ranker.explain(candidates, now=NOW)[0, 4] == pytest.approx(0.05 * 0.25)


def test_now_accepts_aware_datetimes_and_defaults_to_the_clock() -> None:
    candidates = build(ref.random_columns(np.random.default_rng(8), 20, now=NOW))
    ranker = Ranker()
    moment = datetime.fromtimestamp(NOW, tz=timezone(timedelta(hours=5)))
    np.testing.assert_array_equal(
        ranker.score(candidates, now=moment), ranker.score(candidates, now=NOW)
    )
    # Default "now" is the wall clock, far after NOW: scores only lose freshness.
    assert (ranker.score(candidates) <= ranker.score(candidates, now=NOW) + 1e-7).all()
    with pytest.raises(InvalidInputError) as info:
        ranker.score(candidates, now=datetime(2026, 1, 1))
    assert info.value.field == "now"


def test_score_batch_matches_per_user_scores() -> None:
    rng = np.random.default_rng(9)
    columns = ref.random_columns(rng, 257, now=NOW)
    candidates = build(columns)
    ranker = Ranker()
    users = rng.uniform(0.0, 1.0, (5, 257))
    batch = ranker.score_batch(candidates, users, now=NOW)
    assert batch.shape == (5, 257) and batch.dtype == np.float32
    for row, user in zip(batch, users, strict=True):
        np.testing.assert_allclose(
            row, ranker.score(candidates, now=NOW, affinity=user), atol=1e-7, rtol=0
        )
        np.testing.assert_allclose(
            row, ref.score(columns, NOW, ranker.config, user), atol=ATOL, rtol=0
        )


def test_large_score_batch_runs_in_parallel_with_the_same_results() -> None:
    rng = np.random.default_rng(10)
    n = 1_000
    candidates = build(ref.random_columns(rng, n, now=NOW))
    ranker = Ranker()
    users = rng.uniform(0.0, 1.0, (1_000, n)).astype(np.float32)
    assert users.size >= kernels.PARALLEL_MIN_SCORES
    batch = ranker.score_batch(candidates, users, now=NOW)
    for u in (0, 499, 999):
        np.testing.assert_allclose(
            batch[u], ranker.score(candidates, now=NOW, affinity=users[u]), atol=1e-7, rtol=0
        )
    users[500, 3] = np.nan
    with pytest.raises(InvalidInputError) as info:
        ranker.score_batch(candidates, users, now=NOW)
    assert info.value.field == "affinity"


def test_candidates_and_ranking_are_immutable() -> None:
    candidates = Candidates.from_arrays(**one_candidate())
    with pytest.raises(AttributeError):
        candidates._features = None  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        candidates.video_ids[0] = 5
    with pytest.raises(TypeError):
        Candidates()
    ranking = Ranker().rank(candidates, k=1, now=NOW)
    assert isinstance(ranking, Ranking)
    with pytest.raises(AttributeError):
        ranking.scores = np.zeros(1, dtype=np.float32)  # type: ignore[misc]


# -- invalid input -------------------------------------------------------------------

BAD_COLUMNS = [
    ("video_id", [-1]),
    ("video_id", [1.5]),
    ("video_id", [[1]]),
    ("creator_id", [-3]),
    ("creator_id", [1, 2]),
    ("published_at", [np.nan]),
    ("published_at", [np.inf]),
    ("published_at", ["yesterday"]),
    ("views", [-1.0]),
    ("views", [np.nan]),
    ("views", [1e39]),
    ("completion_sum", [-0.5]),
    ("likes", [np.inf]),
    ("shares", [-2]),
    ("comments", [np.nan]),
    ("comments", []),
    ("dl_score", [1.5]),
    ("dl_score", [-0.1]),
    ("dl_score", [np.inf]),
    ("dl_score", [0.1, 0.2]),
]


@pytest.mark.parametrize(("column", "value"), BAD_COLUMNS)
def test_bad_column_names_the_column(column: str, value: Any) -> None:
    with pytest.raises(InvalidInputError) as info:
        Candidates.from_arrays(**one_candidate(**{column: value}))
    assert info.value.field == column


BAD_CALLS = [
    ("k", {"k": -1}),
    ("k", {"k": 2.0}),
    ("k", {"k": True}),
    ("now", {"now": float("nan")}),
    ("now", {"now": "today"}),
    ("affinity", {"affinity": {2: 1.5}}),
    ("affinity", {"affinity": {2: float("nan")}}),
    ("affinity", {"affinity": {"two": 0.5}}),
    ("affinity", {"affinity": np.array([0.5, 0.5])}),
    ("affinity", {"affinity": np.array([[0.5]])}),
    ("affinity", {"affinity": np.array([np.nan])}),
    ("affinity", {"affinity": [0.5]}),
    ("seen", {"seen": np.array([True, False])}),
    ("seen", {"seen": ["a"]}),
    ("seen", {"seen": np.array([1.5])}),
    ("seen", {"seen": np.array([[1]])}),
]


@pytest.mark.parametrize(("field", "kwargs"), BAD_CALLS)
def test_bad_rank_argument_names_it(field: str, kwargs: dict[str, Any]) -> None:
    candidates = Candidates.from_arrays(**one_candidate())
    call: dict[str, Any] = {"k": 3, "now": NOW, **kwargs}
    with pytest.raises(InvalidInputError) as info:
        Ranker().rank(candidates, **call)
    assert info.value.field == field


def test_bad_candidates_and_batch_inputs() -> None:
    candidates = Candidates.from_arrays(**one_candidate())
    ranker = Ranker()
    with pytest.raises(InvalidInputError) as info:
        ranker.rank({"video_id": [1]}, k=1)  # type: ignore[arg-type]
    assert info.value.field == "candidates"
    for bad in (np.zeros(1), np.zeros((2, 2)), np.full((2, 1), 1.5), np.full((1, 1), np.nan)):
        with pytest.raises(InvalidInputError) as info:
            ranker.score_batch(candidates, bad, now=NOW)
        assert info.value.field == "affinity"


# -- properties ----------------------------------------------------------------------

counts = st.floats(0.0, 1e6, allow_nan=False)
unit = st.floats(0.0, 1.0, allow_nan=False)
weights = st.lists(st.floats(0.0, 1.0), min_size=5, max_size=5).filter(lambda w: sum(w) > 0.1)


@st.composite
def configs(draw: st.DrawFn) -> RankingConfig:
    raw = draw(weights)
    total = sum(raw)
    normalised = [w / total for w in raw]
    normalised[0] = max(0.0, 1.0 - sum(normalised[1:]))
    return RankingConfig(
        **dict(zip(WEIGHT_FIELDS, normalised, strict=True)),
        freshness_half_life_hours=draw(st.floats(0.1, 1000.0)),
        completion_prior_mean=draw(unit),
        # float64 subnormals are rounding noise in the reference, not configurations.
        completion_prior_views=draw(st.floats(0.0, 1000.0, allow_subnormal=False)),
        like_weight=draw(st.floats(0.0, 10.0)),
        share_weight=draw(st.floats(0.0, 10.0)),
        comment_weight=draw(st.floats(0.0, 10.0)),
        engagement_prior_rate=draw(st.floats(0.0, 5.0)),
        engagement_prior_views=draw(st.floats(0.0, 1000.0, allow_subnormal=False)),
        engagement_half_saturation=draw(st.floats(0.001, 10.0)),
        dl_neutral_score=draw(unit),
    )


@st.composite
def candidate_rows(draw: st.DrawFn, n: int) -> dict[str, Any]:
    rows = draw(
        st.lists(
            st.tuples(
                st.integers(0, 30),
                st.floats(-1e6, 1e7, allow_nan=False),
                counts,
                counts,
                counts,
                counts,
                counts,
                st.one_of(unit, st.just(float("nan"))),
            ),
            min_size=n,
            max_size=n,
        )
    )
    creator, age, views, completion_sum, likes, shares, comments, dl = (
        [row[column] for row in rows] for column in range(8)
    )
    return {
        "video_id": draw(st.permutations(list(range(n)))),
        "creator_id": creator,
        "published_at": [NOW - a for a in age],
        "views": views,
        "completion_sum": completion_sum,
        "likes": likes,
        "shares": shares,
        "comments": comments,
        "dl_score": dl,
    }


@settings(max_examples=60, deadline=None)
@given(config=configs(), data=st.data())
def test_signals_and_scores_lie_in_the_unit_interval(config: RankingConfig, data: Any) -> None:
    columns = data.draw(candidate_rows(8))
    aff = np.array(data.draw(st.lists(unit, min_size=8, max_size=8)))
    candidates = Candidates.from_arrays(**columns)
    ranker = Ranker(config)
    contributions = ranker.explain(candidates, now=NOW, affinity=aff)
    scores = ranker.score(candidates, now=NOW, affinity=aff)
    weights_row = np.array(config.weights, dtype=np.float32)
    assert (contributions >= 0.0).all()
    assert (contributions <= weights_row * (1 + 1e-6) + 1e-9).all()
    assert ((scores >= 0.0) & (scores <= 1.0)).all()
    np.testing.assert_allclose(contributions.sum(axis=1), scores, atol=ATOL)


COUNT_KEYS = ("views", "completion_sum", "likes", "shares", "comments")


def as_stored_hours(seconds: np.ndarray) -> np.ndarray:
    """Seconds relative to the newest candidate, rounded as the kernels hold them."""
    return (seconds / 3600.0).astype(np.float32).astype(np.float64)


@settings(max_examples=60, deadline=None)
@given(config=configs(), data=st.data())
def test_explain_matches_reference_for_any_config(config: RankingConfig, data: Any) -> None:
    columns = data.draw(candidate_rows(6))
    mapping = data.draw(st.dictionaries(st.integers(0, 30), unit, max_size=10))
    candidates = Candidates.from_arrays(**columns)
    # Counts are stored as float32; the reference starts from the stored values.
    stored = {
        key: np.asarray(value, dtype=np.float32).astype(np.float64)
        if key in COUNT_KEYS
        else np.asarray(value)
        for key, value in columns.items()
    }
    # So are publish times and now, as hours relative to the newest candidate: start from
    # those too, or a short half-life turns their rounding into a freshness error.
    epoch = max(columns["published_at"])
    stored["published_at"] = epoch + as_stored_hours(stored["published_at"] - epoch) * 3600.0
    now = epoch + float(as_stored_hours(np.array([NOW - epoch]))[0]) * 3600.0
    raw = ref.Columns(**stored)
    expected = ref.explain(raw, now, config, mapping)
    got = Ranker(config).explain(candidates, now=NOW, affinity=mapping)
    # Counts up to 1e6 pass through float32, so allow a little relative error per term.
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=1e-5)


MONOTONE_BUMPS = {
    "freshness": ("published_at", 3600.0 * 5),
    "completion": ("completion_sum", 10.0),
    "engagement_likes": ("likes", 3.0),
    "engagement_shares": ("shares", 1.0),
    "engagement_comments": ("comments", 2.0),
    "deep_learning": ("dl_score", 0.1),
}


@settings(max_examples=60, deadline=None)
@given(config=configs(), data=st.data(), signal=st.sampled_from(sorted(MONOTONE_BUMPS)))
def test_score_is_monotone_in_each_signal(config: RankingConfig, data: Any, signal: str) -> None:
    base = data.draw(candidate_rows(1))
    if np.isnan(base["dl_score"][0]):
        base["dl_score"] = [0.5]
    column, step = MONOTONE_BUMPS[signal]
    bumped_value = base[column][0] + step
    if column == "dl_score":
        bumped_value = min(bumped_value, 1.0)
    pair = {key: value * 2 for key, value in base.items()}
    pair["video_id"] = [0, 1]
    pair[column] = [base[column][0], bumped_value]
    candidates = Candidates.from_arrays(**pair)
    aff_low, aff_high = sorted(data.draw(st.lists(unit, min_size=2, max_size=2)))
    ranker = Ranker(config)
    low, high = ranker.score(candidates, now=NOW, affinity=np.array([aff_low, aff_low]))
    assert high >= low - 1e-6
    same, more_affinity = ranker.score(candidates, now=NOW, affinity=np.array([aff_low, aff_high]))
    # The second candidate gained a signal and affinity, so it cannot lose to the first.
    assert more_affinity >= same - 1e-6


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    n=st.integers(0, 40),
    k=st.integers(0, 45),
    ties=st.booleans(),
)
def test_top_k_is_the_head_of_a_full_stable_sort(data: Any, n: int, k: int, ties: bool) -> None:
    columns = data.draw(candidate_rows(n))
    if ties:
        # Few distinct rows, so many equal scores that only the video id orders.
        for key in ("published_at", "views", "completion_sum", "likes", "shares", "comments"):
            columns[key] = [columns[key][i % 2] if n > 1 else columns[key][0] for i in range(n)]
        columns["dl_score"] = [0.5] * n
    candidates = Candidates.from_arrays(**columns)
    seen = data.draw(st.sets(st.integers(0, max(n - 1, 0)), max_size=n))
    affinity = data.draw(
        st.one_of(st.none(), st.dictionaries(st.integers(0, 30), st.sampled_from([0.0, 0.5, 1.0])))
    )
    seen_form: Any = seen
    if data.draw(st.booleans()):
        seen_form = np.isin(candidates.video_ids, list(seen))
    ranker = Ranker()
    ranking = ranker.rank(candidates, k=k, now=NOW, seen=seen_form, affinity=affinity)
    scores = ranker.score(candidates, now=NOW, affinity=affinity)
    expected = ref.top_k(scores, candidates.video_ids, k, seen)
    assert ranking.positions.tolist() == expected
    assert not set(ranking.video_ids.tolist()) & seen
    assert (np.diff(ranking.scores) <= 0).all()


NUMERIC_COLUMNS = ["published_at", "views", "completion_sum", "likes", "shares", "comments"]


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    column=st.sampled_from([*NUMERIC_COLUMNS, "dl_score", "video_id", "creator_id"]),
    bad=st.sampled_from([float("nan"), float("inf"), float("-inf"), -1.0, -1e9]),
    where=st.integers(0, 4),
)
def test_invalid_values_name_their_column(data: Any, column: str, bad: float, where: int) -> None:
    columns = data.draw(candidate_rows(5))
    if column == "published_at" and bad < 0 and np.isfinite(bad):
        bad = float("nan")  # a negative publish time is merely old, not invalid
    if column == "dl_score" and np.isnan(bad):
        bad = 2.0  # NaN is a valid "missing" model score
    if column in ("video_id", "creator_id"):
        bad = -1 if np.isfinite(bad) else bad
    values = list(columns[column])
    values[where] = bad
    columns[column] = values
    with pytest.raises(InvalidInputError) as info:
        Candidates.from_arrays(**columns)
    assert info.value.field == column


def test_aware_datetime_in_utc_matches_epoch_seconds() -> None:
    candidates = Candidates.from_arrays(**one_candidate())
    moment = datetime.fromtimestamp(NOW, tz=UTC)
    ranking = Ranker().rank(candidates, k=1, now=moment)
    assert ranking.scores[0] == Ranker().score(candidates, now=NOW)[0]


WARMUP_PROBE = """
import os
import reelrank
from reelrank._kernels import _cosine, _diversity, _rank

request_path_kernels = {
    "diversity": _diversity.diversify_kernel,
    "similar": _cosine.top_k_cosine_kernel,
    "rank": _rank.rank_kernel,
}
before = sorted(name for name, kernel in request_path_kernels.items() if kernel.signatures)
reelrank.warmup()
after = sorted(name for name, kernel in request_path_kernels.items() if kernel.signatures)
print(before, after)
"""


@pytest.mark.skipif(
    os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="nothing is compiled without the JIT"
)
def test_warmup_prepares_every_request_path_kernel() -> None:
    out = subprocess.run(
        [sys.executable, "-c", WARMUP_PROBE], check=True, capture_output=True, text=True
    )
    assert out.stdout.split("\n")[0] == "[] ['diversity', 'rank', 'similar']"
