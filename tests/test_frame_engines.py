"""score_frame's output prefix, and score_frame on polars and Dask frames.

Ray Data and Spark are not dependencies; the recipes of docs/notebooks.md are run here
only where those engines happen to be installed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")

from test_frame import NOW, OUTPUTS, user_video_frame, video_frame  # noqa: E402

import reelrank.scoring._frame as frame_module  # noqa: E402
from reelrank import InvalidInputError, RankingConfig, score_frame, warmup_dask  # noqa: E402

PREFIXED = [f"contrib_{name}" for name in OUTPUTS]


# -- prefix -----------------------------------------------------------------------------


def test_prefix_keeps_the_input_affinity_and_gives_the_same_values() -> None:
    frame = user_video_frame()
    plain = score_frame(frame, now=NOW)
    prefixed = score_frame(frame, now=NOW, prefix="contrib_")
    assert list(prefixed.columns) == [*frame.columns, *PREFIXED]
    pd.testing.assert_frame_equal(prefixed[list(frame.columns)], frame)  # affinity kept raw
    np.testing.assert_array_equal(prefixed[PREFIXED].to_numpy(), plain[OUTPUTS].to_numpy())


def test_prefix_on_arrow_tables() -> None:
    frame = user_video_frame()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    scored = score_frame(table, now=NOW, prefix="contrib_")
    assert scored.column_names == [*table.column_names, *PREFIXED]
    assert scored.column("affinity").equals(table.column("affinity"))
    expected = score_frame(frame, now=NOW)
    for name in OUTPUTS:
        np.testing.assert_array_equal(
            scored.column(f"contrib_{name}").to_numpy(), expected[name].to_numpy()
        )


def test_an_input_column_with_a_prefixed_output_name_is_replaced() -> None:
    frame = video_frame(rows=5).assign(contrib_score=-1.0)
    scored = score_frame(frame, now=NOW, prefix="contrib_")
    assert list(scored.columns).count("contrib_score") == 1
    assert (scored["contrib_score"] >= 0).all()


@pytest.mark.parametrize("prefix", [None, 3, b"x"])
def test_a_prefix_that_is_not_a_string_is_rejected(prefix: Any) -> None:
    with pytest.raises(InvalidInputError) as info:
        score_frame(video_frame(rows=3), now=NOW, prefix=prefix)
    assert info.value.field == "prefix"


# -- polars -----------------------------------------------------------------------------

try:
    import polars as pl
except ImportError:  # only the polars tests are skipped; the prefix tests above still run
    pl = None

needs_polars = pytest.mark.skipif(pl is None, reason="polars is not installed")


@needs_polars
def test_polars_frame_matches_pandas_and_returns_polars() -> None:
    frame = user_video_frame()
    scored = score_frame(pl.from_pandas(frame), now=NOW, prefix="contrib_")
    expected = score_frame(frame, now=NOW, prefix="contrib_")
    assert isinstance(scored, pl.DataFrame)
    assert scored.columns == list(expected.columns)
    assert all(scored.schema[name] == pl.Float32 for name in PREFIXED)
    # polars keeps microseconds, pandas nanoseconds: ages differ below float32 precision.
    np.testing.assert_allclose(scored.select(PREFIXED).to_numpy(), expected[PREFIXED], atol=1e-6)
    assert scored["affinity"].to_list() == frame["affinity"].tolist()


@needs_polars
def test_polars_without_prefix_replaces_affinity_like_pandas() -> None:
    frame = user_video_frame()
    scored = score_frame(pl.from_pandas(frame), now=NOW)
    assert scored.columns == [name for name in frame.columns if name != "affinity"] + OUTPUTS


@needs_polars
def test_polars_lazy_frame_is_scored_in_batches_with_one_moment() -> None:
    frame = video_frame(rows=1000)
    lazy = pl.from_pandas(frame).lazy().filter(pl.col("views") > 100)
    calls = []
    original = frame_module._score_columns

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[1].rows)
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(frame_module, "_score_columns", counting)
        scored = score_frame(lazy, now=NOW, chunk_rows=128)
    assert isinstance(scored, pl.DataFrame)
    assert len(calls) > 1 and max(calls) <= 128 and sum(calls) == scored.height
    expected = score_frame(frame[frame["views"] > 100], now=NOW)
    assert scored["video_id"].to_list() == expected["video_id"].tolist()
    np.testing.assert_allclose(scored.select(OUTPUTS).to_numpy(), expected[OUTPUTS], atol=1e-6)


@needs_polars
def test_polars_lazy_errors_count_rows_from_the_start_of_the_stream() -> None:
    frame = video_frame(rows=1000)
    frame.loc[700, "likes"] = -3
    with pytest.raises(InvalidInputError, match=r"negative at row 700$") as info:
        score_frame(pl.from_pandas(frame).lazy(), now=NOW, chunk_rows=128)
    assert info.value.field == "likes"


@needs_polars
def test_empty_polars_lazy_frame_gives_the_output_schema() -> None:
    lazy = pl.from_pandas(video_frame(rows=5)).lazy().filter(pl.col("views") < 0)
    scored = score_frame(lazy, now=NOW, prefix="p_")
    assert scored.height == 0
    assert scored.columns[-6:] == [f"p_{name}" for name in OUTPUTS]


@needs_polars
def test_polars_naive_datetimes_are_rejected() -> None:
    frame = pl.from_pandas(video_frame(rows=3)).with_columns(
        pl.col("published_at").dt.replace_time_zone(None)
    )
    with pytest.raises(InvalidInputError) as info:
        score_frame(frame, now=NOW)
    assert info.value.field == "published_at"


# -- Dask -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    pytest.importorskip("dask.dataframe")
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.mark.slow
def test_dask_matches_pandas_and_dtypes_equal_meta(dask_client: Any) -> None:
    import dask.dataframe as dd

    assert len(warmup_dask(dask_client)) == 2
    frame = user_video_frame()
    lazy = score_frame(dd.from_pandas(frame, npartitions=4), now=NOW, prefix="contrib_")
    result = lazy.compute()
    expected = score_frame(frame, now=NOW, prefix="contrib_")
    assert list(result.columns) == list(expected.columns)
    assert result.dtypes.to_dict() == lazy._meta.dtypes.to_dict()
    assert all(result[name].dtype == np.float32 for name in PREFIXED)
    np.testing.assert_allclose(result[PREFIXED], expected[PREFIXED], atol=1e-6, rtol=0)
    assert result.index.tolist() == expected.index.tolist()


@pytest.mark.slow
def test_dask_fixes_now_once_in_the_client(dask_client: Any) -> None:
    import dask.dataframe as dd

    # The client's clock reads a fixed moment; the workers' clocks (other processes) do
    # not, so a partition that read its own clock would score far lower freshness. Only
    # the frame module's view of the clock is replaced: patching ``time.time`` itself
    # would also move the clock of the client's event loop thread (tornado schedules
    # its periodic callbacks by ``time.time``), which can stall the client for good.
    moment = dt.datetime(2026, 3, 1, 13, 0, tzinfo=dt.UTC).timestamp()
    frame = video_frame(rows=60)
    config = RankingConfig(freshness_half_life_hours=1.0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(frame_module, "time", SimpleNamespace(time=lambda: moment))
        lazy = score_frame(dd.from_pandas(frame, npartitions=3), config=config)
    result = lazy.compute()
    expected = score_frame(frame, config=config, now=moment)
    np.testing.assert_allclose(result["freshness"], expected["freshness"], atol=1e-6, rtol=0)


@pytest.mark.slow
def test_dask_errors_name_the_partition_and_field(dask_client: Any) -> None:
    import dask.dataframe as dd

    frame = video_frame(rows=40)
    frame.loc[25, "views"] = -1
    lazy = score_frame(dd.from_pandas(frame, npartitions=4), now=NOW)
    with pytest.raises(InvalidInputError) as info:
        lazy.compute()
    assert info.value.field == "views"
    assert str(info.value) == (
        "invalid 'views': must be >= 0, negative at row 5; in Dask partition 2 "
        "(rows counted from its first; that row's index label is 25)"
    )


def test_dask_type_errors_are_found_before_anything_runs() -> None:
    dd = pytest.importorskip("dask.dataframe")
    frame = video_frame(rows=10).assign(views="many")
    with pytest.raises(InvalidInputError) as info:
        score_frame(dd.from_pandas(frame, npartitions=2), now=NOW)
    assert info.value.field == "views"


def test_dask_meta_comes_from_the_empty_frame_not_fake_rows() -> None:
    dd = pytest.importorskip("dask.dataframe")
    calls: list[int] = []
    original = frame_module._score_columns

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[1].rows)
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(frame_module, "_score_columns", counting)
        lazy = score_frame(dd.from_pandas(video_frame(rows=10), npartitions=2), now=NOW)
    assert calls == [0]  # only the empty meta was scored while building the graph
    assert list(lazy.columns[-6:]) == OUTPUTS
    assert all(lazy._meta[name].dtype == np.float32 for name in OUTPUTS)


# -- Ray Data and Spark recipes (docs/notebooks.md) -------------------------------------


def test_ray_data_recipe() -> None:
    ray = pytest.importorskip("ray")
    frame = video_frame(rows=50)
    ray.init(num_cpus=1, include_dashboard=False)
    try:
        now = NOW.timestamp()
        dataset = ray.data.from_pandas(frame).map_batches(
            lambda batch: score_frame(batch, now=now, progress=False), batch_format="pandas"
        )
        result = dataset.to_pandas()
    finally:
        ray.shutdown()
    expected = score_frame(frame, now=NOW)
    np.testing.assert_allclose(
        result.sort_values("video_id")[OUTPUTS], expected[OUTPUTS], atol=1e-6
    )


def test_spark_recipe() -> None:
    pytest.importorskip("pyspark")
    from pyspark.sql import SparkSession
    from pyspark.sql.types import FloatType, StructField, StructType

    frame = video_frame(rows=50)
    # Spark hands naive datetimes to mapInPandas, so the recipe carries epoch seconds.
    frame["published_at"] = frame["published_at"].map(lambda t: t.timestamp())
    spark = SparkSession.builder.master("local[1]").getOrCreate()
    try:
        now = NOW.timestamp()
        source = spark.createDataFrame(frame)
        schema = StructType(
            source.schema.fields + [StructField(name, FloatType()) for name in PREFIXED]
        )

        def score(batches: Any) -> Any:
            for batch in batches:
                yield score_frame(batch, now=now, progress=False, prefix="contrib_")

        result = source.mapInPandas(score, schema=schema).toPandas()
    finally:
        spark.stop()
    expected = score_frame(frame, now=NOW, prefix="contrib_")
    np.testing.assert_allclose(
        result.sort_values("video_id")[PREFIXED], expected[PREFIXED], atol=1e-6
    )
