"""The contract of :class:`~reelrank.EngagementLog`."""

from __future__ import annotations

import pytest

from ...exceptions import InvalidInputError
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
