from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reelrank import (
    Creator,
    InMemoryCatalog,
    InMemoryProgressStore,
    InvalidInputError,
    InvalidTransitionError,
    NotFoundError,
    ProcessingProgress,
    ProcessingState,
    ProcessingTracker,
    ProgressStore,
    Rendition,
    RenditionStatus,
    StoreError,
    Video,
    build_hls_master_playlist,
)
from reelrank.testing import ProgressStoreContract

Q, T, P, R, F = (
    ProcessingState.QUEUED,
    ProcessingState.TRANSCODING,
    ProcessingState.PACKAGING,
    ProcessingState.READY,
    ProcessingState.FAILED,
)

# The product's transition table, written out independently of the enum's own table.
ALLOWED = {(Q, T), (T, P), (P, R), (Q, F), (T, F), (P, F), (F, Q)}

START = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def ticking_clock() -> object:
    ticks = itertools.count()
    return lambda: START + timedelta(seconds=next(ticks))


def make_tracker(
    store: ProgressStore | None = None, catalog: InMemoryCatalog | None = None
) -> ProcessingTracker:
    return ProcessingTracker(
        store or InMemoryProgressStore(),
        catalog=catalog,
        clock=ticking_clock(),  # type: ignore[arg-type]
    )


def tracker_in(state: ProcessingState, renditions: tuple[str, ...] = ()) -> ProcessingTracker:
    tracker = make_tracker()
    tracker.start(1, renditions)
    path = {Q: [], T: [T], P: [T, P], R: [T, P, R], F: [F]}[state]
    for step in path:
        if step is P:
            for name in renditions:
                tracker.report_rendition(1, name, 100.0)
        if step is F:
            tracker.fail(1, "boom")
        else:
            tracker.move_to(1, step)
    return tracker


def test_happy_path_with_renditions() -> None:
    tracker = make_tracker()
    progress = tracker.start(1, ["360p", "720p"])
    assert progress.state is Q and progress.percent == 0.0
    assert [r.status for r in progress.renditions] == [RenditionStatus.PENDING] * 2

    tracker.move_to(1, T)
    progress = tracker.report_rendition(1, "360p", 50.0)
    assert progress.rendition("360p").status is RenditionStatus.RUNNING
    assert progress.percent == 25.0
    progress = tracker.report_rendition(1, "360p", 100.0)
    assert progress.rendition("360p").status is RenditionStatus.DONE
    progress = tracker.report_rendition(1, "720p", 100.0)
    assert progress.percent == 100.0

    progress = tracker.move_to(1, P)
    assert progress.state is P and progress.percent == 0.0
    tracker.report(1, 40.0)
    progress = tracker.move_to(1, R)
    assert progress.state is R and progress.percent == 100.0 and progress.error is None
    assert tracker.get(1) == progress


def test_updated_at_moves_forward() -> None:
    tracker = make_tracker()
    first = tracker.start(1)
    second = tracker.move_to(1, T)
    assert second.updated_at > first.updated_at
    assert second.updated_at.tzinfo is not None


@pytest.mark.parametrize(("source", "target"), list(itertools.product(ProcessingState, repeat=2)))
def test_transition_table_is_enforced(source: ProcessingState, target: ProcessingState) -> None:
    tracker = tracker_in(source)
    before = tracker.get(1)
    error = "why" if target is F else None
    if (source, target) in ALLOWED:
        assert tracker.move_to(1, target, error=error).state is target
    else:
        with pytest.raises(InvalidTransitionError) as info:
            tracker.move_to(1, target, error=error)
        assert (info.value.current, info.value.requested) == (source.value, target.value)
        assert tracker.get(1) == before


def test_failed_carries_the_error_and_only_failed_does() -> None:
    tracker = tracker_in(T)
    with pytest.raises(InvalidInputError) as info:
        tracker.move_to(1, F)
    assert info.value.field == "error"
    with pytest.raises(InvalidInputError) as info:
        tracker.move_to(1, P, error="not a failure")
    assert info.value.field == "error"
    progress = tracker.fail(1, "encoder crashed")
    assert progress.state is F and progress.error == "encoder crashed"
    with pytest.raises(InvalidInputError):
        ProcessingProgress(video_id=1, state=F, updated_at=START)
    with pytest.raises(InvalidInputError):
        ProcessingProgress(video_id=1, state=Q, error="x", updated_at=START)


def test_percent_never_goes_back_within_a_state() -> None:
    tracker = tracker_in(P)
    tracker.report(1, 60.0)
    with pytest.raises(InvalidInputError) as info:
        tracker.report(1, 59.9)
    assert info.value.field == "percent"
    assert tracker.get(1).percent == 60.0
    assert tracker.report(1, 60.0).percent == 60.0


def test_rendition_percent_never_goes_back() -> None:
    tracker = tracker_in(T, ("720p",))
    tracker.report_rendition(1, "720p", 30.0)
    with pytest.raises(InvalidInputError) as info:
        tracker.report_rendition(1, "720p", 10.0)
    assert info.value.field == "percent"
    assert tracker.get(1).rendition("720p").percent == 30.0


@pytest.mark.parametrize("bad", [-0.1, 100.1, math.nan, math.inf, "50", True, None])
def test_bad_percent_is_refused(bad: object) -> None:
    tracker = tracker_in(P)
    with pytest.raises(InvalidInputError) as info:
        tracker.report(1, bad)  # type: ignore[arg-type]
    assert info.value.field == "percent"
    assert tracker.get(1).percent == 0.0


def test_no_progress_reports_in_final_states_or_derived_transcoding() -> None:
    for state in (R, F):
        with pytest.raises(InvalidInputError):
            tracker_in(state).report(1, 50.0)
    with pytest.raises(InvalidInputError) as info:
        tracker_in(T, ("720p",)).report(1, 50.0)
    assert info.value.field == "percent"
    # Without renditions, transcoding progress is reported directly.
    assert tracker_in(T).report(1, 50.0).percent == 50.0


def test_packaging_needs_every_rendition_done() -> None:
    tracker = tracker_in(T, ("360p", "720p"))
    tracker.report_rendition(1, "360p", 100.0)
    tracker.report_rendition(1, "720p", 99.0)
    with pytest.raises(InvalidInputError) as info:
        tracker.move_to(1, P)
    assert info.value.field == "renditions"
    assert "720p" in str(info.value)
    assert tracker.get(1).state is T


def test_failed_rendition_fails_the_video_with_its_message() -> None:
    tracker = tracker_in(T, ("360p", "720p"))
    tracker.report_rendition(1, "360p", 20.0)
    progress = tracker.report_rendition(1, "720p", 35.0, error="bad frame at 00:03")
    assert progress.state is F
    assert progress.error == "rendition 720p: bad frame at 00:03"
    failed = progress.rendition("720p")
    assert failed.status is RenditionStatus.FAILED and failed.error == "bad frame at 00:03"


def test_retry_after_failure_starts_renditions_again() -> None:
    tracker = tracker_in(T, ("720p",))
    tracker.report_rendition(1, "720p", 80.0, error="disk full")
    progress = tracker.move_to(1, Q)
    assert progress.state is Q and progress.error is None and progress.percent == 0.0
    assert progress.rendition("720p").status is RenditionStatus.PENDING
    assert progress.rendition("720p").percent == 0.0


def test_renditions_report_only_while_transcoding() -> None:
    tracker = tracker_in(Q, ("720p",))
    with pytest.raises(InvalidInputError) as info:
        tracker.report_rendition(1, "720p", 10.0)
    assert info.value.field == "state"
    tracker.move_to(1, T)
    with pytest.raises(NotFoundError):
        tracker.report_rendition(1, "1080p", 10.0)


def test_start_twice_and_unknown_video() -> None:
    tracker = make_tracker()
    tracker.start(1)
    with pytest.raises(InvalidInputError) as info:
        tracker.start(1)
    assert info.value.field == "video_id"
    with pytest.raises(NotFoundError) as not_found:
        tracker.get(2)
    assert not_found.value.kind == "processing"
    with pytest.raises(InvalidInputError):
        tracker.start(1, ["same", "same"])
    with pytest.raises(InvalidInputError) as info:
        make_tracker().start(0)
    assert info.value.field == "video_id"


# -- with a catalog ------------------------------------------------------------------


def catalog_with_queued_video(renditions: tuple[Rendition, ...]) -> InMemoryCatalog:
    catalog = InMemoryCatalog()
    catalog.put_creator(Creator(creator_id=9, handle="maker"))
    catalog.put_video(
        Video(
            video_id=1,
            creator_id=9,
            duration_seconds=12.0,
            published_at=START,
            renditions=renditions,
            state=Q,
        )
    )
    return catalog


RENDITION = Rendition(width=720, height=1280, bitrate_kbps=2000, codec="avc1.64001f", uri="a.m3u8")


def test_catalog_follows_the_tracker_and_the_manifest_appears_when_ready() -> None:
    catalog = catalog_with_queued_video((RENDITION,))
    tracker = make_tracker(catalog=catalog)
    tracker.start(1, ["720p"])
    tracker.move_to(1, T)
    assert catalog.get_video(1).state is T
    tracker.report_rendition(1, "720p", 100.0)
    tracker.move_to(1, P)
    assert catalog.recent_videos(limit=10) == []
    tracker.move_to(1, R)
    assert catalog.get_video(1).state is R
    assert "#EXTM3U" in build_hls_master_playlist(catalog.get_video(1))


def test_ready_needs_renditions_in_the_catalog() -> None:
    catalog = catalog_with_queued_video(())
    tracker = make_tracker(catalog=catalog)
    tracker.start(1)
    tracker.move_to(1, T)
    tracker.move_to(1, P)
    with pytest.raises(InvalidInputError) as info:
        tracker.move_to(1, R)
    assert info.value.field == "renditions"
    assert catalog.get_video(1).state is P
    assert tracker.get(1).state is P


def test_rendition_failure_fails_the_catalog_video() -> None:
    catalog = catalog_with_queued_video((RENDITION,))
    tracker = make_tracker(catalog=catalog)
    tracker.start(1, ["720p"])
    tracker.move_to(1, T)
    tracker.report_rendition(1, "720p", 5.0, error="codec not supported")
    assert catalog.get_video(1).state is F


def test_start_needs_a_queued_catalog_video() -> None:
    catalog = catalog_with_queued_video((RENDITION,))
    catalog.set_state(1, T)
    with pytest.raises(InvalidInputError) as info:
        make_tracker(catalog=catalog).start(1)
    assert info.value.field == "video_id"
    with pytest.raises(NotFoundError):
        make_tracker(catalog=catalog).start(2)


class FlakyStore(InMemoryProgressStore):
    def __init__(self) -> None:
        super().__init__()
        self.fail_next_put = False

    def put_progress(self, progress: ProcessingProgress) -> None:
        if self.fail_next_put:
            self.fail_next_put = False
            raise StoreError("progress", "connection reset")
        super().put_progress(progress)


def test_retrying_after_a_failed_progress_write_repairs_the_record() -> None:
    catalog = catalog_with_queued_video((RENDITION,))
    store = FlakyStore()
    tracker = make_tracker(store=store, catalog=catalog)
    tracker.start(1)
    store.fail_next_put = True
    with pytest.raises(StoreError):
        tracker.move_to(1, T)
    assert catalog.get_video(1).state is T
    assert tracker.get(1).state is Q
    assert tracker.move_to(1, T).state is T


def test_in_memory_store_satisfies_the_protocol() -> None:
    assert isinstance(InMemoryProgressStore(), ProgressStore)


# -- invariants over random operation sequences -------------------------------------

NAMES = ("360p", "720p", "1080p")

operations = st.lists(
    st.one_of(
        st.tuples(st.just("move"), st.sampled_from(list(ProcessingState))),
        st.tuples(st.just("report"), st.floats(0.0, 100.0)),
        st.tuples(
            st.just("rendition"),
            st.tuples(st.sampled_from(NAMES), st.floats(0.0, 100.0), st.booleans()),
        ),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, len(NAMES)), operations)
def test_random_operations_keep_every_invariant(rendition_count: int, ops: list[object]) -> None:
    tracker = make_tracker()
    tracker.start(1, NAMES[:rendition_count])
    history = [tracker.get(1)]
    for kind, argument in ops:  # type: ignore[misc]
        before = tracker.get(1)
        try:
            if kind == "move":
                tracker.move_to(1, argument, error="stop" if argument is F else None)
            elif kind == "report":
                tracker.report(1, argument)
            else:
                name, percent, fails = argument
                tracker.report_rendition(1, name, percent, error="bad" if fails else None)
        except (InvalidInputError, InvalidTransitionError, NotFoundError):
            assert tracker.get(1) == before, "a refused operation changed the record"
            continue
        after = tracker.get(1)
        if after.state is before.state:
            assert after.percent >= before.percent
        else:
            assert (before.state, after.state) in ALLOWED
        assert (after.state is F) == (after.error is not None)
        for old, new in zip(before.renditions, after.renditions, strict=True):
            if after.state is not Q:
                assert new.percent >= old.percent
        if after.state is T and after.renditions:
            expected = math.fsum(r.percent for r in after.renditions) / len(after.renditions)
            assert after.percent == pytest.approx(expected)
        if after.state is R:
            assert after.percent == 100.0
            assert all(r.status is RenditionStatus.DONE for r in after.renditions)
        history.append(after)
    assert [p.updated_at for p in history] == sorted(p.updated_at for p in history)


class TestInMemoryProgressStore(ProgressStoreContract):
    @pytest.fixture
    def progress_store(self) -> InMemoryProgressStore:
        return InMemoryProgressStore()
