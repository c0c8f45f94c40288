"""The example Flask application (examples/flask_app): every endpoint over the test client.

The app runs on the embedded in-memory stores seeded with the synthetic catalog; store
failures are injected with :class:`reelrank.testing.FaultInjector`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import m3u8
import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mpegdash.parser import MPEGDASHParser
from prometheus_client.parser import text_string_to_metric_families

from reelrank import (
    WEIGHT_FIELDS,
    ConfigError,
    CursorError,
    FeedServiceConfig,
    FeedUnavailableError,
    InvalidInputError,
    InvalidTransitionError,
    NotFoundError,
    NotReadyError,
    ProcessingState,
    QueryError,
    ReelrankError,
    StoreDeadlines,
    StoreError,
    StoreTimeoutError,
    VideoStats,
)
from reelrank.testing import FaultInjector

EXAMPLE_ROOT = Path(__file__).resolve().parents[1] / "examples" / "flask_app"
# The example is an application, not an installed distribution: import it from its folder.
sys.path.insert(0, str(EXAMPLE_ROOT))

from reelrank_example import (  # noqa: E402
    DASH_CONTENT_TYPE,
    FIRST_USER_ID,
    FIRST_VIDEO_ID,
    HLS_CONTENT_TYPE,
    Services,
    Settings,
    Stores,
    build_default_services,
    build_services,
    create_app,
    create_default_app,
    memory_stores,
    redis_stores,
    seed_synthetic_catalog,
)

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
SETTINGS = Settings(
    creators=12,
    videos=90,
    pending_videos=4,
    users=20,
    events=700,
    cursor_secret="a-test-secret-of-some-length",
)
USER = FIRST_USER_ID
QUEUED_VIDEO = FIRST_VIDEO_ID + SETTINGS.videos  # the first pending video stops at queued
TRANSCODING_VIDEO = QUEUED_VIDEO + 1
UNKNOWN_VIDEO = 9_999_999


# Faults injected here fail at once, so nothing needs a short deadline; generous ones keep
# a busy machine's scheduling delays from turning into spurious timeouts and degraded pages.
FEED_CONFIG = FeedServiceConfig(
    cursor_secret="a-test-secret-of-some-length",
    deadlines=StoreDeadlines(catalog=30, events=30, seen=30, models=30, cache=30),
    refresh_pool_in_background=False,
)


def _clock() -> datetime:
    return NOW


@dataclass
class App:
    services: Services
    app: Flask
    client: FlaskClient

    @property
    def stores(self) -> Stores:
        return self.services.stores

    def ready_ids(self) -> set[int]:
        return {video.video_id for video in self.stores.catalog.recent_videos(limit=10_000)}

    def stats(self, video_id: int) -> VideoStats:
        return self.stores.events.get_stats([video_id])[video_id]

    def log_size(self) -> int:
        return len(self.stores.log.events_between(NOW - timedelta(days=365), NOW, limit=10**6))


def _make_app(settings: Settings = SETTINGS, wrap: Callable[[Stores], Stores] | None = None) -> App:
    stores = memory_stores()
    embeddings = seed_synthetic_catalog(stores, settings, now=NOW)
    stores = dataclasses.replace(stores, embeddings=embeddings)
    if wrap is not None:
        stores = wrap(stores)
    services = build_services(stores, settings, clock=_clock, feed_config=FEED_CONFIG)
    app = create_app(services)
    return App(services, app, app.test_client())


@pytest.fixture
def api() -> Iterator[App]:
    built = _make_app()
    yield built
    built.services.close()


def _error(response: Any, status: int, error_type: str, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    error: dict[str, Any] = response.get_json()["error"]
    assert error["type"] == error_type
    assert error["field"] == field
    assert error["message"]
    return error


def _event(kind: str, video_id: int, event_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "kind": kind,
        "user_id": USER,
        "video_id": video_id,
        "occurred_at": (NOW - timedelta(minutes=1)).isoformat(),
        **fields,
    }


# -- feed ----------------------------------------------------------------------------------


def test_feed_page_items_carry_a_score_that_their_breakdown_adds_up_to(api: App) -> None:
    response = api.client.get(f"/v1/users/{USER}/feed?limit=7")
    assert response.status_code == 200
    page = response.get_json()
    assert page["user_id"] == USER
    assert len(page["items"]) == 7
    assert page["from_cache"] is False
    assert page["degraded"] == []
    assert page["variant"] is None
    assert isinstance(page["next_cursor"], str)
    scores = [item["score"] for item in page["items"]]
    assert scores == sorted(scores, reverse=True)
    for item in page["items"]:
        assert tuple(item["breakdown"]) == WEIGHT_FIELDS
        assert math.isclose(sum(item["breakdown"].values()), item["score"], rel_tol=1e-5)
        assert item["video_id"] in api.ready_ids()


def test_paging_with_the_cursor_serves_every_ready_video_once(api: App) -> None:
    served: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = f"?limit=8&cursor={cursor}" if cursor else "?limit=8"
        page = api.client.get(f"/v1/users/{USER}/feed{query}").get_json()
        pages += 1
        assert page["from_cache"] is (pages > 1)
        served.extend(item["video_id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 100, "the feed never ended"
    assert len(served) == len(set(served))
    # The user saw nothing before, and the snapshot holds every candidate.
    assert set(served) == api.ready_ids()
    # Served items are now seen: a fresh first page repeats none of them.
    again = api.client.get(f"/v1/users/{USER}/feed?limit=8").get_json()
    assert not {item["video_id"] for item in again["items"]} & set(served)


def test_a_tampered_cursor_is_refused(api: App) -> None:
    first = api.client.get(f"/v1/users/{USER}/feed?limit=5").get_json()
    cursor = first["next_cursor"]
    last = cursor[-1]
    tampered = cursor[:-1] + ("A" if last != "A" else "B")
    _error(
        api.client.get(f"/v1/users/{USER}/feed?cursor={tampered}"), 400, "cursor_error", "cursor"
    )
    _error(api.client.get(f"/v1/users/{USER}/feed?cursor=garbage"), 400, "cursor_error", "cursor")
    # A genuine cursor issued to another user is refused too.
    _error(
        api.client.get(f"/v1/users/{USER + 1}/feed?cursor={cursor}"), 400, "cursor_error", "cursor"
    )


@pytest.mark.parametrize(
    ("path", "field"),
    [
        (f"/v1/users/{USER}/feed?limit=0", "limit"),
        (f"/v1/users/{USER}/feed?limit=abc", "limit"),
        (f"/v1/users/{USER}/feed?limit=1_0", "limit"),
        (f"/v1/users/{USER}/feed?limit=100000", "limit"),
        ("/v1/users/abc/feed", "user_id"),
        ("/v1/users/0/feed", "user_id"),
        ("/v1/users/-3/feed", "user_id"),
        (f"/v1/users/{2**63}/feed", "user_id"),
    ],
)
def test_bad_feed_requests_are_400_and_write_nothing(api: App, path: str, field: str) -> None:
    before = api.services.feed.stats()
    _error(api.client.get(path), 400, "invalid_input", field)
    after = api.services.feed.stats()
    assert (after.pages, after.snapshots_ranked) == (before.pages, before.snapshots_ranked)
    since = NOW - timedelta(days=365)
    assert api.stores.seen.recently_seen(USER, since=since, limit=10) == []


def test_experiment_variants_are_reported_and_stable_per_user() -> None:
    built = _make_app(SETTINGS.model_copy(update={"experiment": True}))
    try:
        variants = {}
        for user in range(USER, USER + 12):
            first = built.client.get(f"/v1/users/{user}/feed?limit=2").get_json()["variant"]
            second = built.client.get(f"/v1/users/{user}/feed?limit=2").get_json()["variant"]
            assert first == second
            variants[user] = first
        assert set(variants.values()) == {"control", "fresh"}
    finally:
        built.services.close()


# -- degradation ---------------------------------------------------------------------------


def test_a_failing_seen_store_gives_a_degraded_page_not_a_500() -> None:
    seen: list[FaultInjector[Any]] = []

    def failing_seen(stores: Stores) -> Stores:
        seen.append(FaultInjector(stores.seen, name="seen"))
        return dataclasses.replace(stores, seen=seen[0].proxy)

    built = _make_app(wrap=failing_seen)
    try:
        seen[0].fail()
        response = built.client.get(f"/v1/users/{USER}/feed?limit=5")
        assert response.status_code == 200
        page = response.get_json()
        assert len(page["items"]) == 5
        assert "seen" in {entry["dependency"] for entry in page["degraded"]}
        assert built.services.feed.stats().degraded_pages == 1
    finally:
        built.services.close()


def test_a_failing_event_store_ranks_without_stats_and_affinity() -> None:
    events: list[FaultInjector[Any]] = []

    def failing_events(stores: Stores) -> Stores:
        events.append(FaultInjector(stores.events, name="events"))
        return dataclasses.replace(stores, events=events[0].proxy)

    built = _make_app(wrap=failing_events)
    try:
        events[0].fail()
        page = built.client.get(f"/v1/users/{USER}/feed?limit=5").get_json()
        assert len(page["items"]) == 5
        degraded = {entry["dependency"] for entry in page["degraded"]}
        assert {"stats", "affinity"} <= degraded
        for item in page["items"]:
            assert item["breakdown"]["affinity"] == 0.0
        # Search reads stats directly, without a fallback: an outage is a 503.
        response = built.client.get("/v1/search?q=cooking")
        error = _error(response, 503, "store_unavailable")
        assert error["store"] == "events"
        assert response.headers["Retry-After"] == "1"
    finally:
        built.services.close()


def test_a_failing_catalog_without_any_cached_feed_is_503() -> None:
    catalogs: list[FaultInjector[Any]] = []

    def failing_catalog(stores: Stores) -> Stores:
        catalogs.append(FaultInjector(stores.catalog, name="catalog"))
        return dataclasses.replace(stores, catalog=catalogs[0].proxy)

    built = _make_app(wrap=failing_catalog)
    try:
        catalogs[0].fail()
        response = built.client.get(f"/v1/users/{USER}/feed")
        _error(response, 503, "feed_unavailable")
        assert response.headers["Retry-After"] == "1"
        catalogs[0].recover()
        assert built.client.get(f"/v1/users/{USER}/feed").status_code == 200
    finally:
        built.services.close()


def test_healthz_reports_an_open_circuit() -> None:
    catalogs: list[FaultInjector[Any]] = []

    def failing_catalog(stores: Stores) -> Stores:
        catalogs.append(FaultInjector(stores.catalog, name="catalog"))
        return dataclasses.replace(stores, catalog=catalogs[0].proxy)

    built = _make_app(wrap=failing_catalog)
    try:
        catalogs[0].fail()
        threshold = built.services.feed.config.breaker_failure_threshold
        for _ in range(threshold):
            _error(built.client.get(f"/v1/users/{USER}/feed"), 503, "feed_unavailable")
        health = built.client.get("/healthz")
        assert health.status_code == 200
        body = health.get_json()
        assert body["status"] == "degraded"
        assert body["breakers"]["catalog"] == "open"
        assert body["breakers"]["seen"] == "closed"
        before = catalogs[0].calls.copy()
        _error(built.client.get(f"/v1/users/{USER}/feed"), 503, "feed_unavailable")
        assert catalogs[0].calls == before, "an open circuit must not call the catalog"
    finally:
        built.services.close()


# -- events --------------------------------------------------------------------------------


def test_events_are_recorded_once_per_event_id(api: App) -> None:
    video = FIRST_VIDEO_ID + 3
    before = api.stats(video)
    log_before = api.log_size()
    first = api.client.post("/v1/events", json=_event("like", video, "like-1"))
    assert first.status_code == 201
    assert first.get_json() == {"event_id": "like-1", "applied": True}
    again = api.client.post("/v1/events", json=_event("like", video, "like-1"))
    assert again.status_code == 200
    assert again.get_json() == {"event_id": "like-1", "applied": False}
    assert api.stats(video).likes == before.likes + 1
    assert api.log_size() == log_before + 1

    watch = _event("watch", video, "watch-1", completion=0.5)
    assert api.client.post("/v1/events", json=watch).status_code == 201
    share = _event("share", video, "share-1", channel="link")
    assert api.client.post("/v1/events", json=share).status_code == 201
    unlike = _event("unlike", video, "unlike-1")
    assert api.client.post("/v1/events", json=unlike).status_code == 201
    after = api.stats(video)
    assert after.views == before.views + 1
    assert math.isclose(after.completion_sum, before.completion_sum + 0.5)
    assert after.shares == before.shares + 1
    assert after.likes == before.likes
    assert api.log_size() == log_before + 4


def test_a_watch_counts_watched_seconds_as_completion(api: App) -> None:
    video = api.stores.catalog.get_video(FIRST_VIDEO_ID + 4)
    before = api.stats(video.video_id)
    body = _event("watch", video.video_id, "watch-secs", watched_seconds=video.duration_seconds / 4)
    assert api.client.post("/v1/events", json=body).status_code == 201
    after = api.stats(video.video_id)
    assert math.isclose(after.completion_sum - before.completion_sum, 0.25)


_VIDEO = FIRST_VIDEO_ID + 5
_BAD_EVENTS: list[tuple[dict[str, Any], int, str, str | None]] = [
    ({"kind": "like", "user_id": USER}, 400, "invalid_input", "event_id"),
    (_event("dislike", _VIDEO, "bad-1"), 400, "invalid_input", "kind"),
    (_event("watch", _VIDEO, "bad-2"), 400, "invalid_input", "watched_seconds"),
    (_event("watch", _VIDEO, "bad-3", completion=1.5), 400, "invalid_input", "completion"),
    (_event("like", _VIDEO, "bad-4", completion=0.5), 400, "invalid_input", "completion"),
    (_event("share", _VIDEO, "bad-5"), 400, "invalid_input", "channel"),
    (_event("like", _VIDEO, "bad-6", user_id="12"), 400, "invalid_input", "user_id"),
    (_event("like", _VIDEO, "bad-7", user_id=0), 400, "invalid_input", "user_id"),
    (_event("like", _VIDEO, "bad id"), 400, "invalid_input", "event_id"),
    (_event("like", _VIDEO, "bad-8", extra=1), 400, "invalid_input", "extra"),
    (
        _event("like", _VIDEO, "bad-9", occurred_at=(NOW + timedelta(hours=1)).isoformat()),
        400,
        "invalid_input",
        "occurred_at",
    ),
    (
        _event("like", _VIDEO, "bad-10", occurred_at="2026-11-01T11:00:00"),
        400,
        "invalid_input",
        "occurred_at",
    ),
    (_event("like", UNKNOWN_VIDEO, "bad-11"), 404, "not_found", None),
    (_event("like", QUEUED_VIDEO, "bad-12"), 409, "not_ready", None),
]


@pytest.mark.parametrize(("body", "status", "error_type", "field"), _BAD_EVENTS)
def test_bad_events_are_refused_and_write_nothing(
    api: App, body: dict[str, Any], status: int, error_type: str, field: str | None
) -> None:
    video = body.get("video_id", _VIDEO)
    known = video in api.ready_ids()
    before = api.stats(video) if known else None
    log_before = api.log_size()
    _error(api.client.post("/v1/events", json=body), status, error_type, field)
    assert api.log_size() == log_before
    if known:
        assert api.stats(video) == before
    # The refused event id was not consumed: a valid event may still use it.
    if "event_id" in body and field != "event_id":
        fixed = _event("like", _VIDEO, body["event_id"])
        assert api.client.post("/v1/events", json=fixed).status_code == 201


def test_not_ready_event_names_the_state(api: App) -> None:
    error = _error(
        api.client.post("/v1/events", json=_event("like", TRANSCODING_VIDEO, "nr-1")),
        409,
        "not_ready",
    )
    assert error["state"] == "transcoding"


@pytest.mark.parametrize(
    ("data", "content_type", "status", "error_type"),
    [
        (b"{", "application/json", 400, "malformed_json"),
        (b"", "application/json", 400, "malformed_json"),
        (b'{"event_id": NaN}', "application/json", 400, "malformed_json"),
        (b"\xff\xfe", "application/json", 400, "malformed_json"),
        (b"[1, 2]", "application/json", 400, "malformed_json"),
        (b'"like"', "application/json", 400, "malformed_json"),
        (b'{"event_id": "x"}', "text/plain", 415, "unsupported_media_type"),
    ],
)
def test_malformed_bodies_are_refused_and_write_nothing(
    api: App, data: bytes, content_type: str, status: int, error_type: str
) -> None:
    log_before = api.log_size()
    response = api.client.post("/v1/events", data=data, content_type=content_type)
    _error(response, status, error_type, "body")
    assert api.log_size() == log_before


def test_an_oversized_body_is_413(api: App) -> None:
    body = b'{"event_id": "' + b"x" * (70 * 1024) + b'"}'
    response = api.client.post("/v1/events", data=body, content_type="application/json")
    _error(response, 413, "request_entity_too_large")


# -- discovery -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sounds", "hashtags"])
def test_trending(api: App, kind: str) -> None:
    response = api.client.get(f"/v1/trending/{kind}?window_hours=48&limit=5")
    assert response.status_code == 200
    snapshot = response.get_json()
    assert snapshot["kind"] == kind.removesuffix("s")
    assert snapshot["window_hours"] == 48.0
    assert snapshot["stale_as_of"] is None
    items = snapshot["items"]
    assert 0 < len(items) <= 5
    assert [item["score"] for item in items] == sorted(
        (item["score"] for item in items), reverse=True
    )
    videos = api.stores.catalog.recent_videos(limit=10_000)
    keys = (
        {v.sound_id for v in videos}
        if kind == "sounds"
        else {t for v in videos for t in v.hashtags}
    )
    assert {item["key"] for item in items} <= keys
    default = api.client.get(f"/v1/trending/{kind}").get_json()
    assert default["window_hours"] == 24.0


@pytest.mark.parametrize("window", ["0.5", "abc", "nan", "169", "inf", "1e400", "2_4", " 24", ""])
def test_trending_refuses_a_bad_window(api: App, window: str) -> None:
    response = api.client.get(f"/v1/trending/hashtags?window_hours={window}")
    _error(response, 400, "invalid_input", "window_hours")


def test_recommended_creators_leave_out_followed_ones(api: App) -> None:
    followed = api.stores.catalog.followed_creators(USER)
    response = api.client.get(f"/v1/users/{USER}/recommended-creators?limit=5")
    assert response.status_code == 200
    body = response.get_json()
    assert body["user_id"] == USER
    creators = body["creators"]
    assert 0 < len(creators) <= 5
    ids = [item["creator_id"] for item in creators]
    assert not set(ids) & followed
    assert USER not in ids
    scores = [item["score"] for item in creators]
    assert scores == sorted(scores, reverse=True)
    _error(
        api.client.get(f"/v1/users/{USER}/recommended-creators?limit=100000"),
        400,
        "invalid_input",
        "limit",
    )


def test_search_finds_videos_with_the_term(api: App) -> None:
    response = api.client.get("/v1/search?q=cooking&limit=5")
    assert response.status_code == 200
    body = response.get_json()
    assert body["query"] == "cooking"
    hits = body["hits"]
    assert 0 < len(hits) <= 5
    videos = api.stores.catalog.get_videos([hit["video_id"] for hit in hits])
    for hit in hits:
        video = videos[hit["video_id"]]
        assert "cooking" in video.hashtags or "cooking" in video.title
    prefix = api.client.get("/v1/search?q=cook&as_you_type=true&limit=5").get_json()
    assert prefix["hits"]
    _error(
        api.client.get("/v1/search?q=cook&as_you_type=maybe"), 400, "invalid_input", "as_you_type"
    )


@pytest.mark.parametrize("query", ["", "q=", "q=%20%20", "q=" + "a" * 500])
def test_search_refuses_an_unusable_query(api: App, query: str) -> None:
    _error(api.client.get(f"/v1/search?{query}"), 400, "query_error", "query")


def test_similar_videos(api: App) -> None:
    video = FIRST_VIDEO_ID + 1
    response = api.client.get(f"/v1/videos/{video}/similar?k=5")
    assert response.status_code == 200
    body = response.get_json()
    assert body["video_id"] == video
    items = body["items"]
    assert len(items) == 5
    assert video not in {item["video_id"] for item in items}
    assert {item["basis"] for item in items} == {"embedding"}
    assert {item["video_id"] for item in items} <= api.ready_ids()


def test_similar_videos_leave_out_what_the_user_has_seen(api: App) -> None:
    video = FIRST_VIDEO_ID + 1
    everything = api.client.get(f"/v1/videos/{video}/similar?k=10&user_id={USER}").get_json()
    top = [item["video_id"] for item in everything["items"]]
    now = NOW
    api.stores.seen.mark_seen(USER, top[:3], now)
    after = api.client.get(f"/v1/videos/{video}/similar?k=10&user_id={USER}").get_json()
    remaining = [item["video_id"] for item in after["items"]]
    assert not set(top[:3]) & set(remaining)
    assert remaining[:7] == top[3:]


def test_similar_videos_errors(api: App) -> None:
    _error(api.client.get(f"/v1/videos/{UNKNOWN_VIDEO}/similar"), 404, "not_found")
    _error(api.client.get(f"/v1/videos/{FIRST_VIDEO_ID}/similar?k=-1"), 400, "invalid_input", "k")
    _error(
        api.client.get(f"/v1/videos/{FIRST_VIDEO_ID}/similar?user_id=x"),
        400,
        "invalid_input",
        "user_id",
    )


# -- manifests and processing ----------------------------------------------------------------


def test_hls_manifest_parses(api: App) -> None:
    response = api.client.get(f"/v1/videos/{FIRST_VIDEO_ID}/manifest.m3u8")
    assert response.status_code == 200
    assert response.content_type == HLS_CONTENT_TYPE
    playlist = m3u8.loads(response.get_data(as_text=True))
    assert playlist.is_variant
    video = api.stores.catalog.get_video(FIRST_VIDEO_ID)
    assert [p.uri for p in playlist.playlists] == [r.uri for r in video.renditions]
    assert [p.stream_info.average_bandwidth for p in playlist.playlists] == [
        r.bitrate_kbps * 1000 for r in video.renditions
    ]


def test_dash_manifest_parses(api: App) -> None:
    response = api.client.get(f"/v1/videos/{FIRST_VIDEO_ID}/manifest.mpd")
    assert response.status_code == 200
    assert response.content_type == DASH_CONTENT_TYPE
    text = response.get_data(as_text=True)
    ET.fromstring(text.encode())  # well-formed XML
    mpd = MPEGDASHParser.parse(text)
    video = api.stores.catalog.get_video(FIRST_VIDEO_ID)
    representations = mpd.periods[0].adaptation_sets[0].representations
    assert [(r.width, r.height) for r in representations] == [
        (r.width, r.height) for r in video.renditions
    ]


@pytest.mark.parametrize("suffix", ["manifest.m3u8", "manifest.mpd"])
def test_manifest_of_a_video_not_ready_is_409_naming_its_state(api: App, suffix: str) -> None:
    error = _error(api.client.get(f"/v1/videos/{TRANSCODING_VIDEO}/{suffix}"), 409, "not_ready")
    assert error["state"] == "transcoding"
    error = _error(api.client.get(f"/v1/videos/{UNKNOWN_VIDEO}/{suffix}"), 404, "not_found")
    assert error["kind"] == "video"


def test_processing_progress(api: App) -> None:
    ready = api.client.get(f"/v1/videos/{FIRST_VIDEO_ID}/processing").get_json()
    assert ready["state"] == ProcessingState.READY
    assert ready["percent"] == 100.0
    assert [r["status"] for r in ready["renditions"]] == ["done"] * 3
    transcoding = api.client.get(f"/v1/videos/{TRANSCODING_VIDEO}/processing").get_json()
    assert transcoding["state"] == ProcessingState.TRANSCODING
    assert 0.0 < transcoding["percent"] < 100.0
    error = _error(api.client.get(f"/v1/videos/{UNKNOWN_VIDEO}/processing"), 404, "not_found")
    assert error["kind"] == "processing"


# -- operations ------------------------------------------------------------------------------


def test_healthz(api: App) -> None:
    body = api.client.get("/healthz").get_json()
    assert body["status"] == "ok"
    assert set(body["breakers"]) == {"catalog", "events", "seen", "models", "cache"}


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_expose_cache_hits_and_latency(api: App) -> None:
    first = api.client.get(f"/v1/users/{USER}/feed?limit=3").get_json()
    api.client.get(f"/v1/users/{USER}/feed?limit=3&cursor={first['next_cursor']}")
    api.client.get("/v1/users/abc/feed")
    response = api.client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    samples = _samples(response.get_data(as_text=True))
    assert samples[("reelrank_feed_pages_total", ())] == 2.0
    assert samples[("reelrank_feed_pages_from_cache_total", ())] == 1.0
    assert samples[("reelrank_feed_cache_hits_total", (("level", "0"),))] == 1.0
    assert samples[("reelrank_feed_cache_misses_total", (("level", "0"),))] == 1.0
    assert samples[("reelrank_feed_cache_hit_rate", (("level", "0"),))] == 0.5
    feed = (("method", "GET"), ("route", "/v1/users/<user_id>/feed"))
    assert (
        samples[("reelrank_http_request_duration_seconds_count", (*feed, ("status", "200")))] == 2
    )
    assert (
        samples[("reelrank_http_request_duration_seconds_count", (*feed, ("status", "400")))] == 1
    )


def test_unknown_routes_and_methods_get_json_errors(api: App) -> None:
    _error(api.client.get("/v1/nothing-here"), 404, "not_found")
    response = api.client.post("/v1/search")
    _error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


# -- no input is a server error ------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_api() -> Iterator[App]:
    built = _make_app()
    yield built
    built.services.close()


_TEXT = st.text(max_size=40)
_QUERY_PATHS = [
    ("/v1/users/{user}/feed", ("limit", "cursor")),
    ("/v1/trending/sounds", ("window_hours", "limit")),
    ("/v1/trending/hashtags", ("window_hours", "limit")),
    ("/v1/users/{user}/recommended-creators", ("limit",)),
    ("/v1/search", ("q", "limit", "as_you_type")),
    ("/v1/videos/{video}/similar", ("k", "user_id")),
    ("/v1/videos/{video}/manifest.m3u8", ()),
    ("/v1/videos/{video}/processing", ()),
]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    endpoint=st.sampled_from(_QUERY_PATHS),
    user=st.one_of(st.integers(-(2**70), 2**70).map(str), _TEXT),
    video=st.one_of(st.integers(FIRST_VIDEO_ID - 2, FIRST_VIDEO_ID + 200).map(str), _TEXT),
    values=st.lists(
        st.one_of(_TEXT, st.integers(-(2**65), 2**65).map(str)), min_size=3, max_size=3
    ),
)
def test_any_query_gets_a_json_answer_never_a_500(
    shared_api: App,
    endpoint: tuple[str, tuple[str, ...]],
    user: str,
    video: str,
    values: list[str],
) -> None:
    template, names = endpoint
    path = template.format(
        user=urllib.parse.quote(user, safe=""), video=urllib.parse.quote(video, safe="")
    )
    query = dict(zip(names, values, strict=False))
    response = shared_api.client.get(path, query_string=query)
    assert response.status_code < 500, response.get_data(as_text=True)
    if response.status_code >= 400:
        assert response.mimetype == "application/json"
        error = response.get_json()["error"]
        assert error["message"]
        if error["type"] in {"invalid_input", "cursor_error", "query_error"}:
            assert error["field"] in {*names, "user_id", "video_id", "query"}


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_TEXT, children, max_size=3),
    max_leaves=6,
)
_EVENT_FIELDS = {
    "event_id": st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True) | _JSON_VALUES,
    "kind": st.sampled_from(["watch", "like", "unlike", "share", "comment"]) | _JSON_VALUES,
    "user_id": st.integers(-5, USER + 5) | _JSON_VALUES,
    "video_id": st.integers(FIRST_VIDEO_ID - 2, QUEUED_VIDEO + 3) | _JSON_VALUES,
    "occurred_at": st.sampled_from(
        [
            (NOW - timedelta(hours=1)).isoformat(),
            (NOW + timedelta(days=1)).isoformat(),
            "2026-11-01",
        ]
    )
    | _JSON_VALUES,
    "watched_seconds": st.floats(-1.0, 100.0) | _JSON_VALUES,
    "completion": st.floats(-0.5, 1.5) | _JSON_VALUES,
    "channel": st.sampled_from(["link", "bad channel"]) | _JSON_VALUES,
}


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.fixed_dictionaries({}, optional=_EVENT_FIELDS))
def test_any_event_body_is_answered_and_refusals_write_nothing(
    shared_api: App, body: dict[str, Any]
) -> None:
    log_before = shared_api.log_size()
    response = shared_api.client.post("/v1/events", json=body)
    status = response.status_code
    assert status in {200, 201, 400, 404, 409}, response.get_data(as_text=True)
    assert shared_api.log_size() == log_before + (1 if status == 201 else 0)
    if status >= 400:
        error = response.get_json()["error"]
        assert error["type"] in {"invalid_input", "not_found", "not_ready"}


# -- the error mapping ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status", "error_type", "field"),
    [
        (CursorError("forged"), 400, "cursor_error", "cursor"),
        (QueryError("empty"), 400, "query_error", "query"),
        (InvalidInputError("limit", "too big"), 400, "invalid_input", "limit"),
        (ConfigError("weights", 2.0, "must sum to 1"), 422, "config_error", "weights"),
        (NotFoundError("video", 5), 404, "not_found", None),
        (NotReadyError(5, "packaging"), 409, "not_ready", None),
        (InvalidTransitionError("ready", "queued"), 409, "invalid_transition", None),
        (FeedUnavailableError("no catalog"), 503, "feed_unavailable", None),
        (StoreError("cache", "connection refused"), 503, "store_unavailable", None),
        (StoreTimeoutError("seen", "deadline"), 503, "store_unavailable", None),
        (ReelrankError("unclassified"), 500, "internal_error", None),
        (RuntimeError("bug"), 500, "internal_error", None),
    ],
)
def test_every_error_class_maps_to_its_status(
    api: App, error: Exception, status: int, error_type: str, field: str | None
) -> None:
    def fail() -> str:
        raise error

    api.app.add_url_rule("/test/raise", view_func=fail)
    body = _error(api.client.get("/test/raise"), status, error_type, field)
    if isinstance(error, StoreError):
        assert body["store"] == error.store
        assert "connection refused" not in body["message"]
    if status == 500:
        assert body["message"] == "internal error"


# -- settings, factories and the run command ---------------------------------------------------


def test_settings_refuse_unknown_and_invalid_fields() -> None:
    with pytest.raises(ConfigError) as unknown:
        Settings(colour="blue")
    assert unknown.value.field == "colour"
    with pytest.raises(ConfigError) as port:
        Settings.from_env({"REELRANK_EXAMPLE_PORT": "0"})
    assert port.value.field == "port"
    with pytest.raises(ConfigError) as secret:
        Settings(cursor_secret="short")
    assert secret.value.field == "cursor_secret"
    loaded = Settings.from_env({"REELRANK_EXAMPLE_VIDEOS": "25", "OTHER": "x"})
    assert loaded.videos == 25
    with pytest.raises(ConfigError) as redis_url:
        redis_stores(loaded)
    assert redis_url.value.field == "redis_url"


def test_default_app_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REELRANK_EXAMPLE_VIDEOS", "30")
    monkeypatch.setenv("REELRANK_EXAMPLE_EVENTS", "100")
    app = create_default_app()
    services: Services = app.extensions["reelrank_services"]
    try:
        assert len(services.stores.catalog.recent_videos(limit=1000)) == 30
        assert app.test_client().get("/healthz").status_code == 200
    finally:
        services.close()


def test_the_seeded_catalog_is_reproducible() -> None:
    def snapshot(services: Services) -> list[tuple[int, int, int]]:
        videos = services.stores.catalog.recent_videos(limit=10_000)
        stats = services.stores.events.get_stats([video.video_id for video in videos])
        return [(v.video_id, v.creator_id, stats[v.video_id].views) for v in videos]

    small = Settings(videos=20, events=150, users=5)
    first, second = (build_default_services(small, clock=_clock) for _ in range(2))
    try:
        assert snapshot(first) == snapshot(second)
    finally:
        first.close()
        second.close()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.timeout(120)
def test_python_dash_m_serves_on_loopback(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(EXAMPLE_ROOT), os.environ.get("PYTHONPATH", "")]),
        "REELRANK_EXAMPLE_PORT": str(port),
        "REELRANK_EXAMPLE_VIDEOS": "30",
        "REELRANK_EXAMPLE_EVENTS": "100",
    }
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "reelrank_example"], env=env, stdout=log, stderr=log
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as reply:
                    assert reply.status == 200
                    break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        with urllib.request.urlopen(f"{url}/v1/users/{USER}/feed?limit=3", timeout=10) as reply:
            assert reply.status == 200
            assert reply.headers["Content-Type"] == "application/json"
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _redis_testing() -> Any:
    testing = pytest.importorskip("reelrank_redis.testing")
    if testing.find_redis_server() is None:
        pytest.skip("redis-server is not installed (scripts/test.sh installs it)")
    return testing


@pytest.mark.integration
def test_redis_backed_services_serve_and_cache_feeds(tmp_path: Path) -> None:
    testing = _redis_testing()
    with testing.RedisServer(tmp_path / "redis") as server:
        settings = SETTINGS.model_copy(update={"redis_url": server.url, "videos": 30})
        services = build_default_services(settings, clock=_clock, feed_config=FEED_CONFIG)
        try:
            client = create_app(services).test_client()
            first = client.get(f"/v1/users/{USER}/feed?limit=4").get_json()
            assert first["degraded"] == []
            second = client.get(f"/v1/users/{USER}/feed?limit=4&cursor={first['next_cursor']}")
            assert second.get_json()["from_cache"] is True
            served = [item["video_id"] for item in first["items"]]
            served += [item["video_id"] for item in second.get_json()["items"]]
            assert len(set(served)) == 8
            keys = server.client().keys(f"{settings.redis_prefix}:*")
            assert keys, "nothing was written to Redis"
            like = _event("like", FIRST_VIDEO_ID + 2, "redis-like")
            assert client.post("/v1/events", json=like).status_code == 201
            assert client.post("/v1/events", json=like).status_code == 200
        finally:
            services.close()


@pytest.mark.integration
def test_redis_state_can_live_on_a_second_server(tmp_path: Path) -> None:
    testing = _redis_testing()
    with (
        testing.RedisServer(tmp_path / "cache") as cache_server,
        testing.RedisServer(tmp_path / "state") as state_server,
    ):
        settings = SETTINGS.model_copy(
            update={
                "redis_url": cache_server.url,
                "redis_state_url": state_server.url,
                "videos": 30,
                "events": 50,
            }
        )
        services = build_default_services(settings, clock=_clock, feed_config=FEED_CONFIG)
        try:
            client = create_app(services).test_client()
            assert client.get(f"/v1/users/{USER}/feed?limit=4").status_code == 200
        finally:
            services.close()
        prefix = settings.redis_prefix

        def kinds(server: Any) -> set[str]:
            redis_client = server.client()
            try:
                return {key.decode().split(":")[1] for key in redis_client.keys(f"{prefix}:*")}
            finally:
                redis_client.close()

        cache_kinds, state_kinds = kinds(cache_server), kinds(state_server)
        assert "feed" in cache_kinds
        assert {"seen", "event"} <= state_kinds
        assert not {"seen", "event"} & cache_kinds
        assert "feed" not in state_kinds
