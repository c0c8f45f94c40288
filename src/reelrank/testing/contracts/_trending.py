"""The contract of :class:`~reelrank.TrendingSnapshotStore`."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from ...exceptions import InvalidInputError
from ...models._trending import Trend, TrendingItem, TrendingKind, TrendingSnapshot
from ...stores._protocols import TrendingSnapshotStore
from ..factories import EPOCH
from ._support import hours

__all__ = ["TrendingSnapshotStoreContract"]


def _trending_snapshot(
    kind: TrendingKind = TrendingKind.HASHTAG, window_hours: float = 24.0, **overrides: object
) -> TrendingSnapshot:
    key: int | str = "dance" if kind is TrendingKind.HASHTAG else 42
    item = TrendingItem(
        key=key, score=3.0, count=2, previous_score=1.0, delta=2.0, ratio=3.0, trend=Trend.RISING
    )
    fields: dict[str, object] = {
        "kind": kind,
        "window_hours": window_hours,
        "computed_at": EPOCH,
        "items": (item,),
    }
    fields.update(overrides)
    return TrendingSnapshot.model_validate(fields)


class TrendingSnapshotStoreContract:
    """Checks a :class:`~reelrank.TrendingSnapshotStore`; needs a
    ``trending_snapshot_store`` fixture."""

    def test_satisfies_the_protocol(self, trending_snapshot_store: TrendingSnapshotStore) -> None:
        assert isinstance(trending_snapshot_store, TrendingSnapshotStore)

    def test_nothing_is_stored_at_first(
        self, trending_snapshot_store: TrendingSnapshotStore
    ) -> None:
        assert trending_snapshot_store.latest_snapshot(TrendingKind.SOUND, 24.0) is None

    def test_put_then_get_returns_an_equal_snapshot(
        self, trending_snapshot_store: TrendingSnapshotStore
    ) -> None:
        for kind in TrendingKind:
            trending_snapshot_store.put_snapshot(_trending_snapshot(kind))
        for kind in TrendingKind:
            assert trending_snapshot_store.latest_snapshot(kind, 24.0) == _trending_snapshot(kind)

    def test_kinds_and_windows_are_separate_keys(
        self, trending_snapshot_store: TrendingSnapshotStore
    ) -> None:
        day = _trending_snapshot(TrendingKind.HASHTAG, 24.0)
        week = _trending_snapshot(TrendingKind.HASHTAG, 168.0, items=())
        trending_snapshot_store.put_snapshot(day)
        trending_snapshot_store.put_snapshot(week)
        assert trending_snapshot_store.latest_snapshot(TrendingKind.HASHTAG, 24) == day
        assert trending_snapshot_store.latest_snapshot(TrendingKind.HASHTAG, 168.0) == week
        assert trending_snapshot_store.latest_snapshot(TrendingKind.SOUND, 24.0) is None
        assert trending_snapshot_store.latest_snapshot(TrendingKind.HASHTAG, 12.0) is None

    def test_put_replaces_the_previous_snapshot(
        self, trending_snapshot_store: TrendingSnapshotStore
    ) -> None:
        trending_snapshot_store.put_snapshot(_trending_snapshot())
        newer = _trending_snapshot(computed_at=EPOCH + hours(1), items=())
        trending_snapshot_store.put_snapshot(newer)
        assert trending_snapshot_store.latest_snapshot(TrendingKind.HASHTAG, 24.0) == newer

    def test_snapshots_round_trip_exactly(
        self, trending_snapshot_store: TrendingSnapshotStore
    ) -> None:
        """Floats to the last bit, int and str keys (a digit string stays a string),
        non-ASCII text, no ratio, a microsecond time and ``stale_as_of`` all come back."""
        items = (
            TrendingItem(
                key="caf\u00e9_\u821e\u8e48", score=0.1 + 0.2, count=3, previous_score=5e-324,
                delta=0.1 + 0.2 - 5e-324, ratio=1.7976931348623157e308, trend=Trend.RISING,
            ),
            TrendingItem(
                key="42", score=1 / 3, count=1, previous_score=0.0, delta=1 / 3, ratio=None,
                trend=Trend.NEW,
            ),
            TrendingItem(
                key=2**62 + 1, score=2.0, count=2**40, previous_score=2.0, delta=0.0,
                ratio=1.0, trend=Trend.STEADY,
            ),
        )  # fmt: skip
        snapshot = _trending_snapshot(
            TrendingKind.HASHTAG,
            1.5,
            computed_at=EPOCH + hours(1) + timedelta(microseconds=1),
            stale_as_of=EPOCH,
            items=items,
        )
        trending_snapshot_store.put_snapshot(snapshot)
        stored = trending_snapshot_store.latest_snapshot(TrendingKind.HASHTAG, 1.5)
        assert stored == snapshot
        assert stored is not None
        assert [type(item.key) for item in stored.items] == [str, str, int]
        assert [item.score.hex() for item in stored.items] == [
            item.score.hex() for item in items
        ]

    def test_bad_arguments_raise_invalid_input(
        self, trending_snapshot_store: TrendingSnapshotStore
    ) -> None:
        with pytest.raises(InvalidInputError) as info:
            trending_snapshot_store.put_snapshot(_trending_snapshot().model_dump())  # type: ignore[arg-type]
        assert info.value.field == "snapshot"
        with pytest.raises(InvalidInputError) as info:
            trending_snapshot_store.latest_snapshot("song", 24.0)  # type: ignore[arg-type]
        assert info.value.field == "kind"
        for bad in (math.nan, "24", None):
            with pytest.raises(InvalidInputError) as info:
                trending_snapshot_store.latest_snapshot(TrendingKind.SOUND, bad)  # type: ignore[arg-type]
            assert info.value.field == "window_hours"
