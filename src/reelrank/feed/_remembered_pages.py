"""Remembered pages: redeeming a cursor again returns the page it returned the first time.

Serving a page marks its items seen, so cutting the page of a cursor a second time
(a client retrying after a timeout) would skip them and return the next page: the
lost page would never be shown. The first page cut for a cursor is therefore
remembered, keyed by the request it answered: the user, their variant, the cursor's
snapshot and offset, and the page size. A later request with the same key gets the
same items back and a cursor to the same next position.

The record is kept twice: in this process (bounded, for a service without a shared
cache or while it fails) and in the slowest feed cache level, the one processes share,
next to the user's snapshots, so another process answers a retry the same way. In the
cache a record is a :class:`~reelrank.FeedSnapshot` under a reserved variant,
``page-`` and a digest of the key, holding the page's items; its ``config_tag`` holds
where the next page starts (``<offset>.<snapshot id>``) or ``end`` when the page ended
the feed. It lives as long as a snapshot would.

When the seen store is a :class:`~reelrank.PageTakingSeenStore` that reaches the shared
level (the Redis adapter's, on the feed cache's client), a page cut from a cached
snapshot looks its record up, filters and marks its items and writes its record in one
call (``take_page``) instead of three; the record is the same.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from datetime import datetime, timedelta

from ..exceptions import InvalidInputError
from ..models._feed import FeedItem, FeedPage, FeedSnapshot
from ..stores._protocols import FeedKey
from ._context import RequestContext
from ._cursor import CursorState
from ._guards import SnapshotCache

RECORD_PREFIX = "page-"
"""Variants starting with this hold remembered pages; experiment variants may not."""

END_TAG = "end"
"""``config_tag`` of a record whose page ended the feed (it had no next cursor)."""


def record_key(ctx: RequestContext, state: CursorState, limit: int) -> FeedKey:
    """The cache key of the page answering ``state`` with ``limit`` items for ``ctx``."""
    request = f"{ctx.variant}\x00{state.snapshot_id}\x00{state.offset}\x00{limit}"
    digest = hashlib.sha256(request.encode()).hexdigest()[:32]
    return (ctx.user_id, f"{RECORD_PREFIX}{digest}")


def check_not_reserved(variant: str | None) -> None:
    """Reject an experiment variant that would read as a remembered page."""
    if variant is not None and variant.startswith(RECORD_PREFIX):
        raise InvalidInputError(
            "assign_variant", f"variants starting with {RECORD_PREFIX!r} are reserved"
        )


def encode_record(
    key: FeedKey, page: FeedPage, next_state: CursorState | None, now: datetime
) -> FeedSnapshot:
    """The page as a cache record under ``key``."""
    signals = tuple(page.items[0].breakdown) if page.items else ()
    where_next = END_TAG if next_state is None else f"{next_state.offset}.{next_state.snapshot_id}"
    return FeedSnapshot.model_construct(
        user_id=key[0],
        variant=key[1],
        video_ids=tuple(item.video_id for item in page.items),
        scores=tuple(item.score for item in page.items),
        signals=signals,
        contributions=tuple(
            tuple(item.breakdown[signal] for signal in signals) for item in page.items
        ),
        created_at=now,
        config_tag=where_next,
    )


def decode_record(record: FeedSnapshot) -> tuple[tuple[FeedItem, ...], tuple[str, int] | None]:
    """The items of a cache record and where the next page starts (``None``: feed ended)."""
    items = tuple(
        FeedItem.model_construct(
            video_id=video_id,
            score=score,
            breakdown=dict(zip(record.signals, row, strict=True)),
        )
        for video_id, score, row in zip(
            record.video_ids, record.scores, record.contributions, strict=True
        )
    )
    if record.config_tag == END_TAG:
        return items, None
    offset, _, snapshot_id = record.config_tag.partition(".")
    return items, (snapshot_id, int(offset))


class PageRecords:
    """Pages already served for a cursor, here and in the feed cache.

    ``max_local`` bounds the records kept in this process (least recently used
    forgotten first); ``ttl_seconds`` is how long a record answers retries.
    """

    def __init__(self, snapshots: SnapshotCache, max_local: int, ttl_seconds: float) -> None:
        self._snapshots = snapshots
        self._max_local = max_local
        self._ttl = timedelta(seconds=ttl_seconds)
        self._lock = threading.Lock()
        self._local: OrderedDict[FeedKey, FeedSnapshot] = OrderedDict()

    @property
    def ttl_seconds(self) -> float:
        return self._ttl.total_seconds()

    def recall(self, ctx: RequestContext, key: FeedKey) -> FeedSnapshot | None:
        """The live record under ``key``: this process's copy, else the cache's."""
        record = self.recall_local(ctx, key)
        if record is None:
            record = self._snapshots.get_record(key, ctx.report)
        return record if self.is_live(ctx, record) else None

    def recall_local(self, ctx: RequestContext, key: FeedKey) -> FeedSnapshot | None:
        """The live record under ``key`` in this process only."""
        with self._lock:
            record = self._local.get(key)
            if record is not None:
                self._local.move_to_end(key)
        return record if self.is_live(ctx, record) else None

    def is_live(self, ctx: RequestContext, record: FeedSnapshot | None) -> bool:
        """Whether ``record`` still answers retries (the cache's own expiry may lag)."""
        return record is not None and ctx.now - record.created_at < self._ttl

    def remember(self, ctx: RequestContext, record: FeedSnapshot) -> None:
        """Keep ``record`` here and in the cache (a failing cache is reported)."""
        self.remember_local(record)
        self._snapshots.put_record(record, self._ttl.total_seconds(), ctx.report)

    def remember_local(self, record: FeedSnapshot) -> None:
        """Keep ``record`` in this process only (the cache has it already)."""
        with self._lock:
            self._local[record.key] = record
            self._local.move_to_end(record.key)
            while len(self._local) > self._max_local:
                self._local.popitem(last=False)
