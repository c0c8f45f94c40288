"""The reels service (examples/flask_app): every endpoint over the Flask test client.

The app runs on in-memory stores seeded with a small synthetic catalog; tokens are
signed here with PyJWT. Store failures are injected with :class:`reelrank.testing.FaultInjector`.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import hmac
import io
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import m3u8
import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from reelrank import (
    ConfigError,
    InMemoryCatalog,
    InMemoryEventStore,
    InvalidInputError,
    ParsedQuery,
    StoreError,
    StoreUnavailableError,
    TrendingKind,
    Video,
    VideoSearch,
    VideoStats,
    parse_query,
)
from reelrank.testing import FaultInjector, make_creator, make_event, make_video

EXAMPLE_ROOT = Path(__file__).resolve().parents[1] / "examples" / "flask_app"
# The example is an application, not an installed distribution: import it from its folder.
sys.path.insert(0, str(EXAMPLE_ROOT))

from reelrank_example import (  # noqa: E402
    DASH_CONTENT_TYPE,
    FIRST_USER_ID,
    FIRST_VIDEO_ID,
    HLS_CONTENT_TYPE,
    MAX_PAGE_SIZE,
    MAX_QUERY_LENGTH,
    OPERATIONS,
    Authenticator,
    AuthError,
    Services,
    Settings,
    Stores,
    build_services,
    configured_stores,
    create_app,
    issue_token,
    memory_stores,
    migrate,
    seed_synthetic_catalog,
)
from reelrank_example import _cards as cards_module  # noqa: E402
from reelrank_example._cards import ReusedCounts  # noqa: E402

SECRET = "s" * 64  # long enough for the HS512 token of the alg-changed case
USER = FIRST_USER_ID
OTHER = FIRST_USER_ID + 1
VIDEO = FIRST_VIDEO_ID
VIDEOS = 60
PENDING = FIRST_VIDEO_ID + VIDEOS  # the first video left queued
MISSING = 9_999_999
NEW_USER = FIRST_USER_ID + 1_000  # beyond the seeded users: has liked nothing


def _settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "auth_secret": SECRET,
        "videos": VIDEOS,
        "pending_videos": 16,  # every fourth is left queued: PENDING, PENDING + 4...
        "users": 12,
        "events": 600,
        "creators": 12,
    }
    values.update(overrides)
    return Settings(**values)


@dataclasses.dataclass
class Built:
    app: Flask
    client: FlaskClient
    services: Services


BACKENDS = ["embedded", pytest.param("servers", marks=pytest.mark.integration)]
"""Where the endpoint tests' stores live: in memory (the unit session), or in real
PostgreSQL + ClickHouse + Redis (the integration session), seeded once per session."""


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Settings of a seeded PostgreSQL (catalog), ClickHouse (events) and Redis (cache,
    seen sets, idempotency keys, rate limits), shared by every endpoint test."""
    from reelrank_clickhouse.testing import ClickHouseServer, find_clickhouse_server
    from reelrank_postgres.testing import PostgresServer, find_postgres_bin
    from reelrank_redis.testing import RedisServer, find_redis_server

    if None in (find_postgres_bin(), find_redis_server(), find_clickhouse_server()):
        pytest.skip("PostgreSQL, ClickHouse and Redis are needed (scripts/test.sh installs them)")
    root = tmp_path_factory.mktemp("servers")
    with (
        PostgresServer() as postgres,
        RedisServer(root / "redis") as redis_server,
        ClickHouseServer(root / "clickhouse") as clickhouse,
    ):
        urls = {
            "database_url": postgres.url,
            "redis_url": redis_server.url,
            "clickhouse_url": f"clickhouse://default@127.0.0.1:{clickhouse.tcp_port}/default",
        }
        settings = _settings(**urls)
        migrate(settings)
        stores = configured_stores(settings)
        try:
            seed_synthetic_catalog(stores, settings, now=datetime.now(UTC))
        finally:
            for close in stores.closers:
                close()
        yield urls


def _build(servers: dict[str, Any] | None = None, wrap: Any = None, **overrides: Any) -> Built:
    """An app on in-memory stores seeded now, or on the session's ``servers``."""
    if servers is not None:
        return _build_on_servers(servers, wrap, **overrides)
    settings = _settings(**overrides)
    stores = memory_stores()
    embeddings = seed_synthetic_catalog(stores, settings, now=datetime.now(UTC))
    stores = dataclasses.replace(stores, embeddings=embeddings)
    if wrap is not None:
        stores = wrap(stores)
    services = build_services(stores, settings)
    app = create_app(services, settings)
    return Built(app, app.test_client(), services)


def _build_on_servers(servers: dict[str, Any], wrap: Any = None, **overrides: Any) -> Built:
    """An app on the session's seeded servers, with Redis emptied: a new process's view
    of shared stores (events and counts written by earlier tests stay; the tests that
    write compare before and after)."""
    import redis

    settings = _settings(**servers, **overrides)
    with redis.Redis.from_url(servers["redis_url"]) as client:
        client.flushall()
    stores = configured_stores(settings)
    if wrap is not None:
        stores = wrap(stores)
    services = build_services(stores, settings)
    app = create_app(services, settings)
    return Built(app, app.test_client(), services)


@pytest.fixture(scope="module", params=BACKENDS)
def built(request: pytest.FixtureRequest) -> Iterator[Built]:
    app = _build(_backend(request))
    # As start-up warming does before a deployment routes traffic: the first candidate
    # pool is fetched as a batch job, not by the module's first request under the
    # request deadlines, which a busy machine can make that request miss.
    app.services.feed.refresh_candidates()
    yield app
    app.services.close()


@pytest.fixture(params=BACKENDS)
def fresh(request: pytest.FixtureRequest) -> Iterator[Built]:
    app = _build(_backend(request))
    yield app
    app.services.close()


def _backend(request: pytest.FixtureRequest) -> dict[str, Any] | None:
    """The server settings of a ``servers`` parameter; ``None`` for the embedded one."""
    if request.param != "servers":
        return None
    servers: dict[str, Any] = request.getfixturevalue("servers")
    return servers


def _auth(user: int = USER, secret: str = SECRET, **claims: Any) -> dict[str, str]:
    if not claims:
        return {"Authorization": f"Bearer {issue_token(secret, user)}"}
    now = datetime.now(UTC)
    payload = {"sub": str(user), "exp": now + timedelta(hours=1), **claims}
    return {"Authorization": f"Bearer {jwt.encode(payload, secret, algorithm='HS256')}"}


def _problem(response: TestResponse, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.content_type == "application/problem+json"
    body: dict[str, Any] = response.get_json(force=True)
    assert body["status"] == status
    assert body["type"].startswith("urn:reelrank:problem:")
    if field is not None:
        assert body["field"] == field
    return body


def _stats(built: Built, video_id: int = VIDEO) -> VideoStats:
    return built.services.stores.events.get_stats([video_id]).get(video_id) or VideoStats(
        video_id=video_id
    )


# -- the contract -------------------------------------------------------------------------


def test_the_openapi_document_lists_every_operation() -> None:
    app = _build(videos=5, events=0, users=1)
    try:
        document = app.client.get("/openapi.json").get_json()
    finally:
        app.services.close()
    assert document["openapi"] == "3.1.0"
    expected = {
        ("get", "/api/v1/reels"),
        ("get", "/api/v1/reels/stream/{id}"),
        ("get", "/api/v1/reels/progress/{id}"),
        ("post", "/api/v1/reels/{id}/like"),
        ("delete", "/api/v1/reels/{id}/like"),
        ("post", "/api/v1/reels/{id}/watch"),
        ("post", "/api/v1/reels/{id}/share"),
        ("get", "/api/v1/reels/trending-sounds"),
        ("get", "/api/v1/reels/trending-hashtags"),
        ("get", "/api/v1/discover/creators"),
        ("get", "/api/v1/reels/search"),
        ("get", "/api/v1/reels/{id}/similar"),
        ("get", "/api/v1/reels/{id}"),
        ("put", "/internal/v1/reels/progress/{id}"),
        ("get", "/healthz/live"),
        ("get", "/healthz/ready"),
        ("get", "/healthz/startup"),
    }
    listed = {(method, path) for path, ops in document["paths"].items() for method in ops}
    assert listed == expected
    limit = next(
        p for p in document["paths"]["/api/v1/reels"]["get"]["parameters"] if p["name"] == "limit"
    )
    assert limit["schema"]["maximum"] == MAX_PAGE_SIZE
    assert document["paths"]["/api/v1/reels"]["get"]["security"] == [{"bearer": []}]
    assert len(OPERATIONS) == len(expected)


# -- auth ---------------------------------------------------------------------------------


def test_the_service_refuses_to_start_without_auth() -> None:
    with pytest.raises(ConfigError) as raised:
        Authenticator(Settings())
    assert raised.value.field == "auth_secret"


@pytest.mark.parametrize(
    "path",
    ["/api/v1/reels", "/api/v1/discover/creators"],
)
def test_private_reads_need_a_token(built: Built, path: str) -> None:
    response = built.client.get(path)
    _problem(response, 401, "Authorization")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", f"/api/v1/reels/{VIDEO}/like", None),
        ("delete", f"/api/v1/reels/{VIDEO}/like", None),
        ("post", f"/api/v1/reels/{VIDEO}/watch", {"completion": 0.5}),
        ("post", f"/api/v1/reels/{VIDEO}/share", {"channel": "link"}),
    ],
)
def test_events_need_a_token_and_write_nothing_without_one(
    fresh: Built, method: str, path: str, body: Any
) -> None:
    before = _stats(fresh)
    _problem(getattr(fresh.client, method)(path, json=body), 401, "Authorization")
    assert _stats(fresh) == before


def _bad_tokens() -> dict[str, str]:
    now = datetime.now(UTC)
    claims = {"sub": str(USER), "exp": now + timedelta(hours=1)}
    return {
        "expired": jwt.encode({**claims, "exp": now - timedelta(minutes=5)}, SECRET, "HS256"),
        "not yet valid": jwt.encode({**claims, "nbf": now + timedelta(minutes=5)}, SECRET, "HS256"),
        "wrong key": jwt.encode(claims, "w" * 40, "HS256"),
        "alg changed": jwt.encode(claims, SECRET, "HS512"),
        "alg none": jwt.encode(claims, None, "none"),
        "no exp": jwt.encode({"sub": str(USER)}, SECRET, "HS256"),
        "sub not an id": jwt.encode({**claims, "sub": "alice"}, SECRET, "HS256"),
        "garbage": "not.a.token",
    }


@pytest.mark.parametrize("case", sorted(_bad_tokens()))
def test_bad_tokens_are_401(built: Built, case: str) -> None:
    token = _bad_tokens()[case]
    response = built.client.get("/api/v1/reels", headers={"Authorization": f"Bearer {token}"})
    _problem(response, 401, "Authorization")


def test_expiry_within_the_leeway_is_accepted(built: Built) -> None:
    exp = datetime.now(UTC) - timedelta(seconds=5)
    assert built.client.get("/api/v1/reels", headers=_auth(exp=exp)).status_code == 200


def test_a_scheme_other_than_bearer_is_401(built: Built) -> None:
    response = built.client.get("/api/v1/reels", headers={"Authorization": f"Basic {SECRET}"})
    _problem(response, 401)


# -- feed ---------------------------------------------------------------------------------


def test_the_feed_pages_with_cards_scores_and_breakdowns(built: Built) -> None:
    first = built.client.get("/api/v1/reels?limit=5", headers=_auth())
    assert first.status_code == 200
    page = first.get_json()
    assert len(page["items"]) == 5
    card = page["items"][0]
    assert set(card) >= {
        "video_id", "creator", "title", "duration_seconds", "published_at", "sound_id",
        "hashtags", "thumbnail_url", "stream_url", "counts", "score", "breakdown",
    }  # fmt: skip
    assert card["stream_url"] == f"/api/v1/reels/stream/{card['video_id']}"
    assert set(card["creator"]) == {"creator_id", "handle", "name"}
    assert card["breakdown"]
    assert sum(card["breakdown"].values()) == pytest.approx(card["score"])
    second = built.client.get(
        f"/api/v1/reels?limit=5&cursor={page['next_cursor']}", headers=_auth()
    ).get_json()
    first_ids = {item["video_id"] for item in page["items"]}
    assert first_ids.isdisjoint(item["video_id"] for item in second["items"])


def test_another_users_cursor_is_refused(built: Built) -> None:
    page = built.client.get("/api/v1/reels?limit=3", headers=_auth(OTHER)).get_json()
    response = built.client.get(
        f"/api/v1/reels?limit=3&cursor={page['next_cursor']}", headers=_auth(USER)
    )
    _problem(response, 400, "cursor")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        (f"limit={MAX_PAGE_SIZE + 1}", "limit"),
        ("limit=5.0", "limit"),
        ("limit=+5", "limit"),
        ("limit=1e1", "limit"),
        ("limit=abc", "limit"),
        ("limit=5&limit=6", "limit"),
        ("colour=red", "colour"),
        ("user_id=100002", "user_id"),
        ("cursor=%00", "cursor"),
    ],
)
def test_feed_query_validation(built: Built, query: str, field: str) -> None:
    _problem(built.client.get(f"/api/v1/reels?{query}", headers=_auth()), 400, field)


def test_the_feed_is_503_with_retry_after_when_it_cannot_degrade() -> None:
    catalogs: list[FaultInjector[Any]] = []

    def failing_catalog(stores: Stores) -> Stores:
        catalogs.append(FaultInjector(stores.catalog, name="catalog"))
        return dataclasses.replace(stores, catalog=catalogs[0].proxy)

    app = _build(wrap=failing_catalog)
    try:
        catalogs[0].fail()
        response = app.client.get("/api/v1/reels", headers=_auth())
        _problem(response, 503)
        assert response.headers["Retry-After"] == "1"
        assert app.client.get("/healthz/live").status_code == 200
        catalogs[0].recover()
    finally:
        app.services.close()


def test_start_up_card_prefetch_survives_a_failing_catalog() -> None:
    from reelrank_example import _prefetch_recent_cards  # start-up's last step

    catalogs: list[FaultInjector[Any]] = []

    def failing_catalog(stores: Stores) -> Stores:
        catalogs.append(FaultInjector(stores.catalog, name="catalog"))
        return dataclasses.replace(stores, catalog=catalogs[0].proxy)

    app = _build(wrap=failing_catalog)
    try:
        catalogs[0].fail()
        assert _prefetch_recent_cards(app.app, catalogs[0].proxy) == 0
        catalogs[0].recover()
        # The seeded catalog's published videos (the pending ones are not listed).
        published = len(catalogs[0].store.recent_videos(limit=10_000))
        assert published == VIDEOS
        assert _prefetch_recent_cards(app.app, catalogs[0].proxy) == published
    finally:
        app.services.close()


# -- lists --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/reels/trending-sounds?",
        "/api/v1/reels/trending-hashtags?window_hours=48&",
        "/api/v1/reels/search?q=makeup&",
        f"/api/v1/reels/{VIDEO}/similar?",
    ],
)
def test_public_lists_page_without_overlap(built: Built, path: str) -> None:
    first = built.client.get(f"{path}limit=2")
    assert first.status_code == 200, first.get_data(as_text=True)
    page = first.get_json()
    assert len(page["items"]) == 2
    assert page["next_cursor"]
    second = built.client.get(f"{path}limit=2&cursor={page['next_cursor']}").get_json()
    key = "key" if "trending" in path else "video_id"
    assert {i[key] for i in page["items"]}.isdisjoint(i[key] for i in second["items"])
    # Retrying a cursor gives the same items (trending scores decay between the calls).
    again = built.client.get(f"{path}limit=2&cursor={page['next_cursor']}").get_json()
    assert [i[key] for i in again["items"]] == [i[key] for i in second["items"]]


def test_a_trending_request_with_an_aged_snapshot_does_not_wait_for_the_log() -> None:
    """Past ``trending_reuse_seconds``, within ``trending_refresh_ahead_seconds`` (on by
    default here), a request answers with the stored snapshot's items and does not read
    the log; the next snapshot is computed on another thread."""
    settings = _settings()
    seeded_at = datetime.now(UTC).replace(microsecond=0)
    stores = memory_stores()
    seed_synthetic_catalog(stores, settings, now=seeded_at)
    request_thread = threading.get_ident()
    request_reads: list[datetime] = []
    background_may_read = threading.Event()
    read = stores.log.columns_between

    def columns_between(start: datetime, end: datetime, **options: Any) -> Any:
        if threading.get_ident() == request_thread:
            request_reads.append(end)
        else:
            background_may_read.wait(30.0)
        return read(start, end, **options)

    stores.log.columns_between = columns_between  # type: ignore[method-assign]
    now = [seeded_at]
    services = build_services(stores, settings, clock=lambda: now[0])
    client = create_app(services, settings).test_client()
    path = "/api/v1/reels/trending-hashtags?limit=5"
    try:
        first = client.get(path).get_json()
        assert first["items"] and len(request_reads) == 1
        aged_at = seeded_at + timedelta(seconds=settings.trending_reuse_seconds + 1)
        now[0] = aged_at
        aged = client.get(path).get_json()
        assert aged == first and aged["stale_as_of"] is None
        assert len(request_reads) == 1
        background_may_read.set()
        services.trending._refreshing[(TrendingKind.HASHTAG, 24.0)].result(timeout=30)
        refreshed = client.get(path).get_json()
        assert refreshed["computed_at"] == aged_at.isoformat().replace("+00:00", "Z")
        assert len(request_reads) == 1
    finally:
        background_may_read.set()
        services.close()


def test_a_cursor_of_one_list_is_refused_by_another(built: Built) -> None:
    page = built.client.get("/api/v1/reels/search?q=makeup&limit=1").get_json()
    response = built.client.get(
        f"/api/v1/reels/search?q=cooking&limit=1&cursor={page['next_cursor']}"
    )
    _problem(response, 400, "cursor")


def test_search_items_are_cards(built: Built) -> None:
    items = built.client.get("/api/v1/reels/search?q=dance&limit=3").get_json()["items"]
    assert items
    assert all("dance" in item["hashtags"] or "dance" in item["title"] for item in items)
    assert all({"creator", "counts", "score", "thumbnail_url"} <= set(item) for item in items)


def _counting_stats_reads(reads: list[list[int]]) -> Any:
    """A ``wrap`` for :func:`_build`: every ``get_stats`` call of the event store is
    appended to ``reads``."""

    def wrap(stores: Stores) -> Stores:
        events = stores.events
        read = events.get_stats

        def get_stats(video_ids: Any) -> dict[int, VideoStats]:
            reads.append(list(video_ids))
            return read(video_ids)

        events.get_stats = get_stats  # type: ignore[method-assign]
        return stores

    return wrap


@pytest.mark.parametrize(("seconds", "second_search_reads"), [(10.0, 0), (0.0, 1)])
def test_search_reuses_its_matches_counts_for_search_counts_seconds(
    seconds: float, second_search_reads: int
) -> None:
    reads: list[list[int]] = []
    built = _build(wrap=_request_thread_stats_reads(reads), search_counts_seconds=seconds)
    try:
        first = built.client.get("/api/v1/reels/search?q=dance&limit=3").get_json()
        read_by_first = len(reads)
        second = built.client.get("/api/v1/reels/search?q=dance&limit=3").get_json()
        # The cards' counts are reused for card_counts_seconds either way; the matches'
        # counts only with search_counts_seconds.
        assert len(reads) - read_by_first == second_search_reads
        assert second["items"] == first["items"]
    finally:
        built.services.close()


@pytest.mark.parametrize(
    ("seconds", "second_status", "index_reads"),
    [(30.0, "reelrank; hit", 1), (0.0, "reelrank; fwd=miss", 2)],
)
def test_search_reuses_its_text_matches_for_search_match_reuse_seconds(
    seconds: float, second_status: str, index_reads: int
) -> None:
    reads: list[ParsedQuery] = []

    def wrap(stores: Stores) -> Stores:
        index = stores.search_index
        search = index.search

        def counting(query: ParsedQuery, *, limit: int) -> list[tuple[int, float]]:
            reads.append(query)
            return search(query, limit=limit)

        index.search = counting  # type: ignore[method-assign]
        return stores

    built = _build(wrap=wrap, search_match_reuse_seconds=seconds)
    try:
        first = built.client.get("/api/v1/reels/search?q=dance&limit=3")
        # The same parsed query: its matches are kept under its terms, not its text.
        second = built.client.get("/api/v1/reels/search?q=DANCE+&limit=3")
        assert first.headers["Cache-Status"] == "reelrank; fwd=miss"
        assert second.headers["Cache-Status"] == second_status
        assert len(reads) == index_reads
        assert second.get_json()["items"] == first.get_json()["items"]
        scrape = built.client.get("/metrics").get_data(as_text=True)
        for outcome, searches in ({"hit": 1, "miss": 1} if seconds else {"miss": 2}).items():
            assert (
                f'reelrank_search_match_reuse_total{{outcome="{outcome}"}} {searches}.0' in scrape
            )
    finally:
        built.services.close()


def test_a_likes_fresh_count_read_serves_the_videos_next_card() -> None:
    reads: list[list[int]] = []
    # Counts reused long enough that only the like could make the second search read
    # during the request (search's own reads are in the background).
    built = _build(
        wrap=_request_thread_stats_reads(reads),
        card_counts_seconds=300.0,
        search_counts_seconds=300.0,
    )
    try:
        search = "/api/v1/reels/search?q=dance&limit=3"
        video = built.client.get(search).get_json()["items"][0]["video_id"]
        before_like = len(reads)
        liked = built.client.post(f"/api/v1/reels/{video}/like", headers=_auth()).get_json()
        assert reads[before_like:] == [[video]]  # the like's answer reads the count afresh
        items = built.client.get(search).get_json()["items"]
        assert len(reads) == before_like + 1  # and the card reuses that read
        card = next(item for item in items if item["video_id"] == video)
        assert card["counts"]["likes"] == liked["likes"] == _stats(built, video).likes
    finally:
        built.services.close()


def test_a_like_makes_the_users_next_ranking_read_affinities_again() -> None:
    """The feed reuses a user's affinities for REELRANK_FEED_AFFINITY_REUSE_SECONDS, but
    an event this process records for the user drops them."""
    reads: list[int] = []

    def counting(stores: Any) -> Any:
        read = stores.events.get_affinities

        def get_affinities(user_id: int, creator_ids: Any) -> Any:
            reads.append(user_id)
            return read(user_id, creator_ids)

        stores.events.get_affinities = get_affinities
        return stores

    built = _build(wrap=counting, feed_affinity_reuse_seconds=300.0)
    try:
        feed = built.services.feed
        first = built.client.get("/api/v1/reels?limit=5", headers=_auth()).get_json()
        feed.invalidate(USER)
        built.client.get("/api/v1/reels?limit=5", headers=_auth())
        assert reads == [USER]  # the second ranking reused the first's read
        video = first["items"][0]["video_id"]
        liked = built.client.post(f"/api/v1/reels/{video}/like", headers=_auth())
        assert liked.status_code == 200
        feed.invalidate(USER)
        built.client.get("/api/v1/reels?limit=5", headers=_auth())
        assert reads == [USER, USER]
    finally:
        built.services.close()


def test_feed_settings_from_the_environment_reach_the_feed_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REELRANK_FEED_REFILL_DEADLINE_SECONDS", "2.5")
    monkeypatch.setenv("REELRANK_FEED_REFILL_AHEAD_ITEMS", "7")
    monkeypatch.setenv("REELRANK_FEED_HOLD_RAN_OUT", "false")
    monkeypatch.setenv("REELRANK_FEED_AFFINITY_REUSE_SECONDS", "12")
    built = _build()
    try:
        config = built.services.feed.config
        assert config.refill_deadline_seconds == 2.5
        assert config.refill_ahead_items == 7
        assert config.hold_ran_out_feeds is False
        assert config.affinity_reuse_seconds == 12.0
    finally:
        built.services.close()


@pytest.mark.parametrize("value", ["0", "-1", "61", "nan"])
def test_a_bad_refill_deadline_setting_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("REELRANK_FEED_REFILL_DEADLINE_SECONDS", value)
    with pytest.raises(ConfigError) as caught:
        _settings()
    assert caught.value.field == "feed_refill_deadline_seconds"


@pytest.mark.integration
@pytest.mark.parametrize(("seconds", "statements"), [(300.0, [2, 1]), (0.0, [2, 2])])
def test_search_term_statistics_setting_keeps_a_searchs_counts(
    servers: dict[str, Any], seconds: float, statements: list[int]
) -> None:
    """With REELRANK_SEARCH_TERM_STATISTICS_SECONDS, a search whose terms were read
    recently sends PostgreSQL one statement (the ranking), not two."""
    from sqlalchemy import event

    built = _build(servers, search_term_statistics_seconds=seconds, search_match_reuse_seconds=0.0)
    sent: list[str] = []

    def count(*args: Any) -> None:
        if "search_" in args[2]:  # the catalog's card reads share the engine
            sent.append(args[2])

    engine = built.services.stores.search_index.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        # The index's first search also looks up which of its tables exist, once.
        assert built.client.get("/api/v1/reels/search?q=music&limit=3").status_code == 200
        per_search = []
        for _ in range(2):
            before = len(sent)
            assert built.client.get("/api/v1/reels/search?q=dance&limit=3").status_code == 200
            per_search.append(len(sent) - before)
        assert per_search == statements
    finally:
        event.remove(engine, "before_cursor_execute", count)
        built.services.close()


def test_a_like_shows_in_this_processs_next_search_despite_reused_counts() -> None:
    """Search ranks on counts reused for search_counts_seconds, but a like recorded by
    this process drops the video's reused counts (its answer's fresh read refills them):
    the next search ranks as one reading every count afresh does."""
    reads: list[list[int]] = []
    built = _build(
        wrap=_counting_stats_reads(reads),
        card_counts_seconds=300.0,
        search_counts_seconds=300.0,
        search_waits_for_unknown_counts=True,
    )
    try:
        fresh = VideoSearch(built.services.stores.search_index, stats=built.services.stores.events)
        hits = built.services.search.search("dance", limit=20)
        assert hits == fresh.search("dance", limit=20)
        for hit in hits[-3:]:  # the last ones have the most room to climb
            response = built.client.post(f"/api/v1/reels/{hit.video_id}/like", headers=_auth())
            assert response.status_code == 200
        before = len(reads)
        after_likes = built.services.search.search("dance", limit=20)
        assert len(reads) == before  # the likes' own reads were kept for search
        assert after_likes == fresh.search("dance", limit=20)
        assert after_likes != hits  # the likes changed the scores
    finally:
        built.services.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> dict[str, Any] | None:
    return _backend(request)


def _shown_counts(item: dict[str, Any]) -> tuple[int, int, int, int]:
    counts = item["counts"]
    return counts["views"], counts["likes"], counts["shares"], counts["comments"]


def _store_counts(built: Built, video_id: int) -> tuple[int, int, int, int]:
    stats = _stats(built, video_id)
    return stats.views, stats.likes, stats.shares, stats.comments


def test_a_cache_miss_pages_cards_show_the_counts_its_ranking_read(
    backend: dict[str, Any] | None,
) -> None:
    """A first page on a fresh process ranks on counts the feed service reads (its
    candidate pool's, its followed videos'): the cards show those, with no count read
    of their own."""
    reads: list[list[int]] = []
    built = _build(backend, wrap=_counting_stats_reads(reads))
    try:
        response = built.client.get("/api/v1/reels?limit=10", headers=_auth())
        assert response.headers["Cache-Status"] == "reelrank; fwd=miss"
        items = response.get_json()["items"]
        assert len(items) == 10
        assert reads == []
        for item in items:
            assert _shown_counts(item) == _store_counts(built, item["video_id"])
    finally:
        built.services.close()


def _counting_video_reads(reads: list[tuple[str, list[int]]]) -> Any:
    """A ``wrap`` for :func:`_build`: every ``recent_videos`` and ``get_videos`` call of
    the catalog is appended to ``reads`` with the ids it returned, or asked for."""

    def wrap(stores: Stores) -> Stores:
        catalog = stores.catalog
        recent, get_videos = catalog.recent_videos, catalog.get_videos

        def recent_videos(**kwargs: Any) -> list[Video]:
            videos = recent(**kwargs)
            reads.append(("recent_videos", [video.video_id for video in videos]))
            return videos

        def counted_get_videos(video_ids: Any) -> dict[int, Video]:
            reads.append(("get_videos", list(video_ids)))
            return get_videos(video_ids)

        catalog.recent_videos = recent_videos  # type: ignore[method-assign]
        catalog.get_videos = counted_get_videos  # type: ignore[method-assign]
        return stores

    return wrap


def test_a_cache_miss_pages_cards_show_the_videos_its_candidate_pool_read(
    backend: dict[str, Any] | None,
) -> None:
    """A first page on a fresh process ranks videos whose details its candidate pool
    has just read (the recent ones, the popular ones): the cards show those, with no
    catalog read of the pool's videos of their own, and as the catalog has them."""
    reads: list[tuple[str, list[int]]] = []
    built = _build(backend, wrap=_counting_video_reads(reads))
    try:
        response = built.client.get("/api/v1/reels?limit=10", headers=_auth())
        assert response.headers["Cache-Status"] == "reelrank; fwd=miss"
        items = response.get_json()["items"]
        assert len(items) == 10
        shown = {item["video_id"] for item in items}
        # The cards' reads ask for some of the page's videos; the pool's for hundreds.
        pool_reads = [ids for _, ids in reads if not set(ids) <= shown]
        pool = {video_id for ids in pool_reads for video_id in ids}
        assert shown & pool  # the page shows pool videos
        card_reads = [ids for name, ids in reads if name == "get_videos" and set(ids) <= shown]
        assert all(not set(ids) & pool for ids in card_reads)
        reference = built.services.stores.catalog.get_videos(sorted(shown))
        for item in items:
            video = reference[item["video_id"]]
            assert item["title"] == video.title
            assert item["creator"]["creator_id"] == video.creator_id
            assert item["duration_seconds"] == video.duration_seconds
            assert item["sound_id"] == video.sound_id
            assert item["hashtags"] == list(video.hashtags)
            assert datetime.fromisoformat(item["published_at"]) == video.published_at
    finally:
        built.services.close()


def test_a_pool_read_held_open_does_not_replace_details_the_cards_read_after_it_began() -> None:
    """A video changed while the candidate pool's read of it is held open: the cards
    read the change, and the pool's read, landing later, does not replace it."""
    built = _build()
    try:
        catalog = built.services.stores.catalog
        recent = catalog.recent_videos
        read_done, release = threading.Event(), threading.Event()

        def held_recent_videos(**kwargs: Any) -> list[Video]:
            videos = recent(**kwargs)
            read_done.set()
            assert release.wait(10.0)
            return videos

        catalog.recent_videos = held_recent_videos  # type: ignore[method-assign]
        refresh = threading.Thread(target=built.services.feed.refresh_candidates)
        refresh.start()
        assert read_done.wait(10.0)
        video = recent(limit=1)[0]
        changed = video.model_copy(update={"title": video.title + " (edited)"})
        catalog.put_video(changed)
        cards = built.app.extensions["reelrank_cards"]
        assert cards.read([video.video_id]).videos[video.video_id].title == changed.title
        release.set()
        refresh.join(10.0)
        assert not refresh.is_alive()
        assert cards.read([video.video_id]).videos[video.video_id].title == changed.title
    finally:
        built.services.close()


def _request_thread_stats_reads(reads: list[list[int]], *, failing: bool = False) -> Any:
    """A ``wrap`` for :func:`_build`: every ``get_stats`` call of the event store made on
    this (the request's) thread is appended to ``reads``; with ``failing``, every call
    on any thread raises."""
    request_thread = threading.get_ident()

    def wrap(stores: Stores) -> Stores:
        events = stores.events
        read = events.get_stats

        def get_stats(video_ids: Any) -> dict[int, VideoStats]:
            if threading.get_ident() == request_thread:
                reads.append(list(video_ids))
            if failing:
                raise StoreError("events", "down")
            return read(video_ids)

        events.get_stats = get_stats  # type: ignore[method-assign]
        return stores

    return wrap


def _text_order(built: Built, text: str, limit: int) -> list[int]:
    """The ids a search ranks when every match has the prior quality: by BM25 alone,
    best first, ties by lower id (the blend adds the same quality to each)."""
    config = built.services.search.config
    matches = built.services.stores.search_index.search(
        parse_query(text, config=config), limit=config.candidate_pool
    )
    return [video_id for video_id, _ in sorted(matches, key=lambda m: (-m[1], m[0]))][:limit]


def test_a_search_whose_matches_were_never_read_does_not_wait_for_the_event_store() -> None:
    """The first search of a query ranks its matches on the prior quality (text
    relevance alone) without reading the event store during the request; the counts
    are read in the background, and ranked on once ``search_counts_seconds`` is over,
    so the pages of one query agree within it."""
    reads: list[list[int]] = []
    built = _build(
        wrap=_request_thread_stats_reads(reads),
        search_counts_seconds=2.0,
        search_waits_for_unknown_counts=False,
        bounded_counts_seconds=0.0,  # as for a store that cannot answer from memory
    )
    try:
        started = time.monotonic()
        first = built.services.search.search("music", limit=20)
        assert reads == []
        assert [hit.video_id for hit in first] == _text_order(built, "music", 20)
        # The background read lands; within the reuse time the query ranks as it did.
        while time.monotonic() < started + 1.0:
            assert built.services.search.search("music", limit=20) == first
            time.sleep(0.05)
        time.sleep(max(0.0, started + 2.2 - time.monotonic()))
        assert reads == []
        fresh = VideoSearch(built.services.stores.search_index, stats=built.services.stores.events)
        expected = fresh.search("music", limit=20)
        reads.clear()  # the reference's own read, on this thread
        # Past the reuse time the search asks for the counts again in the background and
        # ranks on them once they land: how soon depends on the machine (a first read in
        # a process also loads its kernels), so wait for it within a bound.
        deadline = time.monotonic() + 30.0
        after = built.services.search.search("music", limit=20)
        while after != expected and time.monotonic() < deadline:
            time.sleep(0.05)
            after = built.services.search.search("music", limit=20)
        assert reads == []
        assert after == expected
    finally:
        built.services.close()


def test_a_pool_counts_read_that_began_before_a_like_does_not_replace_the_likes_read() -> None:
    """A like recorded while the candidate pool's counts are being read (the read saw
    the video before it) leaves the card showing the like's own read, not the pool's."""
    built = _build()
    try:
        events = built.services.stores.events
        pool_read = events.stats_columns
        reading, release = threading.Event(), threading.Event()

        held_ids: list[int] = []

        def held_stats_columns(video_ids: Any) -> Any:
            columns = pool_read(video_ids)  # what the read saw...
            held_ids.extend(video_ids)
            reading.set()
            assert release.wait(10.0)  # ...returned once the like is recorded
            return columns

        shown = built.client.get("/api/v1/reels?limit=10", headers=_auth()).get_json()["items"]
        events.stats_columns = held_stats_columns  # type: ignore[method-assign]
        refresh = threading.Thread(target=built.services.feed.refresh_candidates)
        refresh.start()
        assert reading.wait(10.0)
        video = next(item["video_id"] for item in shown if item["video_id"] in held_ids)
        before = _stats(built, video).likes
        liked = built.client.post(f"/api/v1/reels/{video}/like", headers=_auth(NEW_USER))
        assert liked.get_json()["likes"] == before + 1
        release.set()
        refresh.join(10.0)
        assert not refresh.is_alive()
        events.stats_columns = pool_read  # type: ignore[method-assign]
        cards = built.app.extensions["reelrank_cards"]
        assert cards.read([video]).stats[video].likes == before + 1 == _stats(built, video).likes
    finally:
        release.set()
        built.services.close()


def test_a_search_answers_while_the_event_store_fails() -> None:
    reads: list[list[int]] = []
    built = _build(
        wrap=_request_thread_stats_reads(reads, failing=True),
        search_waits_for_unknown_counts=False,
        bounded_counts_seconds=0.0,  # as for a store that cannot answer from memory
    )
    try:
        response = built.client.get("/api/v1/reels/search?q=music&limit=5")
        assert response.status_code == 200, response.get_data(as_text=True)
        items = [item["video_id"] for item in response.get_json()["items"]]
        assert items == _text_order(built, "music", 5)
    finally:
        built.services.close()


def _counts_left_for_the_background(
    events: InMemoryEventStore, now: list[float]
) -> tuple[ReusedCounts, _HeldRefreshes]:
    """Counts reused for 10 s and ranked on aged for 30 s more, on the clock ``now[0]``,
    that leave the counts they lack to a background refresher the test runs."""
    refresher = _HeldRefreshes()
    counts = ReusedCounts(
        events,
        ttl=10.0,
        stale=30.0,
        clock=lambda: now[0],
        refresher=refresher,
        wait_for_unknown=False,
    )
    return counts, refresher


def _liked_counts_left_for_the_background() -> tuple[
    InMemoryEventStore, list[list[int]], list[float], ReusedCounts, _HeldRefreshes
]:
    """An event store where user 1 liked video 7, its reads recorded, and the counts of
    :func:`_counts_left_for_the_background` over it on a clock at 0."""
    events = InMemoryEventStore()
    events.append(make_event("like", user_id=1, video_id=7), creator_id=1)
    reads = _recording_reads(events)
    now = [0.0]
    counts, refresher = _counts_left_for_the_background(events, now)
    return events, reads, now, counts, refresher


def test_reused_counts_left_for_the_background_rank_on_the_prior_for_their_ttl() -> None:
    _, reads, now, counts, refresher = _liked_counts_left_for_the_background()
    assert counts.get_stats([7, 8]) == {}  # never read: left out, not read now
    assert reads == []
    refresher.run()
    assert reads == [[7, 8]]
    now[0] = 9.9
    assert counts.get_stats([7, 8]) == {}  # still on the prior: one query's pages agree
    now[0] = 10.0
    assert counts.get_stats([7, 8])[7].likes == 1
    now[0] = 39.9  # aged (both queued at 10.0), not yet too old: ranked on, read again
    assert counts.get_stats([7])[7].likes == 1
    refresher.run()
    now[0] = 100.0  # older than ttl + stale since that read: on the prior again
    assert counts.get_stats([7, 8]) == {}
    assert reads == [[7, 8], [7, 8]] and len(refresher.held) == 1


def test_reused_counts_an_event_drops_are_read_again_in_the_background_at_once() -> None:
    events, reads, _, counts, refresher = _liked_counts_left_for_the_background()
    counts.keep(events.get_stats([7, 8]))
    events.append(make_event("like", user_id=2, video_id=7), creator_id=1)
    counts.forget([7, 9])  # 9 was never kept: nothing to read again
    # Ranked on the counts kept before the event until the read lands, not on the prior.
    assert counts.get_stats([7, 8])[7].likes == 1
    refresher.run()
    assert reads == [[7, 8], [7]]
    assert counts.get_stats([7, 8])[7].likes == 2
    assert not refresher.held


def test_reused_counts_kept_from_elsewhere_end_a_videos_prior_at_once() -> None:
    events = InMemoryEventStore()
    events.append(make_event("like", user_id=1, video_id=7), creator_id=1)
    refresher = _HeldRefreshes()
    counts = ReusedCounts(
        events, ttl=10.0, clock=lambda: 0.0, refresher=refresher, wait_for_unknown=False
    )
    assert counts.get_stats([7]) == {}
    counts.keep(events.get_stats([7]))  # a like's answer read the count afresh
    assert counts.get_stats([7])[7].likes == 1


def test_reused_counts_are_read_again_once_older_than_their_ttl() -> None:
    events = InMemoryEventStore()
    events.append(make_event("like", user_id=1, video_id=7), creator_id=1)
    reads: list[list[int]] = []
    read = events.get_stats

    def get_stats(video_ids: Any) -> dict[int, VideoStats]:
        reads.append(list(video_ids))
        return read(video_ids)

    events.get_stats = get_stats  # type: ignore[method-assign]
    now = [0.0]
    counts = ReusedCounts(events, ttl=10.0, clock=lambda: now[0])
    assert counts.get_stats([7, 8])[7].likes == 1
    assert counts.get_stats([8, 7])[8] == VideoStats(video_id=8)
    events.append(make_event("like", user_id=2, video_id=7), creator_id=1)
    now[0] = 9.9
    assert counts.get_stats([7, 9])[7].likes == 1  # reused: up to 10 s old
    now[0] = 10.0
    assert counts.get_stats([7])[7].likes == 2  # older than 10 s: read again
    assert reads == [[7, 8], [9], [7]]


class _HeldRefreshes(Executor):
    """Runs what is submitted only when :meth:`run` is called."""

    def __init__(self) -> None:
        self.held: list[Callable[[], object]] = []

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.held.append(functools.partial(fn, *args, **kwargs))
        return Future()

    def run(self) -> None:
        held, self.held = self.held, []
        for call in held:
            call()


def _recording_reads(events: InMemoryEventStore) -> list[list[int]]:
    reads: list[list[int]] = []
    read = events.get_stats

    def get_stats(video_ids: Any) -> dict[int, VideoStats]:
        reads.append(list(video_ids))
        return read(video_ids)

    events.get_stats = get_stats  # type: ignore[method-assign]
    return reads


def test_stale_reused_counts_are_used_while_read_again_in_the_background() -> None:
    events = InMemoryEventStore()
    events.append(make_event("like", user_id=1, video_id=7), creator_id=1)
    reads = _recording_reads(events)
    now = [0.0]
    refresher = _HeldRefreshes()
    counts = ReusedCounts(events, ttl=10.0, stale=30.0, clock=lambda: now[0], refresher=refresher)
    assert counts.get_stats([7, 8])[7].likes == 1
    events.append(make_event("like", user_id=2, video_id=7), creator_id=1)
    now[0] = 39.9  # older than ttl, younger than ttl + stale: used as they are...
    assert counts.get_stats([7, 8])[7].likes == 1
    assert counts.get_stats([8, 9])[8] == VideoStats(video_id=8)  # 9: never read, read now
    assert reads == [[7, 8], [9]]
    refresher.run()  # ...while one background read brings both up to date
    assert reads == [[7, 8], [9], [7, 8]]
    assert counts.get_stats([7])[7].likes == 2
    now[0] = 49.8  # the refresh's read is fresh from when it was stored
    assert counts.get_stats([7])[7].likes == 2
    assert len(reads) == 3 and not refresher.held
    now[0] = 89.9  # older than ttl + stale since the refresh: read during the call
    assert counts.get_stats([7, 8])[7].likes == 2
    assert reads[3:] == [[7, 8]] and not refresher.held


def test_counts_found_stale_while_their_refresh_reads_them_are_not_read_twice() -> None:
    events = InMemoryEventStore()
    reads = _recording_reads(events)
    now = [0.0]
    refresher = _HeldRefreshes()
    counts = ReusedCounts(events, ttl=10.0, stale=30.0, clock=lambda: now[0], refresher=refresher)
    counts.get_stats([7, 8])
    now[0] = 20.0
    counts.get_stats([7])
    recording = events.get_stats

    def another_search_during_the_read(video_ids: Any) -> dict[int, VideoStats]:
        counts.get_stats([7, 8])  # 7 is being read; 8 is stale and not yet queued
        return recording(video_ids)

    events.get_stats = another_search_during_the_read  # type: ignore[method-assign]
    refresher.run()
    events.get_stats = recording  # type: ignore[method-assign]
    assert reads == [[7, 8], [7], [8]]  # the refresh went on with 8 alone
    assert not refresher.held


def test_a_background_counts_refresh_does_not_keep_videos_forgotten_meanwhile() -> None:
    events = InMemoryEventStore()
    events.append(make_event("like", user_id=1, video_id=7), creator_id=1)
    reads = _recording_reads(events)
    now = [0.0]
    refresher = _HeldRefreshes()
    counts = ReusedCounts(events, ttl=10.0, stale=30.0, clock=lambda: now[0], refresher=refresher)
    counts.get_stats([7, 8])
    now[0] = 20.0
    counts.get_stats([7, 8])
    read = events.get_stats

    def like_during_the_read(video_ids: Any) -> dict[int, VideoStats]:
        answer = read(video_ids)
        events.append(make_event("like", user_id=2, video_id=7), creator_id=1)
        counts.forget([7])
        return answer

    events.get_stats = like_during_the_read  # type: ignore[method-assign]
    refresher.run()
    events.get_stats = read  # type: ignore[method-assign]
    assert counts.get_stats([7, 8])[7].likes == 2  # 7 read again, 8 kept from the refresh
    assert reads == [[7, 8], [7, 8], [7]]


def test_a_failed_background_counts_refresh_is_logged_and_leaves_the_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = InMemoryEventStore()
    reads = _recording_reads(events)
    now = [0.0]
    refresher = _HeldRefreshes()
    counts = ReusedCounts(events, ttl=10.0, stale=30.0, clock=lambda: now[0], refresher=refresher)
    counts.get_stats([7])
    now[0] = 20.0
    counts.get_stats([7])
    working = events.get_stats

    def failing(video_ids: Any) -> dict[int, VideoStats]:
        raise StoreError("events", "down")

    events.get_stats = failing  # type: ignore[method-assign]
    refresher.run()
    assert "search counts refresh failed: StoreError" in caplog.text
    events.get_stats = working  # type: ignore[method-assign]
    assert counts.get_stats([7]) == {7: VideoStats(video_id=7)}  # still the kept counts
    refresher.run()  # and the next call asked for them again
    assert reads == [[7], [7]]


def test_a_counts_read_that_began_before_a_forget_is_not_reused() -> None:
    """An event recorded while a search's counts read is on its way (its ``forget``
    lands between the read's start and its end) leaves that read unkept: the next
    search reads the video's counts again rather than reusing what the read saw
    before the event."""
    events = InMemoryEventStore()
    events.append(make_event("like", user_id=1, video_id=7), creator_id=1)
    read = events.get_stats
    reads: list[list[int]] = []
    counts = ReusedCounts(events, ttl=10.0, clock=lambda: 0.0)

    def get_stats_with_a_like_meanwhile(video_ids: Any) -> dict[int, VideoStats]:
        reads.append(list(video_ids))
        answer = read(video_ids)  # the read sees one like...
        if len(reads) == 1:  # ...and a second is recorded before it is stored
            events.append(make_event("like", user_id=2, video_id=7), creator_id=1)
            counts.forget([7])
        return answer

    events.get_stats = get_stats_with_a_like_meanwhile  # type: ignore[method-assign]
    assert counts.get_stats([7, 8])[7].likes == 1  # this search ranks on what it read
    assert counts.get_stats([7, 8])[7].likes == 2  # the next reads video 7 again
    assert reads == [[7, 8], [7]]  # video 8, not forgotten, was kept


def test_counts_kept_from_elsewhere_leave_out_videos_forgotten_since_their_read() -> None:
    events = InMemoryEventStore()
    reads: list[list[int]] = []
    read = events.get_stats

    def get_stats(video_ids: Any) -> dict[int, VideoStats]:
        reads.append(list(video_ids))
        return read(video_ids)

    events.get_stats = get_stats  # type: ignore[method-assign]
    counts = ReusedCounts(events, ttl=10.0, clock=lambda: 0.0)
    began = counts.generation()
    older = events.get_stats([7, 8])  # a like's answer reads, then an event on 7 lands
    counts.forget([7])
    counts.keep(older, began=began)
    counts.get_stats([7, 8])
    assert reads[1:] == [[7]]


def test_a_card_count_read_that_began_before_an_event_does_not_replace_the_events_read() -> None:
    """A card's count read under way when a like is recorded (its ``forget_counts``, then
    the like's fresh read) is not stored over the like's read: the next card shows the
    count after the like, not the older one, within ``counts_ttl``."""
    catalog, events = InMemoryCatalog(), InMemoryEventStore()
    catalog.put_creator(make_creator(1))
    catalog.put_video(make_video(7, 1))
    events.append(make_event("like", user_id=1, video_id=7), creator_id=1)
    cards = cards_module.CardReader(catalog, events, ttl=60.0, counts_ttl=10.0, clock=lambda: 0.0)
    read = events.get_stats
    reads: list[list[int]] = []

    def get_stats_with_a_like_meanwhile(video_ids: Any) -> dict[int, VideoStats]:
        reads.append(list(video_ids))
        answer = read(video_ids)
        if len(reads) == 1:  # the card's read saw one like; a second is recorded now
            events.append(make_event("like", user_id=2, video_id=7), creator_id=1)
            cards.forget_counts([7])
            assert cards.read_counts([7])[7].likes == 2  # the like's answer
        return answer

    events.get_stats = get_stats_with_a_like_meanwhile  # type: ignore[method-assign]
    assert cards.read([7]).stats[7].likes == 1  # this card shows what its read saw
    assert cards.read([7]).stats[7].likes == 2  # the next shows the like's read
    assert reads == [[7], [7]]


def test_videos_kept_from_a_read_elsewhere_age_from_when_that_read_began() -> None:
    """Details the feed's catalog read handed over are fresh for ``ttl`` from the
    read's start, not from when it landed: read at 75 s with a 30 s ``ttl``, they are
    shown at 100 s without a catalog read, and read again at 105 s."""
    catalog, events = InMemoryCatalog(), InMemoryEventStore()
    catalog.put_creator(make_creator(1))
    catalog.put_video(make_video(7, 1))
    now = [100.0]
    cards = cards_module.CardReader(catalog, events, ttl=30.0, clock=lambda: now[0])
    read = catalog.get_videos
    reads: list[list[int]] = []

    def counted_get_videos(video_ids: Any) -> dict[int, Video]:
        reads.append(list(video_ids))
        return read(video_ids)

    catalog.get_videos = counted_get_videos  # type: ignore[method-assign]
    cards.keep_videos(read([7]), read_at=75.0)
    assert 7 in cards.read([7]).videos
    assert reads == []
    now[0] = 105.0
    assert 7 in cards.read([7]).videos
    assert reads == [[7]]


class _CountedCatalog:
    """An in-memory catalog whose ``get_videos`` and ``get_creators`` calls are recorded.
    While ``gate`` is clear a call waits for it (up to 5 s), so a card read that waited
    for the catalog would pass the card reader's deadline and show ``degraded``; with
    ``fail`` set a call raises a store error."""

    def __init__(self) -> None:
        self.catalog = InMemoryCatalog()
        self.catalog.put_creator(make_creator(1, display_name="before"))
        self.catalog.put_video(make_video(7, 1))
        self.calls: list[tuple[str, list[int]]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail = False
        for name in ("get_videos", "get_creators"):
            setattr(self.catalog, name, self._counted(name, getattr(self.catalog, name)))

    def _counted(self, name: str, read: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def counted(ids: Any) -> Any:
            self.calls.append((name, list(ids)))
            self.gate.wait(5.0)
            if self.fail:
                raise StoreUnavailableError("catalog", "stopped")
            return read(ids)

        return counted


def _card_reader(counted: _CountedCatalog, now: list[float], **kwargs: Any) -> Any:
    return cards_module.CardReader(
        counted.catalog, InMemoryEventStore(), clock=lambda: now[0], **kwargs
    )


def test_card_details_past_their_ttl_are_shown_while_read_again_in_the_background() -> None:
    """With ``ttl`` 30 s and ``details_stale`` 120 s, details read at 100 s are shown at
    140 s while the catalog holds every call (so the card waited for none); the
    background read, once the catalog answers, brings the creator's new name, which the
    next card shows. Past 30 + 120 s from that read they are read during the call."""
    counted = _CountedCatalog()
    now = [100.0]
    cards = _card_reader(counted, now, ttl=30.0, details_stale=120.0)
    try:
        assert cards.read([7]).creators[1].display_name == "before"
        assert counted.calls == [("get_videos", [7]), ("get_creators", [1])]
        counted.catalog.put_creator(make_creator(1, display_name="after"))
        counted.gate.clear()
        now[0] = 140.0
        shown = cards.read([7])
        assert (shown.creators[1].display_name, shown.degraded) == ("before", [])
        _wait_for(lambda: len(counted.calls) == 3)  # the background read, held
        counted.gate.set()
        _wait_for(lambda: cards.read([7]).creators[1].display_name == "after")
        assert sorted(counted.calls[2:]) == [("get_creators", [1]), ("get_videos", [7])]
        now[0] = 291.0  # past 140 + 30 + 120 s: the background read is from 140 s
        counted.catalog.put_creator(make_creator(1, display_name="again"))
        assert cards.read([7]).creators[1].display_name == "again"
        assert counted.calls[4:] == [("get_videos", [7]), ("get_creators", [1])]
    finally:
        counted.gate.set()
        cards.close(1.0)


def test_a_videos_detail_reads_details_past_their_ttl_during_the_call() -> None:
    """A video's detail (``fresh_counts``) shows no stale details: past ``ttl`` it reads
    them during the call, whatever ``details_stale``."""
    counted = _CountedCatalog()
    now = [100.0]
    cards = _card_reader(counted, now, ttl=30.0, details_stale=120.0)
    try:
        cards.read([7])
        counted.catalog.put_creator(make_creator(1, display_name="after"))
        now[0] = 140.0
        assert cards.read([7], fresh_counts=True).creators[1].display_name == "after"
    finally:
        cards.close(1.0)
    assert counted.calls[2:] == [("get_videos", [7]), ("get_creators", [1])]


@pytest.mark.parametrize(("ttl", "stale"), [(30.0, 0.0), (0.0, 120.0)])
def test_card_details_are_read_during_the_call_without_a_stale_window(
    ttl: float, stale: float
) -> None:
    """``details_stale`` 0 reads details past ``ttl`` during the call, and ``ttl`` 0
    reads them on every call, stale window or not."""
    counted = _CountedCatalog()
    now = [100.0]
    cards = _card_reader(counted, now, ttl=ttl, details_stale=stale)
    try:
        cards.read([7])
        counted.catalog.put_creator(make_creator(1, display_name="after"))
        now[0] = 140.0
        assert cards.read([7]).creators[1].display_name == "after"
    finally:
        cards.close(1.0)
    assert counted.calls[2:] == [("get_videos", [7]), ("get_creators", [1])]


def test_a_failed_background_read_of_details_leaves_the_kept_ones_shown() -> None:
    """A catalog that fails the background read leaves the details shown as they were
    (not degraded) until ``ttl + details_stale``; past that the read during the call
    fails too, and the cards show the kept details, naming the catalog."""
    counted = _CountedCatalog()
    now = [100.0]
    cards = _card_reader(counted, now, ttl=30.0, details_stale=120.0)
    try:
        cards.read([7])
        counted.fail = True
        now[0] = 140.0
        shown = cards.read([7])
        assert (shown.creators[1].display_name, shown.degraded) == ("before", [])
        _wait_for(lambda: len(counted.calls) >= 3)  # the background read, failed
        now[0] = 251.0
        later = cards.read([7])
        assert (later.creators[1].display_name, later.degraded) == ("before", ["catalog"])
    finally:
        cards.close(1.0)


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5.0
    while not condition():
        assert time.monotonic() < deadline, "not within 5 s"
        time.sleep(0.005)


def test_a_read_older_than_the_forgets_still_recorded_keeps_nothing() -> None:
    kept = cards_module._Kept[int](10.0, 2, lambda: 0.0)
    began = kept.generation()
    kept.forget([1])
    kept.forget([2])
    kept.forget([3])  # 1's forget is no longer recorded: the read may predate any
    kept.store({4: 40, 5: 50}, began=began)
    assert kept.fresh([4, 5]) == ({}, [4, 5])
    kept.store({4: 41}, began=kept.generation())
    assert kept.fresh([4]) == ({4: 41}, [])


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("", "q"),
        ("q=", "q"),
        (f"q={'a' * (MAX_QUERY_LENGTH + 1)}", "q"),
        ("q=dance&limit=0", "limit"),
        ("q=dance&as_you_type=1", "as_you_type"),
    ],
)
def test_search_validation(built: Built, query: str, field: str) -> None:
    _problem(built.client.get(f"/api/v1/reels/search?{query}"), 400, field)


@pytest.mark.parametrize("window", ["0.5", "1.5", "23.999", "169", "nan", "inf", "-1", "1e2"])
def test_trending_window_validation(built: Built, window: str) -> None:
    response = built.client.get(f"/api/v1/reels/trending-sounds?window_hours={window}")
    _problem(response, 400, "window_hours")


@pytest.mark.parametrize("window", ["1", "24", "24.0", "168"])
def test_trending_windows_of_whole_hours_are_served(built: Built, window: str) -> None:
    response = built.client.get(f"/api/v1/reels/trending-sounds?window_hours={window}")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["window_hours"] == float(window)


def test_creators_are_recommended_for_the_caller(built: Built) -> None:
    response = built.client.get("/api/v1/discover/creators?limit=3", headers=_auth())
    assert response.status_code == 200
    items = response.get_json()["items"]
    assert items
    followed = built.services.stores.catalog.followed_creators(USER)
    assert all(item["creator_id"] not in followed for item in items)
    assert all(item["handle"] for item in items)


def test_similar_personalises_with_a_token_and_refuses_a_bad_one(built: Built) -> None:
    assert built.client.get(f"/api/v1/reels/{VIDEO}/similar", headers=_auth()).status_code == 200
    bad = {"Authorization": "Bearer nope"}
    _problem(built.client.get(f"/api/v1/reels/{VIDEO}/similar", headers=bad), 401)
    _problem(built.client.get(f"/api/v1/reels/{MISSING}/similar"), 404)


# -- one video ----------------------------------------------------------------------------


def test_stream_manifests(built: Built) -> None:
    hls = built.client.get(f"/api/v1/reels/stream/{VIDEO}")
    assert hls.status_code == 200
    assert hls.content_type == HLS_CONTENT_TYPE
    assert len(m3u8.loads(hls.get_data(as_text=True)).playlists) == 3
    dash = built.client.get(f"/api/v1/reels/stream/{VIDEO}?format=dash")
    assert dash.content_type == DASH_CONTENT_TYPE
    assert b"<MPD" in dash.get_data()
    _problem(built.client.get(f"/api/v1/reels/stream/{VIDEO}?format=mp4"), 400, "format")
    _problem(built.client.get(f"/api/v1/reels/stream/{PENDING}"), 409)
    _problem(built.client.get(f"/api/v1/reels/stream/{MISSING}"), 404)


def test_progress_and_details(built: Built) -> None:
    progress = built.client.get(f"/api/v1/reels/progress/{PENDING}").get_json()
    assert progress["state"] == "queued"
    detail = built.client.get(f"/api/v1/reels/{VIDEO}").get_json()
    video = built.services.stores.catalog.get_video(VIDEO)
    assert detail["title"] == video.title
    assert detail["state"] == "ready"
    _problem(built.client.get(f"/api/v1/reels/{MISSING}"), 404)


# -- processing reports from the pipeline (service token) ---------------------------------

SERVICE_TOKEN = "t" * 40
PIPELINE = {"Authorization": f"Bearer {SERVICE_TOKEN}"}


@pytest.fixture(scope="module", params=BACKENDS)
def pipeline(request: pytest.FixtureRequest) -> Iterator[Built]:
    app = _build(_backend(request), service_token=SERVICE_TOKEN)
    yield app
    app.services.close()


def _report(built: Built, video_id: int, body: Any, headers: Any = None) -> TestResponse:
    return built.client.put(
        f"/internal/v1/reels/progress/{video_id}", json=body, headers=PIPELINE | (headers or {})
    )


def _state(built: Built, video_id: int) -> str:
    state: str = built.client.get(f"/api/v1/reels/progress/{video_id}").get_json()["state"]
    return state


def test_the_pipeline_walks_a_video_to_ready(pipeline: Built) -> None:
    video_id = PENDING + 4  # left queued by the seed, with three pending renditions
    moved = _report(pipeline, video_id, {"state": "transcoding"})
    assert moved.status_code == 200, moved.get_data(as_text=True)
    assert moved.get_json()["state"] == "transcoding"
    for name in ("360p", "720p"):
        assert _report(pipeline, video_id, {"rendition": name, "percent": 100}).status_code == 200
    half = _report(pipeline, video_id, {"rendition": "1080p", "percent": 50.0}).get_json()
    assert half["percent"] == pytest.approx((100 + 100 + 50) / 3)
    assert _report(pipeline, video_id, {"rendition": "1080p", "percent": 100}).status_code == 200
    assert _report(pipeline, video_id, {"state": "packaging"}).status_code == 200
    assert _report(pipeline, video_id, {"percent": 40}).get_json()["percent"] == 40
    ready = _report(pipeline, video_id, {"state": "ready"})
    assert ready.get_json()["state"] == "ready"
    assert _state(pipeline, video_id) == "ready"
    assert pipeline.client.get(f"/api/v1/reels/{video_id}").get_json()["state"] == "ready"
    # Ready videos are searchable: the video's title now finds it.
    title = pipeline.services.stores.catalog.get_video(video_id).title
    found = pipeline.client.get(f"/api/v1/reels/search?q={title}&limit=50").get_json()
    assert video_id in [item["video_id"] for item in found["items"]]


def test_a_failed_video_is_retried_from_queued(pipeline: Built) -> None:
    video_id = PENDING + 8  # left queued
    assert _report(pipeline, video_id, {"state": "transcoding"}).status_code == 200
    failed = _report(pipeline, video_id, {"rendition": "720p", "percent": 10, "error": "oom"})
    assert failed.get_json()["state"] == "failed"
    retried = _report(pipeline, video_id, {"state": "queued"})
    assert retried.status_code == 200
    assert retried.get_json()["state"] == "queued"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"state": "ready"}, 409, None),  # queued -> ready skips the pipeline
        ({"state": "packaging"}, 409, None),
        ({"rendition": "360p", "percent": 10}, 400, "state"),  # not transcoding
        ({"state": "failed"}, 400, None),  # a failure needs its error
        ({"state": "transcoding", "percent": 5}, 400, None),
        ({"percent": 101}, 400, "percent"),
        ({"percent": 5, "colour": "red"}, 400, "colour"),
        ({"state": "done"}, 400, "state"),
        ({}, 400, None),
        ({"rendition": "360p"}, 400, None),
    ],
)
def test_bad_reports_are_refused_and_change_nothing(
    pipeline: Built, body: Any, status: int, field: str | None
) -> None:
    video_id = PENDING + 12  # left queued
    before = pipeline.client.get(f"/api/v1/reels/progress/{video_id}").get_json()
    problem = _problem(_report(pipeline, video_id, body), status)
    if field is not None:
        assert problem["field"] == field
    assert pipeline.client.get(f"/api/v1/reels/progress/{video_id}").get_json() == before


def test_a_report_on_an_unknown_video_is_404(pipeline: Built) -> None:
    _problem(_report(pipeline, MISSING, {"state": "transcoding"}), 404)


def test_reports_need_the_service_token(pipeline: Built, built: Built) -> None:
    path = f"/internal/v1/reels/progress/{PENDING + 12}"
    body = {"state": "transcoding"}
    _problem(pipeline.client.put(path, json=body), 401, "Authorization")
    _problem(pipeline.client.put(path, json=body, headers=_auth()), 403, "Authorization")
    wrong = {"Authorization": "Bearer " + "u" * 40}
    _problem(pipeline.client.put(path, json=body, headers=wrong), 401, "Authorization")
    # Without a configured service token the internal endpoint is off for everyone.
    _problem(built.client.put(path, json=body, headers=PIPELINE), 403, "Authorization")
    assert _state(pipeline, PENDING + 12) == "queued"


@pytest.mark.parametrize("raw", ["0", "-1", "01", "1.5", "abc", "9223372036854775808"])
def test_path_ids_are_strict(built: Built, raw: str) -> None:
    _problem(built.client.get(f"/api/v1/reels/{raw}"), 400, "id")


# -- events -------------------------------------------------------------------------------


def test_like_is_idempotent_and_unlike_undoes_it(fresh: Built) -> None:
    base = _stats(fresh).likes
    path = f"/api/v1/reels/{VIDEO}/like"
    fresh.client.delete(path, headers=_auth())
    base = _stats(fresh).likes
    first = fresh.client.post(path, headers=_auth())
    assert first.get_json() == {"video_id": VIDEO, "liked": True, "likes": base + 1}
    assert fresh.client.post(path, headers=_auth()).get_json()["likes"] == base + 1
    undone = fresh.client.delete(path, headers=_auth()).get_json()
    assert undone == {"video_id": VIDEO, "liked": False, "likes": base}


def test_a_watch_retry_with_the_same_key_counts_once(fresh: Built) -> None:
    path = f"/api/v1/reels/{VIDEO}/watch"
    headers = {**_auth(), "Idempotency-Key": "retry-1"}
    views = _stats(fresh).views
    first = fresh.client.post(path, headers=headers, json={"completion": 0.5})
    second = fresh.client.post(path, headers=headers, json={"completion": 0.5})
    assert first.status_code == second.status_code == 201
    assert first.get_json() == second.get_json()
    assert _stats(fresh).views == views + 1
    _problem(fresh.client.post(path, headers=headers, json={"completion": 0.9}), 422)
    # The key is the caller's: another user with the same key is a new watch.
    other = {**_auth(OTHER), "Idempotency-Key": "retry-1"}
    assert fresh.client.post(path, headers=other, json={"completion": 0.5}).status_code == 201
    assert _stats(fresh).views == views + 2


def test_watches_without_a_key_count_each_time(fresh: Built) -> None:
    path = f"/api/v1/reels/{VIDEO}/watch"
    views = _stats(fresh).views
    for _ in range(2):
        response = fresh.client.post(path, headers=_auth(), json={"watched_seconds": 3})
        assert response.status_code == 201
    assert _stats(fresh).views == views + 2


def test_a_share_is_recorded_with_its_channel(fresh: Built) -> None:
    shares = _stats(fresh).shares
    response = fresh.client.post(
        f"/api/v1/reels/{VIDEO}/share",
        headers={**_auth(), "Idempotency-Key": "s-1"},
        json={"channel": "whatsapp"},
    )
    assert response.status_code == 201
    assert _stats(fresh).shares == shares + 1


def _occurred(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, None),
        ({"completion": "0.5"}, "completion"),
        ({"completion": True}, "completion"),
        ({"completion": 1.5}, "completion"),
        ({"watched_seconds": -1}, "watched_seconds"),
        ({"completion": 0.5, "user_id": OTHER}, "user_id"),
        ({"completion": 0.5, "event_id": "mine"}, "event_id"),
        ({"completion": 0.5, "occurred_at": "0001-01-01T00:00:00+14:00"}, "occurred_at"),
        ({"completion": 0.5, "occurred_at": "2026-01-01T00:00:00"}, "occurred_at"),
        ({"completion": 0.5, "occurred_at": "yesterday"}, "occurred_at"),
        ({"completion": 0.5, "occurred_at": 1_700_000_000}, "occurred_at"),
        ({"completion": 0.5, "occurred_at": _occurred(timedelta(hours=1))}, "occurred_at"),
        ({"completion": 0.5, "occurred_at": _occurred(-timedelta(days=3))}, "occurred_at"),
        ([1, 2], None),
    ],
)
def test_watch_bodies_are_strict_and_rejected_ones_write_nothing(
    fresh: Built, body: Any, field: str | None
) -> None:
    before = _stats(fresh)
    response = fresh.client.post(f"/api/v1/reels/{VIDEO}/watch", headers=_auth(), json=body)
    _problem(response, 400, field)
    assert _stats(fresh) == before


def test_the_service_recorder_refuses_events_older_than_the_idempotency_horizon(
    fresh: Built,
) -> None:
    now = datetime.now(UTC)
    before = _stats(fresh)
    with pytest.raises(InvalidInputError) as info:
        fresh.services.recorder.watch(
            USER, VIDEO, event_id="too-old", occurred_at=now - timedelta(hours=25), completion=0.5
        )
    assert info.value.field == "occurred_at"
    assert _stats(fresh) == before
    assert fresh.services.recorder.watch(
        USER, VIDEO, event_id="recent-enough", occurred_at=now - timedelta(hours=23), completion=1
    )
    # The seed wrote two weeks of history, through a recorder of its own.
    history = fresh.services.stores.log.events_between(
        now - timedelta(days=15), now - timedelta(days=2), limit=10
    )
    assert history


def test_an_offline_event_within_the_window_is_accepted(fresh: Built) -> None:
    body = {"completion": 0.5, "occurred_at": _occurred(-timedelta(hours=2))}
    response = fresh.client.post(f"/api/v1/reels/{VIDEO}/watch", headers=_auth(), json=body)
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        ("[" * 5_000 + "]" * 5_000, "application/json", 400),
        ('{"completion": NaN}', "application/json", 400),
        ("{", "application/json", 400),
        ('{"completion": 0.5}', "text/plain", 415),
        ("", "application/json", 400),
    ],
)
def test_malformed_bodies(fresh: Built, data: str, content_type: str, status: int) -> None:
    response = fresh.client.post(
        f"/api/v1/reels/{VIDEO}/watch", headers=_auth(), data=data, content_type=content_type
    )
    _problem(response, status)


def test_a_body_over_the_limit_is_413_even_chunked(fresh: Built) -> None:
    big = b'{"completion": 0.5, "pad": "' + b"x" * 40_000 + b'"}'
    path = f"/api/v1/reels/{VIDEO}/watch"
    _problem(
        fresh.client.post(path, headers=_auth(), data=big, content_type="application/json"), 413
    )
    chunked = fresh.client.post(
        path,
        headers={**_auth(), "Transfer-Encoding": "chunked", "Content-Type": "application/json"},
        input_stream=io.BytesIO(big),
    )
    _problem(chunked, 413)


def test_events_on_missing_or_unready_videos(fresh: Built) -> None:
    _problem(fresh.client.post(f"/api/v1/reels/{MISSING}/like", headers=_auth()), 404)
    _problem(fresh.client.post(f"/api/v1/reels/{PENDING}/like", headers=_auth()), 409)
    response = fresh.client.post(
        f"/api/v1/reels/{PENDING}/watch", headers=_auth(), json={"completion": 0.5}
    )
    _problem(response, 409)


def test_bad_idempotency_keys_are_400(fresh: Built) -> None:
    response = fresh.client.post(
        f"/api/v1/reels/{VIDEO}/watch",
        headers={**_auth(), "Idempotency-Key": "x" * 256},
        json={"completion": 0.5},
    )
    _problem(response, 400, "Idempotency-Key")


def test_event_requests_are_rate_limited_per_user() -> None:
    app = _build(events_per_minute=3)
    try:
        path = f"/api/v1/reels/{VIDEO}/like"
        for _ in range(3):
            assert app.client.post(path, headers=_auth()).status_code == 200
        limited = app.client.post(path, headers=_auth())
        _problem(limited, 429)
        assert 1 <= int(limited.headers["Retry-After"]) <= 61
        assert app.client.post(path, headers=_auth(OTHER)).status_code == 200
    finally:
        app.services.close()


def test_only_event_requests_look_up_rate_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    # The service sets no default or application limits: a feed page looks up none, and
    # an event request looks up the events limit once, in its handler (Flask-Limiter's
    # own check before every request looked up limits for each and found none).
    app = _build(events_per_minute=3)
    try:
        (limiter,) = app.app.extensions["limiter"]
        lookups: list[str] = []
        resolve = limiter.limit_manager.resolve_limits

        def counted(*args: Any, **kwargs: Any) -> Any:
            lookups.append(request.path)
            return resolve(*args, **kwargs)

        monkeypatch.setattr(limiter.limit_manager, "resolve_limits", counted)
        assert app.client.get("/api/v1/reels?limit=5", headers=_auth()).status_code == 200
        assert lookups == []
        liked = app.client.post(f"/api/v1/reels/{VIDEO}/like", headers=_auth())
        assert liked.status_code == 200
        assert lookups == [f"/api/v1/reels/{VIDEO}/like"]
        assert liked.headers["X-RateLimit-Limit"] == "3"
        assert liked.headers["X-RateLimit-Remaining"] == "2"
    finally:
        app.services.close()


# -- the rest -----------------------------------------------------------------------------


def test_unknown_paths_and_methods_are_problems(built: Built) -> None:
    _problem(built.client.get("/v1/search?q=x"), 404)
    response = built.client.put(f"/api/v1/reels/{VIDEO}/like", headers=_auth())
    _problem(response, 405)
    assert "POST" in response.headers["Allow"]


def test_health_and_metrics(built: Built) -> None:
    for probe in ("live", "ready", "startup"):
        assert built.client.get(f"/healthz/{probe}").get_json()["status"] == "ok"
    built.client.get("/api/v1/reels", headers=_auth())
    metrics = built.client.get("/metrics").get_data(as_text=True)
    assert "reelrank_feed_pages_total" in metrics
    assert 'route="/api/v1/reels"' in metrics


def test_more_than_one_worker_needs_a_cursor_secret() -> None:
    with pytest.raises(ConfigError):
        Settings(auth_secret=SECRET, workers=2)
    assert Settings(auth_secret=SECRET, workers=2, cursor_secret="c" * 16).workers == 2


# -- asymmetric keys ----------------------------------------------------------------------


def _rsa_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65_537, key_size=2048)


def _public_pem(private: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _header(token: str) -> str:
    return f"Bearer {token}"


def test_rs256_tokens_verify_with_a_public_key_file(tmp_path: Path) -> None:
    private = _rsa_key()
    key_file = tmp_path / "idp.pem"
    key_file.write_bytes(_public_pem(private))
    auth = Authenticator(Settings(auth_public_key_file=str(key_file)))
    assert auth.algorithms == ("RS256", "ES256")
    claims = {"sub": str(USER), "exp": datetime.now(UTC) + timedelta(minutes=5)}
    assert auth.user_id(_header(jwt.encode(claims, private, algorithm="RS256"))) == USER

    # The classic confusion: an HS256 token whose secret is the public key itself
    # (PyJWT refuses to sign one, so it is put together by hand).
    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    exp = int(claims["exp"].timestamp())
    signing_input = (
        b64(b'{"alg":"HS256","typ":"JWT"}') + b"." + b64(f'{{"sub":"{USER}","exp":{exp}}}'.encode())
    )
    mac = hmac.new(key_file.read_bytes(), signing_input, hashlib.sha256).digest()
    forged = (signing_input + b"." + b64(mac)).decode()
    with pytest.raises(AuthError, match="HS256"):
        auth.user_id(_header(forged))
    with pytest.raises(AuthError):
        auth.user_id(_header(jwt.encode(claims, _rsa_key(), algorithm="RS256")))


def test_jwks_keys_are_picked_by_kid(tmp_path: Path) -> None:
    import json

    from jwt.algorithms import RSAAlgorithm

    first, second = _rsa_key(), _rsa_key()
    keys = []
    for kid, private in (("one", first), ("two", second)):
        jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
        keys.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": keys}))
    auth = Authenticator(Settings(auth_jwks_file=str(jwks), auth_algorithms=["RS256"]))
    claims = {"sub": str(USER), "exp": datetime.now(UTC) + timedelta(minutes=5)}
    good = jwt.encode(claims, second, algorithm="RS256", headers={"kid": "two"})
    assert auth.user_id(_header(good)) == USER
    wrong = jwt.encode(claims, first, algorithm="RS256", headers={"kid": "two"})
    with pytest.raises(AuthError):
        auth.user_id(_header(wrong))
    unknown = jwt.encode(claims, first, algorithm="RS256", headers={"kid": "three"})
    with pytest.raises(AuthError):
        auth.user_id(_header(unknown))


def test_issuer_and_audience_are_enforced_when_configured() -> None:
    auth = Authenticator(_settings(auth_issuer="https://idp", auth_audience="reels"))
    exp = datetime.now(UTC) + timedelta(minutes=5)
    base = {"sub": str(USER), "exp": exp}
    ok = jwt.encode({**base, "iss": "https://idp", "aud": "reels"}, SECRET, "HS256")
    assert auth.user_id(_header(ok)) == USER
    for claims in ({**base, "iss": "https://other", "aud": "reels"}, base):
        with pytest.raises(AuthError):
            auth.user_id(_header(jwt.encode(claims, SECRET, "HS256")))


def test_a_token_is_verified_once_and_refused_once_it_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    auth = Authenticator(_settings(auth_leeway_seconds=0.0))
    decoded: list[str] = []
    decode = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        decoded.append(token)
        return decode(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    now = datetime.now(UTC)
    short = jwt.encode({"sub": str(USER), "exp": now + timedelta(seconds=2)}, SECRET, "HS256")
    for _ in range(3):
        assert auth.user_id(_header(short)) == USER
    assert len(decoded) == 1
    # A token not valid yet is not remembered as valid.
    later = jwt.encode(
        {"sub": str(USER), "nbf": now + timedelta(minutes=5), "exp": now + timedelta(minutes=9)},
        SECRET,
        "HS256",
    )
    for _ in range(2):
        with pytest.raises(AuthError, match="not valid yet"):
            auth.user_id(_header(later))
    # Remembered or not, an expired token is refused (PyJWT checks exp in whole seconds).
    time.sleep(3.1)
    with pytest.raises(AuthError, match="expired"):
        auth.user_id(_header(short))


def test_default_app_reads_affinities_in_bulk_under_the_start_up_deadline() -> None:
    from reelrank_example import _guarded  # the wiring create_default_app uses
    from reelrank_example._metrics import AppMetrics

    from reelrank import BulkReadEventStore, StoreTimeoutError

    stores = memory_stores()
    events = FaultInjector(stores.events, name="events")
    guarded = _guarded(dataclasses.replace(stores, events=events.proxy), AppMetrics().observer)
    assert isinstance(guarded.events, BulkReadEventStore)
    events.stall(0.5)
    try:
        # A point read gives up after 0.25 s; warming's read of a batch waits the stall out.
        with pytest.raises(StoreTimeoutError):
            guarded.events.get_affinities(1, [1])
        assert guarded.events.get_affinities_many({1: [1]}) == {1: {1: 0.0}}
    finally:
        events.recover()


@pytest.mark.integration
@pytest.mark.parametrize("held", [0, 1_234])
def test_the_clickhouse_event_store_holds_the_liked_pairs_set(
    servers: dict[str, Any], held: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import reelrank_clickhouse

    asked: list[int] = []

    class Recording(reelrank_clickhouse.ClickHouseEventStore):
        """The adapter's store, noting the ``held_like_pairs`` it is built with."""

        def __init__(self, *args: Any, held_like_pairs: int = 5_000_000, **kwargs: Any) -> None:
            asked.append(held_like_pairs)
            super().__init__(*args, held_like_pairs=held_like_pairs, **kwargs)

    monkeypatch.setattr(reelrank_clickhouse, "ClickHouseEventStore", Recording)
    stores = configured_stores(_settings(**servers, clickhouse_held_like_pairs=held))
    try:
        assert asked == [held]
    finally:
        for close in stores.closers:
            close()


class _AgedEvents(InMemoryEventStore):
    """An event store whose bounded-age read answers from ``held``, a store of the
    events given to :meth:`append_held` (the counts of some seconds ago), once
    ``holding``; it records its exact and bounded reads."""

    def __init__(self) -> None:
        super().__init__()
        self.held = InMemoryEventStore()
        self.holding = False
        self.exact_reads: list[list[int]] = []
        self.bounded_reads: list[list[int]] = []

    def append_held(self, event: Any, *, creator_id: int) -> None:
        self.append(event, creator_id=creator_id)
        self.held.append(event, creator_id=creator_id)

    def get_stats(self, video_ids: Any) -> dict[int, VideoStats]:
        self.exact_reads.append(list(video_ids))
        return super().get_stats(video_ids)

    def stats_columns_within(self, video_ids: Any, *, max_age_seconds: float) -> Any:
        self.bounded_reads.append(list(video_ids))
        return self.held.stats_columns(video_ids) if self.holding else None


def test_reused_counts_rank_unknown_matches_on_bounded_age_counts_read_again_later() -> None:
    events = _AgedEvents()
    events.append_held(make_event("like", user_id=1, video_id=7), creator_id=1)
    events.append(make_event("like", user_id=2, video_id=7), creator_id=1)  # not held yet
    now = [100.0]
    refresher = _HeldRefreshes()
    counts = ReusedCounts(
        events, ttl=10.0, stale=30.0, clock=lambda: now[0], refresher=refresher, bounded_age=5.0
    )
    # Nothing held: read during the call, as before.
    assert counts.get_stats([7])[7].likes == 2 and events.exact_reads == [[7]]
    events.holding = True
    assert counts.get_stats([8, 9]) == {8: VideoStats(video_id=8), 9: VideoStats(video_id=9)}
    now[0] = 150.0
    # 7's counts are older than ttl + stale: the bounded-age read answers, no exact read.
    assert counts.get_stats([7])[7].likes == 1
    assert events.exact_reads == [[7]] and events.bounded_reads[-1] == [7]
    # Kept as read 5 s ago: reused for 5 s more, then ranked on while read again in the
    # background, as any count that old.
    now[0] = 154.9
    assert counts.get_stats([7])[7].likes == 1
    assert not refresher.held
    now[0] = 155.0
    assert counts.get_stats([7])[7].likes == 1
    refresher.run()
    assert events.exact_reads == [[7], [7]]  # in the background
    assert counts.get_stats([7])[7].likes == 2


def test_reused_counts_read_a_video_this_process_recorded_on_exactly() -> None:
    events = _AgedEvents()
    events.append_held(make_event("like", user_id=1, video_id=7), creator_id=1)
    events.holding = True
    now = [0.0]
    counts = ReusedCounts(
        events, ttl=10.0, clock=lambda: now[0], refresher=_HeldRefreshes(), bounded_age=5.0
    )
    events.append(make_event("like", user_id=2, video_id=7), creator_id=1)
    counts.forget([7])  # this process recorded the like
    assert counts.get_stats([7, 8])[7].likes == 2  # read exactly, during the call
    assert events.exact_reads == [[7]] and events.bounded_reads == [[8]]
    now[0] = 5.1  # the like arrived more than the bound ago: a bounded read counts it
    events.held.append(make_event("like", user_id=2, video_id=7), creator_id=1)
    now[0] = 20.0
    assert counts.get_stats([7])[7].likes == 2
    assert events.exact_reads == [[7]]


def test_cards_show_bounded_age_counts_of_videos_never_read_but_read_an_event_exactly() -> None:
    catalog, events = InMemoryCatalog(), _AgedEvents()
    catalog.put_creator(make_creator(1))
    for video_id in (7, 8):
        catalog.put_video(make_video(video_id, 1))
    events.append_held(make_event("share", user_id=1, video_id=7), creator_id=1)
    events.append(make_event("share", user_id=2, video_id=7), creator_id=1)  # not held yet
    events.holding = True
    now = [0.0]
    cards = cards_module.CardReader(
        catalog, events, ttl=60.0, counts_ttl=10.0, clock=lambda: now[0], bounded_age=30.0
    )
    assert cards.read([7, 8]).stats[7].shares == 1  # up to min(30, 10) s old
    assert events.exact_reads == [] and events.bounded_reads == [[7, 8]]
    assert events.bounded_reads and cards._bounded_age == 10.0
    # A like this process records is shown on the next card, read exactly.
    events.append(make_event("like", user_id=3, video_id=8), creator_id=1)
    cards.forget_counts([8])
    assert cards.read([8]).stats[8].likes == 1
    assert events.exact_reads == [[8]]
    # A video's detail reads its counts afresh, as before.
    assert cards.read([7], fresh_counts=True).stats[7].shares == 2
    assert events.exact_reads == [[8], [7]]


@pytest.mark.integration
def test_a_first_search_and_its_cards_query_no_clickhouse_once_the_store_holds_counts(
    servers: dict[str, Any],
) -> None:
    """On the real stores, once the ClickHouse store holds its roll-up and what arrived
    since (recent within ``bounded_counts_seconds``), the first search of a query ranks
    its never-read matches and shows its cards' counts with no ClickHouse query on the
    request's thread; the exact reads happen in the background."""
    from contextlib import contextmanager

    from reelrank_clickhouse import ClickHouseEventStore
    from reelrank_example import fold_stats

    fold_stats(_settings(**servers), until=datetime.now(UTC))  # 0 when one is as new
    built = _build_on_servers(servers)
    try:
        store: Any = built.services.stores.events
        while not isinstance(store, ClickHouseEventStore):
            store = store._wrapped
        deadline = time.monotonic() + 60
        while store.stats_columns_within([VIDEO], max_age_seconds=10) is None:
            assert time.monotonic() < deadline, "the store never held recent enough counts"
            time.sleep(0.1)
        request_thread = threading.get_ident()
        queries: list[str] = []
        reader = store._clients.reader

        @contextmanager
        def recording() -> Iterator[Any]:
            with reader() as client:
                if threading.get_ident() == request_thread:
                    queries.append("a reading client taken")
                yield client

        store._clients.reader = recording
        response = built.client.get("/api/v1/reels/search?q=music&limit=10", headers=_auth())
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.get_json()["items"]
        assert queries == []
    finally:
        built.services.close()


def test_start_up_warms_each_user_of_the_days_events_once_most_recent_first() -> None:
    import numpy as np
    from reelrank_example import _active_users

    newest_first = np.array([5, 3, 5, 9, 3, 1], dtype=np.int64)
    assert _active_users(newest_first, 10) == [5, 3, 9, 1]
    assert _active_users(newest_first, 3) == [5, 3, 9]
    assert _active_users(np.array([], dtype=np.int64), 3) == []
