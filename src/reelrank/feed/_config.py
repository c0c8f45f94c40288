"""Settings and counters of the feed service."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pydantic import Field, SecretStr

from ..models._base import StrictModel
from ..scoring._config import RankingConfig
from ..scoring._diversity import DiversityRule
from ..stores._cache import CacheStats
from ._resilience import DependencyStats

__all__ = [
    "FeedServiceConfig",
    "FeedServiceStats",
    "StoreDeadlines",
    "VariantResolver",
]

VariantResolver = Callable[[int], tuple[str | None, RankingConfig]]
"""Chooses a user's experiment variant: ``user_id -> (variant name or None, config)``."""


class StoreDeadlines(StrictModel):
    """How long a feed request waits for each store before working around it (seconds).

    These deadlines bound the calls that run on worker threads. A store called inline
    (see :attr:`FeedServiceConfig.inline_self_bounded_stores`) is bounded by itself
    instead: for the Redis stores, by their client's socket timeout.
    """

    catalog: float = Field(default=0.25, gt=0.0, allow_inf_nan=False)
    """Deadline of catalog calls (candidate lists and video lookups)."""
    events: float = Field(default=0.1, gt=0.0, allow_inf_nan=False)
    """Deadline of event-store calls (stats, affinities, popular videos)."""
    seen: float = Field(default=0.05, gt=0.0, allow_inf_nan=False)
    """Deadline of seen-store calls (filtering and marking served items)."""
    models: float = Field(default=0.1, gt=0.0, allow_inf_nan=False)
    """Deadline of model-registry calls (model scores)."""
    cache: float = Field(default=0.05, gt=0.0, allow_inf_nan=False)
    """Deadline of calls to cache levels that can stall (not the in-process LRU level)."""


class FeedServiceConfig(StrictModel):
    """How :class:`FeedRankingService` assembles, caches and pages feeds."""

    snapshot_ttl_seconds: float = Field(default=3600.0, gt=0.0, allow_inf_nan=False)
    """How long a ranked snapshot is served from the cache before it is ranked again."""
    degraded_snapshot_ttl_seconds: float = Field(default=60.0, gt=0.0, allow_inf_nan=False)
    """Cache lifetime of a snapshot ranked while a dependency was failing, so the feed
    recovers soon after the dependency does."""
    snapshot_size: int = Field(default=200, ge=1, le=100_000)
    """How many ranked items one snapshot holds; pages are cut from it."""
    refill_ahead_items: int = Field(default=0, ge=0, le=100_000)
    """When a page cut from a cached full snapshot (``snapshot_size`` items) leaves fewer
    than this many items after it, the user's next snapshot is ranked in the background
    once the page is marked seen and replaces the current one in the cache, so the page
    that would have used it up is served from the cache instead of being ranked for the
    request. ``0`` (the default) never refills ahead. Items left are counted up to the
    page's next position, seen or not; they are not lost: the next snapshot ranks them
    again among every other unseen candidate."""
    refill_threads: int = Field(default=1, ge=1, le=64)
    """Threads ranking refills ahead (started with the first refill); a ranking holds
    the interpreter lock for most of its run, so more than one or two threads per
    process only queue behind each other."""
    refill_queue_max: int = Field(default=64, ge=1, le=100_000)
    """Most refills ahead waiting for a thread; further ones are dropped (those users'
    next page is ranked for the request, as without refilling), so a burst never queues
    work without bound. At most one refill per user and variant waits or runs at once."""
    refill_deadline_seconds: float = Field(default=1.0, gt=0.0, le=60.0, allow_inf_nan=False)
    """Deadline of each store call a refill ahead makes, in place of :attr:`deadlines`.
    A refill runs off the request path, so it may wait longer than a request would: a
    store that answers a little past a request's deadline when cores are busy still lets
    the next snapshot be stored (a refill whose read timed out is degraded, and not
    stored). Its calls go through the same circuit breakers and bulkheads as requests',
    and a store that timed out is not called again in the same refill, so a hung store
    holds a refill thread for about this long per store read, not forever. The default,
    1 s, is four to twenty times the default request deadlines and a tenth of
    :attr:`warm_deadline_seconds` (a batch of many users' reads)."""
    hold_ran_out_feeds: bool = False
    """Answer a user who was shown every item of a snapshot shorter than
    ``snapshot_size`` (it held every unseen candidate they had) with the end of the feed
    from the cache, without ranking again, while the snapshot is younger than the
    process's candidate pool: ranking over the same pool would find nothing new. Videos
    that creators the user follows published since reach them with the pool's next
    fetch, at most ``candidate_pool_ttl_seconds`` later. ``False`` ranks again on every
    such request."""
    recent_limit: int = Field(default=500, ge=0, le=1_000_000)
    """Candidates taken from the newest ready videos."""
    popular_limit: int = Field(default=500, ge=0, le=1_000_000)
    """Candidates taken from the most viewed videos."""
    followed_limit: int = Field(default=200, ge=0, le=1_000_000)
    """Candidates taken from the newest videos of creators the user follows."""
    candidate_pool_ttl_seconds: float = Field(default=10.0, gt=0.0, allow_inf_nan=False)
    """How long the shared candidate pool (recent and popular videos with their stats and
    model scores, the same for every user) is reused before it is fetched again."""
    parallel_user_reads: bool = True
    """On a cache miss, read the user's recently seen videos and affinities for the
    shared pool's creators while the followed creators' videos are read, instead of one
    after the other. A miss then waits for its slowest read rather than their sum, and
    holds up to three store connections at once instead of one: size connection pools
    for that, or set ``False``. Either way the snapshot is the same."""
    affinity_reuse_seconds: float = Field(default=0.0, ge=0.0, le=3600.0, allow_inf_nan=False)
    """How long a user's affinity read (their credit with each creator of the candidate
    pool and of their followed videos) is reused by this process's next rankings of that
    user, requests' and refills' alike, instead of reading the event store again; the
    creators it did not cover are read and added. An event by the user that this
    process records (see :meth:`~reelrank.FeedRankingService.forget_affinities`) drops
    it, so the next ranking reads again; events recorded by other processes reach the
    ranking at most this many seconds late. ``0`` (the default) reads the affinities
    for every ranking."""
    affinity_reuse_max_users: int = Field(default=100_000, ge=1)
    """How many users' affinity reads
    :attr:`~reelrank.FeedServiceConfig.affinity_reuse_seconds` keeps in memory; the
    least recently used are dropped beyond it."""
    seen_lookup_limit: int = Field(default=1000, ge=1, le=1_000_000)
    """How many recently seen ids are read per user; a user with more is filtered by
    asking the seen store about every candidate instead."""
    diversity: DiversityRule = Field(default_factory=DiversityRule)
    """The diversity rule applied to each ranked snapshot."""
    deadlines: StoreDeadlines = Field(default_factory=StoreDeadlines)
    """Per-store deadlines of the calls a feed request makes."""
    warm_deadline_seconds: float = Field(default=10.0, gt=0.0, allow_inf_nan=False)
    """Deadline of each bulk store call made by :meth:`FeedRankingService.warm` (the
    first candidate pool it builds included), by
    :meth:`FeedRankingService.refresh_candidates` and by the background refresh of the
    candidate pool (``refresh_pool_in_background``)."""
    breaker_failure_threshold: int = Field(default=5, ge=1)
    """Consecutive failures or timeouts of a store that open its circuit breaker."""
    breaker_reset_timeout_seconds: float = Field(default=10.0, gt=0.0, allow_inf_nan=False)
    """How long an open circuit stays open before one trial call tests the store."""
    max_stalled_calls: int = Field(default=4, ge=1, le=1024)
    """Most calls to one store that may still be running past their deadline; while that
    many are stuck, further calls to the store are refused at once, so a hanging store
    ties up a bounded number of worker threads."""
    served_marks_max_users: int = Field(default=100_000, ge=1)
    """How many users' serving positions are remembered in memory: the fallback filter
    while the seen store is unavailable (pages continue after what this process
    served)."""
    remembered_pages_max: int = Field(default=100_000, ge=1)
    """How many pages served for a cursor are remembered in memory, so a retried cursor
    gets the same page back; the shared cache level keeps them too, for the other
    processes and after they are forgotten here."""
    worker_threads: int = Field(default=32, ge=1, le=4096)
    """Worker threads for healthy store calls (threads held by stalled calls come on
    top); calls beyond them wait for a free thread within their deadline."""
    cursor_secret: SecretStr | None = Field(default=None, min_length=16)
    """Key that signs page cursors (at least 16 characters). Every process serving the
    same users must share it; ``None`` draws a random key per service instance."""
    cursor_max_age_seconds: float = Field(default=21_600.0, gt=0.0, allow_inf_nan=False)
    """How long a page cursor stays valid after it was issued."""
    refresh_pool_in_background: bool = True
    """Fetch a stale candidate pool on a background thread while requests keep using the
    previous one, so no request waits for it; its store calls wait up to
    ``warm_deadline_seconds``, as a batch job's. ``False`` makes the request that finds
    the pool stale fetch it, under the request deadlines (tests use this for
    determinism)."""
    take_pages_in_one_call: bool = True
    """Serve a page cut from a cached snapshot with one seen-store call when the seen
    store is a :class:`~reelrank.PageTakingSeenStore` that reaches the shared cache
    level (the Redis adapter's seen store on the feed cache's client): the remembered
    page's lookup, the seen filter and mark, and the page's record in one round trip
    instead of three. ``False`` keeps the three calls."""
    inline_self_bounded_stores: bool = True
    """Call stores that bound their own calls on the request's own thread: the embedded
    in-memory stores (no I/O, they cannot stall) and stores whose class declares a
    ``bounds_own_calls`` attribute that is true on the instance (the Redis stores, whose
    clients have short socket timeouts). A worker thread would only add scheduling
    latency. Such a store's deadline is its own bound, not :attr:`deadlines`; the
    breaker still counts its failures and timeouts. Every other store runs on a worker
    thread under its deadline (an :class:`LRUFeedCache` level is always called
    directly)."""
    model_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    """Model whose active version supplies the deep-learning scores; ``None`` for none."""


@dataclass(frozen=True, slots=True)
class FeedServiceStats:
    """Counters of a :class:`FeedRankingService` since it started."""

    pages: int
    """Pages served by :meth:`FeedRankingService.feed`."""
    pages_from_cache: int
    """Pages cut from a cached snapshot."""
    pages_replayed: int
    """Pages of a retried cursor, served again as remembered (counted in ``pages`` too)."""
    snapshots_ranked: int
    """Snapshots ranked, by requests and by warming."""
    degraded_pages: int
    """Pages served while at least one dependency was failing."""
    cache_levels: tuple[CacheStats, ...]
    """Hit and miss counts of each cache level, fastest first (empty without a cache)."""
    dependencies: Mapping[str, DependencyStats]
    """Call, failure, timeout and refusal counts of each store."""
