"""The feed service's observer: what an application hears about serving, for its metrics.

The core counts nothing on behalf of a monitoring system; it tells a
:class:`FeedObserver` what happened and the application turns that into metrics (the
example service writes Prometheus metrics from it). Without an observer nothing is
timed and nothing is called, so the request path pays nothing for it.
"""

from __future__ import annotations

from typing import Literal

from ._refill import RefillOutcome
from ._resilience import BreakerState, StoreCallOutcome

__all__ = [
    "CacheLookupResult",
    "CacheMissReason",
    "FeedObserver",
    "RefillOutcome",
    "StoreCallOutcome",
]

CacheLookupResult = Literal["hit", "miss", "error"]
"""What one key looked up in one feed cache level found."""

CacheMissReason = Literal[
    "absent", "used_up", "ran_out", "expired", "config_changed", "cache_failed"
]
"""Why a feed page was ranked for its request instead of cut from a cached snapshot:
``absent`` (no snapshot cached: never warmed, evicted, or no cache), ``used_up`` (the
snapshot, ``snapshot_size`` items, had no unseen item left after the page's start),
``ran_out`` (the same for a shorter snapshot: it held every unseen candidate the user
had when it was ranked), ``expired`` (older than
``snapshot_ttl_seconds``, still held by a faster level), ``config_changed`` (ranked
under another ranking config), ``cache_failed`` (the cache lookup failed)."""


class FeedObserver:
    """Receives what a :class:`~reelrank.FeedRankingService` (and an
    :class:`~reelrank.EngagementRecorder`) does; every method is a no-op here.

    Subclass it and override the methods you need, then pass the instance as
    ``observer=``. A service given no observer, or an instance of this class itself,
    times nothing and calls nothing.

    Methods are called synchronously on the thread doing the work: a request's thread,
    the background thread that refreshes the candidate pool, a thread refilling ahead,
    or the thread that warms the cache. They must be thread-safe, quick, and must not
    raise: an exception propagates into the request. :meth:`breaker_state_changed` is
    called while the breaker's lock is held, so that changes arrive in order; it must
    not call the breaker.
    """

    __slots__ = ()

    def store_call(
        self, store: str, operation: str, seconds: float, outcome: StoreCallOutcome
    ) -> None:
        """One store call ended.

        Args:
            store: the dependency: ``catalog``, ``events``, ``seen``, ``models`` or
                ``cache`` for the feed service; ``catalog``, ``events``, ``log`` or
                ``seen`` for the recorder.
            operation: the store method called (``recent_videos``, ``take_unseen``...);
                warming's batches are named ``bulk_<what>``.
            seconds: how long the caller waited for it (about ``0`` when ``rejected``).
            outcome: see :data:`StoreCallOutcome`.
        """

    def degraded(self, dependency: str, fallback: str) -> None:
        """A page was served while ``dependency`` failed, working around it by ``fallback``.

        Called once per entry of the page's :attr:`FeedPage.degraded
        <reelrank.FeedPage.degraded>`, after the page is cut.
        """

    def feed_unavailable(self, dependency: str) -> None:
        """A feed request failed with :class:`~reelrank.FeedUnavailableError` because
        ``dependency`` (the catalog) failed and nothing could stand in for it."""

    def cache_lookups(self, level: int, result: CacheLookupResult, count: int) -> None:
        """``count`` keys looked up in cache level ``level`` (``0`` is the fastest) had
        ``result``.

        A lookup that a faster level answers never reaches the slower ones, as in
        :attr:`TieredFeedCache.level_stats <reelrank.TieredFeedCache.level_stats>`;
        remembered pages of retried cursors are not counted.
        """

    def cache_missed(self, reason: CacheMissReason) -> None:
        """A feed page was ranked for its request because no cached snapshot could serve
        it, for ``reason`` (see :data:`CacheMissReason`); called once per such page,
        after its snapshot was ranked. Retried cursors' remembered pages are not misses,
        nor pages cut from a snapshot held while the catalog failed."""

    def refill_ended(self, outcome: RefillOutcome) -> None:
        """A refill ahead (see :attr:`FeedServiceConfig.refill_ahead_items
        <reelrank.FeedServiceConfig.refill_ahead_items>`) ended with ``outcome`` (see
        :data:`RefillOutcome`); called on the refill's thread, or on the request's
        thread for a dropped one."""

    def snapshot_built(self, seconds: float, size: int) -> None:
        """A snapshot of ``size`` items was ranked, diversified and packed in ``seconds``
        (for a request or for warming; the store reads before it are not included)."""

    def kernel_run(self, kernel: str, seconds: float) -> None:
        """A compiled kernel ran: ``rank`` (scoring and top-k) or ``diversity`` (the
        re-rank), including its Python caller."""

    def candidate_pool_refreshed(self, size: int, age_seconds: float) -> None:
        """The shared candidate pool was fetched again and holds ``size`` candidates.

        ``age_seconds`` is how old its candidates are: ``0`` after a successful fetch;
        when the catalog failed and the last known candidates were kept, the time since
        they were fetched.
        """

    def users_warmed(self, warmed: int, failed: int, skipped: int) -> None:
        """One :meth:`FeedRankingService.warm <reelrank.FeedRankingService.warm>` call
        ended: ``warmed`` snapshots stored, ``failed`` users whose snapshot could not be
        ranked or stored, ``skipped`` users who already had a live one."""

    def breaker_state_changed(self, dependency: str, state: BreakerState) -> None:
        """The circuit breaker of ``dependency`` moved to ``state``.

        Also called once per dependency with :attr:`BreakerState.CLOSED` when the
        service is built. An open breaker is reported half-open when the first call
        after its reset timeout claims the trial, not when the timeout passes.
        """


def active(observer: FeedObserver | None) -> FeedObserver | None:
    """``observer``, or ``None`` when it would only call no-ops (so nothing is timed)."""
    if observer is None or type(observer) is FeedObserver:
        return None
    return observer
