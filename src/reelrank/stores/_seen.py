"""The in-memory seen store: when each user last saw each video, within a retention window."""

from __future__ import annotations

import heapq
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta

from ..exceptions import InvalidInputError
from ..models._feed import PageOutcome, PageRequest
from ..validation import check_aware, check_id, check_ids, check_limit, check_user_ids
from ._common import DEFAULT_SEEN_RETENTION_SECONDS, _check_retention
from ._pages import take_page_in_steps
from ._protocols import FeedCache, is_in_process

__all__ = ["InMemorySeenStore"]

_MIN_SEEN_BEFORE_TRIM = 64


class InMemorySeenStore:
    """A :class:`~reelrank.SeenStore`: per user, the last time each video was seen.

    Also a :class:`~reelrank.PageTakingSeenStore` with any in-process feed cache: a
    cursor page's record lookup, seen filter and record write are one call, atomic
    with respect to other pages taken through this store.

    A write forgets the user's marks older than ``retention_seconds`` before the
    write's time ``at`` (default 30 days, the default seen window; ``None`` keeps every
    mark), like the Redis seen store does.
    Keep it at least as long as the longest seen window any reader asks about. To stay
    cheap the trim runs only when the user's marks have doubled since the last one, so
    each write costs constant amortised time and a user holds at most about twice the
    marks of one retention period.
    """

    bounds_own_calls = True
    """Never waits on I/O, so the feed service calls it on the request thread."""

    def __init__(self, *, retention_seconds: float | None = DEFAULT_SEEN_RETENTION_SECONDS) -> None:
        retention = _check_retention("retention_seconds", retention_seconds)
        self._retention = None if retention is None else timedelta(seconds=retention)
        self._lock = threading.Lock()
        self._page_lock = threading.Lock()
        self._seen: dict[int, dict[int, datetime]] = {}
        self._trim_at: dict[int, int] = {}

    def mark_seen(self, user_id: int, video_ids: Sequence[int], at: datetime) -> None:
        """Record views at ``at``; a later time wins over an earlier one."""
        check_id("user_id", user_id)
        ids = check_ids("video_ids", video_ids)
        when = check_aware("at", at)
        with self._lock:
            seen = self._seen.setdefault(user_id, {})
            for vid in ids:
                previous = seen.get(vid)
                if previous is None or previous < when:
                    seen[vid] = when
            if self._retention is not None and len(seen) >= self._trim_at.get(
                user_id, _MIN_SEEN_BEFORE_TRIM
            ):
                oldest_kept = when - self._retention
                for vid in [vid for vid, seen_at in seen.items() if seen_at < oldest_kept]:
                    del seen[vid]
                self._trim_at[user_id] = max(_MIN_SEEN_BEFORE_TRIM, 2 * len(seen))

    def __len__(self) -> int:
        """Seen marks held, over every user (trimmed ones excluded)."""
        with self._lock:
            return sum(len(seen) for seen in self._seen.values())

    def seen_among(self, user_id: int, video_ids: Sequence[int], *, since: datetime) -> set[int]:
        """The requested ids seen at or after ``since``."""
        check_id("user_id", user_id)
        ids = check_ids("video_ids", video_ids)
        cutoff = check_aware("since", since)
        with self._lock:
            seen = self._seen.get(user_id, {})
            return {vid for vid in ids if (at := seen.get(vid)) is not None and at >= cutoff}

    def recently_seen(self, user_id: int, *, since: datetime, limit: int) -> list[int]:
        """Ids seen at or after ``since``, most recent first."""
        check_id("user_id", user_id)
        cutoff = check_aware("since", since)
        check_limit("limit", limit)
        with self._lock:
            recent = self._seen_since(user_id, cutoff)
        return [vid for _, vid in heapq.nlargest(limit, recent)]

    def recently_seen_many(
        self, user_ids: Sequence[int], *, since: datetime, limit: int
    ) -> dict[int, list[int]]:
        """:meth:`recently_seen` of each user, read under one hold of the lock."""
        users = check_user_ids("user_ids", user_ids)
        cutoff = check_aware("since", since)
        check_limit("limit", limit)
        with self._lock:
            recent = {user_id: self._seen_since(user_id, cutoff) for user_id in users}
        return {
            user_id: [vid for _, vid in heapq.nlargest(limit, recent[user_id])] for user_id in users
        }

    def _seen_since(self, user_id: int, cutoff: datetime) -> list[tuple[datetime, int]]:
        return [(at, vid) for vid, at in self._seen.get(user_id, {}).items() if at >= cutoff]

    def takes_pages_with(self, cache: FeedCache) -> bool:
        """True for an in-process cache (see :func:`~reelrank.is_in_process`)."""
        return is_in_process(cache)

    def take_page(self, cache: FeedCache, request: PageRequest) -> PageOutcome:
        """Recall the page's record in ``cache``, or take its rows and keep the record
        (see :meth:`~reelrank.PageTakingSeenStore.take_page`), under one lock.

        A cache that is not in-process raises :class:`~reelrank.InvalidInputError`
        naming ``cache``.
        """
        if not self.takes_pages_with(cache):
            raise InvalidInputError("cache", "must be an in-process feed cache")
        with self._page_lock:
            return take_page_in_steps(self, cache, request)
