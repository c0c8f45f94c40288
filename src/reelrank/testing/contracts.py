"""The reusable contract suite: pytest classes that check a store against its protocol.

Subclass a contract in a test module named ``test_*.py`` with a class named
``Test*``, and provide the fixture it names, returning a fresh, empty store::

    import pytest
    from reelrank.testing import CatalogContract

    class TestMyCatalog(CatalogContract):
        @pytest.fixture
        def catalog(self):
            return MyCatalog(dsn=...)

Each contract needs one fixture:

* :class:`CatalogContract`: ``catalog``
* :class:`EventStoreContract`: ``event_store``
* :class:`EngagementLogContract`: ``engagement_log``
* :class:`SeenStoreContract`: ``seen_store``
* :class:`FeedCacheContract`: ``feed_cache``
* :class:`ModelRegistryContract`: ``model_registry``
* :class:`ProgressStoreContract`: ``progress_store``
* :class:`TrendingSnapshotStoreContract`: ``trending_snapshot_store``
* :class:`SearchIndexContract`: ``search_index``

The tests use only the protocol methods, so they suit any backend. The one test that
needs real time (:meth:`FeedCacheContract.test_entry_expires_after_its_ttl`) is marked
``slow`` and sleeps about 1.6 s.
"""

from __future__ import annotations

import math
import time
from datetime import timedelta

import pytest

from ..exceptions import InvalidInputError, InvalidTransitionError, NotFoundError
from ..models._catalog import ProcessingState
from ..models._engagement import EngagementKind, affinity, affinity_credit
from ..models._processing import ProcessingProgress, RenditionProgress, RenditionStatus
from ..models._registry import ModelStatus
from ..models._search import SearchDocument
from ..models._trending import Trend, TrendingItem, TrendingKind, TrendingSnapshot
from ..stores._protocols import (
    Catalog,
    EngagementLog,
    EventStore,
    FeedCache,
    ModelRegistry,
    ProgressStore,
    SearchIndex,
    SeenStore,
    TrendingSnapshotStore,
)
from ..stores._text import parse_query
from .factories import EPOCH, make_creator, make_event, make_model, make_snapshot, make_video

__all__ = [
    "CatalogContract",
    "EngagementLogContract",
    "EventStoreContract",
    "FeedCacheContract",
    "ModelRegistryContract",
    "ProgressStoreContract",
    "SearchIndexContract",
    "SeenStoreContract",
    "TrendingSnapshotStoreContract",
]


_BAD_IDS = (0, -1, 2**63, True, 1.0, "1")


def _hours(n: float) -> timedelta:
    return timedelta(hours=n)


class CatalogContract:
    """Checks a :class:`~reelrank.Catalog`; needs a ``catalog`` fixture."""

    def test_satisfies_the_protocol(self, catalog: Catalog) -> None:
        assert isinstance(catalog, Catalog)

    def test_put_video_round_trips(self, catalog: Catalog) -> None:
        catalog.put_creator(make_creator(7))
        video = make_video(11, 7, hashtags=("cats", "dogs"), sound_id=5, description="d")
        catalog.put_video(video)
        assert catalog.get_video(11) == video
        assert catalog.get_videos([11]) == {11: video}

    def test_put_video_replaces_the_previous_version(self, catalog: Catalog) -> None:
        catalog.put_creator(make_creator(1))
        catalog.put_video(make_video(1, 1, title="old"))
        catalog.put_video(make_video(1, 1, title="new"))
        assert catalog.get_video(1).title == "new"
        assert [v.title for v in catalog.recent_videos(limit=10)] == ["new"]

    def test_unknown_video_raises_not_found(self, catalog: Catalog) -> None:
        with pytest.raises(NotFoundError) as info:
            catalog.get_video(404)
        assert info.value.kind == "video"

    def test_bulk_get_omits_unknown_ids_and_tolerates_duplicates(self, catalog: Catalog) -> None:
        catalog.put_creator(make_creator(1))
        catalog.put_video(make_video(1, 1))
        catalog.put_video(make_video(2, 1))
        assert set(catalog.get_videos([2, 404, 1, 2])) == {1, 2}
        assert catalog.get_videos([]) == {}

    def test_video_of_unknown_creator_is_refused(self, catalog: Catalog) -> None:
        with pytest.raises(NotFoundError) as info:
            catalog.put_video(make_video(1, 99))
        assert info.value.kind == "creator"
        assert catalog.get_videos([1]) == {}

    def test_get_creators_omits_unknown_ids(self, catalog: Catalog) -> None:
        creator = make_creator(3, display_name="Three")
        catalog.put_creator(creator)
        assert catalog.get_creators([3, 4]) == {3: creator}

    def test_recent_videos_are_newest_first_and_limited(self, catalog: Catalog) -> None:
        catalog.put_creator(make_creator(1))
        for video_id, age_hours in [(1, 5), (2, 1), (3, 3), (4, 1)]:
            catalog.put_video(make_video(video_id, 1, published_at=EPOCH - _hours(age_hours)))
        ids = [v.video_id for v in catalog.recent_videos(limit=10)]
        assert ids == [4, 2, 3, 1]
        assert [v.video_id for v in catalog.recent_videos(limit=2)] == [4, 2]
        assert catalog.recent_videos(limit=0) == []

    def test_recent_videos_since_excludes_older_ones(self, catalog: Catalog) -> None:
        catalog.put_creator(make_creator(1))
        catalog.put_video(make_video(1, 1, published_at=EPOCH - _hours(10)))
        catalog.put_video(make_video(2, 1, published_at=EPOCH - _hours(2)))
        catalog.put_video(make_video(3, 1, published_at=EPOCH))
        since = EPOCH - _hours(2)
        assert [v.video_id for v in catalog.recent_videos(limit=10, since=since)] == [3, 2]

    def test_candidate_lists_hold_only_ready_videos(self, catalog: Catalog) -> None:
        catalog.put_creator(make_creator(1))
        catalog.put_video(make_video(1, 1))
        catalog.put_video(make_video(2, 1, state=ProcessingState.TRANSCODING))
        catalog.follow(50, 1)
        assert [v.video_id for v in catalog.recent_videos(limit=10)] == [1]
        assert [v.video_id for v in catalog.followed_videos(50, limit=10)] == [1]
        assert catalog.get_video(2).state is ProcessingState.TRANSCODING

    def test_state_moves_follow_the_state_machine(self, catalog: Catalog) -> None:
        catalog.put_creator(make_creator(1))
        catalog.put_video(make_video(1, 1, state=ProcessingState.QUEUED))
        for state in (
            ProcessingState.TRANSCODING,
            ProcessingState.PACKAGING,
            ProcessingState.READY,
        ):
            assert catalog.set_state(1, state).state is state
            assert catalog.get_video(1).state is state
        assert [v.video_id for v in catalog.recent_videos(limit=10)] == [1]

    def test_forbidden_state_move_changes_nothing(self, catalog: Catalog) -> None:
        catalog.put_creator(make_creator(1))
        catalog.put_video(make_video(1, 1, state=ProcessingState.QUEUED))
        with pytest.raises(InvalidTransitionError):
            catalog.set_state(1, ProcessingState.READY)
        assert catalog.get_video(1).state is ProcessingState.QUEUED
        assert catalog.recent_videos(limit=10) == []

    def test_state_move_of_unknown_video_raises_not_found(self, catalog: Catalog) -> None:
        with pytest.raises(NotFoundError):
            catalog.set_state(404, ProcessingState.FAILED)

    def test_follows_are_idempotent(self, catalog: Catalog) -> None:
        catalog.put_creator(make_creator(1))
        catalog.put_creator(make_creator(2))
        catalog.follow(10, 1)
        catalog.follow(10, 1)
        catalog.follow(10, 2)
        assert catalog.followed_creators(10) == frozenset({1, 2})
        catalog.unfollow(10, 1)
        catalog.unfollow(10, 1)
        catalog.unfollow(11, 2)
        assert catalog.followed_creators(10) == frozenset({2})
        assert catalog.followed_creators(11) == frozenset()

    def test_following_an_unknown_creator_raises_not_found(self, catalog: Catalog) -> None:
        with pytest.raises(NotFoundError):
            catalog.follow(10, 404)
        assert catalog.followed_creators(10) == frozenset()

    def test_followed_videos_are_newest_first_and_limited(self, catalog: Catalog) -> None:
        for creator_id in (1, 2, 3):
            catalog.put_creator(make_creator(creator_id))
        layout = [(1, 1, 4), (2, 2, 3), (3, 3, 0), (4, 1, 1), (5, 2, 2)]
        for video_id, creator_id, age_hours in layout:
            published_at = EPOCH - _hours(age_hours)
            catalog.put_video(make_video(video_id, creator_id, published_at=published_at))
        catalog.follow(10, 1)
        catalog.follow(10, 2)
        assert [v.video_id for v in catalog.followed_videos(10, limit=10)] == [4, 5, 2, 1]
        assert [v.video_id for v in catalog.followed_videos(10, limit=2)] == [4, 5]
        assert catalog.followed_videos(11, limit=10) == []

    @pytest.mark.parametrize("bad", _BAD_IDS)
    def test_bad_ids_raise_invalid_input(self, catalog: Catalog, bad: object) -> None:
        with pytest.raises(InvalidInputError) as info:
            catalog.get_video(bad)  # type: ignore[arg-type]
        assert info.value.field == "video_id"
        with pytest.raises(InvalidInputError):
            catalog.get_videos([1, bad])  # type: ignore[list-item]
        with pytest.raises(InvalidInputError):
            catalog.followed_creators(bad)  # type: ignore[arg-type]

    @pytest.mark.parametrize("bad", [-1, 1.5, True, None])
    def test_bad_limits_raise_invalid_input(self, catalog: Catalog, bad: object) -> None:
        with pytest.raises(InvalidInputError) as info:
            catalog.recent_videos(limit=bad)  # type: ignore[arg-type]
        assert info.value.field == "limit"
        with pytest.raises(InvalidInputError):
            catalog.followed_videos(1, limit=bad)  # type: ignore[arg-type]

    def test_naive_since_raises_invalid_input(self, catalog: Catalog) -> None:
        with pytest.raises(InvalidInputError) as info:
            catalog.recent_videos(limit=1, since=EPOCH.replace(tzinfo=None))
        assert info.value.field == "since"


class EventStoreContract:
    """Checks an :class:`~reelrank.EventStore`; needs an ``event_store`` fixture."""

    def test_satisfies_the_protocol(self, event_store: EventStore) -> None:
        assert isinstance(event_store, EventStore)

    def test_unknown_videos_have_zero_stats(self, event_store: EventStore) -> None:
        stats = event_store.get_stats([5, 6, 5])
        assert set(stats) == {5, 6}
        assert stats[5].video_id == 5
        assert (stats[5].views, stats[5].completion_sum, stats[5].likes) == (0, 0.0, 0)
        assert (stats[5].shares, stats[5].comments) == (0, 0)

    def test_watches_add_views_and_completion(self, event_store: EventStore) -> None:
        for completion in (0.25, 1.0, 0.5):
            assert event_store.append(make_event("watch", completion=completion), creator_id=1)
        stats = event_store.get_stats([1])[1]
        assert stats.views == 3
        assert math.isclose(stats.completion_sum, 1.75)
        assert event_store.get_stats([2])[2].views == 0

    def test_stats_read_before_an_event_are_not_served_after_it(
        self, event_store: EventStore
    ) -> None:
        assert event_store.get_stats([1, 2])[1].views == 0
        event_store.append(make_event("watch", completion=0.5), creator_id=1)
        assert event_store.get_stats([1])[1].views == 1
        event_store.append(make_event("like", user_id=4), creator_id=1)
        stats = event_store.get_stats([2, 1])
        assert (stats[1].views, stats[1].likes, stats[2].views) == (1, 1, 0)

    def test_shares_and_comments_are_counted(self, event_store: EventStore) -> None:
        event_store.append(make_event("share"), creator_id=1)
        event_store.append(make_event("share", user_id=2), creator_id=1)
        event_store.append(make_event("comment"), creator_id=1)
        stats = event_store.get_stats([1])[1]
        assert (stats.shares, stats.comments, stats.views) == (2, 1, 0)

    @pytest.mark.parametrize("kind", list(EngagementKind))
    def test_a_redelivered_event_is_counted_once(
        self, event_store: EventStore, kind: EngagementKind
    ) -> None:
        if kind is EngagementKind.UNLIKE:
            event_store.append(make_event("like"), creator_id=1)
        event = make_event(kind)
        assert event_store.append(event, creator_id=1) is True
        stats_once = event_store.get_stats([1])
        affinity_once = event_store.get_affinities(1, [1])
        assert event_store.append(event, creator_id=1) is False
        assert event_store.append(event, creator_id=1) is False
        assert event_store.get_stats([1]) == stats_once
        assert event_store.get_affinities(1, [1]) == affinity_once

    def test_likes_count_users_who_currently_like(self, event_store: EventStore) -> None:
        event_store.append(make_event("like", user_id=1), creator_id=9)
        event_store.append(make_event("like", user_id=1), creator_id=9)
        event_store.append(make_event("like", user_id=2), creator_id=9)
        assert event_store.get_stats([1])[1].likes == 2
        event_store.append(make_event("unlike", user_id=1), creator_id=9)
        event_store.append(make_event("unlike", user_id=1), creator_id=9)
        event_store.append(make_event("unlike", user_id=3), creator_id=9)
        assert event_store.get_stats([1])[1].likes == 1
        event_store.append(make_event("like", user_id=1), creator_id=9)
        assert event_store.get_stats([1])[1].likes == 2

    def test_watch_without_completion_is_refused(self, event_store: EventStore) -> None:
        event = make_event("watch", watched_seconds=10.0)
        with pytest.raises(InvalidInputError) as info:
            event_store.append(event, creator_id=1)
        assert info.value.field == "completion"
        assert event_store.get_stats([1])[1].views == 0
        # The refused event id was not consumed: the fixed event is applied.
        fixed = event.model_copy(update={"completion": 0.5})
        assert event_store.append(fixed, creator_id=1) is True

    def test_affinity_is_zero_without_engagement(self, event_store: EventStore) -> None:
        assert event_store.get_affinities(1, [1, 2]) == {1: 0.0, 2: 0.0}
        assert event_store.get_affinities(1, []) == {}

    def test_affinity_follows_the_documented_formula(self, event_store: EventStore) -> None:
        event_store.append(make_event("watch", completion=0.8, video_id=1), creator_id=1)
        event_store.append(make_event("like", video_id=1), creator_id=1)
        event_store.append(make_event("share", video_id=2), creator_id=2)
        event_store.append(make_event("watch", completion=0.4, video_id=3), creator_id=3)
        credit = {
            1: affinity_credit(EngagementKind.WATCH, 0.8) + affinity_credit(EngagementKind.LIKE),
            2: affinity_credit(EngagementKind.SHARE),
            3: affinity_credit(EngagementKind.WATCH, 0.4),
        }
        total = sum(credit.values())
        got = event_store.get_affinities(1, [1, 2, 3, 4])
        for creator_id in (1, 2, 3):
            assert math.isclose(got[creator_id], affinity(credit[creator_id], total))
        assert got[4] == 0.0
        assert all(0.0 <= value <= 1.0 for value in got.values())
        assert event_store.get_affinities(2, [1]) == {1: 0.0}

    def test_unlike_takes_back_the_credit_of_the_like(self, event_store: EventStore) -> None:
        event_store.append(make_event("watch", completion=0.5), creator_id=1)
        before = event_store.get_affinities(1, [1])
        event_store.append(make_event("like"), creator_id=1)
        assert event_store.get_affinities(1, [1])[1] > before[1]
        event_store.append(make_event("unlike"), creator_id=1)
        assert math.isclose(event_store.get_affinities(1, [1])[1], before[1])

    def test_popular_videos_are_most_viewed_first(self, event_store: EventStore) -> None:
        views = {1: 2, 2: 5, 3: 2, 4: 0}
        for video_id, count in views.items():
            for _ in range(count):
                event_store.append(make_event("watch", video_id=video_id), creator_id=1)
        event_store.append(make_event("like", video_id=4), creator_id=1)
        assert event_store.popular_video_ids(limit=10) == [2, 1, 3]
        assert event_store.popular_video_ids(limit=2) == [2, 1]
        assert event_store.popular_video_ids(limit=0) == []

    @pytest.mark.parametrize("bad", _BAD_IDS)
    def test_bad_ids_raise_invalid_input(self, event_store: EventStore, bad: object) -> None:
        with pytest.raises(InvalidInputError):
            event_store.get_stats([bad])  # type: ignore[list-item]
        with pytest.raises(InvalidInputError) as info:
            event_store.get_affinities(bad, [1])  # type: ignore[arg-type]
        assert info.value.field == "user_id"
        with pytest.raises(InvalidInputError) as info:
            event_store.append(make_event("watch"), creator_id=bad)  # type: ignore[arg-type]
        assert info.value.field == "creator_id"
        assert event_store.get_stats([1])[1].views == 0

    def test_bad_limit_raises_invalid_input(self, event_store: EventStore) -> None:
        with pytest.raises(InvalidInputError) as info:
            event_store.popular_video_ids(limit=-1)
        assert info.value.field == "limit"


class SeenStoreContract:
    """Checks a :class:`~reelrank.SeenStore`; needs a ``seen_store`` fixture."""

    def test_satisfies_the_protocol(self, seen_store: SeenStore) -> None:
        assert isinstance(seen_store, SeenStore)

    def test_nothing_is_seen_at_first(self, seen_store: SeenStore) -> None:
        assert seen_store.seen_among(1, [1, 2], since=EPOCH - _hours(1)) == set()
        assert seen_store.recently_seen(1, since=EPOCH - _hours(1), limit=10) == []

    def test_seen_among_respects_the_window(self, seen_store: SeenStore) -> None:
        seen_store.mark_seen(1, [10, 11], EPOCH - _hours(48))
        seen_store.mark_seen(1, [12], EPOCH - _hours(1))
        candidates = [10, 11, 12, 13, 12]
        assert seen_store.seen_among(1, candidates, since=EPOCH - _hours(24)) == {12}
        assert seen_store.seen_among(1, candidates, since=EPOCH - _hours(48)) == {10, 11, 12}
        assert seen_store.seen_among(1, candidates, since=EPOCH - _hours(1)) == {12}

    def test_users_are_kept_apart(self, seen_store: SeenStore) -> None:
        seen_store.mark_seen(1, [10], EPOCH)
        assert seen_store.seen_among(2, [10], since=EPOCH - _hours(1)) == set()

    def test_the_later_time_wins(self, seen_store: SeenStore) -> None:
        seen_store.mark_seen(1, [10], EPOCH)
        seen_store.mark_seen(1, [10], EPOCH - _hours(100))
        assert seen_store.seen_among(1, [10], since=EPOCH - _hours(1)) == {10}
        seen_store.mark_seen(1, [11], EPOCH - _hours(100))
        seen_store.mark_seen(1, [11], EPOCH)
        assert seen_store.seen_among(1, [11], since=EPOCH - _hours(1)) == {11}

    def test_recently_seen_is_most_recent_first(self, seen_store: SeenStore) -> None:
        seen_store.mark_seen(1, [10], EPOCH - _hours(3))
        seen_store.mark_seen(1, [11], EPOCH - _hours(1))
        seen_store.mark_seen(1, [12], EPOCH - _hours(2))
        seen_store.mark_seen(1, [13], EPOCH - _hours(30))
        since = EPOCH - _hours(24)
        assert seen_store.recently_seen(1, since=since, limit=10) == [11, 12, 10]
        assert seen_store.recently_seen(1, since=since, limit=2) == [11, 12]
        assert seen_store.recently_seen(1, since=since, limit=0) == []

    def test_timezones_are_compared_as_instants(self, seen_store: SeenStore) -> None:
        from datetime import timezone

        plus_two = timezone(timedelta(hours=2))
        seen_store.mark_seen(1, [10], (EPOCH - _hours(1)).astimezone(plus_two))
        assert seen_store.seen_among(1, [10], since=EPOCH - _hours(2)) == {10}
        assert seen_store.seen_among(1, [10], since=EPOCH - timedelta(minutes=30)) == set()

    def test_naive_datetimes_raise_invalid_input(self, seen_store: SeenStore) -> None:
        naive = EPOCH.replace(tzinfo=None)
        with pytest.raises(InvalidInputError) as info:
            seen_store.mark_seen(1, [10], naive)
        assert info.value.field == "at"
        with pytest.raises(InvalidInputError) as info:
            seen_store.seen_among(1, [10], since=naive)
        assert info.value.field == "since"
        assert seen_store.seen_among(1, [10], since=EPOCH - _hours(10**5)) == set()

    @pytest.mark.parametrize("bad", _BAD_IDS)
    def test_bad_ids_raise_and_write_nothing(self, seen_store: SeenStore, bad: object) -> None:
        with pytest.raises(InvalidInputError):
            seen_store.mark_seen(1, [10, bad], EPOCH)  # type: ignore[list-item]
        with pytest.raises(InvalidInputError) as info:
            seen_store.mark_seen(bad, [10], EPOCH)  # type: ignore[arg-type]
        assert info.value.field == "user_id"
        assert seen_store.seen_among(1, [10], since=EPOCH - _hours(1)) == set()


class FeedCacheContract:
    """Checks a :class:`~reelrank.FeedCache`; needs a ``feed_cache`` fixture."""

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

    @pytest.mark.parametrize("bad", _BAD_IDS)
    def test_bad_user_ids_raise_invalid_input(self, feed_cache: FeedCache, bad: object) -> None:
        with pytest.raises(InvalidInputError):
            feed_cache.get(bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError):
            feed_cache.invalidate_user(bad)  # type: ignore[arg-type]

    @pytest.mark.slow
    def test_entry_expires_after_its_ttl(self, feed_cache: FeedCache) -> None:
        short = make_snapshot(1, [1])
        long = make_snapshot(2, [2])
        feed_cache.put(short, ttl_seconds=1)
        feed_cache.put_many([long], ttl_seconds=60)
        assert feed_cache.get(1) == short
        time.sleep(1.6)
        assert feed_cache.get(1) is None
        assert feed_cache.get_many([(1, None), (2, None)]) == {(2, None): long}
        assert feed_cache.delete(1) is False


class ModelRegistryContract:
    """Checks a :class:`~reelrank.ModelRegistry`; needs a ``model_registry`` fixture."""

    def test_satisfies_the_protocol(self, model_registry: ModelRegistry) -> None:
        assert isinstance(model_registry, ModelRegistry)

    def test_register_and_get_round_trip(self, model_registry: ModelRegistry) -> None:
        first = make_model(version="v1", metrics={"auc": 0.71})
        second = make_model(version="v2", status=ModelStatus.RETIRED)
        model_registry.register(first)
        model_registry.register(second)
        model_registry.register(make_model(name="other"))
        assert model_registry.get_model("watch-time", "v1") == first
        assert model_registry.list_models("watch-time") == [first, second]
        assert model_registry.list_models("unknown") == []
        assert model_registry.active_model("watch-time") is None

    def test_unknown_version_raises_not_found(self, model_registry: ModelRegistry) -> None:
        with pytest.raises(NotFoundError) as info:
            model_registry.get_model("watch-time", "v9")
        assert info.value.kind == "model"
        with pytest.raises(NotFoundError):
            model_registry.activate("watch-time", "v9")

    def test_duplicate_version_is_refused(self, model_registry: ModelRegistry) -> None:
        model_registry.register(make_model(version="v1", metrics={"auc": 0.5}))
        with pytest.raises(InvalidInputError) as info:
            model_registry.register(make_model(version="v1", metrics={"auc": 0.9}))
        assert info.value.field == "version"
        assert model_registry.get_model("watch-time", "v1").metrics == {"auc": 0.5}

    def test_registering_as_active_is_refused(self, model_registry: ModelRegistry) -> None:
        with pytest.raises(InvalidInputError) as info:
            model_registry.register(make_model(status=ModelStatus.ACTIVE))
        assert info.value.field == "status"
        assert model_registry.list_models("watch-time") == []

    def test_activation_retires_the_previous_active(self, model_registry: ModelRegistry) -> None:
        for version in ("v1", "v2"):
            model_registry.register(make_model(version=version))
        assert model_registry.activate("watch-time", "v1").status is ModelStatus.ACTIVE
        activated = model_registry.activate("watch-time", "v2")
        assert activated.status is ModelStatus.ACTIVE
        assert activated.version == "v2"
        assert model_registry.active_model("watch-time") == activated
        statuses = {m.version: m.status for m in model_registry.list_models("watch-time")}
        assert statuses == {"v1": ModelStatus.RETIRED, "v2": ModelStatus.ACTIVE}
        again = model_registry.activate("watch-time", "v2")
        assert again == activated

    def test_scores_are_read_from_the_active_version(self, model_registry: ModelRegistry) -> None:
        model_registry.register(make_model(version="v1"))
        model_registry.register(make_model(version="v2"))
        model_registry.put_scores("watch-time", "v1", {1: 0.1, 2: 0.2})
        model_registry.put_scores("watch-time", "v2", {1: 0.9})
        assert model_registry.get_scores("watch-time", [1, 2]) == {}
        model_registry.activate("watch-time", "v1")
        assert model_registry.get_scores("watch-time", [1, 2, 3]) == {1: 0.1, 2: 0.2}
        model_registry.activate("watch-time", "v2")
        assert model_registry.get_scores("watch-time", [1, 2, 3]) == {1: 0.9}
        assert model_registry.get_scores("watch-time", [2], version="v1") == {2: 0.2}

    def test_put_scores_replaces_per_video(self, model_registry: ModelRegistry) -> None:
        model_registry.register(make_model(version="v1"))
        model_registry.put_scores("watch-time", "v1", {1: 0.1, 2: 0.2})
        model_registry.put_scores("watch-time", "v1", {2: 0.0, 3: 1.0})
        got = model_registry.get_scores("watch-time", [1, 2, 3], version="v1")
        assert got == {1: 0.1, 2: 0.0, 3: 1.0}

    @pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan, math.inf, "0.5"])
    def test_bad_scores_raise_and_write_nothing(
        self, model_registry: ModelRegistry, bad: object
    ) -> None:
        model_registry.register(make_model(version="v1"))
        with pytest.raises(InvalidInputError) as info:
            model_registry.put_scores("watch-time", "v1", {1: 0.5, 2: bad})  # type: ignore[dict-item]
        assert info.value.field == "scores"
        assert model_registry.get_scores("watch-time", [1, 2], version="v1") == {}

    def test_scores_of_unknown_versions_raise_not_found(
        self, model_registry: ModelRegistry
    ) -> None:
        with pytest.raises(NotFoundError):
            model_registry.put_scores("watch-time", "v1", {1: 0.5})
        with pytest.raises(NotFoundError):
            model_registry.get_scores("watch-time", [1], version="v1")
        assert model_registry.get_scores("watch-time", [1]) == {}


class EngagementLogContract:
    """Checks an :class:`~reelrank.EngagementLog`; needs an ``engagement_log`` fixture."""

    def test_satisfies_the_protocol(self, engagement_log: EngagementLog) -> None:
        assert isinstance(engagement_log, EngagementLog)

    def test_an_event_is_kept_once_and_returned_unchanged(
        self, engagement_log: EngagementLog
    ) -> None:
        event = make_event("watch", completion=0.75, variant="b")
        assert engagement_log.record(event) is True
        assert engagement_log.record(event) is False
        window = engagement_log.events_between(EPOCH, EPOCH + _hours(1), limit=10)
        assert window == [event]
        assert engagement_log.user_events(1, since=EPOCH, limit=10) == [event]

    def test_events_between_is_half_open_and_newest_first(
        self, engagement_log: EngagementLog
    ) -> None:
        before = make_event("like", occurred_at=EPOCH - _hours(1), event_id="a-before")
        at_start = make_event("like", occurred_at=EPOCH, event_id="b-start")
        tie_low = make_event("share", occurred_at=EPOCH + _hours(1), event_id="c-tie")
        tie_high = make_event("share", occurred_at=EPOCH + _hours(1), event_id="d-tie")
        at_end = make_event("comment", occurred_at=EPOCH + _hours(2), event_id="e-end")
        for event in (tie_high, at_end, before, tie_low, at_start):
            engagement_log.record(event)
        got = engagement_log.events_between(EPOCH, EPOCH + _hours(2), limit=10)
        assert got == [tie_high, tie_low, at_start]
        newest = engagement_log.events_between(EPOCH, EPOCH + _hours(2), limit=2)
        assert newest == [tie_high, tie_low]
        assert engagement_log.events_between(EPOCH, EPOCH + _hours(2), limit=0) == []

    def test_user_events_are_per_user_newest_first(self, engagement_log: EngagementLog) -> None:
        mine = [make_event("like", user_id=1, occurred_at=EPOCH + _hours(n)) for n in range(4)]
        theirs = make_event("like", user_id=2, occurred_at=EPOCH + _hours(9))
        for event in [*mine, theirs]:
            engagement_log.record(event)
        since = EPOCH + _hours(1)
        assert engagement_log.user_events(1, since=since, limit=10) == mine[:0:-1]
        assert engagement_log.user_events(1, since=since, limit=1) == [mine[3]]
        assert engagement_log.user_events(3, since=EPOCH, limit=10) == []

    def test_bad_arguments_raise_invalid_input(self, engagement_log: EngagementLog) -> None:
        naive = EPOCH.replace(tzinfo=None)
        with pytest.raises(InvalidInputError) as info:
            engagement_log.events_between(naive, EPOCH, limit=1)
        assert info.value.field == "start"
        with pytest.raises(InvalidInputError) as info:
            engagement_log.user_events(1, since=naive, limit=1)
        assert info.value.field == "since"
        with pytest.raises(InvalidInputError) as info:
            engagement_log.events_between(EPOCH, EPOCH, limit=-1)
        assert info.value.field == "limit"
        with pytest.raises(InvalidInputError) as info:
            engagement_log.user_events(0, since=EPOCH, limit=1)
        assert info.value.field == "user_id"


def _progress(video_id: int = 1, **overrides: object) -> ProcessingProgress:
    fields: dict[str, object] = {
        "video_id": video_id,
        "renditions": (RenditionProgress(name="720p"), RenditionProgress(name="1080p")),
        "updated_at": EPOCH,
    }
    fields.update(overrides)
    return ProcessingProgress.model_validate(fields)


class ProgressStoreContract:
    """Checks a :class:`~reelrank.ProgressStore`; needs a ``progress_store`` fixture."""

    def test_satisfies_the_protocol(self, progress_store: ProgressStore) -> None:
        assert isinstance(progress_store, ProgressStore)

    def test_unknown_video_has_no_progress(self, progress_store: ProgressStore) -> None:
        assert progress_store.get_progress(404) is None

    def test_put_then_get_returns_an_equal_record(self, progress_store: ProgressStore) -> None:
        progress = _progress(7)
        progress_store.put_progress(progress)
        assert progress_store.get_progress(7) == progress
        assert progress_store.get_progress(8) is None

    def test_put_replaces_the_previous_record(self, progress_store: ProgressStore) -> None:
        progress_store.put_progress(_progress(1))
        failed = _progress(
            1,
            state=ProcessingState.FAILED,
            percent=40.0,
            error="encoder crashed",
            renditions=(
                RenditionProgress(name="720p", status=RenditionStatus.DONE, percent=100.0),
                RenditionProgress(
                    name="1080p", status=RenditionStatus.FAILED, percent=20.0, error="oom"
                ),
            ),
            updated_at=EPOCH + _hours(1),
        )
        progress_store.put_progress(failed)
        assert progress_store.get_progress(1) == failed

    @pytest.mark.parametrize("bad", _BAD_IDS)
    def test_bad_ids_raise_invalid_input(self, progress_store: ProgressStore, bad: object) -> None:
        with pytest.raises(InvalidInputError) as info:
            progress_store.get_progress(bad)  # type: ignore[arg-type]
        assert info.value.field == "video_id"

    def test_anything_but_progress_is_refused(self, progress_store: ProgressStore) -> None:
        with pytest.raises(InvalidInputError) as info:
            progress_store.put_progress(_progress(1).model_dump())  # type: ignore[arg-type]
        assert info.value.field == "progress"
        assert progress_store.get_progress(1) is None


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
        newer = _trending_snapshot(computed_at=EPOCH + _hours(1), items=())
        trending_snapshot_store.put_snapshot(newer)
        assert trending_snapshot_store.latest_snapshot(TrendingKind.HASHTAG, 24.0) == newer

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


class SearchIndexContract:
    """Checks a :class:`~reelrank.SearchIndex`; needs a ``search_index`` fixture."""

    @staticmethod
    def _ids(index: SearchIndex, text: str, *, limit: int = 10) -> list[int]:
        return [video_id for video_id, _ in index.search(parse_query(text), limit=limit)]

    def test_satisfies_the_protocol(self, search_index: SearchIndex) -> None:
        assert isinstance(search_index, SearchIndex)

    def test_an_empty_index_finds_nothing(self, search_index: SearchIndex) -> None:
        assert search_index.search(parse_query("cats"), limit=10) == []

    def test_every_term_must_match(self, search_index: SearchIndex) -> None:
        search_index.index(SearchDocument(video_id=1, title="dance party"))
        search_index.index(SearchDocument(video_id=2, title="dance lesson"))
        search_index.index(SearchDocument(video_id=3, description="cooking"))
        assert sorted(self._ids(search_index, "dance")) == [1, 2]
        assert self._ids(search_index, "dance party") == [1]
        assert self._ids(search_index, "dance cooking") == []

    def test_scores_are_positive_and_ordered(self, search_index: SearchIndex) -> None:
        search_index.index(SearchDocument(video_id=1, title="cat", description="a dog"))
        search_index.index(SearchDocument(video_id=2, title="cat cat cat", hashtags=("cat",)))
        search_index.index(SearchDocument(video_id=3, description="cat"))
        hits = search_index.search(parse_query("cat"), limit=10)
        assert {video_id for video_id, _ in hits} == {1, 2, 3}
        assert all(score > 0.0 for _, score in hits)
        keys = [(-score, video_id) for video_id, score in hits]
        assert keys == sorted(keys)

    def test_ties_go_to_the_lower_id_and_limit_cuts(self, search_index: SearchIndex) -> None:
        for video_id in (9, 4, 6):
            search_index.index(SearchDocument(video_id=video_id, title="same words"))
        hits = search_index.search(parse_query("same"), limit=2)
        assert [video_id for video_id, _ in hits] == [4, 6]
        assert hits[0][1] == hits[1][1]
        assert search_index.search(parse_query("same"), limit=0) == []

    def test_prefix_and_hashtag_terms(self, search_index: SearchIndex) -> None:
        search_index.index(SearchDocument(video_id=1, title="dancing"))
        search_index.index(SearchDocument(video_id=2, hashtags=("dance",)))
        search_index.index(SearchDocument(video_id=3, title="dandelion"))
        assert sorted(self._ids(search_index, "danc*")) == [1, 2]
        assert self._ids(search_index, "#dance") == [2]
        assert self._ids(search_index, "#danc*") == [2]
        assert self._ids(search_index, "danc") == []

    def test_reindexing_replaces_the_document(self, search_index: SearchIndex) -> None:
        search_index.index(SearchDocument(video_id=1, title="cats"))
        search_index.index(SearchDocument(video_id=1, title="dogs"))
        assert self._ids(search_index, "cats") == []
        assert self._ids(search_index, "dogs") == [1]

    def test_remove_drops_the_document(self, search_index: SearchIndex) -> None:
        search_index.index(SearchDocument(video_id=1, title="cats"))
        search_index.index(SearchDocument(video_id=2, title="cats"))
        assert search_index.remove(1) is True
        assert search_index.remove(1) is False
        assert search_index.remove(404) is False
        assert self._ids(search_index, "cats") == [2]

    def test_bad_arguments_raise_and_write_nothing(self, search_index: SearchIndex) -> None:
        with pytest.raises(InvalidInputError) as info:
            search_index.index({"video_id": 1, "title": "cats"})  # type: ignore[arg-type]
        assert info.value.field == "document"
        assert search_index.search(parse_query("cats"), limit=10) == []
        for bad in _BAD_IDS:
            with pytest.raises(InvalidInputError) as info:
                search_index.remove(bad)  # type: ignore[arg-type]
            assert info.value.field == "video_id"
        for bad_limit in (-1, 1.5, True, None):
            with pytest.raises(InvalidInputError) as info:
                search_index.search(parse_query("cats"), limit=bad_limit)  # type: ignore[arg-type]
            assert info.value.field == "limit"
