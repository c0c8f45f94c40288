"""The bounded top-k heap shared by the rank kernel and the cosine top-k kernel.

A kernel keeps its best ``k`` items in two arrays of length ``k``: ``heap_scores``
(``float32``) and ``heap_positions`` (``int64`` indices into the kernel's candidates).
Items are ordered by score descending, then video id ascending, then position ascending,
so the result never depends on the order candidates arrive in. The heap is a min-heap
on that order: its root is the worst item kept, which is all a kernel needs to decide
whether a new candidate gets in. :func:`heap_sort_out` then sorts the arrays in place,
best first, so a kernel can use its output arrays as the heap and copy nothing.

Video ids are read from ``video_ids[position]`` and only when two scores tie, which
keeps the comparison to one float compare on the common path and the heap to two
arrays. The helpers take the heap arrays and scalars only; scores must be ``float32``
like ``heap_scores`` (a ``float64`` score compared with stored ``float32`` scores breaks
tie order).
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
    if score_a != score_b:
        return score_a < score_b
    video_a = video_ids[position_a]
    video_b = video_ids[position_b]
    if video_a != video_b:
        return video_a > video_b
    return position_a > position_b


@inline_helper
def heap_push(
    video_ids: Any, heap_scores: Any, heap_positions: Any, size: Any, score: Any, position: Any
) -> None:
    """Add an item to a heap of ``size`` items (the caller then counts ``size + 1``)."""
    # The new item enters at the end and climbs while it ranks after its parent.
    node = size
    while node > 0:
        parent = (node - 1) >> 1
        if not ranks_after(video_ids, score, position, heap_scores[parent], heap_positions[parent]):
            break
        heap_scores[node] = heap_scores[parent]
        heap_positions[node] = heap_positions[parent]
        node = parent
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
    while True:
        child = 2 * node + 1
        if child >= size:
            break
        child_score = heap_scores[child]
        child_position = heap_positions[child]
        right = child + 1
        if right < size and ranks_after(
            video_ids, heap_scores[right], heap_positions[right], child_score, child_position
        ):
            child = right
            child_score = heap_scores[right]
            child_position = heap_positions[right]
        if not ranks_after(video_ids, child_score, child_position, score, position):
            break
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
