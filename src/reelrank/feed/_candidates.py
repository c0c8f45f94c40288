"""The candidates a feed is ranked from: columns per video and the shared candidate pool.

The pool (the newest and the most viewed videos, with their stats and model scores) is
the same for every user, so it is fetched once per ``candidate_pool_ttl_seconds`` and
shared; a user's followed videos outside it are added per ranking.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from ..exceptions import StoreError
from ..models._catalog import ProcessingState, Video
from ..models._feed import DegradedDependency
from ..models._followed_columns import FollowedColumns, FollowedVideoColumns
from ..models._stats_columns import VideoStatsColumns
from ..scoring import Candidates
from ..scoring._diversity import NO_SOUND
from ..stores._protocols import Catalog, EventStore, ModelRegistry
from ._config import FeedServiceConfig
from ._context import DegradedReport
from ._guards import StoreGuards
from ._observer import FeedObserver
from ._resilience import request_scope


class CatalogUnavailableError(Exception):
    """The catalog failed: serve a cached snapshot if there is one.

    Raised when no earlier candidate pool exists (``pool_available`` is false), or
    when the request holds a cached snapshot, which is preferred to a ranking from
    incomplete candidates.
    """

    def __init__(self, *, pool_available: bool) -> None:
        super().__init__("catalog unavailable")
        self.pool_available = pool_available


@dataclass(frozen=True, slots=True)
class CandidateColumns:
    """The ranking inputs of candidate videos, one array per field, aligned by row."""

    video_ids: npt.NDArray[np.int64]
    creator_ids: npt.NDArray[np.int64]
    sound_ids: npt.NDArray[np.int64]
    published_at: npt.NDArray[np.float64]
    counts: npt.NDArray[np.float64]
    """``(5, n)``: views, completion_sum, likes, shares, comments."""
    dl_scores: npt.NDArray[np.float64]

    @classmethod
    def empty(cls) -> CandidateColumns:
        """No candidates: one shared, read-only instance (most users add no extra rows)."""
        return _NO_COLUMNS

    @classmethod
    def from_videos(
        cls,
        videos: Sequence[Video],
        stats: VideoStatsColumns | None,
        dl_scores: Mapping[int, float] | None,
    ) -> CandidateColumns:
        """Columns of ``videos``; missing stats count as zero, missing scores as NaN."""
        n = len(videos)
        video_ids = np.fromiter((v.video_id for v in videos), dtype=np.int64, count=n)
        creator_ids = np.fromiter((v.creator_id for v in videos), dtype=np.int64, count=n)
        sound_ids = np.fromiter(
            (NO_SOUND if v.sound_id is None else v.sound_id for v in videos),
            dtype=np.int64,
            count=n,
        )
        published_at = np.fromiter((v.published_at.timestamp() for v in videos), float, count=n)
        return cls(
            video_ids,
            creator_ids,
            sound_ids,
            published_at,
            _counts(video_ids, stats),
            _dl_column(video_ids, dl_scores),
        )

    @classmethod
    def from_followed_rows(
        cls,
        followed: FollowedColumns,
        rows: npt.NDArray[np.int64],
        stats: VideoStatsColumns | None,
        dl_scores: Mapping[int, float] | None,
    ) -> CandidateColumns:
        """Columns of the given rows of ``followed`` with their counts looked up in
        ``stats`` (as :meth:`from_videos`: missing stats count as zero, missing scores
        as NaN)."""
        video_ids = followed.video_ids[rows]
        # NO_SOUND_ID (models) and NO_SOUND (the diversity kernel) are the same value.
        return cls(
            video_ids,
            followed.creator_ids[rows],
            followed.sound_ids[rows],
            followed.published_at[rows],
            _counts(video_ids, stats),
            _dl_column(video_ids, dl_scores),
        )

    @classmethod
    def from_followed(
        cls,
        followed: FollowedVideoColumns,
        rows: npt.NDArray[np.int64],
        with_stats: bool,
        dl_scores: Mapping[int, float] | None,
    ) -> CandidateColumns:
        """Columns of the given rows of ``followed``; their stats unless ``with_stats`` is
        false (zero counts then), missing scores as NaN."""
        video_ids = followed.video_ids[rows]
        counts = np.zeros((5, len(rows)), dtype=np.float64)
        if with_stats:
            stats = followed.stats
            for field, values in enumerate(
                (stats.views, stats.completion_sum, stats.likes, stats.shares, stats.comments)
            ):
                counts[field] = values[rows]
        # NO_SOUND_ID (models) and NO_SOUND (the diversity kernel) are the same value.
        return cls(
            video_ids,
            followed.creator_ids[rows],
            followed.sound_ids[rows],
            followed.published_at[rows],
            counts,
            _dl_column(video_ids, dl_scores),
        )

    def __len__(self) -> int:
        return int(self.video_ids.shape[0])

    def concat(self, other: CandidateColumns) -> CandidateColumns:
        if not len(other):
            return self
        return CandidateColumns(
            video_ids=np.concatenate([self.video_ids, other.video_ids]),
            creator_ids=np.concatenate([self.creator_ids, other.creator_ids]),
            sound_ids=np.concatenate([self.sound_ids, other.sound_ids]),
            published_at=np.concatenate([self.published_at, other.published_at]),
            counts=np.concatenate([self.counts, other.counts], axis=1),
            dl_scores=np.concatenate([self.dl_scores, other.dl_scores]),
        )

    def rows(self, rows: Sequence[int]) -> CandidateColumns:
        """The given rows, in that order."""
        if len(rows) == len(self):
            return self
        index = np.asarray(rows, dtype=np.int64)
        return CandidateColumns(
            video_ids=self.video_ids[index],
            creator_ids=self.creator_ids[index],
            sound_ids=self.sound_ids[index],
            published_at=self.published_at[index],
            counts=self.counts[:, index],
            dl_scores=self.dl_scores[index],
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


def _counts(
    video_ids: npt.NDArray[np.int64], stats: VideoStatsColumns | None
) -> npt.NDArray[np.float64]:
    """``(5, n)`` counts of ``video_ids`` from ``stats``; ids it lacks count zero."""
    n = len(video_ids)
    counts = np.zeros((5, n), dtype=np.float64)
    if stats is not None and len(stats) and n:
        # Each candidate's row in the stats columns, by a binary search over their
        # sorted ids; candidates the columns lack keep zero counts.
        order = np.argsort(stats.video_ids, kind="stable")
        found = np.searchsorted(stats.video_ids, video_ids, sorter=order)
        rows = order[np.minimum(found, len(stats) - 1)]
        held = stats.video_ids[rows] == video_ids
        for field, values in enumerate(
            (stats.views, stats.completion_sum, stats.likes, stats.shares, stats.comments)
        ):
            counts[field, held] = values[rows[held]]
    return counts


def _dl_column(
    video_ids: npt.NDArray[np.int64], dl_scores: Mapping[int, float] | None
) -> npt.NDArray[np.float64]:
    """The model score of each video, NaN where there is none."""
    dl = np.full(len(video_ids), np.nan, dtype=np.float64)
    if dl_scores:
        for row, video_id in enumerate(video_ids.tolist()):
            score = dl_scores.get(video_id)
            if score is not None:
                dl[row] = score
    return dl


def _read_only_empty_columns() -> CandidateColumns:
    columns = CandidateColumns.from_videos((), None, None)
    for array in (
        columns.video_ids,
        columns.creator_ids,
        columns.sound_ids,
        columns.published_at,
        columns.counts,
        columns.dl_scores,
    ):
        array.flags.writeable = False
    return columns


_NO_COLUMNS = _read_only_empty_columns()


@dataclass(frozen=True, slots=True)
class CandidatePool:
    """The user-independent part of every ranking: recent and popular candidates."""

    columns: CandidateColumns
    candidates: Candidates
    row_of: dict[int, int]
    creators: list[int]
    lost_signals: frozenset[str]
    """Ranking signals without data while the pool was built (their weight is spread)."""
    degraded: tuple[DegradedDependency, ...]
    built_at: float
    """When the pool was built or last stood in for a failed fetch (monotonic seconds)."""
    fetched_at: float
    """When its candidates were fetched (monotonic seconds): older than ``built_at`` when
    the catalog failed and the last known candidates were kept."""


class CandidateSource:
    """Builds the shared candidate pool, keeps it fresh, and columns extra candidates.

    A stale pool keeps serving while one caller (or a background thread) fetches the
    next one; the previous pool stays the fallback if a store fails meanwhile.
    """

    def __init__(
        self,
        *,
        catalog: Catalog,
        events: EventStore,
        models: ModelRegistry | None,
        guards: StoreGuards,
        config: FeedServiceConfig,
        monotonic: Callable[[], float],
        observer: FeedObserver | None = None,
    ) -> None:
        self._catalog = catalog
        self._events = events
        self._models = models
        self._guards = guards
        self._config = config
        self._monotonic = monotonic
        self._observer = observer
        self._lock = threading.Lock()
        self.current: CandidatePool | None = None
        """The latest pool (``None`` before the first)."""
        # The background refresh under way, if any; none starts once closed.
        self._refresher: threading.Thread | None = None
        self._closed = False

    def refresh(self) -> None:
        """Fetch the pool now, a batch job under ``warm_deadline_seconds``; raises
        :class:`CatalogUnavailableError` without a fallback."""
        with self._lock:
            self.current = self._build_as_batch(self.current)

    def shared(self, *, batch: bool = False) -> CandidatePool:
        """The pool for a ranking now, fetching it first if there is none yet.

        ``batch`` (warming) fetches a missing pool under ``warm_deadline_seconds``
        instead of the request deadlines: at start-up the first pool is built by the
        warming job, and a store slower than a request's deadline then (processes
        starting together) must not leave the process unwarmed.
        """
        pool = self.current
        if (
            pool is not None
            and self._monotonic() - pool.built_at < self._config.candidate_pool_ttl_seconds
        ):
            return pool
        if pool is None:
            with self._lock:
                if self.current is None:
                    self.current = self._build_as_batch(None) if batch else self._build(None)
                return self.current
        # Concurrent requests never wait for a refresh: whoever finds the lock taken
        # serves the stale pool.
        if not self._lock.acquire(blocking=False):
            return pool
        if self._config.refresh_pool_in_background:
            if self._closed:
                self._lock.release()
                return pool
            self._refresher = threading.Thread(
                target=self._refresh_and_release, name="reelrank-pool", daemon=True
            )
            self._refresher.start()
            return pool
        self._refresh_and_release()
        current = self.current
        assert current is not None  # only ever replaced by a newer pool
        return current

    def close(self, timeout: float) -> None:
        """Start no more background refreshes, and wait up to ``timeout`` seconds for
        the one under way (its store calls end within their deadlines)."""
        self._closed = True
        refresher = self._refresher
        if refresher is not None:
            refresher.join(timeout)

    def _refresh_and_release(self) -> None:
        """Build the next pool; the caller holds ``_lock``, which is released here.

        In the background no request waits for the refresh, so it reads as a batch job,
        under ``warm_deadline_seconds``: under the request deadlines a busy machine made
        its thousand-video stats read time out, and a pool built on last known stats
        marks every ranking over it degraded (refills are then not stored, and request
        snapshots live only ``degraded_snapshot_ttl_seconds``). On a request's thread
        (``refresh_pool_in_background`` off) the request deadlines bound it.
        """
        try:
            # With an earlier pool to fall back on, building never raises for the catalog.
            if self._config.refresh_pool_in_background:
                self.current = self._build_as_batch(self.current)
            else:
                self.current = self._build(self.current)
        finally:
            self._lock.release()

    def _build_as_batch(self, previous: CandidatePool | None) -> CandidatePool:
        """:meth:`_build` under ``warm_deadline_seconds``, store wrappers' own reads too."""
        deadline = self._config.warm_deadline_seconds
        with request_scope(deadline_seconds=deadline):
            return self._build(previous, deadline)

    def _call(
        self,
        dependency: str,
        deadline: float | None,
        fn: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """A guarded store call under the request deadline, or ``deadline`` if given."""
        if deadline is None:
            return self._guards.call(dependency, fn, *args, **kwargs)
        return self._guards[dependency].call_with_deadline(deadline, lambda: fn(*args, **kwargs))

    def dl_scores(
        self,
        video_ids: Sequence[int],
        lost: set[str],
        report: DegradedReport,
        deadline: float | None = None,
    ) -> Mapping[int, float] | None:
        """Model scores of ``video_ids``, or ``None`` (and the signal lost) without them."""
        name = self._config.model_name
        if self._models is None or name is None or not video_ids:
            return None
        try:
            scores: dict[int, float] = self._call(
                "models", deadline, self._models.get_scores, name, video_ids
            )
        except StoreError:
            report.report("models", "ranked without model scores")
            lost.add("deep_learning")
            return None
        return scores

    def columns(
        self,
        videos: Sequence[Video],
        stats: VideoStatsColumns | None,
        lost: set[str],
        report: DegradedReport,
        deadline: float | None = None,
    ) -> CandidateColumns:
        """Columns of candidates outside the pool, with their model scores fetched."""
        ids = [video.video_id for video in videos]
        scores = self.dl_scores(ids, lost, report, deadline)
        return CandidateColumns.from_videos(videos, stats, scores)

    def followed_columns(
        self,
        followed: FollowedVideoColumns,
        pool: CandidatePool,
        lost: set[str],
        report: DegradedReport,
    ) -> CandidateColumns:
        """Columns of the followed videos outside the pool, with their model scores
        fetched; their stats only while the pool has stats (as :meth:`columns` is given
        none then)."""
        rows = np.flatnonzero(~np.isin(followed.video_ids, pool.columns.video_ids))
        if not len(rows):
            return CandidateColumns.empty()
        scores = self.dl_scores(followed.video_ids[rows].tolist(), lost, report)
        return CandidateColumns.from_followed(followed, rows, "completion" not in lost, scores)

    def followed_rows_columns(
        self,
        followed: FollowedColumns,
        rows: npt.NDArray[np.int64],
        stats: VideoStatsColumns | None,
        lost: set[str],
        report: DegradedReport,
    ) -> CandidateColumns:
        """Columns of the given rows of ``followed`` (outside the pool), their counts
        from ``stats``, with their model scores fetched."""
        scores = self.dl_scores(followed.video_ids[rows].tolist(), lost, report)
        return CandidateColumns.from_followed_rows(followed, rows, stats, scores)

    def _build(
        self, previous: CandidatePool | None, deadline: float | None = None
    ) -> CandidatePool:
        pool = self._fetch(previous, deadline)
        if self._observer is not None:
            self._observer.candidate_pool_refreshed(
                len(pool.columns), pool.built_at - pool.fetched_at
            )
        return pool

    def _fetch(
        self, previous: CandidatePool | None, deadline: float | None = None
    ) -> CandidatePool:
        """The next pool; every store call under ``deadline``, or the request deadlines."""
        cfg = self._config
        report = DegradedReport()
        lost: set[str] = set()
        try:
            recent: list[Video] = self._call(
                "catalog", deadline, self._catalog.recent_videos, limit=cfg.recent_limit
            )
        except StoreError:
            if previous is None:
                raise CatalogUnavailableError(pool_available=False) from None
            report.report("catalog", "last known candidates")
            return replace(
                previous,
                degraded=(*previous.degraded, *report.degraded),
                built_at=self._monotonic(),
            )
        videos = list(recent)
        if cfg.popular_limit:
            try:
                videos.extend(self._popular_outside({v.video_id for v in videos}, deadline))
            except StoreError:
                report.report("popular", "recent and followed videos only")
        ids = [video.video_id for video in videos]
        stats: VideoStatsColumns | None = None
        if ids:
            try:
                stats = self._call("events", deadline, self._events.stats_columns, ids)
            except StoreError:
                stats = None
        columns = self.columns(videos, stats, lost, report, deadline)
        if stats is None and ids:
            columns, recovered = _last_known_counts(columns, previous)
            if recovered:
                report.report("stats", "last known stats")
            else:
                report.report("stats", "ranked without completion and engagement")
                lost.update(("completion", "engagement"))
        now = self._monotonic()
        return CandidatePool(
            columns=columns,
            candidates=columns.candidates(),
            row_of={vid: row for row, vid in enumerate(columns.video_ids.tolist())},
            creators=np.unique(columns.creator_ids).tolist(),
            lost_signals=frozenset(lost),
            degraded=tuple(report.degraded),
            built_at=now,
            fetched_at=now,
        )

    def _popular_outside(self, known: set[int], deadline: float | None) -> list[Video]:
        """The ready popular videos not in ``known``; raises :class:`StoreError`."""
        popular: list[int] = self._call(
            "events", deadline, self._events.popular_video_ids, limit=self._config.popular_limit
        )
        missing = [vid for vid in popular if vid not in known]
        if not missing:
            return []
        found: dict[int, Video] = self._call("catalog", deadline, self._catalog.get_videos, missing)
        return [
            found[vid]
            for vid in missing
            if vid in found and found[vid].state is ProcessingState.READY
        ]


def _last_known_counts(
    columns: CandidateColumns, previous: CandidatePool | None
) -> tuple[CandidateColumns, bool]:
    """``columns`` with the previous pool's counts of the videos it held, and whether any."""
    if previous is None:
        return columns, False
    counts = columns.counts.copy()
    recovered = False
    for row, vid in enumerate(columns.video_ids.tolist()):
        old = previous.row_of.get(vid)
        if old is not None:
            counts[:, row] = previous.columns.counts[:, old]
            recovered = True
    return replace(columns, counts=counts), recovered
