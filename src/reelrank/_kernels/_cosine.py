"""numba kernel behind similar videos: cosine top-k over a row-normalised embedding matrix.

Private: the typed wrapper :func:`reelrank.top_k_cosine` validates every array before
calling in here, so the kernel can assume float32 C-contiguous rows of the query's width.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from ._rank import FASTMATH

__all__ = ["top_k_cosine_kernel"]


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def _is_better(score_a: Any, id_a: Any, score_b: Any, id_b: Any) -> Any:
    # Higher score first; equal scores go to the smaller id, so results never depend on
    # the order of rows in the matrix.
    return score_a > score_b or (score_a == score_b and id_a < id_b)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def _sift_down(
    heap_scores: np.ndarray, heap_ids: np.ndarray, heap_rows: np.ndarray, size: int
) -> None:
    # Min-heap on "worse": the root is the weakest of the kept candidates.
    position = 0
    while True:
        left = 2 * position + 1
        if left >= size:
            return
        weakest = left
        right = left + 1
        if right < size and _is_better(
            heap_scores[left], heap_ids[left], heap_scores[right], heap_ids[right]
        ):
            weakest = right
        if not _is_better(
            heap_scores[position], heap_ids[position], heap_scores[weakest], heap_ids[weakest]
        ):
            return
        heap_scores[position], heap_scores[weakest] = heap_scores[weakest], heap_scores[position]
        heap_ids[position], heap_ids[weakest] = heap_ids[weakest], heap_ids[position]
        heap_rows[position], heap_rows[weakest] = heap_rows[weakest], heap_rows[position]
        position = weakest


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def _sift_up(
    heap_scores: np.ndarray, heap_ids: np.ndarray, heap_rows: np.ndarray, position: int
) -> None:
    while position > 0:
        parent = (position - 1) // 2
        if not _is_better(
            heap_scores[parent], heap_ids[parent], heap_scores[position], heap_ids[position]
        ):
            return
        heap_scores[position], heap_scores[parent] = heap_scores[parent], heap_scores[position]
        heap_ids[position], heap_ids[parent] = heap_ids[parent], heap_ids[position]
        heap_rows[position], heap_rows[parent] = heap_rows[parent], heap_rows[position]
        position = parent


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def top_k_cosine_kernel(
    matrix: np.ndarray,
    query: np.ndarray,
    video_ids: np.ndarray,
    excluded: np.ndarray,
    out_rows: np.ndarray,
    out_scores: np.ndarray,
) -> int:
    """Write the best ``len(out_rows)`` rows by ``matrix[i] . query`` into the outputs.

    ``matrix`` is float32 ``(n, d)`` C-contiguous with unit-length (or zero) rows,
    ``query`` float32 ``(d,)``, ``video_ids`` int64 ``(n,)``, ``excluded`` uint8 ``(n,)``
    (non-zero rows are skipped). Results are ordered by score descending, then video id
    ascending. Returns how many slots were filled (fewer than ``k`` when fewer rows are
    eligible).
    """
    k = out_rows.shape[0]
    n = matrix.shape[0]
    width = matrix.shape[1]
    heap_scores = np.empty(k, dtype=np.float32)
    heap_ids = np.empty(k, dtype=np.int64)
    heap_rows = np.empty(k, dtype=np.int64)
    size = 0
    if k == 0:
        return 0
    for row in range(n):
        if excluded[row] != 0:
            continue
        acc = np.float32(0.0)
        for column in range(width):
            acc += matrix[row, column] * query[column]
        video_id = video_ids[row]
        if size < k:
            heap_scores[size] = acc
            heap_ids[size] = video_id
            heap_rows[size] = row
            _sift_up(heap_scores, heap_ids, heap_rows, size)
            size += 1
        elif _is_better(acc, video_id, heap_scores[0], heap_ids[0]):
            heap_scores[0] = acc
            heap_ids[0] = video_id
            heap_rows[0] = row
            _sift_down(heap_scores, heap_ids, heap_rows, size)
    # Pop the weakest into the back of the outputs, leaving them best first.
    filled = size
    while size > 0:
        size -= 1
        out_scores[size] = heap_scores[0]
        out_rows[size] = heap_rows[0]
        heap_scores[0] = heap_scores[size]
        heap_ids[0] = heap_ids[size]
        heap_rows[0] = heap_rows[size]
        _sift_down(heap_scores, heap_ids, heap_rows, size)
    return filled
