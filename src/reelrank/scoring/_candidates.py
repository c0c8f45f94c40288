"""Candidates: the columns the ranker scores, validated once and laid out for the kernels."""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import numpy.typing as npt

from .._kernels import _layout as layout
from ..exceptions import InvalidInputError

__all__ = ["Candidates"]

_SECONDS_PER_HOUR = 3600.0
_INT64_MAX = np.iinfo(np.int64).max
_FLOAT32_MAX = float(np.finfo(np.float32).max)

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
        raise InvalidInputError(name, f"has {array.shape[0]} values but video_id has {length}")
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
        "_creator_groups",
        "_creator_ids",
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
    # Built on first use by _creator_lookup: only a creator mapping needs them.
    _creators: npt.NDArray[np.int64]
    _creator_groups: npt.NDArray[np.int64]

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
        features = np.empty((layout.N_ROWS, n), dtype=np.float32)
        features[layout.ROW_PUBLISHED_HOURS] = (published - epoch) / _SECONDS_PER_HOUR
        view_counts = counts["views"]
        features[layout.ROW_VIEWS] = view_counts
        for row, name in (
            (layout.ROW_COMPLETION, "completion_sum"),
            (layout.ROW_LIKES, "likes"),
            (layout.ROW_SHARES, "shares"),
            (layout.ROW_COMMENTS, "comments"),
        ):
            features[row] = np.minimum(counts[name], view_counts)
        features[layout.ROW_DL] = dl
        self._video_ids = _readonly(video_ids)
        self._creator_ids = _readonly(creator_ids)
        self._published_at = _readonly(published)
        self._features = _readonly(features)
        self._epoch = epoch
        return self

    def _creator_lookup(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The sorted distinct creator ids, and the candidates grouped by creator.

        The second array holds ``len(creators) + 1`` offsets followed by the candidate
        positions of each creator, group by group (see :func:`reelrank._kernels._rank.rank_kernel`).
        Built on first use and kept: only a creator mapping needs them, and building them
        sorts the creator ids. Two threads may both build them; the results are equal.
        """
        try:
            return self._creators, self._creator_groups
        except AttributeError:
            pass
        order = np.argsort(self._creator_ids, kind="stable")
        by_creator = self._creator_ids[order]
        starts = np.flatnonzero(by_creator[1:] != by_creator[:-1]) + 1
        offsets = np.concatenate(([0], starts, [by_creator.size])) if by_creator.size else [0]
        creators = by_creator[np.asarray(offsets[:-1], dtype=np.intp)]
        groups = np.concatenate((np.asarray(offsets, dtype=np.int64), order.astype(np.int64)))
        object.__setattr__(self, "_creator_groups", _readonly(groups))
        object.__setattr__(self, "_creators", _readonly(creators))
        return self._creators, self._creator_groups

    def __len__(self) -> int:
        return int(self._video_ids.shape[0])

    def __repr__(self) -> str:
        return f"<Candidates n={len(self)} creators={self._creator_lookup()[0].size}>"

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
        return self._row(layout.ROW_VIEWS)

    @property
    def completion_sum(self) -> npt.NDArray[np.float32]:
        """Completion sums clipped to the view counts, ``float32`` (read-only)."""
        return self._row(layout.ROW_COMPLETION)

    @property
    def likes(self) -> npt.NDArray[np.float32]:
        """Like counts clipped to the view counts, ``float32`` (read-only)."""
        return self._row(layout.ROW_LIKES)

    @property
    def shares(self) -> npt.NDArray[np.float32]:
        """Share counts clipped to the view counts, ``float32`` (read-only)."""
        return self._row(layout.ROW_SHARES)

    @property
    def comments(self) -> npt.NDArray[np.float32]:
        """Comment counts clipped to the view counts, ``float32`` (read-only)."""
        return self._row(layout.ROW_COMMENTS)

    @property
    def dl_scores(self) -> npt.NDArray[np.float32]:
        """Model scores, ``float32``, NaN where missing (read-only)."""
        return self._row(layout.ROW_DL)
