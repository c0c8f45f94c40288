"""Engagement events, their per-video aggregates and per-user affinity credit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sqlalchemy import BigInteger, Connection, func, literal, select

from reelrank.models import (
    EngagementEvent,
    EngagementKind,
    VideoStats,
    VideoStatsColumns,
    affinity,
    affinity_credit,
)
from reelrank.stores.adapter import (
    check_appendable_event,
    check_id,
    check_ids,
    check_ids_by_user,
    check_limit,
    chunked,
)

from ._base import ReplicaReadStore, unique
from ._errors import store_errors
from ._schema import (
    affinity_credits,
    affinity_totals,
    engagement_events,
    video_likes,
    video_stats,
)

__all__ = ["SqlEventStore"]

_COUNTERS = ("views", "completion_sum", "likes", "shares", "comments")


class SqlEventStore(ReplicaReadStore):
    """An :class:`~reelrank.EventStore` in PostgreSQL or SQLite.

    :meth:`append` runs one transaction: the event row is inserted with
    ``ON CONFLICT (event_id) DO NOTHING``, and only when that inserted a row are the
    aggregates changed, all with atomic upserts (``views = views + 1``...). A like is a
    row in ``video_likes``; a like or unlike changes the counts and the affinity credit
    only when it inserts or deletes that row, as the core's rules require. Event ids are
    kept until deleted (there is no retry horizon), so a redelivery is never counted
    twice.

    With a ``read_engine``, :meth:`get_stats`, :meth:`get_affinities` and
    :meth:`popular_video_ids` read from the replica; :meth:`append`, which reads and
    writes in one transaction, always runs on the primary.
    """

    _store = "events"

    def append(self, event: EngagementEvent, *, creator_id: int) -> bool:
        """Apply an event once per ``event_id``; ``False`` for a duplicate."""
        check_appendable_event(event, creator_id)
        kind = event.kind
        record = self._insert(engagement_events).values(
            event_id=event.event_id,
            kind=kind.value,
            user_id=event.user_id,
            video_id=event.video_id,
            creator_id=creator_id,
            occurred_at=event.occurred_at,
            watched_seconds=event.watched_seconds,
            completion=event.completion,
            channel=event.channel,
            variant=event.variant,
        )
        with store_errors(self._store, "append"), self._engine.begin() as connection:
            # RETURNING, not rowcount: psycopg reports -1 rows for some Core inserts.
            inserted = connection.execute(
                record.on_conflict_do_nothing().returning(engagement_events.c.event_id)
            ).first()
            if inserted is None:
                return False
            if self._apply_counts(connection, event):
                self._add_credit(
                    connection, event.user_id, creator_id, affinity_credit(kind, event.completion)
                )
        return True

    def _apply_counts(self, connection: Connection, event: EngagementEvent) -> bool:
        """Add the event to its video's counters; ``False`` if it changed no state."""
        kind = event.kind
        delta = dict.fromkeys(_COUNTERS, 0)
        completion_delta = 0.0
        if kind is EngagementKind.WATCH:
            delta["views"] = 1
            completion_delta = event.completion or 0.0
        elif kind is EngagementKind.SHARE:
            delta["shares"] = 1
        elif kind is EngagementKind.COMMENT:
            delta["comments"] = 1
        elif kind is EngagementKind.LIKE:
            like = self._insert(video_likes).values(video_id=event.video_id, user_id=event.user_id)
            liked = like.on_conflict_do_nothing().returning(video_likes.c.user_id)
            if connection.execute(liked).first() is None:
                return False
            delta["likes"] = 1
        else:
            unlike = (
                video_likes.delete()
                .where(
                    video_likes.c.video_id == event.video_id,
                    video_likes.c.user_id == event.user_id,
                )
                .returning(video_likes.c.user_id)
            )
            if connection.execute(unlike).first() is None:
                return False
            delta["likes"] = -1
        insert = self._insert(video_stats).values(
            video_id=event.video_id,
            views=delta["views"],
            completion_sum=completion_delta,
            likes=delta["likes"],
            shares=delta["shares"],
            comments=delta["comments"],
        )
        connection.execute(
            insert.on_conflict_do_update(
                index_elements=[video_stats.c.video_id],
                set_={name: video_stats.c[name] + insert.excluded[name] for name in _COUNTERS},
            )
        )
        return True

    def _add_credit(
        self, connection: Connection, user_id: int, creator_id: int, credit: float
    ) -> None:
        pair = self._insert(affinity_credits).values(
            user_id=user_id, creator_id=creator_id, credit=credit
        )
        connection.execute(
            pair.on_conflict_do_update(
                index_elements=[affinity_credits.c.user_id, affinity_credits.c.creator_id],
                set_={"credit": affinity_credits.c.credit + pair.excluded.credit},
            )
        )
        total = self._insert(affinity_totals).values(user_id=user_id, total=credit)
        connection.execute(
            total.on_conflict_do_update(
                index_elements=[affinity_totals.c.user_id],
                set_={"total": affinity_totals.c.total + total.excluded.total},
            )
        )

    def stats_columns(self, video_ids: Sequence[int]) -> VideoStatsColumns:
        """The statistics of :meth:`get_stats` as columns, one row per distinct id.

        One query, as :meth:`get_stats` runs, whose rows go straight into the arrays:
        no :class:`~reelrank.VideoStats` is built per video (for 200 ids at 1M videos,
        p50 1.65 ms against 2.3 ms through ``get_stats``).
        """
        wanted = unique(check_ids("video_ids", video_ids))
        count = len(wanted)
        views = np.zeros(count, dtype=np.int64)
        completion_sum = np.zeros(count, dtype=np.float64)
        likes = np.zeros(count, dtype=np.int64)
        shares = np.zeros(count, dtype=np.int64)
        comments = np.zeros(count, dtype=np.int64)
        if count:
            query = select(video_stats).where(self._id_in(video_stats.c.video_id, wanted))
            with (
                store_errors(self._store, "stats_columns"),
                self._reader.connect() as connection,
            ):
                rows = connection.execute(query).all()
            if rows:
                row_of = {video_id: row for row, video_id in enumerate(wanted)}
                # The table's column order, as in get_stats.
                (
                    found_ids,
                    found_views,
                    found_completion,
                    found_likes,
                    found_shares,
                    found_comments,
                ) = zip(*rows, strict=True)
                at = np.fromiter(map(row_of.__getitem__, found_ids), np.int64, len(rows))
                views[at] = found_views
                # As get_stats: a sum of many floats may overshoot views by rounding.
                completion_sum[at] = np.minimum(
                    np.asarray(found_completion, dtype=np.float64), views[at]
                )
                likes[at] = found_likes
                shares[at] = found_shares
                comments[at] = found_comments
        return VideoStatsColumns.from_arrays(
            video_ids=np.asarray(wanted, dtype=np.int64),
            views=views,
            completion_sum=completion_sum,
            likes=likes,
            shares=shares,
            comments=comments,
        )

    def get_stats(self, video_ids: Sequence[int]) -> dict[int, VideoStats]:
        """Aggregates for every requested id; zeros for videos never engaged with."""
        ids = check_ids("video_ids", video_ids)
        wanted = unique(ids)
        if not wanted:
            return {}
        query = select(video_stats).where(self._id_in(video_stats.c.video_id, wanted))
        with store_errors(self._store, "get_stats"), self._reader.connect() as connection:
            rows = connection.execute(query).all()
        found = {row[0]: row for row in rows}
        # Counters only ever grow from zero by the upserts in append (likes never below
        # zero, as an unlike needs a like row to delete), so the stats are built without
        # validating again: validation cost more than the query for 500 videos.
        result: dict[int, VideoStats] = {}
        for video_id in wanted:
            row = found.get(video_id)
            if row is None:
                result[video_id] = VideoStats.model_construct(
                    video_id=video_id, views=0, completion_sum=0.0, likes=0, shares=0, comments=0
                )
                continue
            _, views, completion_sum, likes, shares, comments = row  # the table's order
            result[video_id] = VideoStats.model_construct(
                video_id=video_id,
                views=views,
                # Summing many floats may overshoot views by rounding; the invariant holds.
                completion_sum=min(float(completion_sum), float(views)),
                likes=likes,
                shares=shares,
                comments=comments,
            )
        return result

    def get_affinities(self, user_id: int, creator_ids: Sequence[int]) -> dict[int, float]:
        """Affinity of the user with every requested creator; ``0.0`` when none."""
        check_id("user_id", user_id)
        ids = check_ids("creator_ids", creator_ids)
        found = dict.fromkeys(ids, 0.0)
        if not found:
            return found
        # The user's total beside each credit: one round trip where a second query for
        # the total cost as much again on the feed's cache-miss path.
        credits = (
            select(
                affinity_credits.c.creator_id,
                affinity_credits.c.credit,
                func.coalesce(affinity_totals.c.total, 0.0),
            )
            .select_from(
                affinity_credits.outerjoin(
                    affinity_totals, affinity_totals.c.user_id == affinity_credits.c.user_id
                )
            )
            .where(
                affinity_credits.c.user_id == user_id,
                self._id_in(affinity_credits.c.creator_id, list(found)),
            )
        )
        with store_errors(self._store, "get_affinities"), self._reader.connect() as connection:
            rows = connection.execute(credits).all()
        for creator_id, credit, user_total in rows:
            found[creator_id] = affinity(float(credit), float(user_total))
        return found

    def get_affinities_many(
        self, creator_ids_by_user: Mapping[int, Sequence[int]]
    ) -> dict[int, dict[int, float]]:
        """:meth:`get_affinities` of each user with their creators: one statement per
        :attr:`users_per_statement` users, reading the users' credit with any of the
        chunk's creators and their totals (a total is a row of creator ``0``, which no
        creator id is)."""
        requested = check_ids_by_user("creator_ids_by_user", creator_ids_by_user)
        found = {uid: dict.fromkeys(ids, 0.0) for uid, ids in requested.items()}
        asking = [uid for uid, wanted in found.items() if wanted]
        with store_errors(self._store, "get_affinities_many"), self._reader.connect() as connection:
            for chunk in chunked(asking, self.users_per_statement):
                creators = sorted({cid for uid in chunk for cid in found[uid]})
                users = list(chunk)
                credits = select(
                    affinity_credits.c.user_id,
                    affinity_credits.c.creator_id,
                    affinity_credits.c.credit,
                ).where(
                    self._id_in(affinity_credits.c.user_id, users),
                    self._id_in(affinity_credits.c.creator_id, creators),
                )
                totals = select(
                    affinity_totals.c.user_id, literal(0, BigInteger), affinity_totals.c.total
                ).where(self._id_in(affinity_totals.c.user_id, users))
                credit: dict[int, list[tuple[int, float]]] = {}
                total: dict[int, float] = {}
                for user_id, creator_id, value in connection.execute(credits.union_all(totals)):
                    if creator_id == 0:
                        total[user_id] = float(value)
                    elif creator_id in found[user_id]:
                        credit.setdefault(user_id, []).append((creator_id, float(value)))
                for user_id, earned in credit.items():
                    user_total = total.get(user_id) or 0.0
                    for creator_id, value in earned:
                        found[user_id][creator_id] = affinity(value, user_total)
        return found

    def popular_video_ids(self, *, limit: int) -> list[int]:
        """Most viewed video ids, most views first, ties by lower id."""
        check_limit("limit", limit)
        if limit == 0:
            return []
        query = (
            select(video_stats.c.video_id)
            .where(video_stats.c.views > 0)
            .order_by(video_stats.c.views.desc(), video_stats.c.video_id)
            .limit(limit)
        )
        with store_errors(self._store, "popular_video_ids"), self._reader.connect() as connection:
            return list(connection.execute(query).scalars())
