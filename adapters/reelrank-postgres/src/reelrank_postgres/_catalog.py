"""The catalog in SQL: creators, videos (with renditions and hashtags) and follows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    BigInteger,
    BindParameter,
    Executable,
    Integer,
    Result,
    Row,
    Select,
    TextClause,
    bindparam,
    func,
    literal_column,
    select,
    text,
    true,
)
from sqlalchemy.dialects import postgresql

from reelrank.models import (
    NO_SOUND_ID,
    Creator,
    FollowedColumns,
    FollowedVideoColumns,
    ProcessingState,
    Rendition,
    Video,
    VideoLabelColumns,
    VideoLabels,
    VideoStatsColumns,
)
from reelrank.stores.adapter import (
    NotFoundError,
    StoreError,
    check_aware,
    check_id,
    check_ids,
    check_limit,
    check_user_ids,
    chunked,
)

from ._base import ReplicaReadStore, check_instance, requested_users, unique
from ._errors import store_errors
from ._event_store import SqlEventStore
from ._schema import UtcDateTime, creators, follows, video_stats, videos

__all__ = ["SqlCatalog"]

_READY = ProcessingState.READY.value
# The ready-state test as SQL text rather than a bound parameter, so the planner can match
# it to the partial indexes' predicate in every plan, a generic prepared plan included.
_IS_READY = videos.c.state == literal_column(f"'{_READY}'")
_NO_BITMAP_SCANS = text("SET LOCAL enable_bitmapscan = off")
_STATE_MOVE_ATTEMPTS = 3
# What VideoLabels holds: four columns, not the title, description and renditions.
_LABEL_COLUMNS = (videos.c.video_id, videos.c.published_at, videos.c.sound_id, videos.c.hashtags)
_LABEL_ROWS_PER_FETCH = 1_000


def _labels(row: Row[Any]) -> VideoLabels:
    video_id, published_at, sound_id, hashtags = row
    return VideoLabels(video_id, published_at, sound_id, tuple(hashtags))


def _read_labels(result: Result[Any]) -> list[VideoLabels]:
    """The labels of ``result``'s rows, in its order, :data:`_LABEL_ROWS_PER_FETCH` rows
    at a time.

    Trending reads tens of thousands of labels. Turned into labels as a whole, their
    rows all stayed alive until the last label was built, and the garbage collections
    those allocations set off walked them all while holding the interpreter lock (in the
    example service, after its start-up freeze, the longest full collections of a
    trending computation took 20-45 ms). Here only a batch of rows is alive at a time.
    """
    return [_labels(row) for rows in result.partitions(_LABEL_ROWS_PER_FETCH) for row in rows]


def _label_arrays_postgres(rows: str) -> TextClause:
    """A statement that reads the labels of ``rows`` (SQL giving ``video_id``,
    ``published_at``, ``sound_id``, ``hashtags`` and each row's ``position``) as one row
    of arrays in ``position`` order, each video's hashtags flat, in their order.

    psycopg decodes each array in C into a list of ints or strings, none of which the
    garbage collector tracks: no row, datetime, JSON list or label per video.
    """
    return text(
        f"WITH labelled AS ({rows}) "
        "SELECT array_agg(video_id ORDER BY position), "
        # Exact: extract returns numeric (PostgreSQL 14 and later).
        "array_agg((extract(epoch FROM published_at) * 1000000)::bigint ORDER BY position), "
        f"array_agg(coalesce(sound_id, {NO_SOUND_ID}) ORDER BY position), "
        "array_agg(jsonb_array_length(hashtags) ORDER BY position), "
        "(SELECT array_agg(tag ORDER BY labelled.position, tags.number) "
        "FROM labelled CROSS JOIN LATERAL "
        "jsonb_array_elements_text(labelled.hashtags) WITH ORDINALITY AS tags(tag, number)) "
        "FROM labelled"
    )


_LABELLED = "SELECT video_id, published_at, sound_id, hashtags, row_number() OVER ({order}) "
_RECENT_LABEL_ARRAYS_POSTGRES = _label_arrays_postgres(
    _LABELLED.format(order="ORDER BY published_at DESC, video_id DESC")
    + f"AS position FROM videos WHERE state = '{_READY}' "
    "ORDER BY published_at DESC, video_id DESC LIMIT :limit"
).bindparams(bindparam("limit", type_=Integer))
_RECENT_LABEL_ARRAYS_SINCE_POSTGRES = _label_arrays_postgres(
    _LABELLED.format(order="ORDER BY published_at DESC, video_id DESC")
    + f"AS position FROM videos WHERE state = '{_READY}' AND published_at >= :since "
    "ORDER BY published_at DESC, video_id DESC LIMIT :limit"
).bindparams(bindparam("limit", type_=Integer), bindparam("since", type_=UtcDateTime))
_LABEL_ARRAYS_POSTGRES = _label_arrays_postgres(
    _LABELLED.format(order="ORDER BY video_id")
    + "AS position FROM videos WHERE video_id = ANY(:video_ids)"
).bindparams(bindparam("video_ids", type_=postgresql.ARRAY(BigInteger)))


def _label_arrays(row: Row[Any] | None) -> VideoLabelColumns:
    """The columns of :func:`_label_arrays_postgres`' row (``NULL`` arrays: no videos)."""
    video_ids, published_us, sound_ids, hashtag_counts, hashtags = (
        () if column is None else column for column in (row or (None,) * 5)
    )
    return VideoLabelColumns.from_columns(
        video_ids=video_ids,
        published_us=published_us,
        sound_ids=sound_ids,
        hashtag_counts=hashtag_counts,
        hashtags=hashtags,
    )


def _label_columns(result: Result[Any]) -> VideoLabelColumns:
    """The labels of ``result``'s rows, in its order, as columns, read
    :data:`_LABEL_ROWS_PER_FETCH` rows at a time: no object per row outlives its batch."""
    rows = (row for batch in result.partitions(_LABEL_ROWS_PER_FETCH) for row in batch)
    return VideoLabelColumns.from_labels(rows)


def _video_row(video: Video) -> dict[str, Any]:
    return {
        "video_id": video.video_id,
        "creator_id": video.creator_id,
        "duration_seconds": video.duration_seconds,
        "published_at": video.published_at,
        "title": video.title,
        "description": video.description,
        "hashtags": list(video.hashtags),
        "sound_id": video.sound_id,
        "renditions": [rendition.model_dump() for rendition in video.renditions],
        "state": video.state.value,
    }


def _video(row: Sequence[Any]) -> Video:
    # Rows hold what put_video wrote from a validated Video (and set_state a valid state),
    # so they are rebuilt without validating again: validation cost about 11 us a video,
    # more than fetching the row, on the candidate path that reads 500 at a time. The
    # row is unpacked by position (``select(videos)`` keeps the table's column order):
    # ten attribute look-ups by name cost about as much as building the model.
    (
        video_id,
        creator_id,
        duration_seconds,
        published_at,
        title,
        description,
        hashtags,
        sound_id,
        renditions,
        state,
    ) = row
    return Video.model_construct(
        video_id=video_id,
        creator_id=creator_id,
        duration_seconds=duration_seconds,
        published_at=published_at,
        title=title,
        description=description,
        hashtags=tuple(hashtags),
        sound_id=sound_id,
        renditions=tuple(Rendition.model_construct(**fields) for fields in renditions),
        state=ProcessingState(state),
    )


def _recency(video: Video) -> tuple[datetime, int]:
    """The order of candidate lists, newest first when reversed (ties: higher id first)."""
    return (video.published_at, video.video_id)


def _newest_first(query: Select[Any], limit: int | BindParameter[int]) -> Select[Any]:
    return query.order_by(videos.c.published_at.desc(), videos.c.video_id.desc()).limit(limit)


def _followed_videos_statements() -> tuple[Select[Any], Select[Any]]:
    """The followed-videos statements, for PostgreSQL and SQLite, built once: building a
    ``LATERAL`` statement costs about a millisecond of Python per call, on the feed's
    cache-miss path. Parameters: ``user_id`` and ``limit``."""
    user_id = bindparam("user_id", type_=BigInteger)
    limit = bindparam("limit", type_=Integer)
    followed = select(follows.c.creator_id).where(follows.c.user_id == user_id).subquery()
    # Per followed creator, its newest ready videos' keys, read from the partial index
    # alone (an index-only scan: no table row per candidate) ...
    newest_of_creator = _newest_first(
        select(videos.c.video_id, videos.c.published_at).where(
            videos.c.creator_id == followed.c.creator_id, _IS_READY
        ),
        limit,
    ).lateral()
    newest = (
        select(newest_of_creator)
        .select_from(followed.join(newest_of_creator, true()))
        .order_by(newest_of_creator.c.published_at.desc(), newest_of_creator.c.video_id.desc())
        .limit(limit)
        .subquery()
    )
    # ... and the table rows of the newest ``limit`` of them only.
    postgres = (
        select(videos)
        .join(newest, newest.c.video_id == videos.c.video_id)
        .order_by(newest.c.published_at.desc(), newest.c.video_id.desc())
    )
    sqlite = _newest_first(
        select(videos)
        .join(follows, follows.c.creator_id == videos.c.creator_id)
        .where(follows.c.user_id == user_id, _IS_READY),
        limit,
    )
    return postgres, sqlite


_FOLLOWED_VIDEOS_POSTGRES, _FOLLOWED_VIDEOS_SQLITE = _followed_videos_statements()

# What the feed ranks a followed video by (all in ix_videos_ready_creator_recency_sound),
# and its statistics in the table's order after the id.
_CANDIDATE_COLUMNS = (
    videos.c.video_id,
    videos.c.creator_id,
    videos.c.sound_id,
    videos.c.published_at,
    video_stats.c.views,
    video_stats.c.completion_sum,
    video_stats.c.likes,
    video_stats.c.shares,
    video_stats.c.comments,
)
# On PostgreSQL the read is a function of migration 0009, which pins its plan with
# enable_bitmapscan off: one round trip, where SET LOCAL needed a transaction block of
# its own (BEGIN, SET LOCAL, the read, ROLLBACK).
_FOLLOWED_CANDIDATES_POSTGRES = text(
    f"SELECT {', '.join(column.name for column in _CANDIDATE_COLUMNS)} "
    "FROM reelrank_followed_candidates(:user_id, :limit)"
).bindparams(bindparam("user_id", type_=BigInteger), bindparam("limit", type_=Integer))
# SQLite joins the statistics (a video never engaged with has no stats row) to its
# followed-videos statement.
_FOLLOWED_CANDIDATES_SQLITE = _FOLLOWED_VIDEOS_SQLITE.with_only_columns(
    *_CANDIDATE_COLUMNS
).outerjoin(video_stats, video_stats.c.video_id == videos.c.video_id)


# The same read without the statistics, for an event store elsewhere: on PostgreSQL the
# function's ranking columns (its statistics join reads at most ``limit`` rows of
# video_stats by primary key, which hold nothing there), on SQLite the statement unjoined.
_FOLLOWED_COLUMNS = _CANDIDATE_COLUMNS[:4]
_FOLLOWED_COLUMNS_POSTGRES = text(
    f"SELECT {', '.join(column.name for column in _FOLLOWED_COLUMNS)} "
    "FROM reelrank_followed_candidates(:user_id, :limit)"
).bindparams(bindparam("user_id", type_=BigInteger), bindparam("limit", type_=Integer))
_FOLLOWED_COLUMNS_SQLITE = _FOLLOWED_VIDEOS_SQLITE.with_only_columns(*_FOLLOWED_COLUMNS)


def _followed_columns(rows: Sequence[Row[Any]]) -> FollowedColumns:
    """The columns of followed-video rows (id, creator, sound, publication), in their order."""
    columns: list[tuple[Any, ...]] = list(zip(*rows, strict=True)) if rows else [()] * 4
    video_ids, creator_ids, sound_ids, published_at = columns
    return FollowedColumns.from_arrays(
        video_ids=video_ids,
        creator_ids=creator_ids,
        sound_ids=[NO_SOUND_ID if sound is None else sound for sound in sound_ids],
        published_at=[published.timestamp() for published in published_at],
    )


def _candidate_columns(rows: Sequence[Row[Any]]) -> FollowedVideoColumns:
    """The columns of followed-candidate rows, in their order; no stats row counts zero."""
    columns: list[tuple[Any, ...]] = list(zip(*rows, strict=True)) if rows else [()] * 9
    video_ids, creator_ids, sound_ids, published_at, *stats = columns
    views, completion_sum, likes, shares, comments = (
        [0 if value is None else value for value in column] for column in stats
    )
    stats_columns = VideoStatsColumns.from_arrays(
        video_ids=video_ids,
        views=views,
        # As get_stats: a sum of many floats may overshoot views by rounding.
        completion_sum=np.minimum(np.asarray(completion_sum, dtype=np.float64), views),
        likes=likes,
        shares=shares,
        comments=comments,
    )
    return FollowedVideoColumns.from_arrays(
        video_ids=video_ids,
        creator_ids=creator_ids,
        sound_ids=[NO_SOUND_ID if sound is None else sound for sound in sound_ids],
        published_at=[published.timestamp() for published in published_at],
        stats=stats_columns,
    )


def _followed_videos_many_statements() -> tuple[Select[Any], Select[Any]]:
    """The statements of :meth:`SqlCatalog.followed_videos_many`, for PostgreSQL and
    SQLite, built once. Parameters: ``user_ids`` and ``limit``.

    One row per distinct video: its columns, then the requested users it is among the
    followed videos of (an array on PostgreSQL, comma-separated text on SQLite). Users
    following the same creators share most of their videos, and one row per (user,
    video) pair would fetch and decode each shared row again for every user.

    PostgreSQL runs the single-user statement's plan once per requested user, through a
    ``LATERAL`` subquery over ``unnest(:user_ids)``. SQLite, which has no ``LATERAL``,
    numbers each user's followed ready videos newest first (``row_number()`` over the
    user) and keeps the first ``limit``.
    """
    limit = bindparam("limit", type_=Integer)
    requested = requested_users()
    newest_of_creator = _newest_first(
        select(videos.c.video_id, videos.c.published_at).where(
            videos.c.creator_id == follows.c.creator_id, _IS_READY
        ),
        limit,
    ).lateral("newest_of_creator")
    newest_of_user = (
        select(newest_of_creator.c.video_id, newest_of_creator.c.published_at)
        .select_from(follows.join(newest_of_creator, true()))
        .where(follows.c.user_id == requested.c.user_id)
        .order_by(newest_of_creator.c.published_at.desc(), newest_of_creator.c.video_id.desc())
        .limit(limit)
        .lateral("newest_of_user")
    )
    postgres = (
        select(videos, func.array_agg(requested.c.user_id).label("followers"))
        .select_from(
            requested.join(newest_of_user, true()).join(
                videos, videos.c.video_id == newest_of_user.c.video_id
            )
        )
        .group_by(videos.c.video_id)
    )
    place = (
        func.row_number()
        .over(
            partition_by=follows.c.user_id,
            order_by=(videos.c.published_at.desc(), videos.c.video_id.desc()),
        )
        .label("place")
    )
    numbered = (
        select(follows.c.user_id.label("follower_id"), videos, place)
        .join(follows, follows.c.creator_id == videos.c.creator_id)
        .where(follows.c.user_id.in_(bindparam("user_ids", expanding=True)), _IS_READY)
        .subquery("numbered")
    )
    sqlite = (
        select(
            *(numbered.c[column.name] for column in videos.c),
            func.group_concat(numbered.c.follower_id).label("followers"),
        )
        .where(numbered.c.place <= limit)
        .group_by(numbered.c.video_id)
    )
    return postgres, sqlite


_FOLLOWED_VIDEOS_MANY_POSTGRES, _FOLLOWED_VIDEOS_MANY_SQLITE = _followed_videos_many_statements()


class SqlCatalog(ReplicaReadStore):
    """A :class:`~reelrank.Catalog` in PostgreSQL or SQLite.

    Ready videos are found through a partial index on ``(published_at, video_id)``, and
    a user's followed videos through a partial index of ready videos on ``(creator_id,
    published_at, video_id)``. On PostgreSQL :meth:`followed_videos` reads, for each
    followed creator, at most ``limit`` entries from that index alone (a ``LATERAL``
    subquery), keeps the newest ``limit`` of those and reads only their rows, whatever
    the statistics on ``follows`` and ``videos`` say; SQLite joins and sorts the
    followed creators' ready videos. :meth:`followed_videos_many` (the
    :class:`~reelrank.BulkReadCatalog` read cache warming uses) does the same for many
    users in one statement per :attr:`users_per_statement` users. :meth:`followed_candidates`
    makes the same walk joined to the statistics (on PostgreSQL from the index alone,
    through a function that pins its plan), so the catalog is a
    :class:`~reelrank.FollowedCandidatesCatalog` for a
    :class:`~reelrank_postgres.SqlEventStore` on its
    database. :meth:`followed_columns` reads the same videos' ranking columns without
    statistics, for an event store elsewhere (a :class:`~reelrank.FollowedColumnsCatalog`).

    With a ``read_engine``, the reads (:meth:`get_video`, :meth:`get_videos`,
    :meth:`get_labels`, :meth:`label_columns`, :meth:`get_creators`,
    :meth:`recent_videos`, :meth:`recent_labels`, :meth:`recent_label_columns`,
    :meth:`followed_creators`, :meth:`followed_videos`, :meth:`followed_videos_many`,
    :meth:`followed_candidates`, :meth:`followed_columns`) run on the replica; the
    writes, with the reads they make inside their transaction (the creator check of
    :meth:`put_video` and :meth:`follow`, the compare-and-set of :meth:`set_state`), on
    the primary.
    """

    _store = "catalog"

    def put_video(self, video: Video) -> None:
        """Insert or replace a video; its creator must exist."""
        check_instance("video", video, Video)
        row = _video_row(video)
        insert = self._insert(videos).values(row)
        upsert = insert.on_conflict_do_update(
            index_elements=[videos.c.video_id],
            set_={name: insert.excluded[name] for name in row if name != "video_id"},
        )
        with store_errors(self._store, "put_video"), self._engine.begin() as connection:
            exists = connection.execute(
                select(creators.c.creator_id).where(creators.c.creator_id == video.creator_id)
            ).first()
            if exists is None:
                raise NotFoundError("creator", video.creator_id)
            connection.execute(upsert)

    def put_creator(self, creator: Creator) -> None:
        """Insert or replace a creator."""
        check_instance("creator", creator, Creator)
        insert = self._insert(creators).values(
            creator_id=creator.creator_id,
            handle=creator.handle,
            display_name=creator.display_name,
        )
        upsert = insert.on_conflict_do_update(
            index_elements=[creators.c.creator_id],
            set_={"handle": insert.excluded.handle, "display_name": insert.excluded.display_name},
        )
        with store_errors(self._store, "put_creator"), self._engine.begin() as connection:
            connection.execute(upsert)

    def get_video(self, video_id: int) -> Video:
        """The video with this id; :class:`~reelrank.NotFoundError` if unknown."""
        check_id("video_id", video_id)
        with store_errors(self._store, "get_video"), self._reader.connect() as connection:
            row = connection.execute(select(videos).where(videos.c.video_id == video_id)).first()
        if row is None:
            raise NotFoundError("video", video_id)
        return _video(row)

    def get_videos(self, video_ids: Sequence[int]) -> dict[int, Video]:
        """Videos by id, in any state; unknown ids are omitted."""
        ids = unique(check_ids("video_ids", video_ids))
        if not ids:
            return {}
        query = select(videos).where(self._id_in(videos.c.video_id, ids))
        with store_errors(self._store, "get_videos"), self._reader.connect() as connection:
            rows = connection.execute(query).all()
        return {row.video_id: _video(row) for row in rows}

    def get_creators(self, creator_ids: Sequence[int]) -> dict[int, Creator]:
        """Creators by id; unknown ids are omitted."""
        ids = unique(check_ids("creator_ids", creator_ids))
        if not ids:
            return {}
        query = select(creators).where(self._id_in(creators.c.creator_id, ids))
        with store_errors(self._store, "get_creators"), self._reader.connect() as connection:
            rows = connection.execute(query).all()
        return {
            row.creator_id: Creator(
                creator_id=row.creator_id, handle=row.handle, display_name=row.display_name
            )
            for row in rows
        }

    def set_state(self, video_id: int, state: ProcessingState) -> Video:
        """Move a video to ``state`` if the state machine allows it.

        The update is a compare-and-set (``... WHERE state = <the state read>``), so a
        concurrent move between the read and the write is noticed on both dialects: the
        move is then checked again against the new state.
        """
        check_id("video_id", video_id)
        target = check_instance("state", state, ProcessingState)
        query = select(videos).where(videos.c.video_id == video_id)
        with store_errors(self._store, "set_state"), self._engine.begin() as connection:
            for _ in range(_STATE_MOVE_ATTEMPTS):
                row = connection.execute(query).first()
                if row is None:
                    raise NotFoundError("video", video_id)
                video = _video(row)
                video.state.check_move_to(target)
                moved = connection.execute(
                    videos.update()
                    .where(videos.c.video_id == video_id, videos.c.state == video.state.value)
                    .values(state=target.value)
                    .returning(videos.c.video_id)
                ).first()
                if moved is not None:
                    return video.model_copy(update={"state": target})
        raise StoreError(self._store, f"video {video_id} kept changing state; try again")

    def recent_videos(self, *, limit: int, since: datetime | None = None) -> list[Video]:
        """Ready videos, newest first; with ``since``, published at or after it."""
        check_limit("limit", limit)
        cutoff = None if since is None else check_aware("since", since)
        if limit == 0:
            return []
        query = select(videos).where(videos.c.state == _READY)
        if cutoff is not None:
            query = query.where(videos.c.published_at >= cutoff)
        with store_errors(self._store, "recent_videos"), self._reader.connect() as connection:
            rows = connection.execute(_newest_first(query, limit)).all()
        return [_video(row) for row in rows]

    def get_labels(self, video_ids: Sequence[int]) -> dict[int, VideoLabels]:
        """The labels of :meth:`get_videos` for the same ids, four columns of each row."""
        ids = unique(check_ids("video_ids", video_ids))
        if not ids:
            return {}
        query = select(*_LABEL_COLUMNS).where(self._id_in(videos.c.video_id, ids))
        with store_errors(self._store, "get_labels"), self._reader.connect() as connection:
            return {label.video_id: label for label in _read_labels(connection.execute(query))}

    def recent_labels(self, *, limit: int, since: datetime | None = None) -> list[VideoLabels]:
        """The labels of :meth:`recent_videos`, in its order, four columns of each row."""
        check_limit("limit", limit)
        cutoff = None if since is None else check_aware("since", since)
        if limit == 0:
            return []
        query = select(*_LABEL_COLUMNS).where(videos.c.state == _READY)
        if cutoff is not None:
            query = query.where(videos.c.published_at >= cutoff)
        with store_errors(self._store, "recent_labels"), self._reader.connect() as connection:
            return _read_labels(connection.execute(_newest_first(query, limit)))

    def recent_label_columns(
        self, *, limit: int, since: datetime | None = None
    ) -> VideoLabelColumns:
        """:meth:`recent_labels` as columns (a :class:`~reelrank.LabelColumnsCatalog`).

        On PostgreSQL one row of arrays, a column each (each video's hashtags flat), so
        no object is built per video; SQLite reads :meth:`recent_labels`' rows, a
        thousand at a time, into the columns."""
        check_limit("limit", limit)
        cutoff = None if since is None else check_aware("since", since)
        if limit == 0:
            return VideoLabelColumns.from_labels(())
        with (
            store_errors(self._store, "recent_label_columns"),
            self._reader.connect() as connection,
        ):
            if self._postgres:
                if cutoff is None:
                    row = connection.execute(
                        _RECENT_LABEL_ARRAYS_POSTGRES, {"limit": limit}
                    ).first()
                else:
                    row = connection.execute(
                        _RECENT_LABEL_ARRAYS_SINCE_POSTGRES, {"limit": limit, "since": cutoff}
                    ).first()
                return _label_arrays(row)
            query = select(*_LABEL_COLUMNS).where(videos.c.state == _READY)
            if cutoff is not None:
                query = query.where(videos.c.published_at >= cutoff)
            return _label_columns(connection.execute(_newest_first(query, limit)))

    def label_columns(self, video_ids: Sequence[int]) -> VideoLabelColumns:
        """:meth:`get_labels` as columns, ascending ids (a
        :class:`~reelrank.LabelColumnsCatalog`), read as :meth:`recent_label_columns`
        reads them."""
        ids = unique(check_ids("video_ids", video_ids))
        if not ids:
            return VideoLabelColumns.from_labels(())
        with store_errors(self._store, "label_columns"), self._reader.connect() as connection:
            if self._postgres:
                row = connection.execute(_LABEL_ARRAYS_POSTGRES, {"video_ids": ids}).first()
                return _label_arrays(row)
            query = (
                select(*_LABEL_COLUMNS)
                .where(self._id_in(videos.c.video_id, ids))
                .order_by(videos.c.video_id)
            )
            return _label_columns(connection.execute(query))

    def follow(self, user_id: int, creator_id: int) -> None:
        """Record a follow; the creator must exist; following twice is a no-op."""
        check_id("user_id", user_id)
        check_id("creator_id", creator_id)
        insert = self._insert(follows).values(user_id=user_id, creator_id=creator_id)
        with store_errors(self._store, "follow"), self._engine.begin() as connection:
            exists = connection.execute(
                select(creators.c.creator_id).where(creators.c.creator_id == creator_id)
            ).first()
            if exists is None:
                raise NotFoundError("creator", creator_id)
            connection.execute(insert.on_conflict_do_nothing())

    def unfollow(self, user_id: int, creator_id: int) -> None:
        """Remove a follow if present."""
        check_id("user_id", user_id)
        check_id("creator_id", creator_id)
        delete = follows.delete().where(
            follows.c.user_id == user_id, follows.c.creator_id == creator_id
        )
        with store_errors(self._store, "unfollow"), self._engine.begin() as connection:
            connection.execute(delete)

    def followed_creators(self, user_id: int) -> frozenset[int]:
        """Creators the user follows; empty for an unknown user."""
        check_id("user_id", user_id)
        query = select(follows.c.creator_id).where(follows.c.user_id == user_id)
        with store_errors(self._store, "followed_creators"), self._reader.connect() as connection:
            return frozenset(connection.execute(query).scalars())

    def followed_videos(self, user_id: int, *, limit: int) -> list[Video]:
        """Ready videos of followed creators, newest first."""
        check_id("user_id", user_id)
        check_limit("limit", limit)
        if limit == 0:
            return []
        query = _FOLLOWED_VIDEOS_POSTGRES if self._postgres else _FOLLOWED_VIDEOS_SQLITE
        # In a transaction block: SET LOCAL lasts until its end (and does nothing outside).
        with (
            store_errors(self._store, "followed_videos"),
            self._read_engine.connect() as connection,
        ):
            if self._postgres:
                # Statistics saying creators have few videos make the planner fetch each
                # creator's rows by bitmap and sort them all; walking the index backwards
                # stops at ``limit`` whatever the counts (this transaction only).
                connection.execute(_NO_BITMAP_SCANS)
            rows = connection.execute(query, {"user_id": user_id, "limit": limit}).all()
        return [_video(row) for row in rows]

    def followed_videos_many(
        self, user_ids: Sequence[int], *, limit: int
    ) -> dict[int, list[Video]]:
        """:meth:`followed_videos` of each user: one statement per
        :attr:`users_per_statement` users."""
        users = check_user_ids("user_ids", user_ids)
        check_limit("limit", limit)
        found: dict[int, list[Video]] = {user_id: [] for user_id in users}
        if limit == 0:
            return found
        query = _FOLLOWED_VIDEOS_MANY_POSTGRES if self._postgres else _FOLLOWED_VIDEOS_MANY_SQLITE
        with (
            store_errors(self._store, "followed_videos_many"),
            self._read_engine.connect() as connection,
        ):
            if self._postgres:
                # As in followed_videos: walk each creator's index backwards.
                connection.execute(_NO_BITMAP_SCANS)
            for chunk in chunked(users, self.users_per_statement):
                rows = connection.execute(query, {"user_ids": list(chunk), "limit": limit})
                for *columns, followers in rows:
                    video = _video(columns)
                    if isinstance(followers, str):  # SQLite's group_concat
                        followers = [int(user_id) for user_id in followers.split(",")]
                    for user_id in followers:
                        found[user_id].append(video)
        # Rows come one per video: put each user's in followed_videos' order.
        for user_videos in found.values():
            user_videos.sort(key=_recency, reverse=True)
        return found

    def reads_stats_of(self, events: object) -> bool:
        """Whether ``events`` is a :class:`~reelrank_postgres.SqlEventStore` reading the
        database this catalog reads (the same URL), so that
        :meth:`followed_candidates` reads its statistics."""
        return isinstance(events, SqlEventStore) and events.read_engine.url == self._read_engine.url

    def followed_candidates(self, user_id: int, *, limit: int) -> FollowedVideoColumns:
        """The videos of :meth:`followed_videos` as the feed's ranking columns, with their
        statistics from ``video_stats``, in one statement and without building a video
        per row.

        On PostgreSQL the statement calls ``reelrank_followed_candidates`` (revision
        0009): the same walk as :meth:`followed_videos`, its columns read from
        ``ix_videos_ready_creator_recency_sound`` alone, the kept rows joined to the
        statistics by primary key, with the planner settings the function carries; one
        round trip in autocommit. SQLite joins the statistics to its followed-videos
        statement."""
        return _candidate_columns(
            self._followed_rows(
                "followed_candidates",
                user_id,
                limit,
                _FOLLOWED_CANDIDATES_POSTGRES if self._postgres else _FOLLOWED_CANDIDATES_SQLITE,
            )
        )

    def followed_columns(self, user_id: int, *, limit: int) -> FollowedColumns:
        """The videos of :meth:`followed_videos` as the feed's ranking columns, without
        statistics and without building a video per row (a
        :class:`~reelrank.FollowedColumnsCatalog`, for an event store in another
        database).

        On PostgreSQL the statement reads the ranking columns of
        ``reelrank_followed_candidates``, the walk :meth:`followed_candidates` makes,
        in one round trip; SQLite runs its followed-videos statement for these columns."""
        return _followed_columns(
            self._followed_rows(
                "followed_columns",
                user_id,
                limit,
                _FOLLOWED_COLUMNS_POSTGRES if self._postgres else _FOLLOWED_COLUMNS_SQLITE,
            )
        )

    def _followed_rows(
        self, operation: str, user_id: int, limit: int, query: Executable
    ) -> Sequence[Row[Any]]:
        """The rows of a followed read's ``query`` for ``user_id`` (checked, as
        ``limit``), in one round trip; none for ``limit`` 0, without a round trip."""
        check_id("user_id", user_id)
        check_limit("limit", limit)
        if limit == 0:
            return []
        with store_errors(self._store, operation), self._reader.connect() as connection:
            return connection.execute(query, {"user_id": user_id, "limit": limit}).all()
