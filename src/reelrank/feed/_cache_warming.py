"""Cache warming: ranking and caching many users' snapshots ahead of their requests.

The reads are bulk: one guarded batch per store under ``warm_deadline_seconds`` for
followed videos, their stats, affinities and seen ids, and one ``put_many``. Within a
batch, a store implementing the bulk-read protocol of its kind
(:class:`~reelrank.BulkReadCatalog`, :class:`~reelrank.BulkReadEventStore`,
:class:`~reelrank.BulkReadSeenStore`) answers for every user in one call; another is
asked once per user (see :mod:`reelrank.stores._bulk_reads`). Each user's snapshot is
then ranked by :meth:`UserRanking.rank_from`, as a feed request ranks it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from ..models._catalog import Video
from ..models._stats_columns import VideoStatsColumns
from ..stores._bulk_reads import bulk_affinities, bulk_followed_videos, bulk_recently_seen
from ..stores._protocols import Catalog, EventStore, SeenStore
from ._candidates import CandidateColumns, CandidatePool, CandidateSource
from ._config import FeedServiceConfig
from ._context import DegradedReport, RequestContext
from ._guards import SnapshotCache, StoreGuards
from ._ranking import UserRanking, UserReads, user_creators


@dataclass(frozen=True, slots=True)
class _FollowedOutsidePool:
    """Followed videos outside the shared pool, for a batch of users."""

    columns: CandidateColumns
    rows_of_user: dict[int, list[int]]
    """Each user's rows in ``columns``, ascending."""

    def of(self, user_id: int) -> CandidateColumns:
        return self.columns.rows(self.rows_of_user[user_id])


class CacheWarmer:
    """Ranks and caches snapshots for batches of users with bulk store calls."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        events: EventStore,
        seen: SeenStore,
        candidates: CandidateSource,
        ranking: UserRanking,
        snapshots: SnapshotCache,
        guards: StoreGuards,
        config: FeedServiceConfig,
    ) -> None:
        self._catalog = catalog
        self._events = events
        self._seen = seen
        self._candidates = candidates
        self._ranking = ranking
        self._snapshots = snapshots
        self._guards = guards
        self._config = config

    def needing_snapshots(self, contexts: Sequence[RequestContext]) -> list[RequestContext]:
        """The users without a live snapshot of their current config."""
        live = self._snapshots.get_many([ctx.key for ctx in contexts])
        return [
            ctx
            for ctx in contexts
            if (snapshot := live.get(ctx.key)) is None or snapshot.config_tag != ctx.tag
        ]

    def warm(self, contexts: Sequence[RequestContext], pool: CandidatePool) -> int:
        """Rank and cache the users' snapshots; returns how many were stored.

        Every context shares one report: what any bulk call worked around shortens the
        cache lifetime of the whole batch.
        """
        if not contexts:
            return 0
        report = contexts[0].report
        users = [ctx.user_id for ctx in contexts]
        lost = set(pool.lost_signals)
        outside = self._followed(users, pool, lost, report)
        followed = {uid: outside.of(uid) for uid in users}
        # Affinity is read for the users with creators to weigh (a pool or followed videos).
        creators = {uid: ids for uid in users if (ids := user_creators(pool, followed[uid]))}
        affinities = self._guards.bulk(
            "events",
            lambda: bulk_affinities(self._events, creators) if creators else {},
            report,
            report_as="affinity",
            fallback="ranked without affinity",
        )
        if affinities is None:
            lost.add("affinity")
        seen = self._guards.bulk(
            "seen",
            lambda: self._read_seen(contexts),
            report,
            report_as="seen",
            fallback="not filtered by watch history",
        )
        frozen_lost = frozenset(lost)
        snapshots = [
            self._ranking.rank_from(
                ctx,
                pool,
                UserReads(
                    followed=followed[ctx.user_id],
                    affinity=None if affinities is None else affinities.get(ctx.user_id),
                    recently_seen=None if seen is None else seen[ctx.user_id],
                    lost=frozen_lost,
                ),
            )
            for ctx in contexts
        ]
        return len(snapshots) if self._snapshots.put(snapshots, report) else 0

    def _read_seen(self, contexts: Sequence[RequestContext]) -> dict[int, list[int]]:
        """Each user's recently seen ids: one bulk read per seen window (users of
        experiment variants may have windows of their own)."""
        limit = self._config.seen_lookup_limit
        users_since: dict[datetime, list[int]] = {}
        for ctx in contexts:
            users_since.setdefault(ctx.seen_since, []).append(ctx.user_id)
        seen: dict[int, list[int]] = {}
        for since, users in users_since.items():
            seen.update(bulk_recently_seen(self._seen, users, since=since, limit=limit))
        return seen

    def _followed(
        self, users: list[int], pool: CandidatePool, lost: set[str], report: DegradedReport
    ) -> _FollowedOutsidePool:
        """Followed videos outside the pool, for a batch of users, with bulk reads."""
        limit = self._config.followed_limit
        followed: Mapping[int, list[Video]] | None = {}
        if limit:
            followed = self._guards.bulk(
                "catalog",
                lambda: bulk_followed_videos(self._catalog, users, limit=limit),
                report,
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
        stats: VideoStatsColumns | None = None
        if ids:
            stats = self._guards.bulk(
                "events",
                lambda: self._events.stats_columns(ids),
                report,
                report_as="stats",
                fallback="followed videos ranked on priors",
            )
        columns = self._candidates.columns(
            list(videos.values()), stats, lost, report, self._config.warm_deadline_seconds
        )
        row_of = {vid: row for row, vid in enumerate(ids)}
        rows_of_user = {
            uid: sorted({row_of[v.video_id] for v in followed.get(uid, ()) if v.video_id in row_of})
            for uid in users
        }
        return _FollowedOutsidePool(columns, rows_of_user)
