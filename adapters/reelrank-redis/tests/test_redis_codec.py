"""The packed snapshot format: exact round trips, compact floats, refusal of foreign bytes."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reelrank_redis._codec import SnapshotFormatError, decode_snapshot, encode_snapshot

from reelrank import WEIGHT_FIELDS, FeedSnapshot, InvalidInputError
from reelrank.testing.factories import make_snapshot

_HEADER_BYTES = struct.calcsize("<3sBBHIqq")

finite = st.floats(allow_nan=False, allow_infinity=False)
float32_values = st.floats(width=32, allow_nan=False, allow_infinity=False)
tags = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}", fullmatch=True)
moments = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


@st.composite
def snapshots(draw: st.DrawFn, values: st.SearchStrategy[float] = finite) -> FeedSnapshot:
    ids = draw(st.lists(st.integers(1, 2**63 - 1), unique=True, max_size=40))
    width = draw(st.integers(0, 6))
    signals = tuple(f"signal{i}" for i in range(width))
    return FeedSnapshot(
        user_id=draw(st.integers(1, 2**63 - 1)),
        variant=draw(st.none() | tags),
        video_ids=tuple(ids),
        scores=tuple(draw(values) for _ in ids),
        signals=signals,
        contributions=tuple(tuple(draw(values) for _ in signals) for _ in ids),
        created_at=draw(moments),
        config_tag=draw(tags),
    )


# No per-example deadline: a loaded CI machine must not turn a pause into a failure.
@settings(deadline=None)
@given(snapshots())
def test_any_snapshot_round_trips_exactly(snapshot: FeedSnapshot) -> None:
    assert decode_snapshot(encode_snapshot(snapshot)) == snapshot


@settings(deadline=None)
@given(snapshots(float32_values))
def test_float32_values_are_packed_in_four_bytes(snapshot: FeedSnapshot) -> None:
    blob = encode_snapshot(snapshot)
    assert decode_snapshot(blob) == snapshot
    count, width = len(snapshot.video_ids), len(snapshot.signals)
    strings = 2 * 2 + len((snapshot.variant or "").encode()) + len(snapshot.config_tag.encode())
    strings += sum(2 + len(name.encode()) for name in snapshot.signals)
    assert len(blob) == _HEADER_BYTES + strings + 8 * count + 4 * count * (width + 1)


def test_a_value_float32_cannot_hold_switches_to_float64() -> None:
    snapshot = make_snapshot(1, [1, 2], scores=(0.1, 0.05))
    blob = encode_snapshot(snapshot)
    assert blob[4] == 64
    assert decode_snapshot(blob).scores == (0.1, 0.05)


def test_kernel_scores_stay_compact() -> None:
    rng = np.random.default_rng(7)
    count = 500
    scores = np.sort(rng.random(count, dtype=np.float32))[::-1]
    rows = rng.random((count, len(WEIGHT_FIELDS)), dtype=np.float32)
    snapshot = make_snapshot(
        1,
        list(range(1, count + 1)),
        scores=tuple(scores.tolist()),
        contributions=tuple(map(tuple, rows.tolist())),
    )
    blob = encode_snapshot(snapshot)
    assert blob[4] == 32
    assert len(blob) < count * (8 + 4 * 6) + 200
    assert len(blob) < len(snapshot.model_dump_json()) / 3


@pytest.mark.parametrize(
    "mutate",
    [
        lambda blob: blob[:-1],
        lambda blob: blob + b"\x00",
        lambda blob: b"XYZ" + blob[3:],
        lambda blob: blob[:3] + b"\x02" + blob[4:],
        lambda blob: blob[:10],
        lambda blob: b"",
    ],
    ids=["truncated", "trailing", "magic", "format", "header-only", "empty"],
)
def test_foreign_or_damaged_bytes_are_refused(mutate: object) -> None:
    blob = encode_snapshot(make_snapshot(1, [1, 2, 3]))
    with pytest.raises(SnapshotFormatError):
        decode_snapshot(mutate(blob))  # type: ignore[operator]


def test_a_signal_name_too_long_to_pack_is_refused_by_name() -> None:
    snapshot = make_snapshot(1, [1], signals=("x" * 70_000,), contributions=((0.5,),))
    with pytest.raises(InvalidInputError) as info:
        encode_snapshot(snapshot)
    assert info.value.field == "signals"
