"""The alembic migrations run up and down on both dialects, and the stores refuse a
database whose schema is not the revision they were written for."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_support import DIALECTS, require_postgres, sqlite_engine
from reelrank_postgres import (
    HEAD_REVISION,
    SchemaVersionError,
    SqlCatalog,
    SqlEngagementLog,
    SqlEventStore,
    SqlModelRegistry,
    SqlProgressStore,
    SqlSearchIndex,
    SqlSeenStore,
    SqlStoreConfig,
    SqlTrendingSnapshotStore,
    check_schema,
    connect,
    downgrade,
    migrate,
    schema_revision,
)
from reelrank_postgres.testing import PostgresServer
from sqlalchemy import Engine, inspect, text

from reelrank import SearchDocument, StoreError, TrendingKind, TrendingSnapshot, parse_query
from reelrank.testing import make_creator, make_event, make_video
from reelrank.testing.factories import EPOCH

pytestmark = pytest.mark.integration

STORES = (
    SqlCatalog,
    SqlEngagementLog,
    SqlEventStore,
    SqlSeenStore,
    SqlModelRegistry,
    SqlProgressStore,
    SqlSearchIndex,
    SqlTrendingSnapshotStore,
)
TABLES = {
    "creators",
    "videos",
    "follows",
    "engagement_events",
    "engagement_log",
    "video_stats",
    "video_likes",
    "affinity_credits",
    "affinity_totals",
    "seen_videos",
    "model_versions",
    "model_scores",
    "processing_progress",
    "search_documents",
    "search_terms",
    "trending_snapshots",
    "trending_leases",
}


@pytest.fixture(scope="module")
def migration_server() -> Iterator[PostgresServer]:
    """A cluster of this module's own: its tests drop and create every table."""
    require_postgres()
    with PostgresServer() as server:
        yield server


@pytest.fixture(params=DIALECTS)
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a database no migration has touched."""
    if request.param == "sqlite":
        engine = sqlite_engine(tmp_path / "empty.db")
    else:
        server: PostgresServer = request.getfixturevalue("migration_server")
        engine = connect(SqlStoreConfig(url=server.url))
        with engine.begin() as connection:  # whatever an earlier test left behind
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    yield engine
    engine.dispose()


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_upgrade_creates_every_table_and_downgrade_drops_them(empty_engine: Engine) -> None:
    assert schema_revision(empty_engine) is None
    migrate(empty_engine)
    assert schema_revision(empty_engine) == HEAD_REVISION
    assert _tables(empty_engine) >= TABLES
    downgrade(empty_engine)
    assert schema_revision(empty_engine) is None
    assert not TABLES & _tables(empty_engine)
    # Up again after down: the revision is repeatable, and the stores work on it.
    migrate(empty_engine)
    catalog = SqlCatalog(empty_engine)
    catalog.put_creator(make_creator(1))
    catalog.put_video(make_video(1, 1))
    assert catalog.get_video(1).video_id == 1


def test_migrate_is_a_no_op_on_a_database_at_the_revision(empty_engine: Engine) -> None:
    migrate(empty_engine)
    catalog = SqlCatalog(empty_engine)
    catalog.put_creator(make_creator(1))
    migrate(empty_engine)
    assert catalog.get_creators([1]) == {1: make_creator(1)}


@pytest.mark.parametrize("store", STORES, ids=lambda store: store.__name__)
def test_stores_refuse_an_unmigrated_database(empty_engine: Engine, store: type) -> None:
    with pytest.raises(SchemaVersionError) as info:
        store(empty_engine)
    assert (info.value.found, info.value.expected) == (None, HEAD_REVISION)
    assert isinstance(info.value, StoreError)
    assert "migrate" in str(info.value)


def test_a_schema_at_an_older_revision_is_refused_until_upgraded(empty_engine: Engine) -> None:
    migrate(empty_engine, "0001")
    assert schema_revision(empty_engine) == "0001"
    assert "engagement_log" not in _tables(empty_engine)
    with pytest.raises(SchemaVersionError) as info:
        check_schema(empty_engine)
    assert (info.value.found, info.value.expected) == ("0001", HEAD_REVISION)
    with pytest.raises(SchemaVersionError):
        SqlEventStore(empty_engine)
    # An application that checked the schema itself may skip the per-store check; the
    # tables of revision 0001 then serve the stores they hold.
    events = SqlEventStore(empty_engine, verify_schema=False)
    events.append(make_event("watch", completion=0.5), creator_id=1)
    # Upgrading keeps the data and adds the engagement log; downgrading one step drops
    # only the log again.
    migrate(empty_engine)
    assert SqlEventStore(empty_engine).get_stats([1])[1].views == 1
    log = SqlEngagementLog(empty_engine)
    assert log.record(make_event("like"))
    downgrade(empty_engine, "0001")
    assert "engagement_log" not in _tables(empty_engine)
    assert events.get_stats([1])[1].views == 1


def test_the_trending_revision_adds_and_drops_only_its_tables(empty_engine: Engine) -> None:
    migrate(empty_engine, "0007")
    SqlCatalog(empty_engine, verify_schema=False).put_creator(make_creator(1))
    assert not {"trending_snapshots", "trending_leases"} & _tables(empty_engine)
    migrate(empty_engine)
    snapshots = SqlTrendingSnapshotStore(empty_engine)
    snapshot = TrendingSnapshot(
        kind=TrendingKind.SOUND, window_hours=24, computed_at=EPOCH, items=()
    )
    snapshots.put_snapshot(snapshot)
    assert snapshots.latest_snapshot(TrendingKind.SOUND, 24) == snapshot
    assert snapshots.acquire_lease(TrendingKind.SOUND, 24, owner="a", seconds=60)
    assert SqlCatalog(empty_engine).get_creators([1]) == {1: make_creator(1)}
    downgrade(empty_engine, "0007")
    assert not {"trending_snapshots", "trending_leases"} & _tables(empty_engine)
    assert SqlCatalog(empty_engine, verify_schema=False).get_creators([1]) == {1: make_creator(1)}


def _indexes_of_videos(engine: Engine) -> set[str]:
    return {index["name"] for index in inspect(engine).get_indexes("videos") if index["name"]}


def test_the_covering_revision_swaps_the_followed_index_and_back(empty_engine: Engine) -> None:
    """0009 replaces the followed read's index with one that holds the sound too (and, on
    PostgreSQL, adds the read's function); down again, the schema is 0008's."""
    postgres = empty_engine.dialect.name == "postgresql"
    function = text("SELECT count(*) FROM pg_proc WHERE proname = 'reelrank_followed_candidates'")
    migrate(empty_engine, "0008")
    catalog = SqlCatalog(empty_engine, verify_schema=False)
    catalog.put_creator(make_creator(1))
    catalog.put_video(make_video(1, 1, sound_id=7))
    catalog.follow(5, 1)
    before = _indexes_of_videos(empty_engine)
    assert "ix_videos_ready_creator_recency" in before
    migrate(empty_engine)
    after = _indexes_of_videos(empty_engine)
    assert after == before - {"ix_videos_ready_creator_recency"} | {
        "ix_videos_ready_creator_recency_sound"
    }
    if postgres:
        with empty_engine.connect() as connection:
            assert connection.execute(function).scalar_one() == 1
    columns = SqlCatalog(empty_engine).followed_candidates(5, limit=10)
    assert (columns.video_ids.tolist(), columns.sound_ids.tolist()) == ([1], [7])
    downgrade(empty_engine, "0008")
    assert _indexes_of_videos(empty_engine) == before
    if postgres:
        with empty_engine.connect() as connection:
            assert connection.execute(function).scalar_one() == 0


def test_a_revision_the_adapter_does_not_know_is_refused(empty_engine: Engine) -> None:
    migrate(empty_engine)
    with empty_engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaVersionError) as info:
        SqlCatalog(empty_engine)
    assert info.value.found == "9999"


def test_an_unknown_target_revision_raises_store_error(empty_engine: Engine) -> None:
    with pytest.raises(StoreError) as info:
        migrate(empty_engine, "9999")
    assert info.value.store == "schema"
    assert info.value.__cause__ is not None
    assert schema_revision(empty_engine) is None


def _has_index(engine: Engine, name: str) -> bool:
    with engine.connect() as connection:
        return bool(
            connection.execute(
                text("SELECT to_regclass(:name) IS NOT NULL"), {"name": name}
            ).scalar()
        )


def test_upgrade_creates_the_rum_index_when_the_server_has_the_extension(
    migration_server: PostgresServer,
) -> None:
    engine = connect(SqlStoreConfig(url=migration_server.url))
    try:
        with engine.begin() as connection:
            available = connection.execute(
                text("SELECT 1 FROM pg_available_extensions WHERE name = 'rum'")
            ).first()
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        if available is None:
            pytest.skip("the rum extension is not installed (scripts/test.sh installs it)")
        migrate(engine)
        assert _has_index(engine, "ix_search_documents_rum")
        assert _has_index(engine, "ix_videos_ready_creator_recency_sound")
        downgrade(engine, "0004")
        assert not _has_index(engine, "ix_search_documents_rum")
        assert _has_index(engine, "ix_videos_creator_recency")
    finally:
        engine.dispose()


def test_a_role_that_may_not_create_rum_migrates_and_searches_without_it(
    migration_server: PostgresServer,
) -> None:
    """RUM is not a trusted extension: an ordinary database owner's migration skips the
    index, and search takes the GIN path with the same matches."""
    admin = connect(SqlStoreConfig(url=migration_server.url))
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("DROP DATABASE IF EXISTS plain_owner_db"))
        connection.execute(text("DROP ROLE IF EXISTS plain_owner"))
        connection.execute(text("CREATE ROLE plain_owner LOGIN NOSUPERUSER"))
        connection.execute(text("CREATE DATABASE plain_owner_db OWNER plain_owner"))
    url = (
        f"postgresql+psycopg://plain_owner@{migration_server.host}:{migration_server.port}"
        "/plain_owner_db"
    )
    engine = connect(SqlStoreConfig(url=url))
    try:
        migrate(engine)
        assert schema_revision(engine) == HEAD_REVISION
        assert not _has_index(engine, "ix_search_documents_rum")
        assert _has_index(engine, "ix_videos_ready_creator_recency_sound")
        index = SqlSearchIndex(engine)
        for video_id, title in [(1, "dance night"), (2, "dance day"), (3, "night drive")]:
            index.index(SearchDocument(video_id=video_id, title=title))
        assert {video for video, _ in index.search(parse_query("dance"), limit=10)} == {1, 2}
        assert {video for video, _ in index.search(parse_query("ni*"), limit=10)} == {1, 3}
    finally:
        engine.dispose()
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("DROP DATABASE plain_owner_db"))
            connection.execute(text("DROP ROLE plain_owner"))
        admin.dispose()
