"""Compiling every kernel on a request path before the first request needs it."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._kernels import _rank as kernels
from .discovery import top_k_cosine
from .scoring import Candidates, DiversityRule, Ranker

__all__ = ["warmup", "warmup_dask"]


def warmup() -> None:
    """Compile (or load from the cache) every kernel variant.

    Covers the scoring kernels and the other kernels on a request path: the feed's
    diversity re-rank and the similar-videos top-k. Call it once at service start so
    the first request does not pay for compilation.
    """
    DiversityRule(max_creator_run=1, max_sound_run=1).order([7, 7, 8], [1, 2, 1])
    unit_rows = np.eye(2, dtype=np.float32)
    top_k_cosine(unit_rows, unit_rows[0].copy(), np.array([1, 2], dtype=np.int64), 1)
    candidates = Candidates.from_arrays(
        video_id=[1, 2],
        creator_id=[7, 8],
        published_at=[0.0, 3600.0],
        views=[10, 0],
        completion_sum=[5, 0],
        likes=[1, 0],
        shares=[0, 0],
        comments=[0, 0],
        dl_score=[0.5, np.nan],
    )
    ranker = Ranker()
    per_candidate = np.array([0.5, 0.25], dtype=np.float32)
    for affinity in (None, {7: 0.5}, per_candidate):
        ranker.rank(candidates, k=1, now=7200.0, affinity=affinity, seen=[2], explain=True)
        ranker.score(candidates, now=7200.0, affinity=affinity)
    ranker.score_batch(candidates, per_candidate.reshape(1, 2), now=7200.0)
    # score_batch only goes parallel for large batches; compile that kernel too.
    static = ranker.score(candidates, now=7200.0)
    out = np.empty((1, 2), dtype=np.float32)
    kernels.batch_kernel(static, per_candidate.reshape(1, 2), np.float32(0.0), out)


def _warmup_scoring() -> None:
    """Compile (or load) the kernels :func:`~reelrank.score_frame` uses, and no others."""
    candidates = Candidates.from_arrays(
        video_id=[1, 2],
        creator_id=[7, 8],
        published_at=[0.0, 3600.0],
        views=[10, 0],
        completion_sum=[5, 0],
        likes=[1, 0],
        shares=[0, 0],
        comments=[0, 0],
        dl_score=[0.5, np.nan],
    )
    ranker = Ranker()
    for affinity in (None, np.array([0.5, 0.25])):
        ranker.score(candidates, now=7200.0, affinity=affinity)
        ranker.explain(candidates, now=7200.0, affinity=affinity)


def warmup_dask(client: Any) -> list[str]:
    """Load the scoring kernels on every worker of a Dask cluster; return their addresses.

    Each worker is its own process and compiles (or loads from the numba cache) the
    kernels the first time it scores; calling this once after the cluster starts moves
    that cost out of the first partitions of :func:`~reelrank.score_frame`. Only the
    kernels ``score_frame`` needs are loaded, not the serving ones :func:`warmup` covers.
    Workers that join later are not covered: call it again after scaling up.

    Args:
        client: a connected ``distributed.Client``.
    """
    return sorted(client.run(_warmup_scoring))
