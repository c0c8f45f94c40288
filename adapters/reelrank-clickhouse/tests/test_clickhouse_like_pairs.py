"""Like counts from the pairs that changed since the roll-up (schema version 4): the
migration from version 3 writes the like state of every pair before every watermark,
and a roll-up from before it keeps holding."""

from __future__ import annotations

import pytest
from ch_support import assert_same_statistics
from reelrank_clickhouse import (
    ClickHouseConfig,
    ClickHouseEventStore,
    SchemaVersionError,
    create_schema,
    migrate_schema,
)
from reelrank_clickhouse._client import DriverClients
from reelrank_clickhouse._schema import Tag, _servers
from reelrank_clickhouse.testing import version_3_aggregates_view
from sqlalchemy.engine import Engine
from test_clickhouse_held_arrivals import _batch, _buckets, _deliver, _settled, _store

from reelrank import InMemoryEventStore

_VIDEOS = [1, 2, 3, 4]
_USERS = [1, 2, 3, 4, 5]


def _to_version_3(engine: Engine, config: ClickHouseConfig) -> None:
    """Put the version-3 view in place of the current one, on every server."""
    sharded = config.cluster is not None
    suffix = config.local_suffix if sharded else ""
    with _servers(engine, config if sharded else None) as servers:
        for _, server in servers:
            client = DriverClients(server).writer()
            try:
                client.execute(f"DROP TABLE event_aggregates{suffix}_mv")
                client.execute(
                    version_3_aggregates_view(
                        aggregates=f"event_aggregates{suffix}", events=f"events{suffix}"
                    )
                )
            finally:
                client.disconnect()


def _like_rows_of_bucket_0(store: ClickHouseEventStore) -> int:
    with store._clients.reader() as client:
        return int(
            client.execute(
                f"SELECT count() FROM (SELECT b, c FROM event_aggregates "
                f"WHERE tag = {Tag.FINE_LIKE} AND a = 0 GROUP BY b, c)"
            )[0][0]
        )


def test_version_3_tables_migrate_with_their_roll_up_and_like_states(
    deployment: tuple[Engine, ClickHouseConfig],
) -> None:
    engine, config = deployment
    _to_version_3(engine, config)
    store = _store(engine, config)
    buckets = _buckets(store)
    reference = InMemoryEventStore()
    _deliver(
        store,
        reference,
        _batch(("like", 1, 1), ("like", 2, 1), ("like", 3, 2), ("watch", 1, 1)),
    )
    buckets.next_fine()
    _deliver(store, reference, _batch(("unlike", 1, 1), ("like", 1, 2), ("share", 2, 3)))
    assert store.fold_stats(until=buckets.close_coarse()) == 3
    fold = buckets.coarse
    # After the version-3 roll-up's watermark, before the migration: a re-like, an
    # unlike of a pair liked at the watermark, a new pair.
    _deliver(store, reference, _batch(("like", 1, 1), ("unlike", 3, 2), ("like", 4, 3)))
    with pytest.raises(SchemaVersionError) as info:
        create_schema(engine, config)
    assert info.value.found == 3
    assert migrate_schema(engine, config)
    assert not migrate_schema(engine, config)  # done already
    create_schema(engine, config)
    # One row in bucket 0 per pair with a like or unlike before the migration:
    # (1, 1), (1, 2), (2, 3), (2, 1), (3, 4).
    assert _like_rows_of_bucket_0(store) == 5
    assert_same_statistics(store, reference, _VIDEOS, _USERS, [10])
    assert store._held is not None and store._held.fold == fold  # the old roll-up holds
    _settled(store)
    # After the migration: an unlike of a pair liked at the watermark, a re-like of
    # one unliked since, a like and an unlike of pairs liked since, a new video.
    buckets.next_fine()
    _deliver(
        store,
        reference,
        _batch(("unlike", 2, 1), ("like", 3, 2), ("like", 5, 3), ("unlike", 4, 3)),
    )
    buckets.next_fine()
    _deliver(store, reference, _batch(("like", 5, 4), ("unlike", 1, 2)))
    assert_same_statistics(store, reference, _VIDEOS, _USERS, [10])
    # Hand-worked: video 1 liked by user 1 only, 2 by user 3, 3 by user 5, 4 by user 5.
    assert [store.get_stats(_VIDEOS)[v].likes for v in _VIDEOS] == [1, 1, 1, 1]
    assert store._held.fold == fold
    # A roll-up of the new version over the migrated rows.
    assert store.fold_stats(until=buckets.close_coarse()) == 4
    _deliver(store, reference, _batch(("unlike", 1, 1), ("like", 2, 4)))
    assert_same_statistics(store, reference, _VIDEOS, _USERS, [10])
    assert [store.get_stats(_VIDEOS)[v].likes for v in _VIDEOS] == [0, 1, 1, 2]
