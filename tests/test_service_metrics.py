"""The reels service's Prometheus metrics: every catalogued family, what requests add to
them, the operations guide's table, and the gunicorn hooks of multiprocess mode.

The two-worker gunicorn test lives in ``test_service_http_gunicorn.py``.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import runpy
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_ROOT = ROOT / "examples" / "flask_app"
sys.path.insert(0, str(EXAMPLE_ROOT))

from reelrank_example import (  # noqa: E402
    FIRST_USER_ID,
    FIRST_VIDEO_ID,
    Services,
    Settings,
    build_services,
    create_app,
    issue_token,
    memory_stores,
    seed_synthetic_catalog,
)
from reelrank_example._metrics import FAMILIES, MULTIPROCESS_DIR_ENV  # noqa: E402

SECRET = "m" * 40
VIDEO = FIRST_VIDEO_ID
DEPENDENCIES = {"catalog", "events", "seen", "models", "cache"}
# What /healthz/ready checks: the stores no request can do without, and the feed cache.
READY_CHECKS = {"catalog", "events", "cache"}

# The catalogue the service's metrics were agreed on (names as exposed, type, labels).
CATALOGUE = {
    "reelrank_http_requests_total": ("counter", ("method", "route", "status")),
    "reelrank_http_request_duration_seconds": ("histogram", ("method", "route", "status", "cache")),
    "reelrank_http_requests_in_flight": ("gauge", ()),
    "reelrank_http_rate_limited_total": ("counter", ("route",)),
    "reelrank_search_match_reuse_total": ("counter", ("outcome",)),
    "reelrank_feed_pages_total": ("counter", ("source",)),
    "reelrank_feed_ended_pages_total": ("counter", ()),
    "reelrank_feed_cache_misses_total": ("counter", ("reason",)),
    "reelrank_feed_refills_total": ("counter", ("outcome",)),
    "reelrank_feed_cache_lookups_total": ("counter", ("level", "result")),
    "reelrank_feed_cache_hit_ratio": ("gauge", ("level",)),
    "reelrank_feed_degraded_total": ("counter", ("dependency", "fallback")),
    "reelrank_feed_unavailable_total": ("counter", ("dependency",)),
    "reelrank_feed_snapshot_builds_total": ("counter", ()),
    "reelrank_feed_snapshot_build_duration_seconds": ("histogram", ()),
    "reelrank_store_calls_total": ("counter", ("store", "operation", "outcome")),
    "reelrank_store_call_duration_seconds": ("histogram", ("store", "operation")),
    "reelrank_circuit_breaker_state": ("gauge", ("dependency",)),
    "reelrank_events_total": ("counter", ("kind", "outcome")),
    "reelrank_kernel_duration_seconds": ("histogram", ("kernel",)),
    "reelrank_gc_pause_seconds": ("histogram", ("generation",)),
    "reelrank_candidate_pool_age_seconds": ("gauge", ()),
    "reelrank_candidate_pool_size": ("gauge", ()),
    "reelrank_warming_users_total": ("counter", ("outcome",)),
    "reelrank_warming_progress_ratio": ("gauge", ()),
    "reelrank_startup_complete": ("gauge", ()),
    "reelrank_readiness_checks_total": ("counter", ("dependency", "outcome")),
    "reelrank_idempotent_replays_total": ("counter", ("route",)),
    "reelrank_build_info": ("gauge", ("version",)),
}


@dataclasses.dataclass
class App:
    client: Any
    services: Services


@pytest.fixture()
def app(monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    monkeypatch.delenv(MULTIPROCESS_DIR_ENV, raising=False)
    settings = Settings(
        auth_secret=SECRET, videos=40, pending_videos=2, users=6, events=200, creators=6,
        events_per_minute=3,
    )  # fmt: skip
    stores = memory_stores()
    embeddings = seed_synthetic_catalog(stores, settings, now=datetime.now(UTC))
    services = build_services(dataclasses.replace(stores, embeddings=embeddings), settings)
    flask_app = create_app(services, settings)
    yield App(flask_app.test_client(), services)
    services.close()


def _auth(user: int = FIRST_USER_ID) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(SECRET, user)}"}


class Scrape:
    """One ``/metrics`` answer, parsed."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {family.name: family for family in text_string_to_metric_families(text)}

    def value(self, name: str, **labels: str) -> float:
        """The sample ``name`` with exactly ``labels``; 0 if there is none yet."""
        for family in self.families.values():
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return 0.0

    def samples(self, name: str) -> list[Any]:
        return [s for f in self.families.values() for s in f.samples if s.name == name]


def _scrape(app: App) -> Scrape:
    response = app.client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    return Scrape(response.get_data(as_text=True))


def _parsed_name(name: str, kind: str) -> str:
    # The parser names counter families without their _total suffix.
    return name.removesuffix("_total") if kind == "counter" else name


def test_the_code_exports_exactly_the_agreed_catalogue() -> None:
    assert {f.name: (f.type, f.labels) for f in FAMILIES} == CATALOGUE


def test_every_catalogued_family_is_scraped_with_its_type_and_help(app: App) -> None:
    scrape = _scrape(app)
    for family in FAMILIES:
        parsed = scrape.families.get(_parsed_name(family.name, family.type))
        assert parsed is not None, family.name
        assert parsed.type == family.type, family.name
        assert parsed.documentation == family.help, family.name
        assert f"# HELP {family.name} " in scrape.text
        assert f"# TYPE {family.name} {family.type}" in scrape.text
    # Beyond the catalogue, only prometheus_client's process collectors.
    others = {name for name in scrape.families if not name.startswith("reelrank_")}
    assert others and all(name.startswith(("process_", "python_")) for name in others)
    assert len(scrape.families) - len(others) == len(FAMILIES)


def test_a_fresh_app_reports_started_closed_breakers_and_its_version(app: App) -> None:
    import reelrank

    scrape = _scrape(app)
    assert scrape.value("reelrank_startup_complete") == 1
    assert scrape.value("reelrank_warming_progress_ratio") == 1
    assert scrape.value("reelrank_build_info", version=reelrank.__version__) == 1
    breakers = scrape.samples("reelrank_circuit_breaker_state")
    states = {sample.labels["dependency"]: sample.value for sample in breakers}
    assert states == dict.fromkeys(DEPENDENCIES, 0.0)


def test_feed_requests_count_pages_lookups_and_the_hit_ratio(app: App) -> None:
    before = _scrape(app)
    route = {"method": "GET", "route": "/api/v1/reels", "status": "200"}
    # The first page is ranked (the only cache level, the in-process LRU, misses); the
    # same first page again is cut from the cached snapshot (a hit).
    for _ in range(2):
        assert app.client.get("/api/v1/reels?limit=5", headers=_auth()).status_code == 200
    after = _scrape(app)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta("reelrank_http_requests_total", **route) == 2
    # The ranked first page is a miss, the same page again a hit.
    for cache in ("miss", "hit"):
        assert delta("reelrank_http_request_duration_seconds_count", **route, cache=cache) == 1
    assert delta("reelrank_feed_pages_total", source="ranked") == 1
    assert delta("reelrank_feed_pages_total", source="cache") == 1
    assert delta("reelrank_feed_cache_lookups_total", level="0", result="miss") == 1
    assert delta("reelrank_feed_cache_lookups_total", level="0", result="hit") == 1
    assert delta("reelrank_feed_snapshot_builds_total") == 1
    assert delta("reelrank_kernel_duration_seconds_count", kernel="rank") == 1
    assert delta("reelrank_kernel_duration_seconds_count", kernel="diversity") == 1
    assert after.value("reelrank_candidate_pool_size") > 0
    assert after.value("reelrank_candidate_pool_age_seconds") >= 0
    hits = after.value("reelrank_feed_cache_lookups_total", level="0", result="hit")
    misses = after.value("reelrank_feed_cache_lookups_total", level="0", result="miss")
    assert after.value("reelrank_feed_cache_hit_ratio", level="0") == pytest.approx(
        hits / (hits + misses)
    )
    # The raw path's ids never become label values.
    assert "/api/v1/reels?limit" not in after.text
    # The scrape itself is the one request in flight.
    assert after.value("reelrank_http_requests_in_flight") == 1


def test_the_end_of_a_held_feed_is_a_cache_page_counted_apart(app: App) -> None:
    # Another user's page fetches the candidate pool first, so the snapshot below is
    # ranked over a pool fetched before it (the rule for holding it).
    assert (
        app.client.get("/api/v1/reels?limit=5", headers=_auth(FIRST_USER_ID + 1)).status_code == 200
    )
    # 38 ready videos, fewer than a snapshot holds: one page of 50 shows every one, and
    # the feed ends. Asking again is answered from the held snapshot, without ranking.
    first = app.client.get("/api/v1/reels?limit=50", headers=_auth())
    assert first.status_code == 200 and first.json["next_cursor"] is None
    before = _scrape(app)
    again = app.client.get("/api/v1/reels?limit=50", headers=_auth())
    assert again.status_code == 200 and again.json["items"] == []
    assert again.headers["Cache-Status"] == "reelrank; hit"
    after = _scrape(app)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta("reelrank_feed_pages_total", source="cache") == 1
    assert delta("reelrank_feed_pages_total", source="ranked") == 0
    assert delta("reelrank_feed_ended_pages_total") == 1
    # A page with items from the cache is not an end.
    assert before.value("reelrank_feed_ended_pages_total") == 0


def test_garbage_collections_are_timed_by_generation_until_stopped(app: App) -> None:
    stop = app.services.metrics.time_garbage_collections()
    try:
        before = _scrape(app)
        gc.collect(0)
        for _ in range(3):
            gc.collect(2)
        after = _scrape(app)
    finally:
        stop()
    for _ in range(3):
        gc.collect(2)
    stopped = _scrape(app)

    def count(scrape: Scrape, generation: str) -> float:
        return scrape.value("reelrank_gc_pause_seconds_count", generation=generation)

    # The collector may run collections of its own meanwhile, never fewer.
    assert count(after, "0") - count(before, "0") >= 1
    assert count(after, "2") - count(before, "2") >= 3
    full_seconds = after.value("reelrank_gc_pause_seconds_sum", generation="2") - before.value(
        "reelrank_gc_pause_seconds_sum", generation="2"
    )
    assert full_seconds > 0
    # The three explicit full collections after stopping are not timed (a collection
    # already queued when it stopped may still be observed).
    assert count(stopped, "2") - count(after, "2") < 3


def test_event_requests_count_outcomes_replays_and_rate_limits(app: App) -> None:
    watch = f"/api/v1/reels/{VIDEO}/watch"
    keyed = {**_auth(), "Idempotency-Key": "retry-1"}
    assert app.client.post(watch, json={"completion": 0.5}, headers=keyed).status_code == 201
    assert app.client.post(watch, json={"completion": 0.5}, headers=keyed).status_code == 201
    assert app.client.post(watch, json={"completion": 2.0}, headers=_auth()).status_code == 400
    # The limit is three events a minute per user. The invalid watch was refused
    # before it was consulted, the replay was not (a retry is a request like any
    # other): the like is the third event, and the unlike is refused.
    like = f"/api/v1/reels/{VIDEO}/like"
    assert app.client.post(like, headers=_auth()).status_code == 200
    assert app.client.delete(like, headers=_auth()).status_code == 429
    scrape = _scrape(app)
    assert scrape.value("reelrank_events_total", kind="watch", outcome="recorded") == 1
    assert scrape.value("reelrank_events_total", kind="watch", outcome="duplicate") == 1
    assert scrape.value("reelrank_events_total", kind="watch", outcome="rejected") == 1
    assert scrape.value("reelrank_events_total", kind="like", outcome="recorded") == 1
    assert scrape.value("reelrank_events_total", kind="unlike", outcome="rejected") == 1
    assert scrape.value("reelrank_idempotent_replays_total", route="/api/v1/reels/<id>/watch") == 1
    assert scrape.value("reelrank_http_rate_limited_total", route="/api/v1/reels/<id>/like") == 1
    assert (
        scrape.value("reelrank_store_calls_total", store="events", operation="append", outcome="ok")
        == 2
    )


def test_the_limiter_checks_event_requests_only(app: App) -> None:
    from flask_limiter import Limiter

    # Flask-Limiter's own check before every request is taken off the app (the service
    # sets no default limits, so it looked up limits and found none); the per-user
    # limit on event requests still applies.
    flask_app = app.client.application
    hooks = [hook for hooks in flask_app.before_request_funcs.values() for hook in hooks]
    assert not [hook for hook in hooks if isinstance(getattr(hook, "__self__", None), Limiter)]
    assert [isinstance(limiter, Limiter) for limiter in flask_app.extensions["limiter"]] == [True]
    like = f"/api/v1/reels/{VIDEO}/like"
    statuses = [app.client.post(like, headers=_auth()).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_readiness_counts_one_check_per_dependency(app: App) -> None:
    assert app.client.get("/healthz/ready").status_code == 200
    assert app.client.get("/healthz/ready").status_code == 200
    scrape = _scrape(app)
    for dependency in READY_CHECKS:
        assert (
            scrape.value("reelrank_readiness_checks_total", dependency=dependency, outcome="ok")
            == 2
        )
    assert not [
        s for s in scrape.samples("reelrank_readiness_checks_total")
        if s.labels["outcome"] == "failed"
    ]  # fmt: skip


ACROSS_WORKERS = {
    "sum": "sum, dead workers included",
    "livesum": "sum over live workers",
    "livemax": "max over live workers",
    "livemin": "min over live workers",
    "derived": "computed at scrape time",
}


def test_the_operations_guide_lists_every_family_as_the_code_defines_it() -> None:
    rows = [
        "| metric | type | labels | across workers | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for family in FAMILIES:
        labels = ", ".join(f"`{label}`" for label in family.labels)
        rows.append(
            f"| `{family.name}` | {family.type} | {labels} | {ACROSS_WORKERS[family.pod]} "
            f"| {family.help} |"
        )
    table = "\n".join(rows) + "\n"
    page = (ROOT / "docs" / "operate" / "metrics.md").read_text(encoding="utf-8")
    assert table in page, f"docs/operate/metrics.md should hold this table:\n{table}"


def test_gunicorn_hooks_prepare_the_directory_and_forget_dead_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_1.db").write_bytes(b"stale")
    (directory / "gauge_livesum_4242.db").write_bytes(b"")
    (directory / "gauge_livesum_4343.db").write_bytes(b"")
    (directory / "counter_4242.db").write_bytes(b"")
    monkeypatch.setenv(MULTIPROCESS_DIR_ENV, str(directory))
    config = runpy.run_path(str(ROOT / "deploy" / "gunicorn.conf.py"))
    assert os.environ[MULTIPROCESS_DIR_ENV] == str(directory)
    config["on_starting"](None)
    assert list(directory.iterdir()) == []

    for name in ("gauge_livesum_4242.db", "gauge_livesum_4343.db", "counter_4242.db"):
        (directory / name).write_bytes(b"")
    config["child_exit"](None, type("Worker", (), {"pid": 4242})())
    # The dead worker's live gauge goes; its counters and the other worker's stay.
    assert sorted(p.name for p in directory.iterdir()) == [
        "counter_4242.db",
        "gauge_livesum_4343.db",
    ]

    # Unset, reading the settings picks a temporary directory (before anything imports
    # prometheus_client), and the master removes it on exit.
    monkeypatch.delenv(MULTIPROCESS_DIR_ENV)
    config = runpy.run_path(str(ROOT / "deploy" / "gunicorn.conf.py"))
    made = Path(os.environ[MULTIPROCESS_DIR_ENV])
    assert made.is_dir() and made != directory
    config["on_starting"](None)
    assert made.is_dir()
    config["on_exit"](None)
    assert not made.exists()
