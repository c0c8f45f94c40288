"""Serving a cursor page against its remembered record, in separate store calls.

:func:`take_page_in_steps` is what :meth:`PageTakingSeenStore.take_page` means, built
from the plain protocols: the in-memory seen store uses it, and an adapter's own
implementation is checked against it by the contract suite.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..models._feed import FeedSnapshot, PageOutcome, PageRequest
from ._protocols import AtomicSeenStore, FeedCache, SeenStore

__all__ = ["page_record", "take_page_in_steps", "take_rows"]


def page_record(request: PageRequest, rows: Sequence[int], position: int) -> FeedSnapshot:
    """The record of the page made of ``rows`` of ``request.snapshot`` (see
    :class:`~reelrank.PageRequest` for its fields)."""
    snapshot = request.snapshot
    reaches_end = position >= len(snapshot.video_ids)
    if reaches_end and request.end_tag is not None:
        where_next = request.end_tag
    else:
        where_next = f"{position}.{request.pin}"
    return FeedSnapshot.model_construct(
        user_id=request.record_key[0],
        variant=request.record_key[1],
        video_ids=tuple(snapshot.video_ids[row] for row in rows),
        scores=tuple(snapshot.scores[row] for row in rows),
        signals=snapshot.signals,
        contributions=tuple(snapshot.contributions[row] for row in rows),
        created_at=request.at,
        config_tag=where_next,
    )


def take_rows(seen: SeenStore, request: PageRequest) -> tuple[tuple[int, ...], int]:
    """Take the page's rows in ``seen``: the first ``request.limit`` unseen ones from
    ``request.start``, marked seen; and where the next page starts.

    With an :class:`AtomicSeenStore`, one ``take_unseen`` over the rest of the snapshot;
    else a ``seen_among`` and a ``mark_seen`` of the rows taken.
    """
    ids = request.snapshot.video_ids
    user_id, limit = request.record_key[0], request.limit
    rest = ids[request.start :]
    if isinstance(seen, AtomicSeenStore):
        taken = set(
            seen.take_unseen(user_id, rest, limit=limit, since=request.since, at=request.at)
        )
    else:
        already = seen.seen_among(user_id, rest, since=request.since)
        taken = set()
        for video_id in rest:
            if len(taken) == limit:
                break
            if video_id not in already:
                taken.add(video_id)
        if taken:
            seen.mark_seen(
                user_id, [video_id for video_id in rest if video_id in taken], request.at
            )
    rows = tuple(request.start + index for index, video_id in enumerate(rest) if video_id in taken)
    position = rows[-1] + 1 if len(rows) == limit else len(ids)
    return rows, position


def take_page_in_steps(seen: SeenStore, cache: FeedCache, request: PageRequest) -> PageOutcome:
    """:meth:`PageTakingSeenStore.take_page` in separate calls, not atomic together: look
    the record up in ``cache``, take the rows in ``seen`` (:func:`take_rows`), keep the
    record of the rows taken."""
    recalled = cache.get(*request.record_key)
    if recalled is not None:
        return PageOutcome(recalled=recalled)
    rows, position = take_rows(seen, request)
    if rows:
        cache.put(page_record(request, rows, position), ttl_seconds=request.ttl_seconds)
    return PageOutcome(recalled=None, rows=rows, position=position)
