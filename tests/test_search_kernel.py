"""The CSR/numba search index against an exhaustive BM25 reference.

The reference scores every live document with the formulas of :class:`SearchConfig`
directly from its text (no postings, no pruning): every query term must match, a prefix
term takes its best expansion among the ``max_prefix_expansions`` most frequent live
terms (ties: the smaller term), a ``#tag`` term matches hashtags only, and results go
by score descending then video id ascending.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reelrank import (
    InMemorySearchIndex,
    InvalidInputError,
    ParsedQuery,
    QueryTerm,
    SearchConfig,
    SearchDocument,
    tokenize,
)
from reelrank.stores import _search as search_module


def reference_search(
    documents: Iterable[SearchDocument], query: ParsedQuery, config: SearchConfig
) -> list[tuple[int, float]]:
    """Every match with its BM25 score, best first (ties: smaller id)."""
    weighted: dict[int, dict[str, float]] = {}
    lengths: dict[int, float] = {}
    for document in documents:
        frequencies: dict[str, float] = {}
        length = 0.0
        fields = (
            (tokenize(document.title), config.title_weight),
            (tokenize(document.description), config.description_weight),
            ([t for tag in document.hashtags for t in tokenize("#" + tag)], config.hashtag_weight),
            (tokenize(document.sound_name), config.sound_weight),
            (tokenize(document.creator_name), config.creator_weight),
        )
        for terms, weight in fields:
            for term in terms:
                frequencies[term] = frequencies.get(term, 0.0) + weight
                if not term.startswith("#"):
                    length += weight
        weighted[document.video_id] = {t: tf for t, tf in frequencies.items() if tf > 0.0}
        lengths[document.video_id] = length
    count = len(weighted)
    if count == 0:
        return []
    mean_length = sum(lengths.values()) / count or 1.0
    df: dict[str, int] = {}
    for frequencies in weighted.values():
        for term in frequencies:
            df[term] = df.get(term, 0) + 1

    def expansions(term: QueryTerm) -> list[str]:
        if not term.prefix:
            return [term.text] if term.text in df else []
        matches = sorted(t for t in df if t.startswith(term.text))
        return sorted(matches, key=lambda t: (-df[t], t))[: config.max_prefix_expansions]

    groups = [expansions(term) for term in query.terms]
    groups.sort(key=lambda group: sum(df[t] for t in group))
    hits = []
    for video_id, frequencies in weighted.items():
        norm = config.k1 * (1.0 - config.b + config.b * lengths[video_id] / mean_length)
        total = 0.0
        for group in groups:
            scores = [
                math.log(1.0 + (count - df[t] + 0.5) / (df[t] + 0.5))
                * frequencies[t]
                * (config.k1 + 1.0)
                / (frequencies[t] + norm)
                for t in group
                if t in frequencies
            ]
            if not scores:
                break
            total += max(scores)
        else:
            hits.append((video_id, total))
    return sorted(hits, key=lambda hit: (-hit[1], hit[0]))


def assert_same_top(
    got: list[tuple[int, float]], full: list[tuple[int, float]], limit: int
) -> None:
    """``got`` is the reference's top ``limit``; scores may differ in the last bits only.

    Where scores tie within rounding, any order among the tied ids is accepted, and at
    the cut any of the tied ids.
    """
    assert len(got) == min(limit, len(full))
    for (_, got_score), (_, expected_score) in zip(got, full, strict=False):
        assert got_score == pytest.approx(expected_score, rel=1e-9, abs=1e-12)

    def close(a: float, b: float) -> bool:
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)

    for position, (video_id, score) in enumerate(got):
        tied = {vid for vid, other in full if close(other, score)}
        if close(full[position][1], score) and full[position][0] != video_id:
            assert video_id in tied
        else:
            assert video_id == full[position][0] or video_id in tied
    assert len({video_id for video_id, _ in got}) == len(got)


WORDS = ["dance", "dancing", "dancer", "dan", "cat", "cats", "food", "fun", "sun", "a1"]
word = st.sampled_from(WORDS)
text = st.lists(word, max_size=6).map(" ".join)
documents = st.builds(
    lambda title, description, tags, sound, creator: (title, description, tags, sound, creator),
    text,
    text,
    st.lists(st.sampled_from(["dance", "fun", "cat", "my dance"]), max_size=3, unique=True),
    st.sampled_from(["", "Dance Monkey", "fun sun"]),
    st.sampled_from(["", "dancer_jo Jo", "cat lady"]),
)
query_term = st.builds(
    QueryTerm,
    text=st.sampled_from([*WORDS, "d", "da", "danc", "c", "f", "#dance", "#fun", "#d", "#c"]),
    prefix=st.booleans(),
)
queries = st.lists(query_term, min_size=1, max_size=3, unique_by=lambda t: (t.text, t.prefix)).map(
    lambda terms: ParsedQuery(terms=tuple(terms))
)
# A write is (video id, document or None for a removal).
writes = st.lists(st.tuples(st.integers(1, 30), st.one_of(st.none(), documents)), max_size=25)
configs = st.builds(
    SearchConfig,
    k1=st.sampled_from([0.0, 0.9, 1.2, 2.0]),
    b=st.sampled_from([0.0, 0.5, 0.75, 1.0]),
    max_prefix_expansions=st.integers(1, 4),
)


def make_document(video_id: int, fields: tuple[str, str, list[str], str, str]) -> SearchDocument:
    title, description, tags, sound, creator = fields
    return SearchDocument(
        video_id=video_id,
        title=title,
        description=description,
        hashtags=tuple(tags),
        sound_name=sound,
        creator_name=creator,
    )


@settings(max_examples=150, deadline=None)
@given(
    initial=st.dictionaries(st.integers(1, 30), documents, max_size=20),
    writes=writes,
    query=queries,
    limit=st.integers(1, 12),
    config=configs,
    bulk=st.booleans(),
    compact_after=st.sampled_from([1, 3, 10_000]),
)
def test_index_matches_the_exhaustive_reference(
    initial: dict[int, tuple[str, str, list[str], str, str]],
    writes: list[tuple[int, tuple[str, str, list[str], str, str] | None]],
    query: ParsedQuery,
    limit: int,
    config: SearchConfig,
    bulk: bool,
    compact_after: int,
) -> None:
    live = {vid: make_document(vid, fields) for vid, fields in initial.items()}
    with mock.patch.object(search_module, "_MIN_DELTA", compact_after):
        if bulk:
            index = InMemorySearchIndex.from_documents(live.values(), config=config)
        else:
            index = InMemorySearchIndex(config)
            for document in live.values():
                index.index(document)
        for position, (video_id, fields) in enumerate(writes):
            if fields is None:
                assert index.remove(video_id) is (live.pop(video_id, None) is not None)
            else:
                live[video_id] = make_document(video_id, fields)
                index.index(live[video_id])
            if position % 4 == 0:
                # Searching between writes folds the delta in when it has grown.
                index.search(query, limit=limit)
        assert len(index) == len(live)
        got = index.search(query, limit=limit)
    assert_same_top(got, reference_search(live.values(), query, config), limit)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["wave", "waves", "waver"]), st.integers(1, 4), st.integers(0, 6)
        ),
        min_size=130,
        max_size=600,
    ),
    limit=st.integers(1, 40),
    dead=st.sets(st.integers(1, 600), max_size=50),
    prefix=st.booleans(),
)
def test_block_pruning_keeps_the_exact_top(
    rows: list[tuple[str, int, int]], limit: int, dead: set[int], prefix: bool
) -> None:
    """Frequent terms over several 128-posting blocks: skipped blocks lose nothing."""
    documents = [
        SearchDocument(
            video_id=video_id,
            title=" ".join([term] * count + ["filler"] * padding),
            description="wave" if video_id % 7 == 0 else "",
        )
        for video_id, (term, count, padding) in enumerate(rows, start=1)
    ]
    index = InMemorySearchIndex.from_documents(documents)
    for video_id in dead:
        index.remove(video_id)
    live = [document for document in documents if document.video_id not in dead]
    query = ParsedQuery(terms=(QueryTerm(text="wav" if prefix else "wave", prefix=prefix),))
    assert_same_top(
        index.search(query, limit=limit), reference_search(live, query, SearchConfig()), limit
    )


def test_columns_build_equals_documents_build() -> None:
    config = SearchConfig()
    columns = InMemorySearchIndex.from_columns(
        np.array([5, 2, 9]),
        titles=["Dance #Party", "dance", "cooking"],
        hashtags=[("fun",), (), ("dance", "fun")],
        creator_names=["jo", "jo", "Al"],
    )
    one_by_one = InMemorySearchIndex(config)
    for video_id, title, tags, creator in (
        (5, "Dance #Party", ("fun",), "jo"),
        (2, "dance", (), "jo"),
        (9, "cooking", ("dance", "fun"), "Al"),
    ):
        one_by_one.index(
            SearchDocument(video_id=video_id, title=title, hashtags=tags, creator_name=creator)
        )
    for text, prefix in (
        ("dance", False),
        ("#fun", False),
        ("jo", False),
        ("#p", True),
        ("c", True),
    ):
        query = ParsedQuery(terms=(QueryTerm(text=text, prefix=prefix),))
        assert columns.search(query, limit=10) == one_by_one.search(query, limit=10)
    assert len(columns) == 3
    assert columns.nbytes > 0


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"video_ids": [1, 1]}, "video_ids"),
        ({"video_ids": [0]}, "video_ids"),
        ({"video_ids": [[1, 2]]}, "video_ids"),
        ({"video_ids": [1.5]}, "video_ids"),
        ({"video_ids": [1, 2], "titles": ["a"]}, "titles"),
        ({"video_ids": [1], "titles": [3]}, "titles"),
        ({"video_ids": [1], "descriptions": ["x" * 5_001]}, "descriptions"),
        ({"video_ids": [1], "hashtags": ["dance"]}, "hashtags"),
        ({"video_ids": [1], "hashtags": [None]}, "hashtags"),
        ({"video_ids": [1], "hashtags": [("dance", 3)]}, "hashtags"),
        ({"video_ids": [1], "sound_names": ["x" * 301]}, "sound_names"),
        ({"video_ids": [1], "creator_names": [None]}, "creator_names"),
    ],
)
def test_bad_columns_are_refused_naming_the_column(
    arguments: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        InMemorySearchIndex.from_columns(**arguments)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_from_documents_refuses_other_items() -> None:
    with pytest.raises(InvalidInputError) as caught:
        InMemorySearchIndex.from_documents([{"video_id": 1}])  # type: ignore[list-item]
    assert caught.value.field == "documents"


def test_prefix_cap_is_documented_as_shared_by_every_backend() -> None:
    description = SearchConfig.model_fields["max_prefix_expansions"].description or ""
    assert "every backend" in description


@pytest.mark.parametrize(
    ("text", "prefix", "extra"),
    [
        ("wave", False, ()),  # one term: block-max pruning
        ("wav", True, ()),  # one prefix term with several expansions: threshold pruning
        ("wave", False, (QueryTerm(text="dance"),)),  # several terms: conjunctive
    ],
)
@pytest.mark.parametrize("limit", [1, 37, 200])
def test_exact_ties_go_to_the_smaller_video_id_on_every_path(
    text: str, prefix: bool, extra: tuple[QueryTerm, ...], limit: int
) -> None:
    """Identical documents score bit for bit the same; the cut keeps the smallest ids.

    Ids are shuffled against their slots and there are more than a block of postings, so
    the heap evicts tied hits and a slot's order says nothing about its id.
    """
    rng = np.random.default_rng(7)
    ids = [int(video_id) for video_id in rng.permutation(np.arange(1, 301) * 7)]
    documents = [
        SearchDocument(video_id=video_id, title="waves" if index % 9 == 0 else "wave dance")
        for index, video_id in enumerate(ids)
    ]
    index = InMemorySearchIndex.from_documents(documents[:250])
    for document in documents[250:]:
        index.index(document)
    query = ParsedQuery(terms=(QueryTerm(text=text, prefix=prefix), *extra))
    expected = reference_search(documents, query, SearchConfig())[:limit]
    got = index.search(query, limit=limit)
    assert [video_id for video_id, _ in got] == [video_id for video_id, _ in expected]
    tied = [score for _, score in got if score == got[-1][1]]
    assert len(tied) > 1 or limit == 1
