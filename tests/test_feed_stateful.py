"""Random sequences of publishing, engagement, paging and outages against the feed service."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from reelrank import (
    BreakerState,
    EngagementRecorder,
    FeedPage,
    FeedRankingService,
    FeedServiceConfig,
    FeedUnavailableError,
    InMemoryCatalog,
    InMemoryEventStore,
    InMemoryFeedCache,
    InMemorySeenStore,
    LRUFeedCache,
    RecorderConfig,
    StoreDeadlines,
    StoreError,
    TieredFeedCache,
)
from reelrank.feed._cursor import CursorCodec
from reelrank.feed._paging import snapshot_id
from reelrank.models import FeedSnapshot
from reelrank.testing import EPOCH, FaultInjector, ManualClock, make_creator, make_video

USERS = st.integers(min_value=1, max_value=3)
CREATORS = 3
SECRET = "stateful-cursor-secret"
SNAPSHOT_TTL = 600.0


class RecordingLRUFeedCache(LRUFeedCache):
    """An LRU level that remembers every snapshot put in it, by snapshot id.

    Every snapshot the service ranks is put in every cache level, this one included
    even while the shared level fails, so the model can look up the snapshot any
    cursor points to.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.recorded: dict[str, FeedSnapshot] = {}

    def put_many(self, snapshots: Sequence[FeedSnapshot], *, ttl_seconds: float) -> None:
        for snapshot in snapshots:
            self.recorded[snapshot_id(snapshot)] = snapshot
        super().put_many(snapshots, ttl_seconds=ttl_seconds)


class FeedMachine(RuleBasedStateMachine):
    """Model: what each user was served and watched, and how many pages were asked for."""

    @initialize(videos=st.integers(min_value=0, max_value=12))
    def build(self, videos: int) -> None:
        self.clock = ManualClock(EPOCH + timedelta(days=1))
        self.catalog = InMemoryCatalog()
        for creator in range(1, CREATORS + 1):
            self.catalog.put_creator(make_creator(creator))
        self.events = InMemoryEventStore()
        self.seen = InMemorySeenStore()
        self.recorder = EngagementRecorder(
            self.catalog,
            self.events,
            seen=self.seen,
            config=RecorderConfig(mark_watched_seen=True),
            now=self.clock.now,
        )
        self.local = RecordingLRUFeedCache(max_entries=2, clock=self.clock.monotonic)
        # The seen store stays healthy: it is what the no-repeat guarantee rests on.
        self.faults = {
            "catalog": FaultInjector(self.catalog, name="catalog"),
            "events": FaultInjector(self.events, name="events"),
            "cache": FaultInjector(InMemoryFeedCache(clock=self.clock.monotonic), name="cache"),
        }
        self.cache = TieredFeedCache(self.local, self.faults["cache"].proxy, local_ttl_seconds=30)
        self.service = FeedRankingService(
            catalog=self.faults["catalog"].proxy,
            events=self.faults["events"].proxy,
            seen=self.seen,
            cache=self.cache,
            config=FeedServiceConfig(
                snapshot_size=6,
                snapshot_ttl_seconds=SNAPSHOT_TTL,
                candidate_pool_ttl_seconds=5,
                refresh_pool_in_background=False,
                # Outages here fail at once; generous deadlines keep a busy machine's
                # scheduling delays from turning into spurious timeouts.
                deadlines=StoreDeadlines(catalog=30, events=30, seen=30, models=30, cache=30),
                cursor_secret=SECRET,
            ),
            clock=self.clock.now,
            monotonic=self.clock.monotonic,
        )
        self.cursor_codec = CursorCodec(SECRET.encode(), 21_600.0)
        self.published: list[int] = []
        self.served: dict[int, list[int]] = {}
        self.watched_before_serving: dict[int, set[int]] = {}
        self.cursors: dict[int, str] = {}
        self.issued: dict[int, list[str]] = {}
        self.answered: dict[tuple[int, str, int], tuple[datetime, list[int]]] = {}
        self.last_request: tuple[int, str, int] | None = None
        self.down: set[str] = set()
        self.requests = 0
        self.replays = 0
        self.pages = 0
        self.events_recorded = 0
        for _ in range(videos):
            self.publish(creator=1 + len(self.published) % CREATORS)

    def teardown(self) -> None:
        if hasattr(self, "service"):
            self.service.close()

    def _request(self, user: int, limit: int, cursor: str | None) -> None:
        self.requests += 1
        try:
            page = self.service.feed(user, limit, cursor)
        except FeedUnavailableError:
            assert self._failing("catalog"), "unavailable only while the catalog fails"
            return
        self.pages += 1
        self._check_nothing_skipped(user, page)
        ids = [item.video_id for item in page.items]
        if cursor is not None:
            # The service remembers a page by what its cursor pins (snapshot and
            # offset), not by the token: a replayed page's cursor is a new token for the
            # same place, and redeeming either is the same request.
            pinned = self.cursor_codec.decode(
                cursor, user_id=str(user), now=self.clock.now().timestamp()
            )
            request = (user, f"{pinned.snapshot_id}@{pinned.offset}", limit)
            first = self.answered.get(request)
            if first is not None and self._remembered(first[0]):
                # A cursor redeemed again gets its first page back, and only that.
                assert ids == first[1], "a retried cursor returned another page"
                self.replays += 1
                self._continue(user, page)
                return
            self.answered[request] = (self.clock.now(), ids)
            self.last_request = (user, cursor, limit)
        self._serve(user, page)

    def _remembered(self, answered_at: datetime) -> bool:
        """Whether a page answered at ``answered_at`` is still remembered for retries."""
        return (self.clock.now() - answered_at).total_seconds() < SNAPSHOT_TTL

    def _check_nothing_skipped(self, user: int, page: FeedPage) -> None:
        """Everything before the page's end in its snapshot is on the page or was seen.

        A page starts at its cursor's offset only in the snapshot the cursor was issued
        for; after the snapshot changed it starts at the top of the current one, so no
        unseen video there is passed over. The seen store is healthy here, so "seen"
        is exactly what was served or watched before.
        """
        if page.next_cursor is None:
            return
        state = self.cursor_codec.decode(
            page.next_cursor, user_id=str(user), now=self.clock.now().timestamp()
        )
        snapshot = self.local.recorded[state.snapshot_id]
        before = set(self.served.get(user, ())) | self.watched_before_serving.get(user, set())
        on_page = {item.video_id for item in page.items}
        skipped = [
            video_id
            for video_id in snapshot.video_ids[: state.offset]
            if video_id not in on_page and video_id not in before
        ]
        assert not skipped, f"unseen videos {skipped} were passed over"

    def _failing(self, store: str) -> bool:
        """Down, or recovered while its circuit is still open."""
        breaker = self.service.breakers[store]
        return store in self.down or breaker.state is not BreakerState.CLOSED

    def _serve(self, user: int, page: FeedPage) -> None:
        ids = [item.video_id for item in page.items]
        self.served.setdefault(user, []).extend(ids)
        watched = self.watched_before_serving.get(user, set())
        assert not watched & set(ids), "a watched video was served afterwards"
        self._continue(user, page)

    def _continue(self, user: int, page: FeedPage) -> None:
        if page.next_cursor is None:
            self.cursors.pop(user, None)
        else:
            self.cursors[user] = page.next_cursor
            self.issued.setdefault(user, []).append(page.next_cursor)

    @rule(creator=st.integers(min_value=1, max_value=CREATORS))
    def publish(self, creator: int) -> None:
        video_id = len(self.published) + 1
        self.catalog.put_video(
            make_video(video_id, creator, published_at=self.clock.now(), sound_id=creator)
        )
        self.published.append(video_id)

    def _event_id(self) -> str:
        self.events_recorded += 1
        return f"e{self.events_recorded}"

    @precondition(lambda self: self.published)
    @rule(user=USERS, pick=st.integers(min_value=0), completion=st.floats(0.0, 1.0))
    def watch(self, user: int, pick: int, completion: float) -> None:
        video = self.published[pick % len(self.published)]
        self.recorder.watch(user, video, event_id=self._event_id(), completion=completion)
        self.watched_before_serving.setdefault(user, set()).add(video)

    @precondition(lambda self: self.published)
    @rule(user=USERS, pick=st.integers(min_value=0))
    def like(self, user: int, pick: int) -> None:
        video = self.published[pick % len(self.published)]
        self.recorder.like(user, video, event_id=self._event_id())

    @precondition(lambda self: self.published)
    @rule(user=USERS, pick=st.integers(min_value=0))
    def share(self, user: int, pick: int) -> None:
        video = self.published[pick % len(self.published)]
        self.recorder.share(user, video, event_id=self._event_id(), channel="link")

    @rule(user=USERS, limit=st.integers(min_value=1, max_value=4))
    def feed(self, user: int, limit: int) -> None:
        self._request(user, limit, None)

    @precondition(lambda self: self.cursors)
    @rule(data=st.data(), limit=st.integers(min_value=1, max_value=4))
    def next_page(self, data: st.DataObject, limit: int) -> None:
        user = data.draw(st.sampled_from(sorted(self.cursors)))
        self._request(user, limit, self.cursors[user])

    @precondition(lambda self: self.issued)
    @rule(data=st.data(), limit=st.integers(min_value=1, max_value=4))
    def earlier_cursor(self, data: st.DataObject, limit: int) -> None:
        """A cursor kept from an earlier page (another device), perhaps of a replaced
        snapshot; one redeemed before with the same page size is a retry."""
        user = data.draw(st.sampled_from(sorted(self.issued)))
        self._request(user, limit, data.draw(st.sampled_from(self.issued[user])))

    @precondition(lambda self: self.cursors)
    @rule(data=st.data(), first=st.integers(min_value=1, max_value=4), limit=st.integers(1, 4))
    def resume_after_another_device(self, data: st.DataObject, first: int, limit: int) -> None:
        """The snapshot is replaced and paged on another device, then this one resumes."""
        user = data.draw(st.sampled_from(sorted(self.cursors)))
        cursor = self.cursors[user]
        self.invalidate(user)
        self._request(user, first, None)
        self._request(user, limit, cursor)

    @precondition(lambda self: self.last_request is not None)
    @rule()
    def retry_last_cursor(self) -> None:
        """The client timed out on the last cursor request and sends it again."""
        assert self.last_request is not None
        user, cursor, limit = self.last_request
        self._request(user, limit, cursor)

    @rule(store=st.sampled_from(["catalog", "events", "cache"]))
    def outage(self, store: str) -> None:
        self.faults[store].fail()
        self.down.add(store)

    @rule(store=st.sampled_from(["catalog", "events", "cache"]))
    def recovery(self, store: str) -> None:
        self.faults[store].recover()
        self.down.discard(store)

    @rule(user=USERS)
    def invalidate(self, user: int) -> None:
        try:
            self.service.invalidate(user)
        except StoreError:
            assert self._failing("cache")

    @rule(seconds=st.sampled_from([1.0, 6.0, 45.0, 700.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @invariant()
    def no_video_is_served_twice(self) -> None:
        for ids in self.served.values():
            assert len(ids) == len(set(ids))

    @invariant()
    def every_served_video_exists(self) -> None:
        known = set(self.published)
        for ids in self.served.values():
            assert set(ids) <= known

    @invariant()
    def cache_counters_add_up(self) -> None:
        stats = self.service.stats()
        local, shared = stats.cache_levels
        assert stats.pages == self.pages
        # A remembered page is served without looking up the snapshot.
        assert local.lookups == self.requests - self.replays
        assert local.errors == 0
        assert shared.lookups == local.misses
        assert stats.pages_from_cache <= local.hits + shared.hits
        assert stats.pages_replayed == self.replays
        assert stats.pages_from_cache + stats.snapshots_ranked + self.replays >= stats.pages


FeedMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestFeedMachine = FeedMachine.TestCase
