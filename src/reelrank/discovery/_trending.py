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

import contextlib
from collections.abc import Hashable, Iterable
from datetime import datetime, timedelta
from typing import Literal, TypeVar

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from ..exceptions import InvalidInputError, StoreError
from ..models._base import StrictModel
from ..models._catalog import Video
from ..models._engagement import EngagementKind
from ..models._trending import (
    MAX_WINDOW_HOURS,
    MIN_WINDOW_HOURS,
    Trend,
    TrendingItem,
    TrendingKind,
    TrendingSnapshot,
    parse_trending_kind,
)
from ..stores._protocols import Catalog, EngagementLog, TrendingSnapshotStore
from ..stores._trending import InMemoryTrendingSnapshotStore
from ..validation import check_aware, check_limit

__all__ = ["Trending", "TrendingConfig", "decayed_scores"]

_Key = TypeVar("_Key", bound=Hashable)

_SECONDS_PER_HOUR = 3600.0


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


def _trend(score: float, previous: float, tolerance: float) -> Trend:
    if previous == 0.0:
        return Trend.NEW
    ratio = score / previous
    if ratio > 1.0 + tolerance:
        return Trend.RISING
    if ratio < 1.0 - tolerance:
        return Trend.FALLING
    return Trend.STEADY


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
        kind = parse_trending_kind(kind)
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
        check_limit("limit", limit)
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
