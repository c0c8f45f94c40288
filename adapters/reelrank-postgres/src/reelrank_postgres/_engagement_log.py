"""The engagement log in SQL: every recorded event, read back by time window or by user."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Row, Select, cast, extract, select

from reelrank.models import (
    ENGAGEMENT_KINDS,
    EngagementEvent,
    EngagementKind,
    EngagementWindow,
    epoch_microseconds,
)
from reelrank.stores.adapter import check_aware, check_id, check_limit

from ._base import SqlStore, check_instance
from ._errors import store_errors
from ._schema import engagement_log

__all__ = ["SqlEngagementLog"]

_KIND_CODE = {kind.value: code for code, kind in enumerate(ENGAGEMENT_KINDS)}


def _event(row: Row[Any]) -> EngagementEvent:
    (
        event_id,
        kind,
        user_id,
        video_id,
        occurred_at,
        watched_seconds,
        completion,
        channel,
        variant,
    ) = row
    # Rows hold what record wrote from a validated event: rebuilt without validating again.
    return EngagementEvent.model_construct(
        event_id=event_id,
        kind=EngagementKind(kind),
        user_id=user_id,
        video_id=video_id,
        occurred_at=occurred_at,
        watched_seconds=watched_seconds,
        completion=completion,
        channel=channel,
        variant=variant,
    )


def _newest(query: Select[Any], limit: int) -> Select[Any]:
    return query.order_by(
        engagement_log.c.occurred_at.desc(), engagement_log.c.event_id.desc()
    ).limit(limit)


class SqlEngagementLog(SqlStore):
    """An :class:`~reelrank.protocols.EngagementLog` in PostgreSQL or SQLite.

    One row per event, inserted with ``ON CONFLICT (event_id) DO NOTHING``; reads walk
    the indexes on ``(occurred_at, event_id)`` and ``(user_id, occurred_at, event_id)``.
    Event ids compare by code point on both dialects (collation ``"C"`` on PostgreSQL),
    as in the in-memory log. Rows stay until :meth:`prune` deletes them; an id deleted
    can be recorded again.

    It takes no replica: trending and creator recommendations read the latest events,
    so every read runs on the primary.
    """

    _store = "log"

    def record(self, event: EngagementEvent) -> bool:
        """Keep an event once per ``event_id``; ``False`` for a duplicate."""
        check_instance("event", event, EngagementEvent)
        insert = self._insert(engagement_log).values(
            event_id=event.event_id,
            kind=event.kind.value,
            user_id=event.user_id,
            video_id=event.video_id,
            occurred_at=event.occurred_at,
            watched_seconds=event.watched_seconds,
            completion=event.completion,
            channel=event.channel,
            variant=event.variant,
        )
        statement = insert.on_conflict_do_nothing().returning(engagement_log.c.event_id)
        with store_errors(self._store, "record"), self._engine.begin() as connection:
            return connection.execute(statement).first() is not None

    def events_between(
        self, start: datetime, end: datetime, *, limit: int
    ) -> list[EngagementEvent]:
        """Events with ``start <= occurred_at < end``, the newest ``limit``, newest first."""
        start = check_aware("start", start)
        end = check_aware("end", end)
        check_limit("limit", limit)
        if limit == 0:
            return []
        query = select(engagement_log).where(
            engagement_log.c.occurred_at >= start, engagement_log.c.occurred_at < end
        )
        with store_errors(self._store, "events_between"), self._engine.connect() as connection:
            rows = connection.execute(_newest(query, limit)).all()
        return [_event(row) for row in rows]

    def columns_between(self, start: datetime, end: datetime, *, limit: int) -> EngagementWindow:
        """The events of :meth:`events_between`, in its order, as columns.

        Reads four columns instead of nine and builds no event per row. PostgreSQL
        computes each time in microseconds (``EXTRACT(EPOCH ...)`` is exact
        ``numeric``); SQLite's text times are converted here.
        """
        start = check_aware("start", start)
        end = check_aware("end", end)
        check_limit("limit", limit)
        log = engagement_log.c
        occurred = (
            cast(extract("epoch", log.occurred_at) * 1_000_000, BigInteger)
            if self._postgres
            else log.occurred_at
        )
        query = select(log.video_id, log.user_id, log.kind, occurred).where(
            log.occurred_at >= start, log.occurred_at < end
        )
        rows: list[Row[Any]] = []
        if limit:
            with store_errors(self._store, "columns_between"), self._engine.connect() as conn:
                rows = list(conn.execute(_newest(query, limit)).all())
        videos, users, kinds, times = zip(*rows, strict=True) if rows else ((), (), (), ())
        return EngagementWindow.from_arrays(
            video_ids=videos,
            user_ids=users,
            kinds=[_KIND_CODE[kind] for kind in kinds],
            occurred_us=times if self._postgres else [epoch_microseconds(t) for t in times],
        )

    def user_events(self, user_id: int, *, since: datetime, limit: int) -> list[EngagementEvent]:
        """The user's events at or after ``since``, the newest ``limit``, newest first."""
        check_id("user_id", user_id)
        since = check_aware("since", since)
        check_limit("limit", limit)
        if limit == 0:
            return []
        query = select(engagement_log).where(
            engagement_log.c.user_id == user_id, engagement_log.c.occurred_at >= since
        )
        with store_errors(self._store, "user_events"), self._engine.connect() as connection:
            rows = connection.execute(_newest(query, limit)).all()
        return [_event(row) for row in rows]

    def prune(self, before: datetime) -> int:
        """Delete the events that occurred before ``before``; returns how many."""
        cutoff = check_aware("before", before)
        delete = engagement_log.delete().where(engagement_log.c.occurred_at < cutoff)
        with store_errors(self._store, "prune"), self._engine.begin() as connection:
            return int(connection.execute(delete).rowcount)
