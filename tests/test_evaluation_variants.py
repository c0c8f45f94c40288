"""Reading an online experiment back from the variants recorded on events."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pd = pytest.importorskip("pandas")
pytest.importorskip("ranx")

from reelrank import EngagementEvent, InMemoryEngagementLog  # noqa: E402
from reelrank.evaluation import (  # noqa: E402
    VARIANT_METRICS,
    compare_variants,
    events_frame,
    unpaired_bootstrap,
    variant_outcomes,
)
from reelrank.exceptions import InvalidInputError  # noqa: E402

NAN = math.nan
COLUMNS = ["user_id", "video_id", "time", "kind", "completion", "variant"]

# user 1 and 2 in control, 3 in fresh; 4 has events in both variants; 5 has no variant.
LOG = pd.DataFrame(
    [
        (1, 10, 1.0, "watch", 0.8, "control"),
        (1, 10, 2.0, "like", NAN, "control"),
        (1, 11, 3.0, "watch", 0.2, "control"),
        (2, 10, 1.0, "watch", 0.6, "control"),
        (2, 10, 2.0, "share", NAN, "control"),
        (3, 12, 1.0, "watch", 1.0, "fresh"),
        (3, 12, 2.0, "comment", NAN, "fresh"),
        (3, 13, 3.0, "watch", 0.5, "fresh"),
        (3, 13, 4.0, "like", NAN, "fresh"),
        (3, 13, 5.0, "unlike", NAN, "fresh"),
        (4, 10, 1.0, "watch", 0.9, "control"),
        (4, 11, 2.0, "watch", 0.9, "fresh"),
        (5, 10, 1.0, "watch", 0.9, None),
    ],
    columns=COLUMNS,
)


def test_per_user_outcomes_by_hand() -> None:
    outcomes = variant_outcomes(LOG)
    assert outcomes.mixed_users == 1
    table = outcomes.per_user.pivot(index="user_id", columns="metric", values="value")
    assert sorted(table.index) == [1, 2, 3]
    # user 1: grades v10 = 1 (0.8 >= 0.5) + 1 (like) = 2, v11 = 0 (0.2 < 0.5)
    # user 2: v10 = 1 + 2 (share) = 3; user 3: v12 = 1 + 1 (comment) = 2, v13 = 1 (like undone)
    expected = {
        1: {"watches": 2, "completion": 0.5, "likes": 1, "shares": 0, "comments": 0,
            "relevant": 1, "gain": 2},
        2: {"watches": 1, "completion": 0.6, "likes": 0, "shares": 1, "comments": 0,
            "relevant": 1, "gain": 3},
        3: {"watches": 2, "completion": 0.75, "likes": 0, "shares": 0, "comments": 1,
            "relevant": 2, "gain": 3},
    }  # fmt: skip
    for user, values in expected.items():
        for metric, value in values.items():
            assert table.loc[user, metric] == pytest.approx(value), (user, metric)
    variants = outcomes.per_user.groupby("user_id")["variant"].first().to_dict()
    assert variants == {1: "control", 2: "control", 3: "fresh"}
    assert list(outcomes.per_user["metric"].iloc[:2]) == ["watches", "watches"]


def test_summary_is_the_mean_over_users_of_each_variant() -> None:
    summary = variant_outcomes(LOG).summary.set_index(["variant", "metric"])
    assert summary.loc[("control", "completion"), "value"] == pytest.approx(0.55)
    assert summary.loc[("control", "gain"), "value"] == pytest.approx(2.5)
    assert summary.loc[("control", "gain"), "users"] == 2
    assert summary.loc[("fresh", "relevant"), "value"] == pytest.approx(2.0)
    assert summary.loc[("fresh", "relevant"), "users"] == 1
    assert set(summary.index.get_level_values("metric")) == set(VARIANT_METRICS)


def test_a_user_without_a_watch_has_no_completion() -> None:
    log = pd.DataFrame([(1, 10, 1.0, "like", NAN, "a")], columns=COLUMNS)
    per_user = variant_outcomes(log).per_user
    assert "completion" not in set(per_user["metric"])
    assert per_user.set_index("metric").loc["likes", "value"] == 1.0


def test_compare_variants_of_constant_outcomes_is_exact() -> None:
    rows = [(u, 10, 1.0, "watch", 0.5, "a") for u in range(1, 6)]
    rows += [(u, 10, 1.0, "watch", 1.0, "b") for u in range(6, 9)]
    row = compare_variants(
        pd.DataFrame(rows, columns=COLUMNS), control="a", treatment="b", metric="completion"
    ).iloc[0]
    assert (row["control_mean"], row["treatment_mean"], row["difference"]) == (0.5, 1.0, 0.5)
    assert (row["ci_low"], row["ci_high"], row["p_value"]) == (0.5, 0.5, 0.0)
    assert (row["control_users"], row["treatment_users"]) == (5, 3)


def test_unpaired_interval_matches_the_normal_one() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.random(300), rng.random(200) + 0.05
    per_user = pd.DataFrame(
        {
            "variant": ["a"] * 300 + ["b"] * 200,
            "user_id": np.arange(500),
            "metric": "m",
            "value": np.concatenate([a, b]),
        }
    )
    row = unpaired_bootstrap(per_user, "a", "b", resamples=4000, seed=1).iloc[0]
    standard_error = math.sqrt(a.var(ddof=1) / 300 + b.var(ddof=1) / 200)
    assert row["difference"] == pytest.approx(b.mean() - a.mean())
    assert row["ci_low"] < row["difference"] < row["ci_high"]
    assert row["ci_high"] - row["ci_low"] == pytest.approx(2 * 1.96 * standard_error, rel=0.1)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(0.0, 10.0), min_size=1, max_size=30),
    st.lists(st.floats(0.0, 10.0), min_size=1, max_size=30),
    st.floats(-5.0, 5.0),
)
def test_unpaired_interval_is_bounded_and_shifts_with_the_treatment(
    a: list[float], b: list[float], shift: float
) -> None:
    def frame(treatment: list[float]) -> Any:
        return pd.DataFrame(
            {
                "variant": ["a"] * len(a) + ["b"] * len(treatment),
                "user_id": np.arange(len(a) + len(treatment)),
                "metric": "m",
                "value": np.asarray(a + treatment, dtype=np.float64),
            }
        )

    row = unpaired_bootstrap(frame(b), "a", "b", resamples=200).iloc[0]
    assert min(b) - max(a) - 1e-9 <= row["ci_low"] <= row["ci_high"] <= max(b) - min(a) + 1e-9
    assert 0.0 <= row["p_value"] <= 1.0
    moved = unpaired_bootstrap(frame([x + shift for x in b]), "a", "b", resamples=200).iloc[0]
    for column in ("difference", "ci_low", "ci_high"):
        assert moved[column] == pytest.approx(row[column] + shift, abs=1e-9)


def test_events_frame_reads_the_variants_recorded_in_a_log() -> None:
    t0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    log = InMemoryEngagementLog()
    for index, (user, variant) in enumerate([(1, "control"), (2, "fresh"), (3, None)]):
        log.record(
            EngagementEvent(
                event_id=f"e{index}",
                kind="watch",
                user_id=user,
                video_id=7,
                occurred_at=t0 + dt.timedelta(seconds=index),
                completion=0.9,
                variant=variant,
            )
        )
    frame = events_frame(log.events_between(t0, t0 + dt.timedelta(hours=1), limit=100))
    assert list(frame.columns) == COLUMNS
    variants = frame.sort_values("user_id")["variant"]
    assert variants.iloc[:2].tolist() == ["control", "fresh"] and pd.isna(variants.iloc[2])
    assert frame["time"].min() == t0.timestamp()
    outcomes = variant_outcomes(frame)
    assert set(outcomes.summary["variant"]) == {"control", "fresh"}


def test_errors_name_the_field() -> None:
    with pytest.raises(InvalidInputError) as info:
        variant_outcomes(LOG.drop(columns="variant"))
    assert info.value.field == "variant"
    with pytest.raises(InvalidInputError) as info:
        compare_variants(LOG, control="control", treatment="missing")
    assert info.value.field == "variant"
    with pytest.raises(InvalidInputError) as info:
        compare_variants(LOG, control="control", treatment="fresh", metric="ndcg")
    assert info.value.field == "metric"
    with pytest.raises(InvalidInputError) as info:
        events_frame(["not an event"])  # type: ignore[list-item]
    assert info.value.field == "events"
