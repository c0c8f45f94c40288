"""The service's trending results live in a store every worker shares (the SQL database,
or Redis when one is configured): what one worker computed, another serves, until
``trending_reuse_seconds`` have passed."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from reelrank_postgres import SqlTrendingSnapshotStore

from reelrank import Trending, TrendingConfig, TrendingKind
from reelrank.testing import make_event

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "flask_app"))

from reelrank_example import (
    FIRST_USER_ID,
    FIRST_VIDEO_ID,
    Settings,
    build_services,
    configured_stores,
    migrate,
    seed_synthetic_catalog,
)

NOW = datetime.now(UTC).replace(microsecond=0)
SMALL = {"videos": 40, "pending_videos": 0, "users": 5, "events": 150, "creators": 8}


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from reelrank_redis.testing import RedisServer, find_redis_server

    if find_redis_server() is None:
        pytest.skip("redis-server is needed (scripts/test.sh installs it)")
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


def _settings(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, **extra: Any
) -> Settings:
    urls = {"database_url": f"sqlite:///{tmp_path / 'service.db'}"}
    if backend == "redis":
        urls["redis_url"] = request.getfixturevalue("redis_url")
    return Settings(**urls, **SMALL, **extra)


def _workers(settings: Settings, request: pytest.FixtureRequest) -> list[Any]:
    """Two services on the same stores, as two worker processes would build them."""
    workers = []
    for _ in range(2):
        services = build_services(configured_stores(settings), settings)
        request.addfinalizer(services.close)
        workers.append(services)
    return workers


def _seed(settings: Settings) -> None:
    migrate(settings)
    stores = configured_stores(settings)
    try:
        seed_synthetic_catalog(stores, settings, now=NOW)
    finally:
        for close in stores.closers:
            close()


@pytest.mark.parametrize("backend", ["sql", pytest.param("redis", marks=pytest.mark.integration)])
def test_a_worker_serves_what_another_computed_until_the_reuse_interval_ends(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # Computing during the request once the snapshot is too old to reuse (refreshing
    # ahead is tested below).
    settings = _settings(backend, request, tmp_path, trending_refresh_ahead_seconds=0.0)
    assert settings.trending_reuse_seconds == 60.0
    _seed(settings)
    first, second = _workers(settings, request)
    if backend == "sql":
        assert isinstance(first.stores.trending_snapshots, SqlTrendingSnapshotStore)
    else:
        assert type(first.stores.trending_snapshots).__name__ == "RedisTrendingSnapshotStore"

    computed = first.trending.top(TrendingKind.HASHTAG, now=NOW, limit=10)
    assert computed.items
    # A new share lands in the shared log; within the interval the other worker still
    # serves the stored snapshot (it does not compute one of its own)...
    first.stores.log.record(
        make_event("share", user_id=FIRST_USER_ID, video_id=FIRST_VIDEO_ID, occurred_at=NOW)
    )
    later = NOW + timedelta(seconds=59)
    assert second.trending.top(TrendingKind.HASHTAG, now=later, limit=10) == computed
    # ...and past it computes afresh from the log (the share included) and stores that
    # for every worker.
    past = NOW + timedelta(seconds=61)
    fresh = second.trending.top(TrendingKind.HASHTAG, now=past, limit=10)
    reference = Trending(
        first.stores.catalog, first.stores.log, config=TrendingConfig(reuse_seconds=0)
    )
    assert fresh == reference.top(TrendingKind.HASHTAG, now=past, limit=10)
    assert first.trending.top(TrendingKind.HASHTAG, now=past, limit=10) == fresh


@pytest.mark.parametrize("backend", ["sql", pytest.param("redis", marks=pytest.mark.integration)])
def test_past_the_reuse_interval_a_worker_serves_the_snapshot_and_refreshes_it_for_all(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    settings = _settings(backend, request, tmp_path)
    assert settings.trending_refresh_ahead_seconds == 300.0
    _seed(settings)
    first, second = _workers(settings, request)
    computed = first.trending.top(TrendingKind.HASHTAG, now=NOW, limit=10)
    first.stores.log.record(
        make_event("share", user_id=FIRST_USER_ID, video_id=FIRST_VIDEO_ID, occurred_at=NOW)
    )
    # Past the interval, within the refresh-ahead bound: the stored snapshot, at once...
    past = NOW + timedelta(seconds=61)
    assert second.trending.top(TrendingKind.HASHTAG, now=past, limit=10) == computed
    # ...while the worker computes the next one (the share included) in the background,
    # under the store's lease, and stores it for every worker.
    second.trending._refreshing[(TrendingKind.HASHTAG, 24.0)].result(timeout=60)
    reference = Trending(
        first.stores.catalog, first.stores.log, config=TrendingConfig(reuse_seconds=0)
    )
    expected = reference.top(TrendingKind.HASHTAG, now=past, limit=10)
    assert expected != computed
    assert first.trending.top(TrendingKind.HASHTAG, now=past, limit=10) == expected
    assert first.stores.trending_snapshots.acquire_lease(  # given back
        TrendingKind.HASHTAG, 24.0, owner="next", seconds=30
    )


def test_reuse_zero_computes_in_every_worker(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    settings = _settings("sql", request, tmp_path, trending_reuse_seconds=0.0)
    _seed(settings)
    first, second = _workers(settings, request)
    computed = first.trending.top(TrendingKind.SOUND, now=NOW, limit=10)
    later = NOW + timedelta(seconds=1)
    assert second.trending.top(TrendingKind.SOUND, now=later, limit=10).computed_at == later
    assert computed.computed_at == NOW
