"""What the cards show: video and creator details and counts, read so an outage degrades them.

The feed service guards its own store calls; the cards built around its pages read the
catalog and the event store again, and without care a paused ClickHouse or a stopped
PostgreSQL would turn every page into an error after a driver timeout of seconds.
:class:`CardReader` reads each store under a short deadline and a circuit breaker (the
store's own when it is already a :class:`~reelrank.GuardedStore`), keeps
the details it read (fresh for :attr:`Settings.card_cache_seconds
<reelrank_example.Settings.card_cache_seconds>`) and the last counts it read, and serves
those when the store is unavailable, naming the store in the page's ``degraded`` list.

Counts on list cards (feed pages, search, similar videos) are reused for
:attr:`Settings.card_counts_seconds <reelrank_example.Settings.card_counts_seconds>`,
and older ones are shown while a background read brings them up to date: an
event-store query per page would cost more than the rest of a cached feed page, and a
feed leaves out what its user has seen, so a user never finds their own like or watch
on a list card. Only counts never read are read during the request. A video's detail
reads its counts afresh, and an event this process records drops that video's counts
here and has the counts search reuses read again (see :class:`ReusedCounts`); a like's
answer reads them afresh, and that read is kept for the next cards and searches. The
counts the feed's ranking reads (its candidate pool's, in the background, and a
request's followed videos') are kept for the cards too (:class:`EventsSharingCounts`),
so a page's cards seldom read counts at all; so are the video details it reads
(:class:`CatalogSharingVideos`), so a cache miss's cards seldom read them either.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, Future
from concurrent.futures import wait as wait_for
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from reelrank import (
    BoundedAgeEventStore,
    Catalog,
    CircuitBreaker,
    Creator,
    DependencyGuard,
    EventStore,
    FeedObserver,
    GuardedStore,
    StoreCallOutcome,
    StoreError,
    StoreProxy,
    Video,
    VideoStats,
    VideoStatsColumns,
    WorkerPool,
)

__all__ = [
    "CardData",
    "CardReader",
    "CatalogSharingVideos",
    "EventsSharingCounts",
    "ReusedCounts",
    "store_guard",
]

_logger = logging.getLogger(__name__)

V = TypeVar("V")
T = TypeVar("T")
M = TypeVar("M")

# Card reads are point lookups of a few ms; a store slower than this is treated as down.
_DEADLINE_SECONDS = 0.25
_BREAKER_FAILURES = 3
_BREAKER_RESET_SECONDS = 5.0
_KEPT_ENTRIES = 100_000
# Counts read again in the background, or prefetched, per event-store call.
_REFRESH_BATCH = 1_000
# Search counts read again per background read: a search's own candidate pool, which
# reads within the event store's read deadline.
_SEARCH_REFRESH_BATCH = 500
# Calls past their deadline keep a thread until the driver gives up; the breakers let
# few through, so a handful of threads is enough.
_THREADS = 8
_MAX_STALLED = 4


class _Kept(Generic[V]):
    """Values by id: fresh for ``ttl`` seconds, and kept (at most ``size``, least
    recently stored dropped first) as the fallback once they are no longer fresh."""

    def __init__(self, ttl: float, size: int, clock: Callable[[], float]) -> None:
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._values: OrderedDict[int, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()
        # Forgets so far, and the count when each recently forgotten id was last
        # forgotten (at most ``size``, oldest dropped first): a read that began before
        # an id's forget saw it before the change and is not stored for it.
        self._forgets = 0
        self._forgotten: OrderedDict[int, int] = OrderedDict()
        # The count of the newest forget no longer recorded per id: a read that began
        # before it stores nothing, since it may predate any id's forget.
        self._forgotten_floor = 0

    def fresh(
        self, ids: Iterable[int], *, within: float | None = None
    ) -> tuple[dict[int, V], list[int]]:
        """The fresh values among ``ids`` (stored less than ``ttl`` seconds ago, or
        ``within`` seconds when given), and the ids to read again."""
        now = self._clock()
        age_limit = self._ttl if within is None else within
        found: dict[int, V] = {}
        missing: list[int] = []
        with self._lock:
            for key in ids:
                entry = self._values.get(key)
                if entry is not None and now - entry[0] < age_limit:
                    found[key] = entry[1]
                else:
                    missing.append(key)
        return found, missing

    def generation(self) -> int:
        """A mark to take before a read whose values are stored with :meth:`store`
        (its ``began``)."""
        with self._lock:
            return self._forgets

    def forget(self, ids: Iterable[int], *, keep_aged: float | None = None) -> list[int]:
        """Drop the values of ``ids``, fresh or not, or with ``keep_aged`` keep them as
        if stored at least that many seconds ago; a read that began before this is not
        stored for them. Returns the ids that had a value."""
        had: list[int] = []
        aged_since = None if keep_aged is None else self._clock() - keep_aged
        with self._lock:
            self._forgets += 1
            for key in ids:
                entry = self._values.get(key) if aged_since is not None else None
                if entry is not None and aged_since is not None:
                    self._values[key] = (min(entry[0], aged_since), entry[1])
                    had.append(key)
                elif self._values.pop(key, None) is not None:
                    had.append(key)
                self._forgotten[key] = self._forgets
                self._forgotten.move_to_end(key)
            while len(self._forgotten) > self._size:
                _, dropped = self._forgotten.popitem(last=False)
                self._forgotten_floor = dropped
        return had

    def kept(self, ids: Iterable[int]) -> dict[int, V]:
        """Whatever is kept for ``ids``, fresh or not."""
        with self._lock:
            return {key: self._values[key][1] for key in ids if key in self._values}

    def store_present(self, values: Mapping[int, V], read_at: float) -> None:
        """Replace the values of the ids among ``values`` that are still kept and were
        stored before ``read_at`` (this clock's time when ``values`` were read)."""
        now = self._clock()
        with self._lock:
            for key, value in values.items():
                entry = self._values.get(key)
                if entry is not None and entry[0] <= read_at:
                    self._values[key] = (now, value)

    def store(
        self, values: Mapping[int, V], *, began: int | None = None, read_at: float | None = None
    ) -> None:
        """Keep ``values``, fresh from now. With ``began`` (the :meth:`generation` taken
        before they were read), the values of ids forgotten since are left out. With
        ``read_at`` (this clock's time when their read began), they are kept as read
        then, and the values of ids stored since (by a later read) are left as they are."""
        now = self._clock() if read_at is None else read_at
        with self._lock:
            if began is not None and began < self._forgotten_floor:
                return
            for key, value in values.items():
                if began is not None and self._forgotten.get(key, 0) > began:
                    continue
                if read_at is not None:
                    entry = self._values.get(key)
                    if entry is not None and entry[0] >= read_at:
                        continue
                self._values[key] = (now, value)
                self._values.move_to_end(key)
            while len(self._values) > self._size:
                self._values.popitem(last=False)


class _BackgroundReads(Generic[V]):
    """Reads the values of ids again on ``pool``, one batch of ``batch`` at a time, and
    replaces those still kept (:meth:`_Kept.store_present`): a value dropped meanwhile
    (an event recorded here) is read by the next request, and one stored since the
    batch's read began (a fresher read elsewhere) is kept, rather than either replaced
    by what this read may have seen before. ``read`` returns ``None`` when its store is
    unavailable: the ids queued are dropped then, and read again when a request next
    finds them old."""

    def __init__(
        self,
        kept: _Kept[V],
        read: Callable[[list[int]], Mapping[int, V] | None],
        *,
        pool: WorkerPool,
        batch: int,
        clock: Callable[[], float],
    ) -> None:
        self._kept = kept
        self._read = read
        self._pool = pool
        self._batch = batch
        self._clock = clock
        self._lock = threading.Lock()
        self._queued: set[int] = set()
        # The batch being read: a request that finds them old meanwhile does not queue
        # them again.
        self._being_read: set[int] = set()
        self._running = False
        # The read under way (or queued), and whether close stopped them.
        self._future: Future[None] | None = None
        self._closed = False

    def add(self, ids: Iterable[int]) -> None:
        """Read ``ids`` again, after the batches queued before them."""
        with self._lock:
            if self._closed:
                return
            self._queued.update(key for key in ids if key not in self._being_read)
            if self._running:
                return
            self._running = True
            self._future = self._pool.submit(self._run)

    def close(self) -> Future[None] | None:
        """Drop the ids not read yet and read no more; returns the read under way, if
        any, for the caller to cancel or wait for."""
        with self._lock:
            self._closed = True
            self._queued.clear()
            return self._future

    def _run(self) -> None:
        while True:
            with self._lock:
                ids = sorted(self._queued)[: self._batch]
                self._queued.difference_update(ids)
                self._being_read = set(ids)
                if not ids:
                    self._running = False
                    return
            read_at = self._clock()
            values = self._read(ids)
            if values is None:
                with self._lock:
                    self._queued.clear()
                    self._being_read = set()
                    self._running = False
                return
            self._kept.store_present(values, read_at)


class _RecentlyRecorded:
    """The videos this process recorded an event on in the last ``seconds`` of
    ``clock``: their counts are read exactly, not taken from a bounded-age read, which
    may not count the event yet (one recorded longer ago has arrived longer ago, so
    such a read counts it)."""

    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self._seconds = seconds
        self._clock = clock
        self._at: OrderedDict[int, float] = OrderedDict()  # oldest first
        self._lock = threading.Lock()

    def note(self, video_ids: Iterable[int]) -> None:
        now = self._clock()
        with self._lock:
            for video_id in video_ids:
                self._at[video_id] = now
                self._at.move_to_end(video_id)
            while self._at and now - next(iter(self._at.values())) > self._seconds:
                self._at.popitem(last=False)

    def among(self, video_ids: Iterable[int]) -> set[int]:
        now = self._clock()
        with self._lock:
            return {
                video_id
                for video_id in video_ids
                if now - self._at.get(video_id, -math.inf) <= self._seconds
            }


def _bounded_counts(
    events: object, video_ids: list[int], max_age: float, recorded: _RecentlyRecorded
) -> dict[int, VideoStats]:
    """The counts of ``video_ids`` that ``events`` answers from its memory, up to
    ``max_age`` seconds old (:class:`~reelrank.BoundedAgeEventStore`), less those of
    videos in ``recorded``; empty when it cannot (or ``max_age`` is 0)."""
    if max_age <= 0 or not video_ids or not isinstance(events, BoundedAgeEventStore):
        return {}
    just_recorded = recorded.among(video_ids)
    asked = [video_id for video_id in video_ids if video_id not in just_recorded]
    if not asked:
        return {}
    columns = events.stats_columns_within(asked, max_age_seconds=max_age)
    return {} if columns is None else columns.to_stats()


class ReusedCounts:
    """The counts of an event store, each video's reused for ``ttl`` seconds, and
    ranked on for ``stale`` seconds more while read again in the background.

    What search blends with text relevance: a search reads the counts of every match
    (up to :attr:`~reelrank.SearchConfig.candidate_pool`, 500), which on ClickHouse is
    a query merging the matches' aggregate states, the largest cost of a search. Popular
    queries match the same videos, so within ``ttl`` their counts are read once. Counts
    older than ``ttl`` but younger than ``ttl + stale`` are used as they are while one
    background read at a time (on ``refresher``, in batches of 500) reads them again,
    so a query repeated within that time does not wait for the event store. The videos
    with no counts that recent (never read, older than ``ttl + stale``, or dropped by
    :meth:`forget`) are left out of the answer and read in the background too, so a
    search never waits for the event store and ranks them as videos nobody engaged with
    (the prior quality) until that read lands; with ``wait_for_unknown`` they are read
    during the call instead, in one read, whose failure raises as the store's does. A
    failed background read is logged, and its videos are asked for again by the next
    call that needs them. The service drops a video's counts here when it records an
    event on it (:meth:`forget`), and keeps a read of them it made anyway (:meth:`keep`).

    With ``bounded_age`` > 0 and an event store that can answer from its memory
    (:class:`~reelrank.BoundedAgeEventStore`), the videos with no counts recent enough
    are first asked of it, up to ``bounded_age`` seconds old: those it answers are ranked
    on at once and kept as read ``bounded_age`` ago (so, like any read that old, read
    again in the background by the next search that ranks on them within ``ttl +
    stale``); only the rest take the path above. A video :meth:`forget` dropped within
    ``bounded_age`` is not asked, so an event of this process is never missed.
    """

    def __init__(
        self,
        events: EventStore,
        *,
        ttl: float,
        stale: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        refresher: Executor | None = None,
        wait_for_unknown: bool = True,
        bounded_age: float = 0.0,
    ) -> None:
        self._events = events
        self._ttl = ttl
        self._stale = stale
        self._wait_for_unknown = wait_for_unknown
        self._bounded_age = bounded_age
        self._recorded = _RecentlyRecorded(bounded_age, clock)
        self._kept: _Kept[VideoStats] = _Kept(ttl, _KEPT_ENTRIES, clock)
        self._refresher: Executor | WorkerPool | None = refresher
        # A pool made here is shut down by close; an executor given is the caller's. Its
        # thread is a daemon: a read hung on the store does not hold the process's exit.
        self._own_refresher: WorkerPool | None = None
        if refresher is None and (stale > 0 or not wait_for_unknown):
            self._own_refresher = WorkerPool(1, name="reelrank-search-counts")
            self._refresher = self._own_refresher
        self._refresh_lock = threading.Lock()
        self._to_refresh: set[int] = set()
        # The background read under way (or queued), and whether close stopped them.
        self._refreshed: Future[None] | None = None
        self._closed = False
        # The batch the background read is reading: a search that finds them stale
        # meanwhile does not queue them again.
        self._being_read: set[int] = set()
        self._refreshing = False
        # When each video a search ranked on the prior (no recent counts) was first
        # ranked so: it stays on the prior for ``ttl`` even once its background read
        # lands, so the pages of one query agree, as they do on reused counts.
        self._on_prior: OrderedDict[int, float] = OrderedDict()
        self._clock = clock

    def get_stats(self, video_ids: Sequence[int]) -> dict[int, VideoStats]:
        """Counts of ``video_ids`` (zeros for a video never engaged with): those read
        within ``ttl`` seconds from memory, those read within ``ttl + stale`` seconds
        from memory too (and read again in the background); the rest are read in the
        background and left out, or with ``wait_for_unknown`` read now."""
        if not self._wait_for_unknown:
            video_ids = self._off_prior(video_ids)
        found, missing = self._kept.fresh(video_ids)
        if missing and self._stale > 0:
            older, missing = self._kept.fresh(missing, within=self._ttl + self._stale)
            if older:
                found.update(older)
                self._refresh_later(older)
        if missing:
            began = self._kept.generation()
            bounded = _bounded_counts(self._events, missing, self._bounded_age, self._recorded)
            if bounded:
                # Kept as a read that old: aged by the same rules, so the next search
                # within ``ttl + stale`` ranks on them while a background read refreshes
                # them, and one after that asks the store's memory again.
                found.update(bounded)
                self._kept.store(bounded, began=began, read_at=self._clock() - self._bounded_age)
                missing = [video_id for video_id in missing if video_id not in bounded]
        if missing and not self._wait_for_unknown:
            self._rank_on_prior(missing)
        elif missing:
            began = self._kept.generation()
            read = self._events.get_stats(missing)
            self._kept.store(read, began=began)
            found.update(read)
        return found

    def _off_prior(self, video_ids: Sequence[int]) -> list[int]:
        """``video_ids`` less those ranked on the prior for less than ``ttl`` seconds."""
        now = self._clock()
        with self._refresh_lock:
            return [
                video_id
                for video_id in video_ids
                if now - self._on_prior.get(video_id, -math.inf) >= self._ttl
            ]

    def _rank_on_prior(self, video_ids: list[int]) -> None:
        """Rank ``video_ids`` on the prior for the next ``ttl`` seconds, and read their
        counts in the background."""
        now = self._clock()
        with self._refresh_lock:
            for video_id in video_ids:
                self._on_prior[video_id] = now
                self._on_prior.move_to_end(video_id)
            while len(self._on_prior) > _KEPT_ENTRIES:
                self._on_prior.popitem(last=False)
        self._refresh_later(video_ids)

    def _refresh_later(self, video_ids: Iterable[int]) -> None:
        """Read the counts of ``video_ids`` again on the refresher, one batch at a time."""
        with self._refresh_lock:
            if self._closed:
                return
            self._to_refresh.update(
                video_id for video_id in video_ids if video_id not in self._being_read
            )
            if self._refreshing:
                return
            self._refreshing = True
            assert self._refresher is not None  # made whenever a read can be left for later
            self._refreshed = self._refresher.submit(self._refresh)

    def close(self, timeout: float) -> None:
        """Stop the background reads: those not started are dropped, and the one under
        way is waited for up to ``timeout`` seconds (it reads once, within the event
        store's deadline when the store is guarded). The refresher made here is shut
        down; one given to the constructor is left to its owner. Counts are still read
        during searches afterwards. Closing again does nothing more."""
        with self._refresh_lock:
            self._closed = True
            self._to_refresh.clear()
            refreshed = self._refreshed
        if self._own_refresher is not None:
            self._own_refresher.shutdown()
        # A read not started yet is dropped, on an executor given to the constructor too.
        if refreshed is not None and not refreshed.cancel():
            wait_for([refreshed], timeout=timeout)

    def _refresh(self) -> None:
        while True:
            with self._refresh_lock:
                ids = sorted(self._to_refresh)[:_SEARCH_REFRESH_BATCH]
                self._to_refresh.difference_update(ids)
                self._being_read = set(ids)
                if not ids:
                    self._refreshing = False
                    return
            began = self._kept.generation()
            try:
                counts = self._events.get_stats(ids)
            except StoreError as exc:
                # The store is failing: the next search that needs the ids asks again.
                _logger.warning("search counts refresh failed: %s", type(exc).__name__)
                with self._refresh_lock:
                    self._to_refresh.clear()
                    self._being_read = set()
                    self._refreshing = False
                return
            # Not for a video an event was recorded on meanwhile (its forget): the next
            # search reads it, rather than reuse what this read saw before the event.
            self._kept.store(counts, began=began)

    def generation(self) -> int:
        """A mark to take before reading counts elsewhere, for :meth:`keep`."""
        return self._kept.generation()

    def forget(self, video_ids: Iterable[int]) -> None:
        """Read the counts of ``video_ids`` again (an event changed them): during the
        next search that matches them with ``wait_for_unknown``; else now, in the
        background, searches ranking on the counts kept so far as aged ones until that
        read lands (on the prior when ``stale`` is 0). A read that began before this
        (here, or one handed to :meth:`keep`) is not kept for them, since it may have
        missed the event."""
        video_ids = list(video_ids)
        self._recorded.note(video_ids)
        if self._wait_for_unknown:
            self._kept.forget(video_ids)
            return
        # Kept as aged (still within ``ttl + stale`` when they were): a popular video,
        # with events all the time, is not ranked on the prior.
        kept = self._kept.forget(video_ids, keep_aged=self._ttl)
        if kept:
            self._refresh_later(kept)

    def keep(self, counts: Mapping[int, VideoStats], *, began: int | None = None) -> None:
        """Reuse ``counts``, read just now elsewhere, for the next ``ttl`` seconds; with
        ``began`` (:meth:`generation` before the read), except those forgotten since.
        Videos ranked on the prior are ranked on these at once."""
        self._kept.store(counts, began=began)
        with self._refresh_lock:
            for video_id in counts:
                self._on_prior.pop(video_id, None)


class _SharingWithCards(StoreProxy):
    """A store for the feed service that hands some of its reads to the card reader given
    to :meth:`share_with`; every other method and attribute is the store's own (a
    :class:`~reelrank.StoreProxy`), so the proxy satisfies whatever store Protocol the
    store does (``typing.cast`` for a type checker), as :class:`~reelrank.GuardedStore`
    does."""

    def __init__(self, store: object) -> None:
        super().__init__(store)
        self._cards: CardReader | None = None

    def share_with(self, cards: CardReader) -> None:
        """Keep the reads made from now on for ``cards``."""
        self._cards = cards

    def _shared(
        self,
        read: Callable[[], T],
        began: Callable[[CardReader], M],
        keep: Callable[[CardReader, T, M], None],
    ) -> T:
        """``read()``, handed to ``keep`` with the card reader's mark ``began`` took
        before it (nothing kept before :meth:`share_with`)."""
        cards = self._cards
        if cards is None:
            return read()
        mark = began(cards)
        result = read()
        keep(cards, result, mark)
        return result


class EventsSharingCounts(_SharingWithCards):
    """``events`` for the feed service, keeping every count it reads for the cards.

    A cache miss ranks on counts the feed service has just read (its candidate pool's,
    read again in the background every ``candidate_pool_ttl_seconds``, and the followed
    videos' outside the pool, read during the request); without this its cards read the
    shown videos' counts again, a second event-store query in the request. Each
    :meth:`stats_columns` read is handed to the card reader given to :meth:`share_with`
    (:meth:`CardReader.keep_counts`), under the rule every kept count follows: a read
    that began before an event this process recorded on a video (its
    :meth:`CardReader.forget_counts`) is not kept for that video. Every other method
    and attribute is the store's own, so the proxy satisfies whatever store Protocol
    ``events`` does (``typing.cast`` for a type checker), as
    :class:`~reelrank.GuardedStore` does.
    """

    _wrapped: EventStore

    def __init__(self, events: EventStore) -> None:
        super().__init__(events)

    def stats_columns(self, video_ids: Sequence[int]) -> VideoStatsColumns:
        """The store's :meth:`~reelrank.EventStore.stats_columns`, kept for the cards."""
        return self._shared(
            lambda: self._wrapped.stats_columns(video_ids),
            CardReader.counts_generation,
            _keep_counts,
        )


def _keep_counts(cards: CardReader, columns: VideoStatsColumns, began: int) -> None:
    # A model per row: 0.12 ms for the 200 followed videos a request reads at most, and
    # the pool's 1,000 are converted in the background.
    cards.keep_counts(columns.to_stats(), began=began)


class CatalogSharingVideos(_SharingWithCards):
    """``catalog`` for the feed service, keeping every video it reads for the cards.

    A cache miss ranks videos whose details the feed service has just read: its
    candidate pool's (the recent videos and the popular ones, read again in the
    background every ``candidate_pool_ttl_seconds``) and, on a catalog that reads them
    as models, a request's followed videos. Without this the cards read the shown
    videos' details again, a catalog query in the request. Each :meth:`recent_videos`,
    :meth:`get_videos` and :meth:`followed_videos` read is handed to the card reader
    given to :meth:`share_with` (:meth:`CardReader.keep_videos`), kept as read when it
    began: it ages from then (fresh for the reader's ``ttl``), and never replaces
    details the reader read after it began. Every other method and attribute is the
    catalog's own, so the proxy satisfies whatever catalog Protocol ``catalog`` does
    (``typing.cast`` for a type checker), as :class:`~reelrank.GuardedStore` does.
    """

    _wrapped: Catalog

    def __init__(self, catalog: Catalog) -> None:
        super().__init__(catalog)

    def recent_videos(self, *, limit: int, since: datetime | None = None) -> list[Video]:
        """The catalog's :meth:`~reelrank.Catalog.recent_videos`, kept for the cards."""
        return self._shared(
            lambda: self._wrapped.recent_videos(limit=limit, since=since),
            CardReader.videos_clock,
            _keep_video_list,
        )

    def followed_videos(self, user_id: int, *, limit: int) -> list[Video]:
        """The catalog's :meth:`~reelrank.Catalog.followed_videos`, kept for the cards."""
        return self._shared(
            lambda: self._wrapped.followed_videos(user_id, limit=limit),
            CardReader.videos_clock,
            _keep_video_list,
        )

    def get_videos(self, video_ids: Sequence[int]) -> dict[int, Video]:
        """The catalog's :meth:`~reelrank.Catalog.get_videos`, kept for the cards."""
        return self._shared(
            lambda: self._wrapped.get_videos(video_ids),
            CardReader.videos_clock,
            _keep_videos,
        )


def _keep_videos(cards: CardReader, videos: dict[int, Video], read_at: float) -> None:
    cards.keep_videos(videos, read_at=read_at)


def _keep_video_list(cards: CardReader, videos: list[Video], read_at: float) -> None:
    cards.keep_videos({video.video_id: video for video in videos}, read_at=read_at)


def store_guard(
    name: str,
    *,
    deadline: float = _DEADLINE_SECONDS,
    observer: FeedObserver | None = None,
) -> DependencyGuard:
    """A guard for the service's own calls to store ``name`` (outside the feed service).

    Calls run on a small pool of their own under ``deadline``, behind a breaker that
    opens after a few failures, with few calls allowed to stall past their deadline.
    With an ``observer``, each call is counted and timed under ``name`` and its
    operation, next to the feed service's own calls to the same store.
    """
    listener = None
    if observer is not None:

        def listener(operation: str, outcome: StoreCallOutcome, seconds: float) -> None:
            observer.store_call(name, operation, seconds, outcome)

    return DependencyGuard(
        name,
        pool=WorkerPool(_THREADS, name=f"reelrank-{name}"),
        breaker=CircuitBreaker(
            name,
            failure_threshold=_BREAKER_FAILURES,
            reset_timeout_seconds=_BREAKER_RESET_SECONDS,
        ),
        deadline_seconds=deadline,
        max_stalled=_MAX_STALLED,
        on_call=listener,
    )


class _GuardedReads:
    """Reads of one store under exactly one guard, ``None`` (logged) when the store fails
    or the guard skips the call.

    A store that is already a :class:`~reelrank.GuardedStore` (the service guards its
    event store for every caller) is read through its own guard: guarding it again
    would send each read across a second worker thread, and count and time it twice.
    Any other store gets a guard of its own (see :func:`store_guard`).
    """

    def __init__(self, name: str, store: object, observer: FeedObserver | None) -> None:
        self._guard: DependencyGuard | None
        if isinstance(store, GuardedStore):
            self.name = store.guard.name
            self._guard = None
        else:
            self.name = name
            self._guard = store_guard(name, observer=observer)

    @property
    def own_guard(self) -> DependencyGuard | None:
        """The guard made for these reads; ``None`` when they use the store's own."""
        return self._guard

    def call_or_none(self, read: Callable[[], T]) -> T | None:
        """``read()`` under the guard; ``None`` when the store fails or is skipped."""
        try:
            if self._guard is None:
                return read()
            return self._guard.call_with_deadline(
                self._guard.deadline_seconds, read, operation=_operation(read)
            )
        except StoreError as exc:
            _logger.warning("call to %s failed: %s", self.name, type(exc).__name__)
            return None


def _operation(read: Callable[[], object]) -> str:
    target = read.func if isinstance(read, functools.partial) else read
    return getattr(target, "__name__", "call")


@dataclass(slots=True)
class CardData:
    """What the cards of one response show, and the stores worked around to get it."""

    videos: dict[int, Video]
    creators: dict[int, Creator]
    stats: dict[int, VideoStats]
    degraded: list[str] = field(default_factory=list)
    """``"catalog"`` when details came from before an outage, ``"events"`` when the
    counts did (or are missing)."""


class CardReader:
    """Reads card details from ``catalog`` and counts from ``events``, degrading on outages.

    Details are reused for ``ttl`` seconds, and for ``details_stale`` seconds more
    they are still shown while a background read fetches them again, so a card whose
    details were read at all within ``ttl + details_stale`` waits for no catalog read
    (``ttl=0``: read on every call). Counts are reused for ``counts_ttl`` seconds
    unless a read asks for fresh ones (a video's detail, where a client looks for its
    own like or watch); past that they are still shown, however old, while a
    background read fetches them again (``counts_ttl=0``: read on every call). The
    background reads run on one thread, a batch at a time. The last details and counts
    read are kept as the fallback for an outage. Each store is read under one
    guard: a :class:`~reelrank.GuardedStore`'s own (its deadline, breaker and call
    counting), else one made here, which with an ``observer`` counts and times every
    call (see :func:`store_guard`). With ``search_counts``, the counts search reuses
    follow this reader's: :meth:`forget_counts` drops them there too, and
    :meth:`read_counts` keeps its read there too. With ``bounded_age`` > 0 and an event
    store that can answer from its memory (:class:`~reelrank.BoundedAgeEventStore`),
    counts never read are first asked of it, up to ``min(bounded_age, counts_ttl)``
    seconds old, and kept as read that long ago; a video :meth:`forget_counts` dropped
    within that time is read from the store, so that the next request shows an event
    this process recorded.
    """

    def __init__(
        self,
        catalog: Catalog,
        events: EventStore,
        *,
        ttl: float,
        details_stale: float = 0.0,
        counts_ttl: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        observer: FeedObserver | None = None,
        search_counts: ReusedCounts | None = None,
        bounded_age: float = 0.0,
    ) -> None:
        self._catalog = catalog
        # With nothing reused (``ttl`` 0) nothing is shown stale either.
        self._details_within = ttl + details_stale if ttl > 0 and details_stale > 0 else None
        self._search_counts = search_counts
        self._events = events
        self._clock = clock
        self._bounded_age = min(bounded_age, counts_ttl)
        self._recorded = _RecentlyRecorded(self._bounded_age, clock)
        # One thread: background reads run one batch at a time. A daemon: a read hung on
        # the store does not hold the process's exit.
        self._refresher = WorkerPool(1, name="reelrank-cards")
        self._catalog_reads = _GuardedReads("catalog", catalog, observer)
        self._events_reads = _GuardedReads("events", events, observer)
        self._videos: _Kept[Video] = _Kept(ttl, _KEPT_ENTRIES, clock)
        self._creators: _Kept[Creator] = _Kept(ttl, _KEPT_ENTRIES, clock)
        self._stats: _Kept[VideoStats] = _Kept(counts_ttl, _KEPT_ENTRIES, clock)
        self._refresh_in_background = counts_ttl > 0
        catalog_reads, events_reads = self._catalog_reads, self._events_reads
        self._refresh_videos = self._background(self._videos, catalog_reads, catalog.get_videos)
        self._refresh_creators = self._background(
            self._creators, catalog_reads, catalog.get_creators
        )
        self._refresh_counts = self._background(self._stats, events_reads, events.get_stats)

    def _background(
        self, kept: _Kept[V], guarded: _GuardedReads, read: Callable[[list[int]], dict[int, V]]
    ) -> _BackgroundReads[V]:
        return _BackgroundReads(
            kept,
            lambda ids: guarded.call_or_none(functools.partial(read, ids)),
            pool=self._refresher,
            batch=_REFRESH_BATCH,
            clock=self._clock,
        )

    def read(self, video_ids: list[int], *, fresh_counts: bool = False) -> CardData:
        """Details and counts of ``video_ids``; a video nothing is known about is left out.

        ``fresh_counts`` (a video's detail) reads every video's counts from the event
        store, however recently they were read, and its details once past ``ttl``.
        """
        degraded: list[str] = []
        list_cards = not fresh_counts
        videos = self._details(
            self._videos, video_ids, self._catalog.get_videos, self._refresh_videos,
            stale=list_cards, degraded=degraded,
        )  # fmt: skip
        creator_ids = sorted({video.creator_id for video in videos.values()})
        creators = self._details(
            self._creators, creator_ids, self._catalog.get_creators, self._refresh_creators,
            stale=list_cards, degraded=degraded,
        )  # fmt: skip
        ids = list(videos)
        stats, stale = ({}, ids) if fresh_counts else self._stats.fresh(ids)
        if stale and not fresh_counts and self._refresh_in_background:
            older = self._stats.kept(stale)
            if older:
                stats.update(older)
                self._refresh_counts.add(older)
                stale = [video_id for video_id in stale if video_id not in older]
        if stale and not fresh_counts:
            began = self._stats.generation()
            bounded = _bounded_counts(self._events, stale, self._bounded_age, self._recorded)
            if bounded:
                self._stats.store(bounded, began=began, read_at=self._clock() - self._bounded_age)
                stats.update(bounded)
                stale = [video_id for video_id in stale if video_id not in bounded]
        if stale:
            began = self._stats.generation()
            read = self._events_reads.call_or_none(functools.partial(self._events.get_stats, stale))
            if read is None:
                stats.update(self._stats.kept(stale))
                degraded.append("events")
            else:
                # Not for a video an event was recorded on meanwhile: its next card reads
                # it again (or shows the like's fresh read) rather than this older one.
                self._stats.store(read, began=began)
                stats.update(read)
        return CardData(videos, creators, stats, degraded)

    def read_counts(self, video_ids: Sequence[int]) -> dict[int, VideoStats]:
        """Read the counts of ``video_ids`` from the event store now, and keep them for
        the next cards (fresh for ``counts_ttl``, as any other read). A failed read
        raises as the store's does (no kept counts are served instead)."""
        began_here = self._stats.generation()
        began = None if self._search_counts is None else self._search_counts.generation()
        read = self._events.get_stats(video_ids)
        self._stats.store(read, began=began_here)
        if self._search_counts is not None:
            self._search_counts.keep(read, began=began)
        return read

    def counts_generation(self) -> int:
        """A mark to take before reading counts elsewhere, for :meth:`keep_counts`."""
        return self._stats.generation()

    def keep_counts(self, counts: Mapping[int, VideoStats], *, began: int) -> None:
        """Show ``counts``, read just now elsewhere, on the next cards as this reader's
        own reads are shown (fresh for ``counts_ttl``), except those of videos an event
        was recorded on since ``began`` (:meth:`counts_generation` before the read)."""
        self._stats.store(counts, began=began)

    def videos_clock(self) -> float:
        """This reader's time, to take before reading videos elsewhere, for
        :meth:`keep_videos`."""
        return self._clock()

    def keep_videos(self, videos: Mapping[int, Video], *, read_at: float) -> None:
        """Show ``videos``, read elsewhere by a read that began at ``read_at``
        (:meth:`videos_clock`), on the next cards as this reader's own reads are shown:
        fresh for ``ttl`` from ``read_at``, and not for a video this reader read since."""
        self._videos.store(videos, read_at=read_at)

    def forget_counts(self, video_ids: Iterable[int]) -> None:
        """Read the counts of ``video_ids`` during the next request that shows them, or
        searches for them (an event changed them)."""
        ids = list(video_ids)
        self._recorded.note(ids)
        self._stats.forget(ids)
        if self._search_counts is not None:
            self._search_counts.forget(ids)

    def prefetch(self, videos: Iterable[Video]) -> int:
        """Keep ``videos``, their creators and their counts (read now), so their cards
        are built without a store call, and while the catalog is down; returns how many
        videos were kept. Creators and counts are read under their store's guard, as
        every card read is; those a store cannot give now are read later."""
        kept = {video.video_id: video for video in videos}
        self._videos.store(kept)
        creator_ids = sorted({video.creator_id for video in kept.values()})
        creators = self._catalog_reads.call_or_none(
            functools.partial(self._catalog.get_creators, creator_ids)
        )
        if creators is not None:
            self._creators.store(creators)
        ids = list(kept)
        for start in range(0, len(ids), _REFRESH_BATCH):
            chunk = ids[start : start + _REFRESH_BATCH]
            began = self._stats.generation()
            counts = self._events_reads.call_or_none(
                functools.partial(self._events.get_stats, chunk)
            )
            if counts is None:
                break
            self._stats.store(counts, began=began)
        return len(kept)

    @property
    def guards(self) -> tuple[DependencyGuard, ...]:
        """The guards this reader made for its reads (a store that is a
        :class:`~reelrank.GuardedStore` is read through its own): stop them with
        :meth:`DependencyGuard.close <reelrank.DependencyGuard.close>` once nothing reads
        cards any more."""
        reads = (self._catalog_reads, self._events_reads)
        return tuple(read.own_guard for read in reads if read.own_guard is not None)

    def close(self, timeout: float) -> None:
        """Stop the background reads: those not started are dropped, and those under way
        are waited for up to ``timeout`` seconds (each reads once, under its store's
        guard and deadline). Cards shown afterwards show the counts kept, however old,
        and read details past ``ttl`` during the request. Closing again does nothing
        more."""
        under_way = [
            reads.close()
            for reads in (self._refresh_videos, self._refresh_creators, self._refresh_counts)
        ]
        self._details_within = None
        self._refresher.shutdown()
        # A read not started yet is dropped.
        running = [read for read in under_way if read is not None and not read.cancel()]
        if running:
            wait_for(running, timeout=timeout)

    def _details(
        self,
        kept: _Kept[V],
        ids: list[int],
        read: Callable[[list[int]], dict[int, V]],
        refresh: _BackgroundReads[V],
        *,
        stale: bool,
        degraded: list[str],
    ) -> dict[int, V]:
        found, missing = kept.fresh(ids)
        within = self._details_within
        if missing and stale and within is not None:
            older, missing = kept.fresh(missing, within=within)
            if older:
                found.update(older)
                refresh.add(older)
        if not missing:
            return found
        fetched = self._catalog_reads.call_or_none(functools.partial(read, missing))
        if fetched is None:
            if "catalog" not in degraded:
                degraded.append("catalog")
            found.update(kept.kept(missing))
        else:
            kept.store(fetched)
            found.update(fetched)
        return found
