"""score_frame on a local Dask cluster against one process, same rows read from Parquet.

Ten million (user, video) rows (200k in quick mode) are written once to eight Parquet
files under ``.cache/bench_dask/`` in the repository; later runs read them from there, so
generating the data costs only the first run. The single-process side reads them with
pandas and scores them; the Dask side reads them with ``dask.dataframe.read_parquet`` on
a ``LocalCluster`` of two worker processes and scores every partition. Both reduce the
result to the sum of the scores, so neither pays for bringing scored rows back to one
place. Cluster start and kernel warm-up are outside the timings. Printed: both times,
the ratio single/Dask (above 1 means Dask is faster), the rows scored per second per
worker and the load average (the machine may be shared). Rerun with
``python -m pytest benchmarks/bench_dask.py -s -p no:cacheprovider``
(``REELRANK_BENCH_QUICK=1`` for 200k rows).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import QUICK, SUMMARY

from reelrank import score_frame, warmup_dask

pd = pytest.importorskip("pandas")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

ROWS = 200_000 if QUICK else 10_000_000
FILES = 8
WORKERS = 2
NOW = pd.Timestamp("2026-01-15 12:00", tz="UTC")
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "bench_dask"


@pytest.fixture(scope="module")
def parquet_dir() -> Path:
    """The benchmark's rows, written on the first run and read from the cache after it."""
    directory = CACHE / f"rows-{ROWS}-seed-11"
    if not directory.is_dir():
        # Written next to the final name and renamed, so an interrupted run leaves no
        # half-written directory behind for the next one to trust.
        partial = CACHE / f"rows-{ROWS}-seed-11.partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        _write_rows(partial)
        try:
            partial.rename(directory)
        except OSError:  # another run got there first; its rows are the same
            shutil.rmtree(partial, ignore_errors=True)
    return directory


def _write_rows(directory: Path) -> None:
    rng = np.random.default_rng(11)
    per_file = ROWS // FILES
    for index in range(FILES):
        views = np.floor(rng.pareto(1.2, per_file) * 50.0)
        dl_score = rng.uniform(0.0, 1.0, per_file)
        dl_score[rng.random(per_file) < 0.2] = np.nan
        pd.DataFrame(
            {
                "user_id": rng.integers(1, 10_000, per_file),
                "video_id": rng.integers(1, 200_000, per_file),
                "creator_id": rng.integers(1, 20_000, per_file),
                "published_at": NOW
                - pd.to_timedelta(rng.uniform(0, 30 * 86_400, per_file), unit="s"),
                "views": views,
                "completion_sum": views * rng.uniform(0.0, 1.0, per_file),
                "likes": np.floor(views * rng.uniform(0.0, 0.3, per_file)),
                "shares": np.floor(views * rng.uniform(0.0, 0.05, per_file)),
                "comments": np.floor(views * rng.uniform(0.0, 0.1, per_file)),
                "affinity": rng.uniform(0.0, 1.0, per_file),
                "dl_score": dl_score,
            }
        ).to_parquet(directory / f"part-{index}.parquet", index=False)
    return directory


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with (
        distributed.LocalCluster(
            n_workers=WORKERS, processes=True, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as connected,
    ):
        warmup_dask(connected)
        yield connected


def single_process(directory: Path) -> float:
    frame = pd.read_parquet(directory)
    assert len(frame) == ROWS
    return float(score_frame(frame, now=NOW, progress=False)["score"].astype("float64").sum())


def on_dask(directory: Path) -> float:
    frame = dd.read_parquet(str(directory))
    scored = score_frame(frame, now=NOW)
    return float(scored["score"].astype("float64").sum().compute())


def _best_seconds(function: Any, *args: Any, repeat: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = function(*args)
        best = min(best, time.perf_counter() - started)
    return best, result


def test_dask_against_single_process(parquet_dir: Path, client: Any) -> None:
    single_process(parquet_dir)  # compile or load the kernels here too, and warm the files
    repeat = 3 if QUICK else 2
    single_seconds, single_sum = _best_seconds(single_process, parquet_dir, repeat=repeat)
    dask_seconds, dask_sum = _best_seconds(on_dask, parquet_dir, repeat=repeat)
    # Same rows, same moment: the sums agree up to float32 rounding of each score.
    assert dask_sum == pytest.approx(single_sum, rel=1e-6)
    line = (
        f"read Parquet + score_frame over {ROWS} rows: one process {single_seconds:.2f} s "
        f"({ROWS / single_seconds / 1e6:.2f}M rows/s), Dask LocalCluster({WORKERS} processes) "
        f"{dask_seconds:.2f} s ({ROWS / dask_seconds / WORKERS / 1e6:.2f}M rows/s per worker), "
        f"one process / Dask = {single_seconds / dask_seconds:.2f}x; "
        f"load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])}"
    )
    print("\n" + line)
    SUMMARY.append(line)
