"""Scoring a whole pandas DataFrame or pyarrow Table at once, for notebooks and batch jobs.

pandas, pyarrow and tqdm belong to the optional ``frame`` extra; they are imported only
when a frame is scored, so the core keeps depending on numpy, numba and pydantic alone.
"""

from __future__ import annotations

import datetime as dt
import importlib
import math
import numbers
import time
from collections.abc import Iterator
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

_EXTRA_HINT = 'install the frame extra: pip install "reelrank[frame]"'

_NANOSECONDS_PER_UNIT = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}


def _optional_import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(
            f"score_frame needs {name}, which is not installed; {_EXTRA_HINT}"
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


def _first_row(mask: npt.NDArray[np.bool_]) -> int:
    return int(np.flatnonzero(mask)[0])


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
) -> pd.DataFrame: ...


@overload
def score_frame(
    frame: pa.Table,
    *,
    config: RankingConfig | None = None,
    now: dt.datetime | float | None = None,
    progress: bool | None = None,
    chunk_rows: int = 131_072,
) -> pa.Table: ...


def score_frame(
    frame: Any,
    *,
    config: RankingConfig | None = None,
    now: dt.datetime | float | None = None,
    progress: bool | None = None,
    chunk_rows: int = 131_072,
) -> Any:
    """Score every row of a pandas DataFrame or pyarrow Table and explain each score.

    Each row is one video, or one (user, video) pair when the frame carries a per-row
    ``affinity``. The result is a new object of the same kind: every input column passes
    through untouched, except that the input ``affinity`` column is removed, and the
    float32 columns ``score``, ``freshness``, ``completion``, ``engagement``,
    ``affinity`` and ``deep_learning`` are appended. The last five are the weighted
    contributions of each signal and add up to ``score``; so the output ``affinity`` is
    ``weight * input affinity``, not the input value. Output columns that already exist in
    the input are replaced.

    Args:
        frame: a ``pandas.DataFrame`` or ``pyarrow.Table`` with the columns
            ``video_id``, ``creator_id`` (integers or strings), ``published_at``
            (timezone-aware datetimes, or epoch seconds), ``views``,
            ``completion_sum`` (sum over views of the watched fraction, in ``[0, 1]``
            each), ``likes``, ``shares``, ``comments`` (non-negative counts), and
            optionally ``affinity`` (in ``[0, 1]``; absent means no affinity) and
            ``dl_score`` (in ``[0, 1]``; NaN or null means missing and scores as
            :attr:`RankingConfig.dl_neutral_score`).
        config: the weights and signal parameters; the defaults when ``None``.
        now: the moment freshness is measured from, as a timezone-aware datetime or
            epoch seconds; the current time when ``None``. Every row uses the same moment.
        progress: show a tqdm progress bar on stderr; ``None`` shows one only for
            frames of more than a million rows.
        chunk_rows: rows handed to the scoring engine at a time. The engine's working
            arrays grow with it; chunks that fit the CPU caches score fastest, and the
            progress bar advances once per chunk.

    Returns:
        A new DataFrame or Table; the input is not modified.

    Raises:
        InvalidInputError: a required column is missing, has the wrong type, or holds a
            missing, NaN, infinite, negative or out-of-range value; ``field`` names the
            column, and the message gives the first bad row.
        TypeError: ``frame`` is neither a DataFrame nor a Table.
        ImportError: pandas, pyarrow or tqdm is needed and not installed (they come with
            the ``reelrank[frame]`` extra).
    """
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise InvalidInputError("chunk_rows", f"must be a positive integer, got {chunk_rows!r}")
    moment = _epoch_now(now)
    module = type(frame).__module__.partition(".")[0]
    if module == "pandas" and type(frame).__name__ == "DataFrame":
        columns = _columns_from_pandas(frame)
    elif module == "pyarrow" and type(frame).__name__ == "Table":
        columns = _columns_from_arrow(frame)
    else:
        raise TypeError(
            f"score_frame takes a pandas DataFrame or a pyarrow Table, got {type(frame).__name__}"
        )
    ranker = Ranker(config)
    scores, contributions = _score_columns(ranker, columns, moment, chunk_rows, progress)
    if module == "pandas":
        return _attach_pandas(frame, scores, contributions)
    return _attach_arrow(frame, scores, contributions)


def _attach_pandas(
    frame: pd.DataFrame,
    scores: npt.NDArray[np.float32],
    contributions: npt.NDArray[np.float32],
) -> Any:
    pd = _optional_import("pandas")
    # The (n, 5) contributions become one float32 block without copying them column by column.
    outputs = pd.DataFrame(
        contributions, columns=list(WEIGHT_FIELDS), index=frame.index, copy=False
    )
    outputs.insert(0, "score", scores)
    kept = frame.drop(columns=[name for name in frame.columns if name in outputs.columns])
    return pd.concat([kept, outputs], axis=1)


def _attach_arrow(
    table: pa.Table,
    scores: npt.NDArray[np.float32],
    contributions: npt.NDArray[np.float32],
) -> Any:
    pa = _optional_import("pyarrow")
    outputs = {"score": scores}
    for index, name in enumerate(WEIGHT_FIELDS):
        outputs[name] = np.ascontiguousarray(contributions[:, index])
    result = table.drop_columns([name for name in table.column_names if name in outputs])
    for name, values in outputs.items():
        result = result.append_column(pa.field(name, pa.float32()), pa.array(values))
    return result
