"""Compiled scoring kernels: score, rank, explain and batch-score candidates.

Every kernel here is private: it trusts its caller (:mod:`reelrank.scoring._ranker`) to
have checked dtypes, shapes and contiguity, and takes only arrays and scalars. The
feature block and the parameter vector are laid out as :mod:`._layout` says; the rank
kernel keeps its best ``k`` in the shared heap of :mod:`._heap`.

Performance notes that shape the code:

* loops run over unsigned indices, which keeps column loads contiguous instead of
  turning them into gathers;
* ``error_model="numpy"`` (in every preset of :mod:`._presets`) drops the
  division-by-zero check that blocks vectorisation;
* ``2 ** -x`` is built from a short polynomial and the float exponent bits, because
  ``exp`` compiles to a scalar library call that would stop the loop vectorising;
* helpers called per candidate take scalars only (arrays passed to helpers cost
  reference counting on every call); the per-candidate feature reads are a closure
  inside each kernel that reads its arrays directly, which numba inlines; the heap
  helpers, called only for candidates that reach the current k-th best, take the heap
  arrays;
* a creator mapping is applied after a pass without affinity, to the followed creators'
  candidates only (found through creator groups built once per batch): the pass over
  all candidates then reads no creator column and does no lookup;
* every literal is a ``float32`` constant: a Python float literal would promote the
  arithmetic to ``float64`` and break bitwise-equal scores between kernels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange

from ._heap import heap_push, heap_replace, heap_sort_out, ranks_after
from ._layout import (
    P_COMMENT_WEIGHT,
    P_COMPLETION_PRIOR_MASS,
    P_COMPLETION_PRIOR_MEAN,
    P_COMPLETION_PRIOR_VIEWS,
    P_DL_NEUTRAL,
    P_ENGAGEMENT_HALF_SATURATION,
    P_ENGAGEMENT_PRIOR_MASS,
    P_ENGAGEMENT_PRIOR_RATE,
    P_ENGAGEMENT_PRIOR_VIEWS,
    P_INV_HALF_LIFE_HOURS,
    P_LIKE_WEIGHT,
    P_SHARE_WEIGHT,
    P_W_AFFINITY,
    P_W_COMPLETION,
    P_W_DEEP_LEARNING,
    P_W_ENGAGEMENT,
    P_W_FRESHNESS,
    ROW_COMMENTS,
    ROW_COMPLETION,
    ROW_DL,
    ROW_LIKES,
    ROW_PUBLISHED_HOURS,
    ROW_SHARES,
    ROW_VIEWS,
)
from ._presets import inline_helper, parallel_kernel, serial_kernel

__all__ = [
    "BLOCK",
    "DENSE_AFFINITY_SHARE",
    "INVALID_AFFINITY",
    "PARALLEL_MIN_SCORES",
    "SEEN_IDS_UNSORTED",
    "SORT_SEEN_IN_KERNEL_MAX",
    "batch_kernel",
    "batch_kernel_serial",
    "explain_kernel",
    "in_unit_interval_kernel",
    "rank_kernel",
    "score_kernel",
]

PARALLEL_MIN_SCORES = 1_000_000
"""Below this many scores a batch runs on the calling thread: starting threads would cost
more than they save."""

BLOCK = 64
"""Candidates scored together and checked against the top-k threshold before any of them
is offered to the heap (64 measured fastest with a per-creator affinity table)."""

INVALID_AFFINITY = -1
"""Returned by :func:`rank_kernel` when an affinity value is NaN or outside ``[0, 1]``."""

SEEN_IDS_UNSORTED = -2
"""Returned by :func:`rank_kernel`, before any work, when more than
:data:`SORT_SEEN_IN_KERNEL_MAX` seen ids arrive unsorted: NumPy sorts large arrays
several times faster than a compiled sort, so the caller sorts them and calls again."""

SORT_SEEN_IN_KERNEL_MAX = 64
"""Up to this many unsorted seen ids are sorted inside the rank kernel (by insertion,
which beats a general sort at this size)."""

DENSE_AFFINITY_SHARE = 64
"""The rank kernel applies a creator mapping in its main pass, as one affinity per
candidate, when at least one candidate in this many has a followed creator; with fewer,
rescoring just those candidates after a pass without affinity costs less."""

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

_NO_THRESHOLD = np.float32(-1.0)


# View totals below float32's normal range count as no views: dividing by a subnormal
# overflows under fast-math reciprocals, and such fractions of a view carry no signal.
_SMALLEST_NORMAL = np.float32(np.finfo(np.float32).tiny)


# Many float32 ulps of a score in [0, 1]: see the second pass of rank_kernel.
_KEPT_MARGIN = np.float32(1e-6)

_EXPONENT_BIAS = np.int32(127)

_MANTISSA_BITS = np.int32(23)

_UBLOCK = np.uint64(BLOCK)


@inline_helper
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


@inline_helper
def _completion(
    views: Any, completion: Any, prior_mass: Any, prior_views: Any, prior_mean: Any
) -> Any:
    total = views + prior_views
    has_mass = total >= _SMALLEST_NORMAL
    value = (completion + prior_mass) / (total if has_mass else _ONE)
    return min(value, _ONE) if has_mass else prior_mean


@inline_helper
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
    has_mass = total >= _SMALLEST_NORMAL
    rate = (weighted + prior_mass) / (total if has_mass else _ONE)
    rate = rate if has_mass else prior_rate
    return rate / (rate + half_saturation)


@inline_helper
def _model_score(dl: Any, neutral: Any) -> Any:
    # NaN marks a missing score; the comparison is false only for NaN.
    return dl if dl == dl else neutral


@inline_helper
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
        views,
        completion,
        p[P_COMPLETION_PRIOR_MASS],
        p[P_COMPLETION_PRIOR_VIEWS],
        p[P_COMPLETION_PRIOR_MEAN],
    )
    engage = _engagement(
        views,
        likes,
        shares,
        comments,
        p[P_LIKE_WEIGHT],
        p[P_SHARE_WEIGHT],
        p[P_COMMENT_WEIGHT],
        p[P_ENGAGEMENT_PRIOR_MASS],
        p[P_ENGAGEMENT_PRIOR_VIEWS],
        p[P_ENGAGEMENT_PRIOR_RATE],
        p[P_ENGAGEMENT_HALF_SATURATION],
    )
    model = _model_score(dl, p[P_DL_NEUTRAL])
    return (
        p[P_W_FRESHNESS] * fresh
        + p[P_W_COMPLETION] * compl
        + p[P_W_ENGAGEMENT] * engage
        + p[P_W_DEEP_LEARNING] * model
    )


@inline_helper
def _final_score(static: Any, affinity: Any, w_affinity: Any) -> Any:
    return min(static + w_affinity * affinity, _ONE)


@inline_helper
def _unit_interval(value: Any) -> Any:
    # False for NaN too.
    return value >= 0.0 and value <= 1.0


@inline_helper
def _creator_slot(creators: Any, creator: Any) -> Any:
    """Index of ``creator`` in the sorted ``creators``, or -1."""
    n_creators = creators.size
    lo = 0
    hi = n_creators
    while lo < hi:
        mid = (lo + hi) >> 1
        if creators[mid] < creator:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < n_creators and creators[lo] == creator else -1


@inline_helper
def _mapping_plan(affinity: Any, keys: Any, creators: Any, creator_groups: Any, n: Any) -> Any:
    """How a creator mapping is applied: ``(valid, slots, dense, dense_affinity)``.

    ``slots`` holds each key's creator index (-1 when no candidate has that creator);
    ``dense`` says whether enough candidates are followed to give every candidate its
    affinity up front (``dense_affinity``) rather than rescore the followed ones after a
    pass without affinity. ``valid`` is False when a value is NaN or outside ``[0, 1]``.
    """
    n_creators = creators.size
    slots = np.empty(keys.size, dtype=np.int64)
    dense_affinity = np.empty(0, dtype=np.float32)
    followed = 0
    for j in range(keys.size):
        if not _unit_interval(affinity[j]):
            return False, slots, False, dense_affinity
        slot = _creator_slot(creators, keys[j])
        slots[j] = slot
        if slot >= 0:
            followed += creator_groups[slot + 1] - creator_groups[slot]
    dense = followed * DENSE_AFFINITY_SHARE >= n
    if dense:
        dense_affinity = np.zeros(n, dtype=np.float32)
        for j in range(keys.size):
            slot = slots[j]
            if slot >= 0:
                start = n_creators + 1 + creator_groups[slot]
                stop = n_creators + 1 + creator_groups[slot + 1]
                for t in range(start, stop):
                    dense_affinity[creator_groups[t]] = np.float32(affinity[j])
    return True, slots, dense, dense_affinity


@inline_helper
def _params_tuple(params: Any) -> Any:
    return (
        params[0],
        params[1],
        params[2],
        params[3],
        params[4],
        params[5],
        params[6],
        params[7],
        params[8],
        params[9],
        params[10],
        params[11],
        params[12],
        params[13],
        params[14],
        params[15],
        params[16],
    )


@serial_kernel
def score_kernel(
    features: Any,
    affinity: Any,
    affinity_keys: Any,
    creators: Any,
    creator_groups: Any,
    params: Any,
    now_hours: float,
    out: Any,
) -> bool:
    """Write every candidate's score into ``out``.

    ``affinity`` is None (no affinity), a per-candidate ``float32`` vector
    (``affinity_keys`` None) or the values of a creator mapping whose keys are
    ``affinity_keys``. A mapping is applied through the candidates' creator groups: the
    sorted distinct ``creators`` and ``creator_groups``, which holds ``len(creators) + 1``
    group offsets followed by the candidate positions of each creator, group by group.
    The mapping is applied as :func:`rank_kernel` applies it (before or after the pass
    over all candidates), so both give bitwise-equal scores. Returns False when a mapping
    value is NaN or outside ``[0, 1]``.
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

    def static_at(i: Any) -> Any:
        return _static_score(
            published[i],
            views[i],
            completion[i],
            likes[i],
            shares[i],
            comments[i],
            dl[i],
            now,
            p,
        )

    n = out.size
    slots = np.empty(0, dtype=np.int64)
    dense = False
    dense_affinity = np.empty(0, dtype=np.float32)
    if affinity_keys is not None:
        valid, slots, dense, dense_affinity = _mapping_plan(
            affinity, affinity_keys, creators, creator_groups, n
        )
        if not valid:
            return False
    # The same blocks and loops as rank_kernel, so the compiler makes the same choices
    # (vectorised or not, fused multiply-adds) and the scores agree bit for bit.
    n_blocks = (np.uint64(n) + _UBLOCK - np.uint64(1)) // _UBLOCK
    for block in range(n_blocks):
        lo = block * _UBLOCK
        width = min(_UBLOCK, np.uint64(n) - lo)
        if affinity is not None and affinity_keys is None:
            for j in range(width):
                out[lo + j] = _final_score(static_at(lo + j), affinity[lo + j], w_affinity)
        elif dense:
            for j in range(width):
                out[lo + j] = _final_score(static_at(lo + j), dense_affinity[lo + j], w_affinity)
        else:
            for j in range(width):
                out[lo + j] = _final_score(static_at(lo + j), _ZERO, w_affinity)
    if affinity_keys is not None and not dense:
        n_creators = creators.size
        for j in range(affinity_keys.size):
            value = np.float32(affinity[j])
            slot = slots[j]
            if slot < 0 or value == _ZERO:
                continue
            start = n_creators + 1 + creator_groups[slot]
            stop = n_creators + 1 + creator_groups[slot + 1]
            for t in range(start, stop):
                position = creator_groups[t]
                out[position] = _final_score(static_at(position), value, w_affinity)
    return True


@serial_kernel
def rank_kernel(
    features: Any,
    video_ids: Any,
    affinity: Any,
    affinity_keys: Any,
    creators: Any,
    creator_groups: Any,
    seen_ids: Any,
    seen_mask: Any,
    params: Any,
    now_hours: float,
    out_positions: Any,
    out_scores: Any,
) -> int:
    """Score, drop seen videos and keep the best ``out_scores.size``.

    Affinity arguments are as for :func:`score_kernel`. Candidates are scored a block at
    a time into a small buffer; only when some score in the block reaches the current
    k-th best are the block's scores walked one by one against the heap, so the heap work
    stays off the common path. A creator mapping that covers few candidates (see
    :data:`DENSE_AFFINITY_SHARE`) is applied after that pass, which then scores every
    candidate without affinity and reads no creator column: the followed creators'
    candidates are offered again with their affinity, and one already kept moves up in
    place. Affinity never lowers a score, so no candidate of the true top k can have been
    dropped by the first pass. The heap lives in the output arrays with the worst
    kept item at the root. ``seen_ids`` may come in any order (sorted saves a sort);
    ``seen_mask`` is empty or one flag per candidate. Writes the winners best first and
    returns how many there are, or :data:`INVALID_AFFINITY` or :data:`SEEN_IDS_UNSORTED`.
    """
    n_seen_ids = seen_ids.size
    unsorted = False
    for i in range(1, n_seen_ids):
        unsorted |= seen_ids[i] < seen_ids[i - 1]
    if unsorted and n_seen_ids > SORT_SEEN_IN_KERNEL_MAX:
        return SEEN_IDS_UNSORTED
    seen = seen_ids
    if unsorted:
        # Insertion sort into a copy: for a few dozen ids several times faster than
        # numba's general sort.
        seen = np.empty(n_seen_ids, dtype=seen_ids.dtype)
        for i in range(n_seen_ids):
            video = seen_ids[i]
            j = i
            while j > 0 and seen[j - 1] > video:
                seen[j] = seen[j - 1]
                j -= 1
            seen[j] = video
    capacity = out_scores.size
    n = video_ids.size
    slots = np.empty(0, dtype=np.int64)
    dense = False
    dense_affinity = np.empty(0, dtype=np.float32)
    if affinity_keys is not None:
        valid, slots, dense, dense_affinity = _mapping_plan(
            affinity, affinity_keys, creators, creator_groups, n
        )
        if not valid:
            return INVALID_AFFINITY
    if capacity == 0 or n == 0:
        return 0
    heap_scores = out_scores
    heap_positions = out_positions
    use_mask = seen_mask.size > 0

    # Inner functions are inlined by numba and read the arrays of the enclosing scope,
    # which avoids per-call reference counting on array arguments.
    def is_seen(position: Any) -> Any:
        if use_mask:
            return seen_mask[position]
        if n_seen_ids == 0:
            return False
        video = video_ids[position]
        lo = 0
        hi = n_seen_ids
        while lo < hi:
            mid = (lo + hi) >> 1
            if seen[mid] < video:
                lo = mid + 1
            else:
                hi = mid
        return lo < n_seen_ids and seen[lo] == video

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

    def static_at(i: Any) -> Any:
        return _static_score(
            published[i],
            views[i],
            completion[i],
            likes[i],
            shares[i],
            comments[i],
            dl[i],
            now,
            p,
        )

    block_scores = np.empty(BLOCK, dtype=np.float32)
    size = 0
    threshold = _NO_THRESHOLD
    n_blocks = (np.uint64(n) + _UBLOCK - np.uint64(1)) // _UBLOCK
    for block in range(n_blocks):
        lo = block * _UBLOCK
        width = min(_UBLOCK, np.uint64(n) - lo)
        if affinity is not None and affinity_keys is None:
            for j in range(width):
                block_scores[j] = _final_score(static_at(lo + j), affinity[lo + j], w_affinity)
        elif dense:
            for j in range(width):
                block_scores[j] = _final_score(
                    static_at(lo + j), dense_affinity[lo + j], w_affinity
                )
        else:
            for j in range(width):
                block_scores[j] = _final_score(static_at(lo + j), _ZERO, w_affinity)
        hit = False
        for j in range(width):
            hit |= block_scores[j] >= threshold
        if not hit:
            continue
        for j in range(width):
            score = block_scores[j]
            if score < threshold:
                continue
            position = np.int64(lo + j)
            if size == capacity:
                if not ranks_after(video_ids, heap_scores[0], heap_positions[0], score, position):
                    continue
                if is_seen(position):
                    continue
                heap_replace(video_ids, heap_scores, heap_positions, size, 0, score, position)
                threshold = heap_scores[0]
                continue
            if is_seen(position):
                continue
            heap_push(video_ids, heap_scores, heap_positions, size, score, position)
            size += 1
            if size == capacity:
                threshold = heap_scores[0]
    if affinity_keys is not None and not dense:
        n_creators = creators.size
        for j in range(affinity_keys.size):
            value = np.float32(affinity[j])
            slot = slots[j]
            if slot < 0 or value == _ZERO:
                continue  # a zero affinity leaves the first pass's score as it is
            start = n_creators + 1 + creator_groups[slot]
            stop = n_creators + 1 + creator_groups[slot + 1]
            for t in range(start, stop):
                position = creator_groups[t]
                score = _final_score(static_at(position), value, w_affinity)
                # A kept item's first-pass score is at least the worst kept one, and this
                # score is at least its first-pass score (give or take rounding, which the
                # margin covers): below the worst kept, it was not kept and cannot enter.
                if size == capacity and score + _KEPT_MARGIN < heap_scores[0]:
                    continue
                kept = -1
                for h in range(size):
                    if heap_positions[h] == position:
                        kept = h
                        break
                if kept >= 0:
                    heap_replace(
                        video_ids, heap_scores, heap_positions, size, kept, score, position
                    )
                elif size == capacity:
                    if not ranks_after(
                        video_ids, heap_scores[0], heap_positions[0], score, position
                    ):
                        continue
                    if is_seen(position):
                        continue
                    heap_replace(video_ids, heap_scores, heap_positions, size, 0, score, position)
                else:
                    if is_seen(position):
                        continue
                    heap_push(video_ids, heap_scores, heap_positions, size, score, position)
                    size += 1
    heap_sort_out(video_ids, heap_scores, heap_positions, size)
    return size


@serial_kernel
def explain_kernel(
    features: Any,
    affinity: Any,
    affinity_keys: Any,
    creators: Any,
    creator_ids: Any,
    params: Any,
    now_hours: float,
    positions: Any,
    out: Any,
) -> bool:
    """Write the five weighted signal contributions of each listed candidate into ``out``.

    ``affinity`` is None, one value per candidate (``affinity_keys`` None) or the values
    of a creator mapping whose keys are ``affinity_keys``, looked up through each
    candidate's ``creator_ids`` entry and the sorted distinct ``creators``. Returns False
    when a mapping value is NaN or outside ``[0, 1]``.
    """
    p = _params_tuple(params)
    now = np.float32(now_hours)
    table = np.empty(0, dtype=np.float32)
    if affinity_keys is not None:
        table = np.zeros(creators.size, dtype=np.float32)
        for j in range(affinity.size):
            if not _unit_interval(affinity[j]):
                return False
            slot = _creator_slot(creators, affinity_keys[j])
            if slot >= 0:
                table[slot] = np.float32(affinity[j])
    for row in range(positions.size):
        i = positions[row]
        views = features[ROW_VIEWS, i]
        fresh = _freshness(features[ROW_PUBLISHED_HOURS, i], now, p[P_INV_HALF_LIFE_HOURS])
        compl = _completion(
            views,
            features[ROW_COMPLETION, i],
            p[P_COMPLETION_PRIOR_MASS],
            p[P_COMPLETION_PRIOR_VIEWS],
            p[P_COMPLETION_PRIOR_MEAN],
        )
        engage = _engagement(
            views,
            features[ROW_LIKES, i],
            features[ROW_SHARES, i],
            features[ROW_COMMENTS, i],
            p[P_LIKE_WEIGHT],
            p[P_SHARE_WEIGHT],
            p[P_COMMENT_WEIGHT],
            p[P_ENGAGEMENT_PRIOR_MASS],
            p[P_ENGAGEMENT_PRIOR_VIEWS],
            p[P_ENGAGEMENT_PRIOR_RATE],
            p[P_ENGAGEMENT_HALF_SATURATION],
        )
        a = _ZERO
        if affinity_keys is not None:
            a = table[_creator_slot(creators, creator_ids[i])]
        elif affinity is not None:
            a = affinity[i]
        model = _model_score(features[ROW_DL, i], p[P_DL_NEUTRAL])
        out[row, 0] = p[P_W_FRESHNESS] * fresh
        out[row, 1] = p[P_W_COMPLETION] * compl
        out[row, 2] = p[P_W_ENGAGEMENT] * engage
        out[row, 3] = p[P_W_AFFINITY] * a
        out[row, 4] = p[P_W_DEEP_LEARNING] * model
    return True


@inline_helper
def _add_user_affinity(static_scores: Any, user_affinity: Any, w: Any, user_scores: Any) -> bool:
    """One user's scores from the shared part; False if an affinity is outside ``[0, 1]``."""
    bad = False
    for i in range(np.uint64(static_scores.size)):
        a = user_affinity[i]
        bad |= not (a >= _ZERO and a <= _ONE)
        user_scores[i] = _final_score(static_scores[i], a, w)
    return not bad


@parallel_kernel
def batch_kernel(static_scores: Any, affinity: Any, w_affinity: Any, out: Any) -> bool:
    """Add each user's affinity term to the shared user-independent scores, users in parallel.

    ``static_scores`` comes from :func:`score_kernel` without affinity. Returns False
    when an affinity value is NaN or outside ``[0, 1]``.
    """
    w = np.float32(w_affinity)
    bad = 0
    for u in prange(affinity.shape[0]):
        bad += 0 if _add_user_affinity(static_scores, affinity[u], w, out[u]) else 1
    return bool(bad == 0)


@serial_kernel
def batch_kernel_serial(static_scores: Any, affinity: Any, w_affinity: Any, out: Any) -> bool:
    """:func:`batch_kernel` on the calling thread, for batches too small to share out."""
    w = np.float32(w_affinity)
    valid = True
    for u in range(affinity.shape[0]):
        valid &= _add_user_affinity(static_scores, affinity[u], w, out[u])
    return valid


@serial_kernel
def in_unit_interval_kernel(values: Any) -> bool:
    """Whether every value lies in ``[0, 1]`` (NaN does not)."""
    bad = False
    for i in range(np.uint64(values.size)):
        value = values[i]
        bad |= not (value >= _ZERO and value <= _ONE)
    return not bad
