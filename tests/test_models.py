"""Domain models: typed errors that name the field, invariants and round-trips."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reelrank import (
    MAX_ID,
    WEIGHT_FIELDS,
    DegradedDependency,
    DomainModel,
    EngagementEvent,
    EngagementKind,
    FeedItem,
    FeedPage,
    FeedSnapshot,
    InvalidInputError,
    InvalidTransitionError,
    ModelInfo,
    ProcessingState,
    Rendition,
    Video,
    VideoStats,
    affinity,
    affinity_credit,
)
from reelrank.testing import EPOCH, make_event, make_snapshot, make_video


def _video_fields(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = make_video().model_dump()
    fields.update(overrides)
    return fields


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"video_id": 0}, "video_id"),
        ({"video_id": MAX_ID + 1}, "video_id"),
        ({"video_id": True}, "video_id"),
        ({"video_id": 3.0}, "video_id"),
        ({"video_id": "3"}, "video_id"),
        ({"creator_id": -1}, "creator_id"),
        ({"duration_seconds": 0.0}, "duration_seconds"),
        ({"duration_seconds": -5.0}, "duration_seconds"),
        ({"duration_seconds": math.inf}, "duration_seconds"),
        ({"duration_seconds": math.nan}, "duration_seconds"),
        ({"published_at": datetime(2026, 1, 1)}, "published_at"),
        ({"hashtags": ("ok", "not ok")}, "hashtags.1"),
        ({"sound_id": 0}, "sound_id"),
        ({"state": "uploaded"}, "state"),
        (
            {
                "renditions": (
                    {"width": 0, "height": 1, "bitrate_kbps": 1, "codec": "a", "uri": "u"},
                )
            },
            "renditions.0.width",
        ),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_video_fields_raise_invalid_input_naming_the_field(
    overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInputError) as info:
        Video(**_video_fields(**overrides))
    assert info.value.field == field
    with pytest.raises(InvalidInputError) as info:
        Video.model_validate(_video_fields(**overrides))
    assert info.value.field == field


def test_json_validation_raises_invalid_input_too() -> None:
    text = (
        make_video().model_dump_json().replace('"duration_seconds":30.0', '"duration_seconds":-1')
    )
    with pytest.raises(InvalidInputError) as info:
        Video.model_validate_json(text)
    assert info.value.field == "duration_seconds"


def test_models_are_frozen() -> None:
    video = make_video()
    with pytest.raises(Exception, match="frozen"):
        video.title = "changed"  # type: ignore[misc]


def test_timestamps_are_normalised_to_utc() -> None:
    plus_five = timezone(timedelta(hours=5))
    video = make_video(published_at=datetime(2026, 1, 1, 5, tzinfo=plus_five))
    assert video.published_at.utcoffset() == timedelta(0)
    assert video.published_at == EPOCH


def test_hashtags_are_lower_cased_without_hash_and_unique() -> None:
    video = make_video(hashtags=["#Cats", "cats", "DOGS", "#dogs", "fish"])
    assert video.hashtags == ("cats", "dogs", "fish")


def test_processing_state_machine() -> None:
    ready_path = [
        ProcessingState.QUEUED,
        ProcessingState.TRANSCODING,
        ProcessingState.PACKAGING,
        ProcessingState.READY,
    ]
    for current, target in itertools.pairwise(ready_path):
        assert current.can_move_to(target)
        assert not target.can_move_to(current)
    for state in ProcessingState:
        assert state.can_move_to(ProcessingState.FAILED) == (
            state not in {ProcessingState.READY, ProcessingState.FAILED}
        )
    assert ProcessingState.FAILED.can_move_to(ProcessingState.QUEUED)
    with pytest.raises(InvalidTransitionError):
        ProcessingState.READY.check_move_to(ProcessingState.QUEUED)


@pytest.mark.parametrize(
    ("kind", "overrides", "field"),
    [
        ("watch", {}, "watched_seconds"),
        ("watch", {"completion": 1.5}, "completion"),
        ("watch", {"watched_seconds": -0.5}, "watched_seconds"),
        ("like", {"completion": 0.5}, "completion"),
        ("like", {"watched_seconds": 3.0}, "watched_seconds"),
        ("share", {}, "channel"),
        ("like", {"channel": "link"}, "channel"),
        ("like", {"kind": "poke"}, "kind"),
        ("like", {"occurred_at": datetime(2026, 1, 1)}, "occurred_at"),
        ("like", {"event_id": "x" * 129}, "event_id"),
    ],
)
def test_event_fields_depend_on_the_kind(kind: str, overrides: dict[str, Any], field: str) -> None:
    fields: dict[str, Any] = {
        "event_id": "e",
        "kind": kind,
        "user_id": 1,
        "video_id": 1,
        "occurred_at": EPOCH,
    }
    fields.update(overrides)
    with pytest.raises(InvalidInputError) as info:
        EngagementEvent(**fields)
    assert info.value.field == field


def test_stats_cannot_have_more_completion_than_views() -> None:
    assert VideoStats(video_id=1, views=2, completion_sum=2.0).mean_completion == 1.0
    assert VideoStats(video_id=1).mean_completion is None
    with pytest.raises(InvalidInputError) as info:
        VideoStats(video_id=1, views=2, completion_sum=2.5)
    assert info.value.field == "completion_sum"
    with pytest.raises(InvalidInputError) as info:
        VideoStats(video_id=1, likes=-1)
    assert info.value.field == "likes"


def test_snapshot_shapes_must_agree() -> None:
    with pytest.raises(InvalidInputError) as info:
        make_snapshot(video_ids=(1, 2), scores=(0.5,))
    assert info.value.field == "scores"
    with pytest.raises(InvalidInputError) as info:
        make_snapshot(video_ids=(1, 2), contributions=((0.1,) * 5,))
    assert info.value.field == "contributions"
    with pytest.raises(InvalidInputError) as info:
        make_snapshot(video_ids=(1, 1))
    assert info.value.field == "video_ids"
    with pytest.raises(InvalidInputError) as info:
        make_snapshot(video_ids=(1,), scores=(math.nan,))
    assert info.value.field == "scores.0"


def test_snapshot_items_carry_the_breakdown() -> None:
    snapshot = make_snapshot(video_ids=(7, 3))
    items = snapshot.items()
    assert [item.video_id for item in items] == [7, 3]
    assert tuple(items[0].breakdown) == WEIGHT_FIELDS
    assert sum(items[0].breakdown.values()) == pytest.approx(items[0].score)
    assert snapshot.key == (1, None)


def test_feed_page_holds_degradations() -> None:
    page = FeedPage(
        items=[FeedItem(video_id=1, score=0.5, breakdown={"freshness": 0.5})],
        degraded=[DegradedDependency(dependency="stats", fallback="neutral priors")],
        variant="b",
    )
    assert page.next_cursor is None
    assert page.from_cache is False
    assert page.degraded[0].dependency == "stats"
    with pytest.raises(InvalidInputError) as info:
        FeedItem(video_id=1, score=math.inf)
    assert info.value.field == "score"


def test_model_info_metrics_must_be_finite() -> None:
    with pytest.raises(InvalidInputError) as info:
        ModelInfo(name="m", version="v1", created_at=EPOCH, metrics={"auc": math.nan})
    assert info.value.field == "metrics.auc"


# -- affinity -------------------------------------------------------------------------------


def test_affinity_credit_per_kind() -> None:
    assert affinity_credit(EngagementKind.WATCH, 0.3) == 0.3
    assert affinity_credit(EngagementKind.LIKE) == -affinity_credit(EngagementKind.UNLIKE)
    with pytest.raises(InvalidInputError):
        affinity_credit(EngagementKind.WATCH)


@given(
    credits=st.lists(st.floats(0.0, 1e6, allow_nan=False), min_size=1, max_size=20),
)
def test_affinities_of_a_user_lie_in_unit_interval_and_sum_below_one(
    credits: list[float],
) -> None:
    total = sum(credits)
    values = [affinity(credit, total) for credit in credits]
    assert all(0.0 <= value < 1.0 for value in values)
    assert sum(values) <= 1.0 + 1e-9
    # More credit with a creator never means less affinity.
    ranked = sorted(zip(credits, values, strict=True))
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(ranked))


# -- round-trips ----------------------------------------------------------------------------

_ids = st.integers(1, MAX_ID)
_utc_times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
_renditions = st.builds(
    Rendition,
    width=st.integers(1, 4096),
    height=st.integers(1, 4096),
    bitrate_kbps=st.integers(1, 50_000),
    codec=st.sampled_from(["avc1.64001f", "hvc1", "av01.0.05M.08"]),
    uri=st.text(min_size=1, max_size=40),
)
_videos = st.builds(
    Video,
    video_id=_ids,
    creator_id=_ids,
    duration_seconds=st.floats(0.001, 86_400.0),
    published_at=_utc_times,
    title=st.text(max_size=50),
    description=st.text(max_size=100),
    hashtags=st.lists(st.from_regex(r"\A[a-z0-9_]{1,12}\Z"), max_size=5, unique=True).map(tuple),
    sound_id=st.none() | _ids,
    renditions=st.lists(_renditions, max_size=3).map(tuple),
    state=st.sampled_from(list(ProcessingState)),
)
_finite = st.floats(-1e6, 1e6, allow_nan=False)


@st.composite
def _snapshots(draw: st.DrawFn) -> FeedSnapshot:
    video_ids = draw(st.lists(_ids, max_size=20, unique=True))
    width = len(WEIGHT_FIELDS)
    return FeedSnapshot(
        user_id=draw(_ids),
        variant=draw(st.none() | st.from_regex(r"\A[a-z][a-z0-9_-]{0,10}\Z")),
        video_ids=tuple(video_ids),
        scores=tuple(draw(st.lists(_finite, min_size=len(video_ids), max_size=len(video_ids)))),
        contributions=tuple(
            tuple(draw(st.lists(_finite, min_size=width, max_size=width))) for _ in video_ids
        ),
        created_at=draw(_utc_times),
        config_tag=draw(st.from_regex(r"\A[a-z0-9][a-z0-9.]{0,10}\Z")),
    )


@given(video=_videos)
def test_videos_round_trip_through_json_and_dict(video: Video) -> None:
    assert Video.model_validate_json(video.model_dump_json()) == video
    assert Video.model_validate(video.model_dump()) == video


@given(snapshot=_snapshots())
def test_snapshots_round_trip_through_json(snapshot: FeedSnapshot) -> None:
    assert FeedSnapshot.model_validate_json(snapshot.model_dump_json()) == snapshot
    assert len(snapshot.items()) == len(snapshot.video_ids)


@given(
    kind=st.sampled_from(list(EngagementKind)),
    completion=st.floats(0.0, 1.0),
    occurred_at=_utc_times,
    variant=st.none() | st.just("treatment"),
)
def test_events_round_trip_through_json(
    kind: EngagementKind, completion: float, occurred_at: datetime, variant: str | None
) -> None:
    extra: dict[str, Any] = {"completion": completion} if kind is EngagementKind.WATCH else {}
    event = make_event(kind, occurred_at=occurred_at, variant=variant, **extra)
    assert EngagementEvent.model_validate_json(event.model_dump_json()) == event


def test_nested_errors_name_the_full_path() -> None:
    with pytest.raises(InvalidInputError) as info:
        FeedPage(items=[FeedItem(video_id=1, score=1.0), {"video_id": 2, "score": math.inf}])
    assert info.value.field == "items.1.score"
    with pytest.raises(InvalidInputError) as info:
        FeedPage(items=[], degraded=[{"dependency": "", "fallback": "none"}])
    assert info.value.field == "degraded.0.dependency"


def _domain_models() -> list[type[DomainModel]]:
    pending, found = list(DomainModel.__subclasses__()), []
    while pending:
        model = pending.pop()
        if model not in found:
            found.append(model)
            pending.extend(model.__subclasses__())
    return sorted(found, key=lambda model: f"{model.__module__}.{model.__qualname__}")


@pytest.mark.parametrize("model", _domain_models(), ids=lambda model: model.__name__)
def test_every_domain_model_forbids_unknown_fields_and_documents_every_field(
    model: type[DomainModel],
) -> None:
    assert model.model_config.get("extra") == "forbid"
    assert model.model_config.get("frozen") is True
    assert model.__doc__, f"{model.__name__} has no docstring"
    undocumented = [
        name for name, field in model.model_fields.items() if not (field.description or "").strip()
    ]
    assert undocumented == [], f"{model.__name__} fields without a docstring: {undocumented}"
