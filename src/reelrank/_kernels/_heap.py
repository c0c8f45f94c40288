"""The bounded top-k heap shared by the rank kernel, the cosine top-k kernel and the
BM25 search kernels.

A kernel keeps its best ``k`` items in two arrays of length ``k``: ``heap_scores``
(``float32`` in the rank and cosine kernels, ``float64`` in the search kernels) and
``heap_positions`` (``int64`` indices into the kernel's candidates).
Items are ordered by score descending, then video id ascending, then position ascending,
so the result never depends on the order candidates arrive in. The heap is a min-heap
on that order: its root is the worst item kept, which is all a kernel needs to decide
whether a new candidate gets in. :func:`heap_sort_out` then sorts the arrays in place,
best first, so a kernel can use its output arrays as the heap and copy nothing.

Video ids are read from ``video_ids[position]`` and only when two scores tie, which
keeps the comparison to one float compare on the common path and the heap to two
arrays. Scores must have the dtype of ``heap_scores``: a ``float64`` score compared
with stored ``float32`` scores breaks tie order.

The helpers take the heap arrays (and ``video_ids``) as arguments, which numba inlines;
every array argument is a reference-count increment and decrement unless numba's
pruning pass can pair them up and remove them. It can when the helper leaves by one
path only, so the helpers have a single ``return`` and loops that end through their
condition, never through ``break``. Written with ``break`` and early returns, the rank
kernel ran 7-12% slower at 1,000 candidates (measured against per-kernel closures,
which read the arrays without passing them); written this way it is as fast.
"""

from __future__ import annotations

from typing import Any

from ._presets import inline_helper

__all__ = ["heap_push", "heap_replace", "heap_sort_out", "ranks_after"]


@inline_helper
def ranks_after(
    video_ids: Any, score_a: Any, position_a: Any, score_b: Any, position_b: Any
) -> Any:
    """Whether item ``a`` ranks after item ``b``: lower score, then larger id, then position."""
    # Ids are read only for tied scores. One return: see the module docstring.
    after = score_a < score_b
    if score_a == score_b:
        video_a = video_ids[position_a]
        video_b = video_ids[position_b]
        after = video_a > video_b or (video_a == video_b and position_a > position_b)
    return after


@inline_helper
def heap_push(
    video_ids: Any, heap_scores: Any, heap_positions: Any, size: Any, score: Any, position: Any
) -> None:
    """Add an item to a heap of ``size`` items (the caller then counts ``size + 1``)."""
    # The new item enters at the end and climbs while it ranks after its parent. No
    # ``break``: see the module docstring.
    node = size
    climbing = node > 0
    while climbing:
        parent = (node - 1) >> 1
        parent_position = heap_positions[parent]
        climbing = ranks_after(video_ids, score, position, heap_scores[parent], parent_position)
        if climbing:
            heap_scores[node] = heap_scores[parent]
            heap_positions[node] = parent_position
            node = parent
            climbing = node > 0
    heap_scores[node] = score
    heap_positions[node] = position


@inline_helper
def heap_replace(
    video_ids: Any,
    heap_scores: Any,
    heap_positions: Any,
    size: Any,
    node: Any,
    score: Any,
    position: Any,
) -> None:
    """Put an item at ``node`` and sift it down: replaces the root (``node`` 0) or moves
    a kept item to where a better score belongs."""
    # No ``break``: see the module docstring.
    sinking = True
    while sinking:
        child = 2 * node + 1
        sinking = child < size
        if sinking:
            child_score = heap_scores[child]
            child_position = heap_positions[child]
            right = child + 1
            if right < size:
                right_position = heap_positions[right]
                if ranks_after(
                    video_ids, heap_scores[right], right_position, child_score, child_position
                ):
                    child = right
                    child_score = heap_scores[right]
                    child_position = right_position
            sinking = ranks_after(video_ids, child_score, child_position, score, position)
            if sinking:
                heap_scores[node] = child_score
                heap_positions[node] = child_position
                node = child
    heap_scores[node] = score
    heap_positions[node] = position


@inline_helper
def heap_sort_out(video_ids: Any, heap_scores: Any, heap_positions: Any, size: Any) -> None:
    """Sort a heap of ``size`` items in place, best first."""
    # Move the worst remaining item behind the shrinking heap, again and again.
    for end in range(size - 1, 0, -1):
        last_score = heap_scores[end]
        last_position = heap_positions[end]
        heap_scores[end] = heap_scores[0]
        heap_positions[end] = heap_positions[0]
        heap_replace(video_ids, heap_scores, heap_positions, end, 0, last_score, last_position)
