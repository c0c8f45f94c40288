"""What the column classes share: parallel, read-only numpy columns, one per field of a
model, checked once when built.

A column class names its fields in ``__slots__`` and ``_FIELDS`` (constructor order,
the first one counting the rows), the noun of its rows, and the float columns in
which NaN stands for "none"; its own ``from_arrays`` checks the values and builds it.
The base gives it length, equality and repr, and these helpers the checks of shape.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from ..exceptions import InvalidInputError


class ReadOnlyColumns:
    """Base of :class:`~reelrank.VideoStatsColumns`, :class:`~reelrank.EngagementEventColumns`
    and :class:`~reelrank.FollowedVideoColumns` (private: the docs show none of them with
    a base)."""

    __slots__ = ()

    _FIELDS: ClassVar[tuple[str, ...]]
    """The fields, in constructor order; the first one's length is the row count."""
    _ROWS: ClassVar[str]
    """What a row is, in the repr (``"videos"``)."""
    _NAN_EQUAL: ClassVar[frozenset[str]] = frozenset()
    """Float columns where NaN stands for a missing value: equal in equal rows."""
    _COMPARED: ClassVar[type]
    """The class whose instances an instance equals: the column class itself, so a
    subclass of it compares as it does."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if ReadOnlyColumns in cls.__bases__:
            cls._COMPARED = cls

    def __len__(self) -> int:
        return int(getattr(self, self._FIELDS[0]).shape[0])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, self._COMPARED):
            return NotImplemented
        return all(
            _same(getattr(self, name), getattr(other, name), name in self._NAN_EQUAL)
            for name in self._FIELDS
        )

    __hash__ = None  # type: ignore[assignment]  # mutable-looking arrays: not hashable

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} {self._ROWS})"


def _same(mine: Any, theirs: Any, nan_equal: bool) -> bool:
    if isinstance(mine, np.ndarray):
        return bool(np.array_equal(mine, theirs, equal_nan=nan_equal))
    return bool(mine == theirs)  # a nested column class


def as_column(name: str, values: Any, length: int | None, counted_by: str) -> NDArray[Any]:
    """``values`` as a one-dimensional array (not copied) of ``length`` values (any
    number for ``None``, the column ``counted_by`` itself); otherwise
    :class:`~reelrank.InvalidInputError` naming ``name``."""
    try:
        array = np.asarray(values)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInputError(name, f"not an array: {exc}") from exc
    return check_shape(name, array, length, counted_by)


def check_shape(
    name: str, array: NDArray[Any], length: int | None, counted_by: str
) -> NDArray[Any]:
    """``array``, if it is one-dimensional with ``length`` values (any number for
    ``None``); otherwise :class:`~reelrank.InvalidInputError` naming ``name``."""
    if array.ndim != 1:
        raise InvalidInputError(name, f"must be one-dimensional, got {array.ndim} dimensions")
    if length is not None and array.shape[0] != length:
        raise InvalidInputError(name, f"has {array.shape[0]} values but {counted_by} has {length}")
    return array


def readonly(array: NDArray[Any]) -> NDArray[Any]:
    """``array``, made read-only."""
    array.flags.writeable = False
    return array
