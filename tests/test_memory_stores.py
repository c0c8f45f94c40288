"""The in-memory stores against the contract suite, plus what only they promise."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from reelrank import (
    EngagementKind,
    FeedSnapshot,
    InMemoryCatalog,
    InMemoryEngagementLog,
    InMemoryEventStore,
    InMemoryFeedCache,
    InMemoryModelRegistry,
    InMemorySeenStore,
    InvalidInputError,
    InvalidTransitionError,
    NotFoundError,
    ProcessingState,
    StoreError,
    StoreTimeoutError,
    Video,
    VideoStatsColumns,
    affinity,
    affinity_credit,
)
from reelrank.testing import (
    EPOCH,
    AtomicSeenStoreContract,
    CatalogContract,
    EngagementLogContract,
    EventStoreContract,
    FaultInjector,
    FeedCacheContract,
    FollowedColumnsCatalogContract,
    LabelColumnsCatalogContract,
    ManualClock,
    ModelRegistryContract,
    PageTakingSeenStoreContract,
    SeenStoreContract,
    make_creator,
    make_event,
    make_snapshot,
    make_video,
)
from reelrank.validation import check_aware, check_limit


class TestInMemoryCatalog(CatalogContract):
    @pytest.fixture
    def catalog(self) -> InMemoryCatalog:
        return InMemoryCatalog()


class TestInMemoryCatalogFollowedColumns(FollowedColumnsCatalogContract):
    @pytest.fixture
    def catalog(self) -> InMemoryCatalog:
        return InMemoryCatalog()


class TestInMemoryCatalogLabelColumns(LabelColumnsCatalogContract):
    @pytest.fixture
    def catalog(self) -> InMemoryCatalog:
        return InMemoryCatalog()


class TestInMemoryEventStore(EventStoreContract):
    @pytest.fixture
    def event_store(self) -> InMemoryEventStore:
        return InMemoryEventStore()


class TestInMemoryEngagementLog(EngagementLogContract):
    @pytest.fixture
    def engagement_log(self) -> InMemoryEngagementLog:
        return InMemoryEngagementLog()


class TestInMemorySeenStore(SeenStoreContract):
    @pytest.fixture
    def seen_store(self) -> InMemorySeenStore:
        return InMemorySeenStore()


class _TakingSeenStore(InMemorySeenStore):
    """The in-memory seen store plus ``take_unseen`` exactly as the protocol defines it: a
    lookup, then marking what it keeps, under one lock. It shows the atomic contract
    holds for a plainly correct store (the in-memory store itself has no take_unseen)."""

    def __init__(self) -> None:
        super().__init__()
        self._take_lock = threading.Lock()

    def take_unseen(
        self,
        user_id: int,
        video_ids: Sequence[int],
        *,
        limit: int,
        since: datetime,
        at: datetime,
    ) -> list[int]:
        check_limit("limit", limit)
        check_aware("at", at)
        with self._take_lock:
            seen = self.seen_among(user_id, video_ids, since=since)
            taken = [video_id for video_id in video_ids if video_id not in seen][:limit]
            self.mark_seen(user_id, taken, at)
        return taken


class TestReferenceAtomicSeenStore(AtomicSeenStoreContract):
    @pytest.fixture
    def seen_store(self) -> _TakingSeenStore:
        return _TakingSeenStore()


class TestInMemoryPageTakingSeenStore(PageTakingSeenStoreContract):
    @pytest.fixture
    def seen_store(self) -> InMemorySeenStore:
        return InMemorySeenStore()

    @pytest.fixture
    def feed_cache(self) -> InMemoryFeedCache:
        return InMemoryFeedCache()


class TestInMemoryPageTakingWithAnAtomicSeenStore(PageTakingSeenStoreContract):
    """The same, with the rows taken through ``take_unseen``."""

    @pytest.fixture
    def seen_store(self) -> _TakingSeenStore:
        return _TakingSeenStore()

    @pytest.fixture
    def feed_cache(self) -> InMemoryFeedCache:
        return InMemoryFeedCache()


class TestInMemoryFeedCache(FeedCacheContract):
    @pytest.fixture
    def feed_cache(self) -> InMemoryFeedCache:
        self.clock = ManualClock()
        return InMemoryFeedCache(clock=self.clock.monotonic)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)


class TestInMemoryModelRegistry(ModelRegistryContract):
    @pytest.fixture
    def model_registry(self) -> InMemoryModelRegistry:
        return InMemoryModelRegistry()


# -- the feed cache with an injected clock ------------------------------------------------


def test_cache_entries_expire_on_the_injected_clock() -> None:
    clock = ManualClock()
    cache = InMemoryFeedCache(clock=clock.monotonic)
    cache.put(make_snapshot(1), ttl_seconds=10)
    cache.put(make_snapshot(2), ttl_seconds=30)
    clock.advance(9.999)
    assert cache.get(1) is not None
    clock.advance(0.001)
    assert cache.get(1) is None
    assert set(cache.get_many([(1, None), (2, None)])) == {(2, None)}
    assert cache.invalidate_user(1) == 0


def test_purge_expired_drops_only_dead_entries() -> None:
    clock = ManualClock()
    cache = InMemoryFeedCache(clock=clock.monotonic)
    cache.put_many([make_snapshot(1), make_snapshot(1, variant="b")], ttl_seconds=5)
    cache.put(make_snapshot(2), ttl_seconds=50)
    clock.advance(6)
    assert cache.purge_expired() == 2
    assert cache.purge_expired() == 0
    assert cache.get(2) is not None


# -- thread safety ------------------------------------------------------------------------


def test_concurrent_appends_count_every_event_exactly_once() -> None:
    store = InMemoryEventStore()
    events = [make_event("watch", user_id=1 + n % 7, completion=0.5) for n in range(800)]
    barrier = threading.Barrier(4)

    def deliver(offset: int) -> None:
        barrier.wait()
        # Every thread delivers every event, starting at a different point.
        for index in range(len(events)):
            store.append(events[(index + offset * 200) % len(events)], creator_id=3)

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = store.get_stats([1])[1]
    assert stats.views == len(events)
    assert stats.completion_sum == pytest.approx(0.5 * len(events))


def test_concurrent_catalog_writes_and_reads_stay_consistent() -> None:
    catalog = InMemoryCatalog()
    catalog.put_creator(make_creator(1))
    errors: list[BaseException] = []

    def write(start: int) -> None:
        for video_id in range(start, start + 300):
            published_at = EPOCH + timedelta(seconds=video_id)
            catalog.put_video(make_video(video_id, 1, published_at=published_at))

    def read() -> None:
        try:
            for _ in range(300):
                recent = catalog.recent_videos(limit=20)
                times = [video.published_at for video in recent]
                assert times == sorted(times, reverse=True)
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(1 + n * 300,)) for n in range(3)]
    threads.append(threading.Thread(target=read))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(catalog.get_videos(list(range(1, 901)))) == 900
    assert [v.video_id for v in catalog.recent_videos(limit=3)] == [900, 899, 898]


# -- fault injection ----------------------------------------------------------------------


def test_fault_injector_forwards_calls_until_told_to_fail() -> None:
    seen = FaultInjector(InMemorySeenStore(), name="seen")
    store = seen.proxy
    store.mark_seen(1, [5], EPOCH)
    assert store.seen_among(1, [5], since=EPOCH) == {5}
    seen.fail()
    with pytest.raises(StoreError) as info:
        store.seen_among(1, [5], since=EPOCH)
    assert info.value.store == "seen"
    seen.recover()
    assert store.seen_among(1, [5], since=EPOCH) == {5}
    assert seen.calls == {"mark_seen": 1, "seen_among": 3}


def test_fault_injector_fails_a_given_number_of_times_and_methods() -> None:
    catalog = FaultInjector(InMemoryCatalog(), name="catalog")
    catalog.fail(StoreTimeoutError("catalog", "deadline"), times=2, methods=["get_videos"])
    assert catalog.proxy.recent_videos(limit=5) == []
    for _ in range(2):
        with pytest.raises(StoreTimeoutError):
            catalog.proxy.get_videos([1])
    assert catalog.proxy.get_videos([1]) == {}


def test_recover_releases_a_stalled_call() -> None:
    cache = FaultInjector(InMemoryFeedCache(), name="cache")
    # A stall far longer than the pytest timeout: only recover() can end this test.
    cache.stall(3_600)
    result: list[object] = []
    caller = threading.Thread(target=lambda: result.append(cache.proxy.get(1)))
    caller.start()
    caller.join(timeout=0.05)
    assert caller.is_alive()
    assert result == []
    cache.recover()
    caller.join()
    assert result == [None]


def test_proxy_satisfies_the_protocol() -> None:
    from reelrank import Catalog, FeedCache

    assert isinstance(FaultInjector(InMemoryCatalog()).proxy, Catalog)
    assert isinstance(FaultInjector(InMemoryFeedCache()).proxy, FeedCache)


def test_concurrent_seen_and_cache_traffic_loses_nothing() -> None:
    seen = InMemorySeenStore()
    cache = InMemoryFeedCache()
    barrier = threading.Barrier(4)

    def traffic(user_id: int) -> None:
        barrier.wait()
        for step in range(200):
            seen.mark_seen(user_id, [step + 1], EPOCH + timedelta(seconds=step))
            cache.put(make_snapshot(user_id, [step + 1]), ttl_seconds=60)
            cache.get_many([(other, None) for other in range(1, 5)])
            seen.seen_among(user_id, list(range(1, 201)), since=EPOCH)

    threads = [threading.Thread(target=traffic, args=(user,)) for user in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for user_id in range(1, 5):
        assert seen.seen_among(user_id, list(range(1, 201)), since=EPOCH) == set(range(1, 201))
        assert seen.recently_seen(user_id, since=EPOCH, limit=1) == [200]
        snapshot = cache.get(user_id)
        assert snapshot is not None
        assert snapshot.video_ids == (200,)


# -- state machines against brute-force references -----------------------------------------


class CatalogMachine(RuleBasedStateMachine):
    """Random writes; candidate lists must match a brute-force scan of every video."""

    def __init__(self) -> None:
        super().__init__()
        self.catalog = InMemoryCatalog()
        self.videos: dict[int, Video] = {}
        self.follows: dict[int, set[int]] = {}
        for creator_id in (1, 2, 3):
            self.catalog.put_creator(make_creator(creator_id))

    @rule(
        video_id=st.integers(1, 12),
        creator_id=st.integers(1, 3),
        age_minutes=st.integers(0, 5),
        state=st.sampled_from(list(ProcessingState)),
    )
    def put_video(
        self, video_id: int, creator_id: int, age_minutes: int, state: ProcessingState
    ) -> None:
        published_at = EPOCH - timedelta(minutes=age_minutes)
        video = make_video(video_id, creator_id, published_at=published_at, state=state)
        self.catalog.put_video(video)
        self.videos[video_id] = video

    @rule(video_id=st.integers(1, 12), state=st.sampled_from(list(ProcessingState)))
    def set_state(self, video_id: int, state: ProcessingState) -> None:
        current = self.videos.get(video_id)
        if current is None:
            with pytest.raises(NotFoundError):
                self.catalog.set_state(video_id, state)
        elif current.state.can_move_to(state):
            self.videos[video_id] = self.catalog.set_state(video_id, state)
        else:
            with pytest.raises(InvalidTransitionError):
                self.catalog.set_state(video_id, state)

    @rule(user_id=st.integers(1, 2), creator_id=st.integers(1, 3), follow=st.booleans())
    def toggle_follow(self, user_id: int, creator_id: int, follow: bool) -> None:
        followed = self.follows.setdefault(user_id, set())
        if follow:
            self.catalog.follow(user_id, creator_id)
            followed.add(creator_id)
        else:
            self.catalog.unfollow(user_id, creator_id)
            followed.discard(creator_id)

    def _expected(self, creators: set[int] | None, limit: int) -> list[int]:
        ready = [
            v
            for v in self.videos.values()
            if v.state is ProcessingState.READY and (creators is None or v.creator_id in creators)
        ]
        ready.sort(key=lambda v: (v.published_at, v.video_id), reverse=True)
        return [v.video_id for v in ready[:limit]]

    @invariant()
    def candidate_lists_match_a_scan(self) -> None:
        for limit in (0, 3, 50):
            got = [v.video_id for v in self.catalog.recent_videos(limit=limit)]
            assert got == self._expected(None, limit)
            for user_id in (1, 2):
                followed = self.follows.get(user_id, set())
                got = [v.video_id for v in self.catalog.followed_videos(user_id, limit=limit)]
                assert got == self._expected(followed, limit)
        assert self.catalog.get_videos(list(range(1, 13))) == self.videos


TestCatalogMachine = CatalogMachine.TestCase
TestCatalogMachine.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)


class FeedCacheMachine(RuleBasedStateMachine):
    """Random puts, deletes and clock moves; reads must match a dictionary of expiries."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        self.cache = InMemoryFeedCache(clock=self.clock.monotonic)
        self.expected: dict[tuple[int, str | None], tuple[FeedSnapshot, float]] = {}

    keys = st.tuples(st.integers(1, 3), st.sampled_from([None, "a", "b"]))

    @rule(key=keys, ttl=st.integers(1, 20), first_video=st.integers(1, 100))
    def put(self, key: tuple[int, str | None], ttl: int, first_video: int) -> None:
        snapshot = make_snapshot(key[0], [first_video, first_video + 1], variant=key[1])
        self.cache.put(snapshot, ttl_seconds=ttl)
        self.expected[key] = (snapshot, self.clock.monotonic() + ttl)

    @rule(key=keys)
    def delete(self, key: tuple[int, str | None]) -> None:
        was_live = self._live().get(key) is not None
        assert self.cache.delete(*key) is was_live
        self.expected.pop(key, None)

    @rule(user_id=st.integers(1, 3))
    def invalidate(self, user_id: int) -> None:
        live = [key for key in self._live() if key[0] == user_id]
        assert self.cache.invalidate_user(user_id) == len(live)
        for key in [key for key in self.expected if key[0] == user_id]:
            del self.expected[key]

    @rule(seconds=st.integers(0, 8))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    def _live(self) -> dict[tuple[int, str | None], FeedSnapshot]:
        now = self.clock.monotonic()
        return {key: snap for key, (snap, expires) in self.expected.items() if expires > now}

    @invariant()
    def reads_match_the_reference(self) -> None:
        every_key = [(user, variant) for user in (1, 2, 3) for variant in (None, "a", "b")]
        assert self.cache.get_many(every_key) == self._live()


TestFeedCacheMachine = FeedCacheMachine.TestCase
TestFeedCacheMachine.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)


def test_fault_injector_can_be_copied_and_hides_private_names() -> None:
    import copy

    injector = FaultInjector(InMemorySeenStore(), name="seen")
    clone = copy.copy(injector)
    assert clone.proxy.seen_among(1, [1], since=EPOCH) == set()
    with pytest.raises(AttributeError):
        _ = injector._seen


# -- bounded memory: idempotency horizon and seen retention -------------------------------

_DAY = 86_400.0


def test_event_ids_are_forgotten_after_the_idempotency_horizon() -> None:
    clock = ManualClock()
    store = InMemoryEventStore(idempotency_seconds=3_600, clock=clock.monotonic)
    event = make_event("watch", completion=0.5)
    assert store.append(event, creator_id=1) is True
    clock.advance(3_599)
    assert store.append(event, creator_id=1) is False
    assert store.get_stats([1])[1].views == 1
    clock.advance(1)
    # Past the horizon the id is gone, so a (very) late redelivery counts again.
    assert store.append(event, creator_id=1) is True
    assert store.get_stats([1])[1].views == 2


def test_forgotten_event_ids_free_their_memory() -> None:
    clock = ManualClock()
    store = InMemoryEventStore(idempotency_seconds=10, clock=clock.monotonic)
    for _ in range(50):
        store.append(make_event("share"), creator_id=1)
        clock.advance(1)
    # Each append drops the ids older than the horizon: only the last ten remain.
    assert len(store._applied) == 10
    assert store.get_stats([1])[1].shares == 50


def test_without_a_horizon_event_ids_are_kept_for_good() -> None:
    clock = ManualClock()
    store = InMemoryEventStore(idempotency_seconds=None, clock=clock.monotonic)
    event = make_event("like")
    assert store.append(event, creator_id=1) is True
    clock.advance(10 * 365 * _DAY)
    assert store.append(event, creator_id=1) is False


def test_engagement_log_forgets_ids_after_its_horizon() -> None:
    clock = ManualClock()
    log = InMemoryEngagementLog(idempotency_seconds=60, clock=clock.monotonic)
    event = make_event("comment")
    assert log.record(event) is True
    clock.advance(59)
    assert log.record(event) is False
    clock.advance(1)
    assert log.record(event) is True


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "60", True])
def test_bad_retention_settings_name_the_field(bad: object) -> None:
    with pytest.raises(InvalidInputError) as info:
        InMemoryEventStore(idempotency_seconds=bad)  # type: ignore[arg-type]
    assert info.value.field == "idempotency_seconds"
    with pytest.raises(InvalidInputError) as info:
        InMemoryEngagementLog(idempotency_seconds=bad)  # type: ignore[arg-type]
    assert info.value.field == "idempotency_seconds"
    with pytest.raises(InvalidInputError) as info:
        InMemorySeenStore(retention_seconds=bad)  # type: ignore[arg-type]
    assert info.value.field == "retention_seconds"


def test_seen_marks_older_than_the_retention_are_dropped_on_write() -> None:
    store = InMemorySeenStore(retention_seconds=_DAY)
    # One video a minute for ten days: without trimming the store would hold 14,400 marks.
    for minute in range(10 * 24 * 60):
        store.mark_seen(1, [minute + 1], EPOCH + timedelta(minutes=minute))
    # The trim runs when the marks have doubled, so at most two days' worth remain.
    assert 24 * 60 <= len(store) <= 2 * 24 * 60 + 1
    last = EPOCH + timedelta(minutes=10 * 24 * 60 - 1)
    within_a_day = store.recently_seen(1, since=last - timedelta(days=1), limit=10_000)
    assert len(within_a_day) == 24 * 60 + 1


def test_seen_trimming_keeps_everything_inside_the_retention() -> None:
    store = InMemorySeenStore(retention_seconds=30 * _DAY)
    for step in range(500):
        store.mark_seen(7, [step + 1], EPOCH + timedelta(hours=step))
    since = EPOCH + timedelta(hours=499) - timedelta(days=30)
    kept = store.recently_seen(7, since=since, limit=1_000)
    assert kept == list(range(500, 500 - len(kept), -1))
    assert len(kept) == 500  # 500 hours is less than 30 days: nothing was due


def test_seen_store_without_retention_keeps_every_mark() -> None:
    store = InMemorySeenStore(retention_seconds=None)
    for day in range(200):
        store.mark_seen(1, [day + 1], EPOCH + timedelta(days=day))
    assert len(store) == 200


# -- the bulk reads of many users against a brute-force reference -----------------------

_USERS = st.integers(1, 6)
_CREATORS = st.integers(1, 4)


@settings(max_examples=60, deadline=None)
@given(
    videos=st.lists(
        st.tuples(_CREATORS, st.integers(0, 5), st.booleans()), min_size=0, max_size=12
    ),
    follows=st.lists(st.tuples(_USERS, _CREATORS), max_size=12),
    users=st.lists(_USERS, min_size=1, max_size=6, unique=True),
    limit=st.integers(0, 8),
)
def test_followed_videos_many_are_the_newest_ready_videos_of_each_users_follows(
    videos: list[tuple[int, int, bool]],
    follows: list[tuple[int, int]],
    users: list[int],
    limit: int,
) -> None:
    catalog = InMemoryCatalog()
    for creator_id in range(1, 5):
        catalog.put_creator(make_creator(creator_id))
    made = []
    for video_id, (creator_id, age_hours, ready) in enumerate(videos, start=1):
        state = ProcessingState.READY if ready else ProcessingState.QUEUED
        published_at = EPOCH - timedelta(hours=age_hours)
        video = make_video(video_id, creator_id, published_at=published_at, state=state)
        catalog.put_video(video)
        made.append(video)
    for user_id, creator_id in follows:
        catalog.follow(user_id, creator_id)
    many = catalog.followed_videos_many(users, limit=limit)
    assert many == {uid: catalog.followed_videos(uid, limit=limit) for uid in users}
    for uid in users:
        followed = {creator_id for follower, creator_id in follows if follower == uid}
        ready = [v for v in made if v.creator_id in followed and v.state is ProcessingState.READY]
        newest = sorted(ready, key=lambda v: (v.published_at, v.video_id), reverse=True)
        assert many[uid] == newest[:limit]


@settings(max_examples=60, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            st.sampled_from([kind.value for kind in EngagementKind]),
            _USERS,
            _CREATORS,
            st.sampled_from([0.0, 0.25, 0.5, 1.0]),
        ),
        max_size=15,
    ),
    requested=st.dictionaries(_USERS, st.lists(_CREATORS, max_size=5), min_size=1),
)
def test_affinities_many_follow_the_credit_of_each_users_events(
    events: list[tuple[str, int, int, float]], requested: dict[int, list[int]]
) -> None:
    store = InMemoryEventStore()
    credit: dict[tuple[int, int], float] = {}
    likes: set[tuple[int, int]] = set()  # (user, video) pairs liked now
    for kind_name, user_id, creator_id, completion in events:
        kind = EngagementKind(kind_name)
        # One video per creator, so likes and unlikes meet on the same video.
        video = creator_id
        fields = {"completion": completion} if kind is EngagementKind.WATCH else {}
        store.append(
            make_event(kind, user_id=user_id, video_id=video, **fields), creator_id=creator_id
        )
        if kind is EngagementKind.LIKE and (user_id, video) in likes:
            continue
        if kind is EngagementKind.UNLIKE and (user_id, video) not in likes:
            continue
        if kind is EngagementKind.LIKE:
            likes.add((user_id, video))
        elif kind is EngagementKind.UNLIKE:
            likes.discard((user_id, video))
        earned = affinity_credit(kind, completion if kind is EngagementKind.WATCH else None)
        credit[user_id, creator_id] = credit.get((user_id, creator_id), 0.0) + earned
    many = store.get_affinities_many(requested)
    assert many == {uid: store.get_affinities(uid, ids) for uid, ids in requested.items()}
    for uid, ids in requested.items():
        total = sum(value for (user, _), value in credit.items() if user == uid)
        expected = {cid: affinity(credit.get((uid, cid), 0.0), total) for cid in ids}
        assert many[uid] == pytest.approx(expected)


@settings(max_examples=60, deadline=None)
@given(
    marks=st.lists(st.tuples(_USERS, st.integers(1, 8), st.integers(0, 48)), max_size=20),
    users=st.lists(_USERS, min_size=1, max_size=6, unique=True),
    since_hours=st.integers(0, 50),
    limit=st.integers(0, 10),
)
def test_recently_seen_many_are_each_users_latest_marks_since(
    marks: list[tuple[int, int, int]], users: list[int], since_hours: int, limit: int
) -> None:
    store = InMemorySeenStore(retention_seconds=None)
    latest: dict[tuple[int, int], datetime] = {}
    for user_id, video_id, age_hours in marks:
        at = EPOCH - timedelta(hours=age_hours)
        store.mark_seen(user_id, [video_id], at)
        latest[user_id, video_id] = max(at, latest.get((user_id, video_id), at))
    since = EPOCH - timedelta(hours=since_hours)
    many = store.recently_seen_many(users, since=since, limit=limit)
    assert many == {uid: store.recently_seen(uid, since=since, limit=limit) for uid in users}
    for uid in users:
        kept = [(at, vid) for (user, vid), at in latest.items() if user == uid and at >= since]
        assert many[uid] == [vid for _, vid in sorted(kept, reverse=True)][:limit]


_EVENT_KINDS = ("watch", "like", "unlike", "share", "comment")


@settings(max_examples=150, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            st.sampled_from(_EVENT_KINDS),
            st.integers(1, 4),  # user
            st.integers(1, 6),  # video
            st.floats(0.0, 1.0, allow_nan=False),
        ),
        max_size=60,
    ),
    requested=st.lists(st.integers(1, 8), max_size=12),
)
def test_stats_columns_read_from_the_counts_equal_the_stats_as_columns(
    events: list[tuple[str, int, int, float]], requested: list[int]
) -> None:
    """The columns, read from the running counts, are the documented definition:
    ``VideoStatsColumns.from_stats(get_stats(ids), ids)`` (ids 7 and 8 never engaged)."""
    store = InMemoryEventStore()
    for kind, user_id, video_id, completion in events:
        extra = {"completion": completion} if kind == "watch" else {}
        store.append(make_event(kind, user_id=user_id, video_id=video_id, **extra), creator_id=1)
    columns = store.stats_columns(requested)
    assert columns == VideoStatsColumns.from_stats(store.get_stats(requested), requested)
    for column in (columns.video_ids, columns.views, columns.completion_sum, columns.likes):
        assert not column.flags.writeable
