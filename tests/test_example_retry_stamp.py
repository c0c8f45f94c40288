"""A retried keyed event keeps the time its first attempt stamped it with.

A watch or share with an ``Idempotency-Key`` and no ``occurred_at`` is stamped by the
service. The first attempt records that stamp in a pending idempotency record before
the event is written, so a retry after a lost answer (the event stored, the answer not
delivered) redelivers the event with the same ``occurred_at`` even an hour later, which
the ClickHouse event store needs to recognise the redelivery. The idempotency stores
run in memory, in SQL (SQLite) and on a real Redis.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reelrank import EngagementEvent, StoreTimeoutError

EXAMPLE_ROOT = Path(__file__).resolve().parents[1] / "examples" / "flask_app"
sys.path.insert(0, str(EXAMPLE_ROOT))

from reelrank_example import (  # noqa: E402
    FIRST_USER_ID,
    FIRST_VIDEO_ID,
    IdempotencyRecord,
    MemoryIdempotencyStore,
    RedisIdempotencyStore,
    Settings,
    SqlIdempotencyStore,
    build_services,
    configured_stores,
    create_app,
    issue_token,
    memory_stores,
    migrate,
    seed_synthetic_catalog,
)

SECRET = "r" * 40
KINDS = [
    "memory",
    "sql",
    pytest.param("postgres", marks=pytest.mark.integration),
    pytest.param("redis", marks=pytest.mark.integration),
]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from reelrank_redis.testing import RedisServer, find_redis_server

    if find_redis_server() is None:
        pytest.skip("redis-server is needed (scripts/test.sh installs it)")
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    from reelrank_postgres.testing import PostgresServer, find_postgres_bin

    if find_postgres_bin() is None:
        pytest.skip("PostgreSQL is needed (scripts/test.sh installs it)")
    with PostgresServer() as server:
        migrate(Settings(database_url=server.url))
        yield server.url


def _idempotency_store(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if kind == "memory":
        return MemoryIdempotencyStore()
    if kind in ("sql", "postgres"):
        if kind == "sql":
            settings = Settings(database_url=f"sqlite:///{tmp_path / 'keys.db'}")
            migrate(settings)
        else:
            settings = Settings(database_url=request.getfixturevalue("postgres_url"))
        stores = configured_stores(settings)
        request.addfinalizer(lambda: [close() for close in stores.closers])
        assert isinstance(stores.idempotency, SqlIdempotencyStore)
        with stores.idempotency._engine.begin() as connection:
            connection.exec_driver_sql("DELETE FROM reelrank_service_idempotency")
        return stores.idempotency
    import redis

    client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
    request.addfinalizer(client.close)
    client.flushall()
    return RedisIdempotencyStore(client, "test")


class _SpiedEvents:
    """The event store, recording every appended event; while ``lose_answers`` is set,
    an append is applied and then raises :class:`StoreTimeoutError` (the answer lost)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.appended: list[EngagementEvent] = []
        self.lose_answers = False

    def append(self, event: EngagementEvent, *, creator_id: int) -> bool:
        self.appended.append(event)
        applied: bool = self._inner.append(event, creator_id=creator_id)
        if self.lose_answers:
            raise StoreTimeoutError("events", "the answer was lost after the write")
        return applied

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@dataclasses.dataclass
class _Service:
    client: Any
    events: _SpiedEvents
    clock: list[datetime]


@pytest.fixture(params=KINDS)
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[_Service]:
    settings = Settings(
        auth_secret=SECRET, videos=5, pending_videos=0, users=2, events=0, creators=2
    )
    # 10:40 UTC: an hour later is another UTC hour.
    clock = [datetime.now(UTC).replace(hour=10, minute=40, second=0, microsecond=0)]
    stores = memory_stores()
    seed_synthetic_catalog(stores, settings, now=clock[0])
    events = _SpiedEvents(stores.events)
    stores = dataclasses.replace(
        stores, events=events, idempotency=_idempotency_store(request.param, request, tmp_path)
    )
    services = build_services(stores, settings, clock=lambda: clock[0])
    try:
        yield _Service(create_app(services, settings).test_client(), events, clock)
    finally:
        services.close()


def _headers(key: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {issue_token(SECRET, FIRST_USER_ID)}",
        "Idempotency-Key": key,
    }


@pytest.mark.parametrize(
    ("path", "body"),
    [("watch", {"completion": 0.5}), ("share", {"channel": "link"})],
)
def test_a_retry_after_a_lost_answer_keeps_the_first_stamp(
    service: _Service, path: str, body: dict[str, Any]
) -> None:
    url = f"/api/v1/reels/{FIRST_VIDEO_ID}/{path}"
    first_time = service.clock[0]
    service.events.lose_answers = True
    lost = service.client.post(url, json=body, headers=_headers("retry-1"))
    assert lost.status_code == 503
    service.events.lose_answers = False
    service.clock[0] = first_time + timedelta(hours=1, minutes=5)
    retry = service.client.post(url, json=body, headers=_headers("retry-1"))
    # The in-memory event store saw the first write: the retry is a redelivery.
    assert retry.status_code == 200, retry.get_data(as_text=True)
    assert retry.get_json()["applied"] is False
    first, again = service.events.appended
    assert first.event_id == again.event_id
    assert first.occurred_at == again.occurred_at == first_time
    # The final answer replaced the pending record: a further retry is a replay.
    replay = service.client.post(url, json=body, headers=_headers("retry-1"))
    assert (replay.status_code, replay.get_json()) == (200, retry.get_json())
    assert len(service.events.appended) == 2


def test_a_retry_after_a_failed_write_is_stamped_with_the_first_time(service: _Service) -> None:
    url = f"/api/v1/reels/{FIRST_VIDEO_ID}/watch"
    first_time = service.clock[0]
    service.events.lose_answers = True
    service.client.post(url, json={"completion": 0.5}, headers=_headers("retry-2"))
    service.events.lose_answers = False
    service.clock[0] = first_time + timedelta(hours=2)
    # Another body with the same key is refused while the first attempt is pending.
    other = service.client.post(url, json={"completion": 0.9}, headers=_headers("retry-2"))
    assert other.status_code == 422
    assert other.get_json()["field"] == "Idempotency-Key"
    assert len(service.events.appended) == 1
    # A first attempt that answered is replayed as before, and a fresh key is stamped now.
    fresh = service.client.post(url, json={"completion": 0.5}, headers=_headers("retry-3"))
    again = service.client.post(url, json={"completion": 0.5}, headers=_headers("retry-3"))
    assert fresh.status_code == again.status_code == 201
    assert fresh.get_json() == again.get_json()
    assert [event.occurred_at for event in service.events.appended] == [
        first_time,
        first_time + timedelta(hours=2),
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_a_pending_record_is_kept_by_put_and_replaced_by_replace(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = _idempotency_store(kind, request, tmp_path)
    stamp = datetime(2026, 3, 1, 10, 40, 12, 345678, tzinfo=UTC)
    pending = IdempotencyRecord("f" * 64, 0, "", occurred_at=stamp)
    final = IdempotencyRecord("f" * 64, 201, '{"event_id": "w-1"}')
    store.put("100001:key", pending, ttl=timedelta(hours=1))
    store.put("100001:key", final, ttl=timedelta(hours=1))  # a concurrent first request
    read = store.get("100001:key")
    assert read == pending
    assert read.pending
    store.replace("100001:key", final, ttl=timedelta(hours=1))
    assert store.get("100001:key") == final
    assert not final.pending
    store.replace("100001:other", final, ttl=timedelta(hours=1))  # nothing there before
    assert store.get("100001:other") == final


@pytest.mark.integration
def test_a_redis_record_written_before_pending_records_still_reads(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = _idempotency_store("redis", request, tmp_path)
    old = {"fingerprint": "f" * 64, "status": 201, "response": '{"event_id": "w-1"}'}
    store._client.set(store._key("100001:key"), json.dumps(old), px=60_000)
    assert store.get("100001:key") == IdempotencyRecord("f" * 64, 201, '{"event_id": "w-1"}')


@pytest.mark.parametrize("kind", ["sql", pytest.param("postgres", marks=pytest.mark.integration)])
def test_a_sql_record_written_before_pending_records_still_reads(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    import sqlalchemy as sa

    store = _idempotency_store(kind, request, tmp_path)
    with store._engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO reelrank_service_idempotency "
                "(scope, fingerprint, status, response, expires_at) "
                "VALUES (:scope, :fingerprint, 201, :response, :expires_at)"
            ),
            {
                "scope": "100001:key",
                "fingerprint": "f" * 64,
                "response": '{"event_id": "w-1"}',
                "expires_at": datetime.now(UTC) + timedelta(hours=1),
            },
        )
    assert store.get("100001:key") == IdempotencyRecord("f" * 64, 201, '{"event_id": "w-1"}')
