"""The Redis commands an event request sends, counted on a real Redis server's MONITOR.

The per-user rate limit and the ``Idempotency-Key`` records live in the state Redis. A
keyed watch without its own time takes the limit's hit (one script, whose answer also
carries the window's count and expiry, so the ``X-RateLimit-*`` headers need no second
read), the pending record's ``SET NX`` and the answer's ``SET``; a like takes the hit
only. Flask-Limiter's stock Redis storage, the reference for the headers here, reads the
window back after the hit (``GET`` and ``TTL``).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from reelrank_example import (
    FIRST_USER_ID,
    FIRST_VIDEO_ID,
    Settings,
    build_services,
    configured_stores,
    create_app,
    issue_token,
    migrate,
    seed_synthetic_catalog,
)
from reelrank_example import _app as app_module

SECRET = "round-trips-secret-of-at-least-32-bytes"
WATCH = f"/api/v1/reels/{FIRST_VIDEO_ID}/watch"
LIKE = f"/api/v1/reels/{FIRST_VIDEO_ID}/like"
_LIMIT_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining")


class _Monitor:
    """The commands Redis clients send while it runs (MONITOR), without the commands a
    script runs inside the server; a marker ``ECHO`` brackets each request."""

    def __init__(self, url: str) -> None:
        import redis

        self._url = url
        self._monitoring = redis.Redis.from_url(url)
        self._monitor = self._monitoring.monitor().__enter__()
        self._sender = redis.Redis.from_url(url)
        self._lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for command in self._monitor.listen():
                self._lines.put(command)
        except Exception:  # the connection closed at the end of the test
            return

    def sent_during(self, make_request: Any) -> list[str]:
        """The names of the commands (upper case) sent while ``make_request()`` ran."""
        self._sender.echo("request-starts")
        make_request()
        self._sender.echo("request-ends")
        names: list[str] = []
        started = False
        while True:
            command = self._lines.get(timeout=10)
            text = command["command"]
            if text == "ECHO request-starts":
                started = True
                continue
            if text == "ECHO request-ends":
                return names
            if started and command.get("client_type") != "lua":
                names.append(text.split()[0].upper())

    def close(self) -> None:
        self._monitor.__exit__(None, None, None)
        self._monitoring.close()
        self._sender.close()


def _service(url: str, tmp_path: Path, **settings: Any) -> Iterator[Any]:
    import redis

    with redis.Redis.from_url(url) as raw:
        raw.flushall()
    config = Settings(
        auth_secret=SECRET,
        database_url=f"sqlite:///{tmp_path / 'reels.db'}",
        redis_state_url=url,
        videos=5,
        pending_videos=0,
        users=2,
        events=0,
        creators=2,
        **settings,
    )
    migrate(config)
    stores = configured_stores(config)
    seed_synthetic_catalog(stores, config, now=datetime.now(UTC))
    services = build_services(stores, config)
    try:
        client = create_app(services, config).test_client()
        # Opens the clients' connections (HELLO, CLIENT SETINFO) and loads the script.
        warm_up = client.post(
            WATCH, json={"completion": 0.1}, headers=_headers("warm-up", FIRST_USER_ID + 1)
        )
        assert warm_up.status_code == 201, warm_up.get_data(as_text=True)
        yield client
    finally:
        services.close()


@pytest.fixture
def client(service_redis_url: str, tmp_path: Path) -> Iterator[Any]:
    yield from _service(service_redis_url, tmp_path, events_per_minute=5)


@pytest.fixture
def monitor(service_redis_url: str) -> Iterator[_Monitor]:
    watching = _Monitor(service_redis_url)
    yield watching
    watching.close()


def _headers(key: str | None = None, user_id: int = FIRST_USER_ID) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {issue_token(SECRET, user_id)}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


def test_a_first_keyed_watch_sends_three_commands(client: Any, monitor: _Monitor) -> None:
    answers: list[Any] = []
    sent = monitor.sent_during(
        lambda: answers.append(client.post(WATCH, json={"completion": 0.5}, headers=_headers("k")))
    )
    assert answers[0].status_code == 201, answers[0].get_data(as_text=True)
    # The limit's hit, the pending record, the answer (Flask-Limiter's storage read the
    # window back with a GET and a TTL besides).
    assert sent == ["EVALSHA", "SET", "SET"], sent
    assert answers[0].headers["X-RateLimit-Remaining"] == "4"


def test_a_like_sends_the_limits_hit_only(client: Any, monitor: _Monitor) -> None:
    answers: list[Any] = []
    sent = monitor.sent_during(lambda: answers.append(client.post(LIKE, headers=_headers())))
    assert answers[0].status_code == 200, answers[0].get_data(as_text=True)
    assert sent == ["EVALSHA"], sent


def test_a_refused_event_sends_the_limits_hit_only(client: Any, monitor: _Monitor) -> None:
    for _ in range(5):
        assert client.post(LIKE, headers=_headers()).status_code == 200
    answers: list[Any] = []
    sent = monitor.sent_during(
        lambda: answers.append(client.post(WATCH, json={"completion": 0.5}, headers=_headers("k")))
    )
    assert answers[0].status_code == 429
    assert sent == ["EVALSHA"], sent


def _stock_storage(patch: pytest.MonkeyPatch) -> None:
    """Build the limiter on Flask-Limiter's own Redis storage, which reads the window
    back for the headers."""
    patch.setattr(app_module, "window_answering_storage", lambda uri: uri)


def test_the_headers_are_the_stock_storages(
    service_redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same requests, one by one to a service on each storage (each its own user):
    the same statuses and headers, the window's reset within the second the two
    windows started apart."""
    ours = _service(service_redis_url, tmp_path / "ours", events_per_minute=3)
    (tmp_path / "ours").mkdir()
    (tmp_path / "stock").mkdir()
    ours_client = next(ours)
    with monkeypatch.context() as patch:
        _stock_storage(patch)
        stock = _service(service_redis_url, tmp_path / "stock", events_per_minute=3)
        stock_client = next(stock)
    # Each service's warm-up used a request of the stock one's user.
    next(iter(ours_client.application.extensions["limiter"])).reset()
    try:
        for number in range(5):
            answers = []
            for served, user in ((ours_client, FIRST_USER_ID), (stock_client, FIRST_USER_ID + 1)):
                answers.append(
                    served.post(
                        WATCH, json={"completion": 0.5}, headers=_headers(f"k{number}", user)
                    )
                )
            mine, theirs = answers
            assert mine.status_code == theirs.status_code == (201 if number < 3 else 429)
            for name in _LIMIT_HEADERS:
                assert mine.headers[name] == theirs.headers[name], name
            assert mine.headers["X-RateLimit-Remaining"] == str(max(0, 2 - number))
            assert abs(int(mine.headers["X-RateLimit-Reset"]) -
                       int(theirs.headers["X-RateLimit-Reset"])) <= 1  # fmt: skip
            assert abs(int(mine.headers["Retry-After"]) - int(theirs.headers["Retry-After"])) <= 1
            assert 45 <= int(mine.headers["Retry-After"]) <= 60
            if number >= 3:
                assert mine.get_json() == theirs.get_json()
    finally:
        for service in (ours, stock):
            next(service, None)


def test_a_window_is_answered_from_the_hit_on_its_thread_only(service_redis_url: str) -> None:
    import redis
    from limits import parse
    from limits.storage import storage_from_string
    from limits.strategies import FixedWindowRateLimiter
    from reelrank_example._limits_storage import window_answering_storage

    with redis.Redis.from_url(service_redis_url) as raw:
        raw.flushall()
    item = parse("10/minute")
    stock = FixedWindowRateLimiter(storage_from_string(service_redis_url))
    ours = FixedWindowRateLimiter(storage_from_string(window_answering_storage(service_redis_url)))
    # One window for both storages: the same keys.
    assert stock.hit(item, "user:1", "events")
    assert ours.hit(item, "user:1", "events")
    assert ours.get_window_stats(item, "user:1", "events").remaining == 8
    assert stock.hit(item, "user:1", "events")
    # The hit's answer was used by the read after it: this read is Redis's.
    assert ours.get_window_stats(item, "user:1", "events").remaining == 7
    assert ours.hit(item, "user:1", "events")
    stats: list[Any] = []
    other = threading.Thread(
        target=lambda: stats.append(ours.get_window_stats(item, "user:1", "events"))
    )
    assert stock.hit(item, "user:1", "events")
    other.start()
    other.join()
    # Another thread reads Redis (5 hits), not this thread's last hit (4).
    assert stats[0].remaining == 5
    assert ours.get_window_stats(item, "user:1", "events").remaining == 6
    assert 58 <= stats[0].reset_time - time.time() <= 60
    # Another key's read is Redis's too.
    assert ours.get_window_stats(item, "user:2", "events").remaining == 10
