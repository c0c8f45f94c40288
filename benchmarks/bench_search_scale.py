"""Search at catalog scale: the CSR/numba index against the dict-of-postings algorithm it replaced.

Builds the :mod:`search_corpus` catalog (1,000,000 videos; 10,000 with
``REELRANK_BENCH_QUICK=1``; ``REELRANK_SEARCH_SIZE=10k|100k|1M`` picks one), times its
200-query mix through ``VideoSearch.search(limit=20)`` on both indexes, and prints
p50/p95/p99 latency, the bulk build rate, memory (RSS growth and array bytes) and
MET/NOT MET for each goal:

* p95 under 10 ms for the query mix through ``VideoSearch``;
* under 300 MB for the index;
* a bulk build of at least 50,000 documents per second.

The baseline is the previous in-memory index (postings as dicts, BM25 in a Python loop),
kept here only as the yardstick. When ``tantivy`` or ``bm25s`` is installed (the
``bench`` extra), full mode adds them side by side with latency ratios and top-20
overlap; otherwise they are skipped.

Run as a script for the report (``python benchmarks/bench_search_scale.py``) or through
pytest, which checks that both indexes agree on every query and prints the same report.
"""

from __future__ import annotations

import bisect
import contextlib
import ctypes
import gc
import heapq
import importlib.util
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from search_corpus import SIZES, Corpus, Query, make_corpus, mode_size, query_mix

from reelrank import (
    InMemorySearchIndex,
    ParsedQuery,
    QueryTerm,
    SearchConfig,
    SearchDocument,
    VideoSearch,
    parse_query,
    tokenize,
)

P95_GOAL_MS = 10.0
MEMORY_GOAL_MB = 300.0
BUILD_GOAL_PER_S = 50_000.0


def _size() -> int:
    named = os.environ.get("REELRANK_SEARCH_SIZE")
    return SIZES[named] if named else mode_size()


def rss_bytes() -> int:
    """Resident set size of this process now (Linux ``/proc``; 0 elsewhere).

    Freed heap is handed back to the OS first (glibc ``malloc_trim``), so the figure
    counts live memory rather than what the allocator keeps for reuse.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


class LegacySearchIndex:
    """The previous in-memory index: dict postings and BM25 in a Python loop (the baseline)."""

    def __init__(self, config: SearchConfig | None = None) -> None:
        self._config = config or SearchConfig()
        self._postings: dict[str, dict[int, float]] = {}
        self._sorted_terms: list[str] = []
        self._lengths: dict[int, float] = {}
        self._total_length = 0.0

    def index(self, document: SearchDocument) -> None:
        config = self._config
        fields = (
            (tokenize(document.title), config.title_weight),
            (tokenize(document.description), config.description_weight),
            ([t for tag in document.hashtags for t in tokenize("#" + tag)], config.hashtag_weight),
            (tokenize(document.sound_name), config.sound_weight),
            (tokenize(document.creator_name), config.creator_weight),
        )
        frequencies: dict[str, float] = {}
        length = 0.0
        for terms, weight in fields:
            for term in terms:
                frequencies[term] = frequencies.get(term, 0.0) + weight
                if not term.startswith("#"):
                    length += weight
        for term, tf in frequencies.items():
            postings = self._postings.get(term)
            if postings is None:
                postings = self._postings[term] = {}
                bisect.insort(self._sorted_terms, term)
            postings[document.video_id] = tf
        self._lengths[document.video_id] = length
        self._total_length += length

    def remove(self, video_id: int) -> bool:
        raise NotImplementedError("the baseline is only built and searched")

    def _expansions(self, term: QueryTerm) -> list[str]:
        if not term.prefix:
            return [term.text] if term.text in self._postings else []
        start = bisect.bisect_left(self._sorted_terms, term.text)
        end = bisect.bisect_left(self._sorted_terms, term.text + "\U0010ffff")
        matches = self._sorted_terms[start:end]
        cap = self._config.max_prefix_expansions
        if len(matches) <= cap:
            return matches
        return heapq.nsmallest(cap, matches, key=lambda m: (-len(self._postings[m]), m))

    def search(self, query: ParsedQuery, *, limit: int) -> list[tuple[int, float]]:
        count = len(self._lengths)
        if count == 0 or limit == 0:
            return []
        k1, b = self._config.k1, self._config.b
        mean_length = self._total_length / count or 1.0
        expansions = [self._expansions(term) for term in query.terms]
        expansions.sort(key=lambda terms: sum(len(self._postings[t]) for t in terms))
        totals: dict[int, float] | None = None
        for terms in expansions:
            best: dict[int, float] = {}
            for term in terms:
                postings = self._postings[term]
                idf = math.log(1.0 + (count - len(postings) + 0.5) / (len(postings) + 0.5))
                if totals is not None and len(totals) < len(postings):
                    pairs = [(vid, postings[vid]) for vid in totals if vid in postings]
                else:
                    pairs = list(postings.items())
                for video_id, tf in pairs:
                    if totals is not None and video_id not in totals:
                        continue
                    norm = k1 * (1.0 - b + b * self._lengths[video_id] / mean_length)
                    score = idf * tf * (k1 + 1.0) / (tf + norm)
                    if score > best.get(video_id, 0.0):
                        best[video_id] = score
            totals = best if totals is None else {v: totals[v] + s for v, s in best.items()}
            if not totals:
                return []
        assert totals is not None
        return heapq.nsmallest(limit, totals.items(), key=lambda item: (-item[1], item[0]))


@dataclass
class Run:
    """What one index measured."""

    name: str
    build_s: float
    build_cpu_s: float
    rss_mb: float
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    cpu_ms: list[float] = field(default_factory=list)
    results: list[list[int]] = field(default_factory=list)
    nbytes_mb: float | None = None

    def all_latencies(self) -> np.ndarray:
        return np.array([ms for values in self.latencies_ms.values() for ms in values])

    def percentiles(self) -> tuple[float, float, float]:
        p50, p95, p99 = np.percentile(self.all_latencies(), [50, 95, 99])
        return float(p50), float(p95), float(p99)


def _documents(corpus: Corpus) -> list[SearchDocument]:
    return [
        SearchDocument(
            video_id=int(corpus.video_ids[row]),
            title=corpus.titles[row],
            hashtags=corpus.hashtags[row],
            sound_name=corpus.sound_names[row],
            creator_name=corpus.creator_names[row],
        )
        for row in range(len(corpus))
    ]


def _time_queries(run: Run, queries: list[Query], search: Callable[[Query], list[int]]) -> None:
    for query in queries[:20]:
        search(query)
    for query in queries:
        cpu_started = time.thread_time()
        started = time.perf_counter()
        hits = search(query)
        run.latencies_ms.setdefault(query.kind, []).append((time.perf_counter() - started) * 1e3)
        run.cpu_ms.append((time.thread_time() - cpu_started) * 1e3)
        run.results.append(hits)


def _build(corpus: Corpus, rows: slice) -> InMemorySearchIndex:
    return InMemorySearchIndex.from_columns(
        corpus.video_ids[rows],
        titles=corpus.titles[rows],
        hashtags=corpus.hashtags[rows],
        sound_names=corpus.sound_names[rows],
        creator_names=corpus.creator_names[rows],
    )


def measure_new(corpus: Corpus, queries: list[Query]) -> tuple[Run, Run]:
    """Bulk-build the CSR index; time the mix through ``VideoSearch`` and the index alone.

    The index alone is asked for ``candidate_pool`` hits, as ``VideoSearch`` asks it.
    A small index is built and searched first so that loading the compiled kernels is
    not timed.
    """
    warm = _build(corpus, slice(0, 1_000))
    for query in queries:
        warm.search(parse_query(query.text, as_you_type=query.as_you_type), limit=500)
    del warm
    gc.collect()
    before = rss_bytes()
    cpu_started = time.process_time()
    started = time.perf_counter()
    index = _build(corpus, slice(None))
    build_s = time.perf_counter() - started
    build_cpu_s = time.process_time() - cpu_started
    run = Run("csr + numba", build_s, build_cpu_s, (rss_bytes() - before) / 1e6)
    search = VideoSearch(index)
    _time_queries(
        run,
        queries,
        lambda q: [h.video_id for h in search.search(q.text, limit=20, as_you_type=q.as_you_type)],
    )
    alone = Run("  index alone", build_s, build_cpu_s, float("nan"))
    pool = search.config.candidate_pool
    parsed = {q.text: parse_query(q.text, as_you_type=q.as_you_type) for q in queries}
    _time_queries(
        alone, queries, lambda q: [vid for vid, _ in index.search(parsed[q.text], limit=pool)]
    )
    run.nbytes_mb = index.nbytes / 1e6
    return run, alone


def measure_legacy(corpus: Corpus, queries: list[Query]) -> Run:
    """Build the previous dict index document by document and time the same mix."""
    documents = _documents(corpus)
    gc.collect()
    before = rss_bytes()
    cpu_started = time.process_time()
    started = time.perf_counter()
    index = LegacySearchIndex()
    for document in documents:
        index.index(document)
    build_s = time.perf_counter() - started
    run = Run(
        "dict baseline", build_s, time.process_time() - cpu_started, (rss_bytes() - before) / 1e6
    )
    search = VideoSearch(index)
    _time_queries(
        run,
        queries,
        lambda q: [h.video_id for h in search.search(q.text, limit=20, as_you_type=q.as_you_type)],
    )
    return run


def measure_anchors(corpus: Corpus, queries: list[Query]) -> list[Run]:
    """tantivy and bm25s on the same text, when installed (top 20 by their own BM25)."""
    runs: list[Run] = []
    texts = [
        " ".join(
            [corpus.titles[r], *corpus.hashtags[r], corpus.sound_names[r], corpus.creator_names[r]]
        )
        for r in range(len(corpus))
    ]
    ids = corpus.video_ids.tolist()
    if importlib.util.find_spec("tantivy") is not None:
        import tantivy

        builder = tantivy.SchemaBuilder()
        builder.add_integer_field("video_id", stored=True, indexed=True)
        builder.add_text_field("text", stored=False)
        schema = builder.build()
        started = time.perf_counter()
        tindex = tantivy.Index(schema)
        writer = tindex.writer()
        for video_id, text in zip(ids, texts, strict=True):
            writer.add_document(tantivy.Document(video_id=video_id, text=text))
        writer.commit()
        tindex.reload()
        run = Run("tantivy", time.perf_counter() - started, float("nan"), float("nan"))
        searcher = tindex.searcher()

        def tantivy_search(query: Query) -> list[int]:
            words = parse_query(query.text, as_you_type=query.as_you_type).terms
            text = " AND ".join(
                (t.text.lstrip("#") + "*") if t.prefix else t.text.lstrip("#") for t in words
            )
            parsed = tindex.parse_query(text, ["text"])
            hits = searcher.search(parsed, 20).hits
            return [searcher.doc(address)["video_id"][0] for _, address in hits]

        _time_queries(run, queries, tantivy_search)
        runs.append(run)
    if importlib.util.find_spec("bm25s") is not None:
        import bm25s

        started = time.perf_counter()
        retriever = bm25s.BM25()
        retriever.index(
            bm25s.tokenize(texts, stopwords=None, show_progress=False), show_progress=False
        )
        run = Run("bm25s", time.perf_counter() - started, float("nan"), float("nan"))
        id_array = np.asarray(ids)

        def bm25s_search(query: Query) -> list[int]:
            words = [t.text.lstrip("#") for t in parse_query(query.text).terms]
            tokens = bm25s.tokenize([" ".join(words)], stopwords=None, show_progress=False)
            found, _ = retriever.retrieve(tokens, k=20, show_progress=False)
            return id_array[found[0]].tolist()

        _time_queries(run, queries, bm25s_search)
        runs.append(run)
    return runs


def _overlap(a: list[list[int]], b: list[list[int]]) -> float:
    shares = [
        len(set(x) & set(y)) / max(len(x), len(y)) if x or y else 1.0
        for x, y in zip(a, b, strict=True)
    ]
    return float(np.mean(shares))


def report(size: int, *, baseline: bool = True, anchors: bool = False) -> list[str]:
    """Measure at ``size`` and return the report lines."""
    started = time.perf_counter()
    corpus = make_corpus(size)
    queries = query_mix(corpus)
    lines = [f"search at {size:,} videos (corpus made in {time.perf_counter() - started:.1f} s)"]
    new, alone = measure_new(corpus, queries)
    runs = [new, alone]
    if baseline:
        runs.append(measure_legacy(corpus, queries))
    if anchors:
        runs.extend(measure_anchors(corpus, queries))
    for run in runs:
        p50, p95, p99 = run.percentiles()
        memory = f"RSS +{run.rss_mb:.0f} MB" if not math.isnan(run.rss_mb) else "RSS n/a"
        if run.nbytes_mb is not None:
            memory += f", arrays {run.nbytes_mb:.0f} MB"
        c50, c95 = np.percentile(run.cpu_ms, [50, 95])
        line = (
            f"  {run.name:14s} p50/p95/p99 {p50:7.2f} / {p95:7.2f} / {p99:7.2f} ms "
            f"(CPU p50/p95 {c50:.2f} / {c95:.2f}), "
            f"build {size / run.build_s:9,.0f} docs/s, {memory}"
        )
        if run is not new and run is not alone:
            line += (
                f", p95 {p95 / new.percentiles()[1]:.1f}x the new index's, "
                f"top-20 overlap {_overlap(run.results, new.results):.0%}"
            )
        lines.append(line)
    lines.append("  per query kind, p50 / p95 ms: through VideoSearch | index alone")
    for kind, values in new.latencies_ms.items():
        p50, p95 = np.percentile(values, [50, 95])
        a50, a95 = np.percentile(alone.latencies_ms[kind], [50, 95])
        lines.append(f"    {kind:12s} {p50:7.2f} / {p95:7.2f} | {a50:7.2f} / {a95:7.2f}")
    p95 = new.percentiles()[1]
    cpu_p95 = float(np.percentile(new.cpu_ms, 95))
    memory_mb = max(new.rss_mb, new.nbytes_mb or 0.0)
    rate, cpu_rate = size / new.build_s, size / new.build_cpu_s
    goals = (
        (f"p95 {p95:.2f} ms < {P95_GOAL_MS:.0f} ms (wall clock)", p95 < P95_GOAL_MS),
        (f"p95 {cpu_p95:.2f} ms < {P95_GOAL_MS:.0f} ms (CPU time)", cpu_p95 < P95_GOAL_MS),
        (f"index {memory_mb:.0f} MB < {MEMORY_GOAL_MB:.0f} MB", memory_mb < MEMORY_GOAL_MB),
        (f"build {rate:,.0f} docs/s >= {BUILD_GOAL_PER_S:,.0f} (wall)", rate >= BUILD_GOAL_PER_S),
        (
            f"build {cpu_rate:,.0f} docs/s >= {BUILD_GOAL_PER_S:,.0f} (CPU time)",
            cpu_rate >= BUILD_GOAL_PER_S,
        ),
    )
    for text, met in goals:
        lines.append(f"  {'MET    ' if met else 'NOT MET'} {text}")
    if baseline:
        agree = sum(a == b for a, b in zip(new.results, runs[2].results, strict=True))
        lines.append(f"  same top 20 as the baseline on {agree} of {len(queries)} queries")
    return lines


def test_search_scale_report() -> None:
    """Runs the report at the mode's size; both indexes must return the same hits."""
    from conftest import SUMMARY

    size = _size()
    lines = report(size, baseline=True, anchors=size >= SIZES["1M"])
    SUMMARY.extend(lines)
    print("\n".join(lines))
    assert lines[-1] == "  same top 20 as the baseline on 200 of 200 queries"


if __name__ == "__main__":
    chosen = SIZES[sys.argv[1]] if len(sys.argv) > 1 else _size()
    for printed in report(chosen, anchors=chosen >= SIZES["1M"]):
        print(printed, flush=True)
