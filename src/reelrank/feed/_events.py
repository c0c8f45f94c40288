"""Recording engagement: validate an event against the catalog, then apply it once."""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import Field

from .._workers import WorkerPool
from ..exceptions import (
    ConfigError,
    IdempotencyConflictError,
    InvalidInputError,
    NotReadyError,
    StoreError,
    StoreTimeoutError,
)
from ..models._base import StrictModel
from ..models._catalog import ProcessingState, Video
from ..models._engagement import EngagementEvent, EngagementKind
from ..stores._common import DEFAULT_IDEMPOTENCY_SECONDS
from ..stores._protocols import Catalog, EngagementLog, EventStore, SeenStore
from ..validation import utc_now
from ._observer import FeedObserver, StoreCallOutcome, active

__all__ = ["EngagementRecorder", "RecorderConfig", "watch_completion"]


class RecorderConfig(StrictModel):
    """How :class:`EngagementRecorder` validates and applies events."""

    max_future_skew_seconds: float = Field(default=300.0, ge=0.0, allow_inf_nan=False)
    """How far ``occurred_at`` may lie ahead of the server clock (client clocks drift)."""
    max_event_age_seconds: float | None = Field(default=None, gt=0.0, allow_inf_nan=False)
    """How far ``occurred_at`` may lie behind the server clock; set it to the event
    store's idempotency horizon (``7 * 86400``, the in-memory and Redis stores' default)
    for events from clients: an older event could be a redelivery whose id the store has
    forgotten, and would count twice. ``None`` (the default) accepts any age, as a
    recorder that imports history needs."""
    remembered_payloads: int = Field(default=1_000_000, ge=0)
    """How many recorded events' payload fingerprints are kept (the most recent, within
    :attr:`max_event_age_seconds`, or a week without it) to tell a redelivery from an
    ``event_id`` reused for another event; ``0`` turns the check off."""
    mark_watched_seen: bool = False
    """Whether a watch also marks the video seen for the user, at ``occurred_at``.

    Needs a seen store. Off by default because feed pages usually mark what they serve;
    turn it on when videos reach users by other paths (shared links, profiles).
    """
    parallel_writes: bool = False
    """Whether the engagement log's write (and the seen mark) run concurrently with the
    event store's append, on a small thread pool the recorder owns, so that recording
    waits for the slowest write instead of their sum.

    Off by default: a recorder in a script or a notebook starts no thread. Turn it on
    in a service whose event store and log are remote (the example service does); call
    :meth:`EngagementRecorder.close` when done with the recorder.
    """
    parallel_write_threads: int = Field(default=8, ge=1, le=256)
    """Threads of the pool of :attr:`parallel_writes`: at most this many writes run
    beside their appends at once, and a call that finds too few idle threads for its
    writes makes them in turn. Size it to the event requests a process serves at once
    (each holds one thread per write beside its append: the log's, and the seen mark's
    with :attr:`mark_watched_seen`)."""


def watch_completion(event: EngagementEvent, video: Video) -> float:
    """The completion a watch counts with.

    An explicit ``completion`` is used as given; otherwise it is
    ``min(watched_seconds / duration_seconds, 1)``, so a looped video counts as
    fully watched once.
    """
    if event.completion is not None:
        return event.completion
    if event.watched_seconds is None:
        raise InvalidInputError("watched_seconds", "a watch needs watched_seconds or completion")
    return min(event.watched_seconds / video.duration_seconds, 1.0)


_T = TypeVar("_T")

_Write = tuple[str, Callable[..., object], tuple[Any, ...]]
"""A write that follows the append: the store's name (as reported), the method, its
arguments."""


def _fingerprint(event: EngagementEvent, *, with_time: bool) -> str:
    """A digest of what the client sent; the time only if the client gave it."""
    exclude = None if with_time else {"occurred_at"}
    return hashlib.sha256(event.model_dump_json(exclude=exclude).encode()).hexdigest()


class _Payloads:
    """Fingerprints of recently recorded events by ``event_id``, bounded in number and age.

    Forgotten oldest first; thread-safe.
    """

    def __init__(self, max_events: int, horizon: timedelta) -> None:
        self._max_events = max_events
        self._horizon = horizon
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[datetime, str]] = OrderedDict()

    def get(self, event_id: str, now: datetime) -> str | None:
        with self._lock:
            self._expire(now)
            entry = self._entries.get(event_id)
        return None if entry is None else entry[1]

    def put(self, event_id: str, fingerprint: str, now: datetime) -> None:
        if self._max_events == 0:
            return
        with self._lock:
            self._entries[event_id] = (now, fingerprint)
            self._entries.move_to_end(event_id)
            while len(self._entries) > self._max_events:
                self._entries.popitem(last=False)

    def _expire(self, now: datetime) -> None:
        oldest_kept = now - self._horizon
        while self._entries:
            recorded_at = next(iter(self._entries.values()))[0]
            if recorded_at > oldest_kept:
                return
            self._entries.popitem(last=False)


class EngagementRecorder:
    """Validates engagement events and records each one exactly once.

    :meth:`record` checks an event against the catalog and the clock, fills in the
    completion of a watch (see :func:`watch_completion`) and appends it to the event
    store, which updates the video's statistics and the user's affinity with the
    creator. A bad event raises before anything is written:

    * a malformed field raises :class:`~reelrank.InvalidInputError` naming it (negative
      or non-finite ``watched_seconds``, ``completion`` outside ``[0, 1]``, a naive
      ``occurred_at`` or one out of range in UTC, one further ahead of the clock than
      :attr:`RecorderConfig.max_future_skew_seconds` or further behind it than
      :attr:`RecorderConfig.max_event_age_seconds`);
    * an ``event_id`` this recorder recorded before for a different event raises
      :class:`~reelrank.IdempotencyConflictError` naming ``event_id``;
    * an unknown video raises :class:`~reelrank.NotFoundError` (``kind="video"``);
    * a video that is not ``ready`` raises :class:`~reelrank.NotReadyError`.

    The ``event_id`` is the idempotency key. Delivering the same event again is
    harmless: the store counts it once and :meth:`record` returns ``False``, as it did
    for every redelivery. Reusing an id for another event is an error, detected from a
    fingerprint of what the client sent (its ``occurred_at`` only when the client gave
    one), kept by this recorder for its
    :attr:`RecorderConfig.remembered_payloads` most recent events within
    :attr:`RecorderConfig.max_event_age_seconds`. Event stores compare ids only, so a
    reused id that reaches another process, or this one after its fingerprint was
    forgotten, is dropped as a duplicate.

    A like is keyed by ``(user_id, video_id)`` in the event store: liking a liked
    video again, under a new ``event_id``, is still one like.

    With a ``log`` (an :class:`~reelrank.EngagementLog`, which discovery features read),
    each applied event is also kept there, as appended (a watch with its completion).
    With ``variant_for`` (for example :meth:`Experiment.variant_name
    <reelrank.Experiment.variant_name>`), an event that arrives without a ``variant``
    is recorded with the user's variant, so every event can be attributed to one.
    With ``mark_watched_seen``, a watch marks the video seen. Both writes are made for
    redeliveries too (they are idempotent), so retrying an event after any write failed
    completes the job. They follow the event store's append, one after the other, or
    with :attr:`RecorderConfig.parallel_writes` run beside it on the recorder's thread
    pool (threads named ``reelrank-recorder``, started on the first event and stopped
    by :meth:`close`), so :meth:`record` waits for the slowest write instead of their
    sum; if all of the pool's threads are busy, a call writes in turn. Either way the
    call returns, or raises, once every write it started has ended, and a failed write
    fails the call: with the event store's error when the append failed (a retry is
    what the client owes it), else the log's, else the seen store's. Concurrent writes
    change one thing: the log may hold an event whose append failed, until the client
    retries it (one after the other, the log may lack an event whose append succeeded,
    until then). The recorder waits for each write as long as the store takes: bound
    them with the stores' own deadlines (a :class:`~reelrank.GuardedStore` raises
    :class:`~reelrank.StoreTimeoutError` past its deadline). The pool's writes run in
    a copy of the caller's :mod:`contextvars` context, so a request's log fields and
    trace span reach them.

    With an ``observer`` (a :class:`~reelrank.FeedObserver`), each store call is
    reported to :meth:`~reelrank.FeedObserver.store_call` as store ``catalog``,
    ``events``, ``log`` or ``seen``: ``ok`` when the store answered (a video it does not
    know included), ``timeout`` for :class:`~reelrank.StoreTimeoutError`, ``error`` for
    any other exception.

    With ``on_user_event`` (for example :meth:`FeedRankingService.forget_affinities
    <reelrank.FeedRankingService.forget_affinities>`), it is called with the event's
    user id once :meth:`record` has applied the event or failed to, duplicates
    included, so that a feed service reusing the user's affinities reads them again.
    """

    def __init__(
        self,
        catalog: Catalog,
        events: EventStore,
        *,
        seen: SeenStore | None = None,
        log: EngagementLog | None = None,
        config: RecorderConfig | None = None,
        now: Callable[[], datetime] = utc_now,
        variant_for: Callable[[int], str | None] | None = None,
        observer: FeedObserver | None = None,
        on_user_event: Callable[[int], object] | None = None,
    ) -> None:
        self._config = cfg = config or RecorderConfig()
        if cfg.mark_watched_seen and seen is None:
            raise ConfigError("mark_watched_seen", True, "needs a seen store")
        horizon = cfg.max_event_age_seconds or DEFAULT_IDEMPOTENCY_SECONDS
        self._payloads = _Payloads(cfg.remembered_payloads, timedelta(seconds=horizon))
        self._catalog = catalog
        self._events = events
        self._seen = seen
        self._log = log
        self._now = now
        self._variant_for = variant_for
        self._on_user_event = on_user_event
        self._observer = active(observer)
        self._pool_lock = threading.Lock()
        self._pool_idle = threading.Condition(self._pool_lock)
        self._pool: WorkerPool | None = None
        self._writes_in_pool = 0
        self._closed = False

    def close(self, timeout: float | None = None) -> None:
        """Stop the thread pool of :attr:`RecorderConfig.parallel_writes`, waiting up to
        ``timeout`` seconds (``None``: as long as it takes) for the writes under way.

        The recorder stays usable: later calls write one after the other. Closing
        again, or a recorder that never started its pool, does nothing.
        """
        with self._pool_lock:
            self._closed = True
            pool, self._pool = self._pool, None
            if pool is None:
                return
            # Idle threads exit now; busy ones after their write. They are daemons, so
            # a write hung on its store past the wait does not hold the interpreter's exit.
            pool.shutdown()
            self._pool_idle.wait_for(lambda: self._writes_in_pool == 0, timeout)

    @property
    def config(self) -> RecorderConfig:
        """The configuration in use."""
        return self._config

    def record(
        self, event: EngagementEvent | Mapping[str, Any], *, video: Video | None = None
    ) -> bool:
        """Validate and apply one event; ``False`` if its ``event_id`` was applied before.

        ``event`` may be a mapping (decoded JSON, for example); it is validated as an
        :class:`~reelrank.EngagementEvent`. ``video``, the event's video as the caller
        has just read it from the catalog, saves the recorder reading it again (every
        method that records takes it); it must be that video, else
        :class:`~reelrank.InvalidInputError` naming ``video``.

        Raises:
            InvalidInputError: naming the bad field, ``occurred_at`` among them.
            IdempotencyConflictError: naming ``event_id``, reused for another event.
            NotFoundError: for an unknown video.
            NotReadyError: for a video that is not ready.
        """
        if not isinstance(event, EngagementEvent):
            if not isinstance(event, Mapping):
                raise InvalidInputError("event", "must be an EngagementEvent or a mapping")
            event = EngagementEvent.model_validate(dict(event))
        return self._record(event, timed_by_client=True, video=video)

    def _record(
        self, event: EngagementEvent, *, timed_by_client: bool, video: Video | None = None
    ) -> bool:
        now = self._now()
        self._check_time(event.occurred_at, now)
        fingerprint = _fingerprint(event, with_time=timed_by_client)
        if self._payloads.get(event.event_id, now) not in (None, fingerprint):
            raise IdempotencyConflictError(
                "event_id", event.event_id, "already recorded for a different event"
            )
        try:
            applied = self._apply(event, video)
        finally:
            # Even when a write failed: it may have landed.
            if self._on_user_event is not None:
                self._on_user_event(event.user_id)
        if applied:
            self._payloads.put(event.event_id, fingerprint, now)
        return applied

    def _check_time(self, occurred_at: datetime, now: datetime) -> None:
        cfg = self._config
        latest = now + timedelta(seconds=cfg.max_future_skew_seconds)
        if occurred_at > latest:
            raise InvalidInputError(
                "occurred_at",
                f"{occurred_at.isoformat()} is in the future (allowed up to {latest.isoformat()})",
            )
        if cfg.max_event_age_seconds is not None:
            earliest = now - timedelta(seconds=cfg.max_event_age_seconds)
            if occurred_at < earliest:
                raise InvalidInputError(
                    "occurred_at",
                    f"{occurred_at.isoformat()} is older than the idempotency horizon "
                    f"(allowed from {earliest.isoformat()})",
                )

    def _store_call(self, store: str, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """``fn(*args, **kwargs)``, reported to the observer if there is one."""
        observer = self._observer
        if observer is None:
            return fn(*args, **kwargs)
        started = time.perf_counter()
        outcome: StoreCallOutcome = "ok"
        try:
            return fn(*args, **kwargs)
        except StoreTimeoutError:
            outcome = "timeout"
            raise
        except StoreError:
            outcome = "error"
            raise
        except LookupError:
            # A video the catalog does not know is an answer, not a failure of the store.
            raise
        except Exception:
            outcome = "error"
            raise
        finally:
            observer.store_call(
                store, getattr(fn, "__name__", "call"), time.perf_counter() - started, outcome
            )

    def _apply(self, event: EngagementEvent, video: Video | None) -> bool:
        if video is None:
            video = self._store_call("catalog", self._catalog.get_video, event.video_id)
        elif not isinstance(video, Video) or video.video_id != event.video_id:
            raise InvalidInputError("video", "must be the Video the event's video_id names")
        if video.state is not ProcessingState.READY:
            raise NotReadyError(video.video_id, video.state.value)
        if event.kind is EngagementKind.WATCH:
            completion = watch_completion(event, video)
            if completion != event.completion:
                event = EngagementEvent.model_validate(
                    {**event.model_dump(), "completion": completion}
                )
        if event.variant is None and self._variant_for is not None:
            event = EngagementEvent.model_validate(
                {**event.model_dump(), "variant": self._variant_for(event.user_id)}
            )
        later: list[_Write] = []
        if self._log is not None:
            later.append(("log", self._log.record, (event,)))
        if (
            self._seen is not None
            and self._config.mark_watched_seen
            and event.kind is EngagementKind.WATCH
        ):
            later.append(
                ("seen", self._seen.mark_seen, (event.user_id, [event.video_id], event.occurred_at))
            )
        beside = self._start_beside(later)
        if beside is None:
            applied = self._store_call(
                "events", self._events.append, event, creator_id=video.creator_id
            )
            for store, write, args in later:
                self._store_call(store, write, *args)
            return applied
        try:
            applied = self._store_call(
                "events", self._events.append, event, creator_id=video.creator_id
            )
        finally:
            # Even when the append failed: the call ends after every write it started.
            errors = [future.exception() for future in beside]
        for error in errors:
            if error is not None:
                raise error
        return applied

    def _start_beside(self, writes: list[_Write]) -> list[Future[object]] | None:
        """``writes`` started on the pool, or ``None`` to make them in turn (the option
        off, the recorder closed, nothing to write or too few idle threads)."""
        if not writes or not self._config.parallel_writes:
            return None
        with self._pool_lock:
            threads = self._config.parallel_write_threads
            if self._closed or self._writes_in_pool + len(writes) > threads:
                return None
            if self._pool is None:
                self._pool = WorkerPool(threads, name="reelrank-recorder")
            self._writes_in_pool += len(writes)
            # The pool runs each write in a copy of this context (one context cannot be
            # entered by two threads at once).
            return [
                self._pool.submit(functools.partial(self._write_in_pool, write)) for write in writes
            ]

    def _write_in_pool(self, write: _Write) -> object:
        store, method, args = write
        try:
            return self._store_call(store, method, *args)
        finally:
            with self._pool_lock:
                self._writes_in_pool -= 1
                if self._writes_in_pool == 0:
                    self._pool_idle.notify_all()

    def watch(
        self,
        user_id: int,
        video_id: int,
        *,
        event_id: str,
        occurred_at: datetime | None = None,
        watched_seconds: float | None = None,
        completion: float | None = None,
        variant: str | None = None,
        video: Video | None = None,
    ) -> bool:
        """Record a watch; ``occurred_at`` defaults to now (``video``: see :meth:`record`)."""
        return self._record_kind(
            EngagementKind.WATCH,
            user_id,
            video_id,
            event_id,
            occurred_at,
            variant,
            video,
            watched_seconds=watched_seconds,
            completion=completion,
        )

    def like(
        self,
        user_id: int,
        video_id: int,
        *,
        event_id: str,
        occurred_at: datetime | None = None,
        variant: str | None = None,
        video: Video | None = None,
    ) -> bool:
        """Record a like; liking a video the user already likes changes no statistic."""
        return self._record_kind(
            EngagementKind.LIKE, user_id, video_id, event_id, occurred_at, variant, video
        )

    def unlike(
        self,
        user_id: int,
        video_id: int,
        *,
        event_id: str,
        occurred_at: datetime | None = None,
        variant: str | None = None,
        video: Video | None = None,
    ) -> bool:
        """Record an unlike, which reverses the user's like (if any) and its affinity credit."""
        return self._record_kind(
            EngagementKind.UNLIKE, user_id, video_id, event_id, occurred_at, variant, video
        )

    def share(
        self,
        user_id: int,
        video_id: int,
        *,
        event_id: str,
        channel: str,
        occurred_at: datetime | None = None,
        variant: str | None = None,
        video: Video | None = None,
    ) -> bool:
        """Record a share through ``channel``."""
        return self._record_kind(
            EngagementKind.SHARE,
            user_id,
            video_id,
            event_id,
            occurred_at,
            variant,
            video,
            channel=channel,
        )

    def _record_kind(
        self,
        kind: EngagementKind,
        user_id: int,
        video_id: int,
        event_id: str,
        occurred_at: datetime | None,
        variant: str | None,
        video: Video | None,
        **extra: Any,
    ) -> bool:
        fields: dict[str, Any] = {
            "event_id": event_id,
            "kind": kind,
            "user_id": user_id,
            "video_id": video_id,
            "occurred_at": self._now() if occurred_at is None else occurred_at,
            "variant": variant,
        }
        fields.update({name: value for name, value in extra.items() if value is not None})
        # A time the recorder filled in differs on every retry, so it is no part of what
        # a retry must repeat.
        return self._record(
            EngagementEvent(**fields), timed_by_client=occurred_at is not None, video=video
        )
