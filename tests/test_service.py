from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import numpy as np
import pytest

from reelrank import (
    WEIGHT_FIELDS,
    ConfigError,
    CursorError,
    FeedPage,
    FeedUnavailableError,
    InvalidInputError,
    RankingConfig,
    StoreTimeoutError,
)
from reelrank.feed import (
    BreakerState,
    EngagementRecorder,
    FeedRankingService,
    FeedServiceConfig,
    StoreDeadlines,
)
from reelrank.scoring import DiversityRule
from reelrank.stores import (
    AtomicSeenStore,
    InMemoryCatalog,
    InMemoryEventStore,
    InMemoryFeedCache,
    InMemoryModelRegistry,
    InMemorySeenStore,
    LRUFeedCache,
    TieredFeedCache,
)
from reelrank.testing import EPOCH, FaultInjector, ManualClock, make_creator, make_model, make_video

START = EPOCH + timedelta(days=2)
_BULK_READS = frozenset({"followed_videos_many", "get_affinities_many", "recently_seen_many"})


class _SingleUserReads:
    """A store without the bulk reads of many users (a store written before them)."""

    def __init__(self, store: object) -> None:
        self._store = store

    def __getattr__(self, attribute: str) -> Any:
        if attribute in _BULK_READS:
            raise AttributeError(attribute)
        return getattr(self._store, attribute)


@dataclass
class World:
    clock: ManualClock
    catalog: FaultInjector[InMemoryCatalog]
    events: FaultInjector[InMemoryEventStore]
    seen: FaultInjector[InMemorySeenStore]
    shared: FaultInjector[InMemoryFeedCache]
    local: LRUFeedCache
    cache: TieredFeedCache
    service: FeedRankingService

    def recorder(self) -> EngagementRecorder:
        return EngagementRecorder(self.catalog.store, self.events.store, now=self.clock.now)

    def ids(self, page: FeedPage) -> list[int]:
        return [item.video_id for item in page.items]

    def pages(self, user: int, limit: int, count: int) -> list[FeedPage]:
        result = [self.service.feed(user, limit)]
        for _ in range(count - 1):
            cursor = result[-1].next_cursor
            assert cursor is not None
            result.append(self.service.feed(user, limit, cursor))
        return result


@pytest.fixture
def make_world() -> Iterator[Any]:
    services: list[FeedRankingService] = []

    def build(
        *,
        videos: int = 60,
        creators: int = 6,
        ranking: RankingConfig | None = None,
        single_user_reads: bool = False,
        **config: Any,
    ) -> World:
        clock = ManualClock(START)
        catalog = InMemoryCatalog()
        for creator in range(1, creators + 1):
            catalog.put_creator(make_creator(creator))
        for video in range(1, videos + 1):
            catalog.put_video(
                make_video(
                    video,
                    1 + video % creators,
                    published_at=START - timedelta(minutes=5 * video),
                    sound_id=100 + video % 4,
                )
            )
        local = LRUFeedCache(clock=clock.monotonic)
        shared = FaultInjector(InMemoryFeedCache(clock=clock.monotonic), name="cache")
        cache = TieredFeedCache(local, shared.proxy)
        stores: list[Any] = [catalog, InMemoryEventStore(), InMemorySeenStore()]
        if single_user_reads:
            stores = [_SingleUserReads(store) for store in stores]
        world_catalog = FaultInjector(cast(InMemoryCatalog, stores[0]), name="catalog")
        events = FaultInjector(cast(InMemoryEventStore, stores[1]), name="events")
        seen = FaultInjector(cast(InMemorySeenStore, stores[2]), name="seen")
        config.setdefault("cursor_secret", "a-test-secret-of-some-length")
        config.setdefault("refresh_pool_in_background", False)
        # Faults injected here fail at once unless a test stalls a store, and those tests
        # set their own deadlines; generous defaults keep a busy machine's scheduling
        # delays from turning into spurious timeouts.
        config.setdefault(
            "deadlines", StoreDeadlines(catalog=30, events=30, seen=30, models=30, cache=30)
        )
        service = FeedRankingService(
            catalog=world_catalog.proxy,
            events=events.proxy,
            seen=seen.proxy,
            cache=cache,
            config=FeedServiceConfig(**config),
            ranking=ranking,
            clock=clock.now,
            monotonic=clock.monotonic,
        )
        services.append(service)
        return World(clock, world_catalog, events, seen, shared, local, cache, service)

    yield build
    for service in services:
        service.close()


def test_first_page_is_ranked_and_explained(make_world: Any) -> None:
    world: World = make_world()
    page = world.service.feed(1, 10)
    assert len(page.items) == 10
    assert not page.from_cache
    assert page.degraded == ()
    assert page.variant is None
    assert page.next_cursor is not None
    for item in page.items:
        assert set(item.breakdown) == set(WEIGHT_FIELDS)
        assert math.isclose(sum(item.breakdown.values()), item.score, rel_tol=1e-5, abs_tol=1e-6)
    assert isinstance(FeedPage.model_validate(page.model_dump()), FeedPage)


def test_pages_continue_without_duplicates_or_gaps(make_world: Any) -> None:
    world: World = make_world()
    pages = world.pages(1, 7, 5)
    assert [p.from_cache for p in pages] == [False, True, True, True, True]
    served = [vid for page in pages for vid in world.ids(page)]
    snapshot = world.local.get(1)
    assert snapshot is not None
    assert served == list(snapshot.video_ids[:35])


def test_serving_marks_items_seen(make_world: Any) -> None:
    world: World = make_world()
    page = world.service.feed(1, 5)
    seen = world.seen.store.recently_seen(1, since=START - timedelta(days=1), limit=100)
    assert sorted(seen) == sorted(world.ids(page))


def test_first_page_again_skips_what_was_served(make_world: Any) -> None:
    world: World = make_world()
    first = world.service.feed(1, 8)
    again = world.service.feed(1, 8)
    assert again.from_cache
    assert not set(world.ids(first)) & set(world.ids(again))


def test_paging_is_stable_while_scores_change(make_world: Any) -> None:
    world: World = make_world()
    first = world.service.feed(1, 5)
    snapshot = world.local.get(1)
    assert snapshot is not None
    recorder = world.recorder()
    # Heavy engagement with the items near the end of the snapshot would move them up.
    for number, vid in enumerate(snapshot.video_ids[-10:]):
        for k in range(5):
            recorder.share(2, vid, event_id=f"s-{number}-{k}", channel="link")
    world.clock.advance(60)
    world.service.refresh_candidates()
    second = world.service.feed(1, 5, first.next_cursor)
    assert world.ids(first) + world.ids(second) == list(snapshot.video_ids[:10])


def test_a_replaced_snapshot_continues_without_duplicates(make_world: Any) -> None:
    world: World = make_world()
    first = world.service.feed(1, 6)
    assert world.service.invalidate(1) == 1
    world.clock.advance(1)
    second = world.service.feed(1, 6, first.next_cursor)
    assert not second.from_cache
    assert len(second.items) == 6
    assert not set(world.ids(first)) & set(world.ids(second))


def test_a_stale_cursor_continues_from_the_top_of_the_current_snapshot(
    make_world: Any,
) -> None:
    world: World = make_world()
    on_phone = world.service.feed(1, 6)
    world.service.invalidate(1)
    world.clock.advance(1)
    # Another device ranks and pages the replacing snapshot first.
    on_tablet = world.service.feed(1, 2)
    current = world.local.get(1)
    assert current is not None and not on_tablet.from_cache
    # The phone's cursor points 6 items into the replaced snapshot. In the current one
    # its page starts at the top, and the seen filter skips the tablet's 2 items;
    # applying the offset 6 here would pass over 4 unseen videos.
    resumed = world.service.feed(1, 5, on_phone.next_cursor)
    assert resumed.from_cache
    assert world.ids(on_tablet) == list(current.video_ids[:2])
    assert world.ids(resumed) == list(current.video_ids[2:7])
    assert not set(world.ids(on_phone)) & set(current.video_ids)


def test_seen_videos_never_appear_within_the_window(make_world: Any) -> None:
    world: World = make_world(videos=20)
    world.seen.store.mark_seen(1, [1, 2, 3, 4, 5], START - timedelta(days=29))
    served = [vid for page in world.pages(1, 5, 3) for vid in world.ids(page)]
    assert not set(served) & {1, 2, 3, 4, 5}


def test_seen_window_expires(make_world: Any) -> None:
    world: World = make_world(videos=10, ranking=RankingConfig(seen_window_days=1))
    world.seen.store.mark_seen(1, [3], START - timedelta(days=2))
    served = world.ids(world.service.feed(1, 10))
    assert 3 in served


def test_last_page_has_no_cursor_and_feed_then_runs_dry(make_world: Any) -> None:
    world: World = make_world(videos=12)
    pages = world.pages(1, 5, 3)
    assert [len(p.items) for p in pages] == [5, 5, 2]
    assert pages[-1].next_cursor is None
    assert world.service.feed(1, 5).items == ()


def test_used_up_full_snapshot_continues_with_a_fresh_one(make_world: Any) -> None:
    world: World = make_world(videos=30, snapshot_size=10)
    pages = world.pages(1, 5, 4)
    served = [vid for page in pages for vid in world.ids(page)]
    assert len(served) == len(set(served)) == 20
    assert [p.from_cache for p in pages] == [False, True, False, True]


def test_snapshot_expires_after_its_ttl(make_world: Any) -> None:
    world: World = make_world(snapshot_ttl_seconds=3600)
    world.service.feed(1, 5)
    world.clock.advance(3599)
    assert world.service.feed(1, 5).from_cache
    world.clock.advance(2)
    assert not world.service.feed(1, 5).from_cache


def test_a_new_ranking_config_does_not_reuse_old_snapshots(make_world: Any) -> None:
    world: World = make_world()
    world.service.feed(1, 5)
    world.service.ranking = RankingConfig(freshness=0.55, completion=0.0)
    assert not world.service.feed(1, 5).from_cache


@pytest.mark.parametrize("limit", [0, -1, 101, True, 2.0, "5"])
def test_bad_limit_names_the_field(make_world: Any, limit: Any) -> None:
    world: World = make_world()
    with pytest.raises(InvalidInputError) as info:
        world.service.feed(1, limit)
    assert info.value.field == "limit"
    assert world.seen.calls["mark_seen"] == 0


def test_limit_is_capped_by_the_ranking_config(make_world: Any) -> None:
    world: World = make_world(ranking=RankingConfig(max_page_size=3))
    assert len(world.service.feed(1, 3).items) == 3
    with pytest.raises(InvalidInputError):
        world.service.feed(1, 4)


@pytest.mark.parametrize("user", [0, -3, 2**63, "1", 1.0])
def test_bad_user_id_names_the_field(make_world: Any, user: Any) -> None:
    world: World = make_world()
    with pytest.raises(InvalidInputError) as info:
        world.service.feed(user, 5)
    assert info.value.field == "user_id"


def test_forged_foreign_and_expired_cursors_are_rejected(make_world: Any) -> None:
    world: World = make_world(cursor_max_age_seconds=600)
    cursor = world.service.feed(1, 5).next_cursor
    assert cursor is not None
    payload, mac = cursor.split(".")
    with pytest.raises(CursorError):
        world.service.feed(1, 5, payload + "." + mac[::-1])
    with pytest.raises(CursorError, match="another user"):
        world.service.feed(2, 5, cursor)
    world.clock.advance(601)
    with pytest.raises(CursorError, match="expired"):
        world.service.feed(1, 5, cursor)


def test_cursor_from_a_service_with_another_secret_is_rejected(make_world: Any) -> None:
    one: World = make_world(cursor_secret="first-secret-0123456789")
    two: World = make_world(cursor_secret="second-secret-0123456789")
    cursor = one.service.feed(1, 5).next_cursor
    with pytest.raises(CursorError, match="signature"):
        two.service.feed(1, 5, cursor)


def test_a_retried_cursor_gets_the_same_page_and_the_next_one_follows(make_world: Any) -> None:
    world: World = make_world()
    first = world.service.feed(1, 5)
    second = world.service.feed(1, 5, first.next_cursor)
    world.clock.advance(30)
    retried = world.service.feed(1, 5, first.next_cursor)
    assert world.ids(retried) == world.ids(second)
    assert retried.items == second.items
    assert retried.from_cache
    assert world.service.stats().pages_replayed == 1
    # Either cursor of the page continues at the same place.
    assert retried.next_cursor is not None and second.next_cursor is not None
    third = world.service.feed(1, 5, retried.next_cursor)
    also_third = world.service.feed(1, 5, second.next_cursor)
    assert world.ids(third) == world.ids(also_third)
    snapshot = world.local.get(1)
    assert snapshot is not None
    served = world.ids(first) + world.ids(second) + world.ids(third)
    assert served == list(snapshot.video_ids[:15])


def test_a_retried_cursor_with_another_page_size_is_a_new_request(make_world: Any) -> None:
    world: World = make_world()
    first = world.service.feed(1, 5)
    second = world.service.feed(1, 5, first.next_cursor)
    bigger = world.service.feed(1, 8, first.next_cursor)
    assert len(bigger.items) == 8
    assert not set(world.ids(bigger)) & set(world.ids(first) + world.ids(second))


def test_a_retried_first_request_is_a_new_request(make_world: Any) -> None:
    world: World = make_world()
    first = world.service.feed(1, 5)
    again = world.service.feed(1, 5)
    assert not set(world.ids(first)) & set(world.ids(again))
    assert world.service.stats().pages_replayed == 0


def test_a_retried_cursor_is_cut_afresh_once_its_page_is_forgotten(make_world: Any) -> None:
    world: World = make_world(snapshot_ttl_seconds=300)
    first = world.service.feed(1, 5)
    second = world.service.feed(1, 5, first.next_cursor)
    world.clock.advance(301)
    later = world.service.feed(1, 5, first.next_cursor)
    assert len(later.items) == 5
    assert not set(world.ids(later)) & set(world.ids(first) + world.ids(second))


def test_a_retry_sent_to_another_worker_gets_the_same_page(make_world: Any) -> None:
    world: World = make_world()
    # A second worker: its own process-local cache level, every shared store the same.
    other = FeedRankingService(
        catalog=world.catalog.proxy,
        events=world.events.proxy,
        seen=world.seen.proxy,
        cache=TieredFeedCache(LRUFeedCache(clock=world.clock.monotonic), world.shared.proxy),
        config=world.service.config,
        clock=world.clock.now,
        monotonic=world.clock.monotonic,
    )
    with other:
        first = world.service.feed(1, 5)
        second = world.service.feed(1, 5, first.next_cursor)
        retried = other.feed(1, 5, first.next_cursor)
        assert retried.items == second.items
        assert retried.next_cursor is not None
        third = other.feed(1, 5, retried.next_cursor)
        # And back: the first worker remembers the page the second one cut.
        assert world.service.feed(1, 5, retried.next_cursor).items == third.items
    served = world.ids(first) + world.ids(second) + world.ids(third)
    assert len(set(served)) == 15


def test_a_retry_while_the_shared_cache_fails_never_repeats_another_page(
    make_world: Any,
) -> None:
    world: World = make_world()
    other = FeedRankingService(
        catalog=world.catalog.proxy,
        events=world.events.proxy,
        seen=world.seen.proxy,
        cache=TieredFeedCache(LRUFeedCache(clock=world.clock.monotonic), world.shared.proxy),
        config=world.service.config,
        clock=world.clock.now,
        monotonic=world.clock.monotonic,
    )
    with other:
        first = world.service.feed(1, 5)
        world.shared.fail()
        second = world.service.feed(1, 5, first.next_cursor)
        # This worker still remembers the page; the other one cannot and cuts a new one.
        assert world.service.feed(1, 5, first.next_cursor).items == second.items
        elsewhere = other.feed(1, 5, first.next_cursor)
    assert not set(world.ids(elsewhere)) & set(world.ids(first) + world.ids(second))
    assert "cache" in {entry.dependency for entry in elsewhere.degraded}


def test_diversity_rule_limits_runs_of_one_creator(make_world: Any) -> None:
    world: World = make_world(videos=40, creators=2, diversity=DiversityRule(max_creator_run=1))
    # Make creator 1's videos much better so that, undiversified, they would come first.
    recorder = world.recorder()
    for vid in range(2, 41, 2):
        recorder.share(9, vid, event_id=f"share-{vid}", channel="link")
        recorder.watch(9, vid, event_id=f"watch-{vid}", completion=1.0)
    world.service.refresh_candidates()
    page = world.service.feed(1, 20)
    creators = [1 + vid % 2 for vid in world.ids(page)]
    assert all(a != b for a, b in itertools.pairwise(creators))


def test_variant_hook_selects_config_and_cache_key(make_world: Any) -> None:
    world: World = make_world()
    treatment = RankingConfig(
        freshness=1.0, completion=0.0, engagement=0.0, affinity=0.0, deep_learning=0.0
    )
    service = FeedRankingService(
        catalog=world.catalog.proxy,
        events=world.events.proxy,
        seen=world.seen.proxy,
        cache=world.cache,
        assign_variant=lambda user: ("fresh", treatment) if user % 2 else (None, RankingConfig()),
        clock=world.clock.now,
        monotonic=world.clock.monotonic,
    )
    with service:
        page = service.feed(3, 5)
        assert page.variant == "fresh"
        assert world.local.get(3, "fresh") is not None
        assert world.local.get(3) is None
        for item in page.items:
            assert item.breakdown["completion"] == 0.0
        assert service.feed(4, 5).variant is None


def test_events_change_later_feeds_and_refresh_does_not_reserve(make_world: Any) -> None:
    world: World = make_world(videos=60, creators=6)
    first = world.service.feed(1, 5)
    recorder = world.recorder()
    # User 1 engages heavily with creator 3: after a refresh, creator 3 should lead.
    creator_three = [vid for vid in range(1, 61) if 1 + vid % 6 == 3]
    for vid in creator_three:
        recorder.like(1, vid, event_id=f"like-{vid}")
        recorder.watch(1, vid, event_id=f"watch-{vid}", completion=1.0)
    world.service.invalidate(1)
    world.service.refresh_candidates()
    after = world.service.feed(1, 5)
    assert not set(world.ids(first)) & set(world.ids(after))
    assert 1 + world.ids(after)[0] % 6 == 3
    assert after.items[0].breakdown["affinity"] > 0.0


def test_warm_ranks_many_users_with_bulk_calls(make_world: Any) -> None:
    world: World = make_world()
    world.catalog.store.follow(5, 2)
    assert world.service.warm(range(1, 51)) == 50
    assert world.shared.calls["put_many"] == 1
    assert world.catalog.calls["recent_videos"] == 1
    # One call of many users per store, none of one user.
    assert world.catalog.calls["followed_videos_many"] == 1
    assert world.events.calls["get_affinities_many"] == 1
    assert world.seen.calls["recently_seen_many"] == 1
    assert world.catalog.calls["followed_videos"] == 0
    assert world.events.calls["get_affinities"] == 0
    assert world.seen.calls["recently_seen"] == 0
    assert world.service.warm(range(1, 51)) == 0  # already warm
    assert world.service.warm(range(1, 51), force=True) == 50
    pages = [world.service.feed(user, 5) for user in range(1, 51)]
    assert all(page.from_cache for page in pages)


def test_warm_without_bulk_reads_asks_per_user_and_ranks_the_same(make_world: Any) -> None:
    worlds: list[World] = [
        make_world(recent_limit=10),
        make_world(recent_limit=10, single_user_reads=True),
    ]
    for world in worlds:
        world.catalog.store.follow(7, 2)
        world.catalog.store.follow(8, 3)
        world.seen.store.mark_seen(7, [1, 2, 13], START)
        recorder = world.recorder()
        recorder.like(8, 20, event_id="like-20")
        recorder.watch(9, 3, event_id="watch-3", completion=0.5)
        assert world.service.warm(range(1, 11)) == 10
    bulk, per_user = worlds
    assert per_user.catalog.calls["followed_videos"] == 10
    assert per_user.events.calls["get_affinities"] == 10
    assert per_user.seen.calls["recently_seen"] == 10
    for user in range(1, 11):
        expected, snapshot = bulk.local.get(user), per_user.local.get(user)
        assert expected is not None and snapshot is not None
        assert snapshot.video_ids == expected.video_ids
        assert np.array_equal(snapshot.scores, expected.scores)


def test_warm_builds_the_first_pool_under_the_warming_deadline(make_world: Any) -> None:
    # At start-up the first pool is built by warm(), a batch job: a catalog slower than a
    # request's deadline (workers starting together on one SQLite file, on a loaded
    # machine) must not leave the process unwarmed.
    world: World = make_world(
        deadlines=StoreDeadlines(catalog=0.05, events=0.05, seen=30, models=30, cache=30),
        warm_deadline_seconds=30,
    )
    world.catalog.stall(0.3, methods=["recent_videos", "get_videos"])
    world.events.stall(0.3, methods=["stats_columns", "popular_video_ids"])
    try:
        assert world.service.warm(range(1, 4)) == 3
    finally:
        world.catalog.recover()
        world.events.recover()
    pool = world.service._candidates.current
    assert pool is not None and pool.degraded == ()
    assert world.service.stats().dependencies["catalog"].timeouts == 0


def test_warm_snapshots_match_the_request_path(make_world: Any) -> None:
    # A small pool (recent_limit) so followed videos are extras outside it, and
    # users following different creators, with different histories.
    world: World = make_world(videos=60, recent_limit=10, popular_limit=0)
    follows = {7: [2], 8: [3, 4], 9: []}
    for user, creators in follows.items():
        for creator in creators:
            world.catalog.store.follow(user, creator)
    world.seen.store.mark_seen(7, [1, 2, 13], START)
    world.seen.store.mark_seen(8, [4, 15, 22], START)
    assert world.service.warm(follows) == 3
    warmed = {user: world.local.get(user) for user in follows}
    for user in follows:
        world.service.invalidate(user)
        world.service.feed(user, 1)
        ranked = world.local.get(user)
        expected = warmed[user]
        assert expected is not None and ranked is not None
        assert expected.video_ids == ranked.video_ids
        assert np.allclose(expected.scores, ranked.scores, atol=1e-6)
    seven, eight = warmed[7], warmed[8]
    assert seven is not None and eight is not None
    assert not {1, 2, 13} & set(seven.video_ids)
    # 19 (creator 2) and 20 (creator 3) are outside the pool: each only reaches its follower.
    assert 19 in seven.video_ids and 20 not in seven.video_ids
    assert 20 in eight.video_ids and 19 not in eight.video_ids


def test_stats_count_pages_and_cache_levels(make_world: Any) -> None:
    world: World = make_world()
    world.pages(1, 5, 3)
    world.service.feed(2, 5)
    stats = world.service.stats()
    assert (stats.pages, stats.pages_from_cache, stats.snapshots_ranked) == (4, 2, 2)
    local, shared = stats.cache_levels
    assert (local.hits, local.misses) == (2, 2)
    assert (shared.hits, shared.misses) == (0, 2)
    assert stats.dependencies["catalog"].calls >= 1


def test_bad_service_config_names_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        FeedServiceConfig(snapshot_size=0)
    assert info.value.field == "snapshot_size"
    with pytest.raises(ConfigError) as info:
        FeedServiceConfig(cursor_secret="short")
    assert info.value.field == "cursor_secret"
    with pytest.raises(ConfigError) as info:
        FeedServiceConfig(deadlines={"seen": 0})
    assert info.value.field == "deadlines.seen"
    with pytest.raises(ConfigError) as info:
        FeedServiceConfig(diversity={"max_creator_run": 0})
    assert info.value.field == "diversity.max_creator_run"
    with pytest.raises(ConfigError):
        FeedServiceConfig(snapshot_tll_seconds=5)


# -- degradation -----------------------------------------------------------------------


def fallbacks(page: FeedPage) -> dict[str, str]:
    return {entry.dependency: entry.fallback for entry in page.degraded}


def test_cache_failure_ranks_without_it(make_world: Any) -> None:
    world: World = make_world()
    world.shared.fail()
    page = world.service.feed(1, 5)
    assert len(page.items) == 5
    assert "cache" in fallbacks(page)
    # The in-process level still took the snapshot, so the next page is a hit.
    assert world.service.feed(1, 5, page.next_cursor).from_cache


def test_stats_failure_renormalises_the_remaining_weights(make_world: Any) -> None:
    world: World = make_world()
    world.events.fail(methods=["stats_columns"])
    page = world.service.feed(1, 5)
    assert fallbacks(page)["stats"] == "ranked without completion and engagement"
    for item in page.items:
        assert item.breakdown["completion"] == 0.0
        assert item.breakdown["engagement"] == 0.0
        assert math.isclose(sum(item.breakdown.values()), item.score, rel_tol=1e-5)
    # Freshness, affinity and model weights renormalised: 0.15 / 0.35 of the mass.
    assert max(item.breakdown["freshness"] for item in page.items) > 0.15


def test_stats_failure_later_uses_last_known_stats(make_world: Any) -> None:
    world: World = make_world()
    world.service.feed(1, 5)
    world.events.fail(methods=["stats_columns"])
    world.clock.advance(11)
    page = world.service.feed(2, 5)
    assert fallbacks(page)["stats"] == "last known stats"
    assert any(item.breakdown["completion"] > 0.0 for item in page.items)


def test_affinity_failure_is_reported(make_world: Any) -> None:
    world: World = make_world()
    world.events.fail(methods=["get_affinities"])
    page = world.service.feed(1, 5)
    assert fallbacks(page)["affinity"] == "ranked without affinity"
    assert all(item.breakdown["affinity"] == 0.0 for item in page.items)


def test_catalog_failure_without_a_snapshot_is_unavailable(make_world: Any) -> None:
    world: World = make_world()
    world.catalog.fail()
    with pytest.raises(FeedUnavailableError):
        world.service.feed(1, 5)


def test_catalog_failure_serves_the_cached_snapshot(make_world: Any) -> None:
    world: World = make_world()
    world.service.feed(1, 5)
    world.catalog.fail()
    world.service.ranking = RankingConfig(freshness=0.55, completion=0.0)
    page = world.service.feed(1, 5)
    assert page.from_cache
    assert fallbacks(page)["catalog"] == "cached snapshot"
    assert len(page.items) == 5


def test_catalog_failure_reuses_the_last_candidate_pool(make_world: Any) -> None:
    world: World = make_world()
    world.service.feed(1, 5)
    world.catalog.fail()
    world.clock.advance(11)
    page = world.service.feed(2, 5)
    assert fallbacks(page)["catalog"] in {
        "last known candidates",
        "without followed creators' videos",
    }
    assert {e.fallback for e in page.degraded if e.dependency == "catalog"} == {
        "last known candidates",
        "without followed creators' videos",
    }
    assert len(page.items) == 5


def test_catalog_failure_with_a_used_up_snapshot_ranks_from_the_last_pool(
    make_world: Any,
) -> None:
    world: World = make_world(videos=40, snapshot_size=5)
    world.service.feed(1, 5)
    world.catalog.fail()
    page = world.service.feed(1, 5)
    assert not page.from_cache
    assert len(page.items) == 5
    assert "catalog" in fallbacks(page)


def test_seen_failure_still_serves_and_reports(make_world: Any) -> None:
    world: World = make_world()
    world.seen.fail()
    page = world.service.feed(1, 5)
    assert len(page.items) == 5
    assert fallbacks(page)["seen"] in {
        "not filtered by watch history",
        "served items not recorded as seen",
    }
    assert {entry.fallback for entry in page.degraded if entry.dependency == "seen"} == {
        "not filtered by watch history",
        "served items not recorded as seen",
    }


def test_degraded_snapshot_is_cached_briefly(make_world: Any) -> None:
    world: World = make_world(degraded_snapshot_ttl_seconds=30)
    world.events.fail(methods=["get_affinities"])
    world.service.feed(1, 5)
    world.events.recover()
    world.clock.advance(31)
    page = world.service.feed(1, 5)
    assert not page.from_cache
    assert page.degraded == ()


@pytest.mark.parametrize(
    ("store", "reported"),
    [
        ("events", {"stats", "affinity", "popular"}),
        ("seen", {"seen"}),
        ("shared", {"cache"}),
        ("catalog", None),
    ],
)
def test_stalled_store_does_not_hang_the_request(
    make_world: Any, store: str, reported: set[str] | None
) -> None:
    deadline = 0.2
    world: World = make_world(
        deadlines=StoreDeadlines(catalog=deadline, events=deadline, seen=deadline, cache=deadline)
    )
    injector: FaultInjector[Any] = getattr(world, store)
    injector.stall(30)
    try:
        started = time.perf_counter()
        if reported is None:
            with pytest.raises(FeedUnavailableError):
                world.service.feed(1, 5)
        else:
            page = world.service.feed(1, 5)
        elapsed = time.perf_counter() - started
    finally:
        injector.recover()
    if reported is not None:
        assert len(page.items) == 5
        assert reported <= set(fallbacks(page))
    # A correctness bound on a hang (up to three stalled calls in a row), not a speed goal.
    assert elapsed < 3 * deadline + 1.0


def test_variant_hook_must_return_a_tag_and_a_config(make_world: Any) -> None:
    world: World = make_world()
    # ``page-`` variants are reserved for the pages remembered for retried cursors.
    for bad in [
        ("not a tag", RankingConfig()),
        ("b", {"freshness": 1.0}),
        ("page-x", RankingConfig()),
    ]:
        service = FeedRankingService(
            catalog=world.catalog.proxy,
            events=world.events.proxy,
            seen=world.seen.proxy,
            assign_variant=lambda user, bad=bad: bad,  # type: ignore[misc]
        )
        with service, pytest.raises(InvalidInputError) as info:
            service.feed(1, 5)
        assert info.value.field == "assign_variant"


def test_stalled_calls_are_bounded_by_the_bulkhead(make_world: Any) -> None:
    world: World = make_world(
        deadlines=StoreDeadlines(seen=0.05), max_stalled_calls=2, breaker_failure_threshold=100
    )
    world.service.feed(1, 5)
    world.seen.stall(30)
    try:
        for _ in range(4):
            world.service.feed(1, 5)
        stats = world.service.stats().dependencies["seen"]
    finally:
        world.seen.recover()
    assert stats.timeouts == 2
    assert stats.rejected >= 1


def test_breaker_opens_stops_calls_and_half_opens_after_the_reset_timeout(
    make_world: Any,
) -> None:
    world: World = make_world(breaker_failure_threshold=2, breaker_reset_timeout_seconds=30)
    world.events.fail(methods=["get_affinities"])
    for user in (1, 2):
        world.service.feed(user, 5)
    assert world.service.breakers["events"].state is BreakerState.OPEN
    calls = world.events.calls["get_affinities"]
    page = world.service.feed(3, 5)
    assert world.events.calls["get_affinities"] == calls, "open circuit must skip the store"
    assert fallbacks(page)["affinity"] == "ranked without affinity"
    world.events.recover()
    world.clock.advance(30)
    assert world.service.breakers["events"].state is BreakerState.HALF_OPEN
    page = world.service.feed(4, 5)
    assert world.events.calls["get_affinities"] == calls + 1
    assert world.service.breakers["events"].state is BreakerState.CLOSED
    assert page.degraded == ()


def test_model_scores_feed_the_deep_learning_signal(make_world: Any) -> None:
    world: World = make_world(model_name="watch-time")
    registry = FaultInjector(InMemoryModelRegistry(), name="models")
    registry.store.register(make_model("watch-time", "v1"))
    registry.store.activate("watch-time", "v1")
    registry.store.put_scores("watch-time", "v1", {vid: 1.0 for vid in range(1, 61)})
    service = FeedRankingService(
        catalog=world.catalog.proxy,
        events=world.events.proxy,
        seen=world.seen.proxy,
        models=registry.proxy,
        config=FeedServiceConfig(model_name="watch-time"),
        clock=world.clock.now,
        monotonic=world.clock.monotonic,
    )
    with service:
        page = service.feed(1, 5)
        assert all(
            math.isclose(item.breakdown["deep_learning"], 0.05, rel_tol=1e-5) for item in page.items
        )
        registry.fail()
        service.refresh_candidates()
        page = service.feed(2, 5)
        assert fallbacks(page)["models"] == "ranked without model scores"
        assert all(item.breakdown["deep_learning"] == 0.0 for item in page.items)


def test_embedded_stores_serve_the_same_pages_inline_or_on_workers() -> None:
    served: dict[bool, list[int]] = {}
    for inline in (True, False):
        clock = ManualClock(START)
        catalog = InMemoryCatalog()
        catalog.put_creator(make_creator(1))
        catalog.put_creator(make_creator(2))
        for video in range(1, 31):
            catalog.put_video(
                make_video(video, 1 + video % 2, published_at=START - timedelta(minutes=video))
            )
        seen = InMemorySeenStore()
        config = FeedServiceConfig(inline_self_bounded_stores=inline, cursor_secret="x" * 16)
        with FeedRankingService(
            catalog=catalog,
            events=InMemoryEventStore(),
            seen=seen,
            cache=TieredFeedCache(LRUFeedCache(), InMemoryFeedCache()),
            config=config,
            clock=clock.now,
            monotonic=clock.monotonic,
        ) as service:
            first = service.feed(1, 10)
            second = service.feed(1, 10, first.next_cursor)
            assert second.from_cache
            assert service._guards["seen"].inline is inline
            assert service._guards["catalog"].inline is inline
        served[inline] = [item.video_id for item in first.items + second.items]
        assert seen.seen_among(1, list(range(1, 31)), since=START) == set(served[inline])
    assert served[True] == served[False]
    assert len(set(served[True])) == 20


def test_stale_pool_is_refreshed_in_the_background(make_world: Any) -> None:
    world: World = make_world(refresh_pool_in_background=True, deadlines=StoreDeadlines(catalog=60))
    world.service.feed(1, 5)
    first_pool = world.service._candidates.current
    world.recorder().share(2, 40, event_id="late-share", channel="link")
    # The refresh blocks on the catalog until recover(); the request must not wait.
    world.catalog.stall(60, methods=["recent_videos"])
    world.clock.advance(11)
    try:
        started = time.perf_counter()
        page = world.service.feed(2, 5)
        elapsed = time.perf_counter() - started
        assert world.service._candidates.current is first_pool
    finally:
        world.catalog.recover()
    assert len(page.items) == 5
    assert elapsed < 30, "a hang bound: the request waited for the refresh"
    for _ in range(1000):
        if world.service._candidates.current is not first_pool:
            break
        time.sleep(0.01)
    pool = world.service._candidates.current
    assert pool is not None and pool is not first_pool
    assert pool.degraded == ()
    assert pool.columns.counts[3, pool.row_of[40]] == 1.0  # the share made after the first pool


def test_a_background_pool_refresh_waits_past_the_request_deadlines(make_world: Any) -> None:
    # No request waits for a background refresh, so it reads as a batch job: a stats
    # read slower than a request's deadline (a busy machine) still gives a sound pool,
    # instead of one on last known stats that marks every ranking over it degraded.
    world: World = make_world(
        refresh_pool_in_background=True,
        deadlines=StoreDeadlines(catalog=0.05, events=0.05, seen=30, models=30, cache=30),
        warm_deadline_seconds=30,
    )
    world.service.feed(1, 5)
    first_pool = world.service._candidates.current
    world.events.stall(0.3, methods=["stats_columns"])
    world.clock.advance(11)
    try:
        world.service.feed(2, 5)
        for _ in range(1000):
            if world.service._candidates.current is not first_pool:
                break
            time.sleep(0.01)
    finally:
        world.events.recover()
    pool = world.service._candidates.current
    assert pool is not None and pool is not first_pool
    assert pool.degraded == ()
    assert world.service.stats().dependencies["events"].timeouts == 0
    world.service.invalidate(3)
    assert not world.service.feed(3, 5).degraded


def test_close_waits_for_the_background_pool_refresh(make_world: Any) -> None:
    world: World = make_world(
        refresh_pool_in_background=True,
        deadlines=StoreDeadlines(catalog=0.5),
        warm_deadline_seconds=0.5,
    )
    world.service.feed(1, 5)
    # The refresh's catalog read hangs; its deadline (a batch job's, 0.5 s) ends the
    # refresh.
    world.catalog.stall(60, methods=["recent_videos"])
    world.clock.advance(11)
    try:
        world.service.feed(2, 5)
        assert any(thread.name == "reelrank-pool" for thread in threading.enumerate())
        world.service.close()  # waits up to warm_deadline_seconds (10 s)
        assert not any(thread.name == "reelrank-pool" for thread in threading.enumerate())
        world.service.close(timeout=0.1)  # closing again is harmless
    finally:
        world.catalog.recover()


def test_close_waits_for_store_calls_abandoned_past_their_deadline(make_world: Any) -> None:
    earlier = set(threading.enumerate())  # other tests' services may still run theirs
    world: World = make_world(deadlines=StoreDeadlines(catalog=0.05))
    world.service.feed(1, 5)
    # The followed videos' read answers in 0.5 s: the request gives up on it at its
    # deadline and the call goes on on its worker thread.
    world.catalog.stall(0.5, methods=["followed_columns", "followed_videos"])
    world.service.invalidate(2)
    try:
        assert "catalog" in fallbacks(world.service.feed(2, 5))
        assert world.service._guards["catalog"].stalled == 1
        world.service.close(timeout=30)  # a hang bound: waits for the call to return
        assert world.service._guards["catalog"].stalled == 0
        left = set(threading.enumerate()) - earlier
        assert not any(thread.name.startswith("reelrank-store") for thread in left)
    finally:
        world.catalog.recover()


def test_refresh_candidates_keeps_the_old_pool_as_fallback(make_world: Any) -> None:
    world: World = make_world()
    world.service.feed(1, 5)
    world.catalog.fail()
    world.service.refresh_candidates()
    page = world.service.feed(2, 5)
    assert len(page.items) == 5
    assert "catalog" in fallbacks(page)


def test_refresh_candidates_without_any_pool_is_unavailable(make_world: Any) -> None:
    world: World = make_world()
    world.catalog.fail()
    with pytest.raises(FeedUnavailableError):
        world.service.refresh_candidates()


def test_experiment_resolve_plugs_into_the_variant_hook(make_world: Any) -> None:
    from reelrank import Experiment, Variant

    world: World = make_world()
    fresh = RankingConfig(
        freshness=1.0, completion=0.0, engagement=0.0, affinity=0.0, deep_learning=0.0
    )
    experiment = Experiment(
        name="fresh-first",
        salt="fresh-first-1",
        variants=[
            Variant(name="control", share=0.5),
            Variant(name="fresh", share=0.5, config=fresh),
        ],
    )
    with FeedRankingService(
        catalog=world.catalog.proxy,
        events=world.events.proxy,
        seen=world.seen.proxy,
        cache=world.cache,
        assign_variant=experiment.resolve,
        clock=world.clock.now,
        monotonic=world.clock.monotonic,
    ) as service:
        variants = set()
        for user in range(1, 21):
            page = service.feed(user, 3)
            expected = experiment.assign(user).name
            variants.add(page.variant)
            assert page.variant == expected
            assert world.local.get(user, expected) is not None
            if expected == "fresh":
                assert all(item.breakdown["completion"] == 0.0 for item in page.items)
        assert variants == {"control", "fresh"}


@pytest.mark.parametrize("kind", ["none", "lru", "single", "tiered"])
def test_any_cache_shape_serves_and_counts(make_world: Any, kind: str) -> None:
    world: World = make_world()
    cache: Any = {
        "none": None,
        "lru": LRUFeedCache(),
        "single": FaultInjector(InMemoryFeedCache(), name="cache").proxy,
        "tiered": TieredFeedCache(LRUFeedCache(), InMemoryFeedCache()),
    }[kind]
    with FeedRankingService(
        catalog=world.catalog.proxy,
        events=world.events.proxy,
        seen=world.seen.proxy,
        cache=cache,
        clock=world.clock.now,
        monotonic=world.clock.monotonic,
    ) as service:
        first = service.feed(1, 5)
        second = service.feed(1, 5, first.next_cursor)
        stats = service.stats()
    assert not set(world.ids(first)) & set(world.ids(second))
    assert second.from_cache is (kind != "none")
    expected_levels = {"none": 0, "lru": 1, "single": 1, "tiered": 2}[kind]
    assert len(stats.cache_levels) == expected_levels
    if expected_levels:
        assert (stats.cache_levels[0].hits, stats.cache_levels[0].misses) == (1, 1)
    assert stats.pages_from_cache == (0 if kind == "none" else 1)


def test_concurrent_requests_for_different_users_never_repeat_a_video(make_world: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    # Generous deadlines: this is about concurrency, not about slow stores on a busy machine.
    slow = StoreDeadlines(catalog=30, events=30, seen=30, models=30, cache=30)
    world: World = make_world(
        videos=80, snapshot_size=30, refresh_pool_in_background=True, deadlines=slow
    )

    def session(user: int) -> list[int]:
        served: list[int] = []
        page = world.service.feed(user, 4)
        served += world.ids(page)
        for _ in range(12):
            page = world.service.feed(user, 4, page.next_cursor)
            served += world.ids(page)
            if page.next_cursor is None:
                break
        return served

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(session, range(1, 17)))
    for user, served in enumerate(results, start=1):
        assert len(served) == len(set(served)), user
        assert len(served) >= 30
    stats = world.service.stats()
    assert stats.degraded_pages == 0
    assert stats.cache_levels[0].lookups == stats.pages


def test_seen_outage_continues_after_what_this_process_served(make_world: Any) -> None:
    world: World = make_world(videos=40)
    first = world.pages(1, 5, 2)
    served = [vid for page in first for vid in world.ids(page)]
    world.seen.fail()
    # A first page again (no cursor), without the seen store to filter it.
    page = world.service.feed(1, 5)
    assert page.from_cache
    assert fallbacks(page)["seen"] in {
        "snapshot order after what this process served",
        "served items not recorded as seen",
    }
    assert not set(world.ids(page)) & set(served)
    assert len(page.items) == 5


def test_seen_outage_reranking_leaves_out_what_this_process_served(make_world: Any) -> None:
    world: World = make_world(videos=40, snapshot_size=10)
    first = world.pages(1, 5, 2)  # uses the whole snapshot
    served = [vid for page in first for vid in world.ids(page)]
    world.seen.fail()
    page = world.service.feed(1, 5, first[-1].next_cursor)
    assert not page.from_cache
    entries = {entry.fallback for entry in page.degraded if entry.dependency == "seen"}
    assert "filtered by what this process served" in entries
    assert len(page.items) == 5
    assert not set(world.ids(page)) & set(served)


def test_pages_served_while_marking_failed_are_not_served_again(make_world: Any) -> None:
    world: World = make_world(videos=40, snapshot_size=10)
    world.seen.fail(methods=["mark_seen"])
    first = world.pages(1, 5, 2)
    assert "served items not recorded as seen" in {e.fallback for e in first[0].degraded}
    served = [vid for page in first for vid in world.ids(page)]
    world.seen.recover()
    again = world.service.feed(1, 5)  # the used-up snapshot is ranked again
    assert not again.from_cache
    assert again.degraded == ()
    assert len(again.items) == 5
    assert not set(world.ids(again)) & set(served)


def test_empty_catalog_gives_an_empty_last_page(make_world: Any) -> None:
    world: World = make_world(videos=0)
    page = world.service.feed(1, 5)
    assert page.items == ()
    assert page.next_cursor is None
    assert world.service.warm([1, 2, 3], force=True) == 3


def test_followed_videos_alone_feed_the_user(make_world: Any) -> None:
    world: World = make_world(videos=12, creators=3, recent_limit=0, popular_limit=0)
    world.catalog.store.follow(1, 2)
    page = world.service.feed(1, 10)
    assert world.ids(page)
    assert all(1 + vid % 3 == 2 for vid in world.ids(page))
    assert world.service.feed(2, 10).items == ()


class SelfBoundedSeen:
    """A seen store of another package that bounds its own calls (like a client with
    short socket timeouts); it records the thread of every call."""

    bounds_own_calls = True

    def __init__(self, *, bounded: bool = True, timing_out: bool = False) -> None:
        self.inner = InMemorySeenStore()
        self.bounds_own_calls = bounded
        self.timing_out = timing_out
        self.calls: list[tuple[str, threading.Thread]] = []

    def _record(self, method: str) -> None:
        self.calls.append((method, threading.current_thread()))
        if self.timing_out:
            raise StoreTimeoutError("seen", "socket timeout")

    def mark_seen(self, user_id: int, video_ids: Sequence[int], at: datetime) -> None:
        self._record("mark_seen")
        self.inner.mark_seen(user_id, video_ids, at)

    def seen_among(self, user_id: int, video_ids: Sequence[int], *, since: datetime) -> set[int]:
        self._record("seen_among")
        return self.inner.seen_among(user_id, video_ids, since=since)

    def recently_seen(self, user_id: int, *, since: datetime, limit: int) -> list[int]:
        self._record("recently_seen")
        return self.inner.recently_seen(user_id, since=since, limit=limit)


class AtomicSeen(SelfBoundedSeen):
    """Adds take_unseen, built from the reference lookup and write under a lock."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._lock = threading.Lock()

    def take_unseen(
        self,
        user_id: int,
        video_ids: Sequence[int],
        *,
        limit: int,
        since: datetime,
        at: datetime,
    ) -> list[int]:
        self._record("take_unseen")
        with self._lock:
            seen = self.inner.seen_among(user_id, video_ids, since=since)
            taken = [video_id for video_id in video_ids if video_id not in seen][:limit]
            self.inner.mark_seen(user_id, taken, at)
        return taken


def _service_over(seen: Any, **config: Any) -> FeedRankingService:
    catalog = InMemoryCatalog()
    for creator in range(1, 4):
        catalog.put_creator(make_creator(creator))
    for video in range(1, 61):
        catalog.put_video(
            make_video(video, 1 + video % 3, published_at=START - timedelta(minutes=video))
        )
    clock = ManualClock(START)
    return FeedRankingService(
        catalog=catalog,
        events=InMemoryEventStore(),
        seen=seen,
        cache=TieredFeedCache(InMemoryFeedCache(clock=clock.monotonic)),
        config=FeedServiceConfig(cursor_secret="x" * 16, **config),
        clock=clock.now,
        monotonic=clock.monotonic,
    )


def test_a_store_that_bounds_its_own_calls_runs_on_the_request_thread() -> None:
    seen = SelfBoundedSeen()
    with _service_over(seen) as service:
        assert service._guards["seen"].inline
        service.feed(1, 10)
        service.feed(1, 10)
    assert {thread for _, thread in seen.calls} == {threading.current_thread()}


@pytest.mark.parametrize("case", ["unbounded instance", "proxy", "switched off"])
def test_other_stores_run_on_worker_threads(case: str) -> None:
    seen = SelfBoundedSeen(bounded=case != "unbounded instance")
    store: Any = FaultInjector(seen, name="seen").proxy if case == "proxy" else seen
    config = {"inline_self_bounded_stores": case != "switched off"}
    with _service_over(store, **config) as service:
        assert not service._guards["seen"].inline
        service.feed(1, 10)
    assert seen.calls
    assert threading.current_thread() not in {thread for _, thread in seen.calls}


def test_an_atomic_seen_store_cuts_each_cached_page_with_one_call() -> None:
    atomic, plain = AtomicSeen(), SelfBoundedSeen()
    assert isinstance(atomic, AtomicSeenStore) and not isinstance(plain, AtomicSeenStore)
    pages: dict[str, list[list[int]]] = {}
    for name, seen in (("atomic", atomic), ("plain", plain)):
        # Most of the catalog was seen elsewhere: pages need several windows of ids.
        seen.inner.mark_seen(1, list(range(1, 61, 3)) + list(range(2, 40, 3)), START)
        with _service_over(seen) as service:
            first = service.feed(1, 7)
            seen.calls.clear()
            second = service.feed(1, 7, first.next_cursor)
            assert second.from_cache and len(second.items) == 7
            if name == "atomic":
                assert [method for method, _ in seen.calls] == ["take_unseen"]
            third = service.feed(1, 7)  # no cursor: the seen store skips what was served
            pages[name] = [[item.video_id for item in p.items] for p in (first, second, third)]
    assert pages["atomic"] == pages["plain"]
    served = [video_id for page in pages["atomic"] for video_id in page]
    assert len(set(served)) == len(served) == 21
    assert atomic.inner.seen_among(1, served, since=START) == set(served)


def test_a_self_bounded_store_that_times_out_is_asked_once_per_request() -> None:
    seen = SelfBoundedSeen(timing_out=True)
    with _service_over(seen, breaker_failure_threshold=100) as service:
        page = service.feed(1, 10)
        assert len(page.items) == 10
        assert "seen" in fallbacks(page)
        stats = service.stats().dependencies["seen"]
        assert (stats.timeouts, stats.failures) == (1, 0)
        assert stats.rejected >= 1  # later seen calls of the request were skipped
        assert len(seen.calls) == 1
        service.feed(2, 10)
        assert service.stats().dependencies["seen"].timeouts == 2
        assert len(seen.calls) == 2


class SelfBoundedCache:
    """A shared cache level of another package that bounds its own calls."""

    bounds_own_calls = True

    def __init__(self) -> None:
        self.inner = InMemoryFeedCache()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_cache_levels_run_inline_only_if_every_guarded_level_bounds_its_own_calls() -> None:
    shared = SelfBoundedCache()
    unbounded = FaultInjector(InMemoryFeedCache(), name="cache").proxy
    cases = {
        "lru over a self-bounded level": (TieredFeedCache(LRUFeedCache(), shared), True),
        "a self-bounded level alone": (shared, True),
        "one level that does not": (TieredFeedCache(LRUFeedCache(), shared, unbounded), False),
    }
    for name, (cache, inline) in cases.items():
        with FeedRankingService(
            catalog=InMemoryCatalog(),
            events=InMemoryEventStore(),
            seen=InMemorySeenStore(),
            cache=cache,  # type: ignore[arg-type]
            config=FeedServiceConfig(cursor_secret="x" * 16),
        ) as service:
            assert service._guards["cache"].inline is inline, name
