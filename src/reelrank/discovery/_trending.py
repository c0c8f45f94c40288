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
and window is served with ``stale_as_of`` set to when it was computed. With
:attr:`TrendingConfig.refresh_ahead_seconds`, a snapshot somewhat too old to reuse is
served at once while one background thread computes its successor.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import uuid
from collections.abc import Hashable, Iterable
from concurrent.futures import Future
from datetime import datetime, timedelta
from typing import Literal, TypeVar

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from .._workers import WorkerPool
from ..exceptions import InvalidInputError, StoreError
from ..models._base import StrictModel
from ..models._engagement import EngagementKind
from ..models._followed_columns import NO_SOUND_ID
from ..models._label_columns import VideoLabelColumns
from ..models._trending import (
    MAX_WINDOW_HOURS,
    MIN_WINDOW_HOURS,
    Trend,
    TrendingItem,
    TrendingKind,
    TrendingSnapshot,
    check_trending_kind,
)
from ..models._window import ENGAGEMENT_KINDS, epoch_microseconds
from ..stores._protocols import (
    Catalog,
    CoordinatedTrendingSnapshotStore,
    EngagementLog,
    LabelColumnsCatalog,
    TrendingSnapshotStore,
)
from ..stores._trending import InMemoryTrendingSnapshotStore
from ..validation import check_aware, check_limit

__all__ = ["Trending", "TrendingConfig", "decayed_scores"]

_Key = TypeVar("_Key", bound=Hashable)

_SECONDS_PER_HOUR = 3600.0

_NO_LEASE = ""
"""The lease token of a computation that took no lease (the empty string is no owner)."""

_logger = logging.getLogger(__name__)

_SnapshotKey = tuple[TrendingKind, float]
"""A stored snapshot's kind and window."""


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
    lease_seconds: float = Field(default=30.0, gt=0.0, le=3_600.0, allow_inf_nan=False)
    """On a :class:`~reelrank.CoordinatedTrendingSnapshotStore`, how long the caller that
    computes a kind and window holds its lease; others serve the previous snapshot
    meanwhile. It bounds how long a computation that never finishes (a killed process)
    keeps the others on that snapshot; a computation that outlasts it may overlap the
    next one."""
    refresh_ahead_seconds: float = Field(default=0.0, ge=0.0, le=86_400.0, allow_inf_nan=False)
    """A stored snapshot older than ``reuse_seconds`` by at most this many seconds is
    served as is (it is not stale) while a background thread computes and stores the
    next one, so no caller waits for the computation; an older snapshot, or none, is
    computed during the call. A caller may thus see a snapshot ``reuse_seconds`` + this
    + one computation's time old. 0 (the default) computes during the call as soon as
    the snapshot is too old to reuse; with ``reuse_seconds`` 0 no snapshot is served
    ahead either."""

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
    totals = _decayed_totals(index, weights, ages_hours, half_life_hours, len(codes))
    return {key: float(totals[code]) for key, code in codes.items()}


def _decayed_totals(
    codes: NDArray[np.int64],
    weights: NDArray[np.float64],
    ages_hours: NDArray[np.float64],
    half_life_hours: float,
    key_count: int,
) -> NDArray[np.float64]:
    """:func:`decayed_scores` over key codes ``0 .. key_count - 1``; each total adds its
    uses in their order (``np.bincount`` adds sequentially)."""
    decayed = weights * np.exp2(-np.maximum(ages_hours, 0.0) / half_life_hours)
    # With weights, bincount's totals are float64 already; the cast is for the type.
    return np.bincount(codes, weights=decayed, minlength=key_count).astype(np.float64, copy=False)


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
    as columns when it is a :class:`~reelrank.LabelColumnsCatalog` and as
    :class:`~reelrank.VideoLabels` otherwise, ``log`` the engagement events,
    ``snapshots`` the fallback when either fails. With
    :attr:`TrendingConfig.refresh_ahead_seconds` set, call :meth:`close` when done: it
    stops the background thread.
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
        self._refresh_lock = threading.Lock()
        # Created on the first refresh ahead; None again (and refreshing stops) once
        # closed.
        self._refresh_pool: WorkerPool | None = None
        self._closed = False
        self._refreshing: dict[_SnapshotKey, Future[None]] = {}
        # The computed_at of the snapshot that a failed background computation was to
        # replace, by kind and window: that snapshot is served marked stale.
        self._failed_refresh: dict[_SnapshotKey, datetime] = {}

    @property
    def config(self) -> TrendingConfig:
        """The configuration in use."""
        return self._config

    def close(self, timeout: float | None = None) -> None:
        """Stop the background thread that refreshes snapshots ahead, after the
        computations asked for already (at most one per kind and window), waited for up
        to ``timeout`` seconds in all (``None``: as long as they take). The thread is a
        daemon: a computation hung on its store past ``timeout`` does not keep the
        interpreter from exiting. Afterwards :meth:`top` computes during the call
        whenever the snapshot is too old to reuse. Closing again does nothing."""
        with self._refresh_lock:
            pool, self._refresh_pool = self._refresh_pool, None
            self._closed = True
        if pool is not None:
            pool.shutdown(timeout)

    def __enter__(self) -> Trending:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

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
        its kind and window (a failing snapshot store does not fail the call). A snapshot
        older by at most :attr:`TrendingConfig.refresh_ahead_seconds` is served as is
        while a background thread computes and stores the next one (one at a time per
        kind and window); when that computation fails, the snapshot is served with
        ``stale_as_of`` set until one succeeds. On a
        :class:`~reelrank.CoordinatedTrendingSnapshotStore` an older stored snapshot is
        computed again only by the caller that takes the kind and window's lease; while
        another holds it, the stored snapshot is served as is. When the
        catalog or the log raises :class:`~reelrank.StoreError`, the stored snapshot is
        returned with ``stale_as_of`` set; without one, the error propagates. Bad arguments raise
        :class:`~reelrank.InvalidInputError` naming ``kind``, ``now``,
        ``window_hours`` or ``limit``.
        """
        kind = check_trending_kind("kind", kind)
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
        previous = self._previous_snapshot(kind, window)
        if previous is not None:
            age = (now - previous.computed_at).total_seconds()
            if 0.0 <= age <= self._config.reuse_seconds:
                return previous.model_copy(update={"items": previous.items[:limit]})
            if (
                0.0 <= age <= self._config.reuse_seconds + self._config.refresh_ahead_seconds
                and self._refresh_ahead(previous, now)
            ):
                return self._served_ahead(previous, limit)
        lease = self._take_lease(kind, window) if previous is not None else _NO_LEASE
        if lease is None:
            # Another caller is computing this kind and window: its result replaces
            # the previous one when done, which is served (not stale) meanwhile.
            assert previous is not None
            return previous.model_copy(update={"items": previous.items[:limit]})
        try:
            snapshot = self._compute(kind, now, window)
        except StoreError:
            stored = self._snapshots.latest_snapshot(kind, window)
            if stored is None:
                raise
            return stored.model_copy(
                update={"items": stored.items[:limit], "stale_as_of": stored.computed_at}
            )
        else:
            # The fresh result is right even if it cannot be kept; the next call stores
            # again.
            with contextlib.suppress(StoreError):
                self._snapshots.put_snapshot(snapshot)
        finally:
            self._release_lease(kind, window, lease)
        return snapshot.model_copy(update={"items": snapshot.items[:limit]})

    def _refresh_ahead(self, previous: TrendingSnapshot, now: datetime) -> bool:
        """Start computing ``previous``'s successor at ``now`` in the background unless
        that is under way; ``False`` once closed (the caller computes)."""
        key = (previous.kind, previous.window_hours)
        with self._refresh_lock:
            if self._closed:
                return False
            running = self._refreshing.get(key)
            if running is None or running.done():
                if self._refresh_pool is None:
                    self._refresh_pool = WorkerPool(1, name="reelrank-trending")
                # Callers choose the window: finished computations are forgotten so
                # that many windows asked once do not pile up.
                self._refreshing = {
                    other: future for other, future in self._refreshing.items() if not future.done()
                }
                self._refreshing[key] = self._refresh_pool.submit(
                    functools.partial(self._refresh, previous, now)
                )
        return True

    def _served_ahead(self, previous: TrendingSnapshot, limit: int) -> TrendingSnapshot:
        """``previous`` cut to ``limit``, marked stale when computing its successor
        failed."""
        key = (previous.kind, previous.window_hours)
        with self._refresh_lock:
            failed = self._failed_refresh.get(key) == previous.computed_at
        stale_as_of = previous.computed_at if failed else None
        return previous.model_copy(
            update={"items": previous.items[:limit], "stale_as_of": stale_as_of}
        )

    def _refresh(self, previous: TrendingSnapshot, now: datetime) -> None:
        """The background computation of ``previous``'s successor: never raises; a
        failure leaves ``previous`` stored and served marked stale."""
        kind, window = previous.kind, previous.window_hours
        lease = self._take_lease(kind, window)
        if lease is None:
            # Another process is computing: its result is the successor.
            return
        try:
            snapshot = self._compute(kind, now, window)
            self._snapshots.put_snapshot(snapshot)
        except StoreError:
            failed = True
        except Exception:
            # A request would have seen this error; here nobody would.
            _logger.exception(
                "trending computation failed", extra={"kind": kind.value, "window": window}
            )
            failed = True
        else:
            failed = False
        finally:
            self._release_lease(kind, window, lease)
        with self._refresh_lock:
            if failed:
                self._failed_refresh[(kind, window)] = previous.computed_at
            else:
                self._failed_refresh.pop((kind, window), None)

    def _previous_snapshot(self, kind: TrendingKind, window: float) -> TrendingSnapshot | None:
        """The stored snapshot, when snapshots are reused; ``None`` when the store fails
        (computing afresh does not need it)."""
        if self._config.reuse_seconds == 0.0:
            return None
        try:
            return self._snapshots.latest_snapshot(kind, window)
        except StoreError:
            return None

    def _take_lease(self, kind: TrendingKind, window: float) -> str | None:
        """The owner token of the lease taken to compute, :data:`_NO_LEASE` when the
        store does not coordinate callers or fails (compute anyway), ``None`` when
        another caller holds it."""
        store = self._snapshots
        if not isinstance(store, CoordinatedTrendingSnapshotStore):
            return _NO_LEASE
        owner = uuid.uuid4().hex
        try:
            taken = store.acquire_lease(
                kind, window, owner=owner, seconds=self._config.lease_seconds
            )
        except StoreError:
            return _NO_LEASE
        return owner if taken else None

    def _release_lease(self, kind: TrendingKind, window: float, owner: str) -> None:
        store = self._snapshots
        if owner == _NO_LEASE or not isinstance(store, CoordinatedTrendingSnapshotStore):
            return
        # A lease that cannot be given back expires after lease_seconds.
        with contextlib.suppress(StoreError):
            store.release_lease(kind, window, owner=owner)

    def _compute(self, kind: TrendingKind, now: datetime, window: float) -> TrendingSnapshot:
        config = self._config
        span = timedelta(hours=window)
        previous_end = now - span
        start = previous_end - span
        # Events are read up to and including now: the log's end bound is exclusive.
        events = self._log.columns_between(
            start, now + timedelta(microseconds=1), limit=config.max_events
        )
        # Only the videos' sounds, hashtags and times are needed: their labels, as
        # columns where the catalog reads them so (no object per video for every
        # garbage collection to walk while the computation lasts). Videos published in
        # the windows are read once, as posts, and not again for their events.
        recent = self._recent_labels(config.max_videos, start)
        event_videos, video_of_event = np.unique(events.video_ids, return_inverse=True)
        others = self._labels_of(
            np.setdiff1d(event_videos, recent.video_ids, assume_unique=True).tolist()
        )
        table = _KeyTable.of(kind, recent, others)
        # Every use is a (time, weight, key) row: the posts' keys first, then each
        # event's video's keys, events in the log's order (newest first). Each key's
        # score adds its uses in this order, so the sums are those of the row-by-row
        # computation to the last bit.
        now_us = epoch_microseconds(now)
        posts = np.flatnonzero(recent.published_us <= now_us)
        post_rows, post_keys = table.expand(posts)
        # The table's row of each event's video; its last row (no keys) for a video
        # the catalog does not know.
        video_rows = table.rows_of(event_videos)
        event_rows, event_keys = table.expand(video_rows[video_of_event])
        kind_weights = np.array([config.weight_of(each) for each in ENGAGEMENT_KINDS])
        use_times = np.concatenate(
            [recent.published_us[posts][post_rows], events.occurred_us[event_rows]]
        )
        use_weights = np.concatenate(
            [
                np.full(post_rows.shape[0], config.post_weight),
                kind_weights[events.kinds[event_rows]],
            ]
        )
        distinct_keys, use_codes = np.unique(
            np.concatenate([post_keys, event_keys]), return_inverse=True
        )
        key_count = distinct_keys.shape[0]
        previous_end_us = epoch_microseconds(previous_end)
        current = use_times > previous_end_us
        previous = (use_times > epoch_microseconds(start)) & ~current
        scores = self._totals(use_codes, use_weights, use_times, current, now_us, key_count)
        previous_scores = self._totals(
            use_codes, use_weights, use_times, previous, previous_end_us, key_count
        )
        counts = np.bincount(use_codes[current], minlength=key_count)
        items = []
        for code in np.flatnonzero(counts).tolist():
            score = float(scores[code])
            before = float(previous_scores[code])
            items.append(
                TrendingItem(
                    key=table.key(int(distinct_keys[code])),
                    score=score,
                    count=int(counts[code]),
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

    def _recent_labels(self, limit: int, since: datetime) -> VideoLabelColumns:
        catalog = self._catalog
        if isinstance(catalog, LabelColumnsCatalog):
            return catalog.recent_label_columns(limit=limit, since=since)
        return VideoLabelColumns.from_labels(catalog.recent_labels(limit=limit, since=since))

    def _labels_of(self, video_ids: list[int]) -> VideoLabelColumns:
        catalog = self._catalog
        if isinstance(catalog, LabelColumnsCatalog):
            return catalog.label_columns(video_ids)
        return VideoLabelColumns.from_labels(sorted(catalog.get_labels(video_ids).values()))

    def _totals(
        self,
        codes: NDArray[np.int64],
        weights: NDArray[np.float64],
        times_us: NDArray[np.int64],
        selected: NDArray[np.bool_],
        end_us: int,
        key_count: int,
    ) -> NDArray[np.float64]:
        ages_hours = (end_us - times_us[selected]) / 1e6 / _SECONDS_PER_HOUR
        return _decayed_totals(
            codes[selected], weights[selected], ages_hours, self._config.half_life_hours, key_count
        )


class _KeyTable:
    """The keys of one kind (sound ids, or hashtags by code) of the recent videos'
    rows, then the other videos' rows, then an empty row: each row's keys are
    ``keys[offsets[row]:offsets[row + 1]]``, in the video's order."""

    def __init__(
        self,
        kind: TrendingKind,
        video_ids: NDArray[np.int64],
        offsets: NDArray[np.int64],
        keys: NDArray[np.int64],
        hashtags: list[str],
    ) -> None:
        self._kind = kind
        self._video_ids = video_ids
        self._offsets = offsets
        self._keys = keys
        self._hashtags = hashtags

    @classmethod
    def of(
        cls, kind: TrendingKind, recent: VideoLabelColumns, others: VideoLabelColumns
    ) -> _KeyTable:
        video_ids = np.concatenate([recent.video_ids, others.video_ids])
        hashtags = list(recent.hashtags)
        if kind is TrendingKind.SOUND:
            sound_ids = np.concatenate([recent.sound_ids, others.sound_ids])
            has_sound = sound_ids != NO_SOUND_ID
            counts = has_sound.astype(np.int64)
            keys = sound_ids[has_sound]
        else:
            # The other videos' hashtag codes, renumbered into the recent videos' list.
            code_of = {hashtag: code for code, hashtag in enumerate(hashtags)}
            renumbered = np.array(
                [code_of.setdefault(hashtag, len(code_of)) for hashtag in others.hashtags],
                dtype=np.int64,
            )
            hashtags = list(code_of)
            counts = np.concatenate(
                [np.diff(recent.hashtag_offsets), np.diff(others.hashtag_offsets)]
            )
            keys = np.concatenate([recent.hashtag_codes, renumbered[others.hashtag_codes]])
        offsets = np.zeros(counts.shape[0] + 2, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:-1])
        offsets[-1] = offsets[-2]
        return cls(kind, video_ids, offsets, keys, hashtags)

    def rows_of(self, video_ids: NDArray[np.int64]) -> NDArray[np.intp]:
        """The row of each video, the empty last row for one not in the table."""
        empty_row = self._video_ids.shape[0]
        # Searching past the last id finds the empty row, whose id (0) no video has.
        order = np.append(np.argsort(self._video_ids), empty_row)
        rows = order[np.searchsorted(self._video_ids, video_ids, sorter=order[:-1])]
        ids_of_rows = np.append(self._video_ids, 0)
        return np.where(ids_of_rows[rows] == video_ids, rows, empty_row)

    def expand(self, rows: NDArray[np.intp]) -> tuple[NDArray[np.intp], NDArray[np.int64]]:
        """Each of ``rows`` repeated once per key of its row, in order then key order:
        the position in ``rows`` and the key."""
        starts = self._offsets[rows]
        per_row = self._offsets[rows + 1] - starts
        positions = np.repeat(np.arange(rows.shape[0], dtype=np.intp), per_row)
        # Position of each use among its row's uses: 0, 1, ... per row.
        within = np.arange(positions.shape[0], dtype=np.int64) - np.repeat(
            np.cumsum(per_row) - per_row, per_row
        )
        return positions, self._keys[np.repeat(starts, per_row) + within]

    def key(self, key: int) -> int | str:
        """A key of :meth:`expand` as trending names it: the sound id or the hashtag."""
        return key if self._kind is TrendingKind.SOUND else self._hashtags[key]
