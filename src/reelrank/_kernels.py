"""Compiled scoring kernels.

Every kernel here is private: it trusts its caller (:mod:`reelrank._scoring`) to have
checked dtypes, shapes and contiguity, and takes only arrays and scalars.

Candidates arrive as one C-contiguous ``float32`` block of shape ``(N_ROWS, n)``, one
row per feature (see the ``ROW_*`` constants), so a kernel call passes one array for all
features and the hot loops stream a few contiguous rows. The scoring parameters arrive
as one ``float32`` vector laid out by the ``P_*`` constants.

Performance notes that shape the code:

* loops run over unsigned indices, which keeps column loads contiguous instead of
  turning them into gathers;
* ``error_model="numpy"`` drops the division-by-zero check that blocks vectorisation;
* ``2 ** -x`` is built from a short polynomial and the float exponent bits, because
  ``exp`` compiles to a scalar library call that would stop the loop vectorising;
* inner helpers take scalars only (arrays passed to helpers cost reference counting
  on every iteration);
* every literal is a ``float32`` constant: a Python float literal would promote the
  arithmetic to ``float64`` and break bitwise-equal scores between kernels.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange

__all__ = [
    "BLOCK",
    "FASTMATH",
    "N_PARAMS",
    "N_ROWS",
    "P_COMMENT_WEIGHT",
    "P_COMPLETION_PRIOR_MASS",
    "P_COMPLETION_PRIOR_MEAN",
    "P_COMPLETION_PRIOR_VIEWS",
    "P_DL_NEUTRAL",
    "P_ENGAGEMENT_HALF_SATURATION",
    "P_ENGAGEMENT_PRIOR_MASS",
    "P_ENGAGEMENT_PRIOR_RATE",
    "P_ENGAGEMENT_PRIOR_VIEWS",
    "P_INV_HALF_LIFE_HOURS",
    "P_LIKE_WEIGHT",
    "P_SHARE_WEIGHT",
    "P_W_AFFINITY",
    "P_W_COMPLETION",
    "P_W_DEEP_LEARNING",
    "P_W_ENGAGEMENT",
    "P_W_FRESHNESS",
    "ROW_COMMENTS",
    "ROW_COMPLETION",
    "ROW_DL",
    "ROW_LIKES",
    "ROW_PUBLISHED_HOURS",
    "ROW_SHARES",
    "ROW_VIEWS",
    "batch_kernel",
    "explain_kernel",
    "rank_kernel",
    "score_kernel",
]

FASTMATH: set[str] = {"nsz", "arcp", "contract", "afn", "reassoc"}
"""The one fast-math flag set every reelrank kernel uses.

It leaves out ``nnan`` and ``ninf`` on purpose: kernels test for NaN (a missing model
score) and must keep doing so. Treat it as read-only.
"""

# Rows of the feature block.
ROW_PUBLISHED_HOURS = 0
"""Publish time in hours relative to the block's own epoch (see ``Candidates``)."""
ROW_VIEWS = 1
ROW_COMPLETION = 2
"""Completion sum, already clipped to views."""
ROW_LIKES = 3
ROW_SHARES = 4
ROW_COMMENTS = 5
ROW_DL = 6
"""Model score in ``[0, 1]``; NaN when missing."""
N_ROWS = 7

# Slots of the parameter vector.
P_W_FRESHNESS = 0
P_W_COMPLETION = 1
P_W_ENGAGEMENT = 2
P_W_AFFINITY = 3
P_W_DEEP_LEARNING = 4
P_INV_HALF_LIFE_HOURS = 5
P_COMPLETION_PRIOR_MASS = 6
P_COMPLETION_PRIOR_VIEWS = 7
P_COMPLETION_PRIOR_MEAN = 8
P_LIKE_WEIGHT = 9
P_SHARE_WEIGHT = 10
P_COMMENT_WEIGHT = 11
P_ENGAGEMENT_PRIOR_MASS = 12
P_ENGAGEMENT_PRIOR_VIEWS = 13
P_ENGAGEMENT_PRIOR_RATE = 14
P_ENGAGEMENT_HALF_SATURATION = 15
P_DL_NEUTRAL = 16
N_PARAMS = 17

BLOCK = 128
"""Candidates checked together against the top-k threshold before any is rescored."""

_ZERO = np.float32(0.0)
_HALF = np.float32(0.5)
_ONE = np.float32(1.0)
# Beyond 126 halvings freshness is below the smallest normal float32; clamping there
# keeps the exponent-bit construction valid.
_MAX_HALVINGS = np.float32(126.0)
# Taylor coefficients of 2 ** -f = exp(-f ln 2) for |f| <= 1/2; degree 6 is accurate
# to about one float32 ulp on that interval.
_C1 = np.float32(-0.6931471805599453)
_C2 = np.float32(0.6931471805599453**2 / 2.0)
_C3 = np.float32(-(0.6931471805599453**3) / 6.0)
_C4 = np.float32(0.6931471805599453**4 / 24.0)
_C5 = np.float32(-(0.6931471805599453**5) / 120.0)
_C6 = np.float32(0.6931471805599453**6 / 720.0)
# Slack on the block threshold test, so a candidate whose vectorised score differed
# from its rescored value in the last bit is never skipped.
_THRESHOLD_SLACK = np.float32(1e-6)
_NO_THRESHOLD = np.float32(-1.0)
_EXPONENT_BIAS = np.int32(127)
_MANTISSA_BITS = np.int32(23)
_UBLOCK = np.uint64(BLOCK)

_inline: Any = numba.njit(inline="always", fastmath=FASTMATH, error_model="numpy")
_serial: Any = numba.njit(cache=True, fastmath=FASTMATH, error_model="numpy", nogil=True)
_parallel: Any = numba.njit(parallel=True, fastmath=FASTMATH, error_model="numpy", nogil=True)


@_inline
def _freshness(published_hours: Any, now_hours: Any, inv_half_life: Any) -> Any:
    age = now_hours - published_hours
    age = max(age, _ZERO)
    halvings = min(age * inv_half_life, _MAX_HALVINGS)
    whole = np.int32(halvings + _HALF)
    frac = halvings - np.float32(whole)
    inner = _C4 + frac * (_C5 + frac * _C6)
    poly = _ONE + frac * (_C1 + frac * (_C2 + frac * (_C3 + frac * inner)))
    scale = np.int32((_EXPONENT_BIAS - whole) << _MANTISSA_BITS).view(np.float32)
    return scale * poly


@_inline
def _completion(
    views: Any, completion: Any, prior_mass: Any, prior_views: Any, prior_mean: Any
) -> Any:
    total = views + prior_views
    has_mass = total > _ZERO
    value = (completion + prior_mass) / (total if has_mass else _ONE)
    return min(value, _ONE) if has_mass else prior_mean


@_inline
def _engagement(
    views: Any,
    likes: Any,
    shares: Any,
    comments: Any,
    like_weight: Any,
    share_weight: Any,
    comment_weight: Any,
    prior_mass: Any,
    prior_views: Any,
    prior_rate: Any,
    half_saturation: Any,
) -> Any:
    total = views + prior_views
    weighted = like_weight * likes + share_weight * shares + comment_weight * comments
    has_mass = total > _ZERO
    rate = (weighted + prior_mass) / (total if has_mass else _ONE)
    rate = rate if has_mass else prior_rate
    return rate / (rate + half_saturation)


@_inline
def _model_score(dl: Any, neutral: Any) -> Any:
    # NaN marks a missing score; the comparison is false only for NaN.
    return dl if dl == dl else neutral


@_inline
def _static_score(
    published_hours: Any,
    views: Any,
    completion: Any,
    likes: Any,
    shares: Any,
    comments: Any,
    dl: Any,
    now_hours: Any,
    p: Any,
) -> Any:
    """Weighted sum of the four user-independent signals (affinity is added last)."""
    fresh = _freshness(published_hours, now_hours, p[P_INV_HALF_LIFE_HOURS])
    compl = _completion(
        views, completion, p[P_COMPLETION_PRIOR_MASS], p[P_COMPLETION_PRIOR_VIEWS],
        p[P_COMPLETION_PRIOR_MEAN],
    )
    engage = _engagement(
        views, likes, shares, comments, p[P_LIKE_WEIGHT], p[P_SHARE_WEIGHT],
        p[P_COMMENT_WEIGHT], p[P_ENGAGEMENT_PRIOR_MASS], p[P_ENGAGEMENT_PRIOR_VIEWS],
        p[P_ENGAGEMENT_PRIOR_RATE], p[P_ENGAGEMENT_HALF_SATURATION],
    )
    model = _model_score(dl, p[P_DL_NEUTRAL])
    return (
        p[P_W_FRESHNESS] * fresh
        + p[P_W_COMPLETION] * compl
        + p[P_W_ENGAGEMENT] * engage
        + p[P_W_DEEP_LEARNING] * model
    )


@_inline
def _final_score(static: Any, affinity: Any, w_affinity: Any) -> Any:
    return min(static + w_affinity * affinity, _ONE)


@_inline
def _params_tuple(params: Any) -> Any:
    return (
        params[0], params[1], params[2], params[3], params[4], params[5], params[6],
        params[7], params[8], params[9], params[10], params[11], params[12], params[13],
        params[14], params[15], params[16],
    )


@_inline
def _worse(
    score_a: Any, video_a: Any, pos_a: Any, score_b: Any, video_b: Any, pos_b: Any
) -> bool:
    """Whether item a ranks after item b: lower score, then larger video id, then position."""
    if score_a != score_b:
        return bool(score_a < score_b)
    if video_a != video_b:
        return bool(video_a > video_b)
    return bool(pos_a > pos_b)


@_inline
def _sift_down(heap_scores: Any, heap_positions: Any, video_ids: Any, root: Any, size: Any) -> None:
    """Restore the heap (worst item at the root) below ``root`` in the first ``size`` slots."""
    node = root
    score = heap_scores[node]
    pos = heap_positions[node]
    video = video_ids[pos]
    while True:
        child = 2 * node + 1
        if child >= size:
            break
        right = child + 1
        if right < size and _worse(
            heap_scores[right], video_ids[heap_positions[right]], heap_positions[right],
            heap_scores[child], video_ids[heap_positions[child]], heap_positions[child],
        ):
            child = right
        if not _worse(
            heap_scores[child], video_ids[heap_positions[child]], heap_positions[child],
            score, video, pos,
        ):
            break
        heap_scores[node] = heap_scores[child]
        heap_positions[node] = heap_positions[child]
        node = child
    heap_scores[node] = score
    heap_positions[node] = pos


@_inline
def _sift_up(heap_scores: Any, heap_positions: Any, video_ids: Any, node: Any) -> None:
    score = heap_scores[node]
    pos = heap_positions[node]
    video = video_ids[pos]
    while node > 0:
        parent = (node - 1) // 2
        if not _worse(
            score, video, pos,
            heap_scores[parent], video_ids[heap_positions[parent]], heap_positions[parent],
        ):
            break
        heap_scores[node] = heap_scores[parent]
        heap_positions[node] = heap_positions[parent]
        node = parent
    heap_scores[node] = score
    heap_positions[node] = pos


@_inline
def _is_seen(position: Any, video: Any, seen_ids: Any, seen_mask: Any) -> bool:
    if seen_mask.size > 0 and seen_mask[position]:
        return True
    if seen_ids.size == 0:
        return False
    lo = 0
    hi = seen_ids.size
    while lo < hi:
        mid = (lo + hi) >> 1
        if seen_ids[mid] < video:
            lo = mid + 1
        else:
            hi = mid
    return bool(lo < seen_ids.size and seen_ids[lo] == video)


@_serial
def score_kernel(
    features: Any, affinity: Any, creator_index: Any, params: Any, now_hours: float, out: Any
) -> None:
    """Write every candidate's score into ``out``.

    ``affinity`` is None (no affinity), a per-candidate vector (``creator_index`` None) or
    a per-creator table indexed through ``creator_index``.
    """
    p = _params_tuple(params)
    now = np.float32(now_hours)
    w_affinity = p[P_W_AFFINITY]
    published = features[ROW_PUBLISHED_HOURS]
    views = features[ROW_VIEWS]
    completion = features[ROW_COMPLETION]
    likes = features[ROW_LIKES]
    shares = features[ROW_SHARES]
    comments = features[ROW_COMMENTS]
    dl = features[ROW_DL]
    for i in range(np.uint64(out.size)):
        static = _static_score(
            published[i], views[i], completion[i], likes[i], shares[i], comments[i], dl[i],
            now, p,
        )
        if affinity is None:
            a = _ZERO
        elif creator_index is None:
            a = affinity[i]
        else:
            a = affinity[creator_index[i]]
        out[i] = _final_score(static, a, w_affinity)


@_serial
def rank_kernel(
    features: Any,
    video_ids: Any,
    affinity: Any,
    creator_index: Any,
    seen_ids: Any,
    seen_mask: Any,
    params: Any,
    now_hours: float,
    out_positions: Any,
    out_scores: Any,
) -> int:
    """Score, drop seen videos and keep the best ``out_scores.size`` in one pass.

    Candidates are scored in blocks; a block is rescored one by one only when one of
    its scores reaches the current k-th best, so the heap work stays off the common path.
    ``seen_ids`` must be sorted; ``seen_mask`` is empty or one flag per candidate.
    Writes the winners best first and returns how many there are.
    """
    capacity = out_scores.size
    n = video_ids.size
    if capacity == 0 or n == 0:
        return 0
    p = _params_tuple(params)
    now = np.float32(now_hours)
    w_affinity = p[P_W_AFFINITY]
    published = features[ROW_PUBLISHED_HOURS]
    views = features[ROW_VIEWS]
    completion = features[ROW_COMPLETION]
    likes = features[ROW_LIKES]
    shares = features[ROW_SHARES]
    comments = features[ROW_COMMENTS]
    dl = features[ROW_DL]
    size = 0
    threshold = _NO_THRESHOLD
    n_blocks = (np.uint64(n) + _UBLOCK - np.uint64(1)) // _UBLOCK
    for block in range(n_blocks):
        lo = block * _UBLOCK
        hi = min(lo + _UBLOCK, np.uint64(n))
        hit = False
        for i in range(lo, hi):
            static = _static_score(
                published[i], views[i], completion[i], likes[i], shares[i], comments[i],
                dl[i], now, p,
            )
            if affinity is None:
                a = _ZERO
            elif creator_index is None:
                a = affinity[i]
            else:
                a = affinity[creator_index[i]]
            hit |= _final_score(static, a, w_affinity) >= threshold
        if not hit:
            continue
        for i in range(lo, hi):
            static = _static_score(
                published[i], views[i], completion[i], likes[i], shares[i], comments[i],
                dl[i], now, p,
            )
            if affinity is None:
                a = _ZERO
            elif creator_index is None:
                a = affinity[i]
            else:
                a = affinity[creator_index[i]]
            score = _final_score(static, a, w_affinity)
            position = np.int64(i)
            video = video_ids[i]
            if size == capacity:
                root = out_positions[0]
                if not _worse(out_scores[0], video_ids[root], root, score, video, position):
                    continue
            if _is_seen(position, video, seen_ids, seen_mask):
                continue
            if size < capacity:
                out_scores[size] = score
                out_positions[size] = position
                _sift_up(out_scores, out_positions, video_ids, size)
                size += 1
            else:
                out_scores[0] = score
                out_positions[0] = position
                _sift_down(out_scores, out_positions, video_ids, 0, size)
        if size == capacity:
            threshold = out_scores[0] - _THRESHOLD_SLACK
    # Heap sort in place: repeatedly move the worst remaining item to the back.
    for end in range(size - 1, 0, -1):
        worst_score = out_scores[0]
        worst_position = out_positions[0]
        out_scores[0] = out_scores[end]
        out_positions[0] = out_positions[end]
        out_scores[end] = worst_score
        out_positions[end] = worst_position
        _sift_down(out_scores, out_positions, video_ids, 0, end)
    return size


@_serial
def explain_kernel(
    features: Any,
    affinity: Any,
    creator_index: Any,
    params: Any,
    now_hours: float,
    positions: Any,
    out: Any,
) -> None:
    """Write the five weighted signal contributions of each listed candidate into ``out``."""
    p = _params_tuple(params)
    now = np.float32(now_hours)
    for row in range(positions.size):
        i = positions[row]
        views = features[ROW_VIEWS, i]
        fresh = _freshness(features[ROW_PUBLISHED_HOURS, i], now, p[P_INV_HALF_LIFE_HOURS])
        compl = _completion(
            views, features[ROW_COMPLETION, i], p[P_COMPLETION_PRIOR_MASS],
            p[P_COMPLETION_PRIOR_VIEWS], p[P_COMPLETION_PRIOR_MEAN],
        )
        engage = _engagement(
            views, features[ROW_LIKES, i], features[ROW_SHARES, i],
            features[ROW_COMMENTS, i], p[P_LIKE_WEIGHT], p[P_SHARE_WEIGHT],
            p[P_COMMENT_WEIGHT], p[P_ENGAGEMENT_PRIOR_MASS], p[P_ENGAGEMENT_PRIOR_VIEWS],
            p[P_ENGAGEMENT_PRIOR_RATE], p[P_ENGAGEMENT_HALF_SATURATION],
        )
        if affinity is None:
            a = _ZERO
        elif creator_index is None:
            a = affinity[i]
        else:
            a = affinity[creator_index[i]]
        model = _model_score(features[ROW_DL, i], p[P_DL_NEUTRAL])
        out[row, 0] = p[P_W_FRESHNESS] * fresh
        out[row, 1] = p[P_W_COMPLETION] * compl
        out[row, 2] = p[P_W_ENGAGEMENT] * engage
        out[row, 3] = p[P_W_AFFINITY] * a
        out[row, 4] = p[P_W_DEEP_LEARNING] * model


@_parallel
def batch_kernel(static_scores: Any, affinity: Any, w_affinity: Any, out: Any) -> bool:
    """Add each user's affinity term to the shared user-independent scores.

    ``static_scores`` comes from :func:`score_kernel` without affinity. Returns False
    when an affinity value is NaN or outside ``[0, 1]``.
    """
    n_users = affinity.shape[0]
    n = static_scores.size
    w = np.float32(w_affinity)
    bad = 0
    for u in prange(n_users):
        row_bad = False
        for i in range(np.uint64(n)):
            a = affinity[u, i]
            row_bad |= not (a >= _ZERO and a <= _ONE)
            out[u, i] = _final_score(static_scores[i], a, w)
        bad += 1 if row_bad else 0
    return bool(bad == 0)
