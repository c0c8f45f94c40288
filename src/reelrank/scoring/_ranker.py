"""The ranker: :class:`Ranker` scores, filters and ranks :class:`Candidates` into a Ranking.

These typed wrappers validate every input before it reaches the compiled kernels in
:mod:`reelrank._kernels`, which trust their arguments.
"""

from __future__ import annotations

import math
import operator
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from .._kernels import _layout as layout
from .._kernels import _rank as kernels
from ..exceptions import InvalidInputError
from ._candidates import _INT64_MAX, _SECONDS_PER_HOUR, Candidates
from ._config import RankingConfig

__all__ = ["Ranker", "Ranking"]


# dtype objects passed positionally: a dtype class or keyword costs NumPy a conversion
# that is a sizeable share of a call of a few microseconds.
_INT64 = np.dtype(np.int64)

_FLOAT32 = np.dtype(np.float32)

_FLOAT64 = np.dtype(np.float64)


_FLOAT32_TINY = float(np.finfo(np.float32).tiny)

_EMPTY_IDS = np.empty(0, dtype=np.int64)

_EMPTY_MASK = np.empty(0, dtype=np.bool_)

Now = float | datetime | None

Affinity = Mapping[int, float] | npt.NDArray[Any] | None

Seen = Collection[int] | npt.NDArray[Any] | None


@dataclass(frozen=True, slots=True, eq=False)
class Ranking:
    """The result of one :meth:`Ranker.rank` call, best first."""

    video_ids: npt.NDArray[np.int64]
    """Video ids of the ranked items, ``int64`` of shape ``(k,)``."""
    scores: npt.NDArray[np.float32]
    """Their scores, ``float32`` of shape ``(k,)``, non-increasing."""
    positions: npt.NDArray[np.int64]
    """Their indices into the :class:`Candidates`, ``int64`` of shape ``(k,)``."""
    contributions: npt.NDArray[np.float32] | None = None
    """Weighted per-signal contributions, ``float32`` of shape ``(k, 5)`` in
    :data:`~reelrank.WEIGHT_FIELDS` order (rows sum to :attr:`scores`); only set when
    the ranking was requested with ``explain=True``."""

    def __len__(self) -> int:
        return int(self.video_ids.shape[0])


# Ranking's slot setters: Ranker.rank fills a new Ranking through them, which skips the
# frozen dataclass's __init__ and costs a third as much on a call of a few microseconds.
_SET_RANKING_FIELDS = tuple(
    vars(Ranking)[name].__set__ for name in ("video_ids", "scores", "positions", "contributions")
)


def _new_ranking(
    video_ids: npt.NDArray[np.int64],
    scores: npt.NDArray[np.float32],
    positions: npt.NDArray[np.int64],
    contributions: npt.NDArray[np.float32] | None,
) -> Ranking:
    ranking = object.__new__(Ranking)
    set_video_ids, set_scores, set_positions, set_contributions = _SET_RANKING_FIELDS
    set_video_ids(ranking, video_ids)
    set_scores(ranking, scores)
    set_positions(ranking, positions)
    set_contributions(ranking, contributions)
    return ranking


def _now_seconds(now: Now) -> float:
    if now is None:
        return time.time()
    if type(now) is float and math.isfinite(now):  # the common case, checked cheaply
        return now
    if isinstance(now, datetime):
        if now.tzinfo is None or now.utcoffset() is None:
            raise InvalidInputError("now", "datetime must be timezone-aware")
        return now.timestamp()
    if isinstance(now, bool) or not isinstance(now, int | float | np.integer | np.floating):
        raise InvalidInputError("now", f"expected epoch seconds or a datetime, got {now!r}")
    value = float(now)
    if not math.isfinite(value):
        raise InvalidInputError("now", "must be finite")
    return value


AffinityArgs = tuple[npt.NDArray[Any] | None, npt.NDArray[np.int64] | None]
"""``(values, keys)``: values per candidate (keys None) or a mapping's values and keys."""

_NO_AFFINITY: AffinityArgs = (None, None)

_BAD_AFFINITY = "values must lie in [0, 1]"


def _affinity_inputs(candidates: Candidates, affinity: Affinity) -> AffinityArgs:
    """Turn ``affinity`` into the kernels' ``(values, keys)``.

    A mapping's values are range-checked by the kernels themselves; the caller raises
    when a kernel reports a bad value.
    """
    if affinity is None:
        return _NO_AFFINITY
    if type(affinity) is not dict:
        if isinstance(affinity, np.ndarray):
            return _affinity_array(candidates, affinity), None
        if not isinstance(affinity, Mapping):
            raise InvalidInputError(
                "affinity", "expected a mapping creator_id -> value or an array"
            )
    count = len(affinity)
    if count == 0:
        return _NO_AFFINITY  # every creator at 0: the same scores as no affinity
    try:
        keys = np.fromiter(affinity.keys(), _INT64, count)
        values = np.fromiter(affinity.values(), _FLOAT64, count)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInputError("affinity", f"keys must be ints and values floats: {exc}") from exc
    return values, keys


def _affinity_array(candidates: Candidates, affinity: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    if affinity.ndim != 1 or affinity.shape[0] != len(candidates):
        raise InvalidInputError(
            "affinity", f"expected shape ({len(candidates)},), got {affinity.shape}"
        )
    if affinity.dtype.kind not in "iuf":
        raise InvalidInputError("affinity", f"must be numeric, got dtype {affinity.dtype}")
    values = np.ascontiguousarray(affinity, dtype=np.float32)
    if not kernels.in_unit_interval_kernel(values):
        raise InvalidInputError("affinity", _BAD_AFFINITY)
    return values


def _groups_for(
    candidates: Candidates, keys: npt.NDArray[np.int64] | None
) -> tuple[npt.NDArray[np.int64] | None, npt.NDArray[np.int64] | None]:
    return (None, None) if keys is None else candidates._creator_lookup()


def _seen_inputs(
    candidates: Candidates, seen: Seen
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Turn ``seen`` into ``(ids, mask)`` for the rank kernel; the unused one is empty.

    Both forms reach the kernel with the same argument types (the unused one an empty
    writeable array), so :func:`warmup` compiles both with one call.

    Ids may stay unsorted: the kernel sorts a short list itself and asks for a long
    unsorted one to be sorted (see :meth:`Ranker.rank`). Duplicate ids are harmless to its
    binary search, so they are not removed. A writeable ``int64`` array is used as it is;
    anything else is copied, so the kernel always sees the array types :func:`warmup`
    compiled.
    """
    if seen is None:
        return _EMPTY_IDS, _EMPTY_MASK
    if isinstance(seen, np.ndarray):
        flags = seen.flags
        if seen.dtype is _INT64 and seen.ndim == 1 and flags.c_contiguous and flags.writeable:
            return seen, _EMPTY_MASK
        if seen.ndim != 1:
            raise InvalidInputError("seen", f"must be one-dimensional, got {seen.ndim} dimensions")
        if seen.dtype == np.bool_:
            if seen.shape[0] != len(candidates):
                raise InvalidInputError(
                    "seen", f"a mask needs {len(candidates)} flags, got {seen.shape[0]}"
                )
            # A writeable copy of a read-only mask: the kernel is compiled for writeable arrays.
            return _EMPTY_IDS, seen if flags.c_contiguous and flags.writeable else seen.copy()
        if seen.dtype.kind not in "iu" and seen.size:
            raise InvalidInputError("seen", f"ids must be integers, got dtype {seen.dtype}")
        if seen.dtype.kind == "u" and seen.size and seen.max() > _INT64_MAX:
            raise InvalidInputError("seen", "ids must fit in int64")
        return np.array(seen, dtype=np.int64, order="C"), _EMPTY_MASK
    try:
        ids = np.fromiter(seen, _INT64, len(seen))
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInputError("seen", f"expected integer video ids: {exc}") from exc
    if ids.size > kernels.SORT_SEEN_IN_KERNEL_MAX:
        ids.sort()  # our own copy: sort it in place rather than have the kernel ask
    return ids, _EMPTY_MASK


def _params(config: RankingConfig) -> npt.NDArray[np.float32]:
    # Pseudo-view counts too small for float32 would turn into imprecise subnormals; as
    # zero they give the same result (with no views, the prior mean or rate itself).
    completion_views = config.completion_prior_views
    if completion_views < _FLOAT32_TINY:
        completion_views = 0.0
    engagement_views = config.engagement_prior_views
    if engagement_views < _FLOAT32_TINY:
        engagement_views = 0.0
    params = np.empty(layout.N_PARAMS, dtype=np.float32)
    params[layout.P_W_FRESHNESS] = config.freshness
    params[layout.P_W_COMPLETION] = config.completion
    params[layout.P_W_ENGAGEMENT] = config.engagement
    params[layout.P_W_AFFINITY] = config.affinity
    params[layout.P_W_DEEP_LEARNING] = config.deep_learning
    params[layout.P_INV_HALF_LIFE_HOURS] = 1.0 / config.freshness_half_life_hours
    params[layout.P_COMPLETION_PRIOR_MASS] = config.completion_prior_mean * completion_views
    params[layout.P_COMPLETION_PRIOR_VIEWS] = completion_views
    params[layout.P_COMPLETION_PRIOR_MEAN] = config.completion_prior_mean
    params[layout.P_LIKE_WEIGHT] = config.like_weight
    params[layout.P_SHARE_WEIGHT] = config.share_weight
    params[layout.P_COMMENT_WEIGHT] = config.comment_weight
    params[layout.P_ENGAGEMENT_PRIOR_MASS] = config.engagement_prior_rate * engagement_views
    params[layout.P_ENGAGEMENT_PRIOR_VIEWS] = engagement_views
    params[layout.P_ENGAGEMENT_PRIOR_RATE] = config.engagement_prior_rate
    params[layout.P_ENGAGEMENT_HALF_SATURATION] = config.engagement_half_saturation
    params[layout.P_DL_NEUTRAL] = config.dl_neutral_score
    params.flags.writeable = False
    return params


def _check_candidates(candidates: object) -> Candidates:
    if type(candidates) is Candidates:
        return candidates
    if not isinstance(candidates, Candidates):
        raise InvalidInputError("candidates", "expected a Candidates instance")
    return candidates


def _check_k(k: Any) -> int:
    if type(k) is int and k >= 0:  # the common case, checked cheaply
        return k
    try:
        limit = operator.index(k)
    except TypeError as exc:
        raise InvalidInputError("k", f"must be an integer, got {k!r}") from exc
    if isinstance(k, bool) or limit < 0:
        raise InvalidInputError("k", f"must be a non-negative integer, got {k!r}")
    return limit


class Ranker:
    """Scores and ranks :class:`Candidates` with one :class:`~reelrank.RankingConfig`.

    A ranker holds no per-request state and can be shared between threads; the
    kernels release the GIL.
    """

    __slots__ = ("_config", "_params")

    def __init__(self, config: RankingConfig | None = None) -> None:
        self._config = RankingConfig() if config is None else config
        self._params = _params(self._config)

    @property
    def config(self) -> RankingConfig:
        """The configuration this ranker scores with."""
        return self._config

    def __repr__(self) -> str:
        return f"Ranker({self._config!r})"

    def rank(
        self,
        candidates: Candidates,
        *,
        k: int,
        now: Now = None,
        affinity: Affinity = None,
        seen: Seen = None,
        explain: bool = False,
    ) -> Ranking:
        """Return the ``k`` best unseen candidates, best first.

        Scoring, the seen filter and the top-k selection run in one pass over the
        candidates without sorting them. Ties are broken by video id, smallest first.

        Args:
            candidates: the candidates to rank.
            k: how many to return at most (fewer when fewer remain unseen).
            now: the ranking time, epoch seconds or a timezone-aware datetime;
                defaults to the current time.
            affinity: a mapping ``creator_id -> affinity in [0, 1]`` (creators not in it
                count as 0) or one affinity per candidate.
            seen: video ids to leave out, or a boolean mask over the candidates.
            explain: also compute each returned item's per-signal contributions.

        Raises:
            InvalidInputError: naming ``k``, ``now``, ``affinity``, ``seen`` or
                ``candidates`` when that argument is invalid.
        """
        # The common argument forms are accepted inline: at a hundred candidates a call
        # takes a few microseconds, and each helper call adds a noticeable share.
        cands = candidates if type(candidates) is Candidates else _check_candidates(candidates)
        limit = k if type(k) is int and k >= 0 else _check_k(k)
        now_seconds = now if type(now) is float and math.isfinite(now) else _now_seconds(now)
        now_hours = (now_seconds - cands._epoch) / _SECONDS_PER_HOUR
        values, keys = _affinity_inputs(cands, affinity)
        creators, groups = (None, None) if keys is None else cands._creator_lookup()
        seen_ids, seen_mask = _seen_inputs(cands, seen)
        video_ids = cands._video_ids
        n = video_ids.shape[0]
        capacity = limit if limit < n else n
        positions = np.empty(capacity, _INT64)
        scores = np.empty(capacity, _FLOAT32)
        params = self._params
        count = kernels.rank_kernel(
            cands._features,
            video_ids,
            values,
            keys,
            creators,
            groups,
            seen_ids,
            seen_mask,
            params,
            now_hours,
            positions,
            scores,
        )
        if count == kernels.SEEN_IDS_UNSORTED:
            seen_ids = np.sort(seen_ids)
            count = kernels.rank_kernel(
                cands._features,
                video_ids,
                values,
                keys,
                creators,
                groups,
                seen_ids,
                seen_mask,
                params,
                now_hours,
                positions,
                scores,
            )
        if count == kernels.INVALID_AFFINITY:
            raise InvalidInputError("affinity", _BAD_AFFINITY)
        if count < capacity:
            positions = positions[:count]
            scores = scores[:count]
        contributions = None
        if explain:
            contributions = np.empty((count, 5), dtype=np.float32)
            kernels.explain_kernel(
                cands._features,
                values,
                keys,
                creators,
                cands._creator_ids,
                params,
                now_hours,
                positions,
                contributions,
            )
        return _new_ranking(video_ids[positions], scores, positions, contributions)

    def score(
        self, candidates: Candidates, *, now: Now = None, affinity: Affinity = None
    ) -> npt.NDArray[np.float32]:
        """Return every candidate's score, ``float32`` of shape ``(n,)``.

        Arguments are as for :meth:`rank`.
        """
        cands = _check_candidates(candidates)
        now_hours = (_now_seconds(now) - cands._epoch) / _SECONDS_PER_HOUR
        values, keys = _affinity_inputs(cands, affinity)
        creators, groups = _groups_for(cands, keys)
        out = np.empty(len(cands), dtype=np.float32)
        if not kernels.score_kernel(
            cands._features, values, keys, creators, groups, self._params, now_hours, out
        ):
            raise InvalidInputError("affinity", _BAD_AFFINITY)
        return out

    def explain(
        self, candidates: Candidates, *, now: Now = None, affinity: Affinity = None
    ) -> npt.NDArray[np.float32]:
        """Return every candidate's weighted signal contributions, ``float32`` ``(n, 5)``.

        Columns follow :data:`~reelrank.WEIGHT_FIELDS`; each row sums to the score
        (up to float32 rounding). Arguments are as for :meth:`rank`.
        """
        cands = _check_candidates(candidates)
        now_hours = (_now_seconds(now) - cands._epoch) / _SECONDS_PER_HOUR
        values, keys = _affinity_inputs(cands, affinity)
        creators, _ = _groups_for(cands, keys)
        out = np.empty((len(cands), 5), dtype=np.float32)
        positions = np.arange(len(cands), dtype=np.int64)
        if not kernels.explain_kernel(
            cands._features,
            values,
            keys,
            creators,
            cands._creator_ids,
            self._params,
            now_hours,
            positions,
            out,
        ):
            raise InvalidInputError("affinity", _BAD_AFFINITY)
        return out

    def score_batch(
        self, candidates: Candidates, affinity: npt.NDArray[Any], *, now: Now = None
    ) -> npt.NDArray[np.float32]:
        """Score the same candidates for many users at once.

        Args:
            candidates: the candidates, shared by every user.
            affinity: ``(users, n)`` affinities in ``[0, 1]``, one row per user.
            now: as for :meth:`rank`.

        Returns:
            ``float32`` scores of shape ``(users, n)``. The user-independent part of the
            score is computed once; users are scored in parallel on numba's threads,
            except in batches of fewer than a million scores, where starting threads would
            cost more than it saves.
        """
        cands = _check_candidates(candidates)
        if not isinstance(affinity, np.ndarray) or affinity.ndim != 2:
            raise InvalidInputError("affinity", "expected a two-dimensional array (users, n)")
        if affinity.shape[1] != len(cands):
            raise InvalidInputError(
                "affinity", f"expected {len(cands)} columns, got {affinity.shape[1]}"
            )
        if affinity.dtype.kind not in "iuf":
            raise InvalidInputError("affinity", f"must be numeric, got dtype {affinity.dtype}")
        values = np.ascontiguousarray(affinity, dtype=np.float32)
        now_hours = (_now_seconds(now) - cands._epoch) / _SECONDS_PER_HOUR
        static = np.empty(len(cands), dtype=np.float32)
        kernels.score_kernel(
            cands._features, None, None, None, None, self._params, now_hours, static
        )
        out = np.empty(values.shape, dtype=np.float32)
        batch = (
            kernels.batch_kernel
            if values.size >= kernels.PARALLEL_MIN_SCORES
            else kernels.batch_kernel_serial
        )
        if not batch(static, values, self._params[layout.P_W_AFFINITY], out):
            raise InvalidInputError("affinity", _BAD_AFFINITY)
        return out
