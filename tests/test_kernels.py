"""The compiled kernels and heap helpers called directly, against the references in
``reference.py`` and against each other."""

from __future__ import annotations

import os
from typing import Any

import numba
import numpy as np
import pytest
import reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st

from reelrank import Candidates, Ranker, RankingConfig
from reelrank._kernels import _bm25, _cosine, _diversity, _presets
from reelrank._kernels import _heap as H
from reelrank._kernels import _layout as L
from reelrank._kernels import _rank as K
from reelrank._kernels._cosine import top_k_cosine_kernel
from reelrank._kernels._diversity import NO_SOUND, diversify_kernel
from reelrank._kernels._presets import FASTMATH

NOW = 1.7e9


def build(columns: ref.Columns) -> Candidates:
    return Candidates.from_arrays(**columns.as_kwargs())  # type: ignore[arg-type]


def now_hours(candidates: Candidates, now: float = NOW) -> float:
    return (now - candidates._epoch) / 3600.0


def affinity_args(candidates: Candidates, affinity: Any) -> tuple[Any, Any]:
    """``(values, keys)`` for None, one value per candidate or a creator mapping."""
    if affinity is None:
        return None, None
    if isinstance(affinity, dict):
        keys = np.array(list(affinity.keys()), dtype=np.int64)
        return np.array(list(affinity.values()), dtype=np.float64), keys
    return np.asarray(affinity, dtype=np.float32), None


def group_args(candidates: Candidates, affinity: Any) -> tuple[Any, Any, Any, Any]:
    """The affinity arguments of the score and rank kernels."""
    values, keys = affinity_args(candidates, affinity)
    creators, groups = candidates._creator_lookup() if keys is not None else (None, None)
    return values, keys, creators, groups


def explain_args(candidates: Candidates, affinity: Any) -> tuple[Any, Any, Any, Any]:
    """The affinity arguments of the explain kernel."""
    values, keys = affinity_args(candidates, affinity)
    creators = candidates._creator_lookup()[0] if keys is not None else None
    return values, keys, creators, candidates._creator_ids


def kernel_scores(candidates: Candidates, ranker: Ranker, affinity: Any = None) -> np.ndarray:
    out = np.empty(len(candidates), dtype=np.float32)
    assert K.score_kernel(
        candidates._features,
        *group_args(candidates, affinity),
        ranker._params,
        now_hours(candidates),
        out,
    )
    return out


def rank_kernel_call(
    candidates: Candidates,
    ranker: Ranker,
    k: int,
    *,
    affinity: Any = None,
    seen_ids: Any = None,
    seen_mask: Any = None,
) -> tuple[int, np.ndarray, np.ndarray]:
    capacity = min(k, len(candidates))
    positions = np.full(capacity, -1, dtype=np.int64)
    scores = np.full(capacity, np.nan, dtype=np.float32)
    count = K.rank_kernel(
        candidates._features,
        candidates._video_ids,
        *group_args(candidates, affinity),
        np.empty(0, np.int64) if seen_ids is None else seen_ids,
        np.empty(0, np.bool_) if seen_mask is None else seen_mask,
        ranker._params,
        now_hours(candidates),
        positions,
        scores,
    )
    return count, positions, scores


def kernel_rank(
    candidates: Candidates,
    ranker: Ranker,
    k: int,
    *,
    affinity: Any = None,
    seen_ids: Any = None,
    seen_mask: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rank with seen ids sorted, as the wrapper hands over long lists."""
    count, positions, scores = rank_kernel_call(
        candidates,
        ranker,
        k,
        affinity=affinity,
        seen_ids=None if seen_ids is None else np.sort(seen_ids),
        seen_mask=seen_mask,
    )
    assert count >= 0
    return positions[:count], scores[:count]


def test_fastmath_flags_keep_nan_and_infinity_semantics() -> None:
    assert "nnan" not in FASTMATH and "ninf" not in FASTMATH and "fast" not in FASTMATH
    assert {"nsz", "arcp", "contract", "afn", "reassoc"} >= FASTMATH


@pytest.mark.skipif(
    os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="nothing is compiled without the JIT"
)
def test_every_kernel_and_helper_compiles_with_a_shared_preset() -> None:
    def options(preset: Any) -> tuple[dict[str, Any], bool]:
        def probe() -> None:
            pass

        dispatcher = preset(probe)
        return dispatcher.targetoptions, type(dispatcher._cache).__name__ == "FunctionCache"

    presets = {
        "inline_helper": options(_presets.inline_helper),
        "serial_kernel": options(_presets.serial_kernel),
        "parallel_kernel": options(_presets.parallel_kernel),
    }
    assert presets["serial_kernel"][1] and not presets["parallel_kernel"][1]
    used = set()
    for module in (K, H, _cosine, _diversity, _bm25):
        for name, value in vars(module).items():
            if isinstance(value, numba.core.dispatcher.Dispatcher) and (
                value.py_func.__module__ == module.__name__
            ):
                found = (value.targetoptions, type(value._cache).__name__ == "FunctionCache")
                matches = [preset for preset, opts in presets.items() if opts == found]
                assert matches, f"{module.__name__}.{name} compiles with its own options"
                used.update(matches)
    assert used == set(presets)


def test_freshness_polynomial_tracks_exact_power_of_two() -> None:
    # Ages on and around every rounding boundary of the exponent split, out to ~100 halvings.
    half_life = 7.0
    halvings = np.concatenate(
        [np.linspace(0.0, 100.0, 4001), np.arange(0, 100) + 0.5, np.arange(0, 100) + 0.4999]
    )
    n = halvings.size
    zeros = np.zeros(n)
    candidates = Candidates.from_arrays(
        video_id=np.arange(n),
        creator_id=np.zeros(n, dtype=np.int64),
        published_at=NOW - halvings * half_life * 3600.0,
        views=zeros,
        completion_sum=zeros,
        likes=zeros,
        shares=zeros,
        comments=zeros,
    )
    config = RankingConfig(
        freshness=1.0,
        completion=0.0,
        engagement=0.0,
        affinity=0.0,
        deep_learning=0.0,
        freshness_half_life_hours=half_life,
    )
    got = kernel_scores(candidates, Ranker(config)).astype(np.float64)
    # Ages are stored as float32 hours relative to the newest candidate.
    stored_hours = now_hours(candidates) - candidates._features[L.ROW_PUBLISHED_HOURS]
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
        video_id=np.arange(4),
        creator_id=np.zeros(4, dtype=np.int64),
        published_at=NOW - ages,
        views=zeros,
        completion_sum=zeros,
        likes=zeros,
        shares=zeros,
        comments=zeros,
    )
    config = RankingConfig(
        freshness=1.0,
        completion=0.0,
        engagement=0.0,
        affinity=0.0,
        deep_learning=0.0,
        freshness_half_life_hours=1.0,
    )
    got = kernel_scores(candidates, Ranker(config))
    assert got[0] == 1.0
    assert ((got[1:] >= 0.0) & (got[1:] < 1e-30)).all()


@pytest.mark.parametrize("k", [1, 49, 63, 64, 65, 128, 300, 1000])
def test_all_ties_are_ordered_by_video_id(k: int) -> None:
    n = 700
    rng = np.random.default_rng(k)
    ones = np.ones(n)
    candidates = Candidates.from_arrays(
        video_id=rng.permutation(10 * n)[:n],
        creator_id=np.zeros(n, dtype=np.int64),
        published_at=np.full(n, NOW),
        views=ones * 10,
        completion_sum=ones * 5,
        likes=ones,
        shares=ones,
        comments=ones,
    )
    positions, scores = kernel_rank(candidates, Ranker(), k)
    expected = np.argsort(candidates.video_ids, kind="stable")[:k]
    assert positions.tolist() == expected.tolist()
    assert (scores == scores[0]).all()


def test_all_ties_with_duplicate_video_ids_fall_back_to_position() -> None:
    n = 300
    ones = np.ones(n)
    candidates = Candidates.from_arrays(
        video_id=np.arange(n) % 7,
        creator_id=np.zeros(n, dtype=np.int64),
        published_at=np.full(n, NOW),
        views=ones,
        completion_sum=ones,
        likes=ones,
        shares=ones,
        comments=ones,
    )
    positions, _ = kernel_rank(candidates, Ranker(), 100)
    expected = np.lexsort((np.arange(n), candidates.video_ids))[:100]
    assert positions.tolist() == expected.tolist()


AFFINITY_CONFIGS = [
    RankingConfig(),
    # Affinity outweighs everything else: blocks far below the k-th best without it
    # can still reach it, so the affinity bound must not skip them.
    RankingConfig(
        freshness=0.05, completion=0.05, engagement=0.05, affinity=0.8, deep_learning=0.05
    ),
]


@pytest.mark.parametrize("config", AFFINITY_CONFIGS, ids=["default", "affinity-heavy"])
@pytest.mark.parametrize("k", [1, 50, 128, 1000])
@pytest.mark.parametrize("affinity_mode", ["none", "per_candidate", "by_creator", "few_followed"])
def test_rank_kernel_is_the_head_of_the_sorted_score_kernel(
    config: RankingConfig, k: int, affinity_mode: str
) -> None:
    rng = np.random.default_rng(k)
    n = 2_500
    # With few followed candidates the mapping is applied after the main pass, with many
    # inside it (see DENSE_AFFINITY_SHARE); both must give the same ranking.
    n_creators = 2_000 if affinity_mode == "few_followed" else 40
    columns = ref.random_columns(rng, n, n_creators=n_creators)
    candidates = build(columns)
    ranker = Ranker(config)
    affinity: Any = None
    if affinity_mode == "per_candidate":
        affinity = rng.uniform(0, 1, n).astype(np.float32)
    elif affinity_mode == "by_creator":
        # A few followed creators, some absent from the candidates.
        followed = rng.choice(60, 12, replace=False)
        affinity = {int(c): float(a) for c, a in zip(followed, rng.uniform(0, 1, 12), strict=True)}
    elif affinity_mode == "few_followed":
        followed = rng.choice(np.unique(columns.creator_id), 6, replace=False)
        affinity = {int(c): float(a) for c, a in zip(followed, rng.uniform(0, 1, 6), strict=True)}
        affinity[followed[0].item()] = 1.0
        affinity[followed[1].item()] = 0.0
        assert np.isin(columns.creator_id, followed).sum() * K.DENSE_AFFINITY_SHARE < n
    scores = kernel_scores(candidates, ranker, affinity)
    np.testing.assert_allclose(scores, ref.score(columns, NOW, config, affinity), atol=2e-6, rtol=0)
    seen = rng.choice(columns.video_id, 300, replace=False)
    mask = np.isin(columns.video_id, seen)
    expected = ref.top_k(scores, columns.video_id, k, seen.tolist())
    for seen_ids, seen_mask in ((seen, None), (None, mask)):
        positions, got = kernel_rank(
            candidates, ranker, k, affinity=affinity, seen_ids=seen_ids, seen_mask=seen_mask
        )
        assert positions.tolist() == expected
        np.testing.assert_array_equal(got, scores[expected])


@pytest.mark.parametrize("affinity", [{500: 1.0}, {500: 1.0, 3: 0.1}], ids=["sparse", "dense"])
def test_affinity_lifts_one_block_far_below_the_threshold_into_the_top(
    affinity: dict[int, float],
) -> None:
    # Every candidate has the same score without affinity, except for a last block that is
    # much worse; one creator there has full affinity and must still win.
    n = 1_000
    ones = np.ones(n)
    views = np.full(n, 1_000.0)
    views[-64:] = 0.0
    creator_ids = np.arange(n) % 10
    creator_ids[-1] = 500
    candidates = Candidates.from_arrays(
        video_id=np.arange(n),
        creator_id=creator_ids,
        published_at=np.full(n, NOW),
        views=views,
        completion_sum=views * 0.9,
        likes=views * 0.2,
        shares=ones,
        comments=ones,
    )
    ranker = Ranker(RankingConfig(affinity=0.5, completion=0.2, engagement=0.1, freshness=0.15))
    scores = kernel_scores(candidates, ranker, affinity)
    positions, _ = kernel_rank(candidates, ranker, 5, affinity=affinity)
    assert positions.tolist() == ref.top_k(scores, candidates.video_ids, 5)
    assert n - 1 in positions.tolist()


def test_rank_kernel_sorts_short_seen_lists_and_asks_for_long_ones_sorted() -> None:
    rng = np.random.default_rng(6)
    n = 3_000
    columns = ref.random_columns(rng, n)
    candidates = build(columns)
    ranker = Ranker()
    scores = kernel_scores(candidates, ranker)
    for size in (2, K.SORT_SEEN_IN_KERNEL_MAX, K.SORT_SEEN_IN_KERNEL_MAX + 1, 2_000):
        seen = rng.choice(columns.video_id, size, replace=False)
        assert (np.diff(seen) < 0).any()
        expected = ref.top_k(scores, columns.video_id, 60, seen.tolist())
        count, positions, _ = rank_kernel_call(candidates, ranker, 60, seen_ids=seen)
        if size > K.SORT_SEEN_IN_KERNEL_MAX:
            assert count == K.SEEN_IDS_UNSORTED
            # Sorted, with duplicates, it is accepted as it is.
            seen = np.sort(np.concatenate([seen, seen[:10]]))
            count, positions, _ = rank_kernel_call(candidates, ranker, 60, seen_ids=seen)
        assert positions[:count].tolist() == expected


def test_rank_kernel_sorted_input_worst_case_for_the_heap() -> None:
    # Ascending scores: every block beats the threshold and every item enters the heap.
    n = 1_000
    views = np.arange(n, dtype=np.float64) * 10
    candidates = Candidates.from_arrays(
        video_id=np.arange(n),
        creator_id=np.zeros(n, dtype=np.int64),
        published_at=np.full(n, NOW),
        views=views,
        completion_sum=views * 0.9,
        likes=views * 0.2,
        shares=np.zeros(n),
        comments=np.zeros(n),
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


@pytest.mark.parametrize("affinity_kind", ["per_candidate", "mapping"])
def test_explain_kernel_matches_reference_on_selected_rows(affinity_kind: str) -> None:
    rng = np.random.default_rng(11)
    columns = ref.random_columns(rng, 400)
    candidates = build(columns)
    ranker = Ranker()
    positions = rng.choice(400, 60, replace=False).astype(np.int64)
    affinity: Any = rng.uniform(0, 1, 400)
    if affinity_kind == "mapping":
        affinity = {int(c): float(rng.uniform()) for c in np.unique(columns.creator_id)[::3]}
    out = np.empty((60, 5), dtype=np.float32)
    assert K.explain_kernel(
        candidates._features,
        *explain_args(candidates, affinity),
        ranker._params,
        now_hours(candidates),
        positions,
        out,
    )
    expected = ref.explain(columns, NOW, ranker.config, affinity)[positions]
    np.testing.assert_allclose(out, expected, atol=2e-6, rtol=0)


def test_batch_kernel_adds_affinity_to_shared_scores_and_flags_bad_values() -> None:
    rng = np.random.default_rng(12)
    columns = ref.random_columns(rng, 333)
    candidates = build(columns)
    ranker = Ranker()
    static = kernel_scores(candidates, ranker)
    users = rng.uniform(0, 1, (9, 333)).astype(np.float32)
    w_affinity = ranker._params[L.P_W_AFFINITY]
    out = np.empty_like(users)
    assert K.batch_kernel(static, users, w_affinity, out)
    for row, user in zip(out, users, strict=True):
        # Equal up to the rounding order fast-math may pick: within one float32 ulp.
        np.testing.assert_allclose(row, kernel_scores(candidates, ranker, user), atol=6e-8, rtol=0)
        np.testing.assert_allclose(
            row, ref.score(columns, NOW, ranker.config, user), atol=2e-6, rtol=0
        )
    serial_out = np.empty_like(users)
    assert K.batch_kernel_serial(static, users, w_affinity, serial_out)
    np.testing.assert_array_equal(serial_out, out)
    for bad in (np.nan, -0.01, 1.01, np.inf):
        broken = users.copy()
        broken[4, 100] = bad
        assert not K.batch_kernel(static, broken, w_affinity, out)
        assert not K.batch_kernel_serial(static, broken, w_affinity, out)


def test_mapping_affinity_ignores_unknown_creators_and_rejects_bad_values() -> None:
    n = 6
    zeros = np.zeros(n)
    candidates = Candidates.from_arrays(
        video_id=np.arange(n),
        creator_id=np.array([20, 3, 8, 3, 20, 8]),
        published_at=np.full(n, NOW),
        views=zeros,
        completion_sum=zeros,
        likes=zeros,
        shares=zeros,
        comments=zeros,
    )
    only_affinity = Ranker(
        RankingConfig(
            freshness=0.0, completion=0.0, engagement=0.0, affinity=1.0, deep_learning=0.0
        )
    )
    mapping = {20: 0.2, 5: 0.9, 3: 1.0, 99: 0.4}
    scores = kernel_scores(candidates, only_affinity, mapping)
    assert scores.tolist() == pytest.approx([0.2, 1.0, 0.0, 1.0, 0.2, 0.0])
    positions, _ = kernel_rank(candidates, only_affinity, 3, affinity=mapping)
    assert positions.tolist() == [1, 3, 0]
    out = np.empty(n, dtype=np.float32)
    contributions = np.empty((n, 5), dtype=np.float32)
    for bad in (np.nan, -1.0, 1.5):
        mapping = {3: 0.5, 8: bad}
        params, hours = only_affinity._params, now_hours(candidates)
        assert not K.score_kernel(
            candidates._features, *group_args(candidates, mapping), params, hours, out
        )
        assert not K.explain_kernel(
            candidates._features,
            *explain_args(candidates, mapping),
            params,
            hours,
            np.arange(n),
            contributions,
        )
        count, _, _ = rank_kernel_call(candidates, only_affinity, 3, affinity={3: 0.5, 8: bad})
        assert count == K.INVALID_AFFINITY
        # Checked even when nothing is asked for.
        count, _, _ = rank_kernel_call(candidates, only_affinity, 0, affinity={3: 0.5, 8: bad})
        assert count == K.INVALID_AFFINITY


@pytest.mark.parametrize(
    ("values", "valid"),
    [
        ([], True),
        ([0.0, 1.0, 0.5], True),
        ([0.5, np.nan], False),
        ([1.0000001], False),
        ([-0.0], True),
        ([-1e-30], False),
    ],
)
def test_in_unit_interval_kernel(values: list[float], valid: bool) -> None:
    assert K.in_unit_interval_kernel(np.array(values, dtype=np.float32)) is valid


# -- the creator mapping at its edges ---------------------------------------------------

AFFINITY_HEAVY = RankingConfig(
    freshness=0.05, completion=0.05, engagement=0.05, affinity=0.8, deep_learning=0.05
)


@pytest.mark.parametrize("k", [1, 7, 3_000])
@pytest.mark.parametrize("followed", ["lowest", "highest", "lowest_and_highest", "every"])
def test_creator_mapping_edges_match_the_reference(followed: str, k: int) -> None:
    # Few candidates per creator, so following one or two creators takes the sparse path
    # (the followed candidates rescored after the main pass) and following every creator
    # the dense one. The lowest and highest creator ids sit in the first and last slot of
    # the creator groups; with affinity this heavy, their candidates lead the ranking.
    # k = n keeps every candidate, so the sparse pass moves kept items inside the heap.
    rng = np.random.default_rng(len(followed) * 1_000 + k)
    n = 3_000
    columns = ref.random_columns(rng, n, n_creators=1_500)
    candidates = build(columns)
    creators = np.unique(columns.creator_id)
    lowest, highest = int(creators[0]), int(creators[-1])
    affinity = {
        "lowest": {lowest: 1.0},
        "highest": {highest: 1.0},
        # With an unknown creator on either side of the known ones.
        "lowest_and_highest": {lowest - 1: 0.5, lowest: 0.9, highest: 1.0, highest + 1: 0.5},
        "every": dict(
            zip(creators.tolist(), rng.uniform(0, 1, creators.size).tolist(), strict=True)
        ),
    }[followed]
    n_followed = int(np.isin(columns.creator_id, list(affinity)).sum())
    sparse = n_followed * K.DENSE_AFFINITY_SHARE < n
    assert sparse is (followed != "every")
    ranker = Ranker(AFFINITY_HEAVY)
    expected_scores = ref.score(columns, NOW, AFFINITY_HEAVY, affinity)
    scores = kernel_scores(candidates, ranker, affinity)
    np.testing.assert_allclose(scores, expected_scores, atol=2e-6, rtol=0)
    seen = rng.choice(columns.video_id, 50, replace=False)
    seen_mask = np.isin(columns.video_id, seen)
    followed_positions = set(np.flatnonzero(np.isin(columns.creator_id, list(affinity))).tolist())
    for seen_ids, mask in ((None, None), (seen, None), (None, seen_mask)):
        excluded = seen if seen_ids is not None or mask is not None else seen[:0]
        unseen = ~np.isin(columns.video_id, excluded)
        positions, got = kernel_rank(
            candidates, ranker, k, affinity=affinity, seen_ids=seen_ids, seen_mask=mask
        )
        # Against the float64 reference: the kept scores are the reference's, and no
        # unseen candidate left out beats the worst kept by more than rounding.
        assert len(positions) == min(k, int(unseen.sum()))
        assert unseen[positions].all()
        np.testing.assert_allclose(got, expected_scores[positions], atol=2e-6, rtol=0)
        left_out = unseen.copy()
        left_out[positions] = False
        if left_out.any():
            assert expected_scores[left_out].max() <= got[-1] + 4e-6
        # Exactly the head of the stable sort of the score kernel's scores.
        assert positions.tolist() == ref.top_k(scores, columns.video_id, k, excluded.tolist())
        if sparse:
            # Affinity this heavy puts every followed candidate ahead of all others.
            n_lead = min(k, len(followed_positions & set(np.flatnonzero(unseen).tolist())))
            assert n_lead > 0
            assert set(positions[:n_lead].tolist()) <= followed_positions


# -- the shared heap --------------------------------------------------------------------


def reference_order(scores: list[float], video_ids: list[int]) -> list[int]:
    """Positions sorted best first: score descending, then video id, then position."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], video_ids[i], i))


# Few distinct scores and ids, so ties on score and on id are common.
heap_items = st.lists(
    st.tuples(st.sampled_from([0.0, 0.25, 0.5, 1.0 / 3.0, 1.0]), st.integers(0, 6)),
    max_size=60,
)


@settings(deadline=None)
@given(items=heap_items, capacity=st.integers(1, 12))
def test_heap_keeps_the_best_in_reference_order(
    items: list[tuple[float, int]], capacity: int
) -> None:
    # Offered the way the kernels offer them: push until full, then replace the root
    # when the newcomer ranks before it.
    scores = np.array([score for score, _ in items], dtype=np.float32)
    video_ids = np.array([video for _, video in items], dtype=np.int64)
    heap_scores = np.empty(capacity, dtype=np.float32)
    heap_positions = np.empty(capacity, dtype=np.int64)
    size = 0
    for position in range(len(items)):
        if size < capacity:
            H.heap_push(video_ids, heap_scores, heap_positions, size, scores[position], position)
            size += 1
            continue
        score = scores[position]
        if H.ranks_after(video_ids, heap_scores[0], heap_positions[0], score, position):
            H.heap_replace(video_ids, heap_scores, heap_positions, size, 0, score, position)
    H.heap_sort_out(video_ids, heap_scores, heap_positions, size)
    expected = reference_order(scores.tolist(), video_ids.tolist())[:capacity]
    assert heap_positions[:size].tolist() == expected
    assert heap_scores[:size].tolist() == scores[expected].tolist()


@settings(deadline=None)
@given(items=heap_items.filter(lambda items: len(items) >= 2), data=st.data())
def test_heap_replace_moves_a_kept_item_to_its_better_place(
    items: list[tuple[float, int]], data: st.DataObject
) -> None:
    # The rank kernel's sparse pass raises a kept item's score and sifts it from its node.
    scores = np.array([score for score, _ in items], dtype=np.float32)
    video_ids = np.array([video for _, video in items], dtype=np.int64)
    n = len(items)
    heap_scores = np.empty(n, dtype=np.float32)
    heap_positions = np.empty(n, dtype=np.int64)
    for position in range(n):
        H.heap_push(video_ids, heap_scores, heap_positions, position, scores[position], position)
    node = data.draw(st.integers(0, n - 1))
    moved = int(heap_positions[node])
    raised = data.draw(st.sampled_from([s for s in (0.25, 0.5, 1.0) if s >= scores[moved]]))
    scores[moved] = raised
    H.heap_replace(video_ids, heap_scores, heap_positions, n, node, scores[moved], moved)
    H.heap_sort_out(video_ids, heap_scores, heap_positions, n)
    assert heap_positions.tolist() == reference_order(scores.tolist(), video_ids.tolist())


@pytest.mark.parametrize(
    ("a", "b", "after"),
    [
        ((0.5, 1, 0), (0.25, 1, 1), False),  # higher score first
        ((0.25, 1, 0), (0.5, 1, 1), True),
        ((0.5, 3, 0), (0.5, 2, 1), True),  # tie: smaller video id first
        ((0.5, 2, 1), (0.5, 3, 0), False),
        ((0.5, 2, 1), (0.5, 2, 0), True),  # same id: smaller position first
        ((0.5, 2, 0), (0.5, 2, 0), False),  # never after itself
    ],
)
def test_ranks_after(a: tuple[float, int, int], b: tuple[float, int, int], after: bool) -> None:
    video_ids = np.zeros(2, dtype=np.int64)
    video_ids[a[2]], video_ids[b[2]] = a[1], b[1]
    got = H.ranks_after(video_ids, np.float32(a[0]), a[2], np.float32(b[0]), b[2])
    assert bool(got) is after


# -- the cosine top-k kernel ------------------------------------------------------------


@settings(deadline=None)
@given(rows=st.integers(0, 40), width=st.integers(1, 4), k=st.integers(0, 45), data=st.data())
def test_cosine_kernel_matches_the_reference(
    rows: int, width: int, k: int, data: st.DataObject
) -> None:
    # Small integer entries: every dot product is exact in float32, so the reference's
    # order (score, then id, then row) must come out exactly, duplicate ids included.
    draw = data.draw
    matrix = np.array(
        draw(st.lists(st.integers(-2, 2), min_size=rows * width, max_size=rows * width)),
        dtype=np.float32,
    ).reshape(rows, width)
    query = np.array(
        draw(st.lists(st.integers(-2, 2), min_size=width, max_size=width)), dtype=np.float32
    )
    ids = np.array(draw(st.lists(st.integers(1, 8), min_size=rows, max_size=rows)), np.int64)
    excluded = np.array(draw(st.lists(st.booleans(), min_size=rows, max_size=rows)), np.bool_)
    size = min(k, rows)
    out_rows = np.full(size, -1, dtype=np.int64)
    out_scores = np.full(size, np.nan, dtype=np.float32)
    filled = top_k_cosine_kernel(matrix, query, ids, excluded.view(np.uint8), out_rows, out_scores)
    expected = ref.cosine_top_k(matrix, query, ids, size, excluded)
    assert filled == len(expected)
    got = [
        (int(ids[row]), float(score))
        for row, score in zip(out_rows[:filled], out_scores[:filled], strict=True)
    ]
    assert got == expected
    eligible = np.flatnonzero(~excluded)
    order = sorted(eligible.tolist(), key=lambda r: (-float(matrix[r] @ query), ids[r], r))
    assert out_rows[:filled].tolist() == order[:filled]


# -- the diversity kernel ---------------------------------------------------------------


@settings(deadline=None)
@given(
    items=st.lists(st.tuples(st.integers(1, 4), st.sampled_from([NO_SOUND, 7, 8])), max_size=40),
    max_creator=st.integers(1, 4),
    max_sound=st.integers(1, 4),
)
def test_diversify_kernel_matches_the_reference(
    items: list[tuple[int, int]], max_creator: int, max_sound: int
) -> None:
    creators = [creator for creator, _ in items]
    sounds = [sound for _, sound in items]
    order = np.full(len(items), -1, dtype=np.int64)
    diversify_kernel(
        np.array(creators, dtype=np.int64),
        np.array(sounds, dtype=np.int64),
        max_creator,
        max_sound,
        order,
    )
    assert order.tolist() == ref.diversity_order(creators, sounds, max_creator, max_sound)
