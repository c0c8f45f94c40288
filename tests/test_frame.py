"""score_frame on pandas DataFrames and pyarrow Tables."""

from __future__ import annotations

import datetime as dt
import sys
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")

import reference as ref  # noqa: E402

import reelrank.scoring._frame  # noqa: E402
from reelrank import (  # noqa: E402
    WEIGHT_FIELDS,
    InvalidInputError,
    RankingConfig,
    score_frame,
)
from reelrank.scoring import Candidates, Ranker  # noqa: E402

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
OUTPUTS = ["score", *WEIGHT_FIELDS]


def video_frame(rows: int = 40, seed: int = 3) -> Any:
    """One row per video, with a pass-through ``title`` column and a few missing dl scores."""
    rng = np.random.default_rng(seed)
    views = rng.integers(0, 5_000, rows)
    dl_score = rng.random(rows)
    dl_score[::5] = np.nan
    ages = pd.to_timedelta(rng.uniform(0, 200, rows), unit="h")
    return pd.DataFrame(
        {
            "video_id": np.arange(1000, 1000 + rows, dtype=np.int64),
            "title": [f"video {i}" for i in range(rows)],
            "creator_id": rng.integers(1, 8, rows),
            "published_at": pd.Timestamp(NOW) - ages,
            "views": views,
            "completion_sum": views * rng.random(rows),
            "likes": rng.integers(0, 300, rows),
            "shares": rng.integers(0, 50, rows),
            "comments": rng.integers(0, 80, rows),
            "dl_score": dl_score,
        }
    )


def user_video_frame() -> Any:
    """One row per (user, video): three users over the same videos, each with its affinity."""
    videos = video_frame(rows=12)
    parts = []
    for user_id in (1, 2, 3):
        part = videos.copy()
        part.insert(0, "user_id", user_id)
        part["affinity"] = np.linspace(0.0, 1.0, len(part))[::-1] if user_id == 2 else user_id / 4
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def engine_scores(frame: Any, config: RankingConfig | None = None) -> tuple[Any, Any]:
    """Scores and contributions straight from the engine, for comparison."""
    candidates = Candidates.from_arrays(
        video_id=frame["video_id"].to_numpy(np.int64),
        creator_id=frame["creator_id"].to_numpy(np.int64),
        published_at=frame["published_at"].map(lambda t: t.timestamp()).to_numpy(np.float64),
        views=frame["views"].to_numpy(np.float64),
        completion_sum=frame["completion_sum"].to_numpy(np.float64),
        likes=frame["likes"].to_numpy(np.float64),
        shares=frame["shares"].to_numpy(np.float64),
        comments=frame["comments"].to_numpy(np.float64),
        dl_score=frame["dl_score"].to_numpy(np.float64),
    )
    affinity = frame["affinity"].to_numpy(np.float64) if "affinity" in frame else None
    ranker = Ranker(config)
    now = NOW.timestamp()
    return (
        ranker.score(candidates, now=now, affinity=affinity),
        ranker.explain(candidates, now=now, affinity=affinity),
    )


# -- pandas ----------------------------------------------------------------------------


def test_pandas_scores_match_the_engine_and_contributions_sum_to_the_score() -> None:
    frame = video_frame()
    scored = score_frame(frame, now=NOW)
    expected_scores, expected_contributions = engine_scores(frame)
    assert list(scored.columns) == [*frame.columns, *OUTPUTS]
    assert all(scored[name].dtype == np.float32 for name in OUTPUTS)
    np.testing.assert_array_equal(scored["score"].to_numpy(), expected_scores)
    np.testing.assert_array_equal(scored[list(WEIGHT_FIELDS)].to_numpy(), expected_contributions)
    np.testing.assert_allclose(
        scored[list(WEIGHT_FIELDS)].sum(axis=1), scored["score"], rtol=1e-5, atol=1e-6
    )


def test_pass_through_columns_and_index_are_untouched() -> None:
    frame = video_frame().set_index(pd.Index(np.arange(40) * 10 + 5, name="row"))
    original = frame.copy()
    scored = score_frame(frame, now=NOW)
    pd.testing.assert_frame_equal(frame, original)  # the input is not modified
    pd.testing.assert_frame_equal(scored[list(frame.columns)], original)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_match_the_float64_reference(seed: int) -> None:
    columns = ref.random_columns(np.random.default_rng(seed), 300, now=NOW.timestamp())
    rng = np.random.default_rng(seed + 100)
    affinity = rng.uniform(0.0, 1.0, len(columns))
    frame = pd.DataFrame(columns.as_kwargs()).assign(affinity=affinity)
    config = RankingConfig(
        freshness=0.3,
        completion=0.3,
        engagement=0.2,
        affinity=0.1,
        deep_learning=0.1,
        freshness_half_life_hours=12.0,
    )
    scored = score_frame(frame, now=NOW, config=config)
    expected = ref.explain(columns, NOW.timestamp(), config, affinity)
    np.testing.assert_allclose(scored[list(WEIGHT_FIELDS)], expected, atol=2e-6, rtol=0)
    np.testing.assert_allclose(scored["score"], expected.sum(axis=1), atol=2e-6, rtol=0)


def test_duplicate_index_labels_and_any_ids_pass_through() -> None:
    frame = video_frame(rows=6)
    frame.index = pd.Index([3, 3, 1, 1, 0, 0])
    frame["video_id"] = [-5, -5, 0, 2**40, 7, 7]  # ids are labels here, not checked for range
    scored = score_frame(frame, now=NOW)
    assert scored.index.tolist() == [3, 3, 1, 1, 0, 0]
    assert scored["video_id"].tolist() == [-5, -5, 0, 2**40, 7, 7]
    assert len(scored) == 6


def test_per_user_rows_carry_their_own_affinity() -> None:
    frame = user_video_frame()
    config = RankingConfig()
    scored = score_frame(frame, now=NOW, config=config)
    np.testing.assert_allclose(
        scored["affinity"], config.affinity * frame["affinity"], rtol=1e-6, atol=1e-7
    )
    expected_scores, _ = engine_scores(frame, config)
    np.testing.assert_array_equal(scored["score"].to_numpy(), expected_scores)
    # Only affinity depends on the user: the other contributions repeat per user.
    per_user = scored.groupby("user_id")
    for name in ("freshness", "completion", "engagement", "deep_learning"):
        assert per_user[name].nunique().eq(scored[scored.user_id == 1][name].nunique()).all()
        np.testing.assert_array_equal(
            scored.loc[scored.user_id == 1, name].to_numpy(),
            scored.loc[scored.user_id == 3, name].to_numpy(),
        )
    assert (
        scored.loc[scored.user_id == 3, "score"].to_numpy()
        > scored.loc[scored.user_id == 1, "score"].to_numpy()
    ).all()


def test_missing_affinity_column_means_no_affinity() -> None:
    scored = score_frame(video_frame(), now=NOW)
    assert (scored["affinity"] == 0.0).all()


def test_missing_dl_score_scores_as_the_neutral_value() -> None:
    frame = video_frame()
    config = RankingConfig()
    scored = score_frame(frame, now=NOW, config=config)
    missing = frame["dl_score"].isna()
    np.testing.assert_allclose(
        scored.loc[missing, "deep_learning"], config.deep_learning * config.dl_neutral_score
    )
    without = score_frame(frame.drop(columns="dl_score"), now=NOW, config=config)
    np.testing.assert_allclose(
        without["deep_learning"], config.deep_learning * config.dl_neutral_score
    )


def test_nullable_dtypes_are_accepted() -> None:
    frame = video_frame()
    nullable = frame.astype({"views": "Int64", "likes": "Int32", "dl_score": "Float64"})
    pd.testing.assert_frame_equal(
        score_frame(nullable, now=NOW)[OUTPUTS], score_frame(frame, now=NOW)[OUTPUTS]
    )


def test_string_ids_score_like_integer_ids() -> None:
    frame = video_frame()
    named = frame.assign(
        video_id=frame["video_id"].map("v{}".format),
        creator_id=frame["creator_id"].map("c{}".format),
    )
    scored = score_frame(named, now=NOW)
    assert scored["video_id"].tolist() == named["video_id"].tolist()
    pd.testing.assert_frame_equal(scored[OUTPUTS], score_frame(frame, now=NOW)[OUTPUTS])


def test_categorical_ids_are_accepted_and_kept() -> None:
    frame = video_frame()
    categorical = frame.assign(creator_id=frame["creator_id"].map("c{}".format).astype("category"))
    scored = score_frame(categorical, now=NOW)
    assert isinstance(scored["creator_id"].dtype, pd.CategoricalDtype)
    pd.testing.assert_frame_equal(scored[OUTPUTS], score_frame(frame, now=NOW)[OUTPUTS])
    table = pa.Table.from_pandas(categorical, preserve_index=False)
    assert pa.types.is_dictionary(table.schema.field("creator_id").type)
    scored_table = score_frame(table, now=NOW)
    np.testing.assert_array_equal(
        scored_table.column("score").to_numpy(), scored["score"].to_numpy()
    )
    with pytest.raises(InvalidInputError) as caught:
        score_frame(frame.assign(creator_id=frame["creator_id"].astype(float).astype("category")))
    assert caught.value.field == "creator_id"


def test_existing_output_columns_are_replaced() -> None:
    frame = video_frame().assign(score="stale", freshness=-1)
    scored = score_frame(frame, now=NOW)
    assert list(scored.columns) == [c for c in frame.columns if c not in OUTPUTS] + OUTPUTS
    pd.testing.assert_frame_equal(scored[OUTPUTS], score_frame(video_frame(), now=NOW)[OUTPUTS])


# -- timestamps and now ----------------------------------------------------------------


def test_datetime_and_epoch_inputs_agree() -> None:
    frame = video_frame()
    epoch = frame.assign(published_at=frame["published_at"].map(lambda t: t.timestamp()))
    by_datetime = score_frame(frame, now=NOW)
    by_epoch = score_frame(epoch, now=NOW.timestamp())
    pd.testing.assert_frame_equal(by_datetime[OUTPUTS], by_epoch[OUTPUTS])


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_every_datetime_resolution_and_time_zone_agrees(unit: str) -> None:
    frame = video_frame()
    converted = frame.assign(
        published_at=frame["published_at"]
        .dt.floor("s")
        .dt.as_unit(unit)
        .dt.tz_convert("Asia/Tokyo")
    )
    floored = frame.assign(published_at=frame["published_at"].dt.floor("s"))
    pd.testing.assert_frame_equal(
        score_frame(converted, now=NOW)[OUTPUTS], score_frame(floored, now=NOW)[OUTPUTS]
    )


def test_arrow_backed_dataframes_score_like_numpy_backed_ones() -> None:
    frame = video_frame()
    arrow_backed = pa.Table.from_pandas(frame, preserve_index=False).to_pandas(
        types_mapper=pd.ArrowDtype
    )
    assert isinstance(arrow_backed["published_at"].dtype, pd.ArrowDtype)
    scored = score_frame(arrow_backed, now=NOW)
    expected = score_frame(frame, now=NOW)
    np.testing.assert_array_equal(scored[OUTPUTS].to_numpy(), expected[OUTPUTS].to_numpy())
    naive = arrow_backed.assign(
        published_at=arrow_backed["published_at"].astype(pd.ArrowDtype(pa.timestamp("ns")))
    )
    with pytest.raises(InvalidInputError, match="naive") as caught:
        score_frame(naive, now=NOW)
    assert caught.value.field == "published_at"


def test_naive_datetimes_are_rejected() -> None:
    frame = video_frame()
    naive = frame.assign(published_at=frame["published_at"].dt.tz_localize(None))
    with pytest.raises(InvalidInputError, match="naive") as caught:
        score_frame(naive, now=NOW)
    assert caught.value.field == "published_at"


def test_naive_now_is_rejected() -> None:
    with pytest.raises(InvalidInputError) as caught:
        score_frame(video_frame(), now=dt.datetime(2026, 3, 1, 12))
    assert caught.value.field == "now"


def test_now_defaults_to_the_current_time() -> None:
    frame = video_frame()
    shift = time.time() - NOW.timestamp()  # publish the frame relative to the real clock
    recent = frame.assign(published_at=frame["published_at"] + pd.Timedelta(seconds=shift))
    before = time.time()
    scored = score_frame(recent)
    after = time.time()
    # Freshness only decreases with time, so the default lies between the two bounds.
    earliest = score_frame(recent, now=before)["freshness"]
    latest = score_frame(recent, now=after)["freshness"]
    assert (scored["freshness"] <= earliest + 1e-7).all()
    assert (scored["freshness"] >= latest - 1e-7).all()


# -- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "column",
    [
        "video_id",
        "creator_id",
        "published_at",
        "views",
        "completion_sum",
        "likes",
        "shares",
        "comments",
    ],
)
def test_a_missing_required_column_is_named(column: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        score_frame(video_frame().drop(columns=column), now=NOW)
    assert caught.value.field == column


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("views", np.nan, "NaN"),
        ("likes", -1.0, ">= 0"),
        ("shares", np.inf, "finite"),
        ("comments", -np.inf, "finite"),
        ("completion_sum", np.nan, "NaN"),
        ("published_at", np.nan, "NaN"),
        ("affinity", 1.5, r"\[0, 1\]"),
        ("affinity", np.nan, "NaN"),
        ("dl_score", 2.0, r"\[0, 1\]"),
        ("dl_score", -0.1, ">= 0"),
        ("dl_score", np.inf, "finite"),
    ],
)
def test_bad_values_name_the_column_and_row(column: str, value: float, reason: str) -> None:
    frame = video_frame().assign(affinity=0.5)
    if column == "published_at":
        frame["published_at"] = frame["published_at"].map(lambda t: t.timestamp())
    frame[column] = frame[column].astype(np.float64)
    frame.loc[7, column] = value
    with pytest.raises(InvalidInputError, match=reason) as caught:
        score_frame(frame, now=NOW)
    assert caught.value.field == column
    assert "row 7" in str(caught.value)


@pytest.mark.parametrize(
    ("column", "values"),
    [
        ("views", ["many"] * 40),
        ("likes", [True, False] * 20),
        ("published_at", ["2026-01-01T00:00:00Z"] * 40),
        ("video_id", np.linspace(0, 1, 40)),
    ],
)
def test_ill_typed_columns_are_named(column: str, values: Any) -> None:
    frame = video_frame()
    frame[column] = values
    with pytest.raises(InvalidInputError) as caught:
        score_frame(frame, now=NOW)
    assert caught.value.field == column


def test_missing_ids_are_rejected() -> None:
    frame = video_frame().astype({"creator_id": "Int64"})
    frame.loc[4, "creator_id"] = pd.NA
    with pytest.raises(InvalidInputError, match="row 4") as caught:
        score_frame(frame, now=NOW)
    assert caught.value.field == "creator_id"


def test_other_objects_are_refused() -> None:
    with pytest.raises(TypeError, match="DataFrame"):
        score_frame({"views": [1]}, now=NOW)  # type: ignore[call-overload]


# -- pyarrow ---------------------------------------------------------------------------


def test_arrow_tables_score_like_dataframes() -> None:
    frame = video_frame()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    scored = score_frame(table, now=NOW)
    assert isinstance(scored, pa.Table)
    assert scored.column_names == [*table.column_names, *OUTPUTS]
    assert all(scored.schema.field(name).type == pa.float32() for name in OUTPUTS)
    assert scored.select(table.column_names).equals(table)
    expected = score_frame(frame, now=NOW)
    for name in OUTPUTS:
        np.testing.assert_array_equal(scored.column(name).to_numpy(), expected[name].to_numpy())


def test_arrow_tables_of_several_chunks_or_none() -> None:
    table = pa.Table.from_pandas(video_frame(), preserve_index=False)
    chunked = pa.concat_tables([table.slice(0, 7), table.slice(7, 20), table.slice(27)])
    assert chunked.column("views").num_chunks == 3
    assert score_frame(chunked, now=NOW).equals(score_frame(table, now=NOW))
    empty = pa.Table.from_batches([], schema=table.schema)
    assert score_frame(empty, now=NOW).column_names == [*table.column_names, *OUTPUTS]


def test_arrow_per_user_rows_with_null_or_nan_model_scores() -> None:
    frame = user_video_frame()
    with_nulls = pa.Table.from_pandas(frame, preserve_index=False)
    assert with_nulls.column("dl_score").null_count > 0
    with_nans = with_nulls.set_column(
        with_nulls.column_names.index("dl_score"),
        "dl_score",
        pa.array(frame["dl_score"].to_numpy(), from_pandas=False),
    )
    assert with_nans.column("dl_score").null_count == 0
    expected = score_frame(frame, now=NOW)
    for table in (with_nulls, with_nans):
        scored = score_frame(table, now=NOW)
        for name in OUTPUTS:
            np.testing.assert_array_equal(scored.column(name).to_numpy(), expected[name].to_numpy())


def test_arrow_naive_timestamps_are_rejected_and_epoch_agrees() -> None:
    frame = video_frame()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    index = table.column_names.index("published_at")
    naive = table.set_column(index, "published_at", table.column(index).cast(pa.timestamp("ns")))
    with pytest.raises(InvalidInputError, match="naive") as caught:
        score_frame(naive, now=NOW)
    assert caught.value.field == "published_at"
    epoch = table.set_column(
        index, "published_at", pa.array(frame["published_at"].map(lambda t: t.timestamp()))
    )
    by_epoch = score_frame(epoch, now=NOW)
    by_datetime = score_frame(table, now=NOW)
    for name in OUTPUTS:
        np.testing.assert_array_equal(
            by_epoch.column(name).to_numpy(), by_datetime.column(name).to_numpy()
        )


def test_arrow_bad_columns_are_named() -> None:
    table = pa.Table.from_pandas(video_frame(), preserve_index=False)
    with pytest.raises(InvalidInputError) as caught:
        score_frame(table.drop_columns(["shares"]), now=NOW)
    assert caught.value.field == "shares"
    index = table.column_names.index("likes")
    negative = table.set_column(index, "likes", pa.array([-1] * table.num_rows))
    with pytest.raises(InvalidInputError, match="row 0") as caught:
        score_frame(negative, now=NOW)
    assert caught.value.field == "likes"
    text = table.set_column(index, "likes", pa.array(["x"] * table.num_rows))
    with pytest.raises(InvalidInputError, match="numeric") as caught:
        score_frame(text, now=NOW)
    assert caught.value.field == "likes"


# -- chunks and progress ---------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 60), chunk_rows=st.integers(1, 70), seed=st.integers(0, 2**16))
def test_chunking_does_not_change_the_scores(rows: int, chunk_rows: int, seed: int) -> None:
    frame = video_frame(rows=rows, seed=seed)
    whole = score_frame(frame, now=NOW, progress=False)
    chunked = score_frame(frame, now=NOW, chunk_rows=chunk_rows, progress=False)
    pd.testing.assert_frame_equal(whole, chunked)
    np.testing.assert_allclose(
        chunked[list(WEIGHT_FIELDS)].sum(axis=1), chunked["score"], rtol=1e-5, atol=1e-6
    )


def test_progress_bar_appears_only_for_large_frames(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reelrank.scoring._frame, "_PROGRESS_MIN_ROWS", 20)
    score_frame(video_frame(rows=20), now=NOW, chunk_rows=7)
    assert capsys.readouterr().err == ""
    frame = video_frame(rows=30)
    score_frame(frame, now=NOW, chunk_rows=7)
    assert "scoring: 100%" in capsys.readouterr().err
    score_frame(frame, now=NOW, chunk_rows=7, progress=False)
    assert capsys.readouterr().err == ""
    score_frame(video_frame(rows=5), now=NOW, progress=True)
    assert "scoring: 100%" in capsys.readouterr().err


def test_chunk_rows_must_be_positive() -> None:
    with pytest.raises(InvalidInputError) as caught:
        score_frame(video_frame(), now=NOW, chunk_rows=0)
    assert caught.value.field == "chunk_rows"


def test_a_missing_extra_is_reported_with_the_install_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)
    with pytest.raises(ImportError, match=r"reelrank\[frame\]"):
        score_frame(video_frame(), now=NOW, progress=True)


def test_empty_frames_score_to_empty_columns() -> None:
    frame = video_frame().iloc[:0]
    scored = score_frame(frame, now=NOW)
    assert list(scored.columns) == [*frame.columns, *OUTPUTS]
    assert len(scored) == 0
