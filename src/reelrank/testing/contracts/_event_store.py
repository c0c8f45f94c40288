"""The contract of :class:`~reelrank.EventStore`, affinity literals included."""

from __future__ import annotations

import math

import pytest

from ...exceptions import InvalidInputError
from ...models._engagement import EngagementKind, affinity, affinity_credit
from ...stores._protocols import BoundedAgeEventStore, BulkReadEventStore, EventStore
from ..factories import make_event
from ._support import BAD_IDS, skip_without

__all__ = ["EventStoreContract"]


def _bulk(event_store: object) -> BulkReadEventStore:
    """``event_store`` as a BulkReadEventStore; the test is skipped when it is not one."""
    skip_without(event_store, BulkReadEventStore)
    assert isinstance(event_store, BulkReadEventStore)
    return event_store


def _bounded(event_store: object) -> BoundedAgeEventStore:
    """``event_store`` as a BoundedAgeEventStore; the test is skipped when it is not one."""
    skip_without(event_store, BoundedAgeEventStore)
    assert isinstance(event_store, BoundedAgeEventStore)
    return event_store


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

    def test_stats_columns_are_the_stats_as_columns(self, event_store: EventStore) -> None:
        event_store.append(make_event("watch", video_id=2, completion=0.5), creator_id=1)
        event_store.append(make_event("watch", video_id=2, user_id=3, completion=1.0), creator_id=1)
        event_store.append(make_event("like", video_id=2, user_id=4), creator_id=1)
        event_store.append(make_event("share", video_id=7, user_id=4), creator_id=1)
        event_store.append(make_event("comment", video_id=7, user_id=5), creator_id=1)
        columns = event_store.stats_columns([7, 2, 9, 7])
        # One row per distinct id, in the order of first request; zeros when never engaged.
        assert columns.video_ids.tolist() == [7, 2, 9]
        assert columns.views.tolist() == [0, 2, 0]
        assert columns.completion_sum.tolist() == pytest.approx([0.0, 1.5, 0.0])
        assert columns.likes.tolist() == [0, 1, 0]
        assert columns.shares.tolist() == [1, 0, 0]
        assert columns.comments.tolist() == [1, 0, 0]
        assert columns.to_stats() == event_store.get_stats([7, 2, 9, 7])
        assert len(event_store.stats_columns([])) == 0

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

    @pytest.mark.parametrize(
        ("engagements", "expected"),
        [
            pytest.param([("watch", 1, 1.0)], {1: 1 / 2, 2: 0.0}, id="one full watch"),
            pytest.param([("watch", 1, 0.25)], {1: 0.25 / 1.25}, id="a quarter watch"),
            pytest.param([("watch", 1, 1.0)] * 10, {1: 10 / 11}, id="ten full watches"),
            pytest.param([("share", 1, None)], {1: 2 / 3}, id="one share"),
            pytest.param([("like", 1, None)], {1: 1 / 2}, id="one like"),
            pytest.param([("comment", 1, None)], {1: 1 / 2}, id="one comment"),
            pytest.param(
                [("watch", 1, 1.0), ("share", 1, None)], {1: 3 / 4}, id="a watch and a share"
            ),
            pytest.param(
                [("watch", 1, 1.0), ("share", 2, None)],
                {1: 1 / 4, 2: 2 / 4},
                id="two creators",
            ),
            pytest.param(
                [("watch", 1, 0.5), ("like", 1, None), ("comment", 2, None)],
                {1: 1.5 / 3.5, 2: 1 / 3.5},
                id="a half watch and a like, a comment elsewhere",
            ),
            pytest.param(
                [("watch", 1, 1.0), ("watch", 2, 1.0), ("watch", 3, 1.0)],
                {1: 1 / 4, 2: 1 / 4, 3: 1 / 4},
                id="three creators",
            ),
            pytest.param([("like", 1, None), ("like", 1, None)], {1: 1 / 2}, id="a like repeated"),
            pytest.param(
                [("watch", 1, 1.0), ("like", 1, None), ("unlike", 1, None)],
                {1: 1 / 2},
                id="a like taken back",
            ),
            pytest.param(
                [("watch", 1, 1.0), ("unlike", 1, None)], {1: 1 / 2}, id="an unlike alone"
            ),
        ],
    )
    def test_affinity_matches_hand_worked_values(
        self,
        event_store: EventStore,
        engagements: list[tuple[str, int, float | None]],
        expected: dict[int, float],
    ) -> None:
        # a(u, c) = C(u, c) / (sum of C(u, c') + 1): a watch earns its completion, a like
        # or a comment 1, a share 2, and an unlike takes back its like's 1.
        for kind, creator_id, completion in engagements:
            extra = {} if completion is None else {"completion": completion}
            event = make_event(kind, user_id=3, video_id=10 * creator_id, **extra)
            event_store.append(event, creator_id=creator_id)
        got = event_store.get_affinities(3, list(expected))
        assert set(got) == set(expected)
        for creator_id, value in expected.items():
            assert math.isclose(got[creator_id], value, rel_tol=1e-9, abs_tol=1e-12), creator_id

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

    @pytest.mark.parametrize("bad", BAD_IDS)
    def test_bad_ids_raise_invalid_input(self, event_store: EventStore, bad: object) -> None:
        with pytest.raises(InvalidInputError):
            event_store.get_stats([bad])  # type: ignore[list-item]
        with pytest.raises(InvalidInputError) as info:
            event_store.stats_columns([1, bad])  # type: ignore[list-item]
        assert info.value.field == "video_ids"
        with pytest.raises(InvalidInputError) as info:
            event_store.get_affinities(bad, [1])  # type: ignore[arg-type]
        assert info.value.field == "user_id"
        with pytest.raises(InvalidInputError) as info:
            event_store.append(make_event("watch"), creator_id=bad)  # type: ignore[arg-type]
        assert info.value.field == "creator_id"
        assert event_store.get_stats([1])[1].views == 0

    def test_affinities_many_equal_each_users_affinities(self, event_store: EventStore) -> None:
        bulk = _bulk(event_store)
        appended = [
            ("watch", 1, 1, 0.8),
            ("like", 1, 1, None),
            ("share", 1, 2, None),
            ("watch", 1, 3, 0.25),
            ("watch", 2, 3, 0.5),
            ("comment", 2, 1, None),
            ("like", 3, 1, None),
            ("unlike", 3, 1, None),
            ("watch", 3, 2, 1.0),
        ]
        for video_id, (kind, user_id, creator_id, completion) in enumerate(appended, start=1):
            fields = {} if completion is None else {"completion": completion}
            event = make_event(kind, user_id=user_id, video_id=video_id, **fields)
            event_store.append(event, creator_id=creator_id)
        requested = {1: [1, 2, 3, 9, 1], 2: [3, 1], 3: [1, 2], 4: [1, 2], 5: []}
        expected = {uid: event_store.get_affinities(uid, ids) for uid, ids in requested.items()}
        assert bulk.get_affinities_many(requested) == expected
        # Not all zeros: user 1 has credit with creators 1, 2 and 3.
        assert all(expected[1][creator_id] > 0.0 for creator_id in (1, 2, 3))
        assert bulk.get_affinities_many({4: [7]}) == {4: {7: 0.0}}

    @pytest.mark.parametrize(
        "bad",
        [{}, [1, 2], {1: "12"}, {1: [1], 2: 3}, *({bad: [1]} for bad in BAD_IDS[:3])]
        + [{1: [1, bad]} for bad in BAD_IDS],
        ids=repr,
    )
    def test_affinities_many_refuse_bad_arguments(
        self, event_store: EventStore, bad: object
    ) -> None:
        bulk = _bulk(event_store)
        with pytest.raises(InvalidInputError) as info:
            bulk.get_affinities_many(bad)  # type: ignore[arg-type]
        assert info.value.field == "creator_ids_by_user"

    def test_a_bounded_age_read_counts_every_event_older_than_its_bound(
        self, event_store: EventStore
    ) -> None:
        bounded = _bounded(event_store)
        event_store.append(make_event("watch", video_id=2, completion=0.5), creator_id=1)
        event_store.append(make_event("like", video_id=2, user_id=4), creator_id=1)
        event_store.append(make_event("share", video_id=7, user_id=4), creator_id=1)
        # With a bound of 0 every event appended so far must be counted: the exact
        # statistics, or None when the store cannot promise them without I/O.
        found = bounded.stats_columns_within([7, 2, 9, 7], max_age_seconds=0)
        if found is not None:
            exact = event_store.stats_columns([7, 2, 9, 7])
            assert found.video_ids.tolist() == exact.video_ids.tolist() == [7, 2, 9]
            for name in ("views", "likes", "shares", "comments"):
                assert getattr(found, name).tolist() == getattr(exact, name).tolist(), name
            assert found.completion_sum.tolist() == pytest.approx(exact.completion_sum.tolist())

    @pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, "1", None, True], ids=repr)
    def test_a_bounded_age_read_refuses_a_bad_bound(
        self, event_store: EventStore, bad: object
    ) -> None:
        bounded = _bounded(event_store)
        with pytest.raises(InvalidInputError) as info:
            bounded.stats_columns_within([1], max_age_seconds=bad)  # type: ignore[arg-type]
        assert info.value.field == "max_age_seconds"

    def test_bad_limit_raises_invalid_input(self, event_store: EventStore) -> None:
        with pytest.raises(InvalidInputError) as info:
            event_store.popular_video_ids(limit=-1)
        assert info.value.field == "limit"
