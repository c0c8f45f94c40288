"""A :class:`~reelrank.TrendingSnapshotStore` in SQL, shared by every process."""

from __future__ import annotations

from pydantic import ValidationError
from sqlalchemy import select

from reelrank.models import TrendingKind, TrendingSnapshot
from reelrank.stores.adapter import InvalidInputError, StoreError, finite_or_raise

from ._base import SqlStore
from ._errors import store_errors
from ._schema import trending_snapshots

__all__ = ["SqlTrendingSnapshotStore"]


def trending_kind(kind: str) -> TrendingKind:
    """``kind`` as a :class:`~reelrank.TrendingKind`; :class:`~reelrank.InvalidInputError`
    naming ``kind`` otherwise."""
    try:
        return TrendingKind(kind)
    except ValueError as exc:
        raise InvalidInputError("kind", f"must be 'sound' or 'hashtag', got {kind!r}") from exc


class SqlTrendingSnapshotStore(SqlStore):
    """The last trending snapshot of each kind and window in PostgreSQL or SQLite.

    One row per ``(kind, window_hours)`` holding the snapshot as JSON, which reads back
    equal to what was written (floats in their shortest round-trip form). Every worker
    and replica on the database reads the same snapshot, so a
    :class:`~reelrank.Trending` built on it with a non-zero
    :attr:`~reelrank.TrendingConfig.reuse_seconds` computes at most about once per
    interval for the whole fleet and every process answers the same.

    Database failures raise :class:`~reelrank.StoreError` (``store="trending"``);
    a row that is not a snapshot raises it too, naming the kind and window.
    """

    _store = "trending"

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

    def latest_snapshot(
        self, kind: TrendingKind, window_hours: float
    ) -> TrendingSnapshot | None:
        """The last snapshot put for this kind and window, or ``None``."""
        checked_kind = trending_kind(kind)
        window = finite_or_raise("window_hours", window_hours)
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
