"""The feed service: cache-first feed pages with cursors, seen filtering and degradation.

See *Serving feeds* in the documentation for the lifecycle of a request, the cursor,
the cache semantics and the order in which failed dependencies are worked around.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import Field, SecretStr

from ..exceptions import FeedUnavailableError, InvalidInputError, StoreError
from ..models._base import WEIGHT_FIELDS, StrictModel
from ..models._catalog import ProcessingState, Video
from ..models._engagement import VideoStats
from ..models._feed import DegradedDependency, FeedItem, FeedPage, FeedSnapshot
from ..scoring._config import RankingConfig
from ..scoring._diversity import NO_SOUND, DiversityRule
from ..scoring._ranker import Candidates, Ranker
from ..stores._cache import CacheStats, LRUFeedCache, TieredFeedCache
from ..stores._protocols import (
    AtomicSeenStore,
    Catalog,
    EventStore,
    FeedCache,
    FeedKey,
    ModelRegistry,
    SeenStore,
    bounds_own_calls,
    is_in_process,
)
from ..validation import check_id, check_variant, utc_now
from ._cursor import CursorCodec, CursorState
from ._resilience import CircuitBreaker, DependencyGuard, DependencyStats, WorkerPool, request_scope

__all__ = [
    "FeedRankingService",
    "FeedServiceConfig",
    "FeedServiceStats",
    "StoreDeadlines",
    "VariantResolver",
]


VariantResolver = Callable[[int], tuple[str | None, RankingConfig]]
"""Chooses a user's experiment variant: ``user_id -> (variant name or None, config)``."""


_DEPENDENCIES = ("catalog", "events", "seen", "models", "cache")


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
    recent_limit: int = Field(default=500, ge=0, le=1_000_000)
    """Candidates taken from the newest ready videos."""
    popular_limit: int = Field(default=500, ge=0, le=1_000_000)
    """Candidates taken from the most viewed videos."""
    followed_limit: int = Field(default=200, ge=0, le=1_000_000)
    """Candidates taken from the newest videos of creators the user follows."""
    candidate_pool_ttl_seconds: float = Field(default=10.0, gt=0.0, allow_inf_nan=False)
    """How long the shared candidate pool (recent and popular videos with their stats and
    model scores, the same for every user) is reused before it is fetched again."""
    seen_lookup_limit: int = Field(default=1000, ge=1, le=1_000_000)
    """How many recently seen ids are read per user; a user with more is filtered by
    asking the seen store about every candidate instead."""
    diversity: DiversityRule = Field(default_factory=DiversityRule)
    """The diversity rule applied to each ranked snapshot."""
    deadlines: StoreDeadlines = Field(default_factory=StoreDeadlines)
    """Per-store deadlines of the calls a feed request makes."""
    warm_deadline_seconds: float = Field(default=10.0, gt=0.0, allow_inf_nan=False)
    """Deadline of each bulk store call made by :meth:`FeedRankingService.warm`."""
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
    previous one, so no request waits for it. ``False`` makes the request that finds the
    pool stale fetch it (tests use this for determinism)."""
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
    snapshots_ranked: int
    """Snapshots ranked, by requests and by warming."""
    degraded_pages: int
    """Pages served while at least one dependency was failing."""
    cache_levels: tuple[CacheStats, ...]
    """Hit and miss counts of each cache level, fastest first (empty without a cache)."""
    dependencies: Mapping[str, DependencyStats]
    """Call, failure, timeout and refusal counts of each store."""


class _GuardedFeedCache:
    """A :class:`FeedCache` whose calls run under a dependency guard."""

    def __init__(self, inner: FeedCache, guard: DependencyGuard) -> None:
        self._inner = inner
        self._guard = guard

    def get(self, user_id: int, variant: str | None = None) -> FeedSnapshot | None:
        return self._guard.call(self._inner.get, user_id, variant)

    def get_many(self, keys: Sequence[FeedKey]) -> dict[FeedKey, FeedSnapshot]:
        return self._guard.call(self._inner.get_many, keys)

    def put(self, snapshot: FeedSnapshot, *, ttl_seconds: float) -> None:
        self._guard.call(self._inner.put, snapshot, ttl_seconds=ttl_seconds)

    def put_many(self, snapshots: Sequence[FeedSnapshot], *, ttl_seconds: float) -> None:
        self._guard.call(self._inner.put_many, snapshots, ttl_seconds=ttl_seconds)

    def delete(self, user_id: int, variant: str | None = None) -> bool:
        return self._guard.call(self._inner.delete, user_id, variant)

    def invalidate_user(self, user_id: int) -> int:
        return self._guard.call(self._inner.invalidate_user, user_id)


def _called_directly(level: FeedCache, config: FeedServiceConfig) -> bool:
    """Whether a cache level is called without its guard: an in-process LRU level always,
    other in-process levels when stores that bound their own calls run inline."""
    return isinstance(level, LRUFeedCache) or (
        config.inline_self_bounded_stores and is_in_process(level)
    )


def _inline(name: str, store: Any, config: FeedServiceConfig) -> bool:
    """Whether the guard of store ``name`` calls it on the request's thread.

    For the cache, that is the levels it guards (see :func:`_called_directly`): they
    run inline only if every one of them bounds its own calls.
    """
    if not config.inline_self_bounded_stores or store is None:
        return False
    if name != "cache":
        return bounds_own_calls(store)
    levels = store.levels if isinstance(store, TieredFeedCache) else (store,)
    guarded = [level for level in levels if not _called_directly(level, config)]
    return all(bounds_own_calls(level) for level in guarded)


@dataclass(frozen=True, slots=True)
class _Columns:
    """Candidate columns, aligned by row."""

    video_ids: npt.NDArray[np.int64]
    creator_ids: npt.NDArray[np.int64]
    sound_ids: npt.NDArray[np.int64]
    published_at: npt.NDArray[np.float64]
    counts: npt.NDArray[np.float64]
    """``(5, n)``: views, completion_sum, likes, shares, comments."""
    dl_scores: npt.NDArray[np.float64]

    @classmethod
    def empty(cls) -> _Columns:
        return cls(
            video_ids=np.empty(0, dtype=np.int64),
            creator_ids=np.empty(0, dtype=np.int64),
            sound_ids=np.empty(0, dtype=np.int64),
            published_at=np.empty(0, dtype=np.float64),
            counts=np.empty((5, 0), dtype=np.float64),
            dl_scores=np.empty(0, dtype=np.float64),
        )

    def __len__(self) -> int:
        return int(self.video_ids.shape[0])

    def concat(self, other: _Columns) -> _Columns:
        if not len(other):
            return self
        return _Columns(
            video_ids=np.concatenate([self.video_ids, other.video_ids]),
            creator_ids=np.concatenate([self.creator_ids, other.creator_ids]),
            sound_ids=np.concatenate([self.sound_ids, other.sound_ids]),
            published_at=np.concatenate([self.published_at, other.published_at]),
            counts=np.concatenate([self.counts, other.counts], axis=1),
            dl_scores=np.concatenate([self.dl_scores, other.dl_scores]),
        )

    def candidates(self) -> Candidates:
        views, completion_sum, likes, shares, comments = self.counts
        return Candidates.from_arrays(
            video_id=self.video_ids,
            creator_id=self.creator_ids,
            published_at=self.published_at,
            views=views,
            completion_sum=completion_sum,
            likes=likes,
            shares=shares,
            comments=comments,
            dl_score=self.dl_scores,
        )


def _video_columns(
    videos: Sequence[Video],
    stats: Mapping[int, VideoStats] | None,
    dl_scores: Mapping[int, float] | None,
) -> _Columns:
    n = len(videos)
    video_ids = np.fromiter((v.video_id for v in videos), dtype=np.int64, count=n)
    creator_ids = np.fromiter((v.creator_id for v in videos), dtype=np.int64, count=n)
    sound_ids = np.fromiter(
        (NO_SOUND if v.sound_id is None else v.sound_id for v in videos), dtype=np.int64, count=n
    )
    published_at = np.fromiter((v.published_at.timestamp() for v in videos), float, count=n)
    counts = np.zeros((5, n), dtype=np.float64)
    if stats:
        for row, video_id in enumerate(video_ids.tolist()):
            s = stats.get(video_id)
            if s is not None:
                counts[:, row] = (s.views, s.completion_sum, s.likes, s.shares, s.comments)
    dl = np.full(n, np.nan, dtype=np.float64)
    if dl_scores:
        for row, video_id in enumerate(video_ids.tolist()):
            score = dl_scores.get(video_id)
            if score is not None:
                dl[row] = score
    return _Columns(video_ids, creator_ids, sound_ids, published_at, counts, dl)


@dataclass(frozen=True, slots=True)
class _CandidatePool:
    """The user-independent part of every ranking: recent and popular candidates."""

    columns: _Columns
    candidates: Candidates
    row_of: dict[int, int]
    creators: list[int]
    lost_signals: frozenset[str]
    degraded: tuple[DegradedDependency, ...]
    built_at: float


@dataclass(slots=True)
class _Request:
    """What one feed request learned about its dependencies."""

    degraded: list[DegradedDependency] = field(default_factory=list)

    def report(self, dependency: str, fallback: str) -> None:
        entry = DegradedDependency(dependency=dependency, fallback=fallback)
        if entry not in self.degraded:
            self.degraded.append(entry)

    @property
    def is_degraded(self) -> bool:
        return bool(self.degraded)


class _ServedMarks:
    """How far into its current snapshot each ``(user, variant)`` was served here.

    Everything before the mark was served or skipped as seen. While the seen store is
    unavailable this is what the process still knows: pages continue after the mark,
    and a re-ranking leaves out the ids before it. Bounded: the least recently served
    keys are forgotten first.
    """

    def __init__(self, max_keys: int) -> None:
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._marks: OrderedDict[FeedKey, tuple[str, int]] = OrderedDict()

    def position(self, key: FeedKey, snapshot_id: str) -> int:
        with self._lock:
            mark = self._marks.get(key)
        return mark[1] if mark is not None and mark[0] == snapshot_id else 0

    def advance(self, key: FeedKey, snapshot_id: str, position: int) -> None:
        with self._lock:
            mark = self._marks.get(key)
            if mark is not None and mark[0] == snapshot_id:
                position = max(position, mark[1])
            self._marks[key] = (snapshot_id, position)
            self._marks.move_to_end(key)
            while len(self._marks) > self._max_keys:
                self._marks.popitem(last=False)

    def served_ids(self, snapshot: FeedSnapshot) -> list[int]:
        """Ids of ``snapshot`` before its mark (none if the mark is for another one)."""
        position = self.position(snapshot.key, _snapshot_id(snapshot))
        return list(snapshot.video_ids[:position])


@dataclass(frozen=True, slots=True)
class _Extras:
    """Followed videos outside the shared pool, for a batch of users."""

    columns: _Columns
    rows_of_user: dict[int, list[int]]
    """Each user's rows in ``columns``."""


class _CatalogUnavailableError(Exception):
    """The catalog failed: serve a cached snapshot if there is one.

    Raised when no earlier candidate pool exists (``pool_available`` is false), or
    when the request holds a cached snapshot, which is preferred to a ranking from
    incomplete candidates.
    """

    def __init__(self, *, pool_available: bool) -> None:
        super().__init__("catalog unavailable")
        self.pool_available = pool_available


@lru_cache(maxsize=256)
def _config_tag(config: RankingConfig) -> str:
    digest = hashlib.sha256(config.model_dump_json().encode()).hexdigest()
    return f"cfg-{digest[:16]}"


@lru_cache(maxsize=256)
def _ranker(config: RankingConfig, lost_signals: frozenset[str]) -> Ranker:
    """A ranker for ``config`` with the lost signals' weights spread over the others."""
    if not lost_signals:
        return Ranker(config)
    kept = {name: getattr(config, name) for name in WEIGHT_FIELDS if name not in lost_signals}
    total = sum(kept.values())
    if total <= 0.0:
        # Nothing left to renormalise onto: the lost signals fall back to their priors.
        return Ranker(config)
    weights = {name: kept.get(name, 0.0) / total for name in WEIGHT_FIELDS}
    return Ranker(config.model_copy(update=weights))


def _snapshot_id(snapshot: FeedSnapshot) -> str:
    ids = np.asarray(snapshot.video_ids, dtype=np.int64)
    created_us = round(snapshot.created_at.timestamp() * 1e6)
    return f"{created_us:x}-{zlib.crc32(ids.tobytes()):08x}-{snapshot.config_tag}"


def _cut(
    ids: Sequence[int],
    offset: int,
    limit: int,
    seen_among: Callable[[Sequence[int]], set[int]] | None,
) -> tuple[list[int], int]:
    """Rows of the first ``limit`` unseen ids from ``offset``, and where the next page starts.

    The seen store is asked about a window of ids at a time, twice the page size or 32
    (whichever is larger), so a page costs one lookup unless most ids were seen.
    """
    picked: list[int] = []
    position = offset
    total = len(ids)
    window = max(2 * limit, 32)
    while position < total and len(picked) < limit:
        chunk = ids[position : position + window]
        seen = set() if seen_among is None else seen_among(chunk)
        for index, video_id in enumerate(chunk):
            if video_id not in seen:
                picked.append(position + index)
                if len(picked) == limit:
                    return picked, position + index + 1
        position += len(chunk)
    return picked, position


def _take(
    ids: Sequence[int], offset: int, limit: int, take: Callable[[Sequence[int], int], list[int]]
) -> tuple[list[int], int]:
    """Like :func:`_cut`, with ``take(chunk, wanted)`` filtering and marking each window."""
    picked: list[int] = []
    position = offset
    total = len(ids)
    window = max(2 * limit, 32)
    while position < total and len(picked) < limit:
        chunk = ids[position : position + window]
        wanted = limit - len(picked)
        taken = take(chunk, wanted)
        if taken:
            row_of = {video_id: row for row, video_id in enumerate(chunk)}
            picked.extend(position + row_of[video_id] for video_id in taken)
            if len(taken) == wanted:
                return picked, picked[-1] + 1
        position += len(chunk)
    return picked, position


def _check_limit(limit: object, max_page_size: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise InvalidInputError("limit", f"must be an int, got {limit!r}")
    if not 1 <= limit <= max_page_size:
        raise InvalidInputError(
            "limit", f"must be between 1 and max_page_size={max_page_size}, got {limit}"
        )
    return limit


class FeedRankingService:
    """Serves ranked, explained, paged feeds from the stores it is given.

    Args:
        catalog: videos and follows; the source of candidates.
        events: engagement aggregates (stats, affinities, popular videos).
        seen: which videos each user was already shown.
        cache: where ranked snapshots are kept, for example a :class:`TieredFeedCache`
            of an :class:`LRUFeedCache` over a shared level; ``None`` ranks every page.
        models: model registry for deep-learning scores (with ``config.model_name``).
        config: service settings.
        ranking: the ranking config of users without an experiment variant.
        assign_variant: optional hook choosing a user's variant and ranking config; the
            variant is part of the cache key and is reported on each page.
        clock: current time as an aware datetime (default: the system clock).
        monotonic: seconds for the breakers and the candidate pool's lifetime.

    Thread-safe: one instance serves concurrent requests.
    """

    def __init__(
        self,
        *,
        catalog: Catalog,
        events: EventStore,
        seen: SeenStore,
        cache: FeedCache | None = None,
        models: ModelRegistry | None = None,
        config: FeedServiceConfig | None = None,
        ranking: RankingConfig | None = None,
        assign_variant: VariantResolver | None = None,
        clock: Callable[[], datetime] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or FeedServiceConfig()
        self.ranking = ranking or RankingConfig()
        self._catalog = catalog
        self._events = events
        self._seen = seen
        # Checked once: a runtime protocol check costs more than the rest of a page cut.
        self._take_unseen = seen.take_unseen if isinstance(seen, AtomicSeenStore) else None
        self._models = models
        self._assign_variant = assign_variant
        self._clock = clock or utc_now
        self._monotonic = monotonic
        cfg = self.config
        secret = (
            cfg.cursor_secret.get_secret_value().encode()
            if cfg.cursor_secret is not None
            else secrets.token_bytes(32)
        )
        self._cursors = CursorCodec(secret, cfg.cursor_max_age_seconds)
        self._pool = WorkerPool(cfg.worker_threads + cfg.max_stalled_calls * len(_DEPENDENCIES))
        stores: dict[str, object] = {
            "catalog": catalog,
            "events": events,
            "seen": seen,
            "models": models,
            "cache": cache,
        }
        self._guards = {
            name: DependencyGuard(
                name,
                pool=self._pool,
                breaker=CircuitBreaker(
                    name,
                    failure_threshold=cfg.breaker_failure_threshold,
                    reset_timeout_seconds=cfg.breaker_reset_timeout_seconds,
                    clock=monotonic,
                ),
                deadline_seconds=getattr(cfg.deadlines, name),
                max_stalled=cfg.max_stalled_calls,
                inline=_inline(name, stores[name], cfg),
            )
            for name in _DEPENDENCIES
        }
        self._cache_levels_stats: Callable[[], tuple[CacheStats, ...]]
        self._cache = self._guard_cache(cache)
        self._served = _ServedMarks(cfg.served_marks_max_users)
        self._candidate_pool: _CandidatePool | None = None
        self._pool_lock = threading.Lock()
        self._counter_lock = threading.Lock()
        self._pages = self._pages_from_cache = self._ranked = self._degraded_pages = 0

    # -- setup ---------------------------------------------------------------------

    def _guard_cache(self, cache: FeedCache | None) -> FeedCache | None:
        guard = self._guards["cache"]

        def wrap(level: FeedCache) -> FeedCache:
            direct = _called_directly(level, self.config)
            return level if direct else _GuardedFeedCache(level, guard)

        if cache is None:
            self._cache_levels_stats = lambda: ()
            return None
        if isinstance(cache, TieredFeedCache):
            self._cache_levels_stats = lambda: cache.level_stats
            return cache.with_levels(wrap)
        if isinstance(cache, LRUFeedCache):
            self._cache_levels_stats = lambda: (cache.stats,)
            return cache
        # A single level that counts nothing itself: count through a one-level tier.
        tier = TieredFeedCache(cache)
        self._cache_levels_stats = lambda: tier.level_stats
        return tier.with_levels(wrap)

    def close(self) -> None:
        """Stop the service's worker threads; the service cannot serve afterwards."""
        self._pool.shutdown()

    def __enter__(self) -> FeedRankingService:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def breakers(self) -> Mapping[str, CircuitBreaker]:
        """The circuit breaker of each store: catalog, events, seen, models, cache."""
        return {name: guard.breaker for name, guard in self._guards.items()}

    def stats(self) -> FeedServiceStats:
        """Counters of pages, cache levels and store calls so far."""
        with self._counter_lock:
            pages, cached = self._pages, self._pages_from_cache
            ranked, degraded = self._ranked, self._degraded_pages
        return FeedServiceStats(
            pages=pages,
            pages_from_cache=cached,
            snapshots_ranked=ranked,
            degraded_pages=degraded,
            cache_levels=self._cache_levels_stats(),
            dependencies={
                name: DependencyStats(**vars(guard.stats)) for name, guard in self._guards.items()
            },
        )

    def _count(
        self, *, pages: int = 0, cached: int = 0, ranked: int = 0, degraded: int = 0
    ) -> None:
        with self._counter_lock:
            self._pages += pages
            self._pages_from_cache += cached
            self._ranked += ranked
            self._degraded_pages += degraded

    def _variant(self, user_id: int) -> tuple[str | None, RankingConfig]:
        if self._assign_variant is None:
            return None, self.ranking
        variant, ranking = self._assign_variant(user_id)
        if not isinstance(ranking, RankingConfig):
            raise InvalidInputError("assign_variant", "must return (variant, RankingConfig)")
        return check_variant("assign_variant", variant), ranking

    # -- the request path ----------------------------------------------------------

    def feed(self, user_id: int, limit: int = 20, cursor: str | None = None) -> FeedPage:
        """One page of the user's feed, best first.

        Args:
            user_id: the user (a positive int64 id).
            limit: items on the page, ``1 <= limit <= RankingConfig.max_page_size``.
            cursor: ``next_cursor`` of the previous page, or ``None`` for the first.

        Raises:
            InvalidInputError: naming ``user_id`` or ``limit``.
            CursorError: if the cursor is forged, expired or issued to another user.
            FeedUnavailableError: if the catalog is unavailable and no snapshot or
                earlier candidate pool can stand in for it.
        """
        # A store that times out is not asked again during this request.
        with request_scope():
            return self._feed(user_id, limit, cursor)

    def _feed(self, user_id: int, limit: int, cursor: str | None) -> FeedPage:
        check_id("user_id", user_id)
        variant, ranking = self._variant(user_id)
        _check_limit(limit, ranking.max_page_size)
        now = self._clock()
        state = (
            None
            if cursor is None
            else self._cursors.decode(cursor, user_id=str(user_id), now=now.timestamp())
        )
        request = _Request()
        tag = _config_tag(ranking)
        cached = self._cache_get(user_id, variant, request)
        if cached is not None and self._is_current(cached, tag, now):
            page = self._page(cached, state, limit, user_id, ranking, now, request, from_cache=True)
            if page.items:
                self._count(pages=1, cached=1, degraded=request.is_degraded)
                return page
        # When the catalog fails, a snapshot we already have beats a ranking from stale
        # candidates; a used-up snapshot does not.
        try:
            snapshot, degraded_ranking = self._rank_user(
                user_id,
                variant,
                ranking,
                tag,
                now,
                request,
                previous=cached,
                prefer_snapshot=cached is not None,
            )
        except _CatalogUnavailableError as unavailable:
            if cached is not None:
                fallback = _Request(list(request.degraded))
                fallback.report("catalog", "cached snapshot")
                page = self._page(
                    cached, state, limit, user_id, ranking, now, fallback, from_cache=True
                )
                if page.items:
                    self._count(pages=1, cached=1, degraded=1)
                    return page
            if not unavailable.pool_available:
                raise FeedUnavailableError(
                    f"catalog unavailable and no cached feed for user {user_id}"
                ) from None
            try:
                snapshot, degraded_ranking = self._rank_user(
                    user_id,
                    variant,
                    ranking,
                    tag,
                    now,
                    request,
                    previous=cached,
                    prefer_snapshot=False,
                )
            except _CatalogUnavailableError:
                raise FeedUnavailableError(
                    f"catalog unavailable and no cached feed for user {user_id}"
                ) from None
        self._cache_put([snapshot], degraded_ranking, request)
        self._count(ranked=1)
        # A fresh snapshot already leaves out everything seen, so no seen lookup is needed.
        page = self._page(snapshot, None, limit, user_id, ranking, now, request, check_seen=False)
        self._count(pages=1, degraded=request.is_degraded)
        return page

    def _is_current(self, snapshot: FeedSnapshot, tag: str, now: datetime) -> bool:
        # Faster cache levels may keep a promoted copy a little past the shared level's
        # TTL; the snapshot's own age is the authority.
        age = (now - snapshot.created_at).total_seconds()
        return snapshot.config_tag == tag and age < self.config.snapshot_ttl_seconds

    def _page(
        self,
        snapshot: FeedSnapshot,
        state: CursorState | None,
        limit: int,
        user_id: int,
        ranking: RankingConfig,
        now: datetime,
        request: _Request,
        *,
        from_cache: bool = False,
        check_seen: bool = True,
    ) -> FeedPage:
        """Cut ``limit`` unseen items from ``snapshot`` and mark them seen.

        A cursor (``state``) pins one snapshot: the page continues at its offset. For
        any other snapshot (replaced, expired, re-ranked) the page starts at the top and
        the seen filter removes what was already shown.

        Filtering and marking run as one guarded call: one
        :meth:`AtomicSeenStore.take_unseen` per window of ids when the seen store has it,
        else a lookup and a write. If that call fails, the page is cut in snapshot order
        without the filter and marking is tried once more on its own.
        """
        ids = snapshot.video_ids
        snapshot_id = _snapshot_id(snapshot)
        offset = state.offset if state is not None and state.snapshot_id == snapshot_id else 0
        # Everything before this process's mark was served or seen already.
        offset = max(offset, self._served.position(snapshot.key, snapshot_id))
        since = now - timedelta(seconds=ranking.seen_window_seconds)
        guard = self._guards["seen"]

        def seen_among(chunk: Sequence[int]) -> set[int]:
            return self._seen.seen_among(user_id, chunk, since=since)

        def filter_and_mark() -> tuple[list[int], int, bool]:
            take_unseen = self._take_unseen
            if check_seen and take_unseen is not None:

                def take(chunk: Sequence[int], wanted: int) -> list[int]:
                    return take_unseen(user_id, chunk, limit=wanted, since=since, at=now)

                return (*_take(ids, offset, limit, take), True)
            picked, position = _cut(ids, offset, limit, seen_among if check_seen else None)
            try:
                if picked:
                    self._seen.mark_seen(user_id, [ids[row] for row in picked], now)
            except StoreError:
                return picked, position, False
            return picked, position, True

        try:
            picked, position, marked = guard.call(filter_and_mark)
        except StoreError:
            if check_seen:
                request.report("seen", "snapshot order after what this process served")
            picked, position = _cut(ids, offset, limit, None)
            try:
                if picked:
                    guard.call(self._seen.mark_seen, user_id, [ids[row] for row in picked], now)
                marked = True
            except StoreError:
                marked = False
        if not marked:
            request.report("seen", "served items not recorded as seen")
        items = tuple(
            FeedItem.model_construct(
                video_id=ids[row],
                score=snapshot.scores[row],
                breakdown=dict(zip(snapshot.signals, snapshot.contributions[row], strict=True)),
            )
            for row in picked
        )
        self._served.advance(snapshot.key, snapshot_id, position)
        total = len(ids)
        # The last page of a snapshot that ran out of candidates ends the feed; a full
        # snapshot that is used up continues with a freshly ranked one.
        exhausted = position >= total and total < self.config.snapshot_size
        next_cursor = None
        if not exhausted:
            next_cursor = self._cursors.encode(
                CursorState(str(user_id), snapshot_id, position, now.timestamp())
            )
        return FeedPage.model_construct(
            items=items,
            next_cursor=next_cursor,
            from_cache=from_cache,
            degraded=tuple(request.degraded),
            variant=snapshot.variant,
        )

    # -- cache ---------------------------------------------------------------------

    def _cache_get(
        self, user_id: int, variant: str | None, request: _Request
    ) -> FeedSnapshot | None:
        if self._cache is None:
            return None
        try:
            return self._cache.get(user_id, variant)
        except StoreError:
            request.report("cache", "ranked without the cache")
            return None

    def _cache_put(
        self, snapshots: Sequence[FeedSnapshot], degraded: bool, request: _Request
    ) -> bool:
        """Store the snapshots; ``False`` if the cache failed (reported on the request)."""
        if self._cache is None or not snapshots:
            return self._cache is not None
        cfg = self.config
        ttl = cfg.degraded_snapshot_ttl_seconds if degraded else cfg.snapshot_ttl_seconds
        try:
            self._cache.put_many(snapshots, ttl_seconds=min(ttl, cfg.snapshot_ttl_seconds))
        except StoreError:
            request.report("cache", "snapshot not cached")
            return False
        return True

    def invalidate(self, user_id: int) -> int:
        """Drop the user's cached snapshots (every variant) so the next page is re-ranked.

        Already served items are not shown again: they are in the seen store.
        Returns how many live snapshots were dropped.
        """
        check_id("user_id", user_id)
        if self._cache is None:
            return 0
        return self._cache.invalidate_user(user_id)

    def refresh_candidates(self) -> None:
        """Fetch the shared candidate pool again now, for example after a bulk import.

        The previous pool stays the fallback if a store fails meanwhile.

        Raises:
            FeedUnavailableError: if the catalog is unavailable and there is no
                earlier pool.
        """
        with self._pool_lock:
            try:
                self._candidate_pool = self._build_pool(self._candidate_pool)
            except _CatalogUnavailableError:
                raise FeedUnavailableError("catalog unavailable; no candidate pool") from None

    # -- ranking -------------------------------------------------------------------

    def _call(self, dependency: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self._guards[dependency].call(fn, *args, **kwargs)

    def _dl_scores(
        self, video_ids: Sequence[int], lost: set[str], request: _Request
    ) -> Mapping[int, float] | None:
        name = self.config.model_name
        if self._models is None or name is None or not video_ids:
            return None
        try:
            scores: dict[int, float] = self._call(
                "models", self._models.get_scores, name, video_ids
            )
        except StoreError:
            request.report("models", "ranked without model scores")
            lost.add("deep_learning")
            return None
        return scores

    def _build_pool(self, previous: _CandidatePool | None) -> _CandidatePool:
        cfg = self.config
        request = _Request()
        lost: set[str] = set()
        try:
            recent: list[Video] = self._call(
                "catalog", self._catalog.recent_videos, limit=cfg.recent_limit
            )
        except StoreError:
            if previous is None:
                raise _CatalogUnavailableError(pool_available=False) from None
            request.report("catalog", "last known candidates")
            return _CandidatePool(
                previous.columns,
                previous.candidates,
                previous.row_of,
                previous.creators,
                previous.lost_signals,
                (*previous.degraded, *request.degraded),
                self._monotonic(),
            )
        videos = list(recent)
        known = {video.video_id for video in videos}
        if cfg.popular_limit:
            try:
                popular: list[int] = self._call(
                    "events", self._events.popular_video_ids, limit=cfg.popular_limit
                )
                missing = [vid for vid in popular if vid not in known]
                if missing:
                    found: dict[int, Video] = self._call(
                        "catalog", self._catalog.get_videos, missing
                    )
                    videos.extend(
                        found[vid]
                        for vid in missing
                        if vid in found and found[vid].state is ProcessingState.READY
                    )
            except StoreError:
                request.report("popular", "recent and followed videos only")
        ids = [video.video_id for video in videos]
        stats: Mapping[int, VideoStats] | None = None
        if ids:
            try:
                stats = self._call("events", self._events.get_stats, ids)
            except StoreError:
                stats = None
        columns = _video_columns(videos, stats, self._dl_scores(ids, lost, request))
        if stats is None and ids:
            columns, recovered = self._last_known_counts(columns, previous)
            if recovered:
                request.report("stats", "last known stats")
            else:
                request.report("stats", "ranked without completion and engagement")
                lost.update(("completion", "engagement"))
        return _CandidatePool(
            columns=columns,
            candidates=columns.candidates(),
            row_of={vid: row for row, vid in enumerate(columns.video_ids.tolist())},
            creators=np.unique(columns.creator_ids).tolist(),
            lost_signals=frozenset(lost),
            degraded=tuple(request.degraded),
            built_at=self._monotonic(),
        )

    @staticmethod
    def _last_known_counts(
        columns: _Columns, previous: _CandidatePool | None
    ) -> tuple[_Columns, bool]:
        if previous is None:
            return columns, False
        counts = columns.counts.copy()
        recovered = False
        for row, vid in enumerate(columns.video_ids.tolist()):
            old = previous.row_of.get(vid)
            if old is not None:
                counts[:, row] = previous.columns.counts[:, old]
                recovered = True
        return (
            _Columns(
                columns.video_ids,
                columns.creator_ids,
                columns.sound_ids,
                columns.published_at,
                counts,
                columns.dl_scores,
            ),
            recovered,
        )

    def _shared_pool(self) -> _CandidatePool:
        pool = self._candidate_pool
        if (
            pool is not None
            and self._monotonic() - pool.built_at < self.config.candidate_pool_ttl_seconds
        ):
            return pool
        if pool is None:
            with self._pool_lock:
                if self._candidate_pool is None:
                    self._candidate_pool = self._build_pool(None)
                return self._candidate_pool
        # A stale pool keeps serving while one caller (or a background thread) fetches
        # the next one; concurrent requests never wait for it.
        if not self._pool_lock.acquire(blocking=False):
            return pool
        if self.config.refresh_pool_in_background:
            threading.Thread(
                target=self._refresh_pool_and_release, name="reelrank-pool", daemon=True
            ).start()
            return pool
        self._refresh_pool_and_release()
        current = self._candidate_pool
        assert current is not None  # only ever replaced by a newer pool
        return current

    def _refresh_pool_and_release(self) -> None:
        """Build the next pool; the caller holds ``_pool_lock``, which is released here."""
        try:
            # With an earlier pool to fall back on, building never raises for the catalog.
            self._candidate_pool = self._build_pool(self._candidate_pool)
        finally:
            self._pool_lock.release()

    def _rank_user(
        self,
        user_id: int,
        variant: str | None,
        ranking: RankingConfig,
        tag: str,
        now: datetime,
        request: _Request,
        *,
        previous: FeedSnapshot | None,
        prefer_snapshot: bool,
    ) -> tuple[FeedSnapshot, bool]:
        """Rank a fresh snapshot; returns it and whether a dependency was degraded.

        ``previous`` is the user's cached snapshot, if any: without the seen store, the
        ids this process served from it are left out.

        Raises ``_CatalogUnavailableError`` when the catalog fails and either no
        candidate pool exists or ``prefer_snapshot`` asks to serve a cached one instead.
        """
        pool = self._shared_pool()
        lost = set(pool.lost_signals)
        followed = self._followed_columns(user_id, pool, lost, request)
        for entry in pool.degraded:
            request.report(entry.dependency, entry.fallback)
        if prefer_snapshot and any(entry.dependency == "catalog" for entry in request.degraded):
            raise _CatalogUnavailableError(pool_available=True)
        columns = pool.columns.concat(followed)
        candidates = pool.candidates if not len(followed) else columns.candidates()
        creators = pool.creators
        if len(followed):
            creators = np.unique(columns.creator_ids).tolist()
        affinity: Mapping[int, float] | None = None
        if creators:
            try:
                affinity = self._call("events", self._events.get_affinities, user_id, creators)
            except StoreError:
                request.report("affinity", "ranked without affinity")
                lost.add("affinity")
        seen = self._seen_ids(user_id, columns, ranking, now, request)
        # What this process served from the previous snapshot is left out even when the
        # seen store answered: a page served while it could not record counts too.
        served = [] if previous is None else self._served.served_ids(previous)
        if seen is None and served:
            request.report("seen", "filtered by what this process served")
        if served:
            known = np.asarray(served, dtype=np.int64)
            seen = known if seen is None else np.concatenate([seen, known])
        snapshot = self._ranked_snapshot(
            user_id,
            variant,
            ranking,
            tag,
            now,
            columns,
            candidates,
            affinity,
            seen,
            frozenset(lost),
        )
        return snapshot, request.is_degraded

    def _followed_columns(
        self, user_id: int, pool: _CandidatePool, lost: set[str], request: _Request
    ) -> _Columns:
        if not self.config.followed_limit:
            return _Columns.empty()
        try:
            followed: list[Video] = self._call(
                "catalog", self._catalog.followed_videos, user_id, limit=self.config.followed_limit
            )
        except StoreError:
            request.report("catalog", "without followed creators' videos")
            return _Columns.empty()
        extra = [video for video in followed if video.video_id not in pool.row_of]
        if not extra:
            return _Columns.empty()
        ids = [video.video_id for video in extra]
        stats: Mapping[int, VideoStats] | None = None
        if "completion" not in lost:
            try:
                stats = self._call("events", self._events.get_stats, ids)
            except StoreError:
                request.report("stats", "followed videos ranked on priors")
        return _video_columns(extra, stats, self._dl_scores(ids, lost, request))

    def _seen_ids(
        self,
        user_id: int,
        columns: _Columns,
        ranking: RankingConfig,
        now: datetime,
        request: _Request,
    ) -> npt.NDArray[np.int64] | None:
        since = now - timedelta(seconds=ranking.seen_window_seconds)
        limit = self.config.seen_lookup_limit
        try:
            recent: list[int] = self._call(
                "seen", self._seen.recently_seen, user_id, since=since, limit=limit
            )
            if len(recent) < limit:
                return np.asarray(recent, dtype=np.int64)
            # More seen ids than we read: ask about the candidates themselves.
            among: set[int] = self._call(
                "seen", self._seen.seen_among, user_id, columns.video_ids.tolist(), since=since
            )
            return np.fromiter(among, dtype=np.int64, count=len(among))
        except StoreError:
            request.report("seen", "not filtered by watch history")
            return None

    def _ranked_snapshot(
        self,
        user_id: int,
        variant: str | None,
        ranking: RankingConfig,
        tag: str,
        now: datetime,
        columns: _Columns,
        candidates: Candidates,
        affinity: Mapping[int, float] | None,
        seen: npt.NDArray[Any] | None,
        lost: frozenset[str],
    ) -> FeedSnapshot:
        """Rank, diversify and pack one snapshot; ``seen`` holds ids or a boolean mask."""
        ranker = _ranker(ranking, lost)
        result = ranker.rank(
            candidates,
            k=self.config.snapshot_size,
            now=now.timestamp(),
            affinity=affinity,
            seen=seen,
            explain=True,
        )
        positions = result.positions
        order = self.config.diversity.order(
            columns.creator_ids[positions], columns.sound_ids[positions]
        )
        contributions = result.contributions
        assert contributions is not None  # requested with explain=True
        # The snapshot is built from validated arrays, so pydantic's per-value checks
        # are skipped; values are converted to plain Python numbers for any backend.
        return FeedSnapshot.model_construct(
            user_id=user_id,
            variant=variant,
            video_ids=tuple(result.video_ids[order].tolist()),
            scores=tuple(result.scores[order].tolist()),
            signals=WEIGHT_FIELDS,
            contributions=tuple(map(tuple, contributions[order].tolist())),
            created_at=now.astimezone(UTC),
            config_tag=tag,
        )

    # -- warming -------------------------------------------------------------------

    def warm(self, user_ids: Iterable[int], *, force: bool = False) -> int:
        """Rank and cache snapshots for many users with bulk store calls.

        The shared candidate pool is fetched once; followed videos, affinities and seen
        ids are read in one guarded batch per store; snapshots are written with one
        ``put_many``. Users that already have a live snapshot of their current config
        are skipped unless ``force``. Returns how many snapshots were stored.

        Raises:
            InvalidInputError: naming ``user_ids`` if an id is invalid.
            FeedUnavailableError: if the catalog is unavailable and no earlier
                candidate pool exists.
        """
        with request_scope():
            return self._warm(user_ids, force)

    def _warm(self, user_ids: Iterable[int], force: bool) -> int:
        users = list(dict.fromkeys(check_id("user_ids", uid) for uid in user_ids))
        if not users or self._cache is None:
            return 0
        now = self._clock()
        assigned = {uid: self._variant(uid) for uid in users}
        request = _Request()
        if not force:
            keys: list[FeedKey] = [(uid, assigned[uid][0]) for uid in users]
            try:
                live = self._cache.get_many(keys)
            except StoreError:
                live = {}
            users = [
                uid
                for uid in users
                if (snap := live.get((uid, assigned[uid][0]))) is None
                or snap.config_tag != _config_tag(assigned[uid][1])
            ]
            if not users:
                return 0
        try:
            pool = self._shared_pool()
        except _CatalogUnavailableError:
            raise FeedUnavailableError("catalog unavailable; nothing to warm with") from None
        lost = set(pool.lost_signals)
        extras = self._warm_extras(users, pool, lost, request)
        user_creators = {
            uid: (
                np.union1d(pool.columns.creator_ids, extras.columns.creator_ids[rows]).tolist()
                if (rows := extras.rows_of_user[uid])
                else pool.creators
            )
            for uid in users
        }
        affinities = self._bulk(
            "events",
            lambda: {
                uid: self._events.get_affinities(uid, user_creators[uid])
                for uid in users
                if user_creators[uid]
            },
            request,
            report_as="affinity",
            fallback="ranked without affinity",
        )
        if affinities is None:
            lost.add("affinity")
        limit = self.config.seen_lookup_limit

        def read_seen() -> dict[int, list[int]]:
            return {
                uid: self._seen.recently_seen(
                    uid,
                    since=now - timedelta(seconds=assigned[uid][1].seen_window_seconds),
                    limit=limit,
                )
                for uid in users
            }

        seen_lists = self._bulk(
            "seen", read_seen, request, report_as="seen", fallback="not filtered by watch history"
        )
        # One candidate set for the whole batch: the pool plus every user's followed
        # extras. Each user's ranking masks out the extras of the others (and what the
        # user saw), which ranks exactly the candidates a request would.
        union = pool.columns.concat(extras.columns)
        union_candidates = union.candidates() if len(extras.columns) else pool.candidates
        first_extra = len(pool.columns)
        union_row = dict(pool.row_of)
        union_row.update(
            {vid: first_extra + row for row, vid in enumerate(extras.columns.video_ids.tolist())}
        )
        others = np.zeros(len(union), dtype=np.bool_)
        others[first_extra:] = True
        snapshots: list[FeedSnapshot] = []
        for uid in users:
            variant, ranking = assigned[uid]
            mask = others.copy()
            mask[first_extra + np.asarray(extras.rows_of_user[uid], dtype=np.int64)] = False
            if seen_lists is not None:
                seen_ids: Iterable[int] = seen_lists[uid]
                if len(seen_lists[uid]) >= limit:
                    user_request = _Request()
                    found = self._seen_ids(uid, union, ranking, now, user_request)
                    seen_ids = () if found is None else found.tolist()
                    for entry in user_request.degraded:
                        request.report(entry.dependency, entry.fallback)
                for vid in seen_ids:
                    row = union_row.get(vid)
                    if row is not None:
                        mask[row] = True
            snapshots.append(
                self._ranked_snapshot(
                    uid,
                    variant,
                    ranking,
                    _config_tag(ranking),
                    now,
                    union,
                    union_candidates,
                    None if affinities is None else affinities.get(uid),
                    mask,
                    frozenset(lost),
                )
            )
        self._count(ranked=len(snapshots))
        stored = self._cache_put(snapshots, request.is_degraded or bool(pool.degraded), request)
        return len(snapshots) if stored else 0

    def _warm_extras(
        self, users: list[int], pool: _CandidatePool, lost: set[str], request: _Request
    ) -> _Extras:
        """Followed videos outside the pool, for a batch of users, with bulk reads."""
        limit = self.config.followed_limit
        followed: dict[int, list[Video]] | None = {}
        if limit:
            followed = self._bulk(
                "catalog",
                lambda: {uid: self._catalog.followed_videos(uid, limit=limit) for uid in users},
                request,
                report_as="catalog",
                fallback="without followed creators' videos",
            )
        followed = followed or {}
        videos: dict[int, Video] = {}
        for user_videos in followed.values():
            for video in user_videos:
                if video.video_id not in pool.row_of:
                    videos[video.video_id] = video
        ids = list(videos)
        stats = None
        if ids:
            stats = self._bulk(
                "events",
                lambda: self._events.get_stats(ids),
                request,
                report_as="stats",
                fallback="followed videos ranked on priors",
            )
        columns = _video_columns(list(videos.values()), stats, self._dl_scores(ids, lost, request))
        row_of = {vid: row for row, vid in enumerate(ids)}
        rows_of_user = {
            uid: sorted({row_of[v.video_id] for v in followed.get(uid, ()) if v.video_id in row_of})
            for uid in users
        }
        return _Extras(columns, rows_of_user)

    def _bulk(
        self,
        dependency: str,
        fn: Callable[[], Any],
        request: _Request,
        *,
        report_as: str,
        fallback: str,
    ) -> Any:
        """Run one batch of store calls under the warming deadline; ``None`` if it failed."""
        guard = self._guards[dependency]
        try:
            return guard.call_with_deadline(self.config.warm_deadline_seconds, fn)
        except StoreError:
            request.report(report_as, fallback)
            return None
