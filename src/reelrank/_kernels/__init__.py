"""Private numba kernels: compiled loops that trust their callers.

Nothing here validates its arguments. Each kernel sits behind a public wrapper that
checks dtypes, shapes and contiguity first, and takes arrays (plus a few scalars) only.

Modules and what they hold:

* :mod:`._presets`: ``FASTMATH`` and the ``numba.njit`` presets every kernel module
  uses (``inline_helper``, ``serial_kernel``, ``parallel_kernel``).
* :mod:`._heap`: the bounded top-k heap (``heap_push``, ``heap_replace``,
  ``heap_sort_out``, ``ranks_after``), ordered by score descending, then video id
  ascending, used by the rank, cosine and BM25 search kernels.
* :mod:`._layout`: the rows of the candidates' feature block (``ROW_*``) and the slots
  of the scoring parameter vector (``P_*``) that the scoring wrapper packs.
* :mod:`._rank`: ``score_kernel``, ``rank_kernel``, ``explain_kernel``,
  ``batch_kernel``, ``batch_kernel_serial`` and ``in_unit_interval_kernel``, behind
  :class:`reelrank.Ranker` and :class:`reelrank.Candidates`
  (:mod:`reelrank.scoring._ranker`).
* :mod:`._cosine`: ``top_k_cosine_kernel``, behind :func:`reelrank.top_k_cosine`
  (:mod:`reelrank.discovery._similar`).
* :mod:`._diversity`: ``diversify_kernel``, behind :class:`reelrank.DiversityRule`
  (:mod:`reelrank.scoring._diversity`).
* :mod:`._bm25`: ``top_k_bm25`` and the postings builders (``postings_from_tokens``,
  ``build_csr``, ``merge_segments``, ``block_bounds``, ``slot_terms``), behind
  :class:`reelrank.InMemorySearchIndex` (:mod:`reelrank.stores._search`).

The tests check every kernel against a plain-Python reference (``tests/reference.py``,
``tests/test_kernels.py``).

numba's on-disk cache recognises a kernel by its own source file only: after editing
:mod:`._heap`, :mod:`._presets` or :mod:`._layout`, clear the cache (``NUMBA_CACHE_DIR``
or the ``__pycache__`` folders here), or cached kernels keep the old helpers. An
installed upgrade rewrites every file, which renews them all.
"""
