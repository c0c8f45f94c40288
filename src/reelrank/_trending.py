"""Trending sounds and hashtags: time-decayed, engagement-weighted usage over a window.

Every *use* of a sound or hashtag earns a weight that halves every
:attr:`TrendingConfig.half_life_hours`. A use is either a ready video published in the
window that carries the sound or hashtag (a *post*), or an engagement event in the
window on a video that carries it. For a window of length ``W`` ending at ``now``::

    score(x) = sum over uses u of x in (now - W, now]:  w_kind(u) * 2 ** (-age(u) / half_life)

where ``age(u) = now - time(u)`` in hours. The previous window ``(now - 2W, now - W]`` is
scored the same way with ages measured from its own end, so the two scores compare
like for like; each item carries ``delta = score - previous_score`` and
``ratio = score / previous_score``.

Results are stored as snapshots; when a store fails, the last snapshot of the same kind
and window is served with ``stale_as_of`` set to when it was computed.
"""

from __future__ import annotations

import bisect
import contextlib
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal, TypeVar

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from ._config import StrictModel
from ._memory import DEFAULT_IDEMPOTENCY_SECONDS, IdempotencyWindow
from ._models import (
    DomainModel,
    EngagementEvent,
    EngagementKind,
    UtcDatetime,
    Video,
    check_aware,
    check_id,
    check_limit,
    finite_or_raise,
)
from .exceptions import InvalidInputError, StoreError
from .protocols import Catalog, EngagementLog, TrendingSnapshotStore

__all__ = [
    "InMemoryEngagementLog",
    "InMemoryTrendingSnapshotStore",
    "Trend",
    "TrendingConfig",
    "TrendingItem",
    "TrendingKind",
    "TrendingSnapshot",
    "Trending",
    "decayed_scores",
]

_Key = TypeVar("_Key", bound=Hashable)
_SECONDS_PER_HOUR = 3600.0
MIN_WINDOW_HOURS = 1.0
MAX_WINDOW_HOURS = 168.0


class TrendingKind(StrEnum):
    """What is trending."""

    SOUND = "sound"
    HASHTAG = "hashtag"


class Trend(StrEnum):
    """Direction of an item against the previous window."""

    NEW = "new"
    """No use at all in the previous window."""
    RISING = "rising"
    """The score grew by more than the steady tolerance."""
    FALLING = "falling"
    """The score shrank by more than the steady tolerance."""
    STEADY = "steady"
    """The score stayed within the steady tolerance of the previous one."""


class TrendingConfig(StrictModel):
    """Decay, weights and limits of the trending computation (formula in the module docs)."""

    window_hours: float = Field(
        default=24.0, ge=MIN_WINDOW_HOURS, le=MAX_WINDOW_HOURS, allow_inf_nan=False
    )
    """Default window length in hours, from 1 hour to 7 days."""
    half_life_hours: float = Field(default=6.0, gt=0.0, le=10_000.0, allow_inf_nan=False)
    """Age in hours at which a use counts half."""
    post_weight: float = Field(default=5.0, ge=0.0, allow_inf_nan=False)
    """Weight of a new video that uses the sound or hashtag."""
    watch_weight: float = Field(default=1.0, ge=0.0, allow_inf_nan=False)
    """Weight of a watch of a video that uses it."""
    like_weight: float = Field(default=2.0, ge=0.0, allow_inf_nan=False)
    """Weight of a like."""
    share_weight: float = Field(default=4.0, ge=0.0, allow_inf_nan=False)
    """Weight of a share."""
    comment_weight: float = Field(default=3.0, ge=0.0, allow_inf_nan=False)
    """Weight of a comment."""
    unlike_weight: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)
    """Weight of an unlike; usage is never negative, so an unlike counts at most as a use."""
    steady_tolerance: float = Field(default=0.05, ge=0.0, le=1.0, allow_inf_nan=False)
    """An item whose ratio to the previous window is within ``1 ± this`` is ``steady``."""
    max_events: int = Field(default=1_000_000, ge=1, le=100_000_000)
    """Most events read for the two windows; the newest are kept."""
    max_videos: int = Field(default=100_000, ge=1, le=10_000_000)
    """Most newly published videos read for the two windows."""
    snapshot_size: int = Field(default=200, ge=1, le=100_000)
    """Items kept in a stored snapshot; also the largest ``limit`` a caller may ask for."""
    reuse_seconds: float = Field(default=60.0, ge=0.0, le=86_400.0, allow_inf_nan=False)
    """A stored snapshot computed at most this many seconds before ``now`` is served as
    is (it is not stale) instead of computing again; 0 computes on every call."""

    def weight_of(self, kind: EngagementKind) -> float:
        """The usage weight of one event of this kind."""
        return {
            EngagementKind.WATCH: self.watch_weight,
            EngagementKind.LIKE: self.like_weight,
            EngagementKind.UNLIKE: self.unlike_weight,
            EngagementKind.SHARE: self.share_weight,
            EngagementKind.COMMENT: self.comment_weight,
        }[kind]


class TrendingItem(DomainModel):
    """One trending sound or hashtag."""

    key: int | str
    """The sound id (sounds) or the lower-case hashtag without ``#`` (hashtags)."""
    score: float = Field(ge=0.0, allow_inf_nan=False)
    """Decayed, weighted usage in the window."""
    count: int = Field(strict=True, ge=0)
    """Uses in the window (posts plus events), undecayed and unweighted."""
    previous_score: float = Field(ge=0.0, allow_inf_nan=False)
    """The same score for the previous window."""
    delta: float = Field(allow_inf_nan=False)
    """``score - previous_score``."""
    ratio: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    """``score / previous_score``; ``None`` when the previous score is 0."""
    trend: Trend
    """Direction against the previous window."""


class TrendingSnapshot(DomainModel):
    """A ranked trending list, as computed at ``computed_at``."""

    kind: TrendingKind
    """Sounds or hashtags."""
    window_hours: float = Field(ge=MIN_WINDOW_HOURS, le=MAX_WINDOW_HOURS, allow_inf_nan=False)
    """Window length the scores cover."""
    computed_at: UtcDatetime
    """End of the window: the ``now`` of the computation."""
    items: tuple[TrendingItem, ...]
    """Items by score descending (ties: key ascending)."""
    stale_as_of: UtcDatetime | None = None
    """Set when a store failed and this stored snapshot was served instead of a fresh
    result: the time the snapshot was computed. ``None`` for a fresh result."""


def decayed_scores(
    keys: Iterable[_Key],
    weights: NDArray[np.float64],
    ages_hours: NDArray[np.float64],
    half_life_hours: float,
) -> dict[_Key, float]:
    """Sum ``weight * 2 ** (-age / half_life_hours)`` per key.

    ``keys``, ``weights`` and ``ages_hours`` are parallel; negative ages (uses stamped
    after ``now`` by a skewed clock) count as age 0, so no use counts more than its weight.
    """
    key_list = list(keys)
    if len(key_list) != weights.shape[0] or weights.shape != ages_hours.shape:
        raise InvalidInputError("keys", "keys, weights and ages must have the same length")
    if not key_list:
        return {}
    codes: dict[_Key, int] = {}
    index = np.fromiter((codes.setdefault(key, len(codes)) for key in key_list), dtype=np.int64)
    decayed = weights * np.exp2(-np.maximum(ages_hours, 0.0) / half_life_hours)
    totals = np.bincount(index, weights=decayed, minlength=len(codes))
    return {key: float(totals[code]) for key, code in codes.items()}


def _keys_of(video: Video, kind: TrendingKind) -> tuple[int | str, ...]:
    if kind is TrendingKind.SOUND:
        return () if video.sound_id is None else (video.sound_id,)
    return video.hashtags


def _check_kind(kind: str) -> TrendingKind:
    try:
        return TrendingKind(kind)
    except ValueError as exc:
        raise InvalidInputError("kind", f"must be 'sound' or 'hashtag', got {kind!r}") from exc


def _trend(score: float, previous: float, tolerance: float) -> Trend:
    if previous == 0.0:
        return Trend.NEW
    ratio = score / previous
    if ratio > 1.0 + tolerance:
        return Trend.RISING
    if ratio < 1.0 - tolerance:
        return Trend.FALLING
    return Trend.STEADY


class InMemoryTrendingSnapshotStore:
    """A :class:`~reelrank.TrendingSnapshotStore` in a dict; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshots: dict[tuple[TrendingKind, float], TrendingSnapshot] = {}

    def put_snapshot(self, snapshot: TrendingSnapshot) -> None:
        """Keep the snapshot, replacing the one of the same kind and window."""
        if not isinstance(snapshot, TrendingSnapshot):
            raise InvalidInputError("snapshot", "must be a TrendingSnapshot")
        with self._lock:
            self._snapshots[(snapshot.kind, snapshot.window_hours)] = snapshot

    def latest_snapshot(
        self, kind: TrendingKind, window_hours: float
    ) -> TrendingSnapshot | None:
        """The last snapshot put for this kind and window, or ``None``."""
        key = (_check_kind(kind), finite_or_raise("window_hours", window_hours))
        with self._lock:
            return self._snapshots.get(key)


class InMemoryEngagementLog:
    """An :class:`~reelrank.protocols.EngagementLog` holding every recorded event.

    Events are kept sorted by ``(occurred_at, event_id)``, globally and per user, so a
    time-window read is two binary searches. Thread-safe. Old events stay until
    :meth:`prune` drops them.

    A recorded ``event_id`` is remembered for ``idempotency_seconds`` of ``clock``
    (default a week, as in :class:`~reelrank.InMemoryEventStore`); ``None`` remembers
    every id for the log's lifetime.
    """

    def __init__(
        self,
        *,
        idempotency_seconds: float | None = DEFAULT_IDEMPOTENCY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._recorded_ids = IdempotencyWindow(idempotency_seconds, clock=clock)
        self._keys: list[tuple[datetime, str]] = []
        self._events: list[EngagementEvent] = []
        self._user_keys: dict[int, list[tuple[datetime, str]]] = {}
        self._user_events: dict[int, list[EngagementEvent]] = {}

    def __len__(self) -> int:
        return len(self._events)

    def record(self, event: EngagementEvent) -> bool:
        """Keep an event once per ``event_id``; ``False`` for a duplicate."""
        if not isinstance(event, EngagementEvent):
            raise InvalidInputError("event", "must be an EngagementEvent")
        key = (event.occurred_at, event.event_id)
        with self._lock:
            if not self._recorded_ids.accept(event.event_id):
                return False
            position = bisect.bisect_right(self._keys, key)
            self._keys.insert(position, key)
            self._events.insert(position, event)
            user_keys = self._user_keys.setdefault(event.user_id, [])
            user_events = self._user_events.setdefault(event.user_id, [])
            position = bisect.bisect_right(user_keys, key)
            user_keys.insert(position, key)
            user_events.insert(position, event)
            return True

    def prune(self, before: datetime) -> int:
        """Forget events that occurred before ``before``; returns how many.

        Their ids are still remembered (for the idempotency horizon), so a late
        redelivery is not recorded again.
        Call it now and then with the oldest time any reader looks back to.
        """
        before = check_aware("before", before)
        bound = (before, "")
        with self._lock:
            cut = bisect.bisect_left(self._keys, bound)
            del self._keys[:cut]
            del self._events[:cut]
            for user_id in list(self._user_keys):
                keys = self._user_keys[user_id]
                user_cut = bisect.bisect_left(keys, bound)
                if user_cut == len(keys):
                    del self._user_keys[user_id]
                    del self._user_events[user_id]
                elif user_cut:
                    del keys[:user_cut]
                    del self._user_events[user_id][:user_cut]
            return cut

    @staticmethod
    def _newest_between(
        keys: list[tuple[datetime, str]],
        events: list[EngagementEvent],
        start: datetime,
        end: datetime | None,
        limit: int,
    ) -> list[EngagementEvent]:
        # "" sorts before every event id, so (t, "") bounds all events at time t.
        low = bisect.bisect_left(keys, (start, ""))
        high = len(keys) if end is None else bisect.bisect_left(keys, (end, ""))
        low = max(low, high - limit)
        return events[low:high][::-1]

    def events_between(
        self, start: datetime, end: datetime, *, limit: int
    ) -> list[EngagementEvent]:
        """Events with ``start <= occurred_at < end``, the newest ``limit``, newest first."""
        start = check_aware("start", start)
        end = check_aware("end", end)
        check_limit(limit)
        with self._lock:
            return self._newest_between(self._keys, self._events, start, end, limit)

    def user_events(
        self, user_id: int, *, since: datetime, limit: int
    ) -> list[EngagementEvent]:
        """The user's events at or after ``since``, the newest ``limit``, newest first."""
        check_id("user_id", user_id)
        since = check_aware("since", since)
        check_limit(limit)
        with self._lock:
            keys = self._user_keys.get(user_id)
            if keys is None:
                return []
            return self._newest_between(keys, self._user_events[user_id], since, None, limit)


class Trending:
    """Computes trending sounds and hashtags and keeps the last result of each.

    ``catalog`` supplies the videos (new posts, and each event's sound and hashtags),
    ``log`` the engagement events, ``snapshots`` the fallback when either fails.
    """

    def __init__(
        self,
        catalog: Catalog,
        log: EngagementLog,
        *,
        snapshots: TrendingSnapshotStore | None = None,
        config: TrendingConfig | None = None,
    ) -> None:
        self._catalog = catalog
        self._log = log
        self._snapshots = snapshots if snapshots is not None else InMemoryTrendingSnapshotStore()
        self._config = config or TrendingConfig()

    @property
    def config(self) -> TrendingConfig:
        """The configuration in use."""
        return self._config

    def top(
        self,
        kind: TrendingKind | Literal["sound", "hashtag"],
        *,
        now: datetime,
        window_hours: float | None = None,
        limit: int = 20,
    ) -> TrendingSnapshot:
        """The ``limit`` top items of ``kind`` over the window ending at ``now``.

        ``window_hours`` defaults to :attr:`TrendingConfig.window_hours` and must lie in
        ``[1, 168]``. A stored snapshot at most :attr:`TrendingConfig.reuse_seconds` old
        is served as is; otherwise the result is computed and stored as the snapshot for
        its kind and window (a failing snapshot store does not fail the call). When the
        catalog or the log raises :class:`~reelrank.StoreError`, the stored snapshot is
        returned with ``stale_as_of`` set; without one, the error propagates. Bad arguments raise
        :class:`~reelrank.InvalidInputError` naming ``kind``, ``now``,
        ``window_hours`` or ``limit``.
        """
        kind = _check_kind(kind)
        now = check_aware("now", now)
        window = self._config.window_hours if window_hours is None else window_hours
        if (
            isinstance(window, bool)
            or not isinstance(window, int | float)
            or not MIN_WINDOW_HOURS <= window <= MAX_WINDOW_HOURS
        ):
            raise InvalidInputError(
                "window_hours",
                f"must be a number in [{MIN_WINDOW_HOURS:g}, {MAX_WINDOW_HOURS:g}], got {window!r}",
            )
        window = float(window)
        check_limit(limit)
        if limit > self._config.snapshot_size:
            raise InvalidInputError(
                "limit", f"must be <= {self._config.snapshot_size}, got {limit}"
            )
        recent = self._reusable_snapshot(kind, now, window)
        if recent is not None:
            return recent.model_copy(update={"items": recent.items[:limit]})
        try:
            snapshot = self._compute(kind, now, window)
        except StoreError:
            stored = self._snapshots.latest_snapshot(kind, window)
            if stored is None:
                raise
            return stored.model_copy(
                update={"items": stored.items[:limit], "stale_as_of": stored.computed_at}
            )
        # The fresh result is right even if it cannot be kept; the next call stores again.
        with contextlib.suppress(StoreError):
            self._snapshots.put_snapshot(snapshot)
        return snapshot.model_copy(update={"items": snapshot.items[:limit]})

    def _reusable_snapshot(
        self, kind: TrendingKind, now: datetime, window: float
    ) -> TrendingSnapshot | None:
        if self._config.reuse_seconds == 0.0:
            return None
        try:
            stored = self._snapshots.latest_snapshot(kind, window)
        except StoreError:
            return None  # computing afresh does not need the snapshot store
        if stored is None:
            return None
        age = (now - stored.computed_at).total_seconds()
        return stored if 0.0 <= age <= self._config.reuse_seconds else None

    def _compute(self, kind: TrendingKind, now: datetime, window: float) -> TrendingSnapshot:
        config = self._config
        span = timedelta(hours=window)
        previous_end = now - span
        start = previous_end - span
        # Events are read up to and including now: the log's end bound is exclusive.
        events = self._log.events_between(
            start, now + timedelta(microseconds=1), limit=config.max_events
        )
        posts = [
            video
            for video in self._catalog.recent_videos(limit=config.max_videos, since=start)
            if video.published_at <= now
        ]
        videos = self._catalog.get_videos(sorted({event.video_id for event in events}))
        weights = {event_kind: config.weight_of(event_kind) for event_kind in EngagementKind}
        uses: list[tuple[datetime, float, int | str]] = []
        for post in posts:
            for key in _keys_of(post, kind):
                uses.append((post.published_at, config.post_weight, key))
        for event in events:
            video = videos.get(event.video_id)
            if video is None:
                continue
            weight = weights[event.kind]
            for key in _keys_of(video, kind):
                uses.append((event.occurred_at, weight, key))
        current = [use for use in uses if use[0] > previous_end]
        previous = [use for use in uses if start < use[0] <= previous_end]
        scores = self._score(current, now)
        previous_scores = self._score(previous, previous_end)
        counts: dict[int | str, int] = {}
        for _, _, key in current:
            counts[key] = counts.get(key, 0) + 1
        items = []
        for key, score in scores.items():
            before = previous_scores.get(key, 0.0)
            items.append(
                TrendingItem(
                    key=key,
                    score=score,
                    count=counts[key],
                    previous_score=before,
                    delta=score - before,
                    ratio=score / before if before > 0.0 else None,
                    trend=_trend(score, before, config.steady_tolerance),
                )
            )
        items.sort(key=lambda item: (-item.score, str(item.key)))
        return TrendingSnapshot(
            kind=kind,
            window_hours=window,
            computed_at=now,
            items=tuple(items[: config.snapshot_size]),
        )

    def _score(
        self, uses: list[tuple[datetime, float, int | str]], end: datetime
    ) -> dict[int | str, float]:
        if not uses:
            return {}
        weights = np.fromiter((use[1] for use in uses), dtype=np.float64, count=len(uses))
        ages = np.fromiter(
            ((end - use[0]).total_seconds() / _SECONDS_PER_HOUR for use in uses),
            dtype=np.float64,
            count=len(uses),
        )
        return decayed_scores(
            (use[2] for use in uses), weights, ages, self._config.half_life_hours
        )
