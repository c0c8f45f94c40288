"""Reads of many users at once: the bulk-read protocol's method when a store has it, else
one single-user call per user.

Cache warming reads through these helpers, so any store serves it and a store that
implements :class:`~reelrank.BulkReadCatalog`, :class:`~reelrank.BulkReadEventStore` or
:class:`~reelrank.BulkReadSeenStore` serves it in one round trip (or one per chunk)
instead of one per user. Adapter authors reach them through
:mod:`reelrank.stores.adapter`, with :func:`chunked` for splitting a large batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import TypeVar

from ..exceptions import InvalidInputError
from ..models._catalog import Video
from ..validation import check_aware, check_ids_by_user, check_limit, check_user_ids
from ._protocols import (
    BulkReadCatalog,
    BulkReadEventStore,
    BulkReadSeenStore,
    Catalog,
    EventStore,
    SeenStore,
)

__all__ = ["bulk_affinities", "bulk_followed_videos", "bulk_recently_seen", "chunked"]

_T = TypeVar("_T")


def chunked(values: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    """``values`` in consecutive slices of ``size`` (the last may be shorter).

    For a store that bounds each statement of a bulk read: one statement per slice.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InvalidInputError("size", f"must be an int >= 1, got {size!r}")
    for start in range(0, len(values), size):
        yield values[start : start + size]


def bulk_followed_videos(
    catalog: Catalog, user_ids: Sequence[int], *, limit: int
) -> dict[int, list[Video]]:
    """Each user's :meth:`~reelrank.Catalog.followed_videos`, keyed by user id: one
    :meth:`~reelrank.BulkReadCatalog.followed_videos_many` call when the catalog has it,
    else one call per user. Bad arguments raise as ``followed_videos_many`` does."""
    if isinstance(catalog, BulkReadCatalog):
        return catalog.followed_videos_many(user_ids, limit=limit)
    users = check_user_ids("user_ids", user_ids)
    check_limit("limit", limit)
    return {uid: catalog.followed_videos(uid, limit=limit) for uid in users}


def bulk_affinities(
    events: EventStore, creator_ids_by_user: Mapping[int, Sequence[int]]
) -> dict[int, dict[int, float]]:
    """Each user's :meth:`~reelrank.EventStore.get_affinities` with their own creators,
    keyed by user id: one :meth:`~reelrank.BulkReadEventStore.get_affinities_many` call
    when the store has it, else one call per user. Bad arguments raise as
    ``get_affinities_many`` does."""
    if isinstance(events, BulkReadEventStore):
        return events.get_affinities_many(creator_ids_by_user)
    requested = check_ids_by_user("creator_ids_by_user", creator_ids_by_user)
    return {uid: events.get_affinities(uid, creators) for uid, creators in requested.items()}


def bulk_recently_seen(
    seen: SeenStore, user_ids: Sequence[int], *, since: datetime, limit: int
) -> dict[int, list[int]]:
    """Each user's :meth:`~reelrank.SeenStore.recently_seen`, keyed by user id: one
    :meth:`~reelrank.BulkReadSeenStore.recently_seen_many` call when the store has it,
    else one call per user. Bad arguments raise as ``recently_seen_many`` does."""
    if isinstance(seen, BulkReadSeenStore):
        return seen.recently_seen_many(user_ids, since=since, limit=limit)
    users = check_user_ids("user_ids", user_ids)
    check_aware("since", since)
    check_limit("limit", limit)
    return {uid: seen.recently_seen(uid, since=since, limit=limit) for uid in users}
