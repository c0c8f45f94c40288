"""Event logs and catalogs as pandas frames: checking them, splitting them, grading them.

pandas comes with the ``frame`` extra; it is imported when these functions run.
"""

from __future__ import annotations

import datetime as dt
import importlib
import math
import numbers
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import InvalidInputError
from ..models._engagement import AFFINITY_CREDITS, EngagementKind

__all__ = [
    "EVENT_COLUMNS",
    "CATALOG_COLUMNS",
    "check_catalog",
    "check_events",
    "epoch_seconds",
    "graded_relevance",
    "hold_last_split",
    "moment_seconds",
    "optional_import",
    "time_split",
]

EVENT_COLUMNS = ("user_id", "video_id", "time", "kind", "completion")
"""Columns of an event log: one row per engagement event."""

CATALOG_COLUMNS = ("video_id", "creator_id", "published_at")
"""Required columns of a catalog; ``sound_id`` and ``dl_score`` are optional."""

_KINDS = frozenset(kind.value for kind in EngagementKind)


def optional_import(name: str, extra: str = "eval") -> ModuleType:
    """Import an optional library, naming the extra that brings it when it is missing."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(
            f"reelrank.evaluation needs {name}, which is not installed; install the {extra} "
            f'extra: pip install "reelrank[{extra}]"'
        ) from exc


def epoch_seconds(values: Any, field: str) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Epoch seconds (float64) of a Series of timezone-aware datetimes or numbers."""
    series = pd.Series(values)
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        if series.isna().any():
            raise InvalidInputError(field, "missing timestamp")
        return np.asarray(series.dt.tz_convert("UTC").astype("int64"), np.float64) * (
            1e-9 * _ns_per_tick(series.dtype.unit)
        )
    if pd.api.types.is_datetime64_dtype(series.dtype):
        raise InvalidInputError(field, "naive datetimes are ambiguous; localize them first")
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        seconds = series.to_numpy(np.float64, na_value=np.nan)
        if not np.isfinite(seconds).all():
            raise InvalidInputError(field, "missing or non-finite timestamp")
        return seconds
    raise InvalidInputError(
        field, f"expected timezone-aware datetimes or epoch seconds, got dtype {series.dtype}"
    )


def _ns_per_tick(unit: str) -> float:
    return {"s": 1e9, "ms": 1e6, "us": 1e3, "ns": 1.0}[unit]


def moment_seconds(moment: dt.datetime | float, field: str) -> float:
    """Epoch seconds of a timezone-aware datetime or a number."""
    if isinstance(moment, dt.datetime):
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise InvalidInputError(field, "naive datetimes are ambiguous; give a time zone")
        return moment.timestamp()
    if isinstance(moment, bool) or not isinstance(moment, numbers.Real):
        raise InvalidInputError(field, f"expected a datetime or epoch seconds, got {moment!r}")
    if not math.isfinite(moment):
        raise InvalidInputError(field, f"must be finite, got {moment!r}")
    return float(moment)


def _require(frame: Any, columns: tuple[str, ...], what: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"the {what} must be a pandas DataFrame, got {type(frame).__name__}")
    for name in columns:
        if name not in frame.columns:
            raise InvalidInputError(name, f"required column of the {what} is missing")


def check_events(events: pd.DataFrame) -> pd.DataFrame:
    """A normalized copy of an event log: ``time`` in epoch seconds, ``kind`` as text.

    Columns: ``user_id`` and ``video_id`` (integers), ``time`` (timezone-aware
    datetimes or epoch seconds), ``kind`` (``watch``, ``like``, ``unlike``, ``share`` or
    ``comment``) and ``completion`` (the watched fraction in ``[0, 1]`` for a watch;
    ignored for other kinds).
    """
    _require(events, EVENT_COLUMNS, "event log")
    out = pd.DataFrame(
        {
            "user_id": _integer_ids(events["user_id"], "user_id"),
            "video_id": _integer_ids(events["video_id"], "video_id"),
            "time": epoch_seconds(events["time"], "time"),
            "kind": events["kind"].astype(str).to_numpy(),
            "completion": pd.to_numeric(events["completion"], errors="coerce").to_numpy(
                np.float64, na_value=np.nan
            ),
        }
    )
    unknown = ~out["kind"].isin(_KINDS)
    if unknown.any():
        row = int(np.flatnonzero(unknown.to_numpy())[0])
        raise InvalidInputError("kind", f"unknown kind {out['kind'].iloc[row]!r} at row {row}")
    watch = (out["kind"] == EngagementKind.WATCH.value).to_numpy()
    completion = out["completion"].to_numpy()
    bad = watch & ~((completion >= 0.0) & (completion <= 1.0))
    if bad.any():
        raise InvalidInputError(
            "completion", f"a watch needs completion in [0, 1], row {int(np.flatnonzero(bad)[0])}"
        )
    return out


def check_catalog(catalog: pd.DataFrame) -> pd.DataFrame:
    """A normalized copy of a catalog: ``published_at`` in epoch seconds, one row a video.

    Columns: ``video_id``, ``creator_id`` (integers), ``published_at`` (timezone-aware
    datetimes or epoch seconds), optionally ``sound_id`` (integer, negative or missing
    for none) and ``dl_score`` (in ``[0, 1]``, NaN for missing).
    """
    _require(catalog, CATALOG_COLUMNS, "catalog")
    out = pd.DataFrame(
        {
            "video_id": _integer_ids(catalog["video_id"], "video_id"),
            "creator_id": _integer_ids(catalog["creator_id"], "creator_id"),
            "published_at": epoch_seconds(catalog["published_at"], "published_at"),
        }
    )
    if out["video_id"].duplicated().any():
        raise InvalidInputError("video_id", "each video must appear once in the catalog")
    if "sound_id" in catalog.columns:
        sounds = pd.to_numeric(catalog["sound_id"], errors="coerce").to_numpy(
            np.float64, na_value=np.nan
        )
        out["sound_id"] = np.where(np.isnan(sounds) | (sounds < 0), -1, sounds).astype(np.int64)
    if "dl_score" in catalog.columns:
        out["dl_score"] = pd.to_numeric(catalog["dl_score"]).to_numpy(np.float64, na_value=np.nan)
    return out


def _integer_ids(values: Any, field: str) -> np.ndarray[Any, np.dtype[np.int64]]:
    array = np.asarray(values)
    if array.dtype.kind not in "iu":
        raise InvalidInputError(field, f"ids must be integers, got dtype {array.dtype}")
    return array.astype(np.int64)


def time_split(
    events: pd.DataFrame, cutoff: dt.datetime | float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split an event log at ``cutoff``: events before it train, the others test."""
    checked = check_events(events)
    moment = moment_seconds(cutoff, "cutoff")
    before = checked["time"].to_numpy() < moment
    return checked[before].reset_index(drop=True), checked[~before].reset_index(drop=True)


def hold_last_split(events: pd.DataFrame, n: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out each user's last ``n`` watched videos (and every event on them) for test.

    Users with ``n`` or fewer watched videos keep them all for training. Every other
    event stays in train, including other users' events later than a held-out one:
    replay the split with ``now`` at the latest train event.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidInputError("n", f"must be a positive integer, got {n!r}")
    checked = check_events(events)
    watches = checked[checked["kind"] == EngagementKind.WATCH.value]
    first_watch = watches.groupby(["user_id", "video_id"])["time"].min().reset_index()
    first_watch = first_watch.sort_values(["user_id", "time", "video_id"])
    position_from_end = first_watch.groupby("user_id").cumcount(ascending=False)
    watched = first_watch.groupby("user_id")["video_id"].transform("size")
    held = first_watch[(position_from_end < n) & (watched > n)][["user_id", "video_id"]]
    marker = checked.merge(held.assign(_held=True), on=["user_id", "video_id"], how="left")
    is_test = marker["_held"].fillna(False).to_numpy(bool)
    return checked[~is_test].reset_index(drop=True), checked[is_test].reset_index(drop=True)


def graded_relevance(events: pd.DataFrame, *, completion_threshold: float = 0.5) -> pd.DataFrame:
    """Graded relevance of each (user, video) pair in an event log.

    .. math:: g(u, v) = [c_{\\max} \\ge \\tau] + [\\text{liked}] + [\\text{commented}]
       + 2\\,[\\text{shared}]

    where :math:`c_{\\max}` is the user's best completion of the video and :math:`\\tau`
    is ``completion_threshold``; a like later taken back by an unlike does not count.
    The weights follow :data:`~reelrank.AFFINITY_CREDITS`. Pairs graded 0 are dropped.
    Returns the columns ``user_id``, ``video_id``, ``relevance`` (integer).
    """
    checked = check_events(events)
    kinds = checked["kind"]
    completion = np.where(kinds == EngagementKind.WATCH.value, checked["completion"], 0.0)
    like = (kinds == EngagementKind.LIKE.value).astype(np.int64) - (
        kinds == EngagementKind.UNLIKE.value
    ).astype(np.int64)
    flags = pd.DataFrame(
        {
            "user_id": checked["user_id"],
            "video_id": checked["video_id"],
            "completion": completion,
            "like": like,
            "comment": (kinds == EngagementKind.COMMENT.value).to_numpy(),
            "share": (kinds == EngagementKind.SHARE.value).to_numpy(),
        }
    )
    pairs = flags.groupby(["user_id", "video_id"], as_index=False).agg(
        completion=("completion", "max"),
        like=("like", "sum"),
        comment=("comment", "any"),
        share=("share", "any"),
    )
    relevance = (
        (pairs["completion"] >= completion_threshold).astype(np.int64)
        + (pairs["like"] > 0).astype(np.int64) * int(AFFINITY_CREDITS[EngagementKind.LIKE])
        + pairs["comment"].astype(np.int64) * int(AFFINITY_CREDITS[EngagementKind.COMMENT])
        + pairs["share"].astype(np.int64) * int(AFFINITY_CREDITS[EngagementKind.SHARE])
    )
    out = pairs[["user_id", "video_id"]].assign(relevance=relevance.astype(np.int64))
    return out[out["relevance"] > 0].reset_index(drop=True)
