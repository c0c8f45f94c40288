"""The contract of :class:`~reelrank.PageTakingSeenStore`: a cursor page recalled or taken
in one call, checked against :func:`~reelrank.stores.adapter.take_page_in_steps` on the
in-memory stores."""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence

import pytest

from ...exceptions import InvalidInputError
from ...models._feed import FeedSnapshot, PageRequest
from ...stores._cache import InMemoryFeedCache
from ...stores._pages import page_record, take_page_in_steps
from ...stores._protocols import FeedCache, PageTakingSeenStore
from ...stores._seen import InMemorySeenStore
from ..factories import EPOCH, make_snapshot
from ._support import hours

__all__ = ["PageTakingSeenStoreContract"]

_DAY_AGO = EPOCH - hours(24)


def _request(
    snapshot: FeedSnapshot,
    *,
    start: int = 0,
    limit: int = 3,
    record: str = "page-a",
    end_tag: str | None = "end",
    user_id: int = 1,
) -> PageRequest:
    return PageRequest(
        record_key=(user_id, record),
        snapshot=snapshot,
        start=start,
        limit=limit,
        since=_DAY_AGO,
        at=EPOCH,
        ttl_seconds=600.0,
        pin="snap-1",
        end_tag=end_tag,
    )


def _float32_snapshot(video_ids: Sequence[int], user_id: int = 1) -> FeedSnapshot:
    """A snapshot whose floats are exact in float32, as the ranking kernels' are
    (:func:`make_snapshot`'s are not), so both float widths a backend may pack are met."""
    base = make_snapshot(user_id, video_ids)
    count, width = len(video_ids), len(base.signals)
    scores = tuple((count - index) / 256 for index in range(count))
    return base.model_copy(
        update={
            "scores": scores,
            "contributions": tuple(tuple([score / 8] * width) for score in scores),
        }
    )


class PageTakingSeenStoreContract:
    """Checks :meth:`~reelrank.PageTakingSeenStore.take_page`; needs a ``seen_store``
    fixture returning a :class:`~reelrank.PageTakingSeenStore` and a ``feed_cache``
    fixture returning a fresh cache it takes pages with (both empty)."""

    def test_satisfies_the_protocol(
        self, seen_store: PageTakingSeenStore, feed_cache: FeedCache
    ) -> None:
        assert isinstance(seen_store, PageTakingSeenStore)
        assert seen_store.takes_pages_with(feed_cache)

    def test_takes_unseen_rows_marks_them_and_remembers_the_page(
        self, seen_store: PageTakingSeenStore, feed_cache: FeedCache
    ) -> None:
        snapshot = make_snapshot(1, [10, 11, 12, 13, 14, 15])
        seen_store.mark_seen(1, [11, 13], EPOCH - hours(1))
        request = _request(snapshot, start=1, limit=3)
        outcome = seen_store.take_page(feed_cache, request)
        assert outcome.recalled is None
        assert outcome.rows == (2, 4, 5)
        assert outcome.position == 6
        assert seen_store.seen_among(1, [12, 14, 15], since=EPOCH) == {12, 14, 15}
        assert feed_cache.get(1, "page-a") == page_record(request, [2, 4, 5], 6)

    def test_a_second_call_recalls_the_page_and_takes_nothing(
        self, seen_store: PageTakingSeenStore, feed_cache: FeedCache
    ) -> None:
        snapshot = make_snapshot(1, list(range(1, 11)))
        request = _request(snapshot, limit=4)
        first = seen_store.take_page(feed_cache, request)
        assert first.rows == (0, 1, 2, 3)
        again = seen_store.take_page(feed_cache, request)
        assert again.recalled == page_record(request, [0, 1, 2, 3], 4)
        assert again.rows == ()
        assert seen_store.seen_among(1, list(range(1, 11)), since=EPOCH) == {1, 2, 3, 4}

    def test_where_the_next_page_starts(
        self, seen_store: PageTakingSeenStore, feed_cache: FeedCache
    ) -> None:
        snapshot = make_snapshot(1, [1, 2, 3, 4, 5])
        full = seen_store.take_page(feed_cache, _request(snapshot, limit=2, record="page-a"))
        assert feed_cache.get(1, "page-a").config_tag == "2.snap-1"  # type: ignore[union-attr]
        assert full.position == 2
        last = seen_store.take_page(
            feed_cache, _request(snapshot, start=2, limit=9, record="page-b")
        )
        assert (last.rows, last.position) == ((2, 3, 4), 5)
        assert feed_cache.get(1, "page-b").config_tag == "end"  # type: ignore[union-attr]
        seen_store.mark_seen(1, [6], EPOCH - hours(1))
        longer = make_snapshot(1, [6, 7])
        on = seen_store.take_page(
            feed_cache, _request(longer, limit=5, record="page-c", end_tag=None)
        )
        assert (on.rows, on.position) == ((1,), 2)
        assert feed_cache.get(1, "page-c").config_tag == "2.snap-1"  # type: ignore[union-attr]

    def test_nothing_taken_remembers_nothing(
        self, seen_store: PageTakingSeenStore, feed_cache: FeedCache
    ) -> None:
        snapshot = make_snapshot(1, [1, 2, 3])
        seen_store.mark_seen(1, [1, 2, 3], EPOCH - hours(1))
        outcome = seen_store.take_page(feed_cache, _request(snapshot))
        assert (outcome.recalled, outcome.rows, outcome.position) == (None, (), 3)
        past_end = seen_store.take_page(feed_cache, _request(snapshot, start=3, record="page-b"))
        assert (past_end.recalled, past_end.rows, past_end.position) == (None, (), 3)
        assert feed_cache.get(1, "page-a") is None
        assert feed_cache.get(1, "page-b") is None

    def test_a_page_past_many_seen_ids(
        self, seen_store: PageTakingSeenStore, feed_cache: FeedCache
    ) -> None:
        ids = list(range(1, 301))
        seen_store.mark_seen(1, ids[:250], EPOCH - hours(1))
        request = _request(make_snapshot(1, ids), start=5, limit=20)
        outcome = seen_store.take_page(feed_cache, request)
        assert outcome.rows == tuple(range(250, 270))
        assert outcome.position == 270
        assert feed_cache.get(1, "page-a") == page_record(request, outcome.rows, 270)

    def test_agrees_with_the_calls_in_steps(
        self, seen_store: PageTakingSeenStore, feed_cache: FeedCache
    ) -> None:
        """Random page sequences with retries, against the in-memory reference."""
        rng = random.Random(7)
        reference_seen = InMemorySeenStore(retention_seconds=None)
        reference_cache = InMemoryFeedCache()
        for user_id in (1, 2):
            ids = rng.sample(range(1, 10**6), 120)
            snapshot = (
                _float32_snapshot(ids, user_id) if user_id == 2 else make_snapshot(user_id, ids)
            )
            marked = rng.sample(ids, 40)
            for store in (seen_store, reference_seen):
                store.mark_seen(user_id, marked, EPOCH - hours(1))
            start = 0
            for index in range(30):
                retry = index and rng.random() < 0.3
                record = f"page-{index - 1 if retry else index}"
                request = _request(
                    snapshot,
                    start=start,
                    limit=rng.randint(1, 12),
                    record=record,
                    user_id=user_id,
                    end_tag="end" if user_id == 1 else None,
                )
                got = seen_store.take_page(feed_cache, request)
                expected = take_page_in_steps(reference_seen, reference_cache, request)
                assert got == expected, (user_id, index)
                assert feed_cache.get(user_id, record) == reference_cache.get(user_id, record)
                if got.recalled is None:
                    start = got.position
            assert seen_store.seen_among(user_id, ids, since=_DAY_AGO) == (
                reference_seen.seen_among(user_id, ids, since=_DAY_AGO)
            )

    def test_concurrent_first_redemptions_take_one_page(
        self, seen_store: PageTakingSeenStore, feed_cache: FeedCache
    ) -> None:
        request = _request(make_snapshot(1, list(range(1, 101))), limit=5)
        outcomes = []
        start = threading.Barrier(4)

        def redeem() -> None:
            start.wait(timeout=10)
            outcomes.append(seen_store.take_page(feed_cache, request))

        threads = [threading.Thread(target=redeem) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        taken = [outcome for outcome in outcomes if outcome.recalled is None]
        assert len(taken) == 1
        assert taken[0].rows == (0, 1, 2, 3, 4)
        record = page_record(request, (0, 1, 2, 3, 4), 5)
        assert all(outcome.recalled == record for outcome in outcomes if outcome.recalled)
        assert seen_store.seen_among(1, list(range(1, 101)), since=EPOCH) == {1, 2, 3, 4, 5}

    def test_a_cache_it_does_not_take_pages_with_is_refused(
        self, seen_store: PageTakingSeenStore
    ) -> None:
        class Elsewhere(InMemoryFeedCache):
            in_process = False

        other = Elsewhere()
        if seen_store.takes_pages_with(other):
            pytest.skip("this store takes pages with any cache")
        with pytest.raises(InvalidInputError) as info:
            seen_store.take_page(other, _request(make_snapshot(1, [1, 2])))
        assert info.value.field == "cache"
