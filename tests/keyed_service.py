"""The reels service set up for the ``Idempotency-Key`` tests, shared by
``test_service_idempotency.py`` and ``test_example_retry_stamp.py``.

:func:`idempotency_store` builds each idempotency store on its real backend: in memory,
SQLite, PostgreSQL, and a single Redis and a Redis Cluster (the servers come from the
session fixtures of ``conftest.py``). :func:`keyed_service` builds the service over
in-memory stores with one of them, a fake clock and an event store that can lose
answers or fail, and :class:`CountingIdempotencyStore` counts the round trips a request
makes to its idempotency store.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from reelrank_example import (
    FIRST_USER_ID,
    IdempotencyRecord,
    IdempotencyStore,
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

from reelrank import EngagementEvent, StoreError, StoreTimeoutError

SECRET = "k" * 40
"""Auth secret of the services built here."""

STORE_KINDS = [
    "memory",
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.integration),
    pytest.param("redis", marks=pytest.mark.integration),
    pytest.param("redis-cluster", marks=pytest.mark.integration),
]
"""Every idempotency store the service can be given, as test parameters."""


def idempotency_store(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """An empty idempotency store of ``kind`` (one of :data:`STORE_KINDS`), closed when
    the test ends."""
    if kind == "memory":
        return MemoryIdempotencyStore()
    if kind in ("sqlite", "postgres"):
        if kind == "sqlite":
            settings = Settings(database_url=f"sqlite:///{tmp_path / 'keys.db'}")
            migrate(settings)
        else:
            settings = Settings(database_url=request.getfixturevalue("service_postgres_url"))
        stores = configured_stores(settings)
        request.addfinalizer(lambda: [close() for close in stores.closers])
        assert isinstance(stores.idempotency, SqlIdempotencyStore)
        with stores.idempotency._engine.begin() as connection:
            connection.exec_driver_sql("DELETE FROM reelrank_service_idempotency")
        return stores.idempotency
    client: Any
    if kind == "redis":
        import redis

        client = redis.Redis.from_url(request.getfixturevalue("service_redis_url"))
        client.flushall()
    else:
        cluster = request.getfixturevalue("service_redis_cluster")
        cluster.flush()
        client = cluster.client()
    request.addfinalizer(client.close)
    return RedisIdempotencyStore(client, "test")


class CountingIdempotencyStore:
    """An idempotency store that counts the calls made to the store it wraps, each one
    round trip; ``put_answers=False`` makes ``put`` return ``None``, as a store written
    before ``put`` answered does."""

    def __init__(self, inner: IdempotencyStore, *, put_answers: bool = True) -> None:
        self._inner = inner
        self._put_answers = put_answers
        self.calls: collections.Counter[str] = collections.Counter()

    def get(self, scope: str) -> IdempotencyRecord | None:
        self.calls["get"] += 1
        return self._inner.get(scope)

    def put(self, scope: str, record: IdempotencyRecord, *, ttl: timedelta) -> bool | None:
        self.calls["put"] += 1
        stored = self._inner.put(scope, record, ttl=ttl)
        return stored if self._put_answers else None

    def replace(self, scope: str, record: IdempotencyRecord, *, ttl: timedelta) -> None:
        self.calls["replace"] += 1
        self._inner.replace(scope, record, ttl=ttl)


class SpiedEvents:
    """The event store, recording every event it is asked to append. While
    ``lose_answers`` is set, an append is applied and then raises
    :class:`~reelrank.StoreTimeoutError` (the answer lost); while ``fail`` is set, it
    raises :class:`~reelrank.StoreError` without applying anything."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.appended: list[EngagementEvent] = []
        self.lose_answers = False
        self.fail = False

    def append(self, event: EngagementEvent, *, creator_id: int) -> bool:
        self.appended.append(event)
        if self.fail:
            raise StoreError("events", "the event store is down")
        applied: bool = self._inner.append(event, creator_id=creator_id)
        if self.lose_answers:
            raise StoreTimeoutError("events", "the answer was lost after the write")
        return applied

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@dataclasses.dataclass
class KeyedService:
    """A service built by :func:`keyed_service`."""

    client: Any
    """Flask's test client of the app."""
    events: SpiedEvents
    """The event store the service writes to."""
    clock: list[datetime]
    """The service's clock: ``clock[0]`` is now, and tests move it."""


@contextlib.contextmanager
def keyed_service(idempotency: IdempotencyStore, **settings: Any) -> Iterator[KeyedService]:
    """The service on in-memory stores and ``idempotency``, with :data:`SECRET`, five
    ready videos and ``settings`` on top; its clock starts at 10:40 UTC today, so an
    hour later is another UTC hour."""
    config = Settings(
        **{
            "auth_secret": SECRET,
            "videos": 5,
            "pending_videos": 0,
            "users": 2,
            "events": 0,
            "creators": 2,
            **settings,
        }
    )
    clock = [datetime.now(UTC).replace(hour=10, minute=40, second=0, microsecond=0)]
    stores = memory_stores()
    seed_synthetic_catalog(stores, config, now=clock[0])
    events = SpiedEvents(stores.events)
    stores = dataclasses.replace(stores, events=events, idempotency=idempotency)
    services = build_services(stores, config, clock=lambda: clock[0])
    try:
        yield KeyedService(create_app(services, config).test_client(), events, clock)
    finally:
        services.close()


def keyed_headers(key: str | None, user_id: int = FIRST_USER_ID) -> dict[str, str]:
    """The headers of ``user_id``'s request with ``Idempotency-Key: key`` (none for
    ``None``)."""
    headers = {"Authorization": f"Bearer {issue_token(SECRET, user_id)}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers
