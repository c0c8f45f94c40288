"""``append_columns``: events given as columns are applied exactly once per id, as
``append_many`` applies pairs, and a bad column is refused by name with nothing
stored."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from ch_support import Pair, as_columns, assert_same_statistics, reference_of, workload
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reelrank_clickhouse import ClickHouseConfig, ClickHouseEventStore
from sqlalchemy.engine import Engine

from reelrank import EngagementKind, InvalidInputError
from reelrank.testing import EPOCH, make_event

pytestmark = pytest.mark.integration

_prefixes = itertools.count()


def test_columns_count_like_pairs_and_redeliveries_are_refused(
    deployment: tuple[Engine, ClickHouseConfig],
) -> None:
    engine, config = deployment
    store = ClickHouseEventStore(engine, tables=config.tables)
    prefix = f"columns-{next(_prefixes)}"
    first, second = workload(f"{prefix}-a"), workload(f"{prefix}-b")
    assert store.append_columns(**as_columns(first)) == len(first)
    assert store.append_columns(**as_columns(first)) == 0
    assert store.append_many(first) == 0
    # Repeats within a batch count once; the first occurrence is the one applied.
    assert store.append_columns(**as_columns([*second, *second[:7], *first[:3]])) == len(second)
    assert store.append_many(second) == 0
    reference = reference_of([first, second])
    assert_same_statistics(store, reference, range(1, 6), range(1, 7), [10, 11, 12])


def test_columns_from_a_frame_with_missing_values_as_nan_and_none(
    clickhouse_engine: Engine,
) -> None:
    pandas = pytest.importorskip("pandas")
    pairs: list[Pair] = [
        (make_event("watch", video_id=1, completion=0.25, watched_seconds=3.0), 10),
        (make_event("watch", video_id=1, completion=1.0), 10),
        (make_event("share", video_id=1, channel="link"), 10),
        (make_event("like", user_id=2, video_id=1, variant="b"), 10),
        (make_event("comment", video_id=2), 11),
    ]
    frame = pandas.DataFrame(as_columns(pairs))
    frame["occurred_at"] = frame["occurred_at"].dt.tz_localize("UTC")
    store = ClickHouseEventStore(clickhouse_engine)
    columns = {name: frame[name].to_numpy() for name in frame.columns}
    columns["occurred_at"] = frame["occurred_at"].dt.tz_convert("UTC").dt.tz_localize(None)
    assert store.append_columns(**columns) == len(pairs)
    assert store.append_many(pairs) == 0
    assert_same_statistics(store, reference_of([pairs]), [1, 2], [1, 2], [10, 11])
    # Events read back equal the ones given.
    with store._clients.reader() as client:
        rows = client.execute(
            "SELECT event_id, watched_seconds, completion, channel, variant, occurred_us "
            "FROM events ORDER BY event_id"
        )
    expected = sorted(
        (e.event_id, e.watched_seconds, e.completion, e.channel, e.variant, 0) for e, _ in pairs
    )
    assert sorted(rows) == expected


def _good() -> dict[str, Any]:
    return as_columns(
        [
            (make_event("watch", completion=0.5), 1),
            (make_event("share", channel="link"), 1),
        ]
    )


@pytest.mark.parametrize(
    ("column", "bad"),
    [
        ("event_id", ["ok-1", "not an id!"]),
        ("event_id", ["ok-1", 7]),
        ("kind", ["watch", "stare"]),
        ("user_id", [1, 0]),
        ("user_id", [1.0, 2.0]),
        ("video_id", [1, -3]),
        ("creator_id", np.array([1, 2**63], dtype=np.uint64)),
        ("creator_id", [1]),  # one value short
        ("occurred_at", ["2026-01-01", "2026-01-02"]),
        ("occurred_at", np.array(["2026-01-01", "NaT"], dtype="datetime64[s]")),
        ("occurred_at", np.array(["1969-12-31", "2026-01-01"], dtype="datetime64[s]")),
        ("completion", [1.5, np.nan]),
        ("completion", [np.nan, np.nan]),  # a watch without completion
        ("completion", [0.5, 0.5]),  # a share with completion
        ("watched_seconds", [-1.0, np.nan]),
        ("watched_seconds", [np.inf, np.nan]),
        ("watched_seconds", [1.0, 2.0]),  # a share with watched seconds
        ("channel", [None, None]),  # a share without its channel
        ("channel", ["link", "link"]),  # a watch with a channel
        ("channel", [None, "no spaces"]),
        ("variant", ["-leading-dash", None]),
    ],
)
def test_a_bad_column_is_refused_by_name_and_nothing_is_stored(
    clickhouse_engine: Engine, column: str, bad: Any
) -> None:
    store = ClickHouseEventStore(clickhouse_engine)
    columns = _good()
    columns[column] = bad
    with pytest.raises(InvalidInputError) as info:
        store.append_columns(**columns)
    assert info.value.field == column
    assert store.get_stats([1])[1].views == 0
    assert store.append_columns(**_good()) == 2  # the good batch is applied in full


def test_an_empty_batch_applies_nothing(clickhouse_engine: Engine) -> None:
    store = ClickHouseEventStore(clickhouse_engine)
    assert store.append_columns(**as_columns([])) == 0


_KINDS = [EngagementKind.WATCH, EngagementKind.SHARE, EngagementKind.COMMENT]


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    deliveries=st.lists(
        st.tuples(st.booleans(), st.lists(st.integers(min_value=0, max_value=30), max_size=12)),
        min_size=1,
        max_size=5,
    )
)
def test_a_stream_with_duplicates_through_both_methods_matches_the_reference(
    clickhouse_engine: Engine, deliveries: list[tuple[bool, list[int]]]
) -> None:
    # Each example has ids, videos, a user and a creator of its own in the test's tables.
    example = next(_prefixes)
    base = 1_000 * (example + 1)
    store = ClickHouseEventStore(clickhouse_engine)

    def pair(n: int) -> Pair:
        kind = _KINDS[n % 3]
        extra: dict[str, Any] = {"completion": (n % 4) / 4} if kind is EngagementKind.WATCH else {}
        event = make_event(
            kind,
            user_id=base,
            video_id=base + n % 3,
            occurred_at=EPOCH + timedelta(minutes=7 * n),
            **extra,
        )
        return event.model_copy(update={"event_id": f"mixed-{example}-{n}"}), base

    seen: set[int] = set()
    batches = []
    for as_frame, numbers in deliveries:
        batch = [pair(n) for n in numbers]
        batches.append(batch)
        new = len(set(numbers) - seen)
        seen |= set(numbers)
        if as_frame:
            assert store.append_columns(**as_columns(batch)) == new
        else:
            assert store.append_many(batch) == new
    # The examples share the test's tables, so the popular order (of every video) is
    # not compared here; the first test compares it.
    reference = reference_of(batches)
    videos = [base, base + 1, base + 2]
    assert store.get_stats(videos) == pytest.approx(reference.get_stats(videos))
    assert store.get_affinities(base, [base]) == pytest.approx(
        reference.get_affinities(base, [base])
    )
