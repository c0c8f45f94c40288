"""Argument checks shared by the core stores and by store adapters.

Every check takes the name of the field first and the value second,
``check_x(field, value)``, returns the value (normalised where stated) when it is
valid and otherwise raises :class:`~reelrank.InvalidInputError` whose ``field`` is the
name given. Adapters reach the same functions through :mod:`reelrank.stores.adapter`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

import numpy as np
from numpy.typing import NDArray

from .exceptions import InvalidInputError

__all__ = [
    "MAX_ID",
    "check_aware",
    "check_feed_key",
    "check_id",
    "check_id_column",
    "check_ids",
    "check_ids_by_user",
    "check_lease_owner",
    "check_limit",
    "check_max_age",
    "check_tag",
    "check_ttl",
    "check_user_ids",
    "check_variant",
    "finite_or_raise",
    "utc_now",
]

MAX_ID = 2**63 - 1
"""Largest valid id: ids are positive and fit a signed 64-bit integer."""

_MAX_LEASE_OWNER_LENGTH = 64


def check_lease_owner(field: str, owner: object) -> str:
    """``owner`` if it is a non-empty string of at most 64 characters (the token naming
    who holds a trending lease), else raise ``InvalidInputError``."""
    if not isinstance(owner, str) or not 1 <= len(owner) <= _MAX_LEASE_OWNER_LENGTH:
        raise InvalidInputError(
            field, f"must be a string of 1 to {_MAX_LEASE_OWNER_LENGTH} characters, got {owner!r}"
        )
    return owner


def finite_or_raise(field: str, value: object) -> float:
    """Return ``value`` if it is a finite number, else raise ``InvalidInputError``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInputError(field, f"must be a finite number, got {value!r}")
    return float(value)


def check_id(field: str, value: object) -> int:
    """Return ``value`` if it is a valid id (positive int64), else raise ``InvalidInputError``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise InvalidInputError(field, f"must be an int in [1, 2**63 - 1], got {value!r}")
    return value


def check_id_column(field: str, values: object) -> NDArray[np.int64]:
    """Return ``values`` as a read-only ``int64`` array if it is a one-dimensional
    array-like of valid ids, else raise ``InvalidInputError``.

    For ids given as a column (a numpy array, a sequence, a frame's column). As
    :func:`check_id` does, booleans, floats (even ``1.0``) and text are refused; an
    empty column of any dtype is an empty array.
    """
    try:
        array = np.asarray(values)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInputError(field, f"not an array: {exc}") from exc
    if array.ndim != 1:
        raise InvalidInputError(field, f"must be one-dimensional, got {array.ndim} dimensions")
    if not array.size:
        return _readonly(np.zeros(0, dtype=np.int64))
    # numpy turns a bool among ints into an int: a sequence's own items are looked at.
    if array.dtype.kind not in "iu" or (
        not isinstance(values, np.ndarray)
        and isinstance(values, Iterable)
        and any(isinstance(value, bool) for value in values)
    ):
        raise InvalidInputError(field, f"ids must be integers, got dtype {array.dtype}")
    if array.min() < 1 or (array.dtype.kind == "u" and array.max() > np.uint64(MAX_ID)):
        raise InvalidInputError(field, f"ids must be between 1 and {MAX_ID}")
    return _readonly(np.array(array, dtype=np.int64))


def _readonly(array: NDArray[np.int64]) -> NDArray[np.int64]:
    array.flags.writeable = False
    return array


def check_ids(field: str, values: object) -> list[int]:
    """Return ``values`` as a list if it is a sequence of valid ids, else raise.

    A string is refused (it is a sequence, but not of ids); the error names ``field``.
    """
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise InvalidInputError(field, f"must be a sequence of ids, got {values!r}")
    ids = list(values)
    # Fast path for the common case of a clean batch; check_id names the culprit otherwise.
    if all(type(value) is int for value in ids) and (
        not ids or 1 <= min(ids) <= max(ids) <= MAX_ID
    ):
        return ids
    return [check_id(field, value) for value in ids]


def check_user_ids(field: str, values: object) -> list[int]:
    """Return ``values`` as a list if it is a non-empty sequence of distinct valid ids,
    else raise ``InvalidInputError``.

    For the reads of many users at once (``followed_videos_many``...): an empty batch or
    a user asked for twice is a caller's mistake there, not something to fold away.
    """
    ids = check_ids(field, values)
    if not ids:
        raise InvalidInputError(field, "must hold at least one id")
    if len(set(ids)) != len(ids):
        repeated = next(uid for uid, times in Counter(ids).items() if times > 1)
        raise InvalidInputError(field, f"must not repeat an id, got {repeated} more than once")
    return ids


def check_ids_by_user(field: str, values: object) -> dict[int, list[int]]:
    """Return ``values`` as a dict if it is a non-empty mapping of valid user ids to
    sequences of valid ids, else raise ``InvalidInputError``.

    The inner sequences may be empty and may repeat an id, as in a one-user bulk read.
    """
    if not isinstance(values, Mapping):
        raise InvalidInputError(field, f"must be a mapping of user ids to ids, got {values!r}")
    if not values:
        raise InvalidInputError(field, "must hold at least one user")
    return {check_id(field, user_id): check_ids(field, ids) for user_id, ids in values.items()}


_TAG_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


def check_limit(field: str, value: object) -> int:
    """Return ``value`` if it is an int ``>= 0``, else raise ``InvalidInputError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(field, f"must be an int >= 0, got {value!r}")
    return value


def check_aware(field: str, value: object) -> datetime:
    """Return ``value`` in UTC if it is a timezone-aware datetime, else raise."""
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise InvalidInputError(field, f"must be a timezone-aware datetime, got {value!r}")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # A time near year 1 or 9999 whose offset carries it past the datetime range.
        raise InvalidInputError(field, f"{value!r} is out of range in UTC") from None


def check_variant(field: str, value: object) -> str | None:
    """Return ``value`` if it is ``None`` or a valid variant tag, else raise."""
    if value is None:
        return None
    if not isinstance(value, str) or not _TAG_PATTERN.fullmatch(value):
        raise InvalidInputError(field, f"must be None or a short tag, got {value!r}")
    return value


def check_tag(field: str, value: object) -> str:
    """Return ``value`` if it is a valid tag (model name, version...), else raise."""
    if not isinstance(value, str) or not _TAG_PATTERN.fullmatch(value):
        raise InvalidInputError(field, f"must be a short tag, got {value!r}")
    return value


def check_ttl(field: str, value: object) -> float:
    """Return ``value`` as a float if it is finite and positive, else raise."""
    seconds = finite_or_raise(field, value)
    if seconds <= 0.0:
        raise InvalidInputError(field, f"must be > 0, got {value!r}")
    return seconds


def check_max_age(field: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite number ``>= 0`` (an age bound in
    seconds), else raise."""
    seconds = finite_or_raise(field, value)
    if seconds < 0.0:
        raise InvalidInputError(field, f"must be >= 0, got {value!r}")
    return seconds


def check_feed_key(field: str, value: object) -> tuple[int, str | None]:
    """Return ``value`` if it is a feed cache key ``(user_id, variant)``, else raise."""
    if not isinstance(value, tuple) or len(value) != 2:
        raise InvalidInputError(field, f"each key must be (user_id, variant), got {value!r}")
    return (check_id(field, value[0]), check_variant(field, value[1]))


def utc_now() -> datetime:
    """The current time as a timezone-aware UTC datetime (the default clock)."""
    return datetime.now(UTC)
