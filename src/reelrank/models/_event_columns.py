"""Engagement events as columns: validated with numpy by the rules of
:class:`~reelrank.EngagementEvent`, with no model per event."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from numbers import Real
from typing import Annotated, Any, Self, get_args, get_origin

import numpy as np
from numpy.typing import NDArray
from pydantic.fields import FieldInfo

from ..exceptions import InvalidInputError
from ..validation import check_id_column
from ._columns import ReadOnlyColumns, as_column, readonly
from ._engagement import EngagementEvent, EngagementKind

__all__ = ["EngagementEventColumns"]


def _constraints(metadata: list[Any], annotation: Any) -> Iterator[Any]:
    """The constraint objects of a field: its own metadata, and those of the
    ``Annotated`` types inside its annotation (``Tag | None`` carries its pattern there)."""
    yield from metadata
    if get_origin(annotation) is Annotated:
        for item in annotation.__metadata__:
            if isinstance(item, FieldInfo):
                yield from _constraints(item.metadata, item.annotation)
            else:
                yield item
    for argument in get_args(annotation):
        yield from _constraints([], argument)


def _model_constraint(field: str, name: str) -> Any:
    """The constraint ``name`` (``pattern``, ``ge``, ``le``) that
    :class:`~reelrank.EngagementEvent` puts on ``field``: the one source of the rules."""
    info = EngagementEvent.model_fields[field]
    for constraint in _constraints(info.metadata, info.annotation):
        value = getattr(constraint, name, None)
        if value is not None:
            return value
    raise LookupError(f"EngagementEvent.{field} has no {name} constraint")  # pragma: no cover


# Compiled from the model's own patterns; ``fullmatch`` so that ``$`` does not let a
# trailing newline through (pydantic's regex engine does not either).
_PATTERNS = {
    field: re.compile(_model_constraint(field, "pattern"))
    for field in ("event_id", "channel", "variant")
}
_WATCHED_LOW = float(_model_constraint("watched_seconds", "ge"))
_COMPLETION_LOW = float(_model_constraint("completion", "ge"))
_COMPLETION_HIGH = float(_model_constraint("completion", "le"))
_KINDS = tuple(kind.value for kind in EngagementKind)
_KIND_SET = frozenset(_KINDS)
# The years a datetime (and so the model) can hold.
_EARLIEST = np.datetime64("0001-01-01T00:00:00", "us")
_LATEST = np.datetime64("9999-12-31T23:59:59.999999", "us")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _array(name: str, values: Any, length: int | None) -> NDArray[Any]:
    return as_column(name, values, length, "event_id")


def _items(name: str, values: Any, length: int | None) -> list[Any]:
    """The values of a column as a list. A sequence's own items, not numpy's
    conversion of them: ``np.asarray(["a", 7])`` would turn 7 into ``"7"``."""
    array = _array(name, values, length)
    if isinstance(values, np.ndarray):
        return list(array.tolist())
    return list(values)


def _objects(items: list[Any]) -> NDArray[np.object_]:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return readonly(array)


def _is_missing(item: Any) -> bool:
    """``None``, or NaN: how a frame's string column holds a missing value."""
    return item is None or (isinstance(item, float) and item != item)


def _strings(name: str, values: Any, length: int | None, required: bool) -> list[Any]:
    """The values as a list of strings matching the field's pattern (``None`` where
    one is missing, if the field is optional)."""
    pattern = _PATTERNS[name]
    items = _items(name, values, length)
    for index, item in enumerate(items):
        if not required and _is_missing(item):
            items[index] = None
        elif not (isinstance(item, str) and pattern.fullmatch(item)):
            none = "" if required else " (or be None)"
            raise InvalidInputError(name, f"must match {pattern.pattern}{none}: {item!r}")
    return items


def _ids(name: str, values: Any, length: int) -> NDArray[np.int64]:
    ids = check_id_column(name, values)
    if ids.shape[0] != length:
        raise InvalidInputError(name, f"has {ids.shape[0]} values but event_id has {length}")
    return ids


def _times(values: Any, length: int) -> NDArray[np.datetime64]:
    """The values as UTC ``datetime64[us]``: numpy datetimes are taken as UTC, datetime
    objects (a time-zone-aware pandas column's values) must carry a time zone."""
    name = "occurred_at"
    array = _array(name, values, length)
    if array.dtype.kind == "O":
        utc: list[datetime] = []
        for item in array.tolist():
            if not isinstance(item, datetime) or item.utcoffset() is None:
                raise InvalidInputError(name, f"must be a timezone-aware datetime, got {item!r}")
            try:
                utc.append(item.astimezone(UTC).replace(tzinfo=None))
            except OverflowError:
                raise InvalidInputError(name, f"{item!r} is out of range in UTC") from None
        array = np.array(utc, dtype="datetime64[us]")
    elif array.dtype.kind != "M" and array.size:
        raise InvalidInputError(
            name,
            "must be numpy datetime64 values in UTC or timezone-aware datetimes, "
            f"got dtype {array.dtype}",
        )
    if array.size and np.isnat(array).any():
        raise InvalidInputError(name, "must not hold NaT")
    micros = np.array(array, dtype="datetime64[us]")
    if micros.size and (micros.min() < _EARLIEST or micros.max() > _LATEST):
        raise InvalidInputError(name, "must lie in the years 1 to 9999")
    return readonly(micros)


def _optional_floats(
    name: str, values: Any, length: int, low: float, high: float | None
) -> NDArray[np.float64]:
    """The values as floats in ``[low, high]``, NaN where there is none (given as NaN or
    ``None``); never infinite."""
    if values is None:
        return readonly(np.full(length, np.nan))
    array = _array(name, values, length)
    if array.dtype.kind == "O":
        items = array.tolist()
        if any(item is not None and not isinstance(item, Real) for item in items):
            raise InvalidInputError(name, "must be numbers (NaN for none)")
        array = np.asarray([np.nan if item is None else item for item in items], dtype=float)
    if array.size and array.dtype.kind not in "biuf":
        raise InvalidInputError(name, f"must be numbers (NaN for none), got dtype {array.dtype}")
    floats = np.array(array, dtype=np.float64)
    given = floats[~np.isnan(floats)]
    bounds = f"[{low:g}, {high:g}]" if high is not None else f">= {low:g}"
    if np.isinf(given).any() or (given < low).any():
        raise InvalidInputError(name, f"must be finite and {bounds} (NaN for none)")
    if high is not None and (given > high).any():
        raise InvalidInputError(name, f"must be in {bounds} (NaN for none)")
    return readonly(floats)


class EngagementEventColumns(ReadOnlyColumns):
    """Engagement events as columns, one per :class:`~reelrank.EngagementEvent` field:
    row ``i`` is one event.

    For code that holds events as columns (a pandas or polars frame of logged events,
    a store's bulk ingest such as ``ClickHouseEventStore.append_columns``): the columns
    are checked with numpy by exactly the rules the model checks on each event, with no
    model built per event. The patterns and ranges are read from the model's fields;
    a differential test checks that a batch is accepted exactly when every row is a
    valid event, and that the values accepted are the model's. The arrays are
    read-only; build columns with :meth:`from_arrays`.
    """

    __slots__ = _FIELDS = (
        "event_id",
        "kind",
        "user_id",
        "video_id",
        "occurred_at",
        "watched_seconds",
        "completion",
        "channel",
        "variant",
    )
    _ROWS = "events"
    _NAN_EQUAL = frozenset({"watched_seconds", "completion"})

    event_id: NDArray[np.object_]
    """The event ids (``str``); they may repeat (a store counts each once)."""
    kind: NDArray[np.str_]
    """The kinds' names (``"watch"``...)."""
    user_id: NDArray[np.int64]
    """The user of each event."""
    video_id: NDArray[np.int64]
    """The video of each event."""
    occurred_at: NDArray[np.datetime64]
    """When each event happened, UTC, in microseconds."""
    watched_seconds: NDArray[np.float64]
    """Seconds watched; NaN where an event has none."""
    completion: NDArray[np.float64]
    """Share of the video watched, in ``[0, 1]``; NaN where an event has none."""
    channel: NDArray[np.object_]
    """Where a share went (``str``); ``None`` for the other kinds."""
    variant: NDArray[np.object_]
    """Experiment variant (``str``) or ``None``."""

    def __init__(
        self,
        event_id: NDArray[np.object_],
        kind: NDArray[np.str_],
        user_id: NDArray[np.int64],
        video_id: NDArray[np.int64],
        occurred_at: NDArray[np.datetime64],
        watched_seconds: NDArray[np.float64],
        completion: NDArray[np.float64],
        channel: NDArray[np.object_],
        variant: NDArray[np.object_],
    ) -> None:
        # Private: from_arrays validates first.
        self.event_id = event_id
        self.kind = kind
        self.user_id = user_id
        self.video_id = video_id
        self.occurred_at = occurred_at
        self.watched_seconds = watched_seconds
        self.completion = completion
        self.channel = channel
        self.variant = variant

    @classmethod
    def from_arrays(
        cls,
        *,
        event_id: Any,
        kind: Any,
        user_id: Any,
        video_id: Any,
        occurred_at: Any,
        watched_seconds: Any = None,
        completion: Any = None,
        channel: Any = None,
        variant: Any = None,
        require_watch_completion: bool = False,
    ) -> Self:
        """Columns from parallel array-likes (numpy arrays, sequences, a frame's
        columns), copied.

        ``event_id``, ``channel`` and ``variant`` hold strings, ``kind`` the kinds'
        names, ``user_id`` and ``video_id`` integers; ``occurred_at`` numpy
        ``datetime64`` values, taken as UTC, or timezone-aware datetimes (the values of
        a time-zone-aware pandas column); ``watched_seconds`` and ``completion``
        numbers. NaN or ``None`` stands for a missing optional value, and the four
        optional columns may be left out when no event carries them. Values are taken
        as typed: unlike the model, a column does not parse numbers or times from text.

        Each row must be a valid :class:`~reelrank.EngagementEvent`; otherwise
        :class:`~reelrank.InvalidInputError` names the field the model would name for
        a bad row (a field's own rules are checked before the rules between fields, in
        the model's order). ``require_watch_completion`` adds the rule of
        :meth:`EventStore.append <reelrank.EventStore.append>` that a watch carries its
        completion (checked first among the rules between fields).
        """
        ids = _objects(_strings("event_id", event_id, None, required=True))
        length = ids.shape[0]
        kinds = _array("kind", kind, length)
        if kinds.size and kinds.dtype.kind != "U":
            unknown = [
                item for item in kinds.tolist() if not (isinstance(item, str) and item in _KIND_SET)
            ]
            if unknown:
                raise InvalidInputError(
                    "kind", f"must be one of {', '.join(_KINDS)}: {unknown[0]!r}"
                )
            kinds = np.array([str(item) for item in kinds.tolist()])
        elif kinds.size and not np.isin(kinds, _KINDS).all():
            bad = kinds[~np.isin(kinds, _KINDS)][0]
            raise InvalidInputError("kind", f"must be one of {', '.join(_KINDS)}: {bad!r}")
        kinds = readonly(np.array(kinds, dtype=str))
        users = _ids("user_id", user_id, length)
        videos = _ids("video_id", video_id, length)
        times = _times(occurred_at, length)
        watched = _optional_floats("watched_seconds", watched_seconds, length, _WATCHED_LOW, None)
        completions = _optional_floats(
            "completion", completion, length, _COMPLETION_LOW, _COMPLETION_HIGH
        )
        channel_items = (
            [None] * length if channel is None else _strings("channel", channel, length, False)
        )
        variants = _objects(
            [None] * length if variant is None else _strings("variant", variant, length, False)
        )
        # The rules between fields, in the order of the model's validator.
        is_watch = kinds == EngagementKind.WATCH.value
        has_completion = ~np.isnan(completions)
        has_watched = ~np.isnan(watched)
        if require_watch_completion and (is_watch & ~has_completion).any():
            raise InvalidInputError("completion", "a watch must carry completion when appended")
        if (is_watch & ~has_completion & ~has_watched).any():
            raise InvalidInputError(
                "watched_seconds", "a watch needs watched_seconds or completion"
            )
        for name, given in (("watched_seconds", has_watched), ("completion", has_completion)):
            carried = ~is_watch & given
            if carried.any():
                raise InvalidInputError(
                    name, f"only watch events carry it, not {kinds[carried][0]}"
                )
        is_share = kinds == EngagementKind.SHARE.value
        has_channel = np.fromiter((item is not None for item in channel_items), bool, length)
        if (is_share & ~has_channel).any():
            raise InvalidInputError("channel", "a share needs its channel")
        carried = ~is_share & has_channel
        if carried.any():
            raise InvalidInputError(
                "channel", f"only share events carry it, not {kinds[carried][0]}"
            )
        channels = _objects(channel_items)
        return cls(ids, kinds, users, videos, times, watched, completions, channels, variants)

    def to_events(self) -> list[EngagementEvent]:
        """One :class:`~reelrank.EngagementEvent` per row, in row order (each built and
        validated by the model)."""
        rows = zip(
            self.event_id.tolist(),
            self.kind.tolist(),
            self.user_id.tolist(),
            self.video_id.tolist(),
            self.occurred_at.astype(np.int64).tolist(),
            self.watched_seconds.tolist(),
            self.completion.tolist(),
            self.channel.tolist(),
            self.variant.tolist(),
            strict=True,
        )
        return [
            EngagementEvent(
                event_id=ident,
                kind=EngagementKind(kind),
                user_id=user,
                video_id=video,
                occurred_at=_EPOCH + timedelta(microseconds=micros),
                watched_seconds=None if watched != watched else watched,
                completion=None if completion != completion else completion,
                channel=channel,
                variant=variant,
            )
            for ident, kind, user, video, micros, watched, completion, channel, variant in rows
        ]
