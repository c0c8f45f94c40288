"""Trending sounds and hashtags: decay math, windows, trends and stale snapshots."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reelrank import (
    ConfigError,
    EngagementLog,
    InMemoryCatalog,
    InMemoryEngagementLog,
    InMemoryTrendingSnapshotStore,
    InvalidInputError,
    StoreError,
    Trend,
    Trending,
    TrendingConfig,
    TrendingKind,
    TrendingSnapshotStore,
    decayed_scores,
)
from reelrank.testing import (
    EPOCH,
    CoordinatedTrendingSnapshotStoreContract,
    FaultInjector,
    TrendingSnapshotStoreContract,
    make_creator,
    make_event,
    make_video,
)

NOW = EPOCH + timedelta(days=30)


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


# -- decay math -----------------------------------------------------------------------


def test_decayed_scores_follow_the_formula() -> None:
    scores = decayed_scores(
        ["a", "b", "a"], np.array([2.0, 1.0, 4.0]), np.array([0.0, 6.0, 12.0]), 6.0
    )
    assert scores == pytest.approx({"a": 2.0 + 4.0 * 0.25, "b": 0.5})


def test_future_uses_count_as_age_zero() -> None:
    scores = decayed_scores(["a"], np.array([3.0]), np.array([-5.0]), 6.0)
    assert scores == {"a": 3.0}


def test_decayed_scores_reject_mismatched_inputs() -> None:
    with pytest.raises(InvalidInputError) as caught:
        decayed_scores(["a"], np.array([1.0, 2.0]), np.array([1.0, 2.0]), 6.0)
    assert caught.value.field == "keys"


uses = st.lists(
    st.tuples(
        st.sampled_from(["x", "y", "z"]),
        st.floats(0.0, 100.0),
        st.floats(0.0, 200.0),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(uses=uses, half_life=st.floats(0.1, 100.0), shift=st.floats(0.01, 100.0))
def test_scores_are_non_negative_and_decay_with_age(
    uses: list[tuple[str, float, float]], half_life: float, shift: float
) -> None:
    keys = [key for key, _, _ in uses]
    weights = np.array([weight for _, weight, _ in uses])
    ages = np.array([age for _, _, age in uses])
    fresh = decayed_scores(keys, weights, ages, half_life)
    older = decayed_scores(keys, weights, ages + shift, half_life)
    for key, score in fresh.items():
        assert score >= 0.0
        assert older[key] <= score
        assert score <= sum(w for k, w, _ in uses if k == key) + 1e-9
        if score > 0.0:
            # Every use ages by the same shift: the total decays by exactly 2**(-shift/h).
            assert older[key] == pytest.approx(score * 2.0 ** (-shift / half_life), rel=1e-9)


# -- the service ----------------------------------------------------------------------


def build(
    config: TrendingConfig | None = None,
) -> tuple[InMemoryCatalog, InMemoryEngagementLog, Trending]:
    catalog = InMemoryCatalog()
    catalog.put_creator(make_creator(1))
    log = InMemoryEngagementLog()
    return catalog, log, Trending(catalog, log, config=config)


def test_in_memory_stores_satisfy_their_protocols() -> None:
    assert isinstance(InMemoryEngagementLog(), EngagementLog)
    assert isinstance(InMemoryTrendingSnapshotStore(), TrendingSnapshotStore)


def test_sound_scores_follow_the_documented_formula() -> None:
    config = TrendingConfig(half_life_hours=6.0, post_weight=5.0, like_weight=2.0)
    catalog, log, trending = build(config)
    catalog.put_video(make_video(1, published_at=NOW - hours(6), sound_id=7))
    catalog.put_video(make_video(2, published_at=EPOCH, sound_id=8))  # too old to post
    log.record(make_event("like", video_id=1, occurred_at=NOW))
    log.record(make_event("like", video_id=2, occurred_at=NOW - hours(12)))
    log.record(make_event("like", video_id=2, occurred_at=NOW - hours(25)))  # out of window
    result = trending.top("sound", now=NOW)
    assert result.stale_as_of is None
    assert result.computed_at == NOW
    assert [(item.key, item.count) for item in result.items] == [(7, 2), (8, 1)]
    assert result.items[0].score == pytest.approx(5.0 * 0.5 + 2.0)
    assert result.items[1].score == pytest.approx(2.0 * 0.25)
    # The like 25 h ago is 1 h into the previous window (ending 24 h ago).
    assert result.items[1].previous_score == pytest.approx(2.0 * 2.0 ** (-1 / 6))
    assert result.items[1].delta == pytest.approx(0.5 - 2.0 * 2.0 ** (-1 / 6))
    assert result.items[1].trend is Trend.FALLING
    assert result.items[0].trend is Trend.NEW and result.items[0].ratio is None


def test_hashtags_trend_and_rise() -> None:
    catalog, log, trending = build()
    catalog.put_video(make_video(1, published_at=EPOCH, hashtags=("dance", "fun")))
    catalog.put_video(make_video(2, published_at=EPOCH, hashtags=("cook",)))
    for number in range(3):
        log.record(make_event(video_id=1, occurred_at=NOW - hours(1 + number)))
    log.record(make_event(video_id=1, occurred_at=NOW - hours(25)))
    log.record(make_event(video_id=2, occurred_at=NOW - hours(30)))
    result = trending.top(TrendingKind.HASHTAG, now=NOW, limit=10)
    # "cook" was used in the previous window only: it is not trending now.
    assert [item.key for item in result.items] == ["dance", "fun"]
    dance = result.items[0]
    assert dance.count == 3 and dance.trend is Trend.RISING
    assert dance.ratio == pytest.approx(dance.score / dance.previous_score)


def test_window_is_configurable_and_validated() -> None:
    catalog, log, trending = build()
    catalog.put_video(make_video(1, published_at=EPOCH, sound_id=3))
    log.record(make_event(video_id=1, occurred_at=NOW - hours(2)))
    assert trending.top("sound", now=NOW, window_hours=1).items == ()
    assert trending.top("sound", now=NOW, window_hours=3).items[0].score > 0.0
    for bad in (0.5, 169, float("nan"), "24", True):
        with pytest.raises(InvalidInputError) as caught:
            trending.top("sound", now=NOW, window_hours=bad)  # type: ignore[arg-type]
        assert caught.value.field == "window_hours"
    with pytest.raises(InvalidInputError) as caught:
        trending.top("creators", now=NOW)  # type: ignore[arg-type]
    assert caught.value.field == "kind"
    with pytest.raises(InvalidInputError) as caught:
        trending.top("sound", now=NOW.replace(tzinfo=None))
    assert caught.value.field == "now"
    with pytest.raises(InvalidInputError) as caught:
        trending.top("sound", now=NOW, limit=10_000)
    assert caught.value.field == "limit"
    with pytest.raises(ConfigError) as caught:
        TrendingConfig(window_hours=200)
    assert caught.value.field == "window_hours"


def test_a_failing_store_serves_the_last_snapshot_marked_stale() -> None:
    catalog = InMemoryCatalog()
    catalog.put_creator(make_creator(1))
    catalog.put_video(make_video(1, published_at=EPOCH, sound_id=3))
    log = FaultInjector(InMemoryEngagementLog(), name="log")
    log.store.record(make_event(video_id=1, occurred_at=NOW - hours(1)))
    snapshots = InMemoryTrendingSnapshotStore()
    trending = Trending(catalog, log.proxy, snapshots=snapshots)
    fresh = trending.top("sound", now=NOW)
    log.fail()
    later = NOW + hours(1)
    stale = trending.top("sound", now=later, limit=1)
    assert stale.stale_as_of == NOW
    assert stale.items == fresh.items[:1]
    # Another window has no snapshot: the store's error propagates.
    with pytest.raises(StoreError):
        trending.top("sound", now=later, window_hours=2)
    log.recover()
    assert trending.top("sound", now=later).stale_as_of is None


def test_a_recent_snapshot_is_reused_until_it_is_too_old() -> None:
    catalog, log, trending = build(TrendingConfig(reuse_seconds=60))
    catalog.put_video(make_video(1, published_at=EPOCH, sound_id=3))
    catalog.put_video(make_video(2, published_at=EPOCH, sound_id=4))
    log.record(make_event(video_id=1, occurred_at=NOW - hours(1)))
    first = trending.top("sound", now=NOW)
    log.record(make_event(video_id=2, occurred_at=NOW))
    reused = trending.top("sound", now=NOW + timedelta(seconds=60))
    assert reused == first and reused.stale_as_of is None
    fresh = trending.top("sound", now=NOW + timedelta(seconds=61))
    assert [item.key for item in fresh.items] == [4, 3]


def _with_store(
    config: TrendingConfig,
) -> tuple[InMemoryCatalog, InMemoryEngagementLog, InMemoryTrendingSnapshotStore, Trending]:
    catalog, log, _ = build()
    catalog.put_video(make_video(1, published_at=EPOCH, sound_id=3))
    catalog.put_video(make_video(2, published_at=EPOCH, sound_id=4))
    log.record(make_event(video_id=1, occurred_at=NOW - hours(1)))
    store = InMemoryTrendingSnapshotStore()
    return catalog, log, store, Trending(catalog, log, snapshots=store, config=config)


def test_an_old_snapshot_is_served_while_another_caller_holds_the_lease() -> None:
    _, log, store, trending = _with_store(TrendingConfig(reuse_seconds=60))
    first = trending.top("sound", now=NOW)
    log.record(make_event(video_id=2, occurred_at=NOW))
    later = NOW + timedelta(seconds=120)
    assert store.acquire_lease(TrendingKind.SOUND, 24.0, owner="other", seconds=30)
    # Too old to reuse, but the holder is computing: the previous snapshot, as it was.
    assert trending.top("sound", now=later) == first
    assert trending.top("sound", now=later, limit=1).items == first.items[:1]
    store.release_lease(TrendingKind.SOUND, 24.0, owner="other")
    fresh = trending.top("sound", now=later)
    assert fresh.computed_at == later
    assert [item.key for item in fresh.items] == [4, 3]
    assert store.latest_snapshot(TrendingKind.SOUND, 24.0) == fresh
    # The computing caller gave its lease back.
    assert store.acquire_lease(TrendingKind.SOUND, 24.0, owner="next", seconds=30)


def test_without_a_snapshot_a_held_lease_does_not_stop_the_computation() -> None:
    _, _, store, trending = _with_store(TrendingConfig(reuse_seconds=60))
    assert store.acquire_lease(TrendingKind.SOUND, 24.0, owner="other", seconds=30)
    assert [item.key for item in trending.top("sound", now=NOW).items] == [3]


def test_the_lease_is_given_back_when_the_computation_fails() -> None:
    catalog, log, store, _ = _with_store(TrendingConfig())
    failing = FaultInjector(log, name="log")
    trending = Trending(catalog, failing.proxy, snapshots=store)
    first = trending.top("sound", now=NOW)
    failing.fail()
    stale = trending.top("sound", now=NOW + hours(1))
    assert stale.stale_as_of == first.computed_at
    assert store.acquire_lease(TrendingKind.SOUND, 24.0, owner="next", seconds=30)


def test_zero_reuse_takes_no_lease() -> None:
    _, _, store, trending = _with_store(TrendingConfig(reuse_seconds=0))
    trending.top("sound", now=NOW)
    assert store.acquire_lease(TrendingKind.SOUND, 24.0, owner="other", seconds=30)
    assert trending.top("sound", now=NOW + hours(1)).computed_at == NOW + hours(1)


def test_zero_reuse_computes_on_every_call() -> None:
    catalog, log, trending = build(TrendingConfig(reuse_seconds=0))
    catalog.put_video(make_video(1, published_at=EPOCH, sound_id=3))
    assert trending.top("sound", now=NOW).items == ()
    log.record(make_event(video_id=1, occurred_at=NOW))
    assert [item.key for item in trending.top("sound", now=NOW).items] == [3]


def test_a_failing_snapshot_store_does_not_fail_a_fresh_result() -> None:
    catalog, log, _ = build()
    snapshots = FaultInjector(InMemoryTrendingSnapshotStore(), name="snapshots")
    snapshots.fail(methods=["put_snapshot"])
    trending = Trending(catalog, log, snapshots=snapshots.proxy)
    assert trending.top("hashtag", now=NOW).items == ()


@settings(max_examples=40, deadline=None)
@given(
    uses=st.lists(
        st.tuples(
            st.integers(1, 4),
            st.sampled_from(["watch", "like", "share", "comment", "unlike"]),
            st.floats(0.0, 48.0),
        ),
        max_size=25,
    ),
    later=st.floats(0.01, 48.0),
)
def test_service_scores_are_non_negative_and_only_fall_as_time_passes(
    uses: list[tuple[int, str, float]], later: float
) -> None:
    catalog, log, trending = build()
    for video_id in range(1, 5):
        catalog.put_video(
            make_video(
                video_id,
                published_at=NOW - hours(10 * video_id),
                sound_id=video_id % 2 + 1,
                hashtags=(f"t{video_id % 3}",),
            )
        )
    for video_id, kind, age in uses:
        log.record(make_event(kind, video_id=video_id, occurred_at=NOW - hours(age)))
    for kind in TrendingKind:
        before = {item.key: item for item in trending.top(kind, now=NOW, limit=200).items}
        after = trending.top(kind, now=NOW + hours(later), limit=200).items
        for item in after:
            assert item.score >= 0.0 and item.previous_score >= 0.0
            assert item.score <= before[item.key].score * (1 + 1e-9)
        scores = [(-item.score, str(item.key)) for item in after]
        assert scores == sorted(scores)


# -- the in-memory log ----------------------------------------------------------------


def test_log_is_idempotent_and_ordered_newest_first() -> None:
    log = InMemoryEngagementLog()
    first = make_event(user_id=1, occurred_at=NOW - hours(3))
    assert log.record(first) is True
    assert log.record(first) is False
    second = make_event(user_id=2, occurred_at=NOW - hours(1))
    third = make_event(user_id=1, occurred_at=NOW - hours(2))
    log.record(second)
    log.record(third)
    assert log.events_between(NOW - hours(5), NOW, limit=10) == [second, third, first]
    assert log.events_between(NOW - hours(5), NOW, limit=2) == [second, third]
    assert log.events_between(NOW - hours(2), NOW - hours(1), limit=10) == [third]
    assert log.user_events(1, since=NOW - hours(10), limit=10) == [third, first]
    assert log.user_events(1, since=NOW - hours(2), limit=10) == [third]
    assert log.user_events(9, since=NOW, limit=10) == []
    assert len(log) == 3


def test_pruning_forgets_old_events_but_not_their_ids() -> None:
    log = InMemoryEngagementLog()
    old = make_event(user_id=1, occurred_at=NOW - hours(50))
    kept = make_event(user_id=1, occurred_at=NOW - hours(1))
    gone_user = make_event(user_id=2, occurred_at=NOW - hours(60))
    for event in (old, kept, gone_user):
        log.record(event)
    assert log.prune(NOW - hours(24)) == 2
    assert log.events_between(NOW - hours(100), NOW, limit=10) == [kept]
    assert log.user_events(1, since=NOW - hours(100), limit=10) == [kept]
    assert log.user_events(2, since=NOW - hours(100), limit=10) == []
    assert log.record(old) is False
    assert len(log) == 1


def test_log_rejects_bad_arguments() -> None:
    log = InMemoryEngagementLog()
    with pytest.raises(InvalidInputError) as caught:
        log.events_between(NOW.replace(tzinfo=None), NOW, limit=1)
    assert caught.value.field == "start"
    with pytest.raises(InvalidInputError) as caught:
        log.user_events(0, since=NOW, limit=1)
    assert caught.value.field == "user_id"
    with pytest.raises(InvalidInputError) as caught:
        log.record("not an event")  # type: ignore[arg-type]
    assert caught.value.field == "event"
    assert len(log) == 0


class TestInMemoryTrendingSnapshotStore(
    TrendingSnapshotStoreContract, CoordinatedTrendingSnapshotStoreContract
):
    """Leases expire on an injected clock: the contract's expiry test moves it."""

    @pytest.fixture
    def trending_snapshot_store(self) -> InMemoryTrendingSnapshotStore:
        self.now = 1_000.0
        return InMemoryTrendingSnapshotStore(clock=lambda: self.now)

    def advance(self, seconds: float) -> None:
        self.now += seconds
