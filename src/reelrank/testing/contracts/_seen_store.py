"""The contracts of :class:`~reelrank.SeenStore` and :class:`~reelrank.AtomicSeenStore`."""

from __future__ import annotations

import threading
from datetime import timedelta, timezone

import pytest

from ...exceptions import InvalidInputError
from ...stores._protocols import AtomicSeenStore, BulkReadSeenStore, SeenStore
from ..factories import EPOCH
from ._support import BAD_IDS, BAD_USER_BATCHES, hours, skip_without

__all__ = ["AtomicSeenStoreContract", "SeenStoreContract"]


def _bulk(seen_store: object) -> BulkReadSeenStore:
    """``seen_store`` as a BulkReadSeenStore; the test is skipped when it is not one."""
    skip_without(seen_store, BulkReadSeenStore)
    assert isinstance(seen_store, BulkReadSeenStore)
    return seen_store


class SeenStoreContract:
    """Checks a :class:`~reelrank.SeenStore`; needs a ``seen_store`` fixture."""

    def test_satisfies_the_protocol(self, seen_store: SeenStore) -> None:
        assert isinstance(seen_store, SeenStore)

    def test_nothing_is_seen_at_first(self, seen_store: SeenStore) -> None:
        assert seen_store.seen_among(1, [1, 2], since=EPOCH - hours(1)) == set()
        assert seen_store.recently_seen(1, since=EPOCH - hours(1), limit=10) == []

    def test_seen_among_respects_the_window(self, seen_store: SeenStore) -> None:
        seen_store.mark_seen(1, [10, 11], EPOCH - hours(48))
        seen_store.mark_seen(1, [12], EPOCH - hours(1))
        candidates = [10, 11, 12, 13, 12]
        assert seen_store.seen_among(1, candidates, since=EPOCH - hours(24)) == {12}
        assert seen_store.seen_among(1, candidates, since=EPOCH - hours(48)) == {10, 11, 12}
        assert seen_store.seen_among(1, candidates, since=EPOCH - hours(1)) == {12}

    def test_users_are_kept_apart(self, seen_store: SeenStore) -> None:
        seen_store.mark_seen(1, [10], EPOCH)
        assert seen_store.seen_among(2, [10], since=EPOCH - hours(1)) == set()

    def test_the_later_time_wins(self, seen_store: SeenStore) -> None:
        seen_store.mark_seen(1, [10], EPOCH)
        seen_store.mark_seen(1, [10], EPOCH - hours(100))
        assert seen_store.seen_among(1, [10], since=EPOCH - hours(1)) == {10}
        seen_store.mark_seen(1, [11], EPOCH - hours(100))
        seen_store.mark_seen(1, [11], EPOCH)
        assert seen_store.seen_among(1, [11], since=EPOCH - hours(1)) == {11}

    def test_recently_seen_is_most_recent_first(self, seen_store: SeenStore) -> None:
        seen_store.mark_seen(1, [10], EPOCH - hours(3))
        seen_store.mark_seen(1, [11], EPOCH - hours(1))
        seen_store.mark_seen(1, [12], EPOCH - hours(2))
        seen_store.mark_seen(1, [13], EPOCH - hours(30))
        since = EPOCH - hours(24)
        assert seen_store.recently_seen(1, since=since, limit=10) == [11, 12, 10]
        assert seen_store.recently_seen(1, since=since, limit=2) == [11, 12]
        assert seen_store.recently_seen(1, since=since, limit=0) == []

    def test_timezones_are_compared_as_instants(self, seen_store: SeenStore) -> None:
        plus_two = timezone(timedelta(hours=2))
        seen_store.mark_seen(1, [10], (EPOCH - hours(1)).astimezone(plus_two))
        assert seen_store.seen_among(1, [10], since=EPOCH - hours(2)) == {10}
        assert seen_store.seen_among(1, [10], since=EPOCH - timedelta(minutes=30)) == set()

    def test_naive_datetimes_raise_invalid_input(self, seen_store: SeenStore) -> None:
        naive = EPOCH.replace(tzinfo=None)
        with pytest.raises(InvalidInputError) as info:
            seen_store.mark_seen(1, [10], naive)
        assert info.value.field == "at"
        with pytest.raises(InvalidInputError) as info:
            seen_store.seen_among(1, [10], since=naive)
        assert info.value.field == "since"
        assert seen_store.seen_among(1, [10], since=EPOCH - hours(10**5)) == set()

    @pytest.mark.parametrize("bad", BAD_IDS)
    def test_bad_ids_raise_and_write_nothing(self, seen_store: SeenStore, bad: object) -> None:
        with pytest.raises(InvalidInputError):
            seen_store.mark_seen(1, [10, bad], EPOCH)  # type: ignore[list-item]
        with pytest.raises(InvalidInputError) as info:
            seen_store.mark_seen(bad, [10], EPOCH)  # type: ignore[arg-type]
        assert info.value.field == "user_id"
        assert seen_store.seen_among(1, [10], since=EPOCH - hours(1)) == set()

    def test_recently_seen_many_equals_each_users_recently_seen(
        self, seen_store: SeenStore
    ) -> None:
        bulk = _bulk(seen_store)
        seen_store.mark_seen(1, [10, 11], EPOCH - hours(3))  # a tie: 11 before 10
        seen_store.mark_seen(1, [12], EPOCH - hours(1))
        seen_store.mark_seen(1, [13], EPOCH - hours(30))
        seen_store.mark_seen(2, [10, 20, 21], EPOCH - hours(2))
        seen_store.mark_seen(2, [21], EPOCH)
        seen_store.mark_seen(3, [30], EPOCH - hours(40))
        users = [2, 1, 4, 3]  # 4 saw nothing
        for since in (EPOCH - hours(24), EPOCH - hours(48), EPOCH + hours(1)):
            for limit in (0, 1, 2, 10):
                expected = {
                    uid: seen_store.recently_seen(uid, since=since, limit=limit) for uid in users
                }
                assert bulk.recently_seen_many(users, since=since, limit=limit) == expected
        assert bulk.recently_seen_many(users, since=EPOCH - hours(24), limit=10) == {
            2: [21, 20, 10],
            1: [12, 11, 10],
            4: [],
            3: [],
        }

    @pytest.mark.parametrize("bad", BAD_USER_BATCHES, ids=repr)
    def test_recently_seen_many_refuses_bad_user_ids(
        self, seen_store: SeenStore, bad: object
    ) -> None:
        bulk = _bulk(seen_store)
        with pytest.raises(InvalidInputError) as info:
            bulk.recently_seen_many(bad, since=EPOCH, limit=10)  # type: ignore[arg-type]
        assert info.value.field == "user_ids"

    @pytest.mark.parametrize(
        ("field", "since", "limit"),
        [
            ("since", EPOCH.replace(tzinfo=None), 10),
            *[("limit", EPOCH, bad) for bad in (-1, 1.5, True, None)],
        ],
    )
    def test_recently_seen_many_refuses_a_bad_window(
        self, seen_store: SeenStore, field: str, since: object, limit: object
    ) -> None:
        bulk = _bulk(seen_store)
        with pytest.raises(InvalidInputError) as info:
            bulk.recently_seen_many([1, 2], since=since, limit=limit)  # type: ignore[arg-type]
        assert info.value.field == field


_DAY_AGO = EPOCH - hours(24)


class AtomicSeenStoreContract:
    """Checks :meth:`~reelrank.AtomicSeenStore.take_unseen`; needs a ``seen_store`` fixture
    returning an :class:`~reelrank.AtomicSeenStore`.

    It checks only ``take_unseen`` and what it writes; subclass
    :class:`SeenStoreContract` as well for the rest of the seen store.
    """

    def test_satisfies_the_protocol(self, seen_store: AtomicSeenStore) -> None:
        assert isinstance(seen_store, AtomicSeenStore)

    def test_takes_the_first_unseen_ids_in_order(self, seen_store: AtomicSeenStore) -> None:
        seen_store.mark_seen(1, [4, 2], EPOCH - hours(1))
        taken = seen_store.take_unseen(1, [5, 4, 3, 2, 1], limit=2, since=_DAY_AGO, at=EPOCH)
        assert taken == [5, 3]
        assert seen_store.seen_among(1, [1, 2, 3, 4, 5], since=EPOCH) == {3, 5}
        assert seen_store.take_unseen(1, [5, 4, 3, 2, 1], limit=9, since=_DAY_AGO, at=EPOCH) == [1]
        assert seen_store.take_unseen(1, [5, 4, 3, 2, 1], limit=9, since=_DAY_AGO, at=EPOCH) == []

    def test_only_views_at_or_after_since_count(self, seen_store: AtomicSeenStore) -> None:
        seen_store.mark_seen(1, [10], EPOCH - hours(48))
        seen_store.mark_seen(1, [11], _DAY_AGO)
        taken = seen_store.take_unseen(1, [10, 11, 12], limit=5, since=_DAY_AGO, at=EPOCH)
        assert taken == [10, 12]
        # A video taken again is marked at the later time.
        assert seen_store.seen_among(1, [10, 11, 12], since=EPOCH - hours(1)) == {10, 12}

    def test_taken_ids_are_marked_at_the_given_time(self, seen_store: AtomicSeenStore) -> None:
        marked_at = EPOCH - hours(2)
        assert seen_store.take_unseen(1, [7, 8], limit=5, since=_DAY_AGO, at=marked_at) == [7, 8]
        assert seen_store.seen_among(1, [7, 8], since=EPOCH - hours(1)) == set()
        assert seen_store.seen_among(1, [7, 8], since=marked_at) == {7, 8}

    def test_nothing_to_take_writes_nothing(self, seen_store: AtomicSeenStore) -> None:
        assert seen_store.take_unseen(1, [1, 2], limit=0, since=_DAY_AGO, at=EPOCH) == []
        assert seen_store.take_unseen(1, [], limit=5, since=_DAY_AGO, at=EPOCH) == []
        assert seen_store.recently_seen(1, since=_DAY_AGO, limit=10) == []

    def test_users_are_kept_apart(self, seen_store: AtomicSeenStore) -> None:
        assert seen_store.take_unseen(1, [1, 2], limit=5, since=_DAY_AGO, at=EPOCH) == [1, 2]
        assert seen_store.take_unseen(2, [2, 1], limit=5, since=_DAY_AGO, at=EPOCH) == [2, 1]
        assert seen_store.seen_among(3, [1, 2], since=_DAY_AGO) == set()

    def test_timezones_are_compared_as_instants(self, seen_store: AtomicSeenStore) -> None:
        plus_two = timezone(timedelta(hours=2))
        seen_store.mark_seen(1, [10], EPOCH - hours(1))
        since = (EPOCH - hours(2)).astimezone(plus_two)
        taken = seen_store.take_unseen(
            1, [10, 11], limit=5, since=since, at=EPOCH.astimezone(plus_two)
        )
        assert taken == [11]
        assert seen_store.seen_among(1, [11], since=EPOCH) == {11}

    def test_concurrent_takes_never_hand_out_the_same_video(
        self, seen_store: AtomicSeenStore
    ) -> None:
        ids = list(range(1, 201))
        batches: list[list[int]] = []
        start = threading.Barrier(4)

        def take() -> None:
            start.wait(timeout=10)
            for _ in range(10):
                batches.append(seen_store.take_unseen(1, ids, limit=5, since=_DAY_AGO, at=EPOCH))

        threads = [threading.Thread(target=take) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        # 40 calls of 5 over 200 ids: each id exactly once, and every call got a full page.
        assert [len(batch) for batch in batches] == [5] * 40
        assert sorted(video_id for batch in batches for video_id in batch) == ids

    @pytest.mark.parametrize(
        ("field", "arguments"),
        [
            *[pytest.param("user_id", {"user_id": bad}, id=f"user_id={bad!r}") for bad in BAD_IDS],
            *[
                pytest.param("video_ids", {"video_ids": [1, bad]}, id=f"video_ids=[1, {bad!r}]")
                for bad in BAD_IDS
            ],
            pytest.param("video_ids", {"video_ids": "12"}, id="video_ids='12'"),
            *[
                pytest.param("limit", {"limit": bad}, id=f"limit={bad!r}")
                for bad in (-1, 1.5, True, None)
            ],
            pytest.param("since", {"since": _DAY_AGO.replace(tzinfo=None)}, id="naive since"),
            pytest.param("at", {"at": EPOCH.replace(tzinfo=None)}, id="naive at"),
        ],
    )
    def test_bad_arguments_raise_and_write_nothing(
        self, seen_store: AtomicSeenStore, field: str, arguments: dict[str, object]
    ) -> None:
        call: dict[str, object] = {
            "user_id": 1,
            "video_ids": [1, 2],
            "limit": 5,
            "since": _DAY_AGO,
            "at": EPOCH,
        }
        call.update(arguments)
        with pytest.raises(InvalidInputError) as info:
            seen_store.take_unseen(
                call["user_id"],  # type: ignore[arg-type]
                call["video_ids"],  # type: ignore[arg-type]
                limit=call["limit"],  # type: ignore[arg-type]
                since=call["since"],  # type: ignore[arg-type]
                at=call["at"],  # type: ignore[arg-type]
            )
        assert info.value.field == field
        assert seen_store.recently_seen(1, since=EPOCH - hours(10**5), limit=10) == []
