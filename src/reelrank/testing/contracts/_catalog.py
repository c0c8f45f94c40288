"""The contracts of :class:`~reelrank.Catalog`,
:class:`~reelrank.FollowedCandidatesCatalog`, :class:`~reelrank.FollowedColumnsCatalog`
and :class:`~reelrank.LabelColumnsCatalog`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from ...exceptions import InvalidInputError, InvalidTransitionError, NotFoundError
from ...models._catalog import ProcessingState, VideoLabels
from ...models._followed_columns import NO_SOUND_ID
from ...models._label_columns import VideoLabelColumns
from ...stores._protocols import (
    BulkReadCatalog,
    Catalog,
    EventStore,
    FollowedCandidatesCatalog,
    FollowedColumnsCatalog,
    LabelColumnsCatalog,
)
from ..factories import EPOCH, make_creator, make_event, make_video
from ._support import BAD_IDS, BAD_USER_BATCHES, hours, skip_without

__all__ = [
    "CatalogContract",
    "FollowedCandidatesCatalogContract",
    "FollowedColumnsCatalogContract",
    "LabelColumnsCatalogContract",
]


def _bulk(catalog: object) -> BulkReadCatalog:
    """``catalog`` as a BulkReadCatalog; the test is skipped when it is not one."""
    skip_without(catalog, BulkReadCatalog)
    assert isinstance(catalog, BulkReadCatalog)
    return catalog


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

    def test_labels_are_those_of_the_videos_read_the_same_way(self, catalog: Catalog) -> None:
        catalog.put_creator(make_creator(1))
        tagged = make_video(1, 1, hashtags=("cats", "dogs"), sound_id=5, published_at=EPOCH)
        bare = make_video(2, 1, hashtags=(), sound_id=None, published_at=EPOCH + hours(1))
        later = make_video(3, 1, hashtags=("b", "a"), sound_id=6, published_at=EPOCH + hours(2))
        pending = make_video(4, 1, state=ProcessingState.QUEUED, published_at=EPOCH + hours(3))
        for video in (tagged, bare, later, pending):
            catalog.put_video(video)
        assert catalog.get_labels([4, 1, 404, 1]) == {
            4: VideoLabels(4, EPOCH + hours(3), pending.sound_id, pending.hashtags),
            1: VideoLabels(1, EPOCH, 5, ("cats", "dogs")),
        }
        assert catalog.get_labels([]) == {}
        # Ready videos only, newest first, as recent_videos.
        assert catalog.recent_labels(limit=10) == [
            VideoLabels(3, EPOCH + hours(2), 6, ("b", "a")),
            VideoLabels(2, EPOCH + hours(1), None, ()),
            VideoLabels(1, EPOCH, 5, ("cats", "dogs")),
        ]
        for limit, since in [(2, None), (10, EPOCH + hours(1)), (0, None), (10, EPOCH + hours(9))]:
            expected = [
                VideoLabels.of(video) for video in catalog.recent_videos(limit=limit, since=since)
            ]
            assert catalog.recent_labels(limit=limit, since=since) == expected
        with pytest.raises(InvalidInputError) as info:
            catalog.recent_labels(limit=-1)
        assert info.value.field == "limit"
        with pytest.raises(InvalidInputError) as info:
            catalog.get_labels([0])
        assert info.value.field == "video_ids"
        with pytest.raises(InvalidInputError) as info:
            catalog.recent_labels(limit=1, since=EPOCH.replace(tzinfo=None))
        assert info.value.field == "since"

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
            catalog.put_video(make_video(video_id, 1, published_at=EPOCH - hours(age_hours)))
        ids = [v.video_id for v in catalog.recent_videos(limit=10)]
        assert ids == [4, 2, 3, 1]
        assert [v.video_id for v in catalog.recent_videos(limit=2)] == [4, 2]
        assert catalog.recent_videos(limit=0) == []

    def test_recent_videos_since_excludes_older_ones(self, catalog: Catalog) -> None:
        catalog.put_creator(make_creator(1))
        catalog.put_video(make_video(1, 1, published_at=EPOCH - hours(10)))
        catalog.put_video(make_video(2, 1, published_at=EPOCH - hours(2)))
        catalog.put_video(make_video(3, 1, published_at=EPOCH))
        since = EPOCH - hours(2)
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
            published_at = EPOCH - hours(age_hours)
            catalog.put_video(make_video(video_id, creator_id, published_at=published_at))
        catalog.follow(10, 1)
        catalog.follow(10, 2)
        assert [v.video_id for v in catalog.followed_videos(10, limit=10)] == [4, 5, 2, 1]
        assert [v.video_id for v in catalog.followed_videos(10, limit=2)] == [4, 5]
        assert catalog.followed_videos(11, limit=10) == []

    @pytest.mark.parametrize("bad", BAD_IDS)
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

    def test_followed_videos_many_equal_each_users_followed_videos(self, catalog: Catalog) -> None:
        bulk = _bulk(catalog)
        for creator_id in (1, 2, 3, 4):
            catalog.put_creator(make_creator(creator_id))
        # Creator 1 has two videos published at the same instant (the higher id first).
        layout = [(1, 1, 5), (2, 1, 1), (3, 1, 1), (4, 2, 3), (5, 2, 0), (6, 3, 2), (7, 1, 7)]
        for video_id, creator_id, age_hours in layout:
            catalog.put_video(
                make_video(video_id, creator_id, published_at=EPOCH - hours(age_hours))
            )
        catalog.put_video(make_video(8, 2, state=ProcessingState.QUEUED))
        follows = {10: [1, 2], 11: [3], 12: [1, 2, 3, 4], 13: [4]}
        for user_id, creator_ids in follows.items():
            for creator_id in creator_ids:
                catalog.follow(user_id, creator_id)
        users = [12, 10, 14, 11, 13]  # 14 follows nobody
        for limit in (0, 1, 2, 3, 50):
            expected = {uid: catalog.followed_videos(uid, limit=limit) for uid in users}
            assert bulk.followed_videos_many(users, limit=limit) == expected
        many = bulk.followed_videos_many(users, limit=3)
        assert {uid: [v.video_id for v in videos] for uid, videos in many.items()} == {
            12: [5, 3, 2],
            10: [5, 3, 2],
            14: [],
            11: [6],
            13: [],
        }

    @pytest.mark.parametrize("bad", BAD_USER_BATCHES)
    def test_followed_videos_many_refuses_bad_user_ids(self, catalog: Catalog, bad: object) -> None:
        bulk = _bulk(catalog)
        with pytest.raises(InvalidInputError) as info:
            bulk.followed_videos_many(bad, limit=10)  # type: ignore[arg-type]
        assert info.value.field == "user_ids"

    @pytest.mark.parametrize("bad", [-1, 1.5, True, None])
    def test_followed_videos_many_refuses_a_bad_limit(self, catalog: Catalog, bad: object) -> None:
        bulk = _bulk(catalog)
        with pytest.raises(InvalidInputError) as info:
            bulk.followed_videos_many([1, 2], limit=bad)  # type: ignore[arg-type]
        assert info.value.field == "limit"

    def test_naive_since_raises_invalid_input(self, catalog: Catalog) -> None:
        with pytest.raises(InvalidInputError) as info:
            catalog.recent_videos(limit=1, since=EPOCH.replace(tzinfo=None))
        assert info.value.field == "since"


def _followed_world(catalog: Catalog) -> None:
    """Creators 1 to 3, ready and unready videos with and without sounds, and user 10
    following creators 1 and 2 (newest first: videos 4, 5, 2, 1)."""
    for creator_id in (1, 2, 3):
        catalog.put_creator(make_creator(creator_id))
    layout = [(1, 1, 4, 7), (2, 2, 3, None), (3, 3, 0, 8), (4, 1, 1, None), (5, 2, 2, 9)]
    for video_id, creator_id, age_hours, sound_id in layout:
        published_at = EPOCH - hours(age_hours) + timedelta(microseconds=video_id)
        catalog.put_video(
            make_video(video_id, creator_id, published_at=published_at, sound_id=sound_id)
        )
    catalog.put_video(make_video(6, 1, state=ProcessingState.TRANSCODING))
    catalog.follow(10, 1)
    catalog.follow(10, 2)


class _FollowedReadInputChecks:
    """The bad-input checks both followed-read contracts share; ``_read`` is the read."""

    def _read(self, catalog: Any, user_id: object, limit: object) -> object:
        raise NotImplementedError

    @pytest.mark.parametrize("bad", BAD_IDS)
    def test_bad_user_ids_raise_invalid_input(self, catalog: Any, bad: object) -> None:
        with pytest.raises(InvalidInputError) as info:
            self._read(catalog, bad, 10)
        assert info.value.field == "user_id"

    @pytest.mark.parametrize("bad", [-1, 1.5, True, None])
    def test_bad_limits_raise_invalid_input(self, catalog: Any, bad: object) -> None:
        with pytest.raises(InvalidInputError) as info:
            self._read(catalog, 1, bad)
        assert info.value.field == "limit"


class FollowedCandidatesCatalogContract(_FollowedReadInputChecks):
    """Checks a :class:`~reelrank.FollowedCandidatesCatalog`; needs a ``catalog``
    fixture and an ``event_store`` fixture whose statistics the catalog reads."""

    def _read(self, catalog: FollowedCandidatesCatalog, user_id: object, limit: object) -> object:
        return catalog.followed_candidates(user_id, limit=limit)  # type: ignore[arg-type]

    def _followed(self, catalog: FollowedCandidatesCatalog, event_store: EventStore) -> None:
        """The followed world of :func:`_followed_world`, and engagement with some of
        the videos."""
        _followed_world(catalog)
        event_store.append(make_event("watch", video_id=5, completion=0.5), creator_id=2)
        event_store.append(make_event("watch", video_id=5, user_id=2, completion=1.0), creator_id=2)
        event_store.append(make_event("like", video_id=1), creator_id=1)
        event_store.append(make_event("share", video_id=4), creator_id=1)
        event_store.append(make_event("comment", video_id=3), creator_id=3)

    def test_satisfies_the_protocol(
        self, catalog: FollowedCandidatesCatalog, event_store: EventStore
    ) -> None:
        assert isinstance(catalog, FollowedCandidatesCatalog)
        assert catalog.reads_stats_of(event_store)

    @pytest.mark.parametrize("limit", [10, 2, 0])
    def test_followed_candidates_are_followed_videos_with_their_stats(
        self, catalog: FollowedCandidatesCatalog, event_store: EventStore, limit: int
    ) -> None:
        self._followed(catalog, event_store)
        videos = catalog.followed_videos(10, limit=limit)
        ids = [video.video_id for video in videos]
        columns = catalog.followed_candidates(10, limit=limit)
        assert columns.video_ids.tolist() == ids == [4, 5, 2, 1][:limit]
        assert columns.creator_ids.tolist() == [video.creator_id for video in videos]
        assert columns.sound_ids.tolist() == [
            NO_SOUND_ID if video.sound_id is None else video.sound_id for video in videos
        ]
        assert columns.published_at.tolist() == [video.published_at.timestamp() for video in videos]
        assert columns.stats == event_store.stats_columns(ids)

    def test_followed_candidates_of_an_unknown_user_are_empty(
        self, catalog: FollowedCandidatesCatalog, event_store: EventStore
    ) -> None:
        self._followed(catalog, event_store)
        columns = catalog.followed_candidates(11, limit=10)
        assert len(columns) == 0
        assert len(columns.stats) == 0


class FollowedColumnsCatalogContract(_FollowedReadInputChecks):
    """Checks a :class:`~reelrank.FollowedColumnsCatalog`; needs a ``catalog`` fixture."""

    def _read(self, catalog: FollowedColumnsCatalog, user_id: object, limit: object) -> object:
        return catalog.followed_columns(user_id, limit=limit)  # type: ignore[arg-type]

    def _followed(self, catalog: FollowedColumnsCatalog) -> None:
        _followed_world(catalog)

    def test_satisfies_the_protocol(self, catalog: FollowedColumnsCatalog) -> None:
        assert isinstance(catalog, FollowedColumnsCatalog)

    @pytest.mark.parametrize("limit", [10, 2, 0])
    def test_followed_columns_are_the_followed_videos(
        self, catalog: FollowedColumnsCatalog, limit: int
    ) -> None:
        self._followed(catalog)
        videos = catalog.followed_videos(10, limit=limit)
        columns = catalog.followed_columns(10, limit=limit)
        assert columns.video_ids.tolist() == [video.video_id for video in videos]
        assert columns.video_ids.tolist() == [4, 5, 2, 1][:limit]
        assert columns.creator_ids.tolist() == [video.creator_id for video in videos]
        assert columns.sound_ids.tolist() == [
            NO_SOUND_ID if video.sound_id is None else video.sound_id for video in videos
        ]
        assert columns.published_at.tolist() == [video.published_at.timestamp() for video in videos]

    def test_followed_columns_of_an_unknown_user_are_empty(
        self, catalog: FollowedColumnsCatalog
    ) -> None:
        self._followed(catalog)
        assert len(catalog.followed_columns(11, limit=10)) == 0


class LabelColumnsCatalogContract:
    """Checks a :class:`~reelrank.LabelColumnsCatalog`; needs a ``catalog`` fixture."""

    def _labelled(self, catalog: LabelColumnsCatalog) -> None:
        catalog.put_creator(make_creator(1))
        for video in (
            make_video(1, 1, hashtags=("cats", "dogs"), sound_id=5, published_at=EPOCH),
            make_video(2, 1, hashtags=(), sound_id=None, published_at=EPOCH + hours(1)),
            # Microseconds kept exactly.
            make_video(
                3,
                1,
                hashtags=("dogs", "birds"),
                sound_id=6,
                published_at=EPOCH + hours(2) + timedelta(microseconds=987_654),
            ),
            make_video(
                4,
                1,
                hashtags=("fish",),
                sound_id=7,
                state=ProcessingState.QUEUED,
                published_at=EPOCH + hours(3),
            ),
        ):
            catalog.put_video(video)

    def test_satisfies_the_protocol(self, catalog: LabelColumnsCatalog) -> None:
        assert isinstance(catalog, LabelColumnsCatalog)

    def test_recent_label_columns_are_the_recent_labels(self, catalog: LabelColumnsCatalog) -> None:
        self._labelled(catalog)
        hour_us = 3_600_000_000
        epoch_us = 1_767_225_600_000_000  # 2026-01-01 UTC
        # Ready videos only, newest first; hashtags coded in the order of first use.
        assert catalog.recent_label_columns(limit=10) == VideoLabelColumns.from_arrays(
            video_ids=[3, 2, 1],
            published_us=[epoch_us + 2 * hour_us + 987_654, epoch_us + hour_us, epoch_us],
            sound_ids=[6, NO_SOUND_ID, 5],
            hashtag_offsets=[0, 2, 2, 4],
            hashtag_codes=[0, 1, 2, 0],
            hashtags=("dogs", "birds", "cats"),
        )
        for limit, since in [(2, None), (10, EPOCH + hours(1)), (0, None), (10, EPOCH + hours(9))]:
            expected = VideoLabelColumns.from_labels(
                catalog.recent_labels(limit=limit, since=since)
            )
            assert catalog.recent_label_columns(limit=limit, since=since) == expected

    def test_label_columns_are_the_labels_by_ascending_id(
        self, catalog: LabelColumnsCatalog
    ) -> None:
        self._labelled(catalog)
        epoch_us = 1_767_225_600_000_000
        # Any state; unknown ids omitted, repeated ones read once.
        assert catalog.label_columns([4, 1, 404, 1]) == VideoLabelColumns.from_arrays(
            video_ids=[1, 4],
            published_us=[epoch_us, epoch_us + 3 * 3_600_000_000],
            sound_ids=[5, 7],
            hashtag_offsets=[0, 2, 3],
            hashtag_codes=[0, 1, 2],
            hashtags=("cats", "dogs", "fish"),
        )
        ids = [3, 2, 1, 4]
        assert catalog.label_columns(ids) == VideoLabelColumns.from_labels(
            sorted(catalog.get_labels(ids).values())
        )
        assert len(catalog.label_columns([])) == 0
        assert len(catalog.label_columns([404])) == 0

    def test_bad_arguments_raise_as_the_row_reads_do(self, catalog: LabelColumnsCatalog) -> None:
        with pytest.raises(InvalidInputError) as info:
            catalog.recent_label_columns(limit=-1)
        assert info.value.field == "limit"
        with pytest.raises(InvalidInputError) as info:
            catalog.recent_label_columns(limit=1, since=EPOCH.replace(tzinfo=None))
        assert info.value.field == "since"
        for bad in BAD_IDS:
            with pytest.raises(InvalidInputError) as info:
                catalog.label_columns([bad])  # type: ignore[list-item]
            assert info.value.field == "video_ids"
