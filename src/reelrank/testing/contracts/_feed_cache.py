"""The contract of :class:`~reelrank.FeedCache`."""

from __future__ import annotations

import math
import time

import pytest

from ...exceptions import InvalidInputError
from ...stores._protocols import FeedCache
from ..factories import make_snapshot
from ._support import BAD_IDS

__all__ = ["FeedCacheContract"]


class FeedCacheContract:
    """Checks a :class:`~reelrank.FeedCache`; needs a ``feed_cache`` fixture.

    The expiry test lets time pass through :meth:`advance`, which sleeps real time: what
    a cache whose server expires entries on its own clock (Redis) needs. A cache built on
    an injected clock overrides it to move that clock instead, and the test takes no
    time::

        class TestMyCache(FeedCacheContract):
            @pytest.fixture
            def feed_cache(self):
                self.clock = ManualClock()
                return MyCache(clock=self.clock.monotonic)

            def advance(self, seconds):
                self.clock.advance(seconds)
    """

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass on the clock the ``feed_cache`` expires entries by.

        Sleeps real time; override it to move the clock of a cache that takes one (the
        fixture and the test share the instance, so the fixture can keep the clock on
        ``self``).
        """
        time.sleep(seconds)

    def test_satisfies_the_protocol(self, feed_cache: FeedCache) -> None:
        assert isinstance(feed_cache, FeedCache)

    def test_a_miss_returns_none(self, feed_cache: FeedCache) -> None:
        assert feed_cache.get(1) is None
        assert feed_cache.get(1, "b") is None
        assert feed_cache.get_many([(1, None), (2, "b")]) == {}

    def test_put_then_get_returns_an_equal_snapshot(self, feed_cache: FeedCache) -> None:
        snapshot = make_snapshot(1, [5, 3, 9], config_tag="cfg-2")
        feed_cache.put(snapshot, ttl_seconds=60)
        assert feed_cache.get(1) == snapshot
        assert feed_cache.get(1, None) == snapshot

    def test_variants_are_separate_keys(self, feed_cache: FeedCache) -> None:
        default = make_snapshot(1, [1, 2])
        treatment = make_snapshot(1, [2, 1], variant="treatment")
        feed_cache.put(default, ttl_seconds=60)
        feed_cache.put(treatment, ttl_seconds=60)
        assert feed_cache.get(1) == default
        assert feed_cache.get(1, "treatment") == treatment
        assert feed_cache.get(1, "control") is None

    def test_put_replaces_the_previous_snapshot(self, feed_cache: FeedCache) -> None:
        feed_cache.put(make_snapshot(1, [1, 2]), ttl_seconds=60)
        newer = make_snapshot(1, [3])
        feed_cache.put(newer, ttl_seconds=60)
        assert feed_cache.get(1) == newer

    def test_bulk_put_and_get(self, feed_cache: FeedCache) -> None:
        snapshots = [make_snapshot(user, [user, user + 100]) for user in range(1, 6)]
        later = make_snapshot(3, [42])
        feed_cache.put_many([*snapshots, later], ttl_seconds=60)
        got = feed_cache.get_many([(1, None), (3, None), (9, None), (1, "b"), (1, None)])
        assert got == {(1, None): snapshots[0], (3, None): later}
        feed_cache.put_many([], ttl_seconds=60)

    def test_snapshot_without_items_round_trips(self, feed_cache: FeedCache) -> None:
        empty = make_snapshot(1, [])
        feed_cache.put(empty, ttl_seconds=60)
        assert feed_cache.get(1) == empty

    def test_delete_drops_one_key(self, feed_cache: FeedCache) -> None:
        feed_cache.put(make_snapshot(1, [1]), ttl_seconds=60)
        feed_cache.put(make_snapshot(1, [1], variant="b"), ttl_seconds=60)
        assert feed_cache.delete(1) is True
        assert feed_cache.delete(1) is False
        assert feed_cache.get(1) is None
        assert feed_cache.get(1, "b") is not None

    def test_invalidate_user_drops_every_variant(self, feed_cache: FeedCache) -> None:
        for variant in (None, "a", "b"):
            feed_cache.put(make_snapshot(1, [1], variant=variant), ttl_seconds=60)
        other = make_snapshot(2, [1])
        feed_cache.put(other, ttl_seconds=60)
        assert feed_cache.invalidate_user(1) == 3
        assert feed_cache.invalidate_user(1) == 0
        assert feed_cache.get_many([(1, None), (1, "a"), (1, "b"), (2, None)]) == {(2, None): other}

    @pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, "60", None])
    def test_bad_ttl_raises_and_writes_nothing(self, feed_cache: FeedCache, bad: object) -> None:
        with pytest.raises(InvalidInputError) as info:
            feed_cache.put(make_snapshot(1), ttl_seconds=bad)  # type: ignore[arg-type]
        assert info.value.field == "ttl_seconds"
        with pytest.raises(InvalidInputError):
            feed_cache.put_many([make_snapshot(2)], ttl_seconds=bad)  # type: ignore[arg-type]
        assert feed_cache.get_many([(1, None), (2, None)]) == {}

    @pytest.mark.parametrize("bad", ["", "has space", "x" * 65, 3])
    def test_bad_variants_raise_invalid_input(self, feed_cache: FeedCache, bad: object) -> None:
        with pytest.raises(InvalidInputError):
            feed_cache.get(1, bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError):
            feed_cache.get_many([(1, bad)])  # type: ignore[list-item]

    @pytest.mark.parametrize("bad", BAD_IDS)
    def test_bad_user_ids_raise_invalid_input(self, feed_cache: FeedCache, bad: object) -> None:
        with pytest.raises(InvalidInputError):
            feed_cache.get(bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError):
            feed_cache.invalidate_user(bad)  # type: ignore[arg-type]

    def test_entry_expires_after_its_ttl(self, feed_cache: FeedCache) -> None:
        short = make_snapshot(1, [1])
        long = make_snapshot(2, [2])
        feed_cache.put(short, ttl_seconds=1)
        feed_cache.put_many([long], ttl_seconds=60)
        assert feed_cache.get(1) == short
        # Half the TTL later the entry is still there (a TTL read as milliseconds is not).
        self.advance(0.5)
        assert feed_cache.get(1) == short
        self.advance(1.1)
        assert feed_cache.get(1) is None
        assert feed_cache.get_many([(1, None), (2, None)]) == {(2, None): long}
        assert feed_cache.delete(1) is False
