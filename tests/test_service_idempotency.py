"""Idempotency-Key records: the same semantics in memory, in SQL and in the state Redis.

With ``REELRANK_REDIS_STATE_URL`` (or ``REELRANK_REDIS_URL``) set, the service keeps the
records in Redis; otherwise in its SQL database. Either way the first answer for a key
stays until it expires, ``put`` says whether it stored its record, a retry with the same
body gets the first answer back and counts once, and the key with another body is 422.
The contract runs on every store: in memory, SQLite, and real PostgreSQL, Redis and
Redis Cluster servers. A first keyed event takes two round trips to its store, and a
request refused before its write (429, 503) leaves no record behind.
"""

from __future__ import annotations

import os
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from keyed_service import (
    SECRET,
    STORE_KINDS,
    CountingIdempotencyStore,
    KeyedService,
    idempotency_store,
    keyed_headers,
    keyed_service,
)
from reelrank_example import (
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

from reelrank import StoreError, StoreTimeoutError

WATCH = f"/api/v1/reels/{FIRST_VIDEO_ID}/watch"
SHARE = f"/api/v1/reels/{FIRST_VIDEO_ID}/share"

# -- the store contract ----------------------------------------------------------------


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_the_first_record_stays_until_it_expires(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = idempotency_store(kind, request, tmp_path)
    first = IdempotencyRecord("f" * 64, 201, '{"event_id": "w-1"}')
    second = IdempotencyRecord("e" * 64, 200, '{"event_id": "w-2"}')
    assert store.get("100001:key") is None
    assert store.put("100001:key", first, ttl=timedelta(hours=1)) is True
    # A concurrent first request's record is refused, and put says so.
    assert store.put("100001:key", second, ttl=timedelta(hours=1)) is False
    assert store.get("100001:key") == first
    assert store.get("100002:key") is None  # scopes are per caller
    assert store.put("100001:short", first, ttl=timedelta(seconds=0.3)) is True
    assert store.get("100001:short") == first
    time.sleep(0.6)  # an expiry on the store's own clock; only the lower bound is asserted
    assert store.get("100001:short") is None
    # An expired record is no longer there: put stores over it.
    assert store.put("100001:short", second, ttl=timedelta(hours=1)) is True
    assert store.get("100001:short") == second


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_a_pending_record_is_kept_by_put_and_replaced_by_replace(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = idempotency_store(kind, request, tmp_path)
    stamp = datetime(2026, 3, 1, 10, 40, 12, 345678, tzinfo=UTC)
    pending = IdempotencyRecord.pending_for("f" * 64, stamp)
    final = IdempotencyRecord("f" * 64, 201, '{"event_id": "w-1"}')
    assert store.put("100001:key", pending, ttl=timedelta(hours=1)) is True
    assert store.put("100001:key", final, ttl=timedelta(hours=1)) is False
    read = store.get("100001:key")
    assert read == IdempotencyRecord("f" * 64, 0, "", occurred_at=stamp)
    assert read.pending
    store.replace("100001:key", final, ttl=timedelta(hours=1))
    assert store.get("100001:key") == final
    assert not final.pending
    store.replace("100001:other", final, ttl=timedelta(hours=1))  # nothing there before
    assert store.get("100001:other") == final
    assert store.put("100001:other", pending, ttl=timedelta(hours=1)) is False


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_of_concurrent_first_puts_exactly_one_stores(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = idempotency_store(kind, request, tmp_path)
    records = [IdempotencyRecord(f"{number:064x}", 201, "{}") for number in range(6)]
    start = threading.Barrier(len(records))
    answers: dict[int, bool] = {}

    def put(number: int) -> None:
        start.wait()
        answers[number] = store.put("100001:race", records[number], ttl=timedelta(hours=1))

    threads = [threading.Thread(target=put, args=(number,)) for number in range(len(records))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [number for number, stored in answers.items() if stored]
    assert len(answers) == len(records)
    assert len(winners) == 1
    assert store.get("100001:race") == records[winners[0]]


# -- round trips -----------------------------------------------------------------------


@pytest.fixture(params=STORE_KINDS)
def counted(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    store = CountingIdempotencyStore(idempotency_store(request.param, request, tmp_path))
    with keyed_service(store) as service:
        yield service, store


@pytest.mark.parametrize(
    ("path", "body", "timed"),
    [
        (WATCH, {"completion": 0.5}, False),
        (SHARE, {"channel": "link"}, False),
        (WATCH, {"completion": 0.5}, True),
    ],
)
def test_a_first_keyed_event_takes_two_round_trips(
    counted: tuple[KeyedService, CountingIdempotencyStore],
    path: str,
    body: dict[str, Any],
    timed: bool,
) -> None:
    service, store = counted
    if timed:
        body = {**body, "occurred_at": service.clock[0].isoformat()}
    first = service.client.post(path, json=body, headers=keyed_headers("trips-1"))
    assert first.status_code == 201, first.get_data(as_text=True)
    # A body without its time is stamped by the service: put of the pending record,
    # which answers that it was stored, then replace with the answer. A body with its
    # time: get finds no record, then put of the answer.
    assert dict(store.calls) == ({"get": 1, "put": 1} if timed else {"put": 1, "replace": 1})
    store.calls.clear()
    replay = service.client.post(path, json=body, headers=keyed_headers("trips-1"))
    assert (replay.status_code, replay.get_json()) == (201, first.get_json())
    # A retry: put finds the record (untimed), get reads it.
    assert dict(store.calls) == ({"get": 1} if timed else {"put": 1, "get": 1})
    assert len(service.events.appended) == 1


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_store_whose_put_answers_nothing_is_read_back(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # A store written before put answered returns None: the service reads the record
    # back to learn whose it is, and keeps every guarantee.
    store = CountingIdempotencyStore(idempotency_store(kind, request, tmp_path), put_answers=False)
    with keyed_service(store) as service:
        first = service.client.post(WATCH, json={"completion": 0.5}, headers=keyed_headers("k"))
        assert first.status_code == 201
        assert dict(store.calls) == {"put": 1, "get": 1, "replace": 1}
        replay = service.client.post(WATCH, json={"completion": 0.5}, headers=keyed_headers("k"))
        assert (replay.status_code, replay.get_json()) == (201, first.get_json())
        other = service.client.post(WATCH, json={"completion": 0.9}, headers=keyed_headers("k"))
        assert other.status_code == 422
        assert len(service.events.appended) == 1


# -- refusals --------------------------------------------------------------------------


def _open_the_event_write_breaker(service: KeyedService) -> None:
    """Fail three unkeyed events (the event-write breaker opens after three failures),
    then let the event store answer again."""
    service.events.fail = True
    for _ in range(3):
        failed = service.client.post(WATCH, json={"completion": 0.1}, headers=keyed_headers(None))
        assert failed.status_code == 503
    service.events.fail = False


def _next_minute(service: KeyedService) -> None:
    """The rate limits' window passes (the limiter counts on the wall clock)."""
    for limiter in service.client.application.extensions["limiter"]:
        limiter.reset()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_keyed_event_refused_by_the_rate_limit_leaves_the_key_free(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = idempotency_store(kind, request, tmp_path)
    with keyed_service(store, events_per_minute=1) as service:
        used = service.client.post(WATCH, json={"completion": 0.1}, headers=keyed_headers(None))
        assert used.status_code == 201
        refused = service.client.post(
            WATCH, json={"completion": 0.5}, headers=keyed_headers("after-429")
        )
        assert refused.status_code == 429
        assert store.get(f"{FIRST_USER_ID}:after-429") is None
        _next_minute(service)
        # Nothing was written for the refused request: the key takes another body.
        other = service.client.post(
            WATCH, json={"completion": 0.9}, headers=keyed_headers("after-429")
        )
        assert other.status_code == 201, other.get_data(as_text=True)
        assert [event.completion for event in service.events.appended] == [0.1, 0.9]


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_keyed_event_refused_by_the_open_breaker_leaves_the_key_free(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = idempotency_store(kind, request, tmp_path)
    with keyed_service(store) as service:
        _open_the_event_write_breaker(service)
        tried = len(service.events.appended)
        refused = service.client.post(
            WATCH, json={"completion": 0.5}, headers=keyed_headers("after-503")
        )
        assert refused.status_code == 503
        assert len(service.events.appended) == tried  # refused before the store
        assert store.get(f"{FIRST_USER_ID}:after-503") is None
        time.sleep(2.1)  # the breaker's reset timeout (2 s, on the monotonic clock)
        other = service.client.post(
            WATCH, json={"completion": 0.9}, headers=keyed_headers("after-503")
        )
        assert other.status_code == 201, other.get_data(as_text=True)
        assert service.events.appended[-1].completion == 0.9


@pytest.mark.parametrize(
    ("body", "answer"),
    [({"completion": 0.5}, 201), ({"completion": 0.7}, 422)],
    ids=["replayed", "key-reused"],
)
def test_a_keyed_event_answered_without_a_write_leaves_the_breaker_half_open(
    body: dict[str, float], answer: int
) -> None:
    with keyed_service(MemoryIdempotencyStore()) as service:
        first = service.client.post(
            WATCH, json={"completion": 0.5}, headers=keyed_headers("half-open")
        )
        assert first.status_code == 201, first.get_data(as_text=True)
        _open_the_event_write_breaker(service)
        time.sleep(2.1)  # the breaker's reset timeout (2 s, on the monotonic clock)
        tried = len(service.events.appended)
        # The half-open breaker lets this request through as its trial; the key's
        # record answers it (its first answer, or 422 for another body) without a write.
        retried = service.client.post(WATCH, json=body, headers=keyed_headers("half-open"))
        assert retried.status_code == answer, retried.get_data(as_text=True)
        assert len(service.events.appended) == tried
        # Still half-open: the next write is the trial, and its failure reopens the
        # circuit, so the write after it is refused without reaching the store.
        service.events.fail = True
        trial = service.client.post(WATCH, json={"completion": 0.2}, headers=keyed_headers(None))
        assert trial.status_code == 503
        assert len(service.events.appended) == tried + 1
        service.events.fail = False
        refused = service.client.post(WATCH, json={"completion": 0.3}, headers=keyed_headers(None))
        assert refused.status_code == 503
        assert len(service.events.appended) == tried + 1


# -- the service on the state Redis ----------------------------------------------------


@pytest.mark.integration
def test_the_service_keeps_keys_in_the_state_redis(service_redis_url: str, tmp_path: Path) -> None:
    import redis

    with redis.Redis.from_url(service_redis_url) as raw:
        raw.flushall()
    settings = Settings(
        auth_secret=SECRET,
        database_url=f"sqlite:///{tmp_path / 'reels.db'}",
        redis_state_url=service_redis_url,
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
        first = client.post(WATCH, json={"completion": 0.5}, headers=headers)
        again = client.post(WATCH, json={"completion": 0.5}, headers=headers)
        assert first.status_code == again.status_code == 201
        assert first.get_json() == again.get_json()
        assert stores.events.get_stats([FIRST_VIDEO_ID])[FIRST_VIDEO_ID].views == 1
        other = client.post(WATCH, json={"completion": 0.9}, headers=headers)
        assert other.status_code == 422
        assert stores.events.get_stats([FIRST_VIDEO_ID])[FIRST_VIDEO_ID].views == 1
        # The record is in Redis, not in the SQL table the embedded default would use.
        with redis.Redis.from_url(service_redis_url) as raw:
            assert len(raw.keys(f"{settings.redis_prefix}:idem:*")) == 1
        sql = SqlIdempotencyStore(stores.catalog.engine)  # type: ignore[attr-defined]
        assert sql.get(f"{FIRST_USER_ID}:retry-1") is None
    finally:
        services.close()


def _unreachable_sql_store(tmp_path: Path) -> SqlIdempotencyStore:
    """A store whose SQLite file cannot be opened: every call fails in the driver."""
    return SqlIdempotencyStore(sa.create_engine(f"sqlite:///{tmp_path / 'missing' / 'keys.db'}"))


def test_a_failing_sql_idempotency_store_raises_store_errors(tmp_path: Path) -> None:
    store = _unreachable_sql_store(tmp_path)
    record = IdempotencyRecord("fingerprint", 201, "{}")
    calls = {
        "get": lambda: store.get("1:k"),
        "put": lambda: store.put("1:k", record, ttl=timedelta(hours=1)),
        "replace": lambda: store.replace("1:k", record, ttl=timedelta(hours=1)),
    }
    for operation, call in calls.items():
        with pytest.raises(StoreError) as info:
            call()
        assert info.value.store == "idempotency"
        assert f"{operation} failed" in str(info.value)
        assert isinstance(info.value.__cause__, sa.exc.OperationalError)


def test_a_keyed_event_is_taken_while_the_sql_idempotency_store_fails(tmp_path: Path) -> None:
    with keyed_service(_unreachable_sql_store(tmp_path)) as service:
        answer = service.client.post(WATCH, json={"completion": 0.5}, headers=keyed_headers("k"))
        assert answer.status_code == 201, answer.get_json()
        assert len(service.events.appended) == 1


def test_a_pool_that_runs_dry_is_an_idempotency_store_timeout(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'keys.db'}")
    migrate(settings)
    url = settings.database_url.get_secret_value()
    engine = sa.create_engine(url, pool_size=1, max_overflow=0, pool_timeout=0.1)
    store = SqlIdempotencyStore(engine)
    with engine.connect(), pytest.raises(StoreTimeoutError) as info:
        store.get("1:k")  # the one pooled connection is held above
    assert info.value.store == "idempotency"
    engine.dispose()


@pytest.mark.slow
def test_a_store_whose_put_may_answer_nothing_satisfies_the_protocol_for_mypy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The protocol says what the service accepts: a ``put`` annotated ``bool | None``
    (``None``: unknown, read it back) type-checks as an ``IdempotencyStore``."""
    mypy_api = pytest.importorskip("mypy.api")
    root = Path(__file__).resolve().parents[1]
    monkeypatch.setenv(
        "MYPYPATH", os.pathsep.join(str(root / part) for part in ("src", "examples/flask_app"))
    )
    snippet = tmp_path / "third_party_store.py"
    snippet.write_text(
        textwrap.dedent(
            """\
            from datetime import timedelta

            from reelrank_example import IdempotencyRecord, IdempotencyStore


            class ThirdPartyStore:
                def get(self, scope: str) -> IdempotencyRecord | None:
                    return None

                def put(
                    self, scope: str, record: IdempotencyRecord, *, ttl: timedelta
                ) -> bool | None:
                    return None

                def replace(
                    self, scope: str, record: IdempotencyRecord, *, ttl: timedelta
                ) -> None:
                    pass


            store: IdempotencyStore = ThirdPartyStore()
            """
        )
    )
    report, errors, status = mypy_api.run(
        [
            "--strict",
            "--follow-imports=silent",
            "--cache-dir",
            str(tmp_path / "mypy-cache"),
            str(snippet),
        ]
    )
    assert status == 0, report + errors
