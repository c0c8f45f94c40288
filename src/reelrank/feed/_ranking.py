"""Ranking one user's snapshot: the same code for a feed request and for warming.

A feed request reads what it needs about the user store by store
(:meth:`UserRanking.rank`); warming reads it for many users with bulk calls. Both then
hand a :class:`UserReads` to :meth:`UserRanking.rank_from`, which filters, ranks,
diversifies and packs the snapshot.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from ..exceptions import StoreError
from ..models._base import WEIGHT_FIELDS
from ..models._catalog import Video
from ..models._feed import FeedSnapshot
from ..models._followed_columns import FollowedColumns, FollowedVideoColumns
from ..models._stats_columns import VideoStatsColumns
from ..scoring._config import RankingConfig
from ..scoring._ranker import Ranker
from ..stores._protocols import (
    Catalog,
    EventStore,
    FollowedCandidatesCatalog,
    FollowedColumnsCatalog,
    SeenStore,
)
from ._affinity_reuse import AffinityReuse, ReadToken
from ._candidates import CandidateColumns, CandidatePool, CandidateSource, CatalogUnavailableError
from ._config import FeedServiceConfig
from ._context import RequestContext
from ._guards import StoreGuards
from ._observer import FeedObserver
from ._paging import ServedMarks
from ._resilience import PendingCall


@lru_cache(maxsize=256)
def ranker_for(config: RankingConfig, lost_signals: frozenset[str]) -> Ranker:
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


def user_creators(pool: CandidatePool, followed: CandidateColumns) -> list[int]:
    """The creators among the pool and the user's followed videos (affinity is read for them)."""
    if not len(followed):
        return pool.creators
    creators: list[int] = np.union1d(pool.columns.creator_ids, followed.creator_ids).tolist()
    return creators


def _catalog_failed(ctx: RequestContext) -> bool:
    return any(entry.dependency == "catalog" for entry in ctx.report.degraded)


@dataclass(frozen=True, slots=True)
class _AffinityCall:
    """An affinity read under way: what was reused, and the call for the rest."""

    reused: dict[int, float]
    """Affinities reused from an earlier read of the user."""
    call: PendingCall[Mapping[int, float]] | None
    """The read of the creators not reused; ``None`` when every one was."""
    token: ReadToken | None
    """The reuse's token taken before the call, to keep its answer; ``None`` without reuse."""


@dataclass(frozen=True, slots=True)
class UserReads:
    """What was read about one user for a ranking."""

    followed: CandidateColumns
    """The user's followed videos outside the shared pool."""
    affinity: Mapping[int, float] | None
    """Affinity per creator; ``None`` without it."""
    recently_seen: Sequence[int] | None
    """Ids seen in the seen window, at most ``seen_lookup_limit`` of them; ``None`` if the
    seen store failed (already reported)."""
    lost: frozenset[str]
    """Ranking signals without data; their weight is spread over the others."""


class UserRanking:
    """Ranks fresh snapshots for users over the shared candidate pool."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        events: EventStore,
        seen: SeenStore,
        candidates: CandidateSource,
        guards: StoreGuards,
        served: ServedMarks,
        config: FeedServiceConfig,
        observer: FeedObserver | None = None,
        affinity_reuse: AffinityReuse | None = None,
    ) -> None:
        self._catalog = catalog
        self._events = events
        self._seen = seen
        self._candidates = candidates
        self._guards = guards
        self._served = served
        self._config = config
        self._observer = observer
        self._affinity_reuse = affinity_reuse
        # The followed videos and their stats in one call, when the catalog reads the
        # event store's statistics itself (see FollowedCandidatesCatalog).
        self._followed_with_stats = (
            catalog
            if isinstance(catalog, FollowedCandidatesCatalog) and catalog.reads_stats_of(events)
            else None
        )
        # Otherwise the followed videos as columns, when the catalog reads them so, joined
        # to the event store's statistics (see FollowedColumnsCatalog).
        self._followed_as_columns = (
            catalog
            if self._followed_with_stats is None and isinstance(catalog, FollowedColumnsCatalog)
            else None
        )

    def rank(
        self, ctx: RequestContext, *, previous: FeedSnapshot | None, prefer_snapshot: bool
    ) -> FeedSnapshot:
        """Read what the ranking needs about the user, store by store, and rank.

        ``previous`` is the user's cached snapshot, if any: the ids this process served
        from it are left out (the seen store may have missed them).

        Raises:
            CatalogUnavailableError: when the catalog fails and either no candidate pool
                exists or ``prefer_snapshot`` asks to serve a cached one instead.
        """
        pool = self._candidates.shared()
        lost = set(pool.lost_signals)
        if self._config.parallel_user_reads:
            # Neither read depends on the followed videos: they run while those are read.
            seen_call = self._start_recently_seen(ctx)
            pool_affinity_call = self._start_affinity(ctx, pool.creators)
        followed = self._followed(ctx, pool, lost)
        for entry in pool.degraded:
            ctx.report.report(entry.dependency, entry.fallback)
        if not self._config.parallel_user_reads:
            if prefer_snapshot and _catalog_failed(ctx):
                raise CatalogUnavailableError(pool_available=True)
            affinity = self._affinity(ctx, user_creators(pool, followed), lost)
            recently_seen = self._recently_seen(ctx)
        else:
            # Both started calls are waited for before anything is raised: a half-open
            # breaker needs its trial call's outcome.
            recently_seen = self._recently_seen_from(ctx, seen_call)
            affinity = self._affinity_from(ctx, pool, followed, pool_affinity_call, lost)
            if prefer_snapshot and _catalog_failed(ctx):
                raise CatalogUnavailableError(pool_available=True)
        reads = UserReads(followed, affinity, recently_seen, frozenset(lost))
        served = () if previous is None else self._served.served_ids(previous)
        return self.rank_from(ctx, pool, reads, served=served)

    def rank_from(
        self,
        ctx: RequestContext,
        pool: CandidatePool,
        reads: UserReads,
        *,
        served: Sequence[int] = (),
    ) -> FeedSnapshot:
        """Rank, diversify and pack the user's snapshot from what was read.

        ``served`` are ids this process served the user from an earlier snapshot; they
        are left out too.
        """
        if self._observer is None:
            return self._rank_from(ctx, pool, reads, served, None)
        started = time.perf_counter()
        snapshot = self._rank_from(ctx, pool, reads, served, self._observer)
        self._observer.snapshot_built(time.perf_counter() - started, len(snapshot.video_ids))
        return snapshot

    def _rank_from(
        self,
        ctx: RequestContext,
        pool: CandidatePool,
        reads: UserReads,
        served: Sequence[int],
        observer: FeedObserver | None,
    ) -> FeedSnapshot:
        for entry in pool.degraded:
            ctx.report.report(entry.dependency, entry.fallback)
        followed = reads.followed
        columns = pool.columns.concat(followed)
        candidates = pool.candidates if not len(followed) else columns.candidates()
        seen = self._seen_ids(ctx, columns, reads.recently_seen)
        # Left out even when the seen store answered: a page served while it could not
        # record counts too.
        if seen is None and served:
            ctx.report.report("seen", "filtered by what this process served")
        if served:
            known = np.asarray(served, dtype=np.int64)
            seen = known if seen is None else np.concatenate([seen, known])
        started = 0.0 if observer is None else time.perf_counter()
        result = ranker_for(ctx.ranking, reads.lost).rank(
            candidates,
            k=self._config.snapshot_size,
            now=ctx.now.timestamp(),
            affinity=reads.affinity,
            seen=seen,
            explain=True,
        )
        if observer is not None:
            ranked = time.perf_counter()
            observer.kernel_run("rank", ranked - started)
        positions = result.positions
        order = self._config.diversity.order(
            columns.creator_ids[positions], columns.sound_ids[positions]
        )
        if observer is not None:
            observer.kernel_run("diversity", time.perf_counter() - ranked)
        contributions = result.contributions
        assert contributions is not None  # requested with explain=True
        # The snapshot is built from validated arrays, so pydantic's per-value checks
        # are skipped; values are converted to plain Python numbers for any backend.
        return FeedSnapshot.model_construct(
            user_id=ctx.user_id,
            variant=ctx.variant,
            video_ids=tuple(result.video_ids[order].tolist()),
            scores=tuple(result.scores[order].tolist()),
            signals=WEIGHT_FIELDS,
            contributions=tuple(map(tuple, contributions[order].tolist())),
            created_at=ctx.now.astimezone(UTC),
            config_tag=ctx.tag,
        )

    def _followed(
        self, ctx: RequestContext, pool: CandidatePool, lost: set[str]
    ) -> CandidateColumns:
        limit = self._config.followed_limit
        if not limit:
            return CandidateColumns.empty()
        if self._followed_with_stats is not None:
            try:
                columns: FollowedVideoColumns = self._guards.call(
                    "catalog",
                    self._followed_with_stats.followed_candidates,
                    ctx.user_id,
                    limit=limit,
                )
            except StoreError:
                ctx.report.report("catalog", "without followed creators' videos")
                return CandidateColumns.empty()
            return self._candidates.followed_columns(columns, pool, lost, ctx.report)
        if self._followed_as_columns is not None:
            return self._followed_from_columns(ctx, self._followed_as_columns, pool, lost)
        try:
            followed: list[Video] = self._guards.call(
                "catalog", self._catalog.followed_videos, ctx.user_id, limit=limit
            )
        except StoreError:
            ctx.report.report("catalog", "without followed creators' videos")
            return CandidateColumns.empty()
        extra = [video for video in followed if video.video_id not in pool.row_of]
        if not extra:
            return CandidateColumns.empty()
        stats: VideoStatsColumns | None = None
        if "completion" not in lost:
            try:
                stats = self._guards.call(
                    "events", self._events.stats_columns, [video.video_id for video in extra]
                )
            except StoreError:
                ctx.report.report("stats", "followed videos ranked on priors")
        return self._candidates.columns(extra, stats, lost, ctx.report)

    def _followed_from_columns(
        self,
        ctx: RequestContext,
        catalog: FollowedColumnsCatalog,
        pool: CandidatePool,
        lost: set[str],
    ) -> CandidateColumns:
        """The followed videos outside the pool from the catalog's columns and the event
        store's statistics: the reads and reports of the ``followed_videos`` path,
        without a video model per row."""
        try:
            followed: FollowedColumns = self._guards.call(
                "catalog", catalog.followed_columns, ctx.user_id, limit=self._config.followed_limit
            )
        except StoreError:
            ctx.report.report("catalog", "without followed creators' videos")
            return CandidateColumns.empty()
        rows = np.flatnonzero(~np.isin(followed.video_ids, pool.columns.video_ids))
        if not len(rows):
            return CandidateColumns.empty()
        stats: VideoStatsColumns | None = None
        if "completion" not in lost:
            try:
                stats = self._guards.call(
                    "events", self._events.stats_columns, followed.video_ids[rows].tolist()
                )
            except StoreError:
                ctx.report.report("stats", "followed videos ranked on priors")
        return self._candidates.followed_rows_columns(followed, rows, stats, lost, ctx.report)

    def _affinity(
        self, ctx: RequestContext, creators: list[int], lost: set[str]
    ) -> Mapping[int, float] | None:
        if not creators:
            return None
        reused, missing, token = self._recall_affinity(ctx, creators)
        if not missing:
            return reused
        try:
            affinity: Mapping[int, float] = self._guards.call(
                "events", self._events.get_affinities, ctx.user_id, missing
            )
        except StoreError:
            ctx.report.report("affinity", "ranked without affinity")
            lost.add("affinity")
            return None
        self._keep_affinity(ctx, affinity, token)
        if not reused:
            return affinity
        reused.update(affinity)
        return reused

    def _recall_affinity(
        self, ctx: RequestContext, creators: list[int]
    ) -> tuple[dict[int, float], list[int], ReadToken | None]:
        """The user's reused affinities among ``creators``, the creators left to read,
        and the token that keeps their read."""
        reuse = self._affinity_reuse
        if reuse is None:
            return {}, creators, None
        reused, missing = reuse.recall(ctx.user_id, creators)
        return reused, missing, reuse.token() if missing else None

    def _keep_affinity(
        self, ctx: RequestContext, affinity: Mapping[int, float], token: ReadToken | None
    ) -> None:
        if self._affinity_reuse is not None and token is not None:
            self._affinity_reuse.keep(ctx.user_id, affinity, token)

    def _start_affinity(self, ctx: RequestContext, creators: list[int]) -> _AffinityCall | None:
        if not creators:
            return None
        reused, missing, token = self._recall_affinity(ctx, creators)
        call = (
            self._guards.start("events", self._events.get_affinities, ctx.user_id, missing)
            if missing
            else None
        )
        return _AffinityCall(reused, call, token)

    def _affinity_from(
        self,
        ctx: RequestContext,
        pool: CandidatePool,
        followed: CandidateColumns,
        pool_call: _AffinityCall | None,
        lost: set[str],
    ) -> Mapping[int, float] | None:
        """The affinities of :func:`user_creators`: the pool's creators from the started
        call and the reused read, the followed videos' other creators read now (usually
        none)."""
        affinity: dict[int, float] = {}
        if pool_call is not None:
            affinity = pool_call.reused
            if pool_call.call is not None:
                try:
                    read = pool_call.call.result()
                except StoreError:
                    ctx.report.report("affinity", "ranked without affinity")
                    lost.add("affinity")
                    return None
                self._keep_affinity(ctx, read, pool_call.token)
                affinity.update(read)
        others = np.setdiff1d(followed.creator_ids, pool.columns.creator_ids).tolist()
        if others:
            more = self._affinity(ctx, others, lost)
            if more is None:
                return None
            affinity.update(more)
        return affinity if pool_call is not None or others else None

    def _start_recently_seen(self, ctx: RequestContext) -> PendingCall[list[int]]:
        return self._guards.start(
            "seen",
            self._seen.recently_seen,
            ctx.user_id,
            since=ctx.seen_since,
            limit=self._config.seen_lookup_limit,
        )

    def _recently_seen(self, ctx: RequestContext) -> list[int] | None:
        return self._recently_seen_from(ctx, self._start_recently_seen(ctx))

    def _recently_seen_from(
        self, ctx: RequestContext, call: PendingCall[list[int]]
    ) -> list[int] | None:
        try:
            recent: list[int] = call.result()
        except StoreError:
            ctx.report.report("seen", "not filtered by watch history")
            return None
        return recent

    def _seen_ids(
        self, ctx: RequestContext, columns: CandidateColumns, recently_seen: Sequence[int] | None
    ) -> npt.NDArray[np.int64] | None:
        """The seen ids among the candidates (or more); ``None`` without a seen filter."""
        if recently_seen is None:
            return None
        if len(recently_seen) < self._config.seen_lookup_limit:
            return np.asarray(recently_seen, dtype=np.int64)
        # More seen ids than were read: ask about the candidates themselves.
        try:
            among: set[int] = self._guards.call(
                "seen",
                self._seen.seen_among,
                ctx.user_id,
                columns.video_ids.tolist(),
                since=ctx.seen_since,
            )
        except StoreError:
            ctx.report.report("seen", "not filtered by watch history")
            return None
        return np.fromiter(among, dtype=np.int64, count=len(among))
