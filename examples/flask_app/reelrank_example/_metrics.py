"""Prometheus metrics of the reels service: every family, how it is counted, how it is scraped.

:data:`FAMILIES` lists every ``reelrank_*`` family the service exports, with its type,
labels, help text and how one pod-wide value is formed from the workers' values; the
metric objects are built from it and the operations guide's table is checked against
it.

**Multiprocess mode.** Under gunicorn (``PROMETHEUS_MULTIPROC_DIR`` set before the
workers start, see ``deploy/gunicorn.conf.py``) every worker writes its values to
memory-mapped files in that directory, and ``/metrics`` reads all of them with
prometheus_client's ``MultiProcessCollector``: whichever worker answers a scrape
reports the whole pod. A dead worker's counter files stay and keep being summed, so
counters never go backwards when gunicorn replaces a worker; the gauges use the ``live``
modes, so a dead worker's values drop out once gunicorn reports it dead. Without the
variable (tests, one process) the same metrics live in a registry of the app.

**Derived at scrape time.** The cache hit ratio and the candidate pool's age are not
stored: each scrape computes them from what is stored (the pod-wide lookup counters,
and the oldest fetch time among the live workers' pools), so they are exact for the
pod and current when scraped.
"""

from __future__ import annotations

import collections
import gc
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from reelrank import (
    BreakerState,
    CacheLookupResult,
    CacheMissReason,
    FeedObserver,
    RefillOutcome,
    StoreCallOutcome,
    __version__,
)

from ._request_costs import add_store_call

__all__ = ["FAMILIES", "MULTIPROCESS_DIR_ENV", "AppMetrics", "Family"]

MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""The environment variable that turns on prometheus_client's multiprocess mode."""

Aggregation = Literal["sum", "livesum", "livemax", "livemin", "derived"]


@dataclass(frozen=True, slots=True)
class Family:
    """One exported metric family."""

    name: str
    """The name as exposed (counters end in ``_total``)."""
    type: Literal["counter", "gauge", "histogram"]
    labels: tuple[str, ...]
    help: str
    """The ``# HELP`` text, which is also the family's documentation."""
    pod: Aggregation
    """How the pod-wide value is formed from the workers': ``sum`` over every worker
    that ever ran (counters, histograms); ``livesum``, ``livemax``, ``livemin`` over the
    live workers (the gauge's multiprocess mode); ``derived`` at scrape time."""


FAMILIES: tuple[Family, ...] = (
    Family(
        "reelrank_http_requests_total", "counter", ("method", "route", "status"),
        "HTTP requests answered, by method, URL rule pattern and status code.", "sum",
    ),
    Family(
        "reelrank_http_request_duration_seconds", "histogram",
        ("method", "route", "status", "cache"),
        "Time from receiving an HTTP request to returning its response; cache=hit for a "
        "feed page cut from a cached snapshot (or a retried cursor's remembered page), "
        "miss for one ranked for the request, none for every other response.", "sum",
    ),
    Family(
        "reelrank_http_requests_in_flight", "gauge", (),
        "HTTP requests being handled now, summed over the live workers.", "livesum",
    ),
    Family(
        "reelrank_http_rate_limited_total", "counter", ("route",),
        "Requests refused with 429 by the per-user event rate limit, by URL rule.", "sum",
    ),
    Family(
        "reelrank_search_match_reuse_total", "counter", ("outcome",),
        "Searches by where their text matches came from: outcome=hit when reused from "
        "this process's memory (REELRANK_SEARCH_MATCH_REUSE_SECONDS), miss when read "
        "from the search index.", "sum",
    ),
    Family(
        "reelrank_feed_pages_total", "counter", ("source",),
        "Feed pages served: source=cache when cut from a cached snapshot (a retried "
        "cursor's remembered page included), ranked when ranked for the request.", "sum",
    ),
    Family(
        "reelrank_feed_ended_pages_total", "counter", (),
        "Feed pages that answered the end of the feed (no items, no cursor) from the "
        "cache: a user who was shown every candidate of a held snapshot asked again, and "
        "was not ranked for. Counted in reelrank_feed_pages_total as source=cache too.",
        "sum",
    ),
    Family(
        "reelrank_feed_cache_misses_total", "counter", ("reason",),
        "Feed pages ranked for the request, by why no cached snapshot served them: absent "
        "(none cached: never warmed, or evicted), used_up (no unseen item left after the "
        "page's start), ran_out (the same, in a snapshot short of candidates), expired, "
        "config_changed, cache_failed (the lookup failed).", "sum",
    ),
    Family(
        "reelrank_feed_refills_total", "counter", ("outcome",),
        "Feed snapshots ranked ahead in the background because a cached page left few "
        "items, by outcome: stored, degraded (a store failed while ranking it), superseded "
        "(a request cached a newer one), failed (raised, or the cache refused it), dropped "
        "(the refill queue was full or the service closing).", "sum",
    ),
    Family(
        "reelrank_feed_cache_lookups_total", "counter", ("level", "result"),
        "Feed cache lookups per level (0 is the fastest) and result (hit, miss, error); "
        "a lookup a faster level answers never reaches the slower ones.", "sum",
    ),
    Family(
        "reelrank_feed_cache_hit_ratio", "gauge", ("level",),
        "hits / (hits + misses) of each feed cache level over the pod's lifetime, "
        "computed at scrape time from reelrank_feed_cache_lookups_total.", "derived",
    ),
    Family(
        "reelrank_feed_degraded_total", "counter", ("dependency", "fallback"),
        "Fallbacks taken in degraded feed responses: one per failing dependency and "
        "fallback named in a response's degraded list.", "sum",
    ),
    Family(
        "reelrank_feed_unavailable_total", "counter", ("dependency",),
        "Feed requests answered 503 because a dependency failed with nothing to stand "
        "in for it.", "sum",
    ),
    Family(
        "reelrank_feed_snapshot_builds_total", "counter", (),
        "Feed snapshots ranked, diversified and packed, for requests and for warming.",
        "sum",
    ),
    Family(
        "reelrank_feed_snapshot_build_duration_seconds", "histogram", (),
        "Time to rank, diversify and pack one feed snapshot (store reads excluded).", "sum",
    ),
    Family(
        "reelrank_store_calls_total", "counter", ("store", "operation", "outcome"),
        "Store calls by the feed service, the event recorder, the discovery services and "
        "the cards, by outcome: ok, error, timeout, or rejected (not made: circuit open or "
        "the store stalled).", "sum",
    ),
    Family(
        "reelrank_store_call_duration_seconds", "histogram", ("store", "operation"),
        "Time a caller waited for a store call that was made (rejected calls excluded).",
        "sum",
    ),
    Family(
        "reelrank_circuit_breaker_state", "gauge", ("dependency",),
        "Circuit breaker state per dependency, worst over the live workers: 0 closed, "
        "1 half-open, 2 open.", "livemax",
    ),
    Family(
        "reelrank_events_total", "counter", ("kind", "outcome"),
        "Engagement event requests by kind and outcome: recorded, duplicate (already "
        "recorded, or an Idempotency-Key replay), rejected (4xx), failed (5xx).", "sum",
    ),
    Family(
        "reelrank_kernel_duration_seconds", "histogram", ("kernel",),
        "Time spent in a compiled ranking kernel with its Python caller: rank, diversity.",
        "sum",
    ),
    Family(
        "reelrank_gc_pause_seconds", "histogram", ("generation",),
        "Time each garbage collection of a worker took, by generation (0 young, 1 middle, "
        "2 full); the collecting thread holds the interpreter lock throughout, so every "
        "other thread of that worker waits as long.", "sum",
    ),
    Family(
        "reelrank_candidate_pool_age_seconds", "gauge", (),
        "Age of the oldest shared candidate pool among the live workers: seconds since "
        "its candidates were fetched from the catalog, at scrape time.", "derived",
    ),
    Family(
        "reelrank_candidate_pool_size", "gauge", (),
        "Candidates in the shared candidate pool, largest over the live workers.",
        "livemax",
    ),
    Family(
        "reelrank_warming_users_total", "counter", ("outcome",),
        "Users whose feed snapshot cache warming stored (warmed) or could not rank or "
        "store (failed).", "sum",
    ),
    Family(
        "reelrank_warming_progress_ratio", "gauge", (),
        "Share of the start-up warming done, least advanced live worker (0 to 1).",
        "livemin",
    ),
    Family(
        "reelrank_startup_complete", "gauge", (),
        "1 once every live worker has loaded its kernels and warmed its cache, else 0.",
        "livemin",
    ),
    Family(
        "reelrank_readiness_checks_total", "counter", ("dependency", "outcome"),
        "Dependencies checked by /healthz/ready, by outcome (ok, failed).", "sum",
    ),
    Family(
        "reelrank_idempotent_replays_total", "counter", ("route",),
        "Requests retried with an Idempotency-Key and answered from the stored answer.",
        "sum",
    ),
    Family(
        "reelrank_build_info", "gauge", ("version",),
        "Always 1; the version label is the reelrank version the service runs.",
        "livemax",
    ),
)  # fmt: skip
"""Every ``reelrank_*`` family ``/metrics`` exports, besides prometheus_client's process
collectors (``process_*``, ``python_*``: in multiprocess mode, those of the worker that
answered the scrape)."""

# The pool's fetch time is stored (oldest over the live workers) and its age derived
# from it when scraped; the stored family itself is not exported.
_POOL_FETCHED_AT = "reelrank_candidate_pool_fetched_at_seconds"

# Feed requests take about a millisecond when the snapshot is cached and tens of
# milliseconds when a page is ranked; the buckets resolve both.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# In-process stores answer in microseconds, remote ones in a millisecond or more, and
# deadlines cut calls off at tens to hundreds of milliseconds.
_STORE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                  0.25, 0.5, 1.0, 2.5)  # fmt: skip
# A kernel over a few thousand candidates takes tens of microseconds to a millisecond.
_KERNEL_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                   0.05, 0.1)  # fmt: skip

# A young collection takes tens of microseconds, a full one over a large heap tens to
# hundreds of milliseconds.
_GC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
               0.5, 1.0)  # fmt: skip

_BREAKER_VALUES = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}

_BY_NAME = {family.name: family for family in FAMILIES}


def _base_name(name: str) -> str:
    """The family name prometheus_client uses internally (counters without ``_total``)."""
    return name.removesuffix("_total")


class _Metrics:
    """The metric objects, created from :data:`FAMILIES` in one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def counter(self, name: str) -> Counter:
        family = _BY_NAME[name]
        return Counter(name, family.help, family.labels, registry=self._registry)

    def histogram(self, name: str, buckets: tuple[float, ...]) -> Histogram:
        family = _BY_NAME[name]
        return Histogram(name, family.help, family.labels, buckets=buckets, registry=self._registry)

    def gauge(self, name: str) -> Gauge:
        family = _BY_NAME[name]
        assert family.pod in ("livesum", "livemax", "livemin")
        return Gauge(
            name, family.help, family.labels, multiprocess_mode=family.pod,
            registry=self._registry,
        )  # fmt: skip

    def pool_fetched_at(self) -> Gauge:
        """The stored gauge the pool's age is derived from (not exported itself)."""
        return Gauge(
            _POOL_FETCHED_AT,
            "When the shared candidate pool's candidates were fetched (Unix seconds), "
            "oldest over the live workers.",
            multiprocess_mode="livemin",
            registry=self._registry,
        )


class _PrometheusObserver(FeedObserver):
    """Writes what the feed service and the event recorder report into the metrics."""

    __slots__ = (
        "_breakers", "_degraded", "_kernels", "_lookups", "_misses", "_pool_fetched_at",
        "_pool_size", "_refills", "_snapshot_builds", "_snapshot_seconds", "_store_calls",
        "_store_seconds", "_unavailable", "_warmed",
    )  # fmt: skip

    def __init__(self, metrics: _Metrics) -> None:
        self._store_calls = metrics.counter("reelrank_store_calls_total")
        self._store_seconds = metrics.histogram(
            "reelrank_store_call_duration_seconds", _STORE_BUCKETS
        )
        self._degraded = metrics.counter("reelrank_feed_degraded_total")
        self._unavailable = metrics.counter("reelrank_feed_unavailable_total")
        self._lookups = metrics.counter("reelrank_feed_cache_lookups_total")
        self._misses = metrics.counter("reelrank_feed_cache_misses_total")
        self._refills = metrics.counter("reelrank_feed_refills_total")
        self._snapshot_builds = metrics.counter("reelrank_feed_snapshot_builds_total")
        self._snapshot_seconds = metrics.histogram(
            "reelrank_feed_snapshot_build_duration_seconds", _LATENCY_BUCKETS
        )
        self._kernels = metrics.histogram("reelrank_kernel_duration_seconds", _KERNEL_BUCKETS)
        self._pool_size = metrics.gauge("reelrank_candidate_pool_size")
        self._pool_fetched_at = metrics.pool_fetched_at()
        self._warmed = metrics.counter("reelrank_warming_users_total")
        self._breakers = metrics.gauge("reelrank_circuit_breaker_state")

    def store_call(
        self, store: str, operation: str, seconds: float, outcome: StoreCallOutcome
    ) -> None:
        self._store_calls.labels(store, operation, outcome).inc()
        if outcome != "rejected":
            self._store_seconds.labels(store, operation).observe(seconds)
            add_store_call(store, operation, seconds)

    def degraded(self, dependency: str, fallback: str) -> None:
        self._degraded.labels(dependency, fallback).inc()

    def feed_unavailable(self, dependency: str) -> None:
        self._unavailable.labels(dependency).inc()

    def cache_lookups(self, level: int, result: CacheLookupResult, count: int) -> None:
        self._lookups.labels(str(level), result).inc(count)

    def cache_missed(self, reason: CacheMissReason) -> None:
        self._misses.labels(reason).inc()

    def refill_ended(self, outcome: RefillOutcome) -> None:
        self._refills.labels(outcome).inc()

    def snapshot_built(self, seconds: float, size: int) -> None:
        self._snapshot_builds.inc()
        self._snapshot_seconds.observe(seconds)

    def kernel_run(self, kernel: str, seconds: float) -> None:
        self._kernels.labels(kernel).observe(seconds)

    def candidate_pool_refreshed(self, size: int, age_seconds: float) -> None:
        self._pool_size.set(size)
        self._pool_fetched_at.set(time.time() - age_seconds)

    def users_warmed(self, warmed: int, failed: int, skipped: int) -> None:
        if warmed:
            self._warmed.labels("warmed").inc(warmed)
        if failed:
            self._warmed.labels("failed").inc(failed)

    def breaker_state_changed(self, dependency: str, state: BreakerState) -> None:
        self._breakers.labels(dependency).set(_BREAKER_VALUES[state])


class _Exposition:
    """What ``/metrics`` renders: the stored families, plus those derived from them.

    Reads its ``source`` once per scrape, passes every family on except the stored pool
    fetch time, derives the hit ratio and the pool age, and adds an empty family for
    any catalogued one without values yet (in multiprocess mode a family appears in the
    files only once a worker has written to it).
    """

    def __init__(self, source: Collector) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        seen: set[str] = set()
        lookups: Metric | None = None
        fetched_at: Metric | None = None
        for metric in self._source.collect():
            if metric.name == _POOL_FETCHED_AT:
                fetched_at = metric
                continue
            if metric.name == _base_name("reelrank_feed_cache_lookups_total"):
                lookups = metric
            seen.add(metric.name)
            yield metric
        yield _hit_ratio(lookups)
        yield _pool_age(fetched_at)
        seen.update(("reelrank_feed_cache_hit_ratio", "reelrank_candidate_pool_age_seconds"))
        for family in FAMILIES:
            name = _base_name(family.name) if family.type == "counter" else family.name
            if name not in seen:
                yield Metric(name, family.help, family.type)


def _hit_ratio(lookups: Metric | None) -> Metric:
    family = _BY_NAME["reelrank_feed_cache_hit_ratio"]
    ratio = GaugeMetricFamily(family.name, family.help, labels=family.labels)
    counts: dict[str, dict[str, float]] = {}
    for sample in [] if lookups is None else lookups.samples:
        if sample.name.endswith("_total"):
            per_result = counts.setdefault(sample.labels["level"], {})
            result = sample.labels["result"]
            per_result[result] = per_result.get(result, 0.0) + sample.value
    for level, by_result in sorted(counts.items(), key=lambda item: int(item[0])):
        answered = by_result.get("hit", 0.0) + by_result.get("miss", 0.0)
        if answered:
            ratio.add_metric([level], by_result.get("hit", 0.0) / answered)
    return ratio


def _pool_age(fetched_at: Metric | None) -> Metric:
    family = _BY_NAME["reelrank_candidate_pool_age_seconds"]
    age = GaugeMetricFamily(family.name, family.help)
    # In multiprocess mode the stored gauge is already the oldest over the live workers.
    samples = () if fetched_at is None else fetched_at.samples
    oldest = min((sample.value for sample in samples), default=None)
    if oldest is not None:
        age.add_metric([], max(0.0, time.time() - oldest))
    return age


class _CollectionTimer:
    """Times the process's garbage collections, as a :data:`gc.callbacks` entry.

    A collection runs inside whatever allocation set it off, possibly in a thread that
    holds prometheus_client's own lock (in multiprocess mode one non-reentrant lock
    guards every value), so the callback only queues each pause; :meth:`observe_queued`
    moves them into the histogram from ordinary code.
    """

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram
        self._started: float | None = None
        # Bounded: a worker that answers nothing for a long while keeps the newest only.
        self._queued: collections.deque[tuple[int, float]] = collections.deque(maxlen=10_000)

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        # Collections never overlap (the collecting thread holds the interpreter lock).
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            self._queued.append((info["generation"], time.perf_counter() - self._started))

    def observe_queued(self) -> None:
        """Observe the pauses queued since the last call."""
        while True:
            try:
                generation, seconds = self._queued.popleft()
            except IndexError:  # empty, or another thread took the last one
                return
            self._histogram.labels(str(generation)).observe(seconds)


class AppMetrics:
    """The service's metrics: what the request path records, and what ``/metrics`` renders.

    :attr:`observer` goes to the feed service and the event recorder; the HTTP layer
    calls the other methods. In one process the metrics live in a registry of this
    object (several apps may share a process, in tests); with
    ``PROMETHEUS_MULTIPROC_DIR`` set, :meth:`render` reads every worker's files.
    """

    def __init__(self) -> None:
        # The text format would add a `_created` gauge family per counter and histogram
        # in one process, and never in multiprocess mode: leave them out in both.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream
        self._registry = CollectorRegistry(auto_describe=True)
        metrics = _Metrics(self._registry)
        self.observer: FeedObserver = _PrometheusObserver(metrics)
        """The feed service's and the event recorder's observer."""
        self._requests = metrics.counter("reelrank_http_requests_total")
        self._latency = metrics.histogram(
            "reelrank_http_request_duration_seconds", _LATENCY_BUCKETS
        )
        self.in_flight = metrics.gauge("reelrank_http_requests_in_flight")
        """Requests being handled by this process."""
        self._rate_limited = metrics.counter("reelrank_http_rate_limited_total")
        self._pages = metrics.counter("reelrank_feed_pages_total")
        self._ended_pages = metrics.counter("reelrank_feed_ended_pages_total")
        self._match_reuse = metrics.counter("reelrank_search_match_reuse_total")
        self._events = metrics.counter("reelrank_events_total")
        self._replays = metrics.counter("reelrank_idempotent_replays_total")
        self._readiness = metrics.counter("reelrank_readiness_checks_total")
        self._warming_progress = metrics.gauge("reelrank_warming_progress_ratio")
        self._startup = metrics.gauge("reelrank_startup_complete")
        self._collections = _CollectionTimer(
            metrics.histogram("reelrank_gc_pause_seconds", _GC_BUCKETS)
        )
        metrics.gauge("reelrank_build_info").labels(__version__).set(1)
        self._local = CollectorRegistry(auto_describe=False)
        self._local.register(_Exposition(self._registry))
        _register_process_collectors(self._local)

    # -- recorded by the HTTP layer -------------------------------------------------------

    def request_answered(
        self, method: str, route: str, status: int, seconds: float, cache: str = "none"
    ) -> None:
        """One request answered; ``route`` is its URL rule pattern, ``cache`` whether a
        feed page was a cache ``hit`` or ``miss`` (``none`` for other responses)."""
        code = str(status)
        self._collections.observe_queued()
        self._requests.labels(method, route, code).inc()
        self._latency.labels(method, route, code, cache).observe(seconds)
        if status == 429:
            self._rate_limited.labels(route).inc()

    def search_matches(self, reused: bool) -> None:
        """A search's text matches were reused from memory, or read from the index."""
        self._match_reuse.labels("hit" if reused else "miss").inc()

    def feed_page(self, from_cache: bool, *, end_of_feed: bool = False) -> None:
        """A feed page was served; ``end_of_feed`` when it has no items and no cursor."""
        self._pages.labels("cache" if from_cache else "ranked").inc()
        if from_cache and end_of_feed:
            self._ended_pages.inc()

    def feed_unavailable(self, dependency: str) -> None:
        """A feed request was answered 503 for a store failing outside the feed service."""
        self.observer.feed_unavailable(dependency)

    def event(self, kind: str, outcome: str) -> None:
        """An event request ended: ``recorded``, ``duplicate``, ``rejected`` or ``failed``."""
        self._events.labels(kind, outcome).inc()

    def idempotent_replay(self, route: str) -> None:
        """A retried Idempotency-Key was answered from the stored answer."""
        self._replays.labels(route).inc()

    def readiness_check(self, dependency: str, ok: bool) -> None:
        """``/healthz/ready`` checked one dependency."""
        self._readiness.labels(dependency, "ok" if ok else "failed").inc()

    # -- garbage collections --------------------------------------------------------------

    def time_garbage_collections(self) -> Callable[[], None]:
        """Time every garbage collection of this process into
        ``reelrank_gc_pause_seconds``, until the returned function is called.

        Once per process (``gc.callbacks`` is process-wide). A pause is observed when
        this process next answers a request or renders ``/metrics``.
        """
        gc.callbacks.append(self._collections)

        def stop() -> None:
            gc.callbacks.remove(self._collections)

        return stop

    # -- start-up -------------------------------------------------------------------------

    def warming_progress(self, ratio: float) -> None:
        """How much of the start-up warming is done, from 0 to 1."""
        self._warming_progress.set(min(max(ratio, 0.0), 1.0))

    def startup_complete(self) -> None:
        """Kernels loaded and the cache warmed: this process has started."""
        self._warming_progress.set(1)
        self._startup.set(1)

    # -- scraping -------------------------------------------------------------------------

    content_type = CONTENT_TYPE_LATEST
    """The content type of :meth:`render`'s output."""

    def render(self) -> bytes:
        """The text exposition of every family: the whole pod's in multiprocess mode."""
        self._collections.observe_queued()
        directory = os.environ.get(MULTIPROCESS_DIR_ENV)
        if not directory:
            return generate_latest(self._local)
        pod = CollectorRegistry(auto_describe=False)
        files = MultiProcessCollector(None, directory)  # type: ignore[no-untyped-call]
        pod.register(_Exposition(files))
        _register_process_collectors(pod)
        return generate_latest(pod)


def _register_process_collectors(registry: CollectorRegistry) -> None:
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
