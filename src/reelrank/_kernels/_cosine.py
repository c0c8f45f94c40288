"""numba kernel behind similar videos: cosine top-k over a row-normalised embedding matrix.

Private: the typed wrapper :func:`reelrank.top_k_cosine` validates every array before
calling in here, so the kernel can assume float32 C-contiguous rows of the query's width.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._heap import heap_push, heap_replace, heap_sort_out, ranks_after
from ._presets import serial_kernel

__all__ = ["top_k_cosine_kernel"]


@serial_kernel
def top_k_cosine_kernel(
    matrix: Any,
    query: Any,
    video_ids: Any,
    excluded: Any,
    out_rows: Any,
    out_scores: Any,
) -> int:
    """Write the best ``len(out_rows)`` rows by ``matrix[i] . query`` into the outputs.

    ``matrix`` is float32 ``(n, d)`` C-contiguous with unit-length (or zero) rows,
    ``query`` float32 ``(d,)``, ``video_ids`` int64 ``(n,)``, ``excluded`` uint8 ``(n,)``
    (non-zero rows are skipped); ``out_rows`` (int64) and ``out_scores`` (float32) have
    the same length ``k``. Results are ordered by score descending, then video id
    ascending, then row. Returns how many slots were filled (fewer than ``k`` when fewer
    rows are eligible).
    """
    k = out_rows.shape[0]
    n = matrix.shape[0]
    width = matrix.shape[1]
    if k == 0:
        return 0
    # The outputs are the heap (see ._heap): sorted in place at the end.
    heap_scores = out_scores
    heap_rows = out_rows
    size = 0
    for row in range(n):
        if excluded[row] != 0:
            continue
        # float32 throughout, like the heap's scores (see ._heap).
        acc = np.float32(0.0)
        for column in range(width):
            acc += matrix[row, column] * query[column]
        if size < k:
            heap_push(video_ids, heap_scores, heap_rows, size, acc, row)
            size += 1
        elif ranks_after(video_ids, heap_scores[0], heap_rows[0], acc, row):
            heap_replace(video_ids, heap_scores, heap_rows, size, 0, acc, row)
    heap_sort_out(video_ids, heap_scores, heap_rows, size)
    return size
