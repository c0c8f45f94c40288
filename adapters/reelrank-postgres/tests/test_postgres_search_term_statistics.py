"""The term counts and index statistics a SQL search keeps for
``SearchConfig.term_statistics_seconds``: the same ranking, this process's writes seen at
once, other writers' within the bound, and one statement a search while they are kept."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from reelrank_postgres import SqlSearchIndex
from reelrank_postgres._term_statistics import IndexStatistics, TermStatistics
from sqlalchemy import Engine, event

from reelrank import InMemorySearchIndex, SearchConfig, SearchDocument, parse_query

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
from search_corpus import make_corpus, query_mix

pytestmark = pytest.mark.integration

_VIDEOS = 300
_SECONDS = 5.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _documents(size: int) -> list[SearchDocument]:
    return make_corpus(size).documents()


def _keeping(engine: Engine, clock: FakeClock) -> SqlSearchIndex:
    return SqlSearchIndex(
        engine, config=SearchConfig(term_statistics_seconds=_SECONDS), clock=clock
    )


def _fresh(video_id: int, title: str) -> SearchDocument:
    return SearchDocument(video_id=video_id, title=title)


def _same_ranking(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> bool:
    """The in-memory ranking, up to rounding: the in-memory kernel compiles with fast
    math, so scores agree to 1e-9 and videos whose scores differ by rounding may swap."""
    if len(got) != len(want):
        return False
    for (_, got_score), (_, want_score) in zip(got, want, strict=True):
        if abs(got_score - want_score) > 1e-9 * max(abs(want_score), 1.0):
            return False
    boundary = want[-1][1] if want else 0.0
    above = {video for video, score in want if score > boundary * (1 + 1e-9)}
    return above <= {video for video, _ in got}


def test_kept_counts_rank_exactly_as_in_memory(engine: Engine) -> None:
    documents = _documents(_VIDEOS)
    writer = SqlSearchIndex(engine)
    for document in documents:
        writer.index(document)
    memory = InMemorySearchIndex.from_documents(documents)
    keeping = _keeping(engine, FakeClock())
    queries = [
        parse_query(query.text, as_you_type=query.as_you_type)
        for query in query_mix(make_corpus(_VIDEOS), 60)
    ]
    for _ in range(2):  # read, then kept
        for query in queries:
            got = keeping.search(query, limit=20)
            assert got == writer.search(query, limit=20), query  # reading every time
            assert _same_ranking(got, memory.search(query, limit=20)), query


def test_this_process_sees_its_own_writes_at_the_next_search(engine: Engine) -> None:
    documents = _documents(50)
    keeping = _keeping(engine, FakeClock())  # the clock never moves: only writes refresh
    for document in documents:
        keeping.index(document)
    new_word = parse_query("zyxwvu")
    new_prefix = parse_query("zyx*")
    assert keeping.search(new_word, limit=10) == []
    assert keeping.search(new_prefix, limit=10) == []
    keeping.index(_fresh(9_001, "zyxwvu dance"))
    memory = InMemorySearchIndex.from_documents([*documents, _fresh(9_001, "zyxwvu dance")])
    assert [video for video, _ in keeping.search(new_word, limit=10)] == [9_001]
    assert _same_ranking(keeping.search(new_prefix, limit=10), memory.search(new_prefix, limit=10))
    # The document count moved too: every idf is the one of 51 videos.
    common = parse_query("dance")
    assert _same_ranking(keeping.search(common, limit=20), memory.search(common, limit=20))
    assert keeping.remove(9_001)
    assert keeping.search(new_word, limit=10) == []
    assert keeping.search(new_prefix, limit=10) == []


def test_another_writer_shows_at_most_term_statistics_seconds_later(engine: Engine) -> None:
    documents = _documents(50)
    writer = SqlSearchIndex(engine)  # another process's index: it keeps nothing
    for document in documents:
        writer.index(document)
    clock = FakeClock()
    keeping = _keeping(engine, clock)
    new_word = parse_query("zyxwvu")
    common = parse_query("dance")
    before = InMemorySearchIndex.from_documents(documents)
    assert keeping.search(new_word, limit=10) == []
    assert _same_ranking(keeping.search(common, limit=20), before.search(common, limit=20))
    writer.index(_fresh(9_001, "zyxwvu dance"))
    after = InMemorySearchIndex.from_documents([*documents, _fresh(9_001, "zyxwvu dance")])
    clock.now += _SECONDS - 0.01
    # Within the bound: the term is still unknown here, and the idfs are the 50 videos'
    # (the postings of the new video are read, with the kept counts).
    assert keeping.search(new_word, limit=10) == []
    stale = keeping.search(common, limit=20)
    assert not _same_ranking(stale, after.search(common, limit=20))
    clock.now += 0.01
    assert [video for video, _ in keeping.search(new_word, limit=10)] == [9_001]
    assert _same_ranking(keeping.search(common, limit=20), after.search(common, limit=20))


def _matching_queries() -> list[str]:
    """A word, two words, a word and a prefix, and three words of the corpus's first
    title (so every one matches it)."""
    first, second, third = make_corpus(_VIDEOS).titles[0].split()[:3]
    return [first, f"{first} {second}", f"{first} {second[:2]}", f"{first} {second} {third}"]


def test_a_search_with_kept_counts_is_one_statement(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite's statements run in-process: one per term, as before")
    documents = _documents(_VIDEOS)
    writer = SqlSearchIndex(engine)
    for document in documents:
        writer.index(document)
    clock = FakeClock()
    keeping = _keeping(engine, clock)
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    keeping.search(parse_query("dance"), limit=5)  # reads whether the postings exist
    event.listen(engine, "before_cursor_execute", count)
    try:
        for query in (parse_query(text, as_you_type=True) for text in _matching_queries()):
            statements.clear()
            assert keeping.search(query, limit=20)
            first = len(statements)
            statements.clear()
            keeping.search(query, limit=20)
            # Term counts and statistics in one statement, then the ranking; then only
            # the ranking while they are kept.
            assert (first, len(statements)) == (2, 1), query
            clock.now += _SECONDS
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_kept_terms_are_bounded_and_a_read_racing_a_write_is_not_kept() -> None:
    clock = FakeClock()
    kept = TermStatistics(10.0, 2, clock)
    statistics = IndexStatistics(3, 30.0, 10.0, 1.2, 0.75)
    kept.put(kept.generation(), clock(), {("a", False): {"a": 1}}, (statistics,))
    kept.put(kept.generation(), clock(), {("b", True): {"bb": 2}, ("c", False): {}}, None)
    assert kept.counts([("a", False), ("b", True), ("c", False)]) == {
        ("b", True): {"bb": 2},
        ("c", False): {},
    }
    assert kept.statistics() == (True, statistics)
    clock.now += 10.0
    assert kept.counts([("b", True)]) == {}
    assert kept.statistics() == (False, None)
    generation, read_at = kept.generation(), clock()
    kept.drop_all()  # a write of this process while the read was under way
    kept.put(generation, read_at, {("a", False): {"a": 1}}, (statistics,))
    assert kept.counts([("a", False)]) == {}
    assert kept.statistics() == (False, None)
