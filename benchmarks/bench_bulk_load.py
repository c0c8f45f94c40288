"""Loading a catalog into PostgreSQL 15: ``reelrank_postgres.bulk_load`` (``COPY``) against
the per-row API (``SqlCatalog.put_video`` + ``VideoSearch.index_video``) in the same run.

Both write the same videos with their search documents and term counts. The bulk load
writes the whole catalog (100,000 videos; 2,000 in quick mode) into an empty database;
the per-row API, far slower, writes the first 5,000 (500) of the same videos into
another empty database, and its rate is reported per video. The summary line gives
videos/s of each and their ratio. Skips without the PostgreSQL server binaries.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import QUICK, SUMMARY

from reelrank import Creator, Rendition, Video, VideoSearch

reelrank_postgres = pytest.importorskip("reelrank_postgres")
pg_testing = pytest.importorskip("reelrank_postgres.testing")

if pg_testing.find_postgres_bin() is None:
    pytest.skip("PostgreSQL server binaries are not installed", allow_module_level=True)

VIDEOS = 2_000 if QUICK else 100_000
PER_ROW_VIDEOS = 500 if QUICK else 5_000
CREATORS = 1_000
_WORDS = ("dance", "cook", "travel", "tiny", "epic", "daily", "trick", "story", "beat", "mix")


def _catalog() -> tuple[list[Creator], list[Video]]:
    now = datetime.now(UTC)
    creators = [
        Creator(creator_id=n, handle=f"maker_{n}", display_name=f"Creator {n}")
        for n in range(1, CREATORS + 1)
    ]
    videos = [
        Video(
            video_id=n,
            creator_id=1 + n % CREATORS,
            duration_seconds=10.0 + n % 50,
            published_at=now - timedelta(seconds=n),
            title=f"{_WORDS[n % 10]} {_WORDS[n // 10 % 10]} {_WORDS[n // 100 % 10]} {n % 997}",
            description=f"video {n}",
            hashtags=(_WORDS[n % 7], _WORDS[n % 3]),
            sound_id=n % 40 or None,
            renditions=(
                Rendition(
                    width=640,
                    height=360,
                    bitrate_kbps=800,
                    codec="avc1.64001f",
                    uri=f"https://cdn.example.com/{n}/360p.m3u8",
                ),
            ),
        )
        for n in range(1, VIDEOS + 1)
    ]
    return creators, videos


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    with pg_testing.PostgresServer() as running:
        yield running


def _fresh_engine(server: Any, name: str) -> Any:
    admin = reelrank_postgres.connect(reelrank_postgres.SqlStoreConfig(url=server.url))
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        from sqlalchemy import text

        connection.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        connection.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    url = server.url.rsplit("/", 1)[0] + f"/{name}"
    engine = reelrank_postgres.connect(
        reelrank_postgres.SqlStoreConfig(url=url, statement_timeout_seconds=600)
    )
    reelrank_postgres.migrate(engine)
    return engine


def test_bulk_load_against_the_per_row_api(server: Any) -> None:
    creators, videos = _catalog()

    bulk_engine = _fresh_engine(server, "bulk")
    started = time.perf_counter()
    reelrank_postgres.bulk_load(bulk_engine, creators=creators, videos=videos)
    bulk_seconds = time.perf_counter() - started
    bulk_engine.dispose()

    row_engine = _fresh_engine(server, "per_row")
    catalog = reelrank_postgres.SqlCatalog(row_engine)
    search = VideoSearch(reelrank_postgres.SqlSearchIndex(row_engine))
    by_id = {creator.creator_id: creator for creator in creators}
    started = time.perf_counter()
    for creator in creators:
        catalog.put_creator(creator)
    for video in videos[:PER_ROW_VIDEOS]:
        catalog.put_video(video)
        search.index_video(video, creator=by_id[video.creator_id])
    row_seconds = time.perf_counter() - started
    row_engine.dispose()

    bulk_rate = VIDEOS / bulk_seconds
    row_rate = PER_ROW_VIDEOS / row_seconds
    with open("/proc/loadavg") as load:
        loadavg = load.read().split()[:3]
    SUMMARY.append(
        f"bulk load, PostgreSQL: COPY {VIDEOS:,} videos {bulk_rate:,.0f}/s; per-row API "
        f"{PER_ROW_VIDEOS:,} videos {row_rate:,.0f}/s; ratio {bulk_rate / row_rate:.1f}x "
        f"(load average {' '.join(loadavg)})"
    )
    assert bulk_rate > 0 and row_rate > 0
