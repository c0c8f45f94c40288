"""EngagementRecorder: validation before any write, derived completion, idempotency."""

from __future__ import annotations

import math
import pickle
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reelrank import (
    BoundedAgeEventStore,
    ConfigError,
    EngagementKind,
    EngagementRecorder,
    IdempotencyConflictError,
    InMemoryCatalog,
    InMemoryEngagementLog,
    InMemoryEventStore,
    InMemorySeenStore,
    InvalidInputError,
    NotFoundError,
    NotReadyError,
    ProcessingState,
    RecorderConfig,
    StoreError,
)
from reelrank.testing import (
    EPOCH,
    FaultInjector,
    ManualClock,
    make_creator,
    make_event,
    make_video,
)
from reelrank.validation import check_aware

NOW = EPOCH + timedelta(days=1)


class World:
    """A small catalog of 40-second videos by two creators, with a fixed clock."""

    def __init__(self, **config: Any) -> None:
        self.catalog = InMemoryCatalog()
        self.events = InMemoryEventStore()
        self.seen = InMemorySeenStore()
        self.clock = ManualClock(NOW)
        for creator_id in (1, 2):
            self.catalog.put_creator(make_creator(creator_id))
        for video_id in range(1, 5):
            self.catalog.put_video(make_video(video_id, 1 + video_id % 2, duration_seconds=40.0))
        self.catalog.put_video(make_video(9, 1, state=ProcessingState.PACKAGING))
        self.recorder = EngagementRecorder(
            self.catalog,
            self.events,
            seen=self.seen,
            config=RecorderConfig(**config),
            now=self.clock.now,
        )

    def stats(self, video_id: int = 1) -> tuple[int, float, int, int, int]:
        s = self.events.get_stats([video_id])[video_id]
        return (s.views, s.completion_sum, s.likes, s.shares, s.comments)


def test_watch_with_seconds_derives_completion_capped_at_one() -> None:
    world = World()
    assert world.recorder.watch(1, 1, event_id="a", occurred_at=EPOCH, watched_seconds=10.0)
    assert world.stats()[:2] == (1, 0.25)
    world.recorder.watch(2, 1, event_id="b", occurred_at=EPOCH, watched_seconds=95.0)
    assert world.stats()[:2] == (2, 1.25)


def test_an_explicit_completion_wins_over_seconds() -> None:
    world = World()
    world.recorder.watch(
        1, 1, event_id="a", occurred_at=EPOCH, watched_seconds=40.0, completion=0.5
    )
    assert world.stats()[:2] == (1, 0.5)


def test_watch_updates_affinity_with_the_creator() -> None:
    world = World()
    world.recorder.watch(7, 1, event_id="a", occurred_at=EPOCH, watched_seconds=20.0)
    world.recorder.watch(7, 2, event_id="b", occurred_at=EPOCH, completion=1.0)
    got = world.events.get_affinities(7, [1, 2])
    # Video 1 is by creator 2, video 2 by creator 1. Credits 0.5 (20 of 40 s) and 1.0,
    # over a total of 1.5 plus the prior 1.
    assert got[2] == pytest.approx(0.5 / 2.5)
    assert got[1] == pytest.approx(1.0 / 2.5)
    assert got[1] > got[2]


def test_unlike_reverses_a_like() -> None:
    world = World()
    world.recorder.like(1, 1, event_id="l1", occurred_at=EPOCH)
    world.recorder.like(2, 1, event_id="l2", occurred_at=EPOCH)
    assert world.stats()[2] == 2
    world.recorder.unlike(1, 1, event_id="u1", occurred_at=EPOCH)
    assert world.stats()[2] == 1
    assert world.events.get_affinities(1, [2]) == {2: 0.0}
    assert world.events.get_affinities(2, [2])[2] == pytest.approx(1 / 2)


def test_share_is_counted() -> None:
    world = World()
    world.recorder.share(1, 1, event_id="s", channel="whatsapp", occurred_at=EPOCH)
    assert world.stats()[3] == 1


def test_record_accepts_a_mapping() -> None:
    world = World()
    data = {
        "event_id": "m1",
        "kind": "watch",
        "user_id": 3,
        "video_id": 1,
        "occurred_at": "2026-01-01T00:00:00+02:00",
        "watched_seconds": 4.0,
        "variant": "treatment",
    }
    assert world.recorder.record(data) is True
    assert world.stats()[:2] == (1, 0.1)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"watched_seconds": -1.0}, "watched_seconds"),
        ({"watched_seconds": math.inf}, "watched_seconds"),
        ({"watched_seconds": math.nan}, "watched_seconds"),
        ({"completion": 1.01}, "completion"),
        ({"completion": -0.01}, "completion"),
        ({"completion": math.nan}, "completion"),
        ({"occurred_at": NOW + timedelta(minutes=6)}, "occurred_at"),
        ({"occurred_at": NOW.replace(tzinfo=None)}, "occurred_at"),
        # Valid local times whose offset carries them out of the datetime range in UTC.
        ({"occurred_at": datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))}, "occurred_at"),
        ({"occurred_at": "0001-01-01T00:00:00+14:00"}, "occurred_at"),
        (
            {"occurred_at": datetime.max.replace(tzinfo=timezone(-timedelta(hours=14)))},
            "occurred_at",
        ),
        ({"video_id": 0}, "video_id"),
        ({"user_id": -3}, "user_id"),
        ({"event_id": ""}, "event_id"),
        ({"variant": "not a tag"}, "variant"),
    ],
)
def test_bad_fields_are_named_and_nothing_is_written(overrides: dict[str, Any], field: str) -> None:
    world = World(mark_watched_seen=True)
    data: dict[str, Any] = {
        "event_id": "e1",
        "kind": "watch",
        "user_id": 1,
        "video_id": 1,
        "occurred_at": EPOCH,
        "watched_seconds": 10.0,
    }
    data.update(overrides)
    with pytest.raises(InvalidInputError) as info:
        world.recorder.record(data)
    assert info.value.field == field
    assert world.stats() == (0, 0.0, 0, 0, 0)
    assert world.seen.recently_seen(1, since=EPOCH - timedelta(days=9), limit=5) == []


def test_a_small_future_skew_is_allowed_and_configurable() -> None:
    world = World(max_future_skew_seconds=60.0)
    assert world.recorder.like(1, 1, event_id="a", occurred_at=NOW + timedelta(seconds=60))
    with pytest.raises(InvalidInputError) as info:
        world.recorder.like(1, 2, event_id="b", occurred_at=NOW + timedelta(seconds=61))
    assert info.value.field == "occurred_at"
    world.clock.advance(30)
    assert world.recorder.like(1, 2, event_id="b", occurred_at=NOW + timedelta(seconds=61))


def test_an_event_older_than_the_configured_horizon_is_refused() -> None:
    world = World(max_event_age_seconds=3600.0)
    assert world.recorder.like(1, 1, event_id="a", occurred_at=NOW - timedelta(seconds=3600))
    with pytest.raises(InvalidInputError) as info:
        world.recorder.like(1, 2, event_id="b", occurred_at=NOW - timedelta(seconds=3601))
    assert info.value.field == "occurred_at"
    assert world.stats(2) == (0, 0.0, 0, 0, 0)
    # Without a horizon (the default) history of any age is accepted.
    assert World().recorder.like(1, 2, event_id="b", occurred_at=NOW - timedelta(days=400))


def test_the_horizon_must_be_positive_and_finite() -> None:
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ConfigError) as info:
            RecorderConfig(max_event_age_seconds=bad)
        assert info.value.field == "max_event_age_seconds"


def test_an_event_id_reused_for_another_event_is_a_conflict_and_writes_nothing() -> None:
    world = World()
    log = InMemoryEngagementLog()
    recorder = EngagementRecorder(world.catalog, world.events, log=log, now=world.clock.now)
    assert recorder.watch(1, 1, event_id="w", occurred_at=EPOCH, completion=0.5) is True
    for other in (
        {"completion": 0.75},
        {"completion": 0.5, "occurred_at": EPOCH + timedelta(seconds=1)},
        {"completion": 0.5, "user_id": 2},
    ):
        fields: dict[str, Any] = {"user_id": 1, "occurred_at": EPOCH, **other}
        user_id = fields.pop("user_id")
        with pytest.raises(IdempotencyConflictError) as info:
            recorder.watch(user_id, 1, event_id="w", **fields)
        assert (info.value.field, info.value.key) == ("event_id", "w")
    with pytest.raises(IdempotencyConflictError):
        recorder.like(1, 1, event_id="w", occurred_at=EPOCH)
    assert world.stats() == (1, 0.5, 0, 0, 0)
    assert len(log.user_events(1, since=EPOCH, limit=10)) == 1
    assert log.user_events(2, since=EPOCH, limit=10) == []
    # The same event again is the harmless redelivery it always was.
    assert recorder.watch(1, 1, event_id="w", occurred_at=EPOCH, completion=0.5) is False
    assert world.stats() == (1, 0.5, 0, 0, 0)


def test_a_retry_without_a_client_time_is_a_redelivery() -> None:
    world = World()
    assert world.recorder.like(1, 1, event_id="l") is True
    world.clock.advance(5)
    # The recorder timed both attempts itself: the later time is no different event.
    assert world.recorder.like(1, 1, event_id="l") is False
    assert world.stats()[2] == 1
    with pytest.raises(IdempotencyConflictError):
        world.recorder.like(1, 2, event_id="l")


def test_conflicts_are_checked_only_while_the_payload_is_remembered() -> None:
    world = World(remembered_payloads=1)
    world.recorder.like(1, 1, event_id="a", occurred_at=EPOCH)
    world.recorder.like(1, 2, event_id="b", occurred_at=EPOCH)
    # "a" was forgotten: the store compares ids only and drops the reuse as a duplicate.
    assert world.recorder.like(1, 3, event_id="a", occurred_at=EPOCH) is False
    assert world.stats(3) == (0, 0.0, 0, 0, 0)
    with pytest.raises(IdempotencyConflictError):
        world.recorder.like(1, 3, event_id="b", occurred_at=EPOCH)
    unchecked = World(remembered_payloads=0)
    unchecked.recorder.like(1, 1, event_id="a", occurred_at=EPOCH)
    assert unchecked.recorder.like(1, 2, event_id="a", occurred_at=EPOCH) is False


def test_a_conflict_pickles_with_its_fields() -> None:
    error = IdempotencyConflictError("event_id", "e-7", "already recorded for a different event")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is IdempotencyConflictError
    assert (copy.field, copy.key, copy.reason) == ("event_id", "e-7", error.reason)
    assert (
        str(copy)
        == str(error)
        == ("event_id 'e-7' conflicts: already recorded for a different event")
    )


def test_liking_twice_is_one_like() -> None:
    once, twice = World(), World()
    once.recorder.like(1, 1, event_id="l1", occurred_at=EPOCH)
    twice.recorder.like(1, 1, event_id="l1", occurred_at=EPOCH)
    # Another event id: a new event, but the like is keyed by user and video.
    assert twice.recorder.like(1, 1, event_id="l2", occurred_at=EPOCH + timedelta(seconds=1))
    assert twice.stats() == once.stats() == (0, 0.0, 1, 0, 0)
    assert twice.events.get_affinities(1, [2]) == once.events.get_affinities(1, [2])
    twice.recorder.unlike(1, 1, event_id="u1", occurred_at=EPOCH + timedelta(seconds=2))
    assert twice.stats()[2] == 0


def test_unknown_video_is_not_found_and_nothing_is_written() -> None:
    world = World()
    with pytest.raises(NotFoundError) as info:
        world.recorder.watch(1, 404, event_id="a", occurred_at=EPOCH, completion=1.0)
    assert (info.value.kind, info.value.key) == ("video", 404)
    assert world.events.get_stats([404])[404].views == 0
    assert world.events.popular_video_ids(limit=5) == []


def test_a_video_that_is_not_ready_cannot_be_engaged_with() -> None:
    world = World()
    with pytest.raises(NotReadyError) as info:
        world.recorder.like(1, 9, event_id="a", occurred_at=EPOCH)
    assert info.value.state == "packaging"
    assert world.stats(9) == (0, 0.0, 0, 0, 0)


def test_watch_marks_seen_only_when_asked() -> None:
    since = EPOCH - timedelta(days=1)
    quiet = World()
    quiet.recorder.watch(1, 1, event_id="a", occurred_at=EPOCH, completion=1.0)
    assert quiet.seen.seen_among(1, [1], since=since) == set()
    marking = World(mark_watched_seen=True)
    marking.recorder.watch(1, 1, event_id="a", occurred_at=EPOCH, completion=1.0)
    marking.recorder.like(1, 2, event_id="b", occurred_at=EPOCH)
    assert marking.seen.seen_among(1, [1, 2], since=since) == {1}
    assert marking.seen.seen_among(1, [1], since=EPOCH) == {1}


def test_marking_seen_needs_a_seen_store() -> None:
    catalog, events = InMemoryCatalog(), InMemoryEventStore()
    with pytest.raises(ConfigError) as info:
        EngagementRecorder(catalog, events, config=RecorderConfig(mark_watched_seen=True))
    assert info.value.field == "mark_watched_seen"


def test_a_redelivery_completes_a_watch_whose_seen_write_failed() -> None:
    world = World()
    seen = FaultInjector(world.seen, name="seen")
    recorder = EngagementRecorder(
        world.catalog,
        world.events,
        seen=seen.proxy,
        config=RecorderConfig(mark_watched_seen=True),
        now=world.clock.now,
    )
    seen.fail()
    with pytest.raises(StoreError):
        recorder.watch(1, 1, event_id="a", occurred_at=EPOCH, completion=0.5)
    seen.recover()
    assert recorder.watch(1, 1, event_id="a", occurred_at=EPOCH, completion=0.5) is False
    assert world.stats()[:2] == (1, 0.5)
    assert world.seen.seen_among(1, [1], since=EPOCH) == {1}


# -- idempotency under arbitrary redelivery -------------------------------------------------

_kinds = st.sampled_from(list(EngagementKind))
_event_specs = st.lists(
    st.tuples(
        _kinds,
        st.integers(1, 3),  # user
        st.integers(1, 4),  # video
        st.floats(0.0, 1.0),  # completion for watches
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(specs=_event_specs, deliveries=st.data())
def test_duplicates_never_double_count(specs: list[Any], deliveries: st.DataObject) -> None:
    events = []
    for kind, user_id, video_id, completion in specs:
        extra: dict[str, Any] = {"completion": completion} if kind is EngagementKind.WATCH else {}
        events.append(make_event(kind, user_id=user_id, video_id=video_id, **extra))
    once, many = World(), World()
    for event in events:
        assert once.recorder.record(event) is True
    # Redeliver: every event at least once, some many times, order kept per first arrival.
    repeats = deliveries.draw(
        st.lists(st.integers(1, 4), min_size=len(events), max_size=len(events))
    )
    stream = []
    for event, count in zip(events, repeats, strict=True):
        stream.extend([event] * count)
    extra_copies = deliveries.draw(st.lists(st.sampled_from(events), max_size=10))
    applied = [many.recorder.record(event) for event in [*stream, *extra_copies]]
    assert sum(applied) == len({event.event_id for event in events})
    video_ids = [1, 2, 3, 4]
    assert many.events.get_stats(video_ids) == once.events.get_stats(video_ids)
    for user_id in (1, 2, 3):
        assert many.events.get_affinities(user_id, [1, 2]) == pytest.approx(
            once.events.get_affinities(user_id, [1, 2])
        )


@settings(max_examples=60, deadline=None)
@given(specs=_event_specs)
def test_statistics_stay_within_their_invariants(specs: list[Any]) -> None:
    world = World()
    for kind, user_id, video_id, completion in specs:
        extra: dict[str, Any] = {"completion": completion} if kind is EngagementKind.WATCH else {}
        world.recorder.record(make_event(kind, user_id=user_id, video_id=video_id, **extra))
    for stats in world.events.get_stats([1, 2, 3, 4]).values():
        assert 0.0 <= stats.completion_sum <= stats.views
        assert 0 <= stats.likes <= 3
    for user_id in (1, 2, 3):
        values = world.events.get_affinities(user_id, [1, 2]).values()
        assert all(0.0 <= value < 1.0 for value in values)
        assert sum(values) < 1.0


def _reference_stats(events: list[Any]) -> dict[int, tuple[int, float, int, int, int]]:
    """Statistics replayed from the first delivery of each event id, in order."""
    seen_ids: set[str] = set()
    likers: dict[int, set[int]] = {}
    stats: dict[int, list[Any]] = {vid: [0, 0.0, 0, 0, 0] for vid in (1, 2, 3, 4)}
    for event in events:
        if event.event_id in seen_ids:
            continue
        seen_ids.add(event.event_id)
        row = stats[event.video_id]
        users = likers.setdefault(event.video_id, set())
        if event.kind is EngagementKind.WATCH:
            row[0] += 1
            row[1] += event.completion
        elif event.kind is EngagementKind.LIKE:
            users.add(event.user_id)
        elif event.kind is EngagementKind.UNLIKE:
            users.discard(event.user_id)
        elif event.kind is EngagementKind.SHARE:
            row[3] += 1
        else:
            row[4] += 1
        row[2] = len(users)
    return {vid: (r[0], r[1], r[2], r[3], r[4]) for vid, r in stats.items()}


@settings(max_examples=60, deadline=None)
@given(specs=_event_specs, redeliveries=st.lists(st.integers(0, 24), max_size=10))
def test_statistics_match_a_replay_of_unique_events(
    specs: list[Any], redeliveries: list[int]
) -> None:
    events = []
    for kind, user_id, video_id, completion in specs:
        extra: dict[str, Any] = {"completion": completion} if kind is EngagementKind.WATCH else {}
        events.append(make_event(kind, user_id=user_id, video_id=video_id, **extra))
    stream = [*events, *(events[i % len(events)] for i in redeliveries)]
    world = World()
    for event in stream:
        world.recorder.record(event)
    expected = _reference_stats(stream)
    for video_id, (views, completion_sum, likes, shares, comments) in expected.items():
        got = world.stats(video_id)
        assert (got[0], got[2], got[3], got[4]) == (views, likes, shares, comments)
        assert got[1] == pytest.approx(completion_sum)


@settings(max_examples=60, deadline=None)
@given(
    specs=_event_specs,
    reuses=st.lists(st.tuples(st.integers(0, 24), st.integers(0, 24)), max_size=10),
)
def test_a_reused_id_raises_exactly_when_the_event_differs(
    specs: list[Any], reuses: list[tuple[int, int]]
) -> None:
    events = []
    for kind, user_id, video_id, completion in specs:
        extra: dict[str, Any] = {"completion": completion} if kind is EngagementKind.WATCH else {}
        events.append(make_event(kind, user_id=user_id, video_id=video_id, **extra))
    # Deliver event ``j``'s payload under event ``i``'s id: a redelivery when they are
    # equal, a conflict otherwise.
    reused = [
        events[j % len(events)].model_copy(update={"event_id": events[i % len(events)].event_id})
        for i, j in reuses
    ]
    world = World()
    first: dict[str, Any] = {}
    for event in [*events, *reused]:
        original = first.setdefault(event.event_id, event)
        if original == event:
            world.recorder.record(event)
        else:
            with pytest.raises(IdempotencyConflictError) as info:
                world.recorder.record(event)
            assert info.value.key == event.event_id
    expected = _reference_stats(events)
    for video_id, (views, completion_sum, likes, shares, comments) in expected.items():
        got = world.stats(video_id)
        assert (got[0], got[2], got[3], got[4]) == (views, likes, shares, comments)
        assert got[1] == pytest.approx(completion_sum)


def test_applied_events_reach_the_engagement_log_with_their_completion() -> None:
    world = World()
    log = FaultInjector(InMemoryEngagementLog(), name="log")
    recorder = EngagementRecorder(world.catalog, world.events, log=log.proxy, now=world.clock.now)
    recorder.watch(1, 1, event_id="w", occurred_at=EPOCH, watched_seconds=20.0)
    recorder.like(1, 2, event_id="l", occurred_at=EPOCH + timedelta(seconds=1))
    logged = log.store.user_events(1, since=EPOCH, limit=10)
    assert [(event.event_id, event.completion) for event in logged] == [("l", None), ("w", 0.5)]
    # A log failure surfaces; redelivering the event completes the job without recounting.
    log.fail()
    with pytest.raises(StoreError):
        recorder.share(1, 3, event_id="s", channel="link", occurred_at=EPOCH)
    log.recover()
    assert recorder.share(1, 3, event_id="s", channel="link", occurred_at=EPOCH) is False
    assert world.stats(3)[3] == 1
    assert len(log.store.user_events(1, since=EPOCH, limit=10)) == 3


def test_nothing_reaches_the_log_when_validation_fails() -> None:
    world = World()
    log = InMemoryEngagementLog()
    recorder = EngagementRecorder(world.catalog, world.events, log=log, now=world.clock.now)
    with pytest.raises(NotFoundError):
        recorder.like(1, 404, event_id="x", occurred_at=EPOCH)
    assert log.events_between(EPOCH - timedelta(days=1), NOW, limit=10) == []


def test_the_time_check_of_the_stores_names_an_out_of_range_time() -> None:
    # The in-memory and adapter stores check times with ``check_aware``.
    late = datetime.max.replace(tzinfo=timezone(timedelta(hours=-14)))
    with pytest.raises(InvalidInputError) as info:
        check_aware("at", late)
    assert info.value.field == "at"
    with pytest.raises(InvalidInputError) as info:
        InMemorySeenStore().mark_seen(1, [1], late)
    assert info.value.field == "at"


class _CountingCatalog(InMemoryCatalog):
    def __init__(self) -> None:
        super().__init__()
        self.video_reads = 0

    def get_video(self, video_id: int) -> Any:
        self.video_reads += 1
        return super().get_video(video_id)


def test_a_video_the_caller_read_is_not_read_again() -> None:
    catalog = _CountingCatalog()
    catalog.put_creator(make_creator(1))
    catalog.put_video(make_video(1, 1, duration_seconds=40.0))
    catalog.put_video(make_video(9, 1, state=ProcessingState.PACKAGING))
    events = InMemoryEventStore()
    recorder = EngagementRecorder(catalog, events)
    video = catalog.get_video(1)
    catalog.video_reads = 0
    assert recorder.watch(5, 1, event_id="w", occurred_at=EPOCH, watched_seconds=10.0, video=video)
    assert recorder.share(5, 1, event_id="s", occurred_at=EPOCH, channel="link", video=video)
    assert recorder.like(5, 1, event_id="l", occurred_at=EPOCH, video=video)
    assert recorder.unlike(5, 1, event_id="u", occurred_at=EPOCH, video=video)
    assert recorder.record(make_event("comment", user_id=5, video_id=1), video=video)
    assert catalog.video_reads == 0
    stats = events.get_stats([1])[1]
    # The completion comes from the given video's duration: 10 s of 40.
    assert (stats.views, stats.completion_sum, stats.shares, stats.likes) == (1, 0.25, 1, 0)
    assert recorder.like(5, 1, event_id="l2", occurred_at=EPOCH) is True
    assert catalog.video_reads == 1
    # The given video is still checked: it must be the event's, and ready.
    with pytest.raises(InvalidInputError) as info:
        recorder.like(5, 2, event_id="x", occurred_at=EPOCH, video=video)
    assert info.value.field == "video"
    with pytest.raises(NotReadyError):
        recorder.like(5, 9, event_id="y", occurred_at=EPOCH, video=catalog.get_video(9))
    assert events.get_stats([9])[9].likes == 0


def test_the_bounded_age_read_of_the_in_memory_store_is_the_exact_read() -> None:
    store = InMemoryEventStore()
    assert isinstance(store, BoundedAgeEventStore)
    store.append(make_event("watch", video_id=2, completion=0.5), creator_id=1)
    store.append(make_event("like", video_id=2, user_id=7), creator_id=1)
    store.append(make_event("share", video_id=3), creator_id=1)
    for max_age in (0, 0.5, 3600):
        got = store.stats_columns_within([3, 2, 9, 2], max_age_seconds=max_age)
        assert got.video_ids.tolist() == [3, 2, 9]
        assert (got.views.tolist(), got.likes.tolist(), got.shares.tolist()) == (
            [0, 1, 0],
            [0, 1, 0],
            [1, 0, 0],
        )
        assert got.completion_sum.tolist() == [0.0, 0.5, 0.0]
    for bad in (-0.1, float("nan"), float("inf"), "1", None, True):
        with pytest.raises(InvalidInputError, match="max_age_seconds"):
            store.stats_columns_within([2], max_age_seconds=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="video_ids"):
        store.stats_columns_within([0], max_age_seconds=1)
