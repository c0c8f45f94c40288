"""numba kernels behind the in-memory search index: BM25 top-k over CSR postings.

Private: :class:`reelrank.InMemorySearchIndex` builds every array and checks every
argument, so the kernels assume the layout below and take only arrays and scalars.

A segment of postings is CSR: the postings of term ``t`` are ``docs[offsets[t]:
offsets[t + 1]]`` (int32 document slots, ascending) with their field-weighted term
frequencies in ``tfs`` (float32). Per document slot, ``lengths`` (float64) holds the
field-weighted length, ``alive`` (uint8) whether the slot is current, and ``video_ids``
(int64) the video. Postings are cut in blocks of :data:`BLOCK`; each block's largest
term frequency and shortest document bound every score in it. BM25 is not precomputed
per posting: idf and the mean length change with every write, so scores are computed at
query time from the frequency and the length (a few flops), and bounds from the block
maxima with the current statistics.

A query arrives as groups of expansion terms (``group_starts`` into ``terms`` and
``idfs``), rarest group first: a document matches when every group holds at least one
of its terms; a group scores its best expansion, the document the sum of its groups.
One term alone runs block-max pruning; one prefix term alone (one group, several
expansions) runs threshold pruning over its expansions and blocks; several groups
take candidates from the first and stream or binary-search the others.

Scores are float64 from the same expression as the exhaustive definition
(:class:`reelrank.SearchConfig`). Ties go to the smaller video id.

Kernels compile with the shared presets (:mod:`._presets`) and keep their best ``k``
in the shared heap (:mod:`._heap`) with document slots as its positions: float64 scores
in a float64 heap, ordered by score, then video id (slots only break ties between
equal ids, which two live slots never have).
"""

from __future__ import annotations

import numpy as np

from ._heap import heap_push, heap_replace, heap_sort_out, ranks_after
from ._presets import inline_helper, serial_kernel

__all__ = [
    "BLOCK",
    "block_bounds",
    "build_csr",
    "merge_segments",
    "postings_from_tokens",
    "slot_terms",
    "top_k_bm25",
]

BLOCK = 128
"""Postings per block for block-max pruning."""

# Relative slack on block bounds: a bound and a posting's score are computed by the same
# expression but may round differently under fast math, so a block is skipped only when
# its bound is clearly below the threshold.
_BOUND_SLACK = 1e-9


@inline_helper
def _bm25(idf: float, tf: float, length: float, k1: float, b: float, mean_length: float) -> float:
    # ``tf`` is read from float32 arrays. Compiled, it widens to float64 against ``idf``;
    # run as Python (NUMBA_DISABLE_JIT=1), numpy keeps a float32 times a Python float in
    # float32, so widen it here to get the same float64 scores both ways.
    frequency = float(tf)
    norm = k1 * (1.0 - b + b * length / mean_length)
    return idf * frequency * (k1 + 1.0) / (frequency + norm)


@inline_helper
def _offer(
    video_ids: np.ndarray,
    heap_scores: np.ndarray,
    heap_slots: np.ndarray,
    size: int,
    k: int,
    score: float,
    slot: int,
) -> int:
    """Keep the hit at ``slot`` if it is among the best ``k``; returns the new size."""
    # One return, like the shared heap helpers it wraps (see :mod:`._heap`).
    if size < k:
        heap_push(video_ids, heap_scores, heap_slots, size, score, slot)
        size += 1
    elif ranks_after(video_ids, heap_scores[0], heap_slots[0], score, slot):
        heap_replace(video_ids, heap_scores, heap_slots, size, 0, score, slot)
    return size


@inline_helper
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


@serial_kernel
def _single_term(
    offsets: np.ndarray,
    docs: np.ndarray,
    tfs: np.ndarray,
    block_starts: np.ndarray,
    block_max_tf: np.ndarray,
    block_min_length: np.ndarray,
    lengths: np.ndarray,
    alive: np.ndarray,
    video_ids: np.ndarray,
    term: int,
    idf: float,
    k1: float,
    b: float,
    mean_length: float,
    k: int,
    out_scores: np.ndarray,
    out_slots: np.ndarray,
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
                size = _offer(video_ids, out_scores, out_slots, size, k, score, slot)
    return size


@serial_kernel
def _union(
    offsets: np.ndarray,
    docs: np.ndarray,
    tfs: np.ndarray,
    block_starts: np.ndarray,
    block_max_tf: np.ndarray,
    block_min_length: np.ndarray,
    lengths: np.ndarray,
    alive: np.ndarray,
    video_ids: np.ndarray,
    terms: np.ndarray,
    idfs: np.ndarray,
    k1: float,
    b: float,
    mean_length: float,
    k: int,
    marks: np.ndarray,
    best: np.ndarray,
    out_scores: np.ndarray,
    out_slots: np.ndarray,
) -> int:
    """One group of expansions (a prefix term alone): a document scores its best expansion.

    Expansions run from the highest score bound down. The heap holds ``k`` distinct
    documents at a score they are known to reach at least, so its weakest score is a
    lower bound of the final ``k``-th best: an expansion, block or posting scoring below
    it cannot place a document in the top ``k``, and is skipped. Every document of the
    final top ``k`` is reached through its best expansion, which is never skipped, so it
    ends with its exact score.
    """
    n_terms = offsets.shape[0] - 1
    n_expansions = terms.shape[0]
    bounds = np.full(n_expansions, -1.0)
    total_postings = 0
    for index in range(n_expansions):
        term = terms[index]
        if term >= n_terms:
            continue
        total_postings += offsets[term + 1] - offsets[term]
        for block in range(block_starts[term], block_starts[term + 1]):
            bound = _bm25(
                idfs[index], block_max_tf[block], block_min_length[block], k1, b, mean_length
            )
            if bound > bounds[index]:
                bounds[index] = bound
    order = np.argsort(-bounds)
    candidates = np.empty(total_postings, dtype=np.int32)
    n_candidates = 0
    size = 0
    # marks: bit 1 = the slot is a candidate (best[] is set), bit 2 = it is in the heap.
    for rank in range(n_expansions):
        index = order[rank]
        if bounds[index] < 0.0:
            break
        if size == k and bounds[index] * (1.0 + _BOUND_SLACK) < out_scores[0]:
            break
        term = terms[index]
        idf = idfs[index]
        block = block_starts[term]
        end = offsets[term + 1]
        for block_start in range(offsets[term], end, BLOCK):
            block_end = min(block_start + BLOCK, end)
            if size == k:
                bound = _bm25(idf, block_max_tf[block], block_min_length[block], k1, b, mean_length)
                if bound * (1.0 + _BOUND_SLACK) < out_scores[0]:
                    block += 1
                    continue
            block += 1
            for position in range(block_start, block_end):
                slot = docs[position]
                if not alive[slot]:
                    continue
                score = _bm25(idf, tfs[position], lengths[slot], k1, b, mean_length)
                if size == k and score * (1.0 + _BOUND_SLACK) < out_scores[0]:
                    continue
                mark = marks[slot]
                if mark == 0:
                    marks[slot] = 1
                    best[slot] = score
                    candidates[n_candidates] = slot
                    n_candidates += 1
                elif score > best[slot]:
                    best[slot] = score
                if mark & 2:
                    # Already held at a lower score: the bound stays valid without it.
                    continue
                if size < k:
                    marks[slot] |= 2
                    heap_push(video_ids, out_scores, out_slots, size, score, slot)
                    size += 1
                elif ranks_after(video_ids, out_scores[0], out_slots[0], score, slot):
                    marks[out_slots[0]] &= 1
                    marks[slot] |= 2
                    heap_replace(video_ids, out_scores, out_slots, size, 0, score, slot)
    size = 0
    for index in range(n_candidates):
        slot = candidates[index]
        marks[slot] = 0
        size = _offer(video_ids, out_scores, out_slots, size, k, best[slot], slot)
    return size


@serial_kernel
def _conjunctive(
    offsets: np.ndarray,
    docs: np.ndarray,
    tfs: np.ndarray,
    lengths: np.ndarray,
    alive: np.ndarray,
    video_ids: np.ndarray,
    terms: np.ndarray,
    group_starts: np.ndarray,
    idfs: np.ndarray,
    k1: float,
    b: float,
    mean_length: float,
    k: int,
    matched: np.ndarray,
    total: np.ndarray,
    best: np.ndarray,
    out_scores: np.ndarray,
    out_slots: np.ndarray,
) -> int:
    """Every group must match: candidates from the first (rarest) group, then filtered.

    ``matched[slot]`` counts the groups a candidate matched so far; ``total`` and
    ``best`` are only read where it says so. ``matched`` is all zero on entry and left so.
    """
    n_groups = group_starts.shape[0] - 1
    n_terms = offsets.shape[0] - 1
    n_candidates = 0
    for position in range(group_starts[0], group_starts[1]):
        term = terms[position]
        if term < n_terms:
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
        for position in range(group_starts[group], group_starts[group + 1]):
            term = terms[position]
            if term >= n_terms:
                continue
            idf = idfs[position]
            start = offsets[term]
            end = offsets[term + 1]
            # Few candidates against a long postings list: binary-search each candidate
            # (about log2(length) probes); otherwise stream the postings once.
            if n_candidates * (np.log2(end - start + 1.0) + 1.0) < end - start:
                for index in range(n_candidates):
                    slot = candidates[index]
                    seen = matched[slot]
                    if seen < group:
                        continue
                    found = _find(docs, start, end, slot)
                    if found < 0:
                        continue
                    score = _bm25(idf, tfs[found], lengths[slot], k1, b, mean_length)
                    if seen == group:
                        matched[slot] = group + 1
                        best[slot] = score
                    elif score > best[slot]:
                        best[slot] = score
            else:
                for posting in range(start, end):
                    slot = docs[posting]
                    seen = matched[slot]
                    if seen < group:
                        continue
                    score = _bm25(idf, tfs[posting], lengths[slot], k1, b, mean_length)
                    if seen == group:
                        matched[slot] = group + 1
                        best[slot] = score
                    elif score > best[slot]:
                        best[slot] = score
        kept = 0
        for index in range(n_candidates):
            slot = candidates[index]
            if matched[slot] == group + 1:
                total[slot] += best[slot]
                candidates[kept] = slot
                kept += 1
            else:
                matched[slot] = 0
        n_candidates = kept
    size = 0
    for index in range(n_candidates):
        slot = candidates[index]
        matched[slot] = 0
        size = _offer(video_ids, out_scores, out_slots, size, k, total[slot], slot)
    return size


@serial_kernel
def _sorted_hits(
    video_ids: np.ndarray, heap_scores: np.ndarray, heap_slots: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """The heap's (video ids, scores), best first."""
    heap_sort_out(video_ids, heap_scores, heap_slots, size)
    ids = np.empty(size, dtype=np.int64)
    for index in range(size):
        ids[index] = video_ids[heap_slots[index]]
    return ids, heap_scores[:size]


def top_k_bm25(
    offsets: np.ndarray,
    docs: np.ndarray,
    tfs: np.ndarray,
    block_starts: np.ndarray,
    block_max_tf: np.ndarray,
    block_min_length: np.ndarray,
    lengths: np.ndarray,
    alive: np.ndarray,
    video_ids: np.ndarray,
    terms: np.ndarray,
    group_starts: np.ndarray,
    idfs: np.ndarray,
    k1: float,
    b: float,
    mean_length: float,
    k: int,
    marks: np.ndarray,
    total: np.ndarray,
    best: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` (video ids, scores) of one segment, best first (ties: smaller id).

    ``marks`` (int32), ``total`` and ``best`` (float64) are scratch arrays of at least
    ``lengths.shape[0]`` items; ``marks`` must be all zero and is left so. Without block
    arrays (``block_starts`` empty) every query takes the exhaustive conjunctive path.
    """
    out_scores = np.empty(k, dtype=np.float64)
    # The shared heap (:mod:`._heap`) keeps document slots as its positions, so it reads
    # ids as ``video_ids[slot]``; its scores are float64 like every score offered to it.
    out_slots = np.empty(k, dtype=np.int64)
    blocks = block_starts.shape[0] == offsets.shape[0]
    if blocks and group_starts.shape[0] == 2:
        known = terms[terms < offsets.shape[0] - 1]
        if known.shape[0] == 1:
            size = _single_term(
                offsets,
                docs,
                tfs,
                block_starts,
                block_max_tf,
                block_min_length,
                lengths,
                alive,
                video_ids,
                int(known[0]),
                float(idfs[terms < offsets.shape[0] - 1][0]),
                k1,
                b,
                mean_length,
                k,
                out_scores,
                out_slots,
            )
        else:
            size = _union(
                offsets,
                docs,
                tfs,
                block_starts,
                block_max_tf,
                block_min_length,
                lengths,
                alive,
                video_ids,
                terms,
                idfs,
                k1,
                b,
                mean_length,
                k,
                marks,
                best,
                out_scores,
                out_slots,
            )
    else:
        size = _conjunctive(
            offsets,
            docs,
            tfs,
            lengths,
            alive,
            video_ids,
            terms,
            group_starts,
            idfs,
            k1,
            b,
            mean_length,
            k,
            marks,
            total,
            best,
            out_scores,
            out_slots,
        )
    ids, scores = _sorted_hits(video_ids, out_scores, out_slots, size)
    return ids, scores


@serial_kernel
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
    min_length = np.empty(n_blocks, dtype=np.float64)
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


@serial_kernel
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


@serial_kernel
def merge_segments(
    offsets: np.ndarray,
    docs: np.ndarray,
    tfs: np.ndarray,
    delta_offsets: np.ndarray,
    delta_docs: np.ndarray,
    delta_tfs: np.ndarray,
    new_slot: np.ndarray,
    n_terms: int,
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


@serial_kernel
def build_csr(
    row_starts: np.ndarray,
    terms: np.ndarray,
    tfs: np.ndarray,
    row_order: np.ndarray,
    row_slots: np.ndarray,
    n_terms: int,
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


@serial_kernel
def postings_from_tokens(
    token_slots: np.ndarray,
    token_terms: np.ndarray,
    token_fields: np.ndarray,
    field_weights: np.ndarray,
    term_is_hashtag: np.ndarray,
    n_slots: int,
    n_terms: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CSR postings and document lengths from a token stream.

    Each token adds its field's weight to its (term, slot) frequency and, unless the
    term is a ``#tag``, to its slot's length. Two stable counting sorts (by slot, then
    by term) put every term's postings in slot order with a document's repeats adjacent
    and in stream order, so frequencies and lengths are summed in the order the tokens
    came (float64; frequencies are stored as float32). Postings whose frequency is not
    positive are dropped.
    """
    n_tokens = token_slots.shape[0]
    lengths = np.zeros(n_slots, dtype=np.float64)
    slot_starts = np.zeros(n_slots + 1, dtype=np.int64)
    for index in range(n_tokens):
        slot = token_slots[index]
        slot_starts[slot + 1] += 1
        if not term_is_hashtag[token_terms[index]]:
            lengths[slot] += field_weights[token_fields[index]]
    for slot in range(n_slots):
        slot_starts[slot + 1] += slot_starts[slot]
    by_slot = np.empty(n_tokens, dtype=np.int64)
    for index in range(n_tokens):
        slot = token_slots[index]
        by_slot[slot_starts[slot]] = index
        slot_starts[slot] += 1
    term_starts = np.zeros(n_terms + 1, dtype=np.int64)
    for index in range(n_tokens):
        term_starts[token_terms[index] + 1] += 1
    for term in range(n_terms):
        term_starts[term + 1] += term_starts[term]
    cursor = term_starts[:-1].copy()
    ordered = np.empty(n_tokens, dtype=np.int64)
    for position in range(n_tokens):
        index = by_slot[position]
        term = token_terms[index]
        ordered[cursor[term]] = index
        cursor[term] += 1
    offsets = np.zeros(n_terms + 1, dtype=np.int64)
    docs = np.empty(n_tokens, dtype=np.int32)
    tfs = np.empty(n_tokens, dtype=np.float32)
    write = 0
    for term in range(n_terms):
        position = term_starts[term]
        end = term_starts[term + 1]
        while position < end:
            slot = token_slots[ordered[position]]
            tf = 0.0
            while position < end and token_slots[ordered[position]] == slot:
                tf += field_weights[token_fields[ordered[position]]]
                position += 1
            if tf > 0.0:
                docs[write] = slot
                tfs[write] = tf
                write += 1
        offsets[term + 1] = write
    return offsets, docs[:write].copy(), tfs[:write].copy(), lengths
