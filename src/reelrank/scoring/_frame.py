"""Scoring a whole DataFrame or Table at once, for notebooks and batch jobs.

pandas, pyarrow and tqdm belong to the optional ``frame`` extra, polars and Dask to the
``polars`` and ``dask`` extras; they are imported only when a frame is scored, so the core
keeps depending on numpy, numba and pydantic alone.
"""

from __future__ import annotations

import datetime as dt
import importlib
import math
import numbers
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import numpy.typing as npt

from ..exceptions import InvalidInputError
from ..models._base import WEIGHT_FIELDS
from ._candidates import Candidates
from ._config import RankingConfig
from ._ranker import Ranker

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl
    import pyarrow as pa

__all__ = ["score_frame"]

_INPUT_COLUMNS: tuple[str, ...] = (
    "video_id",
    "creator_id",
    "published_at",
    "views",
    "completion_sum",
    "likes",
    "shares",
    "comments",
)
"""The columns :func:`score_frame` requires; ``affinity`` and ``dl_score`` are optional."""

_PROGRESS_MIN_ROWS = 1_000_000
"""Frames with more rows show a progress bar unless ``progress`` says otherwise."""

_UNIT_INTERVAL_COLUMNS = ("affinity", "dl_score")

_EXTRAS = {"polars": "polars"}
"""The extra that brings each optional library; the rest come with ``frame``."""

_NANOSECONDS_PER_UNIT = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}


def _optional_import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        extra = _EXTRAS.get(name, "frame")
        raise ImportError(
            f"score_frame needs {name}, which is not installed; install the {extra} extra: "
            f'pip install "reelrank[{extra}]"'
        ) from exc


@dataclass(frozen=True, slots=True)
class _Columns:
    """The scoring inputs of a frame as numpy arrays (integer or float64), already checked.

    The id columns are checked but not kept: see :func:`_score_columns`.
    """

    rows: int
    published_at: npt.NDArray[np.float64]
    views: npt.NDArray[Any]
    completion_sum: npt.NDArray[Any]
    likes: npt.NDArray[Any]
    shares: npt.NDArray[Any]
    comments: npt.NDArray[Any]
    affinity: npt.NDArray[Any] | None
    dl_score: npt.NDArray[Any] | None


_ROW_OFFSET: ContextVar[int] = ContextVar("reelrank_score_frame_row_offset", default=0)
"""Rows before the frame being checked, so errors in a batch of a stream give global rows."""


_BAD_ROWS: ContextVar[list[int] | None] = ContextVar("reelrank_score_frame_bad_rows", default=None)
"""When set, collects the frame-local position of each bad row an error reports, so the
Dask partition wrapper can name that row's index label."""


def _first_row(mask: npt.NDArray[np.bool_]) -> int:
    row = int(np.flatnonzero(mask)[0])
    collected = _BAD_ROWS.get()
    if collected is not None:
        collected.append(row)
    return row + _ROW_OFFSET.get()


def _check_values(name: str, values: npt.NDArray[Any], *, nan_allowed: bool) -> None:
    """Reject NaN (unless allowed), infinities, negatives and out-of-range values.

    The common case, a valid column, costs two reductions; NaN fails both comparisons
    of the fast check, so it always reaches the detailed one.
    """
    if values.size == 0:
        return
    if nan_allowed and values.dtype.kind == "f":
        low, high = np.fmin.reduce(values), np.fmax.reduce(values)
    else:
        low, high = values.min(), values.max()
    upper = 1.0 if name in _UNIT_INTERVAL_COLUMNS else math.inf
    if low >= 0.0 and high < math.inf and high <= upper:
        return
    nan = np.isnan(values)
    if not nan_allowed and nan.any():
        raise InvalidInputError(
            name, f"{int(nan.sum())} missing or NaN value(s), first at row {_first_row(nan)}"
        )
    infinite = np.isinf(values)
    if infinite.any():
        raise InvalidInputError(name, f"must be finite, infinite at row {_first_row(infinite)}")
    negative = values < 0.0
    if negative.any():
        raise InvalidInputError(name, f"must be >= 0, negative at row {_first_row(negative)}")
    above = values > upper
    if above.any():
        raise InvalidInputError(name, f"must lie in [0, 1], above 1 at row {_first_row(above)}")


def _epoch_seconds_from_ticks(
    name: str, ticks: npt.NDArray[np.int64], unit: str, missing: npt.NDArray[np.bool_]
) -> npt.NDArray[np.float64]:
    if missing.any():
        raise InvalidInputError(name, f"missing timestamp at row {_first_row(missing)}")
    return np.multiply(ticks, _NANOSECONDS_PER_UNIT[unit] / 1e9, dtype=np.float64)


def _pandas_column(frame: pd.DataFrame, name: str) -> pd.Series[Any]:
    matches = int((frame.columns == name).sum())
    if matches > 1:
        raise InvalidInputError(name, f"column appears {matches} times")
    return frame[name]


def _is_pandas_number(pd: ModuleType, dtype: Any) -> bool:
    types = pd.api.types
    return bool(types.is_numeric_dtype(dtype) and not types.is_bool_dtype(dtype))


def _check_pandas_ids(pd: ModuleType, frame: pd.DataFrame, name: str) -> None:
    series = _pandas_column(frame, name)
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        dtype = dtype.categories.dtype
    types = pd.api.types
    if not (
        (types.is_integer_dtype(dtype) and not types.is_bool_dtype(dtype))
        or types.is_string_dtype(dtype)
    ):
        raise InvalidInputError(name, f"ids must be integers or strings, got dtype {series.dtype}")
    if not isinstance(series.dtype, np.dtype) or series.dtype.kind == "O":
        missing = series.isna().to_numpy()
        if missing.any():
            raise InvalidInputError(name, f"missing id at row {_first_row(missing)}")


def _pandas_numbers(
    pd: ModuleType, frame: pd.DataFrame, name: str, *, nan_allowed: bool = False
) -> npt.NDArray[Any]:
    series = _pandas_column(frame, name)
    if not _is_pandas_number(pd, series.dtype):
        raise InvalidInputError(name, f"expected a numeric column, got dtype {series.dtype}")
    if isinstance(series.dtype, np.dtype):
        values = series.to_numpy()  # a view: the engine converts integers itself
    else:  # nullable and Arrow-backed dtypes: missing values become NaN
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    _check_values(name, values, nan_allowed=nan_allowed)
    return values


def _pandas_timestamps(pd: ModuleType, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
    name = "published_at"
    series = _pandas_column(frame, name)
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        array = series.array
        return _epoch_seconds_from_ticks(
            name, np.asarray(array.asi8), str(array.unit), series.isna().to_numpy()
        )
    if isinstance(series.dtype, pd.ArrowDtype):  # e.g. read with dtype_backend="pyarrow"
        pa = _optional_import("pyarrow")
        if pa.types.is_timestamp(series.dtype.pyarrow_dtype):
            return _arrow_timestamp_seconds(pa, pa.chunked_array([pa.array(series)]))
    if pd.api.types.is_datetime64_dtype(series.dtype):
        raise InvalidInputError(
            name,
            "naive datetimes are ambiguous; localize them first, e.g. "
            "frame['published_at'].dt.tz_localize('UTC')",
        )
    if _is_pandas_number(pd, series.dtype):
        return np.asarray(_pandas_numbers(pd, frame, name), dtype=np.float64)
    raise InvalidInputError(
        name, f"expected timezone-aware datetimes or epoch seconds, got dtype {series.dtype}"
    )


def _columns_from_pandas(frame: pd.DataFrame) -> _Columns:
    pd = _optional_import("pandas")
    missing = [name for name in _INPUT_COLUMNS if name not in frame.columns]
    if missing:
        raise InvalidInputError(missing[0], "required column is missing")
    has = frame.columns.__contains__
    _check_pandas_ids(pd, frame, "video_id")
    _check_pandas_ids(pd, frame, "creator_id")
    return _Columns(
        rows=len(frame),
        published_at=_pandas_timestamps(pd, frame),
        views=_pandas_numbers(pd, frame, "views"),
        completion_sum=_pandas_numbers(pd, frame, "completion_sum"),
        likes=_pandas_numbers(pd, frame, "likes"),
        shares=_pandas_numbers(pd, frame, "shares"),
        comments=_pandas_numbers(pd, frame, "comments"),
        affinity=_pandas_numbers(pd, frame, "affinity") if has("affinity") else None,
        dl_score=(
            _pandas_numbers(pd, frame, "dl_score", nan_allowed=True) if has("dl_score") else None
        ),
    )


def _arrow_column(table: Any, name: str) -> Any:
    indices = table.schema.get_all_field_indices(name)
    if len(indices) > 1:
        raise InvalidInputError(name, f"column appears {len(indices)} times")
    return table.column(indices[0])


def _arrow_missing(column: Any) -> npt.NDArray[np.bool_]:
    return np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=np.bool_)


def _check_arrow_ids(pa: ModuleType, table: Any, name: str) -> None:
    column = _arrow_column(table, name)
    kind = column.type
    values = kind.value_type if pa.types.is_dictionary(kind) else kind
    if not (
        pa.types.is_integer(values)
        or pa.types.is_string(values)
        or pa.types.is_large_string(values)
    ):
        raise InvalidInputError(name, f"ids must be integers or strings, got type {kind}")
    if column.null_count:
        raise InvalidInputError(name, f"missing id at row {_first_row(_arrow_missing(column))}")


def _arrow_numbers(
    pa: ModuleType, table: Any, name: str, *, nan_allowed: bool = False
) -> npt.NDArray[Any]:
    column = _arrow_column(table, name)
    kind = column.type
    all_missing_allowed = nan_allowed and pa.types.is_null(kind)
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or all_missing_allowed):
        raise InvalidInputError(name, f"expected a numeric column, got type {kind}")
    if column.null_count or all_missing_allowed:
        column = column.cast(pa.float64())  # nulls become NaN
    values = np.asarray(column.to_numpy())
    _check_values(name, values, nan_allowed=nan_allowed)
    return values


def _arrow_timestamp_seconds(pa: ModuleType, column: Any) -> npt.NDArray[np.float64]:
    """Epoch seconds of a timestamp ChunkedArray, which must carry a time zone."""
    name = "published_at"
    kind = column.type
    if kind.tz is None:
        raise InvalidInputError(
            name,
            "naive timestamps are ambiguous; give them a time zone, e.g. "
            "column.cast(pa.timestamp('us', tz='UTC'))",
        )
    ticks = np.asarray(column.cast(pa.int64()).fill_null(0).to_numpy())
    return _epoch_seconds_from_ticks(name, ticks, kind.unit, _arrow_missing(column))


def _arrow_timestamps(pa: ModuleType, table: Any) -> npt.NDArray[np.float64]:
    name = "published_at"
    column = _arrow_column(table, name)
    kind = column.type
    if pa.types.is_timestamp(kind):
        return _arrow_timestamp_seconds(pa, column)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return np.asarray(_arrow_numbers(pa, table, name), dtype=np.float64)
    raise InvalidInputError(
        name, f"expected timezone-aware timestamps or epoch seconds, got type {kind}"
    )


def _columns_from_arrow(table: pa.Table) -> _Columns:
    pa = _optional_import("pyarrow")
    names = set(table.column_names)
    missing = [name for name in _INPUT_COLUMNS if name not in names]
    if missing:
        raise InvalidInputError(missing[0], "required column is missing")
    _check_arrow_ids(pa, table, "video_id")
    _check_arrow_ids(pa, table, "creator_id")
    return _Columns(
        rows=table.num_rows,
        published_at=_arrow_timestamps(pa, table),
        views=_arrow_numbers(pa, table, "views"),
        completion_sum=_arrow_numbers(pa, table, "completion_sum"),
        likes=_arrow_numbers(pa, table, "likes"),
        shares=_arrow_numbers(pa, table, "shares"),
        comments=_arrow_numbers(pa, table, "comments"),
        affinity=_arrow_numbers(pa, table, "affinity") if "affinity" in names else None,
        dl_score=(
            _arrow_numbers(pa, table, "dl_score", nan_allowed=True) if "dl_score" in names else None
        ),
    )


def _epoch_now(now: dt.datetime | float | None) -> float:
    if now is None:
        return time.time()
    if isinstance(now, dt.datetime):
        if now.tzinfo is None or now.utcoffset() is None:
            raise InvalidInputError("now", "naive datetimes are ambiguous; give a time zone")
        return now.timestamp()
    if isinstance(now, bool) or not isinstance(now, numbers.Real) or not math.isfinite(now):
        raise InvalidInputError(
            "now", f"expected a timezone-aware datetime or epoch seconds, got {now!r}"
        )
    return float(now)


def _chunks(total: int, size: int) -> Iterator[slice]:
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))


def _score_columns(
    ranker: Ranker, columns: _Columns, now: float, chunk_rows: int, progress: bool | None
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Return the scores ``(n,)`` and the weighted contributions ``(n, 5)``."""
    total = columns.rows
    # Scores depend on a row's creator only through the affinity given per row, and not at
    # all on its video id, so the engine gets placeholder ids; the frame's own ids (which
    # may be strings) pass through untouched.
    placeholder_ids = np.zeros(min(total, chunk_rows), dtype=np.int64)
    scores: list[npt.NDArray[np.float32]] = []
    contributions: list[npt.NDArray[np.float32]] = []
    show = total > _PROGRESS_MIN_ROWS if progress is None else progress
    bar = None
    if show:
        tqdm = _optional_import("tqdm")
        bar = tqdm.tqdm(total=total, unit="rows", unit_scale=True, desc="scoring")
    try:
        for rows in _chunks(total, chunk_rows):
            ids = placeholder_ids[: rows.stop - rows.start]
            candidates = Candidates.from_arrays(
                video_id=ids,
                creator_id=ids,
                published_at=columns.published_at[rows],
                views=columns.views[rows],
                completion_sum=columns.completion_sum[rows],
                likes=columns.likes[rows],
                shares=columns.shares[rows],
                comments=columns.comments[rows],
                dl_score=None if columns.dl_score is None else columns.dl_score[rows],
            )
            affinity = None if columns.affinity is None else columns.affinity[rows]
            contributions.append(ranker.explain(candidates, now=now, affinity=affinity))
            scores.append(ranker.score(candidates, now=now, affinity=affinity))
            if bar is not None:
                bar.update(rows.stop - rows.start)
    finally:
        if bar is not None:
            bar.close()
    if len(scores) == 1:  # the common case: no copy
        return scores[0], contributions[0]
    if not scores:
        return np.empty(0, np.float32), np.empty((0, len(WEIGHT_FIELDS)), np.float32)
    return np.concatenate(scores), np.concatenate(contributions)


@overload
def score_frame(
    frame: pd.DataFrame,
    *,
    config: RankingConfig | None = None,
    now: dt.datetime | float | None = None,
    progress: bool | None = None,
    chunk_rows: int = 131_072,
    prefix: str = "",
) -> pd.DataFrame: ...


@overload
def score_frame(
    frame: pl.DataFrame | pl.LazyFrame,
    *,
    config: RankingConfig | None = None,
    now: dt.datetime | float | None = None,
    progress: bool | None = None,
    chunk_rows: int = 131_072,
    prefix: str = "",
) -> pl.DataFrame: ...


@overload
def score_frame(
    frame: pa.Table,  # pyarrow is untyped: also Dask frames
    *,
    config: RankingConfig | None = None,
    now: dt.datetime | float | None = None,
    progress: bool | None = None,
    chunk_rows: int = 131_072,
    prefix: str = "",
) -> pa.Table: ...


def score_frame(
    frame: Any,
    *,
    config: RankingConfig | None = None,
    now: dt.datetime | float | None = None,
    progress: bool | None = None,
    chunk_rows: int = 131_072,
    prefix: str = "",
) -> Any:
    """Score every row of a DataFrame or Table and explain each score.

    Each row is one video, or one (user, video) pair when the frame carries a per-row
    ``affinity``. Accepted frames: a pandas ``DataFrame``, a pyarrow ``Table``, a polars
    ``DataFrame`` or ``LazyFrame``, and a Dask ``DataFrame``.

    The result keeps every input column and appends the float32 columns ``score``,
    ``freshness``, ``completion``, ``engagement``, ``affinity`` and ``deep_learning``,
    each name preceded by ``prefix``. The last five are the weighted contributions of each
    signal and add up to ``score``; so the output ``affinity`` is ``weight * input
    affinity``, not the input value. An input column with the same name as an output
    column is replaced: with the default empty ``prefix`` that drops the input
    ``affinity``; give e.g. ``prefix="contrib_"`` to keep it.

    What comes back depends on the input:

    - pandas ``DataFrame`` and pyarrow ``Table``: a new object of the same kind.
    - polars ``DataFrame``: a new polars ``DataFrame``.
    - polars ``LazyFrame``: the query is collected in batches of about ``chunk_rows``
      rows, each scored as it arrives, and a polars ``DataFrame`` is returned. Row
      numbers in errors count from the start of the whole stream.
    - Dask ``DataFrame``: a lazy Dask ``DataFrame``; nothing is computed until you ask.
      ``now`` is fixed once here, so every partition measures freshness from the same
      moment; the output dtypes (``meta``) come from scoring the empty frame that
      describes the input, so Dask never calls the scorer on made-up rows; no progress
      bar is shown on workers. An invalid value fails the computation with an
      :class:`InvalidInputError` that names the partition; its row number counts from
      the partition's first row, and the bad row's index label is given too (the
      global row number when the frame is indexed by row, as ``dd.from_pandas`` of a
      frame with a default index is). Call :func:`reelrank.warmup_dask` once per cluster so
      the first partitions do not pay for compiling the kernels.

    Args:
        frame: the rows, with the columns ``video_id``, ``creator_id`` (integers or
            strings), ``published_at`` (timezone-aware datetimes, or epoch seconds),
            ``views``, ``completion_sum`` (sum over views of the watched fraction, in
            ``[0, 1]`` each), ``likes``, ``shares``, ``comments`` (non-negative counts),
            and optionally ``affinity`` (in ``[0, 1]``; absent means no affinity) and
            ``dl_score`` (in ``[0, 1]``; NaN or null means missing and scores as
            :attr:`RankingConfig.dl_neutral_score`).
        config: the weights and signal parameters; the defaults when ``None``.
        now: the moment freshness is measured from, as a timezone-aware datetime or
            epoch seconds; the current time when ``None``. Every row uses the same moment.
        progress: show a tqdm progress bar on stderr; ``None`` shows one only for
            in-memory frames of more than a million rows. Ignored for Dask.
        chunk_rows: rows handed to the scoring engine at a time (and the batch size a
            ``LazyFrame`` is collected in). The engine's working arrays grow with it;
            chunks that fit the CPU caches score fastest, and the progress bar advances
            once per chunk.
        prefix: put before every output column name. The default ``""`` keeps the names
            above (and replaces an input ``affinity``).

    Returns:
        A new frame as described above; the input is not modified.

    Raises:
        InvalidInputError: a required column is missing, has the wrong type, or holds a
            missing, NaN, infinite, negative or out-of-range value; ``field`` names the
            column, and the message gives the first bad row. Also for an invalid
            ``chunk_rows``, ``prefix`` or ``now``.
        TypeError: ``frame`` is none of the accepted kinds.
        ImportError: a library the frame needs (pandas, pyarrow, tqdm, polars) is not
            installed.
    """
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise InvalidInputError("chunk_rows", f"must be a positive integer, got {chunk_rows!r}")
    if not isinstance(prefix, str):
        raise InvalidInputError("prefix", f"must be a string, got {prefix!r}")
    moment = _epoch_now(now)
    kind = _frame_kind(frame)
    if kind == "dask":
        return _score_dask(frame, config, moment, chunk_rows, prefix)
    if kind == "polars-lazy":
        return _score_polars_lazy(frame, config, moment, progress, chunk_rows, prefix)
    if kind == "pandas":
        columns = _columns_from_pandas(frame)
    else:
        columns = _columns_from_arrow(frame.to_arrow() if kind == "polars" else frame)
    ranker = Ranker(config)
    scores, contributions = _score_columns(ranker, columns, moment, chunk_rows, progress)
    names = _output_names(prefix)
    if kind == "pandas":
        return _attach_pandas(frame, scores, contributions, names)
    if kind == "polars":
        return _attach_polars(frame, scores, contributions, names)
    return _attach_arrow(frame, scores, contributions, names)


def _frame_kind(frame: Any) -> str:
    module = type(frame).__module__.partition(".")[0]
    name = type(frame).__name__
    kinds = {
        ("pandas", "DataFrame"): "pandas",
        ("pyarrow", "Table"): "arrow",
        ("polars", "DataFrame"): "polars",
        ("polars", "LazyFrame"): "polars-lazy",
        ("dask", "DataFrame"): "dask",
        ("dask_expr", "DataFrame"): "dask",  # dask-expr before it moved into dask
    }
    kind = kinds.get((module, name))
    if kind is None:
        raise TypeError(
            "score_frame takes a pandas, polars or Dask DataFrame, a polars LazyFrame or a "
            f"pyarrow Table, got {name}"
        )
    return kind


def _output_names(prefix: str) -> tuple[str, ...]:
    """The output column names: the score, then the five contributions in weight order."""
    return tuple(f"{prefix}{name}" for name in ("score", *WEIGHT_FIELDS))


def _score_polars_lazy(
    frame: pl.LazyFrame,
    config: RankingConfig | None,
    moment: float,
    progress: bool | None,
    chunk_rows: int,
    prefix: str,
) -> pl.DataFrame:
    """Collect ``frame`` in batches and score each as it arrives."""
    polars = _optional_import("polars")
    bar = None
    if progress:  # the row count of a lazy query is unknown, so no bar unless asked for
        tqdm = _optional_import("tqdm")
        bar = tqdm.tqdm(unit="rows", unit_scale=True, desc="scoring")
    scored: list[pl.DataFrame] = []
    offset = 0
    try:
        for batch in frame.collect_batches(chunk_size=chunk_rows):
            token = _ROW_OFFSET.set(offset)
            try:
                scored.append(
                    score_frame(
                        batch,
                        config=config,
                        now=moment,
                        progress=False,
                        chunk_rows=chunk_rows,
                        prefix=prefix,
                    )
                )
            finally:
                _ROW_OFFSET.reset(token)
            offset += batch.height
            if bar is not None:
                bar.update(batch.height)
    finally:
        if bar is not None:
            bar.close()
    if not scored:  # an empty query yields no batch; score its empty result for the schema
        empty = frame.limit(0).collect()
        scored_empty: pl.DataFrame = score_frame(
            empty, config=config, now=moment, progress=False, prefix=prefix
        )
        return scored_empty
    result: pl.DataFrame = polars.concat(scored, how="vertical")
    return result


def _score_dask(
    frame: Any, config: RankingConfig | None, moment: float, chunk_rows: int, prefix: str
) -> Any:
    """Map the scorer over the partitions of a Dask DataFrame, lazily."""
    # Scoring the empty frame that describes the partitions gives the output columns and
    # dtypes, and checks the column types once, here, before any work is scheduled.
    meta = score_frame(
        frame._meta,
        config=config,
        now=moment,
        progress=False,
        chunk_rows=chunk_rows,
        prefix=prefix,
    )
    return frame.map_partitions(_score_partition, config, moment, chunk_rows, prefix, meta=meta)


def _score_partition(
    part: pd.DataFrame,
    config: RankingConfig | None,
    moment: float,
    chunk_rows: int,
    prefix: str,
    partition_info: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Score one Dask partition (runs on a worker); errors name the partition and row."""
    bad_rows: list[int] = []
    token = _BAD_ROWS.set(bad_rows)
    try:
        return score_frame(
            part,
            config=config,
            now=moment,
            progress=False,
            chunk_rows=chunk_rows,
            prefix=prefix,
        )
    except InvalidInputError as error:
        where = "a Dask partition"
        if partition_info is not None:
            where = f"Dask partition {partition_info['number']}"
        if bad_rows:
            label = part.index[bad_rows[-1]]
            where += f" (rows counted from its first; that row's index label is {label!r})"
        raise InvalidInputError(error.field, f"{error.reason}; in {where}") from error
    finally:
        _BAD_ROWS.reset(token)


def _attach_pandas(
    frame: pd.DataFrame,
    scores: npt.NDArray[np.float32],
    contributions: npt.NDArray[np.float32],
    names: tuple[str, ...],
) -> Any:
    pd = _optional_import("pandas")
    # The (n, 5) contributions become one float32 block without copying them column by column.
    outputs = pd.DataFrame(contributions, columns=list(names[1:]), index=frame.index, copy=False)
    outputs.insert(0, names[0], scores)
    kept = frame.drop(columns=[name for name in frame.columns if name in outputs.columns])
    return pd.concat([kept, outputs], axis=1)


def _output_arrays(
    scores: npt.NDArray[np.float32],
    contributions: npt.NDArray[np.float32],
    names: tuple[str, ...],
) -> dict[str, npt.NDArray[np.float32]]:
    outputs = {names[0]: scores}
    for index, name in enumerate(names[1:]):
        outputs[name] = np.ascontiguousarray(contributions[:, index])
    return outputs


def _attach_polars(
    frame: pl.DataFrame,
    scores: npt.NDArray[np.float32],
    contributions: npt.NDArray[np.float32],
    names: tuple[str, ...],
) -> Any:
    pl = _optional_import("polars")
    outputs = _output_arrays(scores, contributions, names)
    kept = frame.drop([name for name in frame.columns if name in outputs])
    return kept.with_columns(pl.Series(name, values) for name, values in outputs.items())


def _attach_arrow(
    table: pa.Table,
    scores: npt.NDArray[np.float32],
    contributions: npt.NDArray[np.float32],
    names: tuple[str, ...],
) -> Any:
    pa = _optional_import("pyarrow")
    outputs = _output_arrays(scores, contributions, names)
    result = table.drop_columns([name for name in table.column_names if name in outputs])
    for name, values in outputs.items():
        result = result.append_column(pa.field(name, pa.float32()), pa.array(values))
    return result
