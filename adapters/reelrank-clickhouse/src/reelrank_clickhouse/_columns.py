"""Events given as columns: checked with numpy as :class:`~reelrank.EngagementEvent`
checks one event, and turned into the columns of an insert, with no model per event."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from numpy.typing import NDArray

from reelrank import MAX_ID, EngagementKind, InvalidInputError

__all__ = ["insert_columns"]

# The patterns of EngagementEvent's fields.
_EVENT_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")
_CHANNEL = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_VARIANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_KINDS = [kind.value for kind in EngagementKind]
_MOST_SECONDS = 2**32  # DateTime holds unsigned 32-bit seconds


def _column(name: str, values: Any, length: int | None) -> NDArray[Any]:
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(name, f"not an array: {exc}") from exc
    if array.ndim != 1:
        raise InvalidInputError(name, f"must be one-dimensional, got {array.ndim} dimensions")
    if length is not None and array.shape[0] != length:
        raise InvalidInputError(name, f"has {array.shape[0]} values but event_id has {length}")
    return array


def _items(name: str, values: Any, length: int | None) -> list[Any]:
    """The values of a column of strings as a list. A sequence's own items, not
    numpy's conversion of them: ``np.asarray(["a", 7])`` would turn 7 into ``"7"``."""
    array = _column(name, values, length)
    if isinstance(values, np.ndarray):
        return list(array.tolist())
    return list(values)


def _ids(name: str, values: Any, length: int) -> NDArray[np.int64]:
    array = _column(name, values, length)
    if array.dtype.kind not in "iu" and not (array.size == 0 and array.dtype.kind == "f"):
        raise InvalidInputError(name, f"ids must be integers, got dtype {array.dtype}")
    if array.size and (
        array.min() < 1 or (array.dtype.kind == "u" and array.max() > np.uint64(MAX_ID))
    ):
        raise InvalidInputError(name, f"ids must be between 1 and {MAX_ID}")
    return np.asarray(array, dtype=np.int64)


def _strings(name: str, values: Any, length: int, pattern: re.Pattern[str]) -> list[Any]:
    """The values as a list, each a string matching ``pattern`` or ``None`` (given as
    ``None`` or NaN, which is how a frame's string column holds a missing value)."""
    items = _items(name, values, length)
    for index, item in enumerate(items):
        if item is None or (isinstance(item, float) and item != item):
            items[index] = None
        elif not (isinstance(item, str) and pattern.fullmatch(item)):
            raise InvalidInputError(name, f"must match {pattern.pattern} (or be None): {item!r}")
    return items


def _optional_floats(name: str, values: Any, length: int) -> NDArray[np.float64]:
    """The values as floats, NaN (or ``None``) where there is none; never infinite or
    negative."""
    if values is None:
        return np.full(length, np.nan)
    array = _column(name, values, length)
    if array.dtype.kind == "O":
        array = np.asarray([np.nan if item is None else item for item in array.tolist()])
    if array.size and array.dtype.kind not in "iuf":
        raise InvalidInputError(name, f"must be numbers (NaN for none), got dtype {array.dtype}")
    floats = np.asarray(array, dtype=np.float64)
    given = ~np.isnan(floats)
    if np.isinf(floats).any() or (floats[given] < 0).any():
        raise InvalidInputError(name, "must be finite and >= 0 (NaN for none)")
    return floats


def _nulls(values: NDArray[np.float64]) -> list[float | None]:
    return [None if value != value else value for value in values.tolist()]


def insert_columns(
    *,
    event_id: Any,
    kind: Any,
    user_id: Any,
    video_id: Any,
    creator_id: Any,
    occurred_at: Any,
    watched_seconds: Any,
    completion: Any,
    channel: Any,
    variant: Any,
) -> tuple[list[str], list[list[Any]]]:
    """The distinct event ids (first occurrence of each, in order) and the insert columns
    of :data:`~reelrank_clickhouse._rows.EVENT_COLUMNS` plus ``creator_id`` for them,
    ``seq`` left as zeros; raises :class:`~reelrank.InvalidInputError` naming the first
    bad column, as :class:`~reelrank.EngagementEvent` would name its field."""
    ids = _items("event_id", event_id, None)
    length = len(ids)
    for item in ids:
        if not (isinstance(item, str) and _EVENT_ID.fullmatch(item)):
            raise InvalidInputError("event_id", f"must match {_EVENT_ID.pattern}: {item!r}")
    kinds = _column("kind", kind, length)
    if kinds.size and not np.isin(kinds, _KINDS).all():
        bad = kinds[~np.isin(kinds, _KINDS)][0]
        raise InvalidInputError("kind", f"must be one of {', '.join(_KINDS)}: {bad!r}")
    users = _ids("user_id", user_id, length)
    videos = _ids("video_id", video_id, length)
    creators = _ids("creator_id", creator_id, length)
    times = _column("occurred_at", occurred_at, length)
    if times.dtype.kind != "M":
        raise InvalidInputError(
            "occurred_at", f"must be numpy datetime64 values in UTC, got dtype {times.dtype}"
        )
    if np.isnat(times).any():
        raise InvalidInputError("occurred_at", "must not hold NaT")
    micros = times.astype("datetime64[us]").astype(np.int64)
    seconds, fractions = np.divmod(micros, 1_000_000)
    if seconds.size and (seconds.min() < 0 or seconds.max() >= _MOST_SECONDS):
        raise InvalidInputError("occurred_at", "must be between 1970 and 2106")
    watched = _optional_floats("watched_seconds", watched_seconds, length)
    completions = _optional_floats("completion", completion, length)
    if (completions[~np.isnan(completions)] > 1.0).any():
        raise InvalidInputError("completion", "must be in [0, 1]")
    is_watch = kinds == EngagementKind.WATCH.value
    if np.isnan(completions[is_watch]).any():
        raise InvalidInputError("completion", "a watch must carry completion when appended")
    for name, values in (("watched_seconds", watched), ("completion", completions)):
        if (~np.isnan(values[~is_watch])).any():
            raise InvalidInputError(name, "only watch events carry it")
    channels = (
        [None] * length if channel is None else _strings("channel", channel, length, _CHANNEL)
    )
    has_channel = np.fromiter((item is not None for item in channels), bool, length)
    is_share = kinds == EngagementKind.SHARE.value
    if (is_share & ~has_channel).any():
        raise InvalidInputError("channel", "a share needs its channel")
    if (~is_share & has_channel).any():
        raise InvalidInputError("channel", "only share events carry it")
    variants = (
        [None] * length if variant is None else _strings("variant", variant, length, _VARIANT)
    )
    # The first occurrence of each id, in the batch's order.
    _, first = np.unique(np.asarray(ids, dtype=object), return_index=True)
    if first.shape[0] == length:
        keep = None
    else:
        keep = np.sort(first)
        ids = [ids[index] for index in keep.tolist()]

    def kept(values: list[Any] | NDArray[Any]) -> list[Any]:
        if isinstance(values, np.ndarray):
            narrowed: list[Any] = (values if keep is None else values[keep]).tolist()
            return narrowed
        return values if keep is None else [values[index] for index in keep.tolist()]

    columns = [
        ids,
        kept(kinds),
        kept(users),
        kept(videos),
        kept(seconds),
        kept(fractions),
        _nulls(watched if keep is None else watched[keep]),
        _nulls(completions if keep is None else completions[keep]),
        kept(channels),
        kept(variants),
        [0] * len(ids),
        kept(creators),
    ]
    return ids, columns
