"""``bulk_load`` leaves the database as the per-row API leaves it, search index included.

Each scenario runs twice on the same database, emptied in between: once through
``SqlCatalog`` and ``VideoSearch.index_video`` row by row (the reference), once through
``bulk_load`` (``COPY`` on PostgreSQL, ``executemany`` on SQLite). Catalog reads, search
results for word, prefix and hashtag queries, and the ``search_terms`` counts must be
identical.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pg_support import TRUNCATE_ALL
from reelrank_postgres import SqlCatalog, SqlSearchIndex, bulk_load, downgrade, migrate
from sqlalchemy import Engine, text

from reelrank import (
    Creator,
    InvalidInputError,
    ProcessingState,
    Rendition,
    SearchConfig,
    StoreError,
    Video,
    VideoSearch,
)
from reelrank.stores import parse_query

pytestmark = pytest.mark.integration

_WORDS = ("dance", "dancing", "daily", "cook", "cooking", "cookie", "travel", "trick", "tiny")
_TAGS = ("dance", "food", "travel", "fun", "diy")
_NOW = datetime(2026, 11, 1, tzinfo=UTC)
_QUERIES = (
    "dance", "da", "coo", "cooking", "t", "tr", "#dance", "#fu", "tiny trick", "creator",
    "beat", "daily da", "zzz", "travel #travel",
)  # fmt: skip
_SOUNDS = {1: "daily beat", 2: "tiny beat"}


def _creators(count: int) -> list[Creator]:
    return [
        Creator(creator_id=number, handle=f"maker_{number}", display_name=f"Creator {number}")
        for number in range(1, count + 1)
    ]


def _videos(rng: random.Random, ids: range, creators: int, title_suffix: str = "") -> list[Video]:
    states = [ProcessingState.READY] * 6 + [ProcessingState.QUEUED, ProcessingState.FAILED]
    videos = []
    for video_id in ids:
        words = rng.sample(_WORDS, rng.randint(1, 3))
        videos.append(
            Video(
                video_id=video_id,
                creator_id=rng.randint(1, creators),
                duration_seconds=rng.uniform(5, 90),
                published_at=_NOW - timedelta(minutes=video_id),
                title=" ".join(words) + title_suffix,
                description=f"about {rng.choice(_WORDS)}",
                hashtags=tuple(rng.sample(_TAGS, rng.randint(0, 2))),
                sound_id=rng.choice([None, 1, 2]),
                renditions=(
                    Rendition(
                        width=640,
                        height=360,
                        bitrate_kbps=800,
                        codec="avc1.64001f",
                        uri=f"https://cdn.example.com/{video_id}/360p.m3u8",
                    ),
                ),
                state=rng.choice(states),
            )
        )
    return videos


def _per_row(
    engine: Engine,
    creators: list[Creator],
    videos: list[Video],
    follows: list[tuple[int, int]],
) -> None:
    catalog = SqlCatalog(engine)
    search = VideoSearch(SqlSearchIndex(engine))
    for creator in creators:
        catalog.put_creator(creator)
    known = {creator.creator_id: creator for creator in catalog.get_creators(range(1, 50)).values()}
    for video in videos:
        catalog.put_video(video)
        sound = "" if video.sound_id is None else _SOUNDS[video.sound_id]
        search.index_video(video, creator=known[video.creator_id], sound_name=sound)
    for user_id, creator_id in follows:
        catalog.follow(user_id, creator_id)


def _bulk(
    engine: Engine,
    creators: list[Creator],
    videos: list[Video],
    follows: list[tuple[int, int]],
) -> None:
    progress: list[tuple[str, int]] = []
    counts = bulk_load(
        engine,
        creators=creators,
        videos=videos,
        follows=follows,
        sound_names=_SOUNDS,
        progress=lambda table, rows: progress.append((table, rows)),
        batch_rows=7,
    )
    assert counts.videos == len({video.video_id for video in videos})
    assert sum(rows for table, rows in progress if table == "videos") == counts.videos


def _state(engine: Engine) -> dict[str, Any]:
    catalog = SqlCatalog(engine)
    index = SqlSearchIndex(engine, config=SearchConfig(max_prefix_expansions=4))
    with engine.connect() as connection:
        terms = connection.execute(text("SELECT term, videos FROM search_terms ORDER BY term"))
        term_counts = [tuple(row) for row in terms]
        # Impacts depend on the reference length each path picked; the scores do not.
        postings = [
            tuple(row)
            for row in connection.execute(
                text(
                    "SELECT term, video_id, tf, length FROM search_postings ORDER BY video_id, term"
                )
            )
        ]
        statistics = [
            tuple(row)
            for row in connection.execute(
                text("SELECT documents, total_length, k1, b FROM search_stats")
            )
        ]
    return {
        "postings": postings,
        "statistics": statistics,
        "videos": catalog.get_videos(range(1, 200)),
        "creators": catalog.get_creators(range(1, 50)),
        "recent": [video.video_id for video in catalog.recent_videos(limit=500)],
        "follows": {user: catalog.followed_creators(user) for user in range(1, 10)},
        "followed": {
            user: [v.video_id for v in catalog.followed_videos(user, limit=100)]
            for user in range(1, 10)
        },
        "search": {
            query: index.search(parse_query(query, as_you_type=True), limit=50)
            for query in _QUERIES
        },
        "terms": term_counts,
    }


def _empty(engine: Engine) -> None:
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text(TRUNCATE_ALL))
            return
        for table in (
            "search_documents",
            "search_terms",
            "search_postings",
            "search_stats",
            "follows",
            "videos",
            "creators",
        ):
            connection.execute(text(f"DELETE FROM {table}"))


def _follows(rng: random.Random, creators: int) -> list[tuple[int, int]]:
    pairs = [(rng.randint(1, 9), rng.randint(1, creators)) for _ in range(25)]
    return [*pairs, pairs[0]]  # following twice is one follow


def test_bulk_load_matches_the_per_row_api(engine: Engine) -> None:
    rng = random.Random(5)
    creators = _creators(8)
    videos = _videos(rng, range(1, 121), 8)
    follows = _follows(rng, 8)
    _per_row(engine, creators, videos, follows)
    expected = _state(engine)
    assert expected["terms"] and any(expected["search"].values())
    _empty(engine)
    _bulk(engine, creators, videos, follows)
    assert _state(engine) == expected
    assert expected["postings"] and expected["statistics"]
    # The migration rebuilds the same postings from the documents: 0006 on PostgreSQL,
    # telling the sound's positions from the creator's by the creator's name in the
    # catalog; 0007 on SQLite, from the FTS5 columns.
    assert any(video.sound_id is not None for video in videos)
    downgrade(engine, "0005" if engine.dialect.name == "postgresql" else "0006")
    migrate(engine)
    assert _state(engine) == expected


def test_bulk_load_over_loaded_rows_replaces_them_as_the_per_row_api_does(
    engine: Engine,
) -> None:
    rng = random.Random(9)
    creators = _creators(6)
    first = _videos(rng, range(1, 81), 6)
    # Half the videos come again with other titles, states and creators, plus new ones;
    # a creator is renamed, which the search documents of its new videos carry.
    again = _videos(random.Random(11), range(40, 121), 6, title_suffix=" remix")
    renamed = [*creators[:2], Creator(creator_id=3, handle="maker_3", display_name="Renamed")]
    follows = _follows(rng, 6)
    _per_row(engine, creators, first, follows[:10])
    _per_row(engine, renamed, again, follows[10:])
    expected = _state(engine)
    _empty(engine)
    _per_row(engine, creators, first, follows[:10])
    _bulk(engine, renamed, again, follows[10:])
    assert _state(engine) == expected


def test_unknown_creator_is_named_and_nothing_is_written(engine: Engine) -> None:
    videos = _videos(random.Random(1), range(1, 11), 3)
    videos[6] = videos[6].model_copy(update={"creator_id": 99})
    with pytest.raises(InvalidInputError) as info:
        bulk_load(engine, creators=_creators(3), videos=videos, follows=[(1, 2)])
    assert info.value.field == "videos[6].creator_id"
    with pytest.raises(InvalidInputError) as info:
        bulk_load(engine, creators=_creators(3), follows=[(1, 2), (1, 42)])
    assert info.value.field == "follows[1].creator_id"
    assert _state(engine)["creators"] == {}
    assert _state(engine)["terms"] == []


def test_a_failing_statement_rolls_the_whole_load_back(engine: Engine) -> None:
    # The last write of a load (the search term counts) fails: the creators and videos
    # written before it in the same transaction are rolled back with it.
    videos = _videos(random.Random(2), range(1, 11), 3)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE search_terms RENAME TO search_terms_gone"))
    try:
        with pytest.raises(StoreError):
            bulk_load(engine, creators=_creators(3), videos=videos)
    finally:
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE search_terms_gone RENAME TO search_terms"))
    state = _state(engine)
    assert state["videos"] == {} and state["creators"] == {} and state["search"]["da"] == []
