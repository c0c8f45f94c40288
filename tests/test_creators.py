"""Creator recommendations: co-engagement, content affinity, quality and cold start."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reelrank import (
    ConfigError,
    CreatorRecommender,
    CreatorRecommenderConfig,
    EngagementEvent,
    InMemoryCatalog,
    InMemoryEngagementLog,
    InMemoryEventStore,
    InvalidInputError,
    VideoStats,
    video_quality,
)
from reelrank.testing import EPOCH, make_creator, make_event, make_video

NOW = EPOCH + timedelta(days=10)


class World:
    """A catalog, an event store and a log fed together, like an application does."""

    def __init__(self, creators: range = range(1, 8)) -> None:
        self.catalog = InMemoryCatalog()
        self.events = InMemoryEventStore()
        self.log = InMemoryEngagementLog()
        for creator_id in creators:
            self.catalog.put_creator(make_creator(creator_id))
        self.recommender = CreatorRecommender(self.catalog, self.events, self.log)

    def video(self, video_id: int, creator_id: int, **fields: object) -> None:
        self.catalog.put_video(
            make_video(video_id, creator_id, published_at=NOW - timedelta(days=1), **fields)
        )

    def engage(self, user_id: int, video_id: int, kind: str = "watch", **fields: object) -> None:
        event: EngagementEvent = make_event(
            kind,
            user_id=user_id,
            video_id=video_id,
            occurred_at=NOW - timedelta(hours=1),
            **fields,
        )
        creator_id = self.catalog.get_video(video_id).creator_id
        self.events.append(event, creator_id=creator_id)
        self.log.record(event)


def test_co_engagement_follows_the_documented_formula() -> None:
    world = World()
    world.video(1, 1)
    world.video(2, 2)
    world.video(3, 3)
    # User 100 watches creator 1. Users 200 and 201 also watch 1; 200 watches 2, both 3.
    world.engage(100, 1)
    for other in (200, 201):
        world.engage(other, 1)
        world.engage(other, 3)
    world.engage(200, 2)
    results = {r.creator_id: r for r in world.recommender.recommend(100, now=NOW)}
    # Audiences without user 100: U1 = {200, 201}, U2 = {200}, U3 = {200, 201}.
    assert results[3].co_engagement == pytest.approx(2 / math.sqrt(2 * 2))
    assert results[2].co_engagement == pytest.approx(1 / math.sqrt(2 * 1))
    config = world.recommender.config
    for result in results.values():
        assert result.score == pytest.approx(
            config.co_engagement_weight * result.co_engagement
            + config.content_weight * result.content_affinity
            + config.quality_weight * result.quality
        )
    assert results[3].score > results[2].score


def test_content_affinity_is_the_cosine_of_sound_and_hashtag_profiles() -> None:
    world = World()
    world.video(1, 1, sound_id=9, hashtags=("dance",))
    world.video(2, 2, sound_id=9, hashtags=("dance",))
    world.video(3, 3, hashtags=("dance", "cook"))
    world.video(4, 4, hashtags=("cook",))
    world.engage(100, 1)
    results = {r.creator_id: r for r in world.recommender.recommend(100, now=NOW)}
    assert results[2].content_affinity == pytest.approx(1.0)
    assert results[3].content_affinity == pytest.approx(1 / 2)
    assert 4 not in results  # nothing shared, no co-engagement


def test_quality_pools_the_creators_videos() -> None:
    world = World()
    world.video(1, 1, hashtags=("x",))
    world.video(2, 2, hashtags=("x",))
    world.video(3, 2, hashtags=("y",))
    world.engage(100, 1)
    world.engage(300, 2, completion=0.5)
    world.engage(301, 3, completion=1.0)
    world.engage(301, 3, "like")
    (result,) = [r for r in world.recommender.recommend(100, now=NOW) if r.creator_id == 2]
    pooled = VideoStats(video_id=2, views=2, completion_sum=1.5, likes=1)
    assert result.quality == pytest.approx(video_quality(pooled))


def test_self_followed_and_blocked_creators_are_left_out() -> None:
    world = World(range(1, 200))
    for creator_id in range(1, 6):
        world.video(creator_id, creator_id, hashtags=("same",))
    world.catalog.put_creator(make_creator(100))
    world.video(100, 100, hashtags=("same",))
    world.engage(100, 1)
    world.catalog.follow(100, 2)
    got = [r.creator_id for r in world.recommender.recommend(100, now=NOW, blocked=[3])]
    assert sorted(got) == [1, 4, 5]


def test_cold_start_recommends_popular_creators() -> None:
    world = World()
    world.video(1, 1)
    world.video(2, 2)
    world.video(3, 3)
    for user in range(10, 14):
        world.engage(user, 1)
    world.engage(20, 2)
    results = world.recommender.recommend(999, now=NOW, blocked=[3])
    assert [r.creator_id for r in results] == [1, 2]
    assert all(r.cold_start for r in results)
    assert results[0].popularity == 1.0
    assert results[1].popularity == pytest.approx(1 / 4)
    weight = world.recommender.config.cold_start_popularity_weight
    for result in results:
        assert result.score == pytest.approx(
            weight * result.popularity + (1 - weight) * result.quality
        )


def test_old_engagement_is_outside_the_lookback() -> None:
    world = World()
    world.video(1, 1, hashtags=("x",))
    world.video(2, 2, hashtags=("x",))
    world.engage(50, 2)
    event = make_event(user_id=100, video_id=1, occurred_at=NOW - timedelta(days=60))
    world.events.append(event, creator_id=1)
    world.log.record(event)
    results = world.recommender.recommend(100, now=NOW)
    assert results and all(r.cold_start for r in results)


@settings(max_examples=40, deadline=None)
@given(
    engagements=st.lists(st.tuples(st.integers(1, 6), st.integers(1, 12)), min_size=1, max_size=40),
    follows=st.sets(st.integers(1, 6)),
    blocked=st.sets(st.integers(1, 6)),
)
def test_recommendations_are_sorted_unique_and_respect_exclusions(
    engagements: list[tuple[int, int]], follows: set[int], blocked: set[int]
) -> None:
    world = World()
    for video_id in range(1, 13):
        world.video(video_id, (video_id % 6) + 1, hashtags=(f"t{video_id % 3}",))
    for user_id, video_id in engagements:
        world.engage(user_id, video_id)
    for creator_id in follows:
        world.catalog.follow(1, creator_id)
    results = world.recommender.recommend(1, now=NOW, blocked=blocked)
    ids = [r.creator_id for r in results]
    assert len(ids) == len(set(ids))
    assert not set(ids) & (follows | blocked | {1})
    keys = [(-r.score, r.creator_id) for r in results]
    assert keys == sorted(keys)
    assert all(0.0 <= r.score <= 1.0 for r in results)


def test_bad_arguments_name_the_field() -> None:
    recommender = World().recommender
    for kwargs, field in (
        ({"user_id": 0}, "user_id"),
        ({"limit": -1}, "limit"),
        ({"limit": 10_000}, "limit"),
        ({"blocked": [0]}, "blocked"),
        ({"blocked": 5}, "blocked"),
        ({"blocked": "12"}, "blocked"),
        ({"now": NOW.replace(tzinfo=None)}, "now"),
    ):
        arguments: dict[str, object] = {"user_id": 1, "now": NOW, **kwargs}
        with pytest.raises(InvalidInputError) as caught:
            recommender.recommend(**arguments)  # type: ignore[arg-type]
        assert caught.value.field == field


def test_weights_must_sum_to_one() -> None:
    with pytest.raises(ConfigError) as caught:
        CreatorRecommenderConfig(quality_weight=0.5)
    assert caught.value.field == "weights"


def test_audience_graph_is_reused_until_the_refresh_interval_passes() -> None:
    world = World()
    for video_id in (1, 2, 3):
        world.video(video_id, video_id)
    world.engage(100, 1)
    world.engage(200, 1)
    world.engage(200, 2)
    assert [r.creator_id for r in world.recommender.recommend(100, now=NOW)] == [1, 2]
    world.engage(200, 3)  # others' new engagement waits for the next graph
    assert 3 not in [r.creator_id for r in world.recommender.recommend(100, now=NOW)]
    refresh = world.recommender.config.graph_refresh_seconds
    later = NOW + timedelta(seconds=refresh + 1)
    assert 3 in [r.creator_id for r in world.recommender.recommend(100, now=later)]


def test_zero_refresh_rebuilds_the_graph_on_every_request() -> None:
    world = World()
    world.recommender = CreatorRecommender(
        world.catalog,
        world.events,
        world.log,
        config=CreatorRecommenderConfig(graph_refresh_seconds=0),
    )
    for video_id in (1, 2):
        world.video(video_id, video_id)
    world.engage(100, 1)
    world.engage(200, 1)
    assert [r.creator_id for r in world.recommender.recommend(100, now=NOW)] == [1]
    world.engage(200, 2)
    assert [r.creator_id for r in world.recommender.recommend(100, now=NOW)] == [1, 2]
