"""Idempotency-Key records: the same semantics in memory, in SQL and in the state Redis.

With ``REELRANK_REDIS_STATE_URL`` (or ``REELRANK_REDIS_URL``) set, the service keeps the
records in Redis; otherwise in its SQL database. Either way the first answer for a key
stays until it expires, a retry with the same body gets it back and counts once, and the
key with another body is 422. The Redis cases run on a real server.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

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
    migrate,
    seed_synthetic_catalog,
)

SECRET = "i" * 40


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from reelrank_redis.testing import RedisServer, find_redis_server

    if find_redis_server() is None:
        pytest.skip("redis-server is needed (scripts/test.sh installs it)")
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


def _store(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if kind == "memory":
        return MemoryIdempotencyStore()
    if kind == "sql":
        settings = Settings(database_url=f"sqlite:///{tmp_path / 'keys.db'}")
        migrate(settings)
        stores = configured_stores(settings)
        request.addfinalizer(lambda: [close() for close in stores.closers])
        assert isinstance(stores.idempotency, SqlIdempotencyStore)
        return stores.idempotency
    import redis

    client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
    request.addfinalizer(client.close)
    client.flushall()
    return RedisIdempotencyStore(client, "test")


@pytest.mark.parametrize(
    "kind", ["memory", "sql", pytest.param("redis", marks=pytest.mark.integration)]
)
def test_the_first_record_stays_until_it_expires(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = _store(kind, request, tmp_path)
    first = IdempotencyRecord("f" * 64, 201, '{"event_id": "w-1"}')
    second = IdempotencyRecord("e" * 64, 200, '{"event_id": "w-2"}')
    assert store.get("100001:key") is None
    store.put("100001:key", first, ttl=timedelta(hours=1))
    store.put("100001:key", second, ttl=timedelta(hours=1))  # a concurrent first request
    assert store.get("100001:key") == first
    assert store.get("100002:key") is None  # scopes are per caller
    store.put("100001:short", first, ttl=timedelta(seconds=0.3))
    assert store.get("100001:short") == first
    time.sleep(0.6)  # an expiry on Redis's own clock; only the lower bound is asserted
    assert store.get("100001:short") is None
    store.put("100001:short", second, ttl=timedelta(hours=1))
    assert store.get("100001:short") == second


@pytest.mark.integration
def test_the_service_keeps_keys_in_the_state_redis(redis_url: str, tmp_path: Path) -> None:
    settings = Settings(
        auth_secret=SECRET,
        database_url=f"sqlite:///{tmp_path / 'reels.db'}",
        redis_state_url=redis_url,
        videos=5,
        pending_videos=0,
        users=2,
        events=0,
        creators=2,
    )
    migrate(settings)
    stores = configured_stores(settings)
    seed_synthetic_catalog(stores, settings, now=datetime.now(UTC))
    services = build_services(stores, settings)
    try:
        assert isinstance(stores.idempotency, RedisIdempotencyStore)
        client = create_app(services, settings).test_client()
        headers = {
            "Authorization": f"Bearer {issue_token(SECRET, FIRST_USER_ID)}",
            "Idempotency-Key": "retry-1",
        }
        path = f"/api/v1/reels/{FIRST_VIDEO_ID}/watch"
        first = client.post(path, json={"completion": 0.5}, headers=headers)
        again = client.post(path, json={"completion": 0.5}, headers=headers)
        assert first.status_code == again.status_code == 201
        assert first.get_json() == again.get_json()
        assert stores.events.get_stats([FIRST_VIDEO_ID])[FIRST_VIDEO_ID].views == 1
        other = client.post(path, json={"completion": 0.9}, headers=headers)
        assert other.status_code == 422
        assert stores.events.get_stats([FIRST_VIDEO_ID])[FIRST_VIDEO_ID].views == 1
        # The record is in Redis, not in the SQL table the embedded default would use.
        import redis

        with redis.Redis.from_url(redis_url) as raw:
            assert len(raw.keys(f"{settings.redis_prefix}:idem:*")) == 1
        sql = SqlIdempotencyStore(stores.catalog.engine)  # type: ignore[attr-defined]
        assert sql.get(f"{FIRST_USER_ID}:retry-1") is None
    finally:
        services.close()
