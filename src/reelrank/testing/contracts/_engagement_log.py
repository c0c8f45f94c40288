"""The contract of :class:`~reelrank.EngagementLog`."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from ...exceptions import InvalidInputError
from ...models._window import EngagementWindow, epoch_microseconds
from ...stores._protocols import EngagementLog
from ..factories import EPOCH, make_event
from ._support import hours

__all__ = ["EngagementLogContract"]


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
        window = engagement_log.events_between(EPOCH, EPOCH + hours(1), limit=10)
        assert window == [event]
        assert engagement_log.user_events(1, since=EPOCH, limit=10) == [event]

    def test_events_between_is_half_open_and_newest_first(
        self, engagement_log: EngagementLog
    ) -> None:
        before = make_event("like", occurred_at=EPOCH - hours(1), event_id="a-before")
        at_start = make_event("like", occurred_at=EPOCH, event_id="b-start")
        tie_low = make_event("share", occurred_at=EPOCH + hours(1), event_id="c-tie")
        tie_high = make_event("share", occurred_at=EPOCH + hours(1), event_id="d-tie")
        at_end = make_event("comment", occurred_at=EPOCH + hours(2), event_id="e-end")
        for event in (tie_high, at_end, before, tie_low, at_start):
            engagement_log.record(event)
        got = engagement_log.events_between(EPOCH, EPOCH + hours(2), limit=10)
        assert got == [tie_high, tie_low, at_start]
        newest = engagement_log.events_between(EPOCH, EPOCH + hours(2), limit=2)
        assert newest == [tie_high, tie_low]
        assert engagement_log.events_between(EPOCH, EPOCH + hours(2), limit=0) == []

    def test_user_events_are_per_user_newest_first(self, engagement_log: EngagementLog) -> None:
        mine = [make_event("like", user_id=1, occurred_at=EPOCH + hours(n)) for n in range(4)]
        theirs = make_event("like", user_id=2, occurred_at=EPOCH + hours(9))
        for event in [*mine, theirs]:
            engagement_log.record(event)
        since = EPOCH + hours(1)
        assert engagement_log.user_events(1, since=since, limit=10) == mine[:0:-1]
        assert engagement_log.user_events(1, since=since, limit=1) == [mine[3]]
        assert engagement_log.user_events(3, since=EPOCH, limit=10) == []

    def test_columns_between_are_the_events_between_as_columns(
        self, engagement_log: EngagementLog
    ) -> None:
        micro = timedelta(microseconds=1)
        events = [
            make_event("watch", user_id=3, video_id=30, occurred_at=EPOCH - micro),
            make_event("like", user_id=1, video_id=10, occurred_at=EPOCH, event_id="b-start"),
            make_event("unlike", user_id=2, video_id=10, occurred_at=EPOCH + micro),
            make_event("share", user_id=2, video_id=11, occurred_at=EPOCH + hours(1)),
            make_event("comment", user_id=4, video_id=12, occurred_at=EPOCH + hours(1),
                       event_id="z-tie"),
            make_event("comment", user_id=4, video_id=12, occurred_at=EPOCH + hours(1),
                       event_id="a-tie"),
            make_event("watch", user_id=1, video_id=13, occurred_at=EPOCH + hours(2) - micro),
            make_event("like", user_id=5, video_id=14, occurred_at=EPOCH + hours(2)),
        ]  # fmt: skip
        for event in reversed(events):
            engagement_log.record(event)
        window = engagement_log.columns_between(EPOCH, EPOCH + hours(2), limit=10)
        # Worked out by hand: the six events in [EPOCH, EPOCH + 2h), newest first, the
        # tie at EPOCH + 1h by event_id descending ("z-tie", share's id, "a-tie").
        share_id = events[3].event_id
        tie_order = sorted([("z-tie", 12), (share_id, 11), ("a-tie", 12)], reverse=True)
        assert window.video_ids.tolist() == [13, *(v for _, v in tie_order), 10, 10]
        users_at_tie = {"z-tie": 4, share_id: 2, "a-tie": 4}
        assert window.user_ids.tolist() == [1, *(users_at_tie[i] for i, _ in tie_order), 2, 1]
        kinds_at_tie = {"z-tie": 4, share_id: 3, "a-tie": 4}
        assert window.kinds.tolist() == [0, *(kinds_at_tie[i] for i, _ in tie_order), 2, 1]
        at = epoch_microseconds(EPOCH)
        hour = 3_600_000_000
        assert window.occurred_us.tolist() == [at + 2 * hour - 1, *[at + hour] * 3, at + 1, at]
        for start, end, limit in [
            (EPOCH, EPOCH + hours(2), 10),
            (EPOCH - hours(1), EPOCH + hours(3), 3),
            (EPOCH + micro, EPOCH + hours(1) + micro, 2),
            (EPOCH, EPOCH + hours(2), 0),
            (EPOCH + hours(2), EPOCH, 10),
        ]:
            expected = EngagementWindow.from_events(
                engagement_log.events_between(start, end, limit=limit)
            )
            got = engagement_log.columns_between(start, end, limit=limit)
            assert got == expected, (start, end, limit)
            for column in (got.video_ids, got.user_ids, got.occurred_us):
                assert column.dtype == np.int64
            assert got.kinds.dtype == np.int8

    def test_columns_between_reject_bad_arguments(self, engagement_log: EngagementLog) -> None:
        naive = EPOCH.replace(tzinfo=None)
        for args, field in [((naive, EPOCH, 1), "start"), ((EPOCH, naive, 1), "end"),
                            ((EPOCH, EPOCH, -1), "limit")]:  # fmt: skip
            start, end, limit = args
            with pytest.raises(InvalidInputError) as info:
                engagement_log.columns_between(start, end, limit=limit)
            assert info.value.field == field

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
