"""The feed service: cache-first feed pages with cursors, seen filtering and degradation.

See *Serving feeds* in the documentation for the lifecycle of a request, the cursor,
the cache semantics and the order in which failed dependencies are worked around.

:class:`FeedRankingService` is a facade over parts split by concern: the guards around
store calls and the snapshot cache (``_guards``), the shared candidate pool
(``_candidates``), per-user ranking (``_ranking``), paging with cursors and served
marks (``_paging``) and cache warming (``_cache_warming``). Each request carries a
``RequestContext`` through them.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime

from ..exceptions import FeedUnavailableError, InvalidInputError, StoreError
from ..models._feed import FeedPage, FeedSnapshot, PageOutcome, PageRequest
from ..scoring._config import RankingConfig
from ..stores._protocols import (
    Catalog,
    EventStore,
    FeedCache,
    FeedKey,
    ModelRegistry,
    PageTakingSeenStore,
    SeenStore,
)
from ..validation import check_id, check_variant, utc_now
from ._affinity_reuse import AffinityReuse
from ._cache_warming import CacheWarmer
from ._candidates import CandidateSource, CatalogUnavailableError
from ._config import FeedServiceConfig, FeedServiceStats, VariantResolver
from ._context import DegradedReport, RequestContext, config_tag
from ._cursor import CursorCodec, CursorState
from ._guards import SnapshotCache, StoreGuards
from ._observer import CacheMissReason, FeedObserver, active
from ._paging import Pager, ServedMarks, check_page_limit, snapshot_id
from ._ranking import UserRanking
from ._refill import Refiller, RefillOutcome
from ._remembered_pages import (
    END_TAG,
    PageRecords,
    check_not_reserved,
    decode_record,
    encode_record,
    record_key,
)
from ._resilience import BreakerState, CircuitBreaker, request_scope

__all__ = ["FeedRankingService"]


def _nothing() -> None:
    """What promoting no snapshot takes."""


def _page_taker(
    seen: SeenStore, shared: FeedCache | None
) -> Callable[[PageRequest], PageOutcome] | None:
    """``take_page`` of ``seen`` on the shared cache level, if ``seen`` can take pages
    there in one call."""
    if shared is None or not isinstance(seen, PageTakingSeenStore):
        return None
    if not seen.takes_pages_with(shared):
        return None

    def take_page(request: PageRequest) -> PageOutcome:
        return seen.take_page(shared, request)

    return take_page


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
        observer: told about store calls, cache lookups, rankings, degraded pages,
            breaker changes and warming, for an application's metrics (see
            :class:`FeedObserver`); ``None`` times and reports nothing.

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
        observer: FeedObserver | None = None,
    ) -> None:
        self.config = cfg = config or FeedServiceConfig()
        self._observer = observer = active(observer)
        self.ranking = ranking or RankingConfig()
        self._assign_variant = assign_variant
        self._clock = clock or utc_now
        stores = {"catalog": catalog, "events": events, "seen": seen, "models": models}
        self._guards = StoreGuards({**stores, "cache": cache}, cfg, monotonic, observer)
        self._snapshots = SnapshotCache(cache, self._guards["cache"], cfg, observer)
        self._candidates = CandidateSource(
            catalog=catalog,
            events=events,
            models=models,
            guards=self._guards,
            config=cfg,
            monotonic=monotonic,
            observer=observer,
        )
        served = ServedMarks(cfg.served_marks_max_users)
        secret = (
            cfg.cursor_secret.get_secret_value().encode()
            if cfg.cursor_secret is not None
            else secrets.token_bytes(32)
        )
        self._pager = Pager(
            seen=seen,
            guard=self._guards["seen"],
            cursors=CursorCodec(secret, cfg.cursor_max_age_seconds),
            served=served,
            snapshot_size=cfg.snapshot_size,
        )
        self._records = PageRecords(
            self._snapshots, cfg.remembered_pages_max, cfg.snapshot_ttl_seconds
        )
        self._take_page = (
            _page_taker(seen, self._snapshots.shared_level) if cfg.take_pages_in_one_call else None
        )
        self._affinity_reuse = (
            AffinityReuse(
                max_age_seconds=cfg.affinity_reuse_seconds,
                max_users=cfg.affinity_reuse_max_users,
                monotonic=monotonic,
            )
            if cfg.affinity_reuse_seconds
            else None
        )
        self._users = UserRanking(
            catalog=catalog,
            events=events,
            seen=seen,
            candidates=self._candidates,
            guards=self._guards,
            served=served,
            config=cfg,
            observer=observer,
            affinity_reuse=self._affinity_reuse,
        )
        self._warmer = CacheWarmer(
            catalog=catalog,
            events=events,
            seen=seen,
            candidates=self._candidates,
            ranking=self._users,
            snapshots=self._snapshots,
            guards=self._guards,
            config=cfg,
        )
        self._refiller = (
            Refiller(
                threads=cfg.refill_threads,
                queue_max=cfg.refill_queue_max,
                report=self._report_refill,
            )
            if cfg.refill_ahead_items and self._snapshots.enabled
            else None
        )
        self._monotonic = monotonic
        self._counter_lock = threading.Lock()
        self._pages = self._pages_from_cache = self._replayed = 0
        self._ranked = self._degraded_pages = 0

    # -- lifecycle and counters ----------------------------------------------------

    def close(self, *, timeout: float | None = None) -> None:
        """Stop the service's worker threads; the service cannot serve afterwards.

        Refills ahead still queued are dropped; those running, a background refresh of
        the candidate pool under way, and then the store calls still running on the
        worker threads (abandoned past their deadline included) are waited for, up to
        ``timeout`` seconds in all (default: the config's ``warm_deadline_seconds``), so
        that stores closed after this are no longer read; none starts afterwards. Closing
        again only waits for the calls still running.
        """
        wait = self.config.warm_deadline_seconds if timeout is None else timeout
        deadline = time.monotonic() + max(0.0, wait)
        if self._refiller is not None:
            self._refiller.close(max(0.0, wait))
        self._candidates.close(max(0.0, deadline - time.monotonic()))
        self._guards.close(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> FeedRankingService:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def breakers(self) -> Mapping[str, CircuitBreaker]:
        """The circuit breaker of each store: catalog, events, seen, models, cache."""
        return self._guards.breakers

    def stats(self) -> FeedServiceStats:
        """Counters of pages, cache levels and store calls so far."""
        with self._counter_lock:
            pages, cached, replayed = self._pages, self._pages_from_cache, self._replayed
            ranked, degraded = self._ranked, self._degraded_pages
        return FeedServiceStats(
            pages=pages,
            pages_from_cache=cached,
            pages_replayed=replayed,
            snapshots_ranked=ranked,
            degraded_pages=degraded,
            cache_levels=self._snapshots.level_stats(),
            dependencies=self._guards.stats(),
        )

    def _count(
        self,
        *,
        pages: int = 0,
        cached: int = 0,
        replayed: int = 0,
        ranked: int = 0,
        degraded: int = 0,
    ) -> None:
        with self._counter_lock:
            self._pages += pages
            self._pages_from_cache += cached
            self._replayed += replayed
            self._ranked += ranked
            self._degraded_pages += degraded

    def _context(self, user_id: int, now: datetime, report: DegradedReport) -> RequestContext:
        """The request context of ``user_id``, with their variant and ranking config."""
        variant: str | None = None
        ranking = self.ranking
        if self._assign_variant is not None:
            variant, ranking = self._assign_variant(user_id)
            if not isinstance(ranking, RankingConfig):
                raise InvalidInputError("assign_variant", "must return (variant, RankingConfig)")
            variant = check_variant("assign_variant", variant)
            check_not_reserved(variant)
        return RequestContext(user_id, variant, ranking, config_tag(ranking), now, report)

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
            observer = self._observer
            if observer is None:
                return self._feed(user_id, limit, cursor)
            try:
                page = self._feed(user_id, limit, cursor)
            except FeedUnavailableError:
                observer.feed_unavailable("catalog")
                raise
            for entry in page.degraded:
                observer.degraded(entry.dependency, entry.fallback)
            return page

    def _feed(self, user_id: int, limit: int, cursor: str | None) -> FeedPage:
        check_id("user_id", user_id)
        ctx = self._context(user_id, self._clock(), DegradedReport())
        check_page_limit(limit, ctx.ranking.max_page_size)
        state = self._pager.decode(cursor, ctx)
        if state is None:
            return self._serve(ctx, None, limit)
        # A cursor redeemed again (a retry) gets the page it got the first time: that
        # page's items are marked seen now, so cutting it afresh would skip them.
        key = record_key(ctx, state, limit)
        looked_up = False
        cached: FeedSnapshot | None = None
        promote = _nothing
        seen_failed = False
        record_looked_up = False
        if self._take_page is not None and self._can_take_page():
            record = self._records.recall_local(ctx, key)
            if record is not None:
                return self._replay(ctx, record)
            # Found without copying it into the faster levels yet: a retry answered from
            # its record does not use the snapshot, and the three calls would not have
            # looked it up at all.
            cached, promote = self._snapshots.find(ctx.key, ctx.report)
            looked_up = True
            if cached is not None and self._is_current(cached, ctx):
                try:
                    page = self._take_cached_page(ctx, cached, state, limit, key, promote)
                except StoreError:
                    # The one call was this page's seen filter and mark: the separate
                    # calls cut the page as after their own filter failed, so the seen
                    # breaker counts what it would have counted without the one call.
                    page, seen_failed = None, True
                else:
                    # It looked the record up too, and found none that is live.
                    record_looked_up = True
                if page is not None:
                    return page
        # Remembered pages in steps: when the seen store cannot take a page in one call,
        # and when that call failed.
        if not record_looked_up:
            record = self._records.recall(ctx, key)
            if record is not None:
                return self._replay(ctx, record)
        page = self._serve(
            ctx,
            state,
            limit,
            looked_up=looked_up,
            cached=cached,
            promote=promote,
            seen_failed=seen_failed,
        )
        self._records.remember(ctx, encode_record(key, page, self._next_state(ctx, page), ctx.now))
        return page

    def _can_take_page(self) -> bool:
        """Whether both stores ``take_page`` stands for accept calls: while either
        breaker is not closed, the separate calls find out when it recovers."""
        closed = BreakerState.CLOSED
        guards = self._guards
        return guards["seen"].breaker.state is closed and guards["cache"].breaker.state is closed

    def _take_cached_page(
        self,
        ctx: RequestContext,
        cached: FeedSnapshot,
        state: CursorState,
        limit: int,
        key: FeedKey,
        promote: Callable[[], None],
    ) -> FeedPage | None:
        """The cursor's page from ``cached`` in one seen-store call that also recalls or
        remembers it; ``None`` when the separate calls must serve it instead (the record
        found is too old, or the snapshot is used up). Raises
        :class:`~reelrank.StoreError` if the call failed; nothing was served then.

        ``promote`` copies ``cached`` into the faster cache levels; it is called once a
        page is cut from it, as the separate calls' lookup would have done."""
        assert self._take_page is not None
        taken = self._pager.take_page(
            ctx,
            cached,
            state,
            limit,
            take=self._take_page,
            record_key=key,
            ttl_seconds=self._records.ttl_seconds,
            end_tag=END_TAG,
        )
        if isinstance(taken, FeedSnapshot):
            return self._replay(ctx, taken) if self._records.is_live(ctx, taken) else None
        if not taken.items:
            return None
        promote()
        self._count(pages=1, cached=1, degraded=ctx.report.is_degraded)
        self._records.remember_local(
            encode_record(key, taken, self._next_state(ctx, taken), ctx.now)
        )
        self._refill_if_low(ctx, cached)
        return taken

    def _next_state(self, ctx: RequestContext, page: FeedPage) -> CursorState | None:
        return None if page.next_cursor is None else self._pager.decode(page.next_cursor, ctx)

    def _replay(self, ctx: RequestContext, record: FeedSnapshot) -> FeedPage:
        """The remembered page ``record`` again."""
        items, where_next = decode_record(record)
        page = self._pager.replay(ctx, items, where_next)
        self._count(pages=1, replayed=1, degraded=ctx.report.is_degraded)
        return page

    def _serve(
        self,
        ctx: RequestContext,
        state: CursorState | None,
        limit: int,
        *,
        looked_up: bool = False,
        cached: FeedSnapshot | None = None,
        promote: Callable[[], None] = _nothing,
        seen_failed: bool = False,
    ) -> FeedPage:
        """Cut a new page: from the cached snapshot if it is current, else a fresh one.

        ``looked_up``: the cache was asked already, and ``cached`` is what it answered;
        ``promote`` copies it into the faster levels, as a lookup here would have.
        ``seen_failed``: the cached page's seen filter and mark failed already (see
        :meth:`Pager.page`).
        """
        if looked_up:
            promote()
        else:
            cached = self._snapshots.get(ctx.key, ctx.report)
        if cached is not None and self._is_current(cached, ctx):
            page = self._pager.page(
                ctx, cached, state, limit, from_cache=True, seen_failed=seen_failed
            )
            if page.items:
                self._count(pages=1, cached=1, degraded=ctx.report.is_degraded)
                self._refill_if_low(ctx, cached)
                return page
            # A snapshot shorter than snapshot_size held every unseen candidate there was.
            full = len(cached.video_ids) >= self.config.snapshot_size
            if not full and self._ran_out_on_current_pool(ctx, cached):
                self._count(pages=1, cached=1)
                return page
            reason: CacheMissReason = "used_up" if full else "ran_out"
        else:
            reason = self._miss_reason(ctx, cached)
        ranked = self._rank(ctx, cached, state, limit)
        if isinstance(ranked, FeedPage):
            return ranked
        if self._observer is not None:
            self._observer.cache_missed(reason)
        snapshot = ranked
        self._snapshots.put([snapshot], ctx.report)
        self._count(ranked=1)
        # A fresh snapshot already leaves out everything seen, so no seen lookup is needed.
        page = self._pager.page(ctx, snapshot, None, limit, check_seen=False)
        self._count(pages=1, degraded=ctx.report.is_degraded)
        return page

    def _rank(
        self,
        ctx: RequestContext,
        cached: FeedSnapshot | None,
        state: CursorState | None,
        limit: int,
    ) -> FeedSnapshot | FeedPage:
        """Rank a fresh snapshot for a request the cache could not serve.

        When the catalog fails, a snapshot we already have beats a ranking from stale
        candidates: the page cut from it is returned instead. A used-up snapshot does
        not count.
        """
        try:
            return self._users.rank(ctx, previous=cached, prefer_snapshot=cached is not None)
        except CatalogUnavailableError as unavailable:
            if cached is not None:
                fallback = replace(ctx, report=ctx.report.copy())
                fallback.report.report("catalog", "cached snapshot")
                page = self._pager.page(fallback, cached, state, limit, from_cache=True)
                if page.items:
                    self._count(pages=1, cached=1, degraded=1)
                    return page
            if unavailable.pool_available:
                try:
                    return self._users.rank(ctx, previous=cached, prefer_snapshot=False)
                except CatalogUnavailableError:
                    pass
        raise FeedUnavailableError(
            f"catalog unavailable and no cached feed for user {ctx.user_id}"
        ) from None

    def _ran_out_on_current_pool(self, ctx: RequestContext, snapshot: FeedSnapshot) -> bool:
        """Whether ``hold_ran_out_feeds`` answers the end of the feed from ``snapshot``, a
        short snapshot with nothing unseen left: it was ranked after this process fetched
        its current candidate pool, so ranking again would find nothing but videos that
        followed creators published since."""
        if not self.config.hold_ran_out_feeds or ctx.report.is_degraded:
            return False
        pool = self._candidates.current
        if pool is None:
            return False
        pool_age = self._monotonic() - pool.fetched_at
        if pool_age >= self.config.candidate_pool_ttl_seconds:
            return False
        return (ctx.now - snapshot.created_at).total_seconds() <= pool_age

    def _miss_reason(self, ctx: RequestContext, cached: FeedSnapshot | None) -> CacheMissReason:
        """Why ``cached`` (``None``: nothing found) cannot serve the request."""
        if cached is None:
            failed = any(entry.dependency == "cache" for entry in ctx.report.degraded)
            return "cache_failed" if failed else "absent"
        return "config_changed" if cached.config_tag != ctx.tag else "expired"

    # -- refilling ahead -----------------------------------------------------------

    def _refill_if_low(self, ctx: RequestContext, snapshot: FeedSnapshot) -> None:
        """Rank the user's next snapshot in the background if the page just cut from
        ``snapshot`` (and marked seen) left fewer than ``refill_ahead_items`` after it.

        A snapshot shorter than ``snapshot_size`` ran out of candidates: ranking again
        would find no more. A degraded page is not refilled: the ranking would be
        degraded too, and would replace a sound snapshot for a short-lived one.
        """
        refiller = self._refiller
        if refiller is None or ctx.report.is_degraded:
            return
        total = len(snapshot.video_ids)
        if total < self.config.snapshot_size:
            return
        pinned = snapshot_id(snapshot)
        if total - self._pager.position(snapshot, pinned) >= self.config.refill_ahead_items:
            return
        refiller.submit(ctx.key, lambda: self._refill(ctx, snapshot, pinned))

    def _refill(self, ctx: RequestContext, previous: FeedSnapshot, pinned: str) -> RefillOutcome:
        """Rank and cache the next snapshot after ``previous`` (its id ``pinned``). Runs
        on a refill thread, after the request's page was marked seen, so the seen ids it
        reads include that page. Off the request path, every store call waits
        ``refill_deadline_seconds`` rather than the request deadlines."""
        with request_scope(deadline_seconds=self.config.refill_deadline_seconds):
            refill = replace(ctx, now=self._clock(), report=DegradedReport())
            try:
                snapshot = self._users.rank(refill, previous=previous, prefer_snapshot=True)
            except CatalogUnavailableError:
                # The catalog failed while it was read: the current snapshot stays.
                return "degraded"
            self._count(ranked=1)
            if refill.report.is_degraded:
                return "degraded"
            # A request that found the snapshot used up meanwhile ranked and cached a
            # newer one, whose pages may be under way: it is not replaced.
            current = self._snapshots.get(ctx.key, refill.report)
            if current is not None and snapshot_id(current) != pinned:
                return "superseded"
            return "stored" if self._snapshots.put([snapshot], refill.report) else "failed"

    def _report_refill(self, outcome: RefillOutcome) -> None:
        if self._observer is not None:
            self._observer.refill_ended(outcome)

    def _is_current(self, snapshot: FeedSnapshot, ctx: RequestContext) -> bool:
        # Faster cache levels may keep a promoted copy a little past the shared level's
        # TTL; the snapshot's own age is the authority.
        age = (ctx.now - snapshot.created_at).total_seconds()
        return snapshot.config_tag == ctx.tag and age < self.config.snapshot_ttl_seconds

    # -- cache and candidates ------------------------------------------------------

    def invalidate(self, user_id: int) -> int:
        """Drop the user's cached snapshots (every variant) so the next page is re-ranked.

        Already served items are not shown again: they are in the seen store.
        Returns how many live snapshots were dropped, counting the pages the shared
        cache level remembered for retried cursors.
        """
        check_id("user_id", user_id)
        return self._snapshots.invalidate_user(user_id)

    def forget_affinities(self, user_id: int) -> None:
        """Drop the user's affinity read kept for
        :attr:`~reelrank.FeedServiceConfig.affinity_reuse_seconds`, so their next
        ranking reads the event store again; a read under way when this is called is
        not kept.

        Call it after recording an event by the user (whether its write succeeded or
        not: a failed write may have landed), as
        :class:`~reelrank.EngagementRecorder`'s ``on_user_event`` does. Does nothing
        when reads are not reused.
        """
        check_id("user_id", user_id)
        if self._affinity_reuse is not None:
            self._affinity_reuse.forget(user_id)

    def refresh_candidates(self) -> None:
        """Fetch the shared candidate pool again now, for example after a bulk import.

        A batch job: its store calls run under ``warm_deadline_seconds``.

        The previous pool stays the fallback if a store fails meanwhile.

        Raises:
            FeedUnavailableError: if the catalog is unavailable and there is no
                earlier pool.
        """
        try:
            self._candidates.refresh()
        except CatalogUnavailableError:
            raise FeedUnavailableError("catalog unavailable; no candidate pool") from None

    # -- warming -------------------------------------------------------------------

    def warm(self, user_ids: Iterable[int], *, force: bool = False) -> int:
        """Rank and cache snapshots for many users with bulk store calls.

        The shared candidate pool is fetched once; followed videos, affinities and seen
        ids are read in one guarded batch per store, with one call for every user when
        the store implements :class:`~reelrank.BulkReadCatalog`,
        :class:`~reelrank.BulkReadEventStore` or :class:`~reelrank.BulkReadSeenStore`
        (else one call per user); snapshots are written with one ``put_many``. Users
        that already have a live snapshot of their current config are skipped unless
        ``force``. Returns how many snapshots were stored.

        Raises:
            InvalidInputError: naming ``user_ids`` if an id is invalid.
            FeedUnavailableError: if the catalog is unavailable and no earlier
                candidate pool exists.
        """
        users = list(dict.fromkeys(check_id("user_ids", uid) for uid in user_ids))
        if not users or not self._snapshots.enabled:
            return 0
        with request_scope():
            contexts = self._needing_snapshots(users, force)
            try:
                stored = self._warm_contexts(contexts) if contexts else 0
            except FeedUnavailableError:
                self._report_warming(0, len(contexts), len(users))
                raise
        self._report_warming(stored, len(contexts), len(users))
        return stored

    def _needing_snapshots(self, users: list[int], force: bool) -> list[RequestContext]:
        """The contexts of the users to rank: all of them with ``force``."""
        now, report = self._clock(), DegradedReport()
        contexts = [self._context(uid, now, report) for uid in users]
        return contexts if force else self._warmer.needing_snapshots(contexts)

    def _warm_contexts(self, contexts: list[RequestContext]) -> int:
        try:
            pool = self._candidates.shared(batch=True)
        except CatalogUnavailableError:
            raise FeedUnavailableError("catalog unavailable; nothing to warm with") from None
        stored = self._warmer.warm(contexts, pool)
        self._count(ranked=len(contexts))
        return stored

    def _report_warming(self, stored: int, needing: int, users: int) -> None:
        if self._observer is not None:
            self._observer.users_warmed(stored, needing - stored, users - needing)
