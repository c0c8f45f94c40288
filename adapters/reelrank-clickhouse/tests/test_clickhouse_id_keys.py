"""Schema version 3 keys the id rows by the second of the event's time: the duplicate
checks look ids up by ranges of seconds, and tables of version 2 (ids keyed by the
hour) migrate without rewriting a row, their ids still found by the checks."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta

import pytest
from ch_support import Pair, assert_same_statistics, reference_of, workload
from hypothesis import given
from hypothesis import strategies as st
from reelrank_clickhouse import (
    SCHEMA_VERSION,
    ClickHouseConfig,
    ClickHouseEventStore,
    SchemaVersionError,
    create_schema,
    migrate_schema,
)
from reelrank_clickhouse._event_store import _MOST_SECOND_RANGES, _second_ranges
from reelrank_clickhouse._schema import _layout, _servers
from sqlalchemy import text
from sqlalchemy.engine import Engine

_RANGE = r"a BETWEEN (\d+) AND (\d+)"


def _ranges(condition: str) -> list[tuple[int, int]]:
    return [(int(low), int(high)) for low, high in re.findall(_RANGE, condition)]


@given(st.lists(st.integers(min_value=0, max_value=4_000_000_000), min_size=1, max_size=300))
def test_second_ranges_cover_every_second_in_few_ordered_ranges(seconds: list[int]) -> None:
    ranges = _ranges(_second_ranges(seconds))
    assert 1 <= len(ranges) <= _MOST_SECOND_RANGES
    assert all(low <= high for low, high in ranges)
    assert all(high < low for (_, high), (low, _) in itertools.pairwise(ranges))
    assert all(any(low <= second <= high for low, high in ranges) for second in seconds)
    # Nothing below or above the batch's own seconds is read.
    assert ranges[0][0] == min(seconds) and ranges[-1][1] == max(seconds)


def test_second_ranges_of_contiguous_seconds_are_one_range() -> None:
    assert _ranges(_second_ranges([7, 5, 6, 5, 9, 8])) == [(5, 9)]
    assert _ranges(_second_ranges([1, 2, 10, 11])) == [(1, 2), (10, 11)]


def _version_2_view(engine: Engine, config: ClickHouseConfig | None) -> None:
    """Replace the aggregate view on every server with the version-2 one: id rows keyed
    by the hour of the event's time."""
    layout = _layout(config)
    view = layout.aggregates_view().replace(
        "toUInt64(toUInt32(occurred_at))", "toUInt64(intDiv(toUInt32(occurred_at), 3600))"
    )
    assert view != layout.aggregates_view()
    with _servers(engine, config) as servers:
        for _, server in servers:
            with server.connect() as connection:
                connection.execute(text(f"DROP TABLE {layout.local(layout.tables.aggregates)}_mv"))
                connection.execute(text(view))


def _at(pairs: list[Pair], at: datetime) -> list[Pair]:
    """The pairs with their events' times spread over the two hours from ``at``."""
    return [
        (event.model_copy(update={"occurred_at": at + timedelta(seconds=97 * n)}), creator)
        for n, (event, creator) in enumerate(pairs)
    ]


def test_version_2_tables_migrate_and_their_ids_are_still_found(
    deployment: tuple[Engine, ClickHouseConfig],
) -> None:
    engine, config = deployment
    sharded = config if config.cluster is not None else None
    _version_2_view(engine, sharded)
    store = ClickHouseEventStore(engine, tables=config.tables)
    at = datetime(2026, 3, 1, 10, 0, 1, tzinfo=UTC)
    before = _at(workload("v2"), at)
    assert store.append_many(before) == len(before)
    with pytest.raises(SchemaVersionError) as info:
        create_schema(engine, sharded)
    assert info.value.found == 2 and SCHEMA_VERSION == 3
    assert migrate_schema(engine, sharded)
    assert not migrate_schema(engine, sharded)  # done already
    create_schema(engine, sharded)
    # Redelivered after the migration: every id is found under its hour.
    assert store.append_many(before) == 0
    after = _at(workload("v3"), at)
    assert store.append_many([*after, *before[:10]]) == len(after)
    assert store.append_many(after) == 0  # found under their seconds
    # A copy stored under each key, as two writers racing across the migration would
    # leave it: counted once once reconciled.
    raced = before[:3]
    with engine.connect() as connection:
        names = ", ".join(f"'{event.event_id}'" for event, _ in raced)
        connection.execute(
            text(
                f"INSERT INTO {config.tables.events} SELECT * FROM {config.tables.events} "
                f"WHERE event_id IN ({names})"
            )
        )
    assert store.reconcile(since=at) == len(raced)
    reference = reference_of([before, after])
    assert_same_statistics(store, reference, [1, 2, 3, 4], [1, 2, 3, 4, 5], [10, 11])
