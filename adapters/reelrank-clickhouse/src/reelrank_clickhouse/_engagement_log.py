"""The ClickHouse engagement log: individual events by time, for trending and
creator recommendations."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.engine import Engine

from reelrank import ENGAGEMENT_KINDS, EngagementEvent, EngagementWindow, InvalidInputError
from reelrank.stores.adapter import check_aware, check_id, check_limit

from ._client import DriverClients, id_check_columns
from ._config import ClickHouseTables
from ._errors import store_errors
from ._rows import EVENT_COLUMNS, EVENT_SELECT, ArrivalSequence, event_columns, event_from_row
from ._schema import KIND_CODES

__all__ = ["ClickHouseEngagementLog"]

_STORE = "engagement_log"

# ``LIMIT 1 BY event_id`` hides a copy that two writers delivered at the same moment,
# until the ReplacingMergeTree merges it away. Copies of an event share its user, so in
# sharded mode they are on one shard, where the LIMIT BY runs.
_BETWEEN = """SELECT {EVENT_SELECT} FROM {table}
WHERE occurred_at >= :start_s AND occurred_at <= :end_s
  AND (occurred_at > :start_at OR occurred_us >= :start_us)
  AND (occurred_at < :end_at OR occurred_us < :end_us)
ORDER BY occurred_at DESC, occurred_us DESC, event_id DESC
LIMIT 1 BY event_id
LIMIT :limit"""

# The same rows as _BETWEEN, four columns of them, through the driver's columnar
# read (clickhouse-driver's %(name)s parameters; times as Unix seconds, which
# ``toDateTime`` takes whatever the server's time zone).
_COLUMNS_BETWEEN = """SELECT video_id, user_id, CAST(kind AS Int8) AS code,
  toInt64(toUnixTimestamp(occurred_at)) * 1000000 + occurred_us AS at_us
FROM {table}
WHERE occurred_at >= toDateTime(%(start_s)s) AND occurred_at <= toDateTime(%(end_s)s)
  AND (occurred_at > toDateTime(%(start_s)s) OR occurred_us >= %(start_us)s)
  AND (occurred_at < toDateTime(%(end_s)s) OR occurred_us < %(end_us)s)
ORDER BY occurred_at DESC, occurred_us DESC, event_id DESC
LIMIT 1 BY event_id
LIMIT %(limit)s"""

# Window kind code of each Enum8 code of the table (0 is not an Enum8 value).
_WINDOW_CODE = np.zeros(max(KIND_CODES.values()) + 1, dtype=np.int8)
for _code, _kind in enumerate(ENGAGEMENT_KINDS):
    _WINDOW_CODE[KIND_CODES[_kind.value]] = _code

_OF_USER = """SELECT {EVENT_SELECT} FROM {table}
WHERE user_id = :user_id AND occurred_at >= :since_s
  AND (occurred_at > :since_at OR occurred_us >= :since_us)
ORDER BY occurred_at DESC, occurred_us DESC, event_id DESC
LIMIT 1 BY event_id
LIMIT :limit"""


# The known-id check reads the log itself, narrowed by its key's first column to the
# seconds of the batch's events: a redelivered event carries its original's
# ``occurred_at``, so only rows of those seconds can hold its id. A set of literals
# narrows the key range on 18.16 (an external table's does not), so the check reads the
# granules of those seconds, whatever the log holds. Before, it read every id of a
# table ordered by id (``engagement_log_ids``): 1,000,000 rows per check at 1,000,000
# events, a CPU cost of every event write that grew with the log.
_KNOWN_AT = """SELECT DISTINCT event_id FROM {table}
WHERE occurred_at IN %(seconds)s AND event_id GLOBAL IN batch"""
# A batch spanning more seconds than that (a bulk load of past events) reads the span
# from its first second to its last instead: a query's text is limited (256 kB by
# default), and such a batch reads most granules of its span anyway.
_KNOWN_WITHIN = """SELECT DISTINCT event_id FROM {table}
WHERE occurred_at >= toDateTime(%(first)s) AND occurred_at <= toDateTime(%(last)s)
  AND event_id GLOBAL IN batch"""
_SECONDS_PER_CHECK = 1_000
"""The most distinct seconds a known-id check names in its text."""


def _known_check(
    known_at: str, known_within: str, seconds: Sequence[int]
) -> tuple[str, dict[str, Any]]:
    """The known-id check of events of Unix times ``seconds`` and its parameters."""
    distinct: list[int] = np.unique(np.asarray(seconds, dtype=np.int64)).tolist()
    if len(distinct) <= _SECONDS_PER_CHECK:
        return known_at, {"seconds": tuple(distinct)}
    return known_within, {"first": distinct[0], "last": distinct[-1]}


def _split(at: datetime) -> tuple[datetime, int]:
    """A UTC instant as the table holds it: whole seconds (naive UTC) and microseconds."""
    utc = at.astimezone(UTC)
    return utc.replace(microsecond=0, tzinfo=None), utc.microsecond


def _unix_seconds(naive_utc: datetime) -> int:
    return int(naive_utc.replace(tzinfo=UTC).timestamp())


class ClickHouseEngagementLog:
    """An :class:`~reelrank.EngagementLog` on the ``engagement_log`` table (its name and
    its id table's come from ``tables``).

    The table is a ReplacingMergeTree partitioned by month and ordered by
    ``(occurred_at, occurred_us, event_id)``, so a time window reads a range of the
    primary key; a user's events are read from ``since`` onwards and filtered by user.
    Recording checks the log for the batch's ids first (one query, ids as an external
    table, reading only the rows of the seconds of the batch's events: a redelivered
    event carries its original's ``occurred_at``) and inserts the new events in one
    columnar insert. Two writers that deliver the same new id at the same moment both
    insert it; reads return each id once (``LIMIT 1 BY event_id``), so the log holds
    every event once as its readers see it. Old months go with ``ALTER TABLE engagement_log DROP
    PARTITION``.
    """

    def __init__(self, engine: Engine, *, tables: ClickHouseTables | None = None) -> None:
        self._engine = engine
        self._clients = DriverClients(engine)
        names = tables or ClickHouseTables()
        self._between = text(_BETWEEN.format(EVENT_SELECT=EVENT_SELECT, table=names.engagement_log))
        self._columns_between = _COLUMNS_BETWEEN.format(table=names.engagement_log)
        self._of_user = text(_OF_USER.format(EVENT_SELECT=EVENT_SELECT, table=names.engagement_log))
        self._known_at = _KNOWN_AT.format(table=names.engagement_log)
        self._known_within = _KNOWN_WITHIN.format(table=names.engagement_log)
        self._insert = f"INSERT INTO {names.engagement_log} ({EVENT_COLUMNS}) VALUES"
        self._write_lock = threading.Lock()
        self._sequence = ArrivalSequence()

    @property
    def engine(self) -> Engine:
        """The engine the log queries."""
        return self._engine

    def record(self, event: EngagementEvent) -> bool:
        """Keep an event once per ``event_id``; ``False`` for a duplicate."""
        return self.record_many([event]) == 1

    def record_many(self, events: Sequence[EngagementEvent]) -> int:
        """Keep a batch of events in one insert; returns how many were new."""
        return sum(self.record_each(events))

    def record_each(self, events: Sequence[EngagementEvent]) -> list[bool]:
        """:meth:`record_many`, saying for each event whether it was new (``False`` for
        an id kept before, or repeated within the batch after its first occurrence).
        For :class:`~reelrank.GroupCommitEngagementLog`, which keeps the events of
        concurrent requests in one batch and answers each request."""
        if isinstance(events, str | bytes) or not isinstance(events, Sequence):
            raise InvalidInputError("events", "must be a sequence of EngagementEvent")
        batch: dict[str, EngagementEvent] = {}
        for event in events:
            if not isinstance(event, EngagementEvent):
                raise InvalidInputError("event", "must be an EngagementEvent")
            batch.setdefault(event.event_id, event)
        fresh_ids: set[str] = set()
        if batch:
            with self._write_lock, store_errors(_STORE, "record"):
                client = self._clients.writer()
                seconds = [_unix_seconds(_split(event.occurred_at)[0]) for event in batch.values()]
                query, params = _known_check(self._known_at, self._known_within, seconds)
                known_ids = id_check_columns(client, query, params, table="batch",
                                             ids=list(batch))  # fmt: skip
                known = set(known_ids[0]) if known_ids else set()
                fresh = [event for event_id, event in batch.items() if event_id not in known]
                if fresh:
                    columns = event_columns(fresh, self._sequence.take(len(fresh)))
                    client.execute(self._insert, columns, columnar=True)
                    fresh_ids = {event.event_id for event in fresh}
        results: list[bool] = []
        for event in events:
            results.append(event.event_id in fresh_ids)
            fresh_ids.discard(event.event_id)
        return results

    def events_between(
        self, start: datetime, end: datetime, *, limit: int
    ) -> list[EngagementEvent]:
        """Events with ``start <= occurred_at < end``, newest first, at most ``limit``."""
        start_at, start_us = _split(check_aware("start", start))
        end_at, end_us = _split(check_aware("end", end))
        check_limit("limit", limit)
        if limit == 0 or (start_at, start_us) >= (end_at, end_us):
            return []
        params = {
            "start_s": start_at,
            "end_s": end_at,
            "start_at": start_at,
            "start_us": start_us,
            "end_at": end_at,
            "end_us": end_us,
            "limit": limit,
        }
        with store_errors(_STORE, "events_between"), self._engine.connect() as conn:
            return [event_from_row(row) for row in conn.execute(self._between, params)]

    def columns_between(self, start: datetime, end: datetime, *, limit: int) -> EngagementWindow:
        """The events of :meth:`events_between`, in its order, as columns.

        One columnar read of four columns on a pooled driver client (each column
        arrives as one block and becomes one array); no event is built per row.
        """
        start_at, start_us = _split(check_aware("start", start))
        end_at, end_us = _split(check_aware("end", end))
        check_limit("limit", limit)
        columns: list[tuple[int, ...]] = []
        if limit and (start_at, start_us) < (end_at, end_us):
            params = {
                "start_s": _unix_seconds(start_at),
                "start_us": start_us,
                "end_s": _unix_seconds(end_at),
                "end_us": end_us,
                "limit": limit,
            }
            with store_errors(_STORE, "columns_between"), self._clients.reader() as client:
                columns = client.execute(self._columns_between, params, columnar=True)
        if not columns:
            columns = [(), (), (), ()]
        videos, users, codes, times = columns
        return EngagementWindow.from_arrays(
            video_ids=np.array(videos, dtype=np.int64),
            user_ids=np.array(users, dtype=np.int64),
            kinds=_WINDOW_CODE[np.array(codes, dtype=np.intp)],
            occurred_us=np.array(times, dtype=np.int64),
        )

    def user_events(self, user_id: int, *, since: datetime, limit: int) -> list[EngagementEvent]:
        """The user's events at or after ``since``, newest first, at most ``limit``."""
        check_id("user_id", user_id)
        since_at, since_us = _split(check_aware("since", since))
        check_limit("limit", limit)
        if limit == 0:
            return []
        params = {
            "user_id": user_id,
            "since_s": since_at,
            "since_at": since_at,
            "since_us": since_us,
            "limit": limit,
        }
        with store_errors(_STORE, "user_events"), self._engine.connect() as conn:
            return [event_from_row(row) for row in conn.execute(self._of_user, params)]
