"""A :class:`~reelrank.CoordinatedTrendingSnapshotStore` in SQL, shared by every process."""

from __future__ import annotations

import time
from collections.abc import Callable

from pydantic import ValidationError
from sqlalchemy import Engine, delete, select

from reelrank.models import TrendingKind, TrendingSnapshot
from reelrank.stores.adapter import (
    InvalidInputError,
    StoreError,
    check_lease_owner,
    check_trending_kind,
    check_ttl,
    finite_or_raise,
)

from ._base import SqlStore
from ._errors import store_errors
from ._schema import trending_leases, trending_snapshots

__all__ = ["SqlTrendingSnapshotStore"]


def _key(kind: str, window_hours: float) -> tuple[TrendingKind, float]:
    return check_trending_kind("kind", kind), finite_or_raise("window_hours", window_hours)


class SqlTrendingSnapshotStore(SqlStore):
    """The last trending snapshot of each kind and window in PostgreSQL or SQLite, and the
    leases that let one process at a time compute the next.

    One row per ``(kind, window_hours)`` holding the snapshot as JSON, which reads back
    equal to what was written (floats in their shortest round-trip form). Every worker
    and replica on the database reads the same snapshot, so a
    :class:`~reelrank.Trending` built on it with a non-zero
    :attr:`~reelrank.TrendingConfig.reuse_seconds` computes about once per interval for
    the whole fleet and every process answers the same. A lease is a row of
    ``trending_leases`` taken by one atomic upsert that only replaces an expired lease;
    its expiry is measured by ``clock`` (default :func:`time.time`: processes on one
    machine, or on machines with synchronised clocks, agree on it).

    Database failures raise :class:`~reelrank.StoreError` (``store="trending"``);
    a row that is not a snapshot raises it too, naming the kind and window.
    """

    _store = "trending"

    def __init__(
        self,
        engine: Engine,
        *,
        verify_schema: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(engine, verify_schema=verify_schema)
        self._clock = clock

    def put_snapshot(self, snapshot: TrendingSnapshot) -> None:
        """Keep the snapshot, replacing the one of the same kind and window."""
        if not isinstance(snapshot, TrendingSnapshot):
            raise InvalidInputError(
                "snapshot", f"must be a TrendingSnapshot, got {type(snapshot).__name__}"
            )
        insert = self._insert(trending_snapshots)
        upsert = insert.on_conflict_do_update(
            index_elements=[trending_snapshots.c.kind, trending_snapshots.c.window_hours],
            set_={"snapshot": insert.excluded.snapshot},
        )
        row = {
            "kind": snapshot.kind.value,
            "window_hours": snapshot.window_hours,
            "snapshot": snapshot.model_dump_json(),
        }
        with store_errors(self._store, "put_snapshot"), self._engine.begin() as connection:
            connection.execute(upsert, row)

    def latest_snapshot(self, kind: TrendingKind, window_hours: float) -> TrendingSnapshot | None:
        """The last snapshot put for this kind and window, or ``None``."""
        checked_kind, window = _key(kind, window_hours)
        statement = select(trending_snapshots.c.snapshot).where(
            trending_snapshots.c.kind == checked_kind.value,
            trending_snapshots.c.window_hours == window,
        )
        with store_errors(self._store, "latest_snapshot"), self._engine.connect() as connection:
            text = connection.execute(statement).scalar_one_or_none()
        if text is None:
            return None
        try:
            return TrendingSnapshot.model_validate_json(text)
        except ValidationError as exc:
            raise StoreError(
                self._store, f"unreadable snapshot for {checked_kind.value} {window:g}h: {exc}"
            ) from exc

    def acquire_lease(
        self, kind: TrendingKind, window_hours: float, *, owner: str, seconds: float
    ) -> bool:
        """Take the lease of this kind and window for ``seconds`` unless one is held:
        one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE expires_at <= now RETURNING``,
        which returns a row only when it inserted or replaced an expired lease."""
        checked_kind, window = _key(kind, window_hours)
        checked_owner = check_lease_owner("owner", owner)
        duration = check_ttl("seconds", seconds)
        now = self._clock()
        insert = self._insert(trending_leases).values(
            kind=checked_kind.value,
            window_hours=window,
            owner=checked_owner,
            expires_at=now + duration,
        )
        statement = insert.on_conflict_do_update(
            index_elements=[trending_leases.c.kind, trending_leases.c.window_hours],
            set_={"owner": insert.excluded.owner, "expires_at": insert.excluded.expires_at},
            where=trending_leases.c.expires_at <= now,
        ).returning(trending_leases.c.owner)
        with store_errors(self._store, "acquire_lease"), self._engine.begin() as connection:
            return connection.execute(statement).first() is not None

    def release_lease(self, kind: TrendingKind, window_hours: float, *, owner: str) -> None:
        """Give the lease back if ``owner`` holds it (one ``DELETE``)."""
        checked_kind, window = _key(kind, window_hours)
        statement = delete(trending_leases).where(
            trending_leases.c.kind == checked_kind.value,
            trending_leases.c.window_hours == window,
            trending_leases.c.owner == check_lease_owner("owner", owner),
        )
        with store_errors(self._store, "release_lease"), self._engine.begin() as connection:
            connection.execute(statement)
