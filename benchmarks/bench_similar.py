"""Similar videos: the numba cosine top-k against NumPy matmul + argpartition, same data.

100k x 64 float32 embeddings (10k in quick mode), top 20, the query video excluded. The
baseline is what one would write without the kernel: ``matrix @ query``, mask the query
row, ``argpartition`` for the best ``k`` and a ``lexsort`` to order them by (score desc,
id asc). NumPy's matrix product runs on every BLAS thread; the kernel runs on one thread,
and on two with ``threads=2`` (which only splits matrices of 65,536 rows or more).
Compare the cases' means in the same run; the ratios are printed as well.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import pytest

from reelrank import EmbeddingIndex, top_k_cosine

QUICK = os.environ.get("REELRANK_BENCH_QUICK") == "1"
ROWS = 10_000 if QUICK else 100_000
DIMENSIONS = 64
K = 20


@pytest.fixture(scope="module")
def index() -> EmbeddingIndex:
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((ROWS, DIMENSIONS)).astype(np.float32)
    return EmbeddingIndex(np.arange(1, ROWS + 1), vectors)


def numpy_top_k(
    matrix: np.ndarray, query: np.ndarray, ids: np.ndarray, row: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    scores = matrix @ query
    scores[row] = -np.inf
    best = np.argpartition(-scores, k)[:k]
    order = np.lexsort((ids[best], -scores[best]))
    return ids[best[order]], scores[best[order]]


def kernel_top_k(
    matrix: np.ndarray, query: np.ndarray, ids: np.ndarray, row: int, k: int, threads: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    excluded = np.zeros(ids.size, dtype=np.uint8)
    excluded[row] = 1
    return top_k_cosine(matrix, query, ids, k, excluded=excluded, threads=threads)


def _mean_seconds(function: Any, *args: Any, repeat: int = 30) -> float:
    function(*args)
    started = time.perf_counter()
    for _ in range(repeat):
        function(*args)
    return (time.perf_counter() - started) / repeat


def test_similar_kernel(benchmark: Any, index: EmbeddingIndex) -> None:
    matrix, ids = index.matrix, index.video_ids
    query = matrix[123].copy()
    got_ids, _ = benchmark(kernel_top_k, matrix, query, ids, 123, K)
    expected_ids, _ = numpy_top_k(matrix, query, ids, 123, K)
    np.testing.assert_array_equal(got_ids, expected_ids)


def test_similar_kernel_two_threads(benchmark: Any, index: EmbeddingIndex) -> None:
    matrix, ids = index.matrix, index.video_ids
    query = matrix[123].copy()
    got_ids, _ = benchmark(kernel_top_k, matrix, query, ids, 123, K, 2)
    expected_ids, _ = numpy_top_k(matrix, query, ids, 123, K)
    np.testing.assert_array_equal(got_ids, expected_ids)


def test_similar_numpy_baseline(benchmark: Any, index: EmbeddingIndex) -> None:
    matrix, ids = index.matrix, index.video_ids
    query = matrix[123].copy()
    got_ids, _ = benchmark(numpy_top_k, matrix, query, ids, 123, K)
    assert 123 + 1 not in got_ids.tolist()


def test_similar_ratio_to_baseline(index: EmbeddingIndex) -> None:
    """Times the cases back to back (interleaved) and prints baseline / kernel."""
    matrix, ids = index.matrix, index.video_ids
    query = matrix[123].copy()
    kernel, kernel_two, baseline = [], [], []
    for _ in range(3):
        kernel.append(_mean_seconds(kernel_top_k, matrix, query, ids, 123, K))
        kernel_two.append(_mean_seconds(kernel_top_k, matrix, query, ids, 123, K, 2))
        baseline.append(_mean_seconds(numpy_top_k, matrix, query, ids, 123, K))
    print(
        f"\nsimilar top-{K} over {ROWS}x{DIMENSIONS}: numpy {min(baseline) * 1e3:.3f} ms; "
        f"kernel {min(kernel) * 1e3:.3f} ms (numpy/kernel = {min(baseline) / min(kernel):.2f}x); "
        f"kernel, 2 threads {min(kernel_two) * 1e3:.3f} ms "
        f"(numpy/kernel = {min(baseline) / min(kernel_two):.2f}x)"
    )
