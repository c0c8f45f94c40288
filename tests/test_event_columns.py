"""EngagementEventColumns: the columns are accepted exactly when every row is a valid
EngagementEvent, with the model's values, and a bad column is named as the model names
the field (a differential test against the model); plus the column forms it takes."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from reelrank import (
    MAX_ID,
    EngagementEvent,
    EngagementEventColumns,
    EngagementKind,
    InvalidInputError,
)
from reelrank.stores.adapter import check_id_column

_FIELDS = (
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
_KINDS = [kind.value for kind in EngagementKind]
_MISSING = object()  # a missing optional value: None for the model, None or NaN in a column


_zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12, minutes=-30))]
)
_VALID: dict[str, st.SearchStrategy[Any]] = {
    "event_id": st.from_regex(r"[A-Za-z0-9_.:\-]{1,128}", fullmatch=True),
    "kind": st.sampled_from(_KINDS),
    "user_id": st.integers(1, MAX_ID) | st.sampled_from([1, MAX_ID]),
    "video_id": st.integers(1, MAX_ID) | st.sampled_from([1, MAX_ID]),
    "occurred_at": st.datetimes(timezones=_zones),
    "watched_seconds": st.floats(min_value=0.0, max_value=1e12)
    | st.integers(0, 10**6)
    | st.booleans(),
    "completion": st.floats(min_value=0.0, max_value=1.0) | st.sampled_from([0, 1, True]),
    "channel": st.from_regex(r"[A-Za-z0-9_.\-]{1,64}", fullmatch=True),
    "variant": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}", fullmatch=True),
}
"""Values the model takes for each field, in the forms a column holds them."""
_bad_ids = st.sampled_from([0, -1, MAX_ID + 1, 2**64]) | st.sampled_from(
    [True, False, 1.0, None, "1"]
)
_INVALID: dict[str, st.SearchStrategy[Any]] = {
    "event_id": st.sampled_from(["", "has space", "x" * 129, "ok\n", "é", None, 7]),
    "kind": st.sampled_from(["stare", "", "WATCH", None, 1]),
    "user_id": _bad_ids,
    "video_id": _bad_ids,
    "occurred_at": st.datetimes() | st.sampled_from([None, "2026-01-01"]),
    "watched_seconds": st.floats(max_value=0.0, exclude_max=True)
    | st.sampled_from([-1, math.inf, "x"]),
    "completion": st.floats(min_value=1.0, exclude_min=True)
    | st.floats(max_value=0.0, exclude_max=True)
    | st.sampled_from([2, -1]),
    "channel": st.sampled_from(["no spaces", "", "x" * 65, 7]),
    "variant": st.sampled_from(["-leading-dash", "", "x" * 65, 7]),
}
"""Values the model refuses for each field (mostly: the expected outcome is the
model's, whatever the value; NaN is left out, as a column reads it as no value)."""
_OPTIONAL = ("watched_seconds", "completion", "channel", "variant")


@st.composite
def _rows(draw: st.DrawFn) -> dict[str, Any]:
    """One event's fields as given to the model, nearly always valid; ``_MISSING`` for
    an optional value left out."""
    row = {name: draw(_VALID[name]) for name in _FIELDS}
    kind = row["kind"]
    if kind != "watch":
        row["watched_seconds"] = row["completion"] = _MISSING
    else:
        # Now and then neither: a watch the model refuses.
        left_out = draw(st.sampled_from([(), ("watched_seconds",), ("completion",)]))
        if draw(st.integers(0, 9)) == 0:
            left_out = ("watched_seconds", "completion")
        for name in left_out:
            row[name] = _MISSING
    if kind != "share":
        row["channel"] = _MISSING
    if draw(st.booleans()):
        row["variant"] = _MISSING
    return row


@st.composite
def _batches(draw: st.DrawFn, fault: str | None) -> list[dict[str, Any]]:
    """A few events, one of them with a fault in the field ``fault``: a value the model
    refuses, or an optional value added or left out (which breaks a rule between
    fields); a second fault anywhere now and then."""
    rows = draw(st.lists(_rows(), min_size=0 if fault is None else 1, max_size=5))
    faults = [] if fault is None else [fault]
    if rows and draw(st.integers(0, 3)) == 0:
        faults.append(draw(st.sampled_from(_FIELDS)))
    for name in faults:
        carrying = [row for row in rows if row[name] is not _MISSING]
        lacking = [row for row in rows if row[name] is _MISSING]
        change = draw(st.sampled_from(["value", "leave out", "add"]))
        if name in _OPTIONAL and change == "leave out" and carrying:
            draw(st.sampled_from(carrying))[name] = _MISSING
        elif name in _OPTIONAL and change == "add" and lacking:
            draw(st.sampled_from(lacking))[name] = draw(_VALID[name])
        else:
            draw(st.sampled_from(carrying or rows))[name] = draw(_INVALID[name])
    return rows


def _model_error(row: dict[str, Any], require_watch_completion: bool) -> str | None:
    """The field the model names for ``row`` (with the store's rule that a watch carries
    its completion when asked), or ``None`` if the row is a valid event."""
    given = {name: value for name, value in row.items() if value is not _MISSING}
    try:
        EngagementEvent(**given)
    except InvalidInputError as exc:
        # A field's own rule comes before the store's rule; the model's cross-field
        # rules come after it.
        own_rule = exc.reason.startswith(("a watch needs", "only ", "a share needs"))
        if require_watch_completion and own_rule and _watch_without_completion(row):
            return "completion"
        return exc.field
    if require_watch_completion and _watch_without_completion(row):
        return "completion"
    return None


def _watch_without_completion(row: dict[str, Any]) -> bool:
    return row["kind"] == "watch" and row["completion"] is _MISSING


def _column(name: str, values: list[Any], as_numpy: bool, draw: st.DrawFn) -> Any:
    """The column of ``values`` as a list, or as numpy would hold a frame's column where
    its values allow, a missing value given as ``None`` or NaN."""
    missing = [value is _MISSING for value in values]
    if name in _OPTIONAL:
        values = [
            (draw(st.sampled_from([None, math.nan])) if gone else value)
            for value, gone in zip(values, missing, strict=True)
        ]
    if not as_numpy:
        return values
    present = [value for value in values if value is not None and value == value]
    if name in ("user_id", "video_id") and all(
        type(value) is int and 1 <= value <= MAX_ID for value in values
    ):
        return np.array(values, dtype=np.int64)
    if name == "occurred_at" and all(
        isinstance(value, datetime) and value.tzinfo is not None for value in values
    ):
        try:
            utc = [value.astimezone(UTC).replace(tzinfo=None) for value in values]
        except OverflowError:  # out of the datetime range in UTC: given as they are
            return np.array(values, dtype=object)
        return np.array(utc, dtype="datetime64[us]")
    if name in ("watched_seconds", "completion") and all(
        isinstance(value, float) for value in present
    ):
        return np.array([math.nan if value is None else value for value in values])
    if name == "kind" and all(isinstance(value, str) for value in values):
        return np.array(values)
    return np.array(values, dtype=object)


@pytest.mark.parametrize("fault", [None, *_FIELDS])
@settings(max_examples=100, deadline=None)
@given(as_numpy=st.booleans(), require_watch_completion=st.booleans(), data=st.data())
def test_columns_are_accepted_exactly_when_each_row_is_a_valid_event(
    fault: str | None, as_numpy: bool, require_watch_completion: bool, data: st.DataObject
) -> None:
    rows = data.draw(_batches(fault))
    columns = {
        name: _column(name, [row[name] for row in rows], as_numpy, data.draw) for name in _FIELDS
    }
    named = {_model_error(row, require_watch_completion) for row in rows} - {None}
    try:
        built = EngagementEventColumns.from_arrays(
            **columns, require_watch_completion=require_watch_completion
        )
    except InvalidInputError as exc:
        event(f"refused, naming {exc.field}")
        assert named, f"refused valid events: {exc}"
        assert exc.field in named
        return
    event("accepted")
    assert not named, f"accepted invalid events ({named})"
    models = [
        EngagementEvent(**{name: value for name, value in row.items() if value is not _MISSING})
        for row in rows
    ]
    assert built.to_events() == models
    assert len(built) == len(rows)
    assert built.event_id.tolist() == [model.event_id for model in models]
    assert built.kind.tolist() == [model.kind.value for model in models]
    assert built.occurred_at.tolist() == [
        model.occurred_at.replace(tzinfo=None) for model in models
    ]


def _good(**overrides: Any) -> dict[str, Any]:
    columns: dict[str, Any] = {
        "event_id": ["a", "b", "c"],
        "kind": ["watch", "share", "like"],
        "user_id": [1, 2, 3],
        "video_id": [4, 5, 6],
        "occurred_at": np.array(["2026-01-01", "2026-01-02", "2026-01-03"], "datetime64[s]"),
        "watched_seconds": [3.5, None, None],
        "completion": [0.5, np.nan, np.nan],
        "channel": [None, "link", np.nan],
        "variant": [None, "b", None],
    }
    columns.update(overrides)
    return columns


def test_the_arrays_are_typed_read_only_copies() -> None:
    users = np.array([1, 2, 3])
    built = EngagementEventColumns.from_arrays(**_good(user_id=users))
    users[0] = 99
    assert built.user_id.tolist() == [1, 2, 3]
    assert built.user_id.dtype == np.int64
    assert built.occurred_at.dtype == np.dtype("datetime64[us]")
    assert built.channel.tolist() == [None, "link", None]
    for name in _FIELDS:
        with pytest.raises(ValueError, match="read-only"):
            getattr(built, name)[0] = getattr(built, name)[1]
    assert built == EngagementEventColumns.from_arrays(**_good())
    assert repr(built) == "EngagementEventColumns(3 events)"


def test_optional_columns_may_be_left_out_and_an_empty_batch_is_empty() -> None:
    built = EngagementEventColumns.from_arrays(
        event_id=["x"],
        kind=["like"],
        user_id=[1],
        video_id=[2],
        occurred_at=_good()["occurred_at"][:1],
    )
    assert built.to_events()[0].completion is None
    empty = EngagementEventColumns.from_arrays(
        event_id=[], kind=[], user_id=[], video_id=[], occurred_at=[]
    )
    assert len(empty) == 0 and empty.to_events() == []


def test_a_time_zone_aware_frame_column_is_taken_in_utc() -> None:
    pandas = pytest.importorskip("pandas")
    times = pandas.Series(
        pandas.to_datetime(["2026-01-01 02:00", "2026-01-01 03:00", "2026-01-01 04:00"])
    ).dt.tz_localize("Europe/Paris")
    built = EngagementEventColumns.from_arrays(**_good(occurred_at=times))
    assert [event.occurred_at for event in built.to_events()] == [
        datetime(2026, 1, 1, hour, tzinfo=UTC) for hour in (1, 2, 3)
    ]


@pytest.mark.parametrize(
    ("column", "bad"),
    [
        ("event_id", ["a", "b", "a b"]),
        ("kind", np.array(["watch", "share", "stare"])),
        ("user_id", [1, 2]),  # one value short
        ("user_id", np.array([[1, 2, 3]])),
        ("video_id", [4, True, 6]),
        ("occurred_at", np.array(["2026-01-01", "NaT", "2026-01-01"], "datetime64[s]")),
        ("occurred_at", np.array(["10000-01-01", "2026-01-01", "2026-01-01"], "datetime64[s]")),
        ("occurred_at", ["2026-01-01T00:00:00Z"] * 3),  # text is not parsed
        ("completion", [1.5, None, None]),
        ("channel", [None, None, None]),  # a share without its channel
    ],
)
def test_a_bad_column_is_named(column: str, bad: Any) -> None:
    with pytest.raises(InvalidInputError) as info:
        EngagementEventColumns.from_arrays(**_good(**{column: bad}))
    assert info.value.field == column


def test_the_store_rule_names_completion_before_the_model_rule() -> None:
    columns = _good(watched_seconds=[None] * 3, completion=[None] * 3)
    with pytest.raises(InvalidInputError) as info:
        EngagementEventColumns.from_arrays(**columns)
    assert info.value.field == "watched_seconds"
    with pytest.raises(InvalidInputError) as info:
        EngagementEventColumns.from_arrays(**columns, require_watch_completion=True)
    assert (info.value.field, info.value.reason) == (
        "completion",
        "a watch must carry completion when appended",
    )


@pytest.mark.parametrize(
    "bad",
    [[1, 0], [True, 2], [1.0], ["1"], np.array([1, 2**63], dtype=np.uint64), [[1]], [1, None]],
)
def test_check_id_column_refuses_what_check_id_refuses(bad: Any) -> None:
    with pytest.raises(InvalidInputError) as info:
        check_id_column("creator_id", bad)
    assert info.value.field == "creator_id"


def test_check_id_column_takes_ids_of_any_integer_dtype() -> None:
    ids = check_id_column("creator_id", np.array([1, MAX_ID], dtype=np.uint64))
    assert ids.dtype == np.int64 and ids.tolist() == [1, MAX_ID]
    assert check_id_column("creator_id", []).tolist() == []
    assert not ids.flags.writeable
