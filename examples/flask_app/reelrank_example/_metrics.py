"""Prometheus metrics: feed cache and store counters read at scrape time, request latency."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from reelrank import FeedRankingService

__all__ = ["AppMetrics"]

# Feed requests take about a millisecond when the snapshot is cached and tens of
# milliseconds when a page is ranked; the buckets resolve both.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _FeedServiceCollector:
    """Turns :meth:`FeedRankingService.stats` into metric families on every scrape.

    The service already counts everything; reading its counters when Prometheus asks
    keeps the request path free of metric updates.
    """

    def __init__(self, feed: FeedRankingService) -> None:
        self._feed = feed

    def collect(self) -> Iterator[Metric]:
        stats = self._feed.stats()
        yield CounterMetricFamily("reelrank_feed_pages", "Feed pages served.", value=stats.pages)
        yield CounterMetricFamily(
            "reelrank_feed_pages_from_cache",
            "Feed pages cut from a cached snapshot.",
            value=stats.pages_from_cache,
        )
        yield CounterMetricFamily(
            "reelrank_feed_degraded_pages",
            "Feed pages served while a dependency was failing.",
            value=stats.degraded_pages,
        )
        yield CounterMetricFamily(
            "reelrank_feed_snapshots_ranked",
            "Feed snapshots ranked.",
            value=stats.snapshots_ranked,
        )
        lookups = {
            "hits": CounterMetricFamily(
                "reelrank_feed_cache_hits",
                "Feed cache lookups answered, by level (0 is the fastest).",
                labels=["level"],
            ),
            "misses": CounterMetricFamily(
                "reelrank_feed_cache_misses",
                "Feed cache lookups that found nothing, by level.",
                labels=["level"],
            ),
            "errors": CounterMetricFamily(
                "reelrank_feed_cache_errors",
                "Feed cache lookups that failed, by level.",
                labels=["level"],
            ),
        }
        hit_rate = GaugeMetricFamily(
            "reelrank_feed_cache_hit_rate",
            "Hits over lookups of each feed cache level since start (0 before any lookup).",
            labels=["level"],
        )
        for index, level in enumerate(stats.cache_levels):
            label = [str(index)]
            lookups["hits"].add_metric(label, level.hits)
            lookups["misses"].add_metric(label, level.misses)
            lookups["errors"].add_metric(label, level.errors)
            hit_rate.add_metric(label, level.hit_rate)
        yield from lookups.values()
        yield hit_rate
        calls = CounterMetricFamily(
            "reelrank_store_calls",
            "Store calls made by the feed service, by store and outcome.",
            labels=["store", "outcome"],
        )
        for store, counts in sorted(stats.dependencies.items()):
            calls.add_metric([store, "attempted"], counts.calls)
            calls.add_metric([store, "failed"], counts.failures)
            calls.add_metric([store, "timed_out"], counts.timeouts)
            calls.add_metric([store, "rejected"], counts.rejected)
        yield calls


class AppMetrics:
    """The metrics of one app, in a registry of its own (several apps may share a process)."""

    def __init__(self, feed: FeedRankingService) -> None:
        self.registry = CollectorRegistry()
        """Registry :func:`prometheus_client.generate_latest` renders for ``/metrics``."""
        self.registry.register(_FeedServiceCollector(feed))
        self.latency = Histogram(
            "reelrank_http_request_duration_seconds",
            "Time from receiving a request to returning its response.",
            labelnames=("method", "route", "status"),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        """Request latency by method, route pattern and status code."""
