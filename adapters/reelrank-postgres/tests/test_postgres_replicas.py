"""Reads on a streaming replica that applies the primary's changes 500 ms late.

The delay (``recovery_min_apply_delay``) makes a stale replica the normal case rather
than a race, so these tests show which reads may lag and which never do: the replica
lags a fresh write until it replays the primary's WAL position, while the seen store,
which takes no replica, keeps a page served right after another from repeating it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from pg_support import TRUNCATE_ALL, require_postgres
from reelrank_postgres import (
    SqlCatalog,
    SqlEventStore,
    SqlSeenStore,
    SqlStoreConfig,
    connect,
    connect_read,
    migrate,
)
from reelrank_postgres.testing import PostgresReplica, PostgresServer
from sqlalchemy import Engine, text

from reelrank import (
    FeedRankingService,
    FeedServiceConfig,
    InMemoryFeedCache,
    NotFoundError,
    StoreDeadlines,
    StoreError,
)
from reelrank.testing import make_creator, make_event, make_video

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

APPLY_DELAY_SECONDS = 0.5
VIDEOS = 40


@dataclass
class Delayed:
    replica: PostgresReplica
    engine: Engine
    read_engine: Engine


@pytest.fixture(scope="module")
def delayed() -> Iterator[Delayed]:
    """A primary and a replica that applies each commit 500 ms after it, migrated."""
    require_postgres()
    with (
        PostgresServer(settings=PostgresReplica.PRIMARY_SETTINGS) as primary,
        PostgresReplica(primary, apply_delay_seconds=APPLY_DELAY_SECONDS) as replica,
    ):
        config = SqlStoreConfig(url=primary.url, read_url=replica.url)
        engine = connect(config)
        read_engine = connect_read(config)
        assert read_engine is not None
        migrate(engine)
        replica.wait_for_replay()
        yield Delayed(replica, engine, read_engine)
        read_engine.dispose()
        engine.dispose()


@pytest.fixture
def stores(delayed: Delayed) -> Delayed:
    """The delayed pair, emptied and replayed."""
    with delayed.engine.begin() as connection:
        connection.execute(text(TRUNCATE_ALL))
    delayed.replica.wait_for_replay()
    return delayed


def test_replica_reads_lag_a_fresh_write_until_the_wal_position_is_replayed(
    stores: Delayed,
) -> None:
    catalog = SqlCatalog(stores.engine, read_engine=stores.read_engine)
    catalog.put_creator(make_creator(1))
    catalog.put_video(make_video(7, 1))  # the creator check reads on the primary
    catalog.follow(5, 1)
    # Right after the commits the replica has not applied them: a fresh publish and a
    # new follow are not visible yet.
    with pytest.raises(NotFoundError):
        catalog.get_video(7)
    assert catalog.followed_creators(5) == frozenset()
    assert catalog.read_engine is stores.read_engine
    waited = stores.replica.wait_for_replay()
    assert catalog.get_video(7).video_id == 7
    assert catalog.followed_creators(5) == frozenset({1})
    # The wait covered the rest of the apply delay (generous lower bound: the commits
    # and the stale reads above took some of it).
    assert waited > 0.05


def test_event_store_reads_lag_but_append_deduplicates_on_the_primary(stores: Delayed) -> None:
    events = SqlEventStore(stores.engine, read_engine=stores.read_engine)
    event = make_event("watch", video_id=3, completion=0.5)
    assert events.append(event, creator_id=1) is True
    # The duplicate check reads inside the write's transaction, on the primary: the
    # redelivery is refused although the replica has not seen the first delivery.
    assert events.append(event, creator_id=1) is False
    assert events.get_stats([3])[3].views == 0
    assert events.popular_video_ids(limit=5) == []
    stores.replica.wait_for_replay()
    assert events.get_stats([3])[3].views == 1
    assert events.popular_video_ids(limit=5) == [3]


def test_the_seen_store_never_reads_from_the_replica(stores: Delayed) -> None:
    catalog = SqlCatalog(stores.engine, read_engine=stores.read_engine)
    events = SqlEventStore(stores.engine, read_engine=stores.read_engine)
    seen = SqlSeenStore(stores.engine)
    now = datetime.now(UTC)
    for creator in range(1, 4):
        catalog.put_creator(make_creator(creator))
    for video in range(1, VIDEOS + 1):
        catalog.put_video(
            make_video(video, 1 + video % 3, published_at=now - timedelta(minutes=video))
        )
    stores.replica.wait_for_replay()

    def service() -> FeedRankingService:
        return FeedRankingService(
            catalog=catalog,
            events=events,
            seen=seen,
            cache=InMemoryFeedCache(),
            config=FeedServiceConfig(
                cursor_secret="a-test-secret-of-some-length",
                deadlines=StoreDeadlines(catalog=5.0, events=5.0, seen=5.0),
                refresh_pool_in_background=False,
            ),
        )

    with service() as first, service() as second:
        shown = [item.video_id for item in first.feed(9, 10).items]
        # Served right away, within the replica's apply delay: from the first service's
        # cached snapshot (filtered with seen_among) and from a fresh ranking of a
        # service without that snapshot (filtered with recently_seen).
        again = [item.video_id for item in first.feed(9, 10).items]
        fresh = [item.video_id for item in second.feed(9, 10).items]
    with stores.read_engine.connect() as replica:
        on_replica = replica.execute(text("SELECT count(*) FROM seen_videos")).scalar_one()
    # The marks of the first page were not on the replica yet: a seen store reading
    # there would have served the same ten videos again.
    assert on_replica == 0
    assert len(shown) == len(again) == len(fresh) == 10
    assert not set(shown) & set(again)
    assert not set(shown) & set(fresh)


def test_the_read_engine_refuses_writes_even_on_the_primary(stores: Delayed) -> None:
    primary_url = stores.engine.url.render_as_string(hide_password=False)
    read_only = connect_read(SqlStoreConfig(url=primary_url, read_url=primary_url))
    assert read_only is not None
    try:
        with pytest.raises(StoreError) as info:
            SqlCatalog(read_only).put_creator(make_creator(1))
        assert "read-only" in str(info.value.__cause__)
    finally:
        read_only.dispose()


def test_a_write_on_the_replica_fails(stores: Delayed) -> None:
    # Through the replica's own URL, without the read-only session setting.
    on_replica = connect(SqlStoreConfig(url=stores.replica.url))
    try:
        with pytest.raises(StoreError) as info:
            SqlCatalog(on_replica).put_creator(make_creator(1))
        assert "read-only" in str(info.value.__cause__)
    finally:
        on_replica.dispose()
