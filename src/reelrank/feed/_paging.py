"""Cutting pages from a ranked snapshot: cursors, the seen filter and served marks.

A cursor pins one snapshot: the next page continues at its offset. For any other
snapshot (replaced, expired, re-ranked) a page starts at the top of the current one
and the seen filter removes what was already shown.
"""

from __future__ import annotations

import functools
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from ..exceptions import InvalidInputError, StoreError
from ..models._feed import FeedItem, FeedPage, FeedSnapshot, PageOutcome, PageRequest
from ..stores._protocols import AtomicSeenStore, FeedKey, SeenStore
from ._context import RequestContext
from ._cursor import CursorCodec, CursorState
from ._resilience import DependencyGuard


def snapshot_id(snapshot: FeedSnapshot) -> str:
    """The id a cursor pins: creation time, a CRC-32 of the video ids, the config tag."""
    ids = np.asarray(snapshot.video_ids, dtype=np.int64)
    created_us = round(snapshot.created_at.timestamp() * 1e6)
    return f"{created_us:x}-{zlib.crc32(ids.tobytes()):08x}-{snapshot.config_tag}"


def check_page_limit(limit: object, max_page_size: int) -> int:
    """``limit`` if it is an int in ``[1, max_page_size]``, else InvalidInputError naming it."""
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise InvalidInputError("limit", f"must be an int, got {limit!r}")
    if not 1 <= limit <= max_page_size:
        raise InvalidInputError(
            "limit", f"must be between 1 and max_page_size={max_page_size}, got {limit}"
        )
    return limit


def cut_unseen(
    ids: Sequence[int],
    offset: int,
    limit: int,
    seen_among: Callable[[Sequence[int]], set[int]] | None,
) -> tuple[list[int], int]:
    """Rows of the first ``limit`` unseen ids from ``offset``, and where the next page starts.

    The seen store is asked about a window of ids at a time, twice the page size or 32
    (whichever is larger), so a page costs one lookup unless most ids were seen.
    """
    picked: list[int] = []
    position = offset
    total = len(ids)
    window = max(2 * limit, 32)
    while position < total and len(picked) < limit:
        chunk = ids[position : position + window]
        seen = set() if seen_among is None else seen_among(chunk)
        for index, video_id in enumerate(chunk):
            if video_id not in seen:
                picked.append(position + index)
                if len(picked) == limit:
                    return picked, position + index + 1
        position += len(chunk)
    return picked, position


def take_unseen_rows(
    ids: Sequence[int], offset: int, limit: int, take: Callable[[Sequence[int], int], list[int]]
) -> tuple[list[int], int]:
    """Like :func:`cut_unseen`, with ``take(chunk, wanted)`` filtering and marking each window."""
    picked: list[int] = []
    position = offset
    total = len(ids)
    window = max(2 * limit, 32)
    while position < total and len(picked) < limit:
        chunk = ids[position : position + window]
        wanted = limit - len(picked)
        taken = take(chunk, wanted)
        if taken:
            row_of = {video_id: row for row, video_id in enumerate(chunk)}
            picked.extend(position + row_of[video_id] for video_id in taken)
            if len(taken) == wanted:
                return picked, picked[-1] + 1
        position += len(chunk)
    return picked, position


class ServedMarks:
    """How far into its current snapshot each ``(user, variant)`` was served here.

    Everything before the mark was served or skipped as seen. While the seen store is
    unavailable this is what the process still knows: pages continue after the mark,
    and a re-ranking leaves out the ids before it. Bounded: the least recently served
    keys are forgotten first.
    """

    def __init__(self, max_keys: int) -> None:
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._marks: OrderedDict[FeedKey, tuple[str, int]] = OrderedDict()

    def position(self, key: FeedKey, snapshot_id: str) -> int:
        with self._lock:
            mark = self._marks.get(key)
        return mark[1] if mark is not None and mark[0] == snapshot_id else 0

    def advance(self, key: FeedKey, snapshot_id: str, position: int) -> None:
        with self._lock:
            mark = self._marks.get(key)
            if mark is not None and mark[0] == snapshot_id:
                position = max(position, mark[1])
            self._marks[key] = (snapshot_id, position)
            self._marks.move_to_end(key)
            while len(self._marks) > self._max_keys:
                self._marks.popitem(last=False)

    def served_ids(self, snapshot: FeedSnapshot) -> list[int]:
        """Ids of ``snapshot`` before its mark (none if the mark is for another one)."""
        position = self.position(snapshot.key, snapshot_id(snapshot))
        return list(snapshot.video_ids[:position])


class Pager:
    """Cuts pages from snapshots, marks what it serves seen, and issues cursors."""

    def __init__(
        self,
        *,
        seen: SeenStore,
        guard: DependencyGuard,
        cursors: CursorCodec,
        served: ServedMarks,
        snapshot_size: int,
    ) -> None:
        self._seen = seen
        # Checked once: a runtime protocol check costs more than the rest of a page cut.
        self._take_unseen = seen.take_unseen if isinstance(seen, AtomicSeenStore) else None
        self._guard = guard
        self._cursors = cursors
        self._served = served
        self._snapshot_size = snapshot_size

    def decode(self, cursor: str | None, ctx: RequestContext) -> CursorState | None:
        """The verified state of the request's cursor (``None`` for a first page)."""
        if cursor is None:
            return None
        return self._cursors.decode(cursor, user_id=str(ctx.user_id), now=ctx.now.timestamp())

    def position(self, snapshot: FeedSnapshot, snapshot_id: str) -> int:
        """Where the next page of ``snapshot`` (its id ``snapshot_id``) starts at the
        earliest: everything before was served by this process or seen."""
        return self._served.position(snapshot.key, snapshot_id)

    def start(self, snapshot: FeedSnapshot, snapshot_id: str, state: CursorState | None) -> int:
        """Where a page of ``snapshot`` starts.

        At the cursor's offset only if the cursor was issued for this very snapshot; a
        stale cursor starts at the top. Either way, not before this process's served
        mark: everything before it was served or seen already.
        """
        offset = state.offset if state is not None and state.snapshot_id == snapshot_id else 0
        return max(offset, self._served.position(snapshot.key, snapshot_id))

    def page(
        self,
        ctx: RequestContext,
        snapshot: FeedSnapshot,
        state: CursorState | None,
        limit: int,
        *,
        from_cache: bool = False,
        check_seen: bool = True,
        seen_failed: bool = False,
    ) -> FeedPage:
        """Cut ``limit`` unseen items from ``snapshot`` and mark them seen.

        ``check_seen=False`` skips the seen filter for a snapshot ranked just now, which
        already leaves out everything seen. ``seen_failed=True`` says this page's filter
        and mark already failed in this request (a page taken in one call): the page is
        cut as after a failed filter here, without trying the filter again.
        """
        pinned = snapshot_id(snapshot)
        offset = self.start(snapshot, pinned, state)
        picked, position = self._pick(
            ctx, snapshot.video_ids, offset, limit, check_seen, seen_failed
        )
        return self._finish(ctx, snapshot, pinned, picked, position, from_cache)

    def take_page(
        self,
        ctx: RequestContext,
        snapshot: FeedSnapshot,
        state: CursorState | None,
        limit: int,
        *,
        take: Callable[[PageRequest], PageOutcome],
        record_key: FeedKey,
        ttl_seconds: float,
        end_tag: str,
    ) -> FeedPage | FeedSnapshot:
        """:meth:`page` of a cached snapshot through one guarded ``take`` (a
        :meth:`~reelrank.PageTakingSeenStore.take_page`), which also looks up the page
        remembered under ``record_key`` and, if there is none, remembers this one for
        ``ttl_seconds`` (``end_tag`` marking a page that ends the feed).

        Returns the remembered record if there was one. Raises
        :class:`~reelrank.StoreError` if the call fails; nothing is reported then, and
        nothing was served.
        """
        pinned = snapshot_id(snapshot)
        offset = self.start(snapshot, pinned, state)
        ends_feed = len(snapshot.video_ids) < self._snapshot_size
        request = PageRequest(
            record_key=record_key,
            snapshot=snapshot,
            start=offset,
            limit=limit,
            since=ctx.seen_since,
            at=ctx.now,
            ttl_seconds=ttl_seconds,
            pin=pinned,
            end_tag=end_tag if ends_feed else None,
        )
        outcome = self._guard.call(take, request)
        if outcome.recalled is not None:
            return outcome.recalled
        return self._finish(ctx, snapshot, pinned, outcome.rows, outcome.position, True)

    def _finish(
        self,
        ctx: RequestContext,
        snapshot: FeedSnapshot,
        pinned: str,
        picked: Sequence[int],
        position: int,
        from_cache: bool,
    ) -> FeedPage:
        """The page of rows ``picked``, with a cursor to ``position``; the served mark
        moves there."""
        ids = snapshot.video_ids
        items = tuple(
            FeedItem.model_construct(
                video_id=ids[row],
                score=snapshot.scores[row],
                breakdown=dict(zip(snapshot.signals, snapshot.contributions[row], strict=True)),
            )
            for row in picked
        )
        self._served.advance(snapshot.key, pinned, position)
        total = len(ids)
        # The last page of a snapshot that ran out of candidates ends the feed; a full
        # snapshot that is used up continues with a freshly ranked one.
        exhausted = position >= total and total < self._snapshot_size
        next_cursor = None
        if not exhausted:
            next_cursor = self._cursors.encode(
                CursorState(str(ctx.user_id), pinned, position, ctx.now.timestamp())
            )
        return FeedPage.model_construct(
            items=items,
            next_cursor=next_cursor,
            from_cache=from_cache,
            degraded=tuple(ctx.report.degraded),
            variant=snapshot.variant,
        )

    def replay(
        self,
        ctx: RequestContext,
        items: tuple[FeedItem, ...],
        where_next: tuple[str, int] | None,
    ) -> FeedPage:
        """A remembered page again, with a new cursor to the same next position."""
        next_cursor = None
        if where_next is not None:
            pinned, position = where_next
            next_cursor = self._cursors.encode(
                CursorState(str(ctx.user_id), pinned, position, ctx.now.timestamp())
            )
        return FeedPage.model_construct(
            items=items,
            next_cursor=next_cursor,
            from_cache=True,
            degraded=tuple(ctx.report.degraded),
            variant=ctx.variant,
        )

    def _pick(
        self,
        ctx: RequestContext,
        ids: Sequence[int],
        offset: int,
        limit: int,
        check_seen: bool,
        seen_failed: bool,
    ) -> tuple[list[int], int]:
        """Rows of the page and where the next one starts; the rows are marked seen.

        Filtering and marking run as one guarded call. If it fails (or ``seen_failed``
        says it failed already), the page is cut in snapshot order without the filter and
        marking is tried once more on its own.
        """
        if not seen_failed:
            try:
                picked, position, marked = self._guard.call(
                    self._filter_and_mark, ctx, ids, offset, limit, check_seen
                )
            except StoreError:
                seen_failed = True
        if seen_failed:
            if check_seen:
                ctx.report.report("seen", "snapshot order after what this process served")
            picked, position = cut_unseen(ids, offset, limit, None)
            try:
                if picked:
                    self._guard.call(
                        self._seen.mark_seen, ctx.user_id, [ids[row] for row in picked], ctx.now
                    )
                marked = True
            except StoreError:
                marked = False
        if not marked:
            ctx.report.report("seen", "served items not recorded as seen")
        return picked, position

    def _filter_and_mark(
        self, ctx: RequestContext, ids: Sequence[int], offset: int, limit: int, check_seen: bool
    ) -> tuple[list[int], int, bool]:
        """One :meth:`AtomicSeenStore.take_unseen` per window when the store has it, else
        a lookup per window and one write; the flag says whether marking succeeded."""
        user_id, since, now = ctx.user_id, ctx.seen_since, ctx.now
        take_unseen = self._take_unseen
        if check_seen and take_unseen is not None:
            return (
                *take_unseen_rows(
                    ids,
                    offset,
                    limit,
                    lambda chunk, wanted: take_unseen(
                        user_id, chunk, limit=wanted, since=since, at=now
                    ),
                ),
                True,
            )
        seen_among = None
        if check_seen:
            seen_among = functools.partial(self._seen.seen_among, user_id, since=since)
        picked, position = cut_unseen(ids, offset, limit, seen_among)
        try:
            if picked:
                self._seen.mark_seen(user_id, [ids[row] for row in picked], now)
        except StoreError:
            return picked, position, False
        return picked, position, True
