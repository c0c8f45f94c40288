"""Search latency: the inverted index against a linear scan over the same documents.

50k synthetic videos (5k in quick mode), each with a title, a description and hashtags
drawn from a Zipf-like vocabulary. Two queries: two exact terms, and an as-you-type
query whose last term is a prefix. The baseline scans every document's term set for
the same matches (no scoring), which is what a search without an index costs at least.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import pytest

from reelrank import InMemorySearchIndex, SearchDocument, VideoSearch, parse_query, tokenize

QUICK = os.environ.get("REELRANK_BENCH_QUICK") == "1"
DOCUMENTS = 5_000 if QUICK else 50_000
VOCABULARY = [f"w{number}x" for number in range(5_000)]
EXACT = "w3x w10x"
PREFIX = "w3x w12"


@pytest.fixture(scope="module")
def corpus() -> tuple[VideoSearch, list[tuple[int, frozenset[str]]]]:
    rng = np.random.default_rng(11)
    weights = 1.0 / np.arange(1, len(VOCABULARY) + 1)
    weights /= weights.sum()
    index = InMemorySearchIndex()
    documents: list[tuple[int, frozenset[str]]] = []
    for video_id in range(1, DOCUMENTS + 1):
        words = rng.choice(len(VOCABULARY), size=14, p=weights)
        title = " ".join(VOCABULARY[w] for w in words[:4])
        description = " ".join(VOCABULARY[w] for w in words[4:12])
        hashtags = tuple(dict.fromkeys(VOCABULARY[w] for w in words[12:]))
        document = SearchDocument(
            video_id=video_id, title=title, description=description, hashtags=hashtags
        )
        index.index(document)
        terms = tokenize(f"{title} {description}") + [t for h in hashtags for t in ("#" + h, h)]
        documents.append((video_id, frozenset(terms)))
    return VideoSearch(index), documents


def linear_scan(documents: list[tuple[int, frozenset[str]]], text: str) -> list[int]:
    query = parse_query(text, as_you_type=True)
    matches = []
    for video_id, terms in documents:
        if all(
            any(term.startswith(q.text) for term in terms) if q.prefix else q.text in terms
            for q in query.terms
        ):
            matches.append(video_id)
    return matches


@pytest.mark.parametrize("text", [EXACT, PREFIX])
def test_search_index(benchmark: Any, corpus: Any, text: str) -> None:
    search, documents = corpus
    hits = benchmark(search.search, text, limit=20, as_you_type=True)
    matches = set(linear_scan(documents, text))
    # An empty answer would time nothing: the query must find what the scan finds.
    assert hits, f"{text!r} found nothing"
    assert len(hits) == min(20, len(matches))
    assert {hit.video_id for hit in hits} <= matches


@pytest.mark.parametrize("text", [EXACT, PREFIX])
def test_search_linear_scan_baseline(benchmark: Any, corpus: Any, text: str) -> None:
    _, documents = corpus
    assert benchmark(linear_scan, documents, text)


def test_search_ratio_to_baseline(corpus: Any) -> None:
    """Times both back to back and prints scan / index for each query."""
    search, documents = corpus
    for text in (EXACT, PREFIX):
        assert search.search(text, as_you_type=True), f"{text!r} found nothing"
        timings = []
        for function, arguments, options in (
            (search.search, (text,), {"as_you_type": True}),
            (linear_scan, (documents, text), {}),
        ):
            function(*arguments, **options)
            started = time.perf_counter()
            for _ in range(5):
                function(*arguments, **options)
            timings.append((time.perf_counter() - started) / 5)
        print(
            f"\nsearch {text!r} over {DOCUMENTS} videos: index {timings[0] * 1e3:.2f} ms, "
            f"linear scan {timings[1] * 1e3:.2f} ms, scan/index = {timings[1] / timings[0]:.1f}x"
        )
