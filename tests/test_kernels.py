"""The compiled kernels called directly, against the reference and against each other."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import reference as ref

from reelrank import Candidates, Ranker, RankingConfig
from reelrank import _kernels as K

NOW = 1.7e9


def build(columns: ref.Columns) -> Candidates:
    return Candidates.from_arrays(**columns.as_kwargs())  # type: ignore[arg-type]


def now_hours(candidates: Candidates, now: float = NOW) -> float:
    return (now - candidates._epoch) / 3600.0


def kernel_scores(
    candidates: Candidates, ranker: Ranker, affinity: Any = None, creator_index: Any = None
) -> np.ndarray:
    out = np.empty(len(candidates), dtype=np.float32)
    K.score_kernel(
        candidates._features, affinity, creator_index, ranker._params, now_hours(candidates), out
    )
    return out


def kernel_rank(
    candidates: Candidates,
    ranker: Ranker,
    k: int,
    *,
    affinity: Any = None,
    creator_index: Any = None,
    seen_ids: Any = None,
    seen_mask: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    capacity = min(k, len(candidates))
    positions = np.full(capacity, -1, dtype=np.int64)
    scores = np.full(capacity, np.nan, dtype=np.float32)
    count = K.rank_kernel(
        candidates._features,
        candidates._video_ids,
        affinity,
        creator_index,
        np.empty(0, np.int64) if seen_ids is None else np.sort(seen_ids),
        np.empty(0, np.bool_) if seen_mask is None else seen_mask,
        ranker._params,
        now_hours(candidates),
        positions,
        scores,
    )
    return positions[:count], scores[:count]


def test_fastmath_flags_keep_nan_and_infinity_semantics() -> None:
    assert "nnan" not in K.FASTMATH and "ninf" not in K.FASTMATH and "fast" not in K.FASTMATH
    assert {"nsz", "arcp", "contract", "afn", "reassoc"} >= K.FASTMATH


def test_freshness_polynomial_tracks_exact_power_of_two() -> None:
    # Ages on and around every rounding boundary of the exponent split, out to ~100 halvings.
    half_life = 7.0
    halvings = np.concatenate(
        [np.linspace(0.0, 100.0, 4001), np.arange(0, 100) + 0.5, np.arange(0, 100) + 0.4999]
    )
    n = halvings.size
    zeros = np.zeros(n)
    candidates = Candidates.from_arrays(
        video_id=np.arange(n), creator_id=np.zeros(n, dtype=np.int64),
        published_at=NOW - halvings * half_life * 3600.0, views=zeros, completion_sum=zeros,
        likes=zeros, shares=zeros, comments=zeros,
    )
    config = RankingConfig(
        freshness=1.0, completion=0.0, engagement=0.0, affinity=0.0, deep_learning=0.0,
        freshness_half_life_hours=half_life,
    )
    got = kernel_scores(candidates, Ranker(config)).astype(np.float64)
    # Ages are stored as float32 hours relative to the newest candidate.
    stored_hours = now_hours(candidates) - candidates._features[K.ROW_PUBLISHED_HOURS]
    expected = 2.0 ** (-stored_hours.astype(np.float64) / half_life)
    # float32 rounding of the age in half-lives grows with the age; relative to the
    # value that is about 1e-7 per half-life, on top of the polynomial's own error.
    relative_error = np.abs(got - expected) / expected
    assert (relative_error <= 1e-7 * (2.0 + halvings)).all()
    assert np.abs(got - expected).max() < 1e-7
    assert got[0] == 1.0


def test_freshness_underflows_to_tiny_not_garbage() -> None:
    ages = np.array([0.0, 1e4, 1e6, 1e8]) * 3600.0
    zeros = np.zeros(4)
    candidates = Candidates.from_arrays(
        video_id=np.arange(4), creator_id=np.zeros(4, dtype=np.int64),
        published_at=NOW - ages, views=zeros, completion_sum=zeros, likes=zeros,
        shares=zeros, comments=zeros,
    )
    config = RankingConfig(
        freshness=1.0, completion=0.0, engagement=0.0, affinity=0.0, deep_learning=0.0,
        freshness_half_life_hours=1.0,
    )
    got = kernel_scores(candidates, Ranker(config), None, None)
    assert got[0] == 1.0
    assert ((got[1:] >= 0.0) & (got[1:] < 1e-30)).all()


@pytest.mark.parametrize("k", [1, 49, 63, 64, 65, 128, 300, 1000])
def test_all_ties_are_ordered_by_video_id(k: int) -> None:
    n = 700
    rng = np.random.default_rng(k)
    ones = np.ones(n)
    candidates = Candidates.from_arrays(
        video_id=rng.permutation(10 * n)[:n], creator_id=np.zeros(n, dtype=np.int64),
        published_at=np.full(n, NOW), views=ones * 10, completion_sum=ones * 5,
        likes=ones, shares=ones, comments=ones,
    )
    positions, scores = kernel_rank(candidates, Ranker(), k)
    expected = np.argsort(candidates.video_ids, kind="stable")[:k]
    assert positions.tolist() == expected.tolist()
    assert (scores == scores[0]).all()


def test_all_ties_with_duplicate_video_ids_fall_back_to_position() -> None:
    n = 300
    ones = np.ones(n)
    candidates = Candidates.from_arrays(
        video_id=np.arange(n) % 7, creator_id=np.zeros(n, dtype=np.int64),
        published_at=np.full(n, NOW), views=ones, completion_sum=ones, likes=ones,
        shares=ones, comments=ones,
    )
    positions, _ = kernel_rank(candidates, Ranker(), 100)
    expected = np.lexsort((np.arange(n), candidates.video_ids))[:100]
    assert positions.tolist() == expected.tolist()


@pytest.mark.parametrize("k", [1, 50, 128, 1000])
@pytest.mark.parametrize("affinity_mode", ["none", "per_candidate", "by_creator"])
def test_rank_kernel_is_the_head_of_the_sorted_score_kernel(k: int, affinity_mode: str) -> None:
    rng = np.random.default_rng(k)
    n = 2_500
    columns = ref.random_columns(rng, n, n_creators=40)
    candidates = build(columns)
    ranker = Ranker()
    affinity: Any = None
    creator_index: Any = None
    if affinity_mode == "per_candidate":
        affinity = rng.uniform(0, 1, n).astype(np.float32)
    elif affinity_mode == "by_creator":
        affinity = rng.uniform(0, 1, candidates._creators.size).astype(np.float32)
        creator_index = candidates._creator_index
    scores = kernel_scores(candidates, ranker, affinity, creator_index)
    seen = rng.choice(columns.video_id, 300, replace=False)
    mask = np.isin(columns.video_id, seen)
    expected = ref.top_k(scores, columns.video_id, k, seen.tolist())
    for seen_ids, seen_mask in ((seen, None), (None, mask)):
        positions, got = kernel_rank(
            candidates, ranker, k, affinity=affinity, creator_index=creator_index,
            seen_ids=seen_ids, seen_mask=seen_mask,
        )
        assert positions.tolist() == expected
        np.testing.assert_array_equal(got, scores[expected])


def test_rank_kernel_sorted_input_worst_case_for_the_heap() -> None:
    # Ascending scores: every block beats the threshold and every item enters the heap.
    n = 1_000
    views = np.arange(n, dtype=np.float64) * 10
    candidates = Candidates.from_arrays(
        video_id=np.arange(n), creator_id=np.zeros(n, dtype=np.int64),
        published_at=np.full(n, NOW), views=views, completion_sum=views * 0.9,
        likes=views * 0.2, shares=np.zeros(n), comments=np.zeros(n),
    )
    ranker = Ranker()
    scores = kernel_scores(candidates, ranker)
    positions, _ = kernel_rank(candidates, ranker, 37)
    assert positions.tolist() == ref.top_k(scores, candidates.video_ids, 37)


def test_rank_kernel_returns_fewer_when_most_are_seen() -> None:
    columns = ref.random_columns(np.random.default_rng(2), 200)
    candidates = build(columns)
    seen = columns.video_id[:195]
    positions, scores = kernel_rank(candidates, Ranker(), 50, seen_ids=seen)
    assert sorted(positions.tolist()) == [195, 196, 197, 198, 199]
    assert (np.diff(scores) <= 0).all()


def test_explain_kernel_matches_reference_on_selected_rows() -> None:
    rng = np.random.default_rng(11)
    columns = ref.random_columns(rng, 400)
    candidates = build(columns)
    ranker = Ranker()
    positions = rng.choice(400, 60, replace=False).astype(np.int64)
    affinity = rng.uniform(0, 1, 400)
    out = np.empty((60, 5), dtype=np.float32)
    K.explain_kernel(
        candidates._features, affinity.astype(np.float32), None, ranker._params,
        now_hours(candidates), positions, out,
    )
    expected = ref.explain(columns, NOW, ranker.config, affinity)[positions]
    np.testing.assert_allclose(out, expected, atol=2e-6, rtol=0)


def test_batch_kernel_adds_affinity_to_shared_scores_and_flags_bad_values() -> None:
    rng = np.random.default_rng(12)
    candidates = build(ref.random_columns(rng, 333))
    ranker = Ranker()
    static = kernel_scores(candidates, ranker)
    users = rng.uniform(0, 1, (9, 333)).astype(np.float32)
    w_affinity = ranker._params[K.P_W_AFFINITY]
    out = np.empty_like(users)
    assert K.batch_kernel(static, users, w_affinity, out)
    for row, user in zip(out, users, strict=True):
        # Equal up to the rounding order fast-math may pick: within one float32 ulp.
        np.testing.assert_allclose(
            row, kernel_scores(candidates, ranker, user), atol=6e-8, rtol=0
        )
    serial_out = np.empty_like(users)
    assert K.batch_kernel_serial(static, users, w_affinity, serial_out)
    np.testing.assert_array_equal(serial_out, out)
    for bad in (np.nan, -0.01, 1.01, np.inf):
        broken = users.copy()
        broken[4, 100] = bad
        assert not K.batch_kernel(static, broken, w_affinity, out)
        assert not K.batch_kernel_serial(static, broken, w_affinity, out)


def test_affinity_table_kernel_ignores_unknown_creators_and_rejects_bad_values() -> None:
    creators = np.array([3, 8, 20], dtype=np.int64)
    table = np.zeros(3, dtype=np.float32)
    keys = np.array([20, 5, 3, 99], dtype=np.int64)
    assert K.affinity_table_kernel(creators, keys, np.array([0.2, 0.9, 1.0, 0.4]), table)
    assert table.tolist() == pytest.approx([1.0, 0.0, 0.2])
    for bad in (np.nan, -1.0, 1.5):
        assert not K.affinity_table_kernel(creators, keys[:1], np.array([bad]), table)


@pytest.mark.parametrize(
    ("values", "valid"),
    [([], True), ([0.0, 1.0, 0.5], True), ([0.5, np.nan], False), ([1.0000001], False),
     ([-0.0], True), ([-1e-30], False)],
)
def test_in_unit_interval_kernel(values: list[float], valid: bool) -> None:
    assert K.in_unit_interval_kernel(np.array(values, dtype=np.float32)) is valid
