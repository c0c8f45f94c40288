"""The public scoring API: :class:`Candidates`, :class:`Ranker`, :class:`Ranking`, :func:`warmup`.

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
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from . import _kernels as kernels
from ._config import RankingConfig
from .exceptions import InvalidInputError

__all__ = ["Candidates", "Ranker", "Ranking", "warmup"]

_SECONDS_PER_HOUR = 3600.0
_INT64_MAX = np.iinfo(np.int64).max
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_FLOAT32_TINY = float(np.finfo(np.float32).tiny)
_EMPTY_IDS = np.empty(0, dtype=np.int64)
_EMPTY_MASK = np.empty(0, dtype=np.bool_)

Now = float | datetime | None
Affinity = Mapping[int, float] | npt.NDArray[Any] | None
Seen = Collection[int] | npt.NDArray[Any] | None

_COUNT_COLUMNS = ("views", "completion_sum", "likes", "shares", "comments")


def _readonly(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    array.flags.writeable = False
    return array


def _column(name: str, values: Any, length: int | None) -> npt.NDArray[Any]:
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(name, f"not an array: {exc}") from exc
    if array.ndim != 1:
        raise InvalidInputError(name, f"must be one-dimensional, got {array.ndim} dimensions")
    if length is not None and array.shape[0] != length:
        raise InvalidInputError(
            name, f"has {array.shape[0]} values but video_id has {length}"
        )
    return array


def _id_column(name: str, values: Any, length: int | None) -> npt.NDArray[np.int64]:
    array = _column(name, values, length)
    if array.dtype.kind not in "iu" and not (array.size == 0 and array.dtype.kind == "f"):
        raise InvalidInputError(name, f"ids must be integers, got dtype {array.dtype}")
    if array.size:
        if array.dtype.kind == "i" and array.min() < 0:
            raise InvalidInputError(name, "ids must be non-negative")
        if array.dtype.kind == "u" and array.max() > _INT64_MAX:
            raise InvalidInputError(name, "ids must fit in int64")
    return np.ascontiguousarray(array, dtype=np.int64)


def _float_column(name: str, values: Any, length: int) -> npt.NDArray[np.float64]:
    array = _column(name, values, length)
    if array.dtype.kind not in "iuf":
        raise InvalidInputError(name, f"must be numeric, got dtype {array.dtype}")
    result = np.asarray(array, dtype=np.float64)
    if not np.isfinite(result).all():
        raise InvalidInputError(name, "must be finite (no NaN or infinity)")
    return result


def _count_column(name: str, values: Any, length: int) -> npt.NDArray[np.float64]:
    result = _float_column(name, values, length)
    if result.size and result.min() < 0.0:
        raise InvalidInputError(name, "counts must be non-negative")
    if result.size and result.max() > _FLOAT32_MAX:
        raise InvalidInputError(name, "counts must fit in float32")
    return result


class Candidates:
    """An immutable, validated batch of ``n`` candidate videos, stored column by column.

    Build it with :meth:`from_arrays`. Counters that disagree with each other in a way
    that can happen while they are updated independently (more likes, shares, comments
    or completion than views) are clipped to the view count rather than rejected.
    """

    __slots__ = (
        "_creator_ids",
        "_creator_index",
        "_creators",
        "_epoch",
        "_features",
        "_published_at",
        "_video_ids",
    )

    _video_ids: npt.NDArray[np.int64]
    _creator_ids: npt.NDArray[np.int64]
    _published_at: npt.NDArray[np.float64]
    _features: npt.NDArray[np.float32]
    _epoch: float
    _creators: npt.NDArray[np.int64]
    _creator_index: npt.NDArray[np.uint32]

    def __init__(self) -> None:
        raise TypeError("build Candidates with Candidates.from_arrays(...)")

    @classmethod
    def from_arrays(
        cls,
        *,
        video_id: Any,
        creator_id: Any,
        published_at: Any,
        views: Any,
        completion_sum: Any,
        likes: Any,
        shares: Any,
        comments: Any,
        dl_score: Any = None,
    ) -> Self:
        """Validate and pack candidate columns.

        Args:
            video_id: non-negative integer video ids.
            creator_id: non-negative integer creator ids.
            published_at: publish times in epoch seconds.
            views: view counts.
            completion_sum: sum over views of each view's completion fraction in ``[0, 1]``.
            likes: like counts.
            shares: share counts.
            comments: comment counts.
            dl_score: model scores in ``[0, 1]``; NaN marks a missing score and ``None``
                means every score is missing.

        Raises:
            InvalidInputError: naming the column that is not one-dimensional, has the
                wrong length, holds NaN or infinity, a negative count or id, or a model
                score outside ``[0, 1]``.
        """
        video_ids = _id_column("video_id", video_id, None)
        n = video_ids.shape[0]
        creator_ids = _id_column("creator_id", creator_id, n)
        published = _float_column("published_at", published_at, n)
        counts = {
            name: _count_column(name, value, n)
            for name, value in zip(
                _COUNT_COLUMNS, (views, completion_sum, likes, shares, comments), strict=True
            )
        }
        if dl_score is None:
            dl = np.full(n, np.nan, dtype=np.float32)
        else:
            dl_array = _column("dl_score", dl_score, n)
            if dl_array.dtype.kind not in "iuf":
                raise InvalidInputError("dl_score", f"must be numeric, got dtype {dl_array.dtype}")
            dl = np.asarray(dl_array, dtype=np.float32)
            present = dl[~np.isnan(dl)]
            if present.size and not ((present >= 0.0) & (present <= 1.0)).all():
                raise InvalidInputError("dl_score", "scores must lie in [0, 1] or be NaN")

        self = object.__new__(cls)
        epoch = float(published.max()) if n else 0.0
        features = np.empty((kernels.N_ROWS, n), dtype=np.float32)
        features[kernels.ROW_PUBLISHED_HOURS] = (published - epoch) / _SECONDS_PER_HOUR
        view_counts = counts["views"]
        features[kernels.ROW_VIEWS] = view_counts
        for row, name in (
            (kernels.ROW_COMPLETION, "completion_sum"),
            (kernels.ROW_LIKES, "likes"),
            (kernels.ROW_SHARES, "shares"),
            (kernels.ROW_COMMENTS, "comments"),
        ):
            features[row] = np.minimum(counts[name], view_counts)
        features[kernels.ROW_DL] = dl
        creators, creator_index = np.unique(creator_ids, return_inverse=True)
        self._video_ids = _readonly(video_ids)
        self._creator_ids = _readonly(creator_ids)
        self._published_at = _readonly(published)
        self._features = _readonly(features)
        self._epoch = epoch
        self._creators = _readonly(creators)
        # Unsigned, so the kernels' table lookups skip negative-index wrap-around.
        self._creator_index = _readonly(np.ascontiguousarray(creator_index, dtype=np.uint32))
        return self

    def __len__(self) -> int:
        return int(self._video_ids.shape[0])

    def __repr__(self) -> str:
        return f"<Candidates n={len(self)} creators={self._creators.size}>"

    def __setattr__(self, name: str, value: object) -> None:
        if hasattr(self, name):
            raise AttributeError(f"Candidates is immutable; cannot set {name!r}")
        object.__setattr__(self, name, value)

    def _row(self, row: int) -> npt.NDArray[np.float32]:
        values: npt.NDArray[np.float32] = self._features[row]
        return values

    @property
    def video_ids(self) -> npt.NDArray[np.int64]:
        """Video ids, ``int64`` of shape ``(n,)`` (read-only)."""
        return self._video_ids

    @property
    def creator_ids(self) -> npt.NDArray[np.int64]:
        """Creator ids, ``int64`` of shape ``(n,)`` (read-only)."""
        return self._creator_ids

    @property
    def published_at(self) -> npt.NDArray[np.float64]:
        """Publish times in epoch seconds, ``float64`` (read-only)."""
        return self._published_at

    @property
    def views(self) -> npt.NDArray[np.float32]:
        """View counts, ``float32`` (read-only)."""
        return self._row(kernels.ROW_VIEWS)

    @property
    def completion_sum(self) -> npt.NDArray[np.float32]:
        """Completion sums clipped to the view counts, ``float32`` (read-only)."""
        return self._row(kernels.ROW_COMPLETION)

    @property
    def likes(self) -> npt.NDArray[np.float32]:
        """Like counts clipped to the view counts, ``float32`` (read-only)."""
        return self._row(kernels.ROW_LIKES)

    @property
    def shares(self) -> npt.NDArray[np.float32]:
        """Share counts clipped to the view counts, ``float32`` (read-only)."""
        return self._row(kernels.ROW_SHARES)

    @property
    def comments(self) -> npt.NDArray[np.float32]:
        """Comment counts clipped to the view counts, ``float32`` (read-only)."""
        return self._row(kernels.ROW_COMMENTS)

    @property
    def dl_scores(self) -> npt.NDArray[np.float32]:
        """Model scores, ``float32``, NaN where missing (read-only)."""
        return self._row(kernels.ROW_DL)


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


def _affinity_inputs(
    candidates: Candidates, affinity: Affinity
) -> tuple[npt.NDArray[np.float32] | None, npt.NDArray[np.uint32] | None]:
    """Turn ``affinity`` into ``(values, creator_index)`` for the kernels."""
    if affinity is None:
        return None, None
    if isinstance(affinity, np.ndarray):
        if affinity.ndim != 1 or affinity.shape[0] != len(candidates):
            raise InvalidInputError(
                "affinity", f"expected shape ({len(candidates)},), got {affinity.shape}"
            )
        if affinity.dtype.kind not in "iuf":
            raise InvalidInputError("affinity", f"must be numeric, got dtype {affinity.dtype}")
        values = np.ascontiguousarray(affinity, dtype=np.float32)
        if not kernels.in_unit_interval_kernel(values):
            raise InvalidInputError("affinity", "values must lie in [0, 1]")
        return values, None
    if not isinstance(affinity, Mapping):
        raise InvalidInputError("affinity", "expected a mapping creator_id -> value or an array")
    table = np.zeros(candidates._creators.size, dtype=np.float32)
    try:
        keys = np.fromiter(affinity.keys(), dtype=np.int64, count=len(affinity))
        weights = np.fromiter(affinity.values(), dtype=np.float64, count=len(affinity))
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInputError(
            "affinity", f"keys must be ints and values floats: {exc}"
        ) from exc
    if not kernels.affinity_table_kernel(candidates._creators, keys, weights, table):
        raise InvalidInputError("affinity", "values must lie in [0, 1]")
    return table, candidates._creator_index


def _seen_inputs(
    candidates: Candidates, seen: Seen
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Turn ``seen`` into ``(sorted ids, mask)`` for the rank kernel; the unused one is empty.

    Duplicate ids are harmless to the kernel's binary search, so they are not removed.
    """
    if seen is None:
        return _EMPTY_IDS, _EMPTY_MASK
    if isinstance(seen, np.ndarray):
        if seen.ndim != 1:
            raise InvalidInputError("seen", f"must be one-dimensional, got {seen.ndim} dimensions")
        if seen.dtype == np.bool_:
            if seen.shape[0] != len(candidates):
                raise InvalidInputError(
                    "seen", f"a mask needs {len(candidates)} flags, got {seen.shape[0]}"
                )
            return _EMPTY_IDS, np.ascontiguousarray(seen)
        if seen.dtype.kind not in "iu" and seen.size:
            raise InvalidInputError("seen", f"ids must be integers, got dtype {seen.dtype}")
        if seen.dtype.kind == "u" and seen.size and seen.max() > _INT64_MAX:
            raise InvalidInputError("seen", "ids must fit in int64")
        ids = seen.astype(np.int64)
        ids.sort()
        return ids, _EMPTY_MASK
    try:
        ids = np.fromiter(seen, dtype=np.int64, count=len(seen))
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInputError("seen", f"expected integer video ids: {exc}") from exc
    ids.sort()
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
    params = np.empty(kernels.N_PARAMS, dtype=np.float32)
    params[kernels.P_W_FRESHNESS] = config.freshness
    params[kernels.P_W_COMPLETION] = config.completion
    params[kernels.P_W_ENGAGEMENT] = config.engagement
    params[kernels.P_W_AFFINITY] = config.affinity
    params[kernels.P_W_DEEP_LEARNING] = config.deep_learning
    params[kernels.P_INV_HALF_LIFE_HOURS] = 1.0 / config.freshness_half_life_hours
    params[kernels.P_COMPLETION_PRIOR_MASS] = (
        config.completion_prior_mean * completion_views
    )
    params[kernels.P_COMPLETION_PRIOR_VIEWS] = completion_views
    params[kernels.P_COMPLETION_PRIOR_MEAN] = config.completion_prior_mean
    params[kernels.P_LIKE_WEIGHT] = config.like_weight
    params[kernels.P_SHARE_WEIGHT] = config.share_weight
    params[kernels.P_COMMENT_WEIGHT] = config.comment_weight
    params[kernels.P_ENGAGEMENT_PRIOR_MASS] = (
        config.engagement_prior_rate * engagement_views
    )
    params[kernels.P_ENGAGEMENT_PRIOR_VIEWS] = engagement_views
    params[kernels.P_ENGAGEMENT_PRIOR_RATE] = config.engagement_prior_rate
    params[kernels.P_ENGAGEMENT_HALF_SATURATION] = config.engagement_half_saturation
    params[kernels.P_DL_NEUTRAL] = config.dl_neutral_score
    params.flags.writeable = False
    return params


def _check_candidates(candidates: object) -> Candidates:
    if not isinstance(candidates, Candidates):
        raise InvalidInputError("candidates", "expected a Candidates instance")
    return candidates


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
        cands = _check_candidates(candidates)
        try:
            limit = operator.index(k)
        except TypeError as exc:
            raise InvalidInputError("k", f"must be an integer, got {k!r}") from exc
        if isinstance(k, bool) or limit < 0:
            raise InvalidInputError("k", f"must be a non-negative integer, got {k!r}")
        now_hours = (_now_seconds(now) - cands._epoch) / _SECONDS_PER_HOUR
        values, creator_index = _affinity_inputs(cands, affinity)
        seen_ids, seen_mask = _seen_inputs(cands, seen)
        capacity = min(limit, cands._video_ids.shape[0])
        positions = np.empty(capacity, dtype=np.int64)
        scores = np.empty(capacity, dtype=np.float32)
        count = kernels.rank_kernel(
            cands._features, cands._video_ids, values, creator_index, seen_ids, seen_mask,
            self._params, now_hours, positions, scores,
        )
        if count < capacity:
            positions = positions[:count]
            scores = scores[:count]
        contributions = None
        if explain:
            contributions = np.empty((count, 5), dtype=np.float32)
            kernels.explain_kernel(
                cands._features, values, creator_index, self._params, now_hours, positions,
                contributions,
            )
        return Ranking(
            video_ids=cands._video_ids[positions],
            scores=scores,
            positions=positions,
            contributions=contributions,
        )

    def score(
        self, candidates: Candidates, *, now: Now = None, affinity: Affinity = None
    ) -> npt.NDArray[np.float32]:
        """Return every candidate's score, ``float32`` of shape ``(n,)``.

        Arguments are as for :meth:`rank`.
        """
        cands = _check_candidates(candidates)
        now_hours = (_now_seconds(now) - cands._epoch) / _SECONDS_PER_HOUR
        values, creator_index = _affinity_inputs(cands, affinity)
        out = np.empty(len(cands), dtype=np.float32)
        kernels.score_kernel(cands._features, values, creator_index, self._params, now_hours, out)
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
        values, creator_index = _affinity_inputs(cands, affinity)
        out = np.empty((len(cands), 5), dtype=np.float32)
        positions = np.arange(len(cands), dtype=np.int64)
        kernels.explain_kernel(
            cands._features, values, creator_index, self._params, now_hours, positions, out
        )
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
        kernels.score_kernel(cands._features, None, None, self._params, now_hours, static)
        out = np.empty(values.shape, dtype=np.float32)
        batch = (
            kernels.batch_kernel
            if values.size >= kernels.PARALLEL_MIN_SCORES
            else kernels.batch_kernel_serial
        )
        if not batch(static, values, self._params[kernels.P_W_AFFINITY], out):
            raise InvalidInputError("affinity", "values must lie in [0, 1]")
        return out


def warmup() -> None:
    """Compile (or load from the cache) every kernel variant.

    Call it once at service start so the first request does not pay for compilation.
    """
    candidates = Candidates.from_arrays(
        video_id=[1, 2], creator_id=[7, 8], published_at=[0.0, 3600.0], views=[10, 0],
        completion_sum=[5, 0], likes=[1, 0], shares=[0, 0], comments=[0, 0],
        dl_score=[0.5, np.nan],
    )
    ranker = Ranker()
    per_candidate = np.array([0.5, 0.25], dtype=np.float32)
    for affinity in (None, {7: 0.5}, per_candidate):
        ranker.rank(candidates, k=1, now=7200.0, affinity=affinity, seen=[2], explain=True)
        ranker.score(candidates, now=7200.0, affinity=affinity)
    ranker.score_batch(candidates, per_candidate.reshape(1, 2), now=7200.0)
    # score_batch only goes parallel for large batches; compile that kernel too.
    static = ranker.score(candidates, now=7200.0)
    out = np.empty((1, 2), dtype=np.float32)
    kernels.batch_kernel(static, per_candidate.reshape(1, 2), np.float32(0.0), out)
