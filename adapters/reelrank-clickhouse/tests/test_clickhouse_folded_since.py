"""The since-sums folded for bounded-age reads (one sorted array of sums per video over
every held coarse bucket, and the like counts now of the videos liked or unliked
there), against plain-Python references: the sums added bucket by bucket, in bucket
order (so floating-point completion sums come out bit for bit as a read adding chunk by
chunk gets them), and the like counts replayed pair by pair."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from reelrank_clickhouse._event_store import _HeldLikes, _HeldSince, _Sums
from reelrank_clickhouse._schema import FINE_PER_COARSE_BITS

_FOLD = 1_000  # the roll-up's coarse bucket: its watermark
_NAMES = ("views", "completion_sum", "likes", "shares", "comments")

# One coarse bucket's rows: per video, its sums (views, completion, likes and unlikes,
# shares, comments), and per (video, user) pair, its latest like state and events.
_VIDEO_ROWS = st.dictionaries(
    st.integers(1, 12),
    st.tuples(
        st.integers(0, 5),
        st.floats(0.0, 5.0, allow_nan=False),
        st.integers(0, 5),
        st.integers(0, 5),
        st.integers(0, 5),
    ),
    max_size=10,
)
_PAIR_ROWS = st.dictionaries(
    st.tuples(st.integers(1, 12), st.integers(1, 4)),
    st.tuples(st.integers(0, 1), st.integers(1, 3)),
    max_size=12,
)


def _columns(coarse: int, rows: dict[int, tuple[Any, ...]]) -> list[Any]:
    """Rows of ``arrived_between`` for one coarse bucket, in no particular order."""
    ids = sorted(rows, reverse=True)
    return [
        np.full(len(ids), coarse, dtype=np.int64),
        np.array(ids, dtype=np.int64),
        *(
            np.array([rows[video][field] for video in ids], dtype=dtype)
            for field, dtype in enumerate((np.int64, np.float64, np.int64, np.int64, np.int64))
        ),
    ]


def _pair_columns(coarse: int, rows: dict[tuple[int, int], tuple[int, int]]) -> list[Any]:
    """Rows of ``pairs_between`` for one coarse bucket."""
    pairs = sorted(rows)
    return [
        np.full(len(pairs), coarse, dtype=np.int64),
        np.array([video for video, _ in pairs], dtype=np.int64),
        np.array([user for _, user in pairs], dtype=np.int64),
        np.array([rows[pair][0] for pair in pairs], dtype=np.int64),
        np.array([rows[pair][1] for pair in pairs], dtype=np.int64),
    ]


def _held(buckets: list[tuple[dict[int, Any], dict[Any, Any]]], split: bool) -> _HeldSince:
    """The since-sums a store's refreshes build from ``buckets`` (one per coarse bucket
    from the watermark on), each read whole or, with ``split``, in two reads."""
    start = _FOLD << FINE_PER_COARSE_BITS
    since = _HeldSince(start, start, (), _FOLD, 0)
    for offset, (rows, pairs) in enumerate(buckets):
        coarse = _FOLD + offset
        reads = [(rows, pairs)]
        if split:  # the first half of the videos, then the rest with every pair
            first = dict(list(rows.items())[: len(rows) // 2])
            rest = {video: values for video, values in rows.items() if video not in first}
            reads = [(first, {}), (rest, pairs)]
        for read_rows, read_pairs in reads:
            since = since.extended(
                _FOLD,
                (coarse + 1) << FINE_PER_COARSE_BITS,
                _columns(coarse, read_rows) if read_rows else [],
                _pair_columns(coarse, read_pairs),
                0,
            )
    return since


def _reference_sums(
    buckets: list[tuple[dict[int, Any], dict[Any, Any]]], requested: list[int]
) -> dict[str, list[Any]]:
    """Each requested video's sums, added bucket by bucket in bucket order (however
    the store read a bucket: its reads hold disjoint videos)."""
    sums: dict[str, list[Any]] = {name: [] for name in _NAMES}
    for video in requested:
        totals: list[Any] = [0, 0.0, 0, 0, 0]
        for rows, _ in buckets:
            if video in rows:
                for field in range(5):
                    totals[field] += rows[video][field]
        for name, total in zip(_NAMES, totals, strict=True):
            sums[name].append(total)
    return sums


@settings(max_examples=150, deadline=None)
@given(
    buckets=st.lists(st.tuples(_VIDEO_ROWS, _PAIR_ROWS), min_size=1, max_size=4),
    requested=st.lists(st.integers(1, 14), unique=True, min_size=1, max_size=14),
    split=st.booleans(),
)
def test_folded_sums_equal_bucket_by_bucket_sums_bit_for_bit(
    buckets: list[tuple[dict[int, Any], dict[Any, Any]]], requested: list[int], split: bool
) -> None:
    since = _held(buckets, split)
    assert since.folded is not None and since.folded.fold == _FOLD
    ids = np.array(sorted(requested), dtype=np.int64)
    into = _Sums.zeros(ids.shape[0])
    since.add_to(_FOLD, ids, into)
    want = _reference_sums(buckets, sorted(requested))
    for name in _NAMES:
        assert getattr(into, name).tolist() == want[name], name


@settings(max_examples=150, deadline=None)
@given(
    buckets=st.lists(st.tuples(_VIDEO_ROWS, _PAIR_ROWS), min_size=1, max_size=4),
    liked_at_watermark=st.sets(st.tuples(st.integers(1, 12), st.integers(1, 4)), max_size=20),
)
def test_like_counts_equal_a_pair_by_pair_replay(
    buckets: list[tuple[dict[int, Any], dict[Any, Any]]],
    liked_at_watermark: set[tuple[int, int]],
) -> None:
    keys = np.array([video << 32 | user for video, user in liked_at_watermark], dtype=np.int64)
    since = _held(buckets, split=False).with_like_counts(_HeldLikes.of_pairs(_FOLD, keys))
    state = dict.fromkeys(liked_at_watermark, 1)
    marks: dict[int, int] = {}
    for rows, pairs in buckets:
        for pair, (liked, _) in pairs.items():
            state[pair] = liked
        for video, values in rows.items():
            marks[video] = marks.get(video, 0) + values[2]
    changed = sorted({video for _, pairs in buckets for video, _ in pairs})
    counts = since.like_counts(_FOLD)
    assert counts.video_ids.tolist() == changed
    assert counts.likes.tolist() == [
        sum(liked for (video, _), liked in state.items() if video == each) for each in changed
    ]
    assert counts.marks.tolist() == [marks.get(video, 0) for video in changed]
    # For another roll-up, or without liked pairs of the same roll-up: none.
    assert not since.like_counts(_FOLD + 1).video_ids.shape[0]
    other = _held(buckets, split=False).with_like_counts(_HeldLikes.of_pairs(_FOLD - 1, keys))
    assert not other.like_counts(_FOLD).video_ids.shape[0]
