"""A shared :class:`~reelrank.FeedCache` level in SQL, for deployments without Redis."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence

from pydantic import ValidationError
from sqlalchemy import ColumnElement, Engine, and_, delete, select, tuple_

from reelrank.models import FeedSnapshot
from reelrank.stores.adapter import (
    FeedKey,
    InvalidInputError,
    StoreError,
    check_feed_key,
    check_id,
    check_ttl,
    check_variant,
)

from ._base import SqlStore
from ._errors import store_errors
from ._schema import feed_cache

__all__ = ["SqlFeedCache"]

_DEFAULT_VARIANT = ""
"""How the default feed's variant (``None``) is stored; no named variant is empty."""
_READ_CHUNK = 500


def _variant(variant: str | None) -> str:
    return _DEFAULT_VARIANT if variant is None else variant


class SqlFeedCache(SqlStore):
    """Ranked feed snapshots in PostgreSQL or SQLite, one row per ``(user_id, variant)``.

    The shared level of a :class:`~reelrank.TieredFeedCache` when there is no Redis:
    every worker and replica on the database sees the same snapshots, and so the same
    remembered pages, so a cursor retried on another process gets the same page. Put
    it under the per-process level::

        cache = TieredFeedCache(LRUFeedCache(), SqlFeedCache(engine), local_ttl_seconds=30)

    A snapshot is kept as JSON (exact: floats are written in their shortest round-trip
    form) with its expiry in seconds since the Unix epoch, measured by ``clock``
    (default :func:`time.time`: processes on one machine, or on machines with
    synchronised clocks, agree on it; tests pass a fake clock). Expired rows are never
    returned; they are deleted when their key is written or invalidated, and by
    :meth:`purge_expired`, which :meth:`put_many` also runs once every ``purge_every``
    writes of this instance so rows of users who never come back do not pile up.

    Database failures raise :class:`~reelrank.StoreError` (``store="cache"``), SQLite's
    busy timeout and PostgreSQL's statement and lock timeouts
    :class:`~reelrank.StoreTimeoutError`. Raises :class:`~reelrank.InvalidInputError`
    naming ``purge_every`` unless it is an int ``>= 1``.
    """

    _store = "cache"

    def __init__(
        self,
        engine: Engine,
        *,
        verify_schema: bool = True,
        clock: Callable[[], float] = time.time,
        purge_every: int = 1_000,
    ) -> None:
        super().__init__(engine, verify_schema=verify_schema)
        if isinstance(purge_every, bool) or not isinstance(purge_every, int) or purge_every < 1:
            raise InvalidInputError("purge_every", f"must be an int >= 1, got {purge_every!r}")
        self._clock = clock
        self._purge_every = purge_every
        self._writes = itertools.count(1)
        self._writes_lock = threading.Lock()

    # -- reads ------------------------------------------------------------------------

    def get(self, user_id: int, variant: str | None = None) -> FeedSnapshot | None:
        """The live snapshot for ``(user_id, variant)``, or ``None``."""
        check_id("user_id", user_id)
        check_variant("variant", variant)
        return self.get_many([(user_id, variant)]).get((user_id, variant))

    def get_many(self, keys: Sequence[FeedKey]) -> dict[FeedKey, FeedSnapshot]:
        """Live snapshots by key; missing or expired keys are omitted."""
        unique = list(dict.fromkeys(check_feed_key("keys", key) for key in keys))
        found: dict[FeedKey, FeedSnapshot] = {}
        now = self._clock()
        with store_errors(self._store, "get_many"), self._engine.connect() as connection:
            for start in range(0, len(unique), _READ_CHUNK):
                chunk = unique[start : start + _READ_CHUNK]
                rows = connection.execute(
                    select(feed_cache.c.user_id, feed_cache.c.variant, feed_cache.c.snapshot).where(
                        tuple_(feed_cache.c.user_id, feed_cache.c.variant).in_(
                            [(user_id, _variant(variant)) for user_id, variant in chunk]
                        ),
                        feed_cache.c.expires_at > now,
                    )
                ).all()
                for user_id, variant, text in rows:
                    key = (int(user_id), None if variant == _DEFAULT_VARIANT else variant)
                    found[key] = self._decode(key, text)
        return found

    def _decode(self, key: FeedKey, text: str) -> FeedSnapshot:
        try:
            return FeedSnapshot.model_validate_json(text)
        except ValidationError as exc:
            raise StoreError(self._store, f"unreadable snapshot for {key!r}: {exc}") from exc

    # -- writes -----------------------------------------------------------------------

    def put(self, snapshot: FeedSnapshot, *, ttl_seconds: float) -> None:
        """Store ``snapshot`` for ``ttl_seconds``, replacing any previous one."""
        self.put_many([snapshot], ttl_seconds=ttl_seconds)

    def put_many(self, snapshots: Sequence[FeedSnapshot], *, ttl_seconds: float) -> None:
        """Store several snapshots with one TTL, in one transaction.

        Everything is validated and encoded before the first statement; with two
        snapshots for one key the later one wins. Rows are written in key order, so
        concurrent writers of overlapping keys cannot deadlock on PostgreSQL.
        """
        ttl = check_ttl("ttl_seconds", ttl_seconds)
        rows: dict[tuple[int, str], dict[str, object]] = {}
        expires_at = self._clock() + ttl
        for snapshot in snapshots:
            if not isinstance(snapshot, FeedSnapshot):
                raise InvalidInputError(
                    "snapshots", f"must be a FeedSnapshot, got {type(snapshot).__name__}"
                )
            key = (snapshot.user_id, _variant(snapshot.variant))
            rows[key] = {
                "user_id": key[0],
                "variant": key[1],
                "snapshot": snapshot.model_dump_json(),
                "expires_at": expires_at,
            }
        if not rows:
            return
        insert = self._insert(feed_cache)
        upsert = insert.on_conflict_do_update(
            index_elements=[feed_cache.c.user_id, feed_cache.c.variant],
            set_={
                "snapshot": insert.excluded.snapshot,
                "expires_at": insert.excluded.expires_at,
            },
        )
        with store_errors(self._store, "put_many"), self._engine.begin() as connection:
            connection.execute(upsert, [rows[key] for key in sorted(rows)])
        with self._writes_lock:
            purge = next(self._writes) % self._purge_every == 0
        if purge:
            self.purge_expired()

    def delete(self, user_id: int, variant: str | None = None) -> bool:
        """Drop one snapshot; ``True`` if a live one was there."""
        check_id("user_id", user_id)
        check_variant("variant", variant)
        return (
            self._drop(
                "delete",
                and_(feed_cache.c.user_id == user_id, feed_cache.c.variant == _variant(variant)),
            )
            > 0
        )

    def invalidate_user(self, user_id: int) -> int:
        """Drop the user's snapshots of every variant (remembered pages included);
        returns how many live ones were dropped."""
        check_id("user_id", user_id)
        return self._drop("invalidate_user", feed_cache.c.user_id == user_id)

    def _drop(self, operation: str, where: ColumnElement[bool]) -> int:
        now = self._clock()
        statement = delete(feed_cache).where(where).returning(feed_cache.c.expires_at)
        with store_errors(self._store, operation), self._engine.begin() as connection:
            expiries = connection.execute(statement).scalars().all()
        return sum(1 for expires_at in expiries if expires_at > now)

    def purge_expired(self) -> int:
        """Delete every expired row; returns how many were deleted."""
        statement = delete(feed_cache).where(feed_cache.c.expires_at <= self._clock())
        with store_errors(self._store, "purge_expired"), self._engine.begin() as connection:
            return int(connection.execute(statement).rowcount)
