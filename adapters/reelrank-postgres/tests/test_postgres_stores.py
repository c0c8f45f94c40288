"""Behaviour of the SQL stores beyond the contract suite, on both dialects: agreement with
the in-memory reference stores on random inputs, and what only the SQL stores offer."""

from __future__ import annotations

import math
import random
from datetime import timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from reelrank_postgres import (
    SqlCatalog,
    SqlEngagementLog,
    SqlEventStore,
    SqlSearchIndex,
    SqlSeenStore,
    _catalog,
)
from sqlalchemy import Engine, event, text

from reelrank import (
    EngagementKind,
    InMemoryCatalog,
    InMemoryEventStore,
    InMemorySearchIndex,
    InMemorySeenStore,
    ProcessingState,
    Rendition,
    SearchDocument,
    VideoStats,
    VideoStatsColumns,
    parse_query,
)
from reelrank.testing import EPOCH, make_creator, make_event, make_video

pytestmark = pytest.mark.integration

_EXAMPLES = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

_event_specs = st.lists(
    st.tuples(
        st.sampled_from(list(EngagementKind)),
        st.integers(1, 3),  # user
        st.integers(1, 4),  # video
        st.sampled_from([0.0, 0.25, 0.5, 1.0]),  # completion of a watch
        st.booleans(),  # delivered twice
    ),
    max_size=30,
)


def _empty(engine: Engine, *tables: str) -> None:
    with engine.begin() as connection:
        for table in tables:
            connection.execute(text(f"DELETE FROM {table}"))


@_EXAMPLES
@given(specs=_event_specs)
def test_event_aggregates_match_the_in_memory_store(
    engine: Engine, specs: list[tuple[EngagementKind, int, int, float, bool]]
) -> None:
    _empty(
        engine,
        "engagement_events",
        "video_stats",
        "video_likes",
        "affinity_credits",
        "affinity_totals",
    )
    sql = SqlEventStore(engine)
    memory = InMemoryEventStore()
    for kind, user, video, completion, redelivered in specs:
        extra = {"completion": completion} if kind is EngagementKind.WATCH else {}
        event = make_event(kind, user_id=user, video_id=video, **extra)
        creator = 1 + video % 2
        for _ in range(2 if redelivered else 1):
            assert sql.append(event, creator_id=creator) == memory.append(event, creator_id=creator)
    videos = [1, 2, 3, 4, 5]
    expected_stats = memory.get_stats(videos)
    got_stats = sql.get_stats(videos)
    for video in videos:
        got, want = got_stats[video], expected_stats[video]
        assert (got.views, got.likes, got.shares, got.comments) == (
            want.views,
            want.likes,
            want.shares,
            want.comments,
        )
        assert math.isclose(got.completion_sum, want.completion_sum, abs_tol=1e-9)
    for user in (1, 2, 3, 4):
        got_affinity = sql.get_affinities(user, [1, 2, 3])
        want_affinity = memory.get_affinities(user, [1, 2, 3])
        assert got_affinity.keys() == want_affinity.keys()
        for creator, value in want_affinity.items():
            assert math.isclose(got_affinity[creator], value, abs_tol=1e-9)
    asked = {user: [3, 1, 2, 1] for user in (4, 1, 3, 2)}
    many = sql.get_affinities_many(asked)
    assert many == {user: sql.get_affinities(user, ids) for user, ids in asked.items()}
    assert sql.popular_video_ids(limit=10) == memory.popular_video_ids(limit=10)


@_EXAMPLES
@given(
    videos=st.lists(st.tuples(st.integers(1, 3), st.integers(0, 4), st.booleans()), max_size=12),
    follows=st.lists(st.tuples(st.integers(1, 5), st.integers(1, 3)), max_size=10),
    marks=st.lists(
        st.tuples(st.integers(1, 5), st.integers(1, 9), st.integers(0, 30)), max_size=15
    ),
    limit=st.integers(0, 6),
)
def test_bulk_reads_of_many_users_match_the_in_memory_stores(
    engine: Engine,
    videos: list[tuple[int, int, bool]],
    follows: list[tuple[int, int]],
    marks: list[tuple[int, int, int]],
    limit: int,
) -> None:
    _empty(engine, "follows", "videos", "creators", "seen_videos")
    sql_catalog, memory_catalog = SqlCatalog(engine), InMemoryCatalog()
    sql_seen, memory_seen = SqlSeenStore(engine), InMemorySeenStore(retention_seconds=None)
    for catalog in (sql_catalog, memory_catalog):
        for creator_id in (1, 2, 3):
            catalog.put_creator(make_creator(creator_id))
        for video_id, (creator_id, age_hours, ready) in enumerate(videos, start=1):
            state = ProcessingState.READY if ready else ProcessingState.QUEUED
            published_at = EPOCH - timedelta(hours=age_hours)
            video = make_video(video_id, creator_id, published_at=published_at, state=state)
            catalog.put_video(video)
        for user_id, creator_id in follows:
            catalog.follow(user_id, creator_id)
    for seen in (sql_seen, memory_seen):
        for user_id, video_id, age_hours in marks:
            seen.mark_seen(user_id, [video_id], EPOCH - timedelta(hours=age_hours))
    users = [5, 3, 1, 4, 2]
    assert sql_catalog.followed_videos_many(users, limit=limit) == (
        memory_catalog.followed_videos_many(users, limit=limit)
    )
    since = EPOCH - timedelta(hours=20)
    assert sql_seen.recently_seen_many(users, since=since, limit=limit) == (
        memory_seen.recently_seen_many(users, since=since, limit=limit)
    )


_stats_rows = st.dictionaries(
    st.integers(1, 2**63 - 1),
    st.tuples(
        st.integers(0, 2**40),  # views
        st.floats(0.0, 1.0),  # completion per view, above 1 for a rounding overshoot
        st.integers(0, 1_000),  # likes
        st.integers(0, 1_000),  # shares
        st.integers(0, 1_000),  # comments
        st.booleans(),  # completion_sum a little above views, as summed floats may be
    ),
    max_size=12,
)


@_EXAMPLES
@given(
    rows=_stats_rows, extra_ids=st.lists(st.integers(1, 2**63 - 1), max_size=6), seed=st.randoms()
)
def test_stats_columns_are_get_stats_as_columns(
    engine: Engine,
    rows: dict[int, tuple[int, float, int, int, int, bool]],
    extra_ids: list[int],
    seed: random.Random,
) -> None:
    _empty(engine, "video_stats")
    stored = [
        {
            "video_id": video_id,
            "views": views,
            "completion_sum": views * share + (1e-6 if overshoot else 0.0),
            "likes": likes,
            "shares": shares,
            "comments": comments,
        }
        for video_id, (views, share, likes, shares, comments, overshoot) in rows.items()
    ]
    if stored:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO video_stats VALUES "
                    "(:video_id, :views, :completion_sum, :likes, :shares, :comments)"
                ),
                stored,
            )
    # Stored and unknown ids, some twice, in any order.
    wanted = [*rows, *extra_ids, *seed.sample(list(rows), min(3, len(rows)))]
    seed.shuffle(wanted)
    store = SqlEventStore(engine)
    expected = VideoStatsColumns.from_stats(store.get_stats(wanted), wanted)
    assert store.stats_columns(wanted) == expected


def test_stats_columns_build_no_stats_model(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqlEventStore(engine)
    store.append(make_event("watch", video_id=2, completion=0.5), creator_id=1)
    store.append(make_event("share", video_id=3), creator_id=1)

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("stats_columns built a VideoStats")

    monkeypatch.setattr(VideoStats, "model_construct", no_model)
    monkeypatch.setattr(VideoStats, "__init__", no_model)
    columns = store.stats_columns([3, 2, 9])
    assert columns.video_ids.tolist() == [3, 2, 9]
    assert columns.views.tolist() == [0, 1, 0]
    assert columns.completion_sum.tolist() == [0.0, 0.5, 0.0]
    assert columns.shares.tolist() == [1, 0, 0]


_WORDS = ["dance", "dancing", "dandelion", "cat", "cats", "café", "Straße", "naïve", "x_1"]
_documents = st.lists(
    st.builds(
        SearchDocument,
        video_id=st.integers(1, 30),
        title=st.lists(st.sampled_from(_WORDS), max_size=4).map(" ".join),
        description=st.lists(st.sampled_from(_WORDS), max_size=6).map(" ".join),
        hashtags=st.lists(st.sampled_from(["dance", "cat", "café"]), max_size=2).map(tuple),
    ),
    max_size=12,
)
_queries = st.lists(
    st.sampled_from(
        ["dance", "danc*", "#dance", "#danc*", "cat*", "CAFÉ", "strasse", "x_1", "na*"]
    ),
    min_size=1,
    max_size=2,
).map(" ".join)


@_EXAMPLES
@given(documents=_documents, query=_queries)
def test_search_matches_the_same_videos_as_the_in_memory_index(
    engine: Engine, documents: list[SearchDocument], query: str
) -> None:
    _empty(engine, "search_documents", "search_terms", "search_postings", "search_stats")
    sql = SqlSearchIndex(engine)
    memory = InMemorySearchIndex()
    for document in documents:
        sql.index(document)
        memory.index(document)
    parsed = parse_query(query)
    got = sql.search(parsed, limit=100)
    want = memory.search(parsed, limit=100)
    assert {video for video, _ in got} == {video for video, _ in want}
    assert all(score > 0.0 for _, score in got)
    # The impact-ordered postings (both dialects): the same BM25.
    assert [video for video, _ in got] == [video for video, _ in want]
    assert [score for _, score in got] == pytest.approx([score for _, score in want])


def test_videos_round_trip_renditions_hashtags_and_sound(engine: Engine) -> None:
    catalog = SqlCatalog(engine)
    catalog.put_creator(make_creator(1, display_name="Zoë"))
    renditions = (
        Rendition(width=720, height=1280, bitrate_kbps=2500, codec="avc1.64001f", uri="a.m3u8"),
        Rendition(width=1080, height=1920, bitrate_kbps=5000, codec="hvc1", uri="b.m3u8"),
    )
    video = make_video(
        2**63 - 1,
        1,
        renditions=renditions,
        hashtags=("Dance", "#fun"),
        sound_id=2**62,
        description="naïve ' quote \\ backslash",
        published_at=EPOCH.astimezone(timezone(timedelta(hours=-5))),
    )
    catalog.put_video(video)
    assert catalog.get_video(2**63 - 1) == video
    assert catalog.get_videos([2**63 - 1])[2**63 - 1].renditions == renditions
    assert catalog.get_creators([1])[1].display_name == "Zoë"


def test_read_videos_are_the_models_validation_builds(engine: Engine) -> None:
    # The catalog builds the videos it reads without validating them again: each must
    # be indistinguishable from the validated model of the same fields.
    catalog = SqlCatalog(engine)
    catalog.put_creator(make_creator(1))
    rendition = Rendition(width=640, height=360, bitrate_kbps=800, codec="avc1", uri="a.m3u8")
    stored = [
        make_video(1, 1, renditions=(rendition, rendition), hashtags=("a", "b"), sound_id=7),
        make_video(2, 1, sound_id=None, title="", description="d"),
        make_video(3, 1, state=ProcessingState.TRANSCODING),
    ]
    for video in stored:
        catalog.put_video(video)
    read = catalog.get_videos([1, 2, 3])
    for video in stored:
        built = read[video.video_id]
        validated = type(video).model_validate(video.model_dump())
        assert built == validated
        assert repr(built) == repr(validated)
        assert built.model_dump_json() == validated.model_dump_json()
        assert built.model_fields_set == validated.model_fields_set
        assert hash(built) == hash(validated)
        assert [r.model_fields_set for r in built.renditions] == [
            r.model_fields_set for r in validated.renditions
        ]
        with pytest.raises(ValidationError):
            built.title = "changed"  # type: ignore[misc]
    # A copy with an update leaves the other videos' fields as they were.
    read[1].model_copy(update={"title": "copied"})
    assert catalog.recent_videos(limit=2) == [stored[1], stored[0]]
    assert read[2].model_fields_set == set(type(stored[1]).model_fields)


def test_labels_read_in_batches_are_those_of_the_reference_catalog(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Labels are built a batch of rows at a time: batches of 3 over 11 videos end
    # within the rows and on their last one.
    monkeypatch.setattr(_catalog, "_LABEL_ROWS_PER_FETCH", 3)
    catalog, memory = SqlCatalog(engine), InMemoryCatalog()
    for store in (catalog, memory):
        store.put_creator(make_creator(1))
        for video_id in range(1, 12):
            store.put_video(
                make_video(
                    video_id,
                    1,
                    published_at=EPOCH - timedelta(minutes=video_id % 4),
                    hashtags=(f"tag{video_id % 3}",),
                    sound_id=None if video_id % 2 else video_id,
                    state=ProcessingState.QUEUED if video_id == 5 else ProcessingState.READY,
                )
            )
    for limit in (9, 10, 11):
        assert catalog.recent_labels(limit=limit) == memory.recent_labels(limit=limit)
    ids = list(range(1, 13))
    assert catalog.get_labels(ids) == memory.get_labels(ids)


def test_followed_videos_of_many_creators_stay_newest_first(engine: Engine) -> None:
    catalog = SqlCatalog(engine)
    for creator in range(1, 6):
        catalog.put_creator(make_creator(creator))
        catalog.follow(9, creator)
    for video in range(1, 41):
        age = timedelta(minutes=(video * 7) % 40)
        catalog.put_video(make_video(video, 1 + video % 5, published_at=EPOCH - age))
    got = catalog.followed_videos(9, limit=15)
    keys = [(v.published_at, v.video_id) for v in got]
    assert keys == sorted(keys, reverse=True) and len(got) == 15
    assert [v.video_id for v in got] == [v.video_id for v in catalog.recent_videos(limit=15)]


def test_forget_before_deletes_only_older_marks(engine: Engine) -> None:
    seen = SqlSeenStore(engine)
    seen.mark_seen(1, [1, 2], EPOCH - timedelta(days=40))
    seen.mark_seen(2, [1], EPOCH - timedelta(days=40))
    seen.mark_seen(1, [3, 3], EPOCH)
    assert seen.forget_before(EPOCH - timedelta(days=30)) == 3
    assert seen.recently_seen(1, since=EPOCH - timedelta(days=365), limit=10) == [3]
    assert seen.forget_before(EPOCH - timedelta(days=30)) == 0


def test_search_terms_are_taken_verbatim_not_parsed(engine: Engine) -> None:
    """Text that a tsquery or FTS5 parser would read as syntax is only ever a term."""
    index = SqlSearchIndex(engine)
    index.index(SearchDocument(video_id=1, title="and or not near"))
    index.index(SearchDocument(video_id=2, title="o'brien \\ ' & | ! ( ) :*"))
    assert [video for video, _ in index.search(parse_query("and or not"), limit=5)] == [1]
    assert [video for video, _ in index.search(parse_query("near"), limit=5)] == [1]
    assert [video for video, _ in index.search(parse_query("brien o"), limit=5)] == [2]


def test_prune_deletes_only_older_events(engine: Engine) -> None:
    log = SqlEngagementLog(engine)
    old = make_event("like", occurred_at=EPOCH - timedelta(days=10))
    new = make_event("share", occurred_at=EPOCH)
    assert log.record(old) and log.record(new)
    assert log.prune(EPOCH - timedelta(days=1)) == 1
    assert log.events_between(EPOCH - timedelta(days=30), EPOCH + timedelta(1), limit=10) == [new]
    assert log.user_events(1, since=EPOCH - timedelta(days=30), limit=10) == [new]


class _Statements:
    """Counts the statements an engine sends (``SET LOCAL`` aside) while it is open."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.count = 0

    def _counted(self, *args: object) -> None:
        statement = args[2]
        if isinstance(statement, str) and not statement.startswith("SET LOCAL"):
            self.count += 1

    def __enter__(self) -> _Statements:
        event.listen(self.engine, "before_cursor_execute", self._counted)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._counted)


def test_bulk_reads_take_one_statement_per_chunk_of_users(engine: Engine) -> None:
    catalog, events, seen = SqlCatalog(engine), SqlEventStore(engine), SqlSeenStore(engine)
    for store in (catalog, events, seen):
        store.users_per_statement = 2
    for creator_id in (1, 2, 3):
        catalog.put_creator(make_creator(creator_id))
    for video_id in range(1, 10):
        published_at = EPOCH - timedelta(hours=video_id % 4)
        catalog.put_video(make_video(video_id, 1 + video_id % 3, published_at=published_at))
    users = [5, 1, 4, 2, 3]  # three chunks: [5, 1], [4, 2], [3]
    for user_id in users:
        for creator_id in range(1, 1 + user_id % 4):
            catalog.follow(user_id, creator_id)
        seen.mark_seen(user_id, [user_id, user_id + 1], EPOCH - timedelta(hours=user_id))
        watch = make_event("watch", user_id=user_id, video_id=user_id, completion=0.5)
        events.append(watch, creator_id=1 + user_id % 3)
    creators = {user_id: [1, 2, 3] for user_id in users}
    since = EPOCH - timedelta(days=1)
    with _Statements(engine) as statements:
        followed = catalog.followed_videos_many(users, limit=4)
        affinities = events.get_affinities_many(creators)
        recent = seen.recently_seen_many(users, since=since, limit=5)
    assert statements.count == 9
    assert followed == {uid: catalog.followed_videos(uid, limit=4) for uid in users}
    assert affinities == {uid: events.get_affinities(uid, [1, 2, 3]) for uid in users}
    assert recent == {uid: seen.recently_seen(uid, since=since, limit=5) for uid in users}
    assert sum(len(videos) for videos in followed.values()) > 0
