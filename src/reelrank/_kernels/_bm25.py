"""numba kernels behind the in-memory search index: BM25 top-k over CSR postings.

Private: :class:`reelrank.InMemorySearchIndex` builds every array and checks every
argument, so the kernels assume the layout below and take only arrays and scalars.

A segment of postings is CSR: the postings of term ``t`` are ``docs[offsets[t]:
offsets[t + 1]]`` (int32 document slots, ascending) with their field-weighted term
frequencies in ``tfs`` (float32). Per document slot, ``lengths`` (float32) holds the
field-weighted length, ``alive`` (uint8) whether the slot is current, and ``video_ids``
(int64) the video. Postings are cut in blocks of :data:`BLOCK`; for each block the
largest term frequency and the shortest document bound every score in the block, which
lets a single-term search skip blocks that cannot reach its current top ``k``
(block-max pruning).

A query arrives as groups of expansion terms (``group_starts`` into ``terms`` and
``idfs``), rarest group first: a document matches when every group holds at least one
of its terms; a group scores its best expansion, the document the sum of its groups.

Scores are float64 from the same expression as the exhaustive definition
(:class:`reelrank.SearchConfig`). Ties go to the smaller video id.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

__all__ = ["BLOCK", "block_bounds", "build_csr", "merge_segments", "slot_terms", "top_k_bm25"]

BLOCK = 128
"""Postings per block for block-max pruning."""

# Self-contained fast-math set (the shared kernel flags without nnan/ninf): the kernels
# compare scores with NaN-free inputs but must not let the compiler assume away infinities.
_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

# Relative slack on block bounds: a bound and a posting's score are computed by the same
# expression but may round differently under fast math, so a block is skipped only when
# its bound is clearly below the threshold.
_BOUND_SLACK = 1e-9

_inline: Any = njit(cache=True, nogil=True, fastmath=_FASTMATH, error_model="numpy", inline="always")
_kernel: Any = njit(cache=True, nogil=True, fastmath=_FASTMATH, error_model="numpy")


@_inline
def _bm25(idf: float, tf: float, length: float, k1: float, b: float, mean_length: float) -> float:
    norm = k1 * (1.0 - b + b * length / mean_length)
    return idf * tf * (k1 + 1.0) / (tf + norm)


@_inline
def _is_better(score_a: float, id_a: int, score_b: float, id_b: int) -> bool:
    return score_a > score_b or (score_a == score_b and id_a < id_b)


@_inline
def _sift_down(scores: np.ndarray, ids: np.ndarray, slots: np.ndarray, size: int) -> None:
    # Min-heap on "worse": the root is the weakest kept hit.
    position = 0
    while True:
        left = 2 * position + 1
        if left >= size:
            return
        weakest = left
        right = left + 1
        if right < size and _is_better(scores[left], ids[left], scores[right], ids[right]):
            weakest = right
        if not _is_better(scores[position], ids[position], scores[weakest], ids[weakest]):
            return
        scores[position], scores[weakest] = scores[weakest], scores[position]
        ids[position], ids[weakest] = ids[weakest], ids[position]
        slots[position], slots[weakest] = slots[weakest], slots[position]
        position = weakest


@_inline
def _sift_up(scores: np.ndarray, ids: np.ndarray, slots: np.ndarray, position: int) -> None:
    while position > 0:
        parent = (position - 1) // 2
        if not _is_better(scores[parent], ids[parent], scores[position], ids[position]):
            return
        scores[position], scores[parent] = scores[parent], scores[position]
        ids[position], ids[parent] = ids[parent], ids[position]
        slots[position], slots[parent] = slots[parent], slots[position]
        position = parent


@_inline
def _offer(
    scores: np.ndarray, ids: np.ndarray, slots: np.ndarray, size: int, k: int,
    score: float, video_id: int, slot: int,
) -> int:
    """Keep ``(score, video_id)`` if it is among the best ``k``; returns the new size."""
    if size < k:
        scores[size] = score
        ids[size] = video_id
        slots[size] = slot
        _sift_up(scores, ids, slots, size)
        return size + 1
    if _is_better(score, video_id, scores[0], ids[0]):
        scores[0] = score
        ids[0] = video_id
        slots[0] = slot
        _sift_down(scores, ids, slots, size)
    return size


@_inline
def _find(docs: np.ndarray, start: int, end: int, slot: int) -> int:
    """Position of ``slot`` in the sorted ``docs[start:end]``, or -1."""
    low = start
    high = end
    while low < high:
        middle = (low + high) >> 1
        if docs[middle] < slot:
            low = middle + 1
        else:
            high = middle
    if low < end and docs[low] == slot:
        return low
    return -1


@_kernel
def _single_term(
    offsets: np.ndarray, docs: np.ndarray, tfs: np.ndarray,
    block_starts: np.ndarray, block_max_tf: np.ndarray, block_min_length: np.ndarray,
    lengths: np.ndarray, alive: np.ndarray, video_ids: np.ndarray,
    term: int, idf: float, k1: float, b: float, mean_length: float, k: int,
    out_scores: np.ndarray, out_ids: np.ndarray, out_slots: np.ndarray,
) -> int:
    size = 0
    start = offsets[term]
    end = offsets[term + 1]
    block = block_starts[term]
    for block_start in range(start, end, BLOCK):
        block_end = min(block_start + BLOCK, end)
        if size == k:
            bound = _bm25(idf, block_max_tf[block], block_min_length[block], k1, b, mean_length)
            if bound * (1.0 + _BOUND_SLACK) < out_scores[0]:
                block += 1
                continue
        block += 1
        for position in range(block_start, block_end):
            slot = docs[position]
            if alive[slot]:
                score = _bm25(idf, tfs[position], lengths[slot], k1, b, mean_length)
                size = _offer(
                    out_scores, out_ids, out_slots, size, k, score, video_ids[slot], slot
                )
    return size


@_kernel
def _conjunctive(
    offsets: np.ndarray, docs: np.ndarray, tfs: np.ndarray,
    lengths: np.ndarray, alive: np.ndarray, video_ids: np.ndarray,
    terms: np.ndarray, group_starts: np.ndarray, idfs: np.ndarray,
    k1: float, b: float, mean_length: float, k: int,
    out_scores: np.ndarray, out_ids: np.ndarray, out_slots: np.ndarray,
) -> int:
    n_groups = group_starts.shape[0] - 1
    n_slots = lengths.shape[0]
    n_terms = offsets.shape[0] - 1
    # matched[slot] = how many groups the slot matched so far (0: not a candidate); the
    # totals and the current group's best score are only read where matched says so,
    # so they need no clearing.
    matched = np.zeros(n_slots, dtype=np.int32)
    total = np.empty(n_slots, dtype=np.float64)
    best = np.empty(n_slots, dtype=np.float64)
    # Candidates come from the rarest group (the caller puts it first).
    n_candidates = 0
    for position in range(group_starts[1] - group_starts[0]):
        term = terms[group_starts[0] + position]
        if term >= n_terms:
            continue
        n_candidates += offsets[term + 1] - offsets[term]
    candidates = np.empty(n_candidates, dtype=np.int32)
    n_candidates = 0
    for position in range(group_starts[0], group_starts[1]):
        term = terms[position]
        if term >= n_terms:
            continue
        idf = idfs[position]
        for posting in range(offsets[term], offsets[term + 1]):
            slot = docs[posting]
            if not alive[slot]:
                continue
            score = _bm25(idf, tfs[posting], lengths[slot], k1, b, mean_length)
            if matched[slot] == 0:
                matched[slot] = 1
                total[slot] = score
                candidates[n_candidates] = slot
                n_candidates += 1
            elif score > total[slot]:
                total[slot] = score
    for group in range(1, n_groups):
        if n_candidates == 0:
            break
        group_postings = 0
        n_expansions = group_starts[group + 1] - group_starts[group]
        for position in range(group_starts[group], group_starts[group + 1]):
            term = terms[position]
            if term < n_terms:
                group_postings += offsets[term + 1] - offsets[term]
        # Few candidates against long postings: look each candidate up by binary search
        # (about 20 probes each); otherwise stream the postings once.
        lookup = n_candidates * n_expansions * 20 < group_postings
        if lookup:
            for index in range(n_candidates):
                slot = candidates[index]
                group_best = -1.0
                for position in range(group_starts[group], group_starts[group + 1]):
                    term = terms[position]
                    if term >= n_terms:
                        continue
                    found = _find(docs, offsets[term], offsets[term + 1], slot)
                    if found >= 0:
                        score = _bm25(idfs[position], tfs[found], lengths[slot], k1, b, mean_length)
                        if score > group_best:
                            group_best = score
                if group_best >= 0.0:
                    matched[slot] = group + 1
                    best[slot] = group_best
        else:
            for position in range(group_starts[group], group_starts[group + 1]):
                term = terms[position]
                if term >= n_terms:
                    continue
                idf = idfs[position]
                for posting in range(offsets[term], offsets[term + 1]):
                    slot = docs[posting]
                    seen = matched[slot]
                    if seen == group:
                        matched[slot] = group + 1
                        best[slot] = _bm25(idf, tfs[posting], lengths[slot], k1, b, mean_length)
                    elif seen == group + 1:
                        score = _bm25(idf, tfs[posting], lengths[slot], k1, b, mean_length)
                        if score > best[slot]:
                            best[slot] = score
        kept = 0
        for index in range(n_candidates):
            slot = candidates[index]
            if matched[slot] == group + 1:
                total[slot] += best[slot]
                candidates[kept] = slot
                kept += 1
        n_candidates = kept
    size = 0
    for index in range(n_candidates):
        slot = candidates[index]
        size = _offer(out_scores, out_ids, out_slots, size, k, total[slot], video_ids[slot], slot)
    return size


@_kernel
def _sort_heap(scores: np.ndarray, ids: np.ndarray, slots: np.ndarray, size: int) -> None:
    # Pop the weakest to the back until the heap is empty: best first afterwards.
    while size > 1:
        size -= 1
        scores[0], scores[size] = scores[size], scores[0]
        ids[0], ids[size] = ids[size], ids[0]
        slots[0], slots[size] = slots[size], slots[0]
        _sift_down(scores, ids, slots, size)


def top_k_bm25(
    offsets: np.ndarray, docs: np.ndarray, tfs: np.ndarray,
    block_starts: np.ndarray, block_max_tf: np.ndarray, block_min_length: np.ndarray,
    lengths: np.ndarray, alive: np.ndarray, video_ids: np.ndarray,
    terms: np.ndarray, group_starts: np.ndarray, idfs: np.ndarray,
    k1: float, b: float, mean_length: float, k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` (video ids, scores) of one segment, best first (ties: smaller id).

    ``block_starts`` may be empty (a segment without blocks): a single-term query then
    scans every posting.
    """
    out_scores = np.empty(k, dtype=np.float64)
    out_ids = np.empty(k, dtype=np.int64)
    out_slots = np.empty(k, dtype=np.int32)
    single = group_starts.shape[0] == 2 and group_starts[1] - group_starts[0] == 1
    term = int(terms[0])
    if single and block_starts.shape[0] > 0 and term < offsets.shape[0] - 1:
        size = _single_term(
            offsets, docs, tfs, block_starts, block_max_tf, block_min_length,
            lengths, alive, video_ids, term, float(idfs[0]), k1, b, mean_length, k,
            out_scores, out_ids, out_slots,
        )
    else:
        size = _conjunctive(
            offsets, docs, tfs, lengths, alive, video_ids, terms, group_starts, idfs,
            k1, b, mean_length, k, out_scores, out_ids, out_slots,
        )
    _sort_heap(out_scores, out_ids, out_slots, size)
    return out_ids[:size], out_scores[:size]


@_kernel
def block_bounds(
    offsets: np.ndarray, docs: np.ndarray, tfs: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-term first block and per-block largest tf and shortest document length."""
    n_terms = offsets.shape[0] - 1
    block_starts = np.empty(n_terms + 1, dtype=np.int64)
    n_blocks = 0
    for term in range(n_terms):
        block_starts[term] = n_blocks
        n_blocks += (offsets[term + 1] - offsets[term] + BLOCK - 1) // BLOCK
    block_starts[n_terms] = n_blocks
    max_tf = np.empty(n_blocks, dtype=np.float32)
    min_length = np.empty(n_blocks, dtype=np.float32)
    for term in range(n_terms):
        block = block_starts[term]
        for start in range(offsets[term], offsets[term + 1], BLOCK):
            end = min(start + BLOCK, offsets[term + 1])
            top = tfs[start]
            shortest = lengths[docs[start]]
            for position in range(start + 1, end):
                top = max(top, tfs[position])
                shortest = min(shortest, lengths[docs[position]])
            max_tf[block] = top
            min_length[block] = shortest
            block += 1
    return block_starts, max_tf, min_length


@_kernel
def slot_terms(offsets: np.ndarray, docs: np.ndarray, slot: int) -> np.ndarray:
    """The terms whose postings hold ``slot`` (one binary search per term)."""
    n_terms = offsets.shape[0] - 1
    found = np.empty(n_terms, dtype=np.int32)
    count = 0
    for term in range(n_terms):
        if _find(docs, offsets[term], offsets[term + 1], slot) >= 0:
            found[count] = term
            count += 1
    return found[:count].copy()


@_kernel
def merge_segments(
    offsets: np.ndarray, docs: np.ndarray, tfs: np.ndarray,
    delta_offsets: np.ndarray, delta_docs: np.ndarray, delta_tfs: np.ndarray,
    new_slot: np.ndarray, n_terms: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One CSR from two segments, renumbering slots by ``new_slot`` (-1 drops a slot).

    ``new_slot`` must keep each segment's order: every term's postings stay ascending
    when the two (renumbered) runs are merged.
    """
    counts = np.zeros(n_terms + 1, dtype=np.int64)
    for source_offsets, source_docs in ((offsets, docs), (delta_offsets, delta_docs)):
        for term in range(min(n_terms, source_offsets.shape[0] - 1)):
            for position in range(source_offsets[term], source_offsets[term + 1]):
                if new_slot[source_docs[position]] >= 0:
                    counts[term + 1] += 1
    merged_offsets = np.cumsum(counts)
    merged_docs = np.empty(merged_offsets[n_terms], dtype=np.int32)
    merged_tfs = np.empty(merged_offsets[n_terms], dtype=np.float32)
    n_base = offsets.shape[0] - 1
    n_delta = delta_offsets.shape[0] - 1
    for term in range(n_terms):
        write = merged_offsets[term]
        left = offsets[term] if term < n_base else 0
        left_end = offsets[term + 1] if term < n_base else 0
        right = delta_offsets[term] if term < n_delta else 0
        right_end = delta_offsets[term + 1] if term < n_delta else 0
        while True:
            while left < left_end and new_slot[docs[left]] < 0:
                left += 1
            while right < right_end and new_slot[delta_docs[right]] < 0:
                right += 1
            if left >= left_end and right >= right_end:
                break
            if right >= right_end or (
                left < left_end and new_slot[docs[left]] < new_slot[delta_docs[right]]
            ):
                merged_docs[write] = new_slot[docs[left]]
                merged_tfs[write] = tfs[left]
                left += 1
            else:
                merged_docs[write] = new_slot[delta_docs[right]]
                merged_tfs[write] = delta_tfs[right]
                right += 1
            write += 1
    return merged_offsets, merged_docs, merged_tfs


@_kernel
def build_csr(
    row_starts: np.ndarray, terms: np.ndarray, tfs: np.ndarray,
    row_order: np.ndarray, row_slots: np.ndarray, n_terms: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR postings from per-document rows (``row_starts`` into ``terms`` and ``tfs``).

    Rows are laid down in ``row_order``, row ``r`` as slot ``row_slots[r]``; the caller
    makes the slots ascend along ``row_order`` so every term's postings come out sorted.
    """
    offsets = np.zeros(n_terms + 1, dtype=np.int64)
    for position in range(terms.shape[0]):
        offsets[terms[position] + 1] += 1
    for term in range(n_terms):
        offsets[term + 1] += offsets[term]
    cursor = offsets[:-1].copy()
    docs = np.empty(terms.shape[0], dtype=np.int32)
    out_tfs = np.empty(terms.shape[0], dtype=np.float32)
    for index in range(row_order.shape[0]):
        row = row_order[index]
        slot = row_slots[row]
        for position in range(row_starts[row], row_starts[row + 1]):
            term = terms[position]
            write = cursor[term]
            docs[write] = slot
            out_tfs[write] = tfs[position]
            cursor[term] = write + 1
    return offsets, docs, out_tfs
