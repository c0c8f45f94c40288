"""The contracts of :class:`~reelrank.TrendingSnapshotStore` and its leases."""

from __future__ import annotations

import math
import time
from datetime import timedelta
from typing import Any

import pytest

from ...exceptions import InvalidInputError
from ...models._trending import Trend, TrendingItem, TrendingKind, TrendingSnapshot
from ...stores._protocols import CoordinatedTrendingSnapshotStore, TrendingSnapshotStore
from ..factories import EPOCH
from ._support import hours

__all__ = ["CoordinatedTrendingSnapshotStoreContract", "TrendingSnapshotStoreContract"]


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
        assert [item.score.hex() for item in stored.items] == [item.score.hex() for item in items]

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


class CoordinatedTrendingSnapshotStoreContract:
    """Checks the leases of a :class:`~reelrank.CoordinatedTrendingSnapshotStore`; needs a
    ``trending_snapshot_store`` fixture. The expiry test lets time pass through
    :meth:`advance`, which sleeps real time unless a subclass moves the store's clock."""

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass for the store."""
        time.sleep(seconds)

    def test_satisfies_the_protocol(
        self, trending_snapshot_store: CoordinatedTrendingSnapshotStore
    ) -> None:
        assert isinstance(trending_snapshot_store, CoordinatedTrendingSnapshotStore)

    def test_one_owner_holds_a_lease_until_it_gives_it_back(
        self, trending_snapshot_store: CoordinatedTrendingSnapshotStore
    ) -> None:
        store = trending_snapshot_store
        assert store.acquire_lease(TrendingKind.SOUND, 24.0, owner="a", seconds=60.0)
        assert not store.acquire_lease(TrendingKind.SOUND, 24, owner="b", seconds=60.0)
        assert not store.acquire_lease(TrendingKind.SOUND, 24.0, owner="a", seconds=60.0)
        # Another owner cannot give it back; its holder can, and then anyone may take it.
        store.release_lease(TrendingKind.SOUND, 24.0, owner="b")
        assert not store.acquire_lease(TrendingKind.SOUND, 24.0, owner="b", seconds=60.0)
        store.release_lease(TrendingKind.SOUND, 24.0, owner="a")
        assert store.acquire_lease(TrendingKind.SOUND, 24.0, owner="b", seconds=60.0)
        # Giving back a lease nobody holds does nothing.
        store.release_lease(TrendingKind.HASHTAG, 24.0, owner="a")

    def test_kinds_and_windows_have_leases_of_their_own(
        self, trending_snapshot_store: CoordinatedTrendingSnapshotStore
    ) -> None:
        store = trending_snapshot_store
        assert store.acquire_lease(TrendingKind.SOUND, 24.0, owner="a", seconds=60.0)
        assert store.acquire_lease(TrendingKind.HASHTAG, 24.0, owner="b", seconds=60.0)
        assert store.acquire_lease(TrendingKind.SOUND, 48.0, owner="c", seconds=60.0)
        # Leases do not touch the snapshots.
        assert store.latest_snapshot(TrendingKind.SOUND, 24.0) is None

    def test_a_lease_expires_after_its_seconds(
        self, trending_snapshot_store: CoordinatedTrendingSnapshotStore
    ) -> None:
        store = trending_snapshot_store
        assert store.acquire_lease(TrendingKind.SOUND, 24.0, owner="a", seconds=0.2)
        self.advance(0.5)
        assert store.acquire_lease(TrendingKind.SOUND, 24.0, owner="b", seconds=60.0)
        # The first owner's late release leaves the new lease alone.
        store.release_lease(TrendingKind.SOUND, 24.0, owner="a")
        assert not store.acquire_lease(TrendingKind.SOUND, 24.0, owner="c", seconds=60.0)

    def test_bad_lease_arguments_raise_invalid_input(
        self, trending_snapshot_store: CoordinatedTrendingSnapshotStore
    ) -> None:
        store = trending_snapshot_store
        bad_calls: list[tuple[str, dict[str, Any]]] = [
            ("kind", {"kind": "song"}),
            ("window_hours", {"window_hours": math.inf}),
            ("owner", {"owner": ""}),
            ("owner", {"owner": "x" * 65}),
            ("owner", {"owner": 7}),
            ("seconds", {"seconds": 0.0}),
            ("seconds", {"seconds": math.nan}),
        ]
        for field, bad in bad_calls:
            arguments: dict[str, Any] = {
                "kind": TrendingKind.SOUND, "window_hours": 24.0, "owner": "a", "seconds": 1.0,
                **bad,
            }  # fmt: skip
            with pytest.raises(InvalidInputError) as info:
                store.acquire_lease(**arguments)
            assert info.value.field == field
            if field != "seconds":
                del arguments["seconds"]
                with pytest.raises(InvalidInputError) as info:
                    store.release_lease(**arguments)
                assert info.value.field == field
        # Nothing was taken by the refused calls.
        assert store.acquire_lease(TrendingKind.SOUND, 24.0, owner="a", seconds=1.0)
