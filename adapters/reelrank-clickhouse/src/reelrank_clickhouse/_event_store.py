"""The ClickHouse event store: events in a MergeTree table, aggregates in
AggregatingMergeTree tables kept current by materialized views."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from clickhouse_driver import Client
from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection, Engine

from reelrank import (
    MAX_ID,
    EngagementEvent,
    EngagementKind,
    InvalidInputError,
    VideoStats,
    affinity,
    affinity_credit,
)
from reelrank.stores.adapter import check_id, check_ids, check_limit

from ._errors import store_errors
from ._rows import ArrivalSequence

__all__ = ["ClickHouseEventStore", "known_event_ids"]

_STORE = "events"

_COUNTS_OF_VIDEOS = text(
    """SELECT video_id, toString(kind), countMerge(events), sumMerge(completion_sum)
FROM video_counts WHERE video_id IN :ids GROUP BY video_id, kind"""
).bindparams(bindparam("ids", expanding=True))

_LIKES_OF_VIDEOS = text(
    """SELECT video_id, sum(liked) FROM (
    SELECT video_id, user_id, argMaxMerge(liked) AS liked
    FROM video_likes WHERE video_id IN :ids GROUP BY video_id, user_id
) GROUP BY video_id"""
).bindparams(bindparam("ids", expanding=True))

_CREDIT_OF_USER = text(
    """SELECT creator_id, toString(kind), countMerge(events), sumMerge(completion_sum)
FROM creator_credit WHERE user_id = :user_id GROUP BY creator_id, kind"""
)

_LIKED_VIDEOS_OF_USER = text(
    """SELECT creator_id, sum(liked) FROM (
    SELECT creator_id, video_id, argMaxMerge(liked) AS liked
    FROM user_likes WHERE user_id = :user_id GROUP BY creator_id, video_id
) GROUP BY creator_id"""
)

_POPULAR = text(
    """SELECT video_id, countMerge(events) AS views
FROM video_counts WHERE kind = 'watch'
GROUP BY video_id HAVING views > 0
ORDER BY views DESC, video_id ASC LIMIT :limit"""
)


# Columnar insert of the batch: one list per column, in this order.
_INSERT_EVENTS = (
    "INSERT INTO events (event_id, kind, user_id, video_id, creator_id, occurred_at, "
    "occurred_us, watched_seconds, completion, channel, variant, seq) VALUES"
)

# The batch's ids travel as an external table (native blocks, not SQL text), so a
# batch of any size stays under the server's ``max_query_size``.
_KNOWN_OF_BATCH = "SELECT event_id FROM event_ids WHERE event_id IN batch"

_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def known_event_ids(connection: Connection, table: str, event_ids: Iterable[str]) -> set[str]:
    """The ids among ``event_ids`` that ``table`` (an id table ordered by event_id) holds."""
    ids = list(event_ids)
    if not ids:
        return set()
    query = text(f"SELECT DISTINCT event_id FROM {table} WHERE event_id IN :ids").bindparams(
        bindparam("ids", expanding=True)
    )
    return {row[0] for row in connection.execute(query, {"ids": ids})}


class ClickHouseEventStore:
    """An :class:`~reelrank.EventStore` on ClickHouse.

    Every applied event is a row of ``events``; materialized views fold each inserted
    block into per-video counts, per-video like states and per-(user, creator) credit
    (see :func:`~reelrank_clickhouse.create_schema`). Reads merge the aggregate states of the
    requested keys only.

    Idempotency by ``event_id`` is enforced on insert: the store asks ``event_ids``
    (ordered by id) which ids of the batch it already holds, in one query per batch,
    and inserts only the new ones in one columnar insert, under a lock that serialises
    check and insert within the store object. Writes go over one native-protocol
    client of the store's own, made from the engine's URL (same server, database,
    timeouts and settings): through SQLAlchemy, every statement would open a new
    connection, and rows would pass as dicts, which held ingest near 10,000 events/s.
    Race window: two store objects (two processes, typically) that deliver the same
    new id at the same moment both pass the check, and the views count that event
    twice; a later delivery is refused again. The ``events`` table itself is a
    ReplacingMergeTree whose sort key ends with the id, so merges drop such a copy from
    the raw events. The views keep count states, not sets of ids: a read then costs
    the same however many events a video has (``uniqExact(event_id)`` states would
    close the race for counts but made reads slower than scanning the raw events; see
    the adapter's docs). ``completion_sum`` is capped at ``views`` on read, as in the
    in-memory store. Ids are remembered as long as their month's partition of
    ``event_ids`` is kept.

    Needs the tables of :func:`~reelrank_clickhouse.create_schema`. Thread-safe.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._write_lock = threading.Lock()
        self._sequence = ArrivalSequence()
        self._writer: Client | None = None

    @property
    def engine(self) -> Engine:
        """The engine the store queries."""
        return self._engine

    def append(self, event: EngagementEvent, *, creator_id: int) -> bool:
        """Apply one event once per ``event_id``; ``False`` for an id seen before."""
        return self.append_many([(event, creator_id)]) == 1

    def append_many(self, items: Sequence[tuple[EngagementEvent, int]]) -> int:
        """Apply a batch of ``(event, creator_id)`` pairs in one insert.

        Returns how many were applied: an id already stored, or repeated within the
        batch after its first occurrence, is skipped. Every pair is validated before
        anything is written, so a bad one raises :class:`~reelrank.InvalidInputError`
        and nothing of the batch is stored.
        """
        if isinstance(items, str | bytes) or not isinstance(items, Sequence):
            raise InvalidInputError("items", "must be a sequence of (event, creator_id) pairs")
        batch: dict[str, tuple[EngagementEvent, int]] = {}
        # Hoisted out of the loop: this loop runs once per event of batches of 10,000s.
        watch = EngagementKind.WATCH
        for item in items:
            if not isinstance(item, tuple) or len(item) != 2:
                raise InvalidInputError("items", f"each item must be (event, creator_id): {item!r}")
            event, creator_id = item
            if not isinstance(event, EngagementEvent):
                raise InvalidInputError("event", "must be an EngagementEvent")
            if type(creator_id) is not int or not 1 <= creator_id <= MAX_ID:
                # Raises, naming the field, unless creator_id is a valid int subclass.
                check_id("creator_id", creator_id)
            if event.kind is watch and event.completion is None:
                raise InvalidInputError("completion", "a watch must carry completion when appended")
            if event.event_id not in batch:
                batch[event.event_id] = item
        if not batch:
            return 0
        with self._write_lock, store_errors(_STORE, "append"):
            client = self._writer_client()
            known = {
                row[0]
                for row in client.execute(
                    _KNOWN_OF_BATCH,
                    external_tables=[
                        {
                            "name": "batch",
                            "structure": [("event_id", "String")],
                            "data": [{"event_id": event_id} for event_id in batch],
                        }
                    ],
                )
            }
            fresh = [pair for event_id, pair in batch.items() if event_id not in known]
            if not fresh:
                return 0
            client.execute(
                _INSERT_EVENTS,
                self._columns(fresh, self._sequence.take(len(fresh))),
                columnar=True,
            )
        return len(fresh)

    def _writer_client(self) -> Client:
        """The store's write client, made on first use (call under the write lock).

        The driver reconnects it on the next call after a failure."""
        if self._writer is None:
            (dsn,), _ = self._engine.dialect.create_connect_args(self._engine.url)
            self._writer = Client.from_url(dsn)
        return self._writer

    @staticmethod
    def _columns(pairs: Sequence[tuple[EngagementEvent, int]], first_seq: int) -> list[list[Any]]:
        """The columns of ``_INSERT_EVENTS`` for ``pairs``; seq counts up from ``first_seq``.

        ``DateTime`` holds whole seconds, so the microseconds go in ``occurred_us``;
        times are given as Unix seconds, which the driver passes through unconverted.
        """
        offsets = [event.occurred_at - _UNIX_EPOCH for event, _ in pairs]
        return [
            [event.event_id for event, _ in pairs],
            [event.kind.value for event, _ in pairs],
            [event.user_id for event, _ in pairs],
            [event.video_id for event, _ in pairs],
            [creator_id for _, creator_id in pairs],
            [offset.days * 86_400 + offset.seconds for offset in offsets],
            [offset.microseconds for offset in offsets],
            [event.watched_seconds for event, _ in pairs],
            [event.completion for event, _ in pairs],
            [event.channel for event, _ in pairs],
            [event.variant for event, _ in pairs],
            list(range(first_seq, first_seq + len(pairs))),
        ]

    def get_stats(self, video_ids: Sequence[int]) -> dict[int, VideoStats]:
        """Aggregates for every requested id; zeros for videos never engaged with."""
        ids = check_ids("video_ids", video_ids)
        unique = list(dict.fromkeys(ids))
        if not unique:
            return {}
        counts: dict[int, dict[str, Any]] = {}
        with store_errors(_STORE, "get_stats"), self._engine.connect() as conn:
            for video_id, kind, events, completion_sum in conn.execute(
                _COUNTS_OF_VIDEOS, {"ids": unique}
            ):
                fields = counts.setdefault(int(video_id), {})
                if kind == "watch":
                    fields["views"] = int(events)
                    fields["completion_sum"] = float(completion_sum)
                elif kind == "share":
                    fields["shares"] = int(events)
                else:
                    fields["comments"] = int(events)
            for video_id, likes in conn.execute(_LIKES_OF_VIDEOS, {"ids": unique}):
                counts.setdefault(int(video_id), {})["likes"] = int(likes)
        result: dict[int, VideoStats] = {}
        for video_id in unique:
            fields = counts.get(video_id, {})
            views = fields.get("views", 0)
            # Summing many floats may overshoot views by rounding; the invariant holds exactly.
            fields["completion_sum"] = min(fields.get("completion_sum", 0.0), float(views))
            result[video_id] = VideoStats(video_id=video_id, **fields)
        return result

    def get_affinities(self, user_id: int, creator_ids: Sequence[int]) -> dict[int, float]:
        """Affinity of the user with every requested creator; ``0.0`` when none.

        The user's credit with every creator is read (the total is the denominator of
        :func:`~reelrank.affinity`), from the keys of one user only.
        """
        check_id("user_id", user_id)
        ids = check_ids("creator_ids", creator_ids)
        found = dict.fromkeys(ids, 0.0)
        if not found:
            return found
        credit: dict[int, float] = {}
        params = {"user_id": user_id}
        with store_errors(_STORE, "get_affinities"), self._engine.connect() as conn:
            for creator_id, kind, events, completion_sum in conn.execute(_CREDIT_OF_USER, params):
                if kind == "watch":
                    earned = float(completion_sum)
                else:
                    earned = int(events) * affinity_credit(EngagementKind(kind))
                credit[int(creator_id)] = credit.get(int(creator_id), 0.0) + earned
            like = affinity_credit(EngagementKind.LIKE)
            for creator_id, liked in conn.execute(_LIKED_VIDEOS_OF_USER, params):
                credit[int(creator_id)] = credit.get(int(creator_id), 0.0) + int(liked) * like
        total = sum(credit.values())
        for creator_id in found:
            if creator_id in credit:
                found[creator_id] = affinity(credit[creator_id], total)
        return found

    def popular_video_ids(self, *, limit: int) -> list[int]:
        """Most viewed video ids, most views first, ties by lower id."""
        check_limit("limit", limit)
        if limit == 0:
            return []
        with store_errors(_STORE, "popular_video_ids"), self._engine.connect() as conn:
            return [int(row[0]) for row in conn.execute(_POPULAR, {"limit": limit})]
