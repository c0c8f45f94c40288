"""A retried keyed event keeps the time its first attempt stamped it with.

A watch or share with an ``Idempotency-Key`` and no ``occurred_at`` is stamped by the
service. The first attempt records that stamp in a pending idempotency record before
the event is written, so a retry after a lost answer (the event stored, the answer not
delivered) redelivers the event with the same ``occurred_at`` even an hour later, which
the ClickHouse event store needs to recognise the redelivery. The idempotency stores
run in memory, on SQLite, and on real PostgreSQL, Redis and Redis Cluster servers (the
service is built by ``keyed_service.py``, shared with ``test_service_idempotency.py``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from keyed_service import (
    STORE_KINDS,
    KeyedService,
    idempotency_store,
    keyed_headers,
    keyed_service,
)
from reelrank_example import FIRST_VIDEO_ID, IdempotencyRecord


@pytest.fixture(params=STORE_KINDS)
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeyedService]:
    with keyed_service(idempotency_store(request.param, request, tmp_path)) as built:
        yield built


@pytest.mark.parametrize(
    ("path", "body"),
    [("watch", {"completion": 0.5}), ("share", {"channel": "link"})],
)
def test_a_retry_after_a_lost_answer_keeps_the_first_stamp(
    service: KeyedService, path: str, body: dict[str, Any]
) -> None:
    url = f"/api/v1/reels/{FIRST_VIDEO_ID}/{path}"
    first_time = service.clock[0]
    service.events.lose_answers = True
    lost = service.client.post(url, json=body, headers=keyed_headers("retry-1"))
    assert lost.status_code == 503
    service.events.lose_answers = False
    service.clock[0] = first_time + timedelta(hours=1, minutes=5)
    retry = service.client.post(url, json=body, headers=keyed_headers("retry-1"))
    # The in-memory event store saw the first write: the retry is a redelivery.
    assert retry.status_code == 200, retry.get_data(as_text=True)
    assert retry.get_json()["applied"] is False
    first, again = service.events.appended
    assert first.event_id == again.event_id
    assert first.occurred_at == again.occurred_at == first_time
    # The final answer replaced the pending record: a further retry is a replay.
    replay = service.client.post(url, json=body, headers=keyed_headers("retry-1"))
    assert (replay.status_code, replay.get_json()) == (200, retry.get_json())
    assert len(service.events.appended) == 2


def test_a_retry_after_a_failed_write_is_stamped_with_the_first_time(service: KeyedService) -> None:
    url = f"/api/v1/reels/{FIRST_VIDEO_ID}/watch"
    first_time = service.clock[0]
    service.events.lose_answers = True
    service.client.post(url, json={"completion": 0.5}, headers=keyed_headers("retry-2"))
    service.events.lose_answers = False
    service.clock[0] = first_time + timedelta(hours=2)
    # Another body with the same key is refused while the first attempt is pending.
    other = service.client.post(url, json={"completion": 0.9}, headers=keyed_headers("retry-2"))
    assert other.status_code == 422
    assert other.get_json()["field"] == "Idempotency-Key"
    assert len(service.events.appended) == 1
    # A first attempt that answered is replayed as before, and a fresh key is stamped now.
    fresh = service.client.post(url, json={"completion": 0.5}, headers=keyed_headers("retry-3"))
    again = service.client.post(url, json={"completion": 0.5}, headers=keyed_headers("retry-3"))
    assert fresh.status_code == again.status_code == 201
    assert fresh.get_json() == again.get_json()
    assert [event.occurred_at for event in service.events.appended] == [
        first_time,
        first_time + timedelta(hours=2),
    ]


@pytest.mark.integration
def test_a_redis_record_written_before_pending_records_still_reads(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = idempotency_store("redis", request, tmp_path)
    old = {"fingerprint": "f" * 64, "status": 201, "response": '{"event_id": "w-1"}'}
    store._client.set(store._key("100001:key"), json.dumps(old), px=60_000)
    assert store.get("100001:key") == IdempotencyRecord("f" * 64, 201, '{"event_id": "w-1"}')


@pytest.mark.parametrize(
    "kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.integration)]
)
def test_a_sql_record_written_before_pending_records_still_reads(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    import sqlalchemy as sa

    store = idempotency_store(kind, request, tmp_path)
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
