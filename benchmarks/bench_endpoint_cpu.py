"""CPU per request of each endpoint of the mixed workload, in-process, on the stores the
load benchmark uses: real PostgreSQL, ClickHouse and Redis started by the fixtures.

The Flask test client sends the requests ``bench_http.py``'s mix sends (cache-hit
cursor pages of the feed, search, watches with an ``Idempotency-Key``, likes,
trending), and a video's detail (not in the mix; it reads its card's counts afresh on
every request) and shares, in blocks of one endpoint each, and ``time.process_time()``
over a block gives the CPU per request (every thread of the process, so the store calls
the guards run on worker threads count, and so do the event stores' group commits,
whose background threads insert each batch of events: with one request at a time,
every batch holds one event). ``time.thread_time()`` over the same block gives the
request thread's own share, and ``time.perf_counter()`` around each request its
latency (p50 and p99 over the run's blocks). Two services run side by side in this
process on the same servers: one writing an event's engagement log after its event
store (``REELRANK_PARALLEL_EVENT_WRITES=false``, the recorder as before
``RecorderConfig.parallel_writes``) and one writing them side by side (the default).
Their blocks alternate with a bare Flask endpoint's
(:func:`reelrank_example.testing.bare_app`), the baseline, so a noisy moment of the
shared machine falls on all alike. The figures go to the ratio table at the end of the
run, with the load average.

About two minutes with the servers' start and seeding (20,000 videos, ``seed --bulk``);
quick mode (``REELRANK_BENCH_QUICK=1``, in CI) seeds 2,000 videos and measures 2 rounds
of blocks, the full run 6.

:func:`test_card_read_cpu` isolates the card read of an earlier change, on in-memory
stores (no servers): a video card's counts read afresh, as a video's detail does, by
a card reader that guards its reads again (:func:`_card_reader_guarding_again`) and by
one built now, in alternated blocks.

:func:`test_event_limit_cpu` compares the event endpoints' CPU with the rate limit on
``limits``' stock Redis storage (the headers read the window back after the hit) and
on the service's, whose hit answers the window, two services side by side on the same
stack; :func:`test_limit_window_cpu` the limit's hit and window read alone on the two
storages, on a Redis server of its own.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from conftest import QUICK, SUMMARY, loadavg

from reelrank import FeedObserver

pytest.importorskip("reelrank_redis")
pytest.importorskip("reelrank_postgres")
pytest.importorskip("reelrank_clickhouse")
testing = pytest.importorskip("reelrank_example.testing")

from reelrank_example import (  # noqa: E402
    FIRST_USER_ID,
    FIRST_VIDEO_ID,
    Settings,
    _guarded,
    create_default_app,
    issue_token,
    memory_stores,
    seed_synthetic_catalog,
)
from reelrank_example import _cards as cards_module  # noqa: E402

pytestmark = pytest.mark.timeout(900)

VIDEOS = 2_000 if QUICK else 20_000
USERS = 200
PAGE_SIZE = 10
BLOCK = 20 if QUICK else 40
# An event write refused with 503 (a store call past its deadline when the shared machine
# is loaded) is sent again, as clients do, up to this many attempts in all.
_EVENT_ATTEMPTS = 3
# Numbers the services the module builds on its one stack, so that no two of them send
# the same Idempotency-Key (a key sent again with another request is refused, 422).
_SERVICE_NUMBERS = itertools.count()
ROUNDS = 2 if QUICK else 6
CATALOG = {
    "REELRANK_VIDEOS": str(VIDEOS),
    "REELRANK_PENDING_VIDEOS": "0",
    "REELRANK_USERS": str(USERS),
    "REELRANK_EVENTS": str(VIDEOS),
    "REELRANK_CREATORS": str(max(10, VIDEOS // 100)),
}
# The load client's search words (reelrank_example.testing).
SEARCH_WORDS = (
    "dance", "comedy", "cooking", "travel", "fitness", "music", "pets",
    "easy hack", "daily routine", "epic fail", "secret trick", "makeup tutorial",
)  # fmt: skip


class _NotAGuardedStore:
    """Nothing is an instance of it."""


def _card_reader_guarding_again(patch: pytest.MonkeyPatch) -> None:
    """Build the card reader as before it recognised the event store the service hands
    it as a :class:`~reelrank.GuardedStore`: it guards each count read again (a second
    worker thread, and the call counted twice)."""
    patch.setattr(cards_module, "GuardedStore", _NotAGuardedStore)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with testing.ServiceStack(tmp_path_factory.mktemp("stack"), CATALOG, bulk=True) as started:
        yield started


def _app(stack: Any, settings: dict[str, str]) -> Any:
    """The service as a gunicorn worker builds it, from the stack's environment and
    ``settings``; its start-up (kernels, migrations, warming) is waited for."""
    app = create_default_app(stack.settings(settings))
    client = app.test_client()
    deadline = time.monotonic() + 300
    while client.get("/healthz/startup").status_code != 200:
        assert time.monotonic() < deadline, "start-up did not finish"
        time.sleep(0.2)
    return app


class _Service:
    """One configuration of the service, and a request maker per endpoint."""

    def __init__(self, stack: Any, users: range, *, parallel_writes: bool) -> None:
        self.app = _app(stack, {"REELRANK_PARALLEL_EVENT_WRITES": str(parallel_writes).lower()})
        self.client = self.app.test_client()
        secret = stack.env["REELRANK_AUTH_SECRET"]
        self._headers = {
            user: {"Authorization": f"Bearer {issue_token(secret, user)}"} for user in users
        }
        self._users = itertools.cycle(users)
        self._cursors: dict[int, str] = {}
        self._counter = itertools.count()
        self._key_prefix = f"cpu-{next(_SERVICE_NUMBERS)}"
        self._words = itertools.cycle(SEARCH_WORDS)
        self._videos = itertools.cycle(range(FIRST_VIDEO_ID, FIRST_VIDEO_ID + VIDEOS, 7))
        self.cpu_ms: dict[str, list[float]] = {}
        self.thread_ms: dict[str, list[float]] = {}
        """The request thread's own CPU per request of each block (the rest of
        :attr:`cpu_ms` ran on the guards' and group commits' threads)."""
        self.latency_ms: dict[str, list[float]] = {}
        """Each request's wall time, by endpoint."""
        self.misses = 0
        self.refused = 0
        """Event writes answered 503 (a store past its deadline on a loaded machine) and
        sent again, as a client honouring ``Retry-After`` would."""

    def _post(self, path: str, body: dict[str, Any], headers: dict[str, str], status: int) -> None:
        for _ in range(_EVENT_ATTEMPTS - 1):
            response = self.client.post(path, json=body, headers=headers)
            if response.status_code != 503:
                break
            self.refused += 1
        else:
            response = self.client.post(path, json=body, headers=headers)
        assert response.status_code == status, response.get_data(as_text=True)

    def _get(self, path: str, user: int) -> Any:
        response = self.client.get(path, headers=self._headers[user])
        assert response.status_code == 200, response.get_data(as_text=True)
        return response

    def feed(self) -> None:
        user = next(self._users)
        path = f"/api/v1/reels?limit={PAGE_SIZE}"
        if user in self._cursors:
            path += f"&cursor={self._cursors[user]}"
        response = self._get(path, user)
        self.misses += "hit" not in response.headers["Cache-Status"]
        cursor = response.get_json()["next_cursor"]
        if cursor:
            self._cursors[user] = cursor
        else:
            self._cursors.pop(user, None)

    def search(self) -> None:
        words = next(self._words).replace(" ", "+")
        self._get(f"/api/v1/reels/search?q={words}&limit=10", next(self._users))

    def trending(self) -> None:
        self._get("/api/v1/reels/trending-hashtags?limit=10", next(self._users))

    def detail(self) -> None:
        self._get(f"/api/v1/reels/{next(self._videos)}", next(self._users))

    def watch(self) -> None:
        user = next(self._users)
        self._post(
            f"/api/v1/reels/{next(self._videos)}/watch",
            {"completion": 0.75},
            {**self._headers[user], "Idempotency-Key": f"{self._key_prefix}-{next(self._counter)}"},
            201,
        )

    def like(self) -> None:
        user = next(self._users)
        self._post(f"/api/v1/reels/{next(self._videos)}/like", {}, self._headers[user], 200)

    def share(self) -> None:
        user = next(self._users)
        self._post(
            f"/api/v1/reels/{next(self._videos)}/share",
            {"channel": "link"},
            {**self._headers[user], "Idempotency-Key": f"{self._key_prefix}-{next(self._counter)}"},
            201,
        )

    def endpoints(self) -> dict[str, Callable[[], None]]:
        return {"feed": self.feed, "search": self.search, "trending": self.trending,
                "detail": self.detail, "watch": self.watch, "like": self.like,
                "share": self.share}  # fmt: skip

    def block(self, name: str, request: Callable[[], None], size: int) -> None:
        latencies = self.latency_ms.setdefault(name, [])
        started, thread_started = time.process_time(), time.thread_time()
        for _ in range(size):
            sent = time.perf_counter()
            request()
            latencies.append(1e3 * (time.perf_counter() - sent))
        self.cpu_ms.setdefault(name, []).append(1e3 * (time.process_time() - started) / size)
        self.thread_ms.setdefault(name, []).append(
            1e3 * (time.thread_time() - thread_started) / size
        )


def _mean_store_call_ms(service: _Service, store: str, operation: str) -> float:
    """The mean duration of the service's ``store.operation`` calls so far, from its
    ``/metrics`` (the recorder's observer times each call where it is made)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = service.client.get("/metrics").get_data(as_text=True)
    totals = {"sum": 0.0, "count": 0.0}
    for family in text_string_to_metric_families(text):
        if family.name != "reelrank_store_call_duration_seconds":
            continue
        for sample in family.samples:
            labels = sample.labels
            kind = sample.name.rsplit("_", 1)[-1]
            if kind in totals and (labels["store"], labels["operation"]) == (store, operation):
                totals[kind] += sample.value
    return 1e3 * totals["sum"] / max(totals["count"], 1.0)


class _Bare:
    def __init__(self) -> None:
        self.client = testing.bare_app().test_client()
        self.cpu_ms: list[float] = []

    def block(self, size: int) -> None:
        started = time.process_time()
        for _ in range(size):
            assert self.client.get("/ping").status_code == 200
        self.cpu_ms.append(1e3 * (time.process_time() - started) / size)


def test_endpoint_cpu(benchmark: Any, stack: Any) -> None:
    half = USERS // 2
    in_turn = _Service(stack, range(FIRST_USER_ID, FIRST_USER_ID + half), parallel_writes=False)
    side_by_side = _Service(
        stack, range(FIRST_USER_ID + half, FIRST_USER_ID + USERS), parallel_writes=True
    )
    bare = _Bare()
    services = {"in turn": in_turn, "side by side": side_by_side}
    try:
        for service in services.values():
            for name, request in service.endpoints().items():
                service.block(name, request, BLOCK // 2)  # warm-up, not counted
            service.cpu_ms.clear()
            service.thread_ms.clear()
            service.latency_ms.clear()
        for round_number in range(ROUNDS):
            order = list(services.values())
            if round_number % 2:
                order.reverse()
            for name in in_turn.endpoints():
                for service in order:
                    service.block(name, service.endpoints()[name], BLOCK)
            bare.block(BLOCK)
        load = loadavg()
        bare_ms = float(np.median(bare.cpu_ms))
        for name in in_turn.endpoints():
            old, new = (float(np.median(s.cpu_ms[name])) for s in (in_turn, side_by_side))
            (old_p50, old_p99), (new_p50, new_p99) = (
                np.percentile(s.latency_ms[name], [50, 99]) for s in (in_turn, side_by_side)
            )
            SUMMARY.append(
                f"example service latency, {name}: log written after the event store p50 "
                f"{old_p50:.2f} ms p99 {old_p99:.2f} ms, side by side p50 {new_p50:.2f} ms "
                f"p99 {new_p99:.2f} ms, side by side / in turn x{new_p50 / old_p50:.2f} (p50) "
                f"x{new_p99 / old_p99:.2f} (p99) ({ROUNDS * BLOCK} requests each, load {load})"
            )
            SUMMARY.append(
                f"example service CPU per request, {name}: in turn {old:.2f} ms "
                f"({min(in_turn.cpu_ms[name]):.2f}-{max(in_turn.cpu_ms[name]):.2f}), "
                f"side by side {new:.2f} ms "
                f"({min(side_by_side.cpu_ms[name]):.2f}-{max(side_by_side.cpu_ms[name]):.2f}), "
                f"side by side / in turn x{new / old:.2f}; on the request thread in turn "
                f"{np.median(in_turn.thread_ms[name]):.2f} ms, side by side "
                f"{np.median(side_by_side.thread_ms[name]):.2f} ms; bare endpoint "
                f"{bare_ms:.3f} ms ({ROUNDS} blocks of {BLOCK}, load {load}, pid {os.getpid()})"
            )
            benchmark.extra_info[f"{name}_in_turn_ms"] = round(old, 3)
            benchmark.extra_info[f"{name}_side_by_side_ms"] = round(new, 3)
            benchmark.extra_info[f"{name}_in_turn_p50_ms"] = round(float(old_p50), 3)
            benchmark.extra_info[f"{name}_side_by_side_p50_ms"] = round(float(new_p50), 3)
        for label, service in services.items():
            append, record = (
                _mean_store_call_ms(service, store, operation)
                for store, operation in (("events", "append"), ("log", "record"))
            )
            SUMMARY.append(
                f"example service, writes {label}: events.append {append:.2f} ms, "
                f"log.record {record:.2f} ms on average over the run (load {load})"
            )
        SUMMARY.append(
            f"example service CPU per request: feed pages ranked during the request "
            f"(misses) {in_turn.misses} in turn, {side_by_side.misses} side by side; "
            f"event writes refused and sent again {in_turn.refused} in turn, "
            f"{side_by_side.refused} side by side"
        )
        benchmark.pedantic(side_by_side.search, rounds=1, iterations=1)
    finally:
        for service in services.values():
            service.app.extensions["reelrank_services"].close()


CARD_READS = 500 if QUICK else 2_000
CARD_ROUNDS = 4 if QUICK else 8


def test_card_read_cpu(benchmark: Any) -> None:
    settings = Settings(auth_secret="b" * 40, videos=50, pending_videos=0, users=4,
                        events=200, creators=5)  # fmt: skip
    stores = memory_stores()
    seed_synthetic_catalog(stores, settings, now=datetime.now(UTC))
    # The event store as the service wraps it (a GuardedStore), with metrics on.
    guarded = _guarded(stores, FeedObserver())
    after = cards_module.CardReader(guarded.catalog, guarded.events, ttl=60.0,
                                    observer=FeedObserver())  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        _card_reader_guarding_again(patch)
        before = cards_module.CardReader(guarded.catalog, guarded.events, ttl=60.0,
                                         observer=FeedObserver())  # fmt: skip
    ids = list(range(FIRST_VIDEO_ID, FIRST_VIDEO_ID + PAGE_SIZE))
    readers = {"before": before, "after": after}
    cpu_us: dict[str, list[float]] = {name: [] for name in readers}
    for reader in readers.values():
        reader.read(ids)  # the details, kept for ttl: only the counts are read below
    for round_number in range(CARD_ROUNDS):
        order = list(readers.items())
        if round_number % 2:
            order.reverse()
        for name, reader in order:
            started = time.process_time()
            for _ in range(CARD_READS):
                reader.read(ids, fresh_counts=True)
            cpu_us[name].append(1e6 * (time.process_time() - started) / CARD_READS)
    old, new = (float(np.median(cpu_us[name])) for name in readers)
    SUMMARY.append(
        f"card read of {PAGE_SIZE} videos with fresh counts (in memory): before {old:.1f} us "
        f"({min(cpu_us['before']):.1f}-{max(cpu_us['before']):.1f}), after {new:.1f} us "
        f"({min(cpu_us['after']):.1f}-{max(cpu_us['after']):.1f}) of CPU, after / before "
        f"x{new / old:.2f} ({CARD_ROUNDS} blocks of {CARD_READS}, load {loadavg()})"
    )
    benchmark.extra_info["card_read_before_us"] = round(old, 2)
    benchmark.extra_info["card_read_after_us"] = round(new, 2)
    benchmark.pedantic(lambda: after.read(ids, fresh_counts=True), rounds=1, iterations=1)


EVENT_ROUNDS = 4 if QUICK else 8


def test_event_limit_cpu(benchmark: Any, stack: Any) -> None:
    """An event request's CPU with the rate limit on Flask-Limiter's stock Redis storage
    (the headers read the window back: ``GET`` and ``TTL`` after the hit) and on the
    service's, whose hit answers the window (``reelrank_example._limits_storage``);
    blocks of each alternated, users of their own."""
    from reelrank_example import _app as app_module

    half = USERS // 2
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(app_module, "window_answering_storage", lambda uri: uri)
        stock = _Service(stack, range(FIRST_USER_ID, FIRST_USER_ID + half), parallel_writes=True)
    answering = _Service(
        stack, range(FIRST_USER_ID + half, FIRST_USER_ID + USERS), parallel_writes=True
    )
    services = {"stock storage": stock, "hit answers the window": answering}
    names = ("watch", "like", "share")
    try:
        for service in services.values():
            for name in names:
                service.block(name, service.endpoints()[name], BLOCK // 2)  # warm-up
            service.cpu_ms.clear()
            service.thread_ms.clear()
        load_before = loadavg()
        for round_number in range(EVENT_ROUNDS):
            order = list(services.values())
            if round_number % 2:
                order.reverse()
            for name in names:
                for service in order:
                    service.block(name, service.endpoints()[name], BLOCK)
        load = loadavg()
        for name in names:
            old, new = (float(np.median(s.cpu_ms[name])) for s in (stock, answering))
            old_thread, new_thread = (
                float(np.median(s.thread_ms[name])) for s in (stock, answering)
            )
            SUMMARY.append(
                f"example service event CPU per request, {name}: stock limiter storage "
                f"{old:.2f} ms (request thread {old_thread:.2f} ms), hit answers the window "
                f"{new:.2f} ms (request thread {new_thread:.2f} ms), x{new / old:.2f} "
                f"(request thread x{new_thread / old_thread:.2f}) ({EVENT_ROUNDS} blocks of "
                f"{BLOCK} each, load {load_before} -> {load})"
            )
            benchmark.extra_info[f"{name}_stock_ms"] = round(old, 3)
            benchmark.extra_info[f"{name}_answering_ms"] = round(new, 3)
        SUMMARY.append(
            f"example service event CPU per request: event writes refused and sent again "
            f"{stock.refused} on the stock limiter storage, {answering.refused} on the other"
        )
        benchmark.pedantic(answering.like, rounds=1, iterations=1)
    finally:
        for service in services.values():
            service.app.extensions["reelrank_services"].close()


LIMIT_HITS = 500 if QUICK else 2_000
LIMIT_ROUNDS = 6 if QUICK else 10


def test_limit_window_cpu(benchmark: Any, tmp_path: Any) -> None:
    """The rate limit alone, as an event request takes it: a hit and the window's read
    for the headers, on ``limits``' stock Redis storage (``GET`` and ``TTL`` after the
    hit's script) and on the service's (the hit's answer), one real Redis server, each
    user's key hit once a block; alternated blocks, the calling thread's CPU per hit."""
    from limits import parse
    from limits.storage import storage_from_string
    from limits.strategies import FixedWindowRateLimiter
    from reelrank_example._limits_storage import window_answering_storage
    from reelrank_redis.testing import RedisServer

    item = parse("1000000/minute")
    with RedisServer(tmp_path) as server:
        limiters = {
            name: FixedWindowRateLimiter(storage_from_string(uri))
            for name, uri in (
                ("stock storage", server.url),
                ("hit answers the window", window_answering_storage(server.url)),
            )
        }
        thread_ms: dict[str, list[float]] = {name: [] for name in limiters}
        wall_ms: dict[str, list[float]] = {name: [] for name in limiters}
        users = itertools.count()

        def block(limiter: FixedWindowRateLimiter) -> tuple[float, float]:
            """The calling thread's CPU and the wall time per hit, in ms."""
            started, sent = time.thread_time(), time.perf_counter()
            for _ in range(LIMIT_HITS):
                key = f"user:{next(users)}"
                assert limiter.hit(item, key, "events")
                limiter.get_window_stats(item, key, "events")
            return (
                1e3 * (time.thread_time() - started) / LIMIT_HITS,
                1e3 * (time.perf_counter() - sent) / LIMIT_HITS,
            )

        for limiter in limiters.values():
            block(limiter)  # warm-up: connections, scripts loaded
        load_before = loadavg()
        for round_number in range(LIMIT_ROUNDS):
            order = list(limiters.items())
            if round_number % 2:
                order.reverse()
            for name, limiter in order:
                cpu, wall = block(limiter)
                thread_ms[name].append(cpu)
                wall_ms[name].append(wall)
        load = loadavg()
        old, new = (float(np.median(thread_ms[name])) for name in limiters)
        old_wall, new_wall = (float(np.median(wall_ms[name])) for name in limiters)
        SUMMARY.append(
            f"rate limit hit and window read, calling thread's CPU: stock storage {old:.3f} ms "
            f"({min(thread_ms['stock storage']):.3f}-{max(thread_ms['stock storage']):.3f}), "
            f"hit answers the window {new:.3f} ms "
            f"({min(thread_ms['hit answers the window']):.3f}-"
            f"{max(thread_ms['hit answers the window']):.3f}), x{new / old:.2f}; wall time "
            f"{old_wall:.3f} -> {new_wall:.3f} ms, x{new_wall / old_wall:.2f} "
            f"({LIMIT_ROUNDS} blocks of {LIMIT_HITS} each, load {load_before} -> {load})"
        )
        benchmark.extra_info["stock_ms"] = round(old, 4)
        benchmark.extra_info["answering_ms"] = round(new, 4)
        benchmark.pedantic(block, args=(limiters["hit answers the window"],), rounds=1)
