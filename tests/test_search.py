"""Search: query parsing, the BM25 inverted index and the quality blend."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reelrank import (
    ConfigError,
    InMemoryEventStore,
    InMemorySearchIndex,
    InvalidInputError,
    ParsedQuery,
    ProcessingState,
    QueryError,
    QueryTerm,
    RankingConfig,
    SearchConfig,
    SearchDocument,
    SearchIndex,
    VideoSearch,
    VideoStats,
    parse_query,
    tokenize,
    video_quality,
)
from reelrank.testing import SearchIndexContract, make_creator, make_event, make_video


def terms(*items: tuple[str, bool]) -> ParsedQuery:
    return ParsedQuery(terms=tuple(QueryTerm(text=text, prefix=prefix) for text, prefix in items))


# -- parsing --------------------------------------------------------------------------


def test_tokenize_folds_case_and_keeps_hashtags_both_ways() -> None:
    assert tokenize("Learn THIS #Dance, ok?") == ["learn", "this", "#dance", "dance", "ok"]
    assert tokenize("Ｃａｆé_au_lait") == ["café_au_lait"]


def test_parse_query_recognises_prefix_and_hashtag_terms() -> None:
    query = parse_query("Danc* #fun #cook* tutorial")
    assert [(t.text, t.prefix, t.hashtag) for t in query.terms] == [
        ("danc", True, False),
        ("#fun", False, True),
        ("#cook", True, True),
        ("tutorial", False, False),
    ]


def test_as_you_type_makes_only_an_unfinished_last_term_a_prefix() -> None:
    assert [t.prefix for t in parse_query("cat dan", as_you_type=True).terms] == [False, True]
    assert [t.prefix for t in parse_query("cat dan ", as_you_type=True).terms] == [False, False]
    assert [t.prefix for t in parse_query("cat dan").terms] == [False, False]


@pytest.mark.parametrize("text", ["", "   ", "!!! ??", "*", "#", "x" * 201, "a " * 17])
def test_unusable_queries_raise_query_error(text: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse_query(text)
    assert caught.value.field == "query"


def test_query_must_be_a_string() -> None:
    with pytest.raises(QueryError):
        parse_query(42)  # type: ignore[arg-type]


# -- the index ------------------------------------------------------------------------


def build_index() -> InMemorySearchIndex:
    index = InMemorySearchIndex()
    index.index(SearchDocument(video_id=1, title="Dance challenge", hashtags=("dance",)))
    index.index(SearchDocument(video_id=2, title="Dancing cats", description="cats dancing #funny"))
    index.index(SearchDocument(video_id=3, title="Cooking pasta", sound_name="Dance Monkey"))
    index.index(SearchDocument(video_id=4, title="Quiet morning", creator_name="dancer_jo Jo"))
    return index


def test_in_memory_index_satisfies_the_protocol() -> None:
    assert isinstance(InMemorySearchIndex(), SearchIndex)


def test_exact_term_matches_every_field() -> None:
    index = build_index()
    assert {vid for vid, _ in index.search(terms(("dance", False)), limit=10)} == {1, 3}
    assert [vid for vid, _ in index.search(terms(("jo", False)), limit=10)] == [4]


def test_hashtag_term_matches_hashtags_only() -> None:
    index = build_index()
    assert [vid for vid, _ in index.search(terms(("#dance", False)), limit=10)] == [1]
    assert [vid for vid, _ in index.search(terms(("#fun", True)), limit=10)] == [2]


def test_prefix_term_matches_every_expansion() -> None:
    index = build_index()
    found = {vid for vid, _ in index.search(terms(("danc", True)), limit=10)}
    assert found == {1, 2, 3, 4}


def test_every_term_must_match() -> None:
    index = build_index()
    assert [vid for vid, _ in index.search(terms(("cats", False), ("danc", True)), limit=10)] == [2]
    assert index.search(terms(("cats", False), ("pasta", False)), limit=10) == []


def test_title_outweighs_description() -> None:
    index = InMemorySearchIndex()
    index.index(SearchDocument(video_id=1, description="sunset over the sea"))
    index.index(SearchDocument(video_id=2, title="sunset", description="over the sea"))
    assert [vid for vid, _ in index.search(terms(("sunset", False)), limit=10)] == [2, 1]


def test_scores_follow_bm25() -> None:
    config = SearchConfig()
    index = InMemorySearchIndex(config)
    index.index(SearchDocument(video_id=1, title="red fox"))
    index.index(SearchDocument(video_id=2, title="blue fox fox", description="fox"))
    index.index(SearchDocument(video_id=3, title="green"))
    results = dict(index.search(terms(("fox", False)), limit=10))
    lengths = {1: 2 * 3.0, 2: 3 * 3.0 + 1.0, 3: 3.0}
    mean_length = sum(lengths.values()) / 3
    idf = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))
    for vid, tf in ((1, 3.0), (2, 2 * 3.0 + 1.0)):
        norm = config.k1 * (1 - config.b + config.b * lengths[vid] / mean_length)
        assert results[vid] == pytest.approx(idf * tf * (config.k1 + 1) / (tf + norm))
    assert 3 not in results


def test_removal_and_replacement_update_postings_and_terms() -> None:
    index = build_index()
    assert index.remove(2) is True
    assert index.remove(2) is False
    assert index.search(terms(("cats", False)), limit=10) == []
    assert index.search(terms(("#fun", True)), limit=10) == []
    index.index(SearchDocument(video_id=1, title="Street food"))
    assert index.search(terms(("challenge", False)), limit=10) == []
    assert [vid for vid, _ in index.search(terms(("food", False)), limit=10)] == [1]
    assert len(index) == 3


def test_prefix_expansions_are_capped_to_the_most_frequent_terms() -> None:
    index = InMemorySearchIndex(SearchConfig(max_prefix_expansions=1))
    index.index(SearchDocument(video_id=1, title="abc"))
    index.index(SearchDocument(video_id=2, title="abd"))
    index.index(SearchDocument(video_id=3, title="abd"))
    assert {vid for vid, _ in index.search(terms(("ab", True)), limit=10)} == {2, 3}


def test_bad_limit_and_query_are_refused() -> None:
    index = build_index()
    with pytest.raises(InvalidInputError) as caught:
        index.search(terms(("x", False)), limit=-1)
    assert caught.value.field == "limit"
    with pytest.raises(InvalidInputError) as caught:
        index.search("dance", limit=1)  # type: ignore[arg-type]
    assert caught.value.field == "query"


words = st.sampled_from(["dance", "dancing", "cat", "cats", "food", "sea", "sun", "fun", "run"])


@settings(max_examples=80, deadline=None)
@given(
    documents=st.lists(
        st.tuples(st.lists(words, max_size=5), st.lists(words, max_size=3, unique=True)),
        min_size=1,
        max_size=20,
    ),
    query_words=st.lists(words, min_size=1, max_size=2),
    prefix_length=st.integers(1, 5),
)
def test_every_result_contains_every_query_term(
    documents: list[tuple[list[str], list[str]]], query_words: list[str], prefix_length: int
) -> None:
    index = InMemorySearchIndex()
    search = VideoSearch(index)
    for video_id, (title, tags) in enumerate(documents, start=1):
        index.index(SearchDocument(video_id=video_id, title=" ".join(title), hashtags=tuple(tags)))
    text = " ".join([*query_words[:-1], query_words[-1][:prefix_length]])
    hits = search.search(text, as_you_type=True)
    for hit in hits:
        title, tags = documents[hit.video_id - 1]
        words_of_video = set(title) | set(tags)
        for word in query_words[:-1]:
            assert word in words_of_video
        assert any(w.startswith(query_words[-1][:prefix_length]) for w in words_of_video)
    expected = {
        video_id
        for video_id, (title, tags) in enumerate(documents, start=1)
        if all(w in set(title) | set(tags) for w in query_words[:-1])
        and any(w.startswith(query_words[-1][:prefix_length]) for w in set(title) | set(tags))
    }
    assert {hit.video_id for hit in hits} == expected
    scores = [(-hit.score, hit.video_id) for hit in hits]
    assert scores == sorted(scores)


# -- quality and the service ----------------------------------------------------------


def test_video_quality_follows_the_documented_formula() -> None:
    config = RankingConfig()
    stats = VideoStats(video_id=1, views=10, completion_sum=8.0, likes=3, shares=1, comments=2)
    completion = (8.0 + config.completion_prior_mean * config.completion_prior_views) / (
        10 + config.completion_prior_views
    )
    rate = (
        config.like_weight * 3
        + config.share_weight * 1
        + config.comment_weight * 2
        + config.engagement_prior_rate * config.engagement_prior_views
    ) / (10 + config.engagement_prior_views)
    expected = 0.5 * (completion + rate / (rate + config.engagement_half_saturation))
    assert video_quality(stats, config) == pytest.approx(expected)
    assert 0.0 <= video_quality(VideoStats(video_id=2), config) <= 1.0


def test_service_blends_text_and_quality() -> None:
    index = InMemorySearchIndex()
    events = InMemoryEventStore()
    search = VideoSearch(index, stats=events)
    creator = make_creator(5, display_name="Jo")
    for video_id in (1, 2):
        search.index_video(make_video(video_id, 5, title="sunset timelapse"), creator=creator)
    for number in range(30):
        events.append(make_event(user_id=number + 1, video_id=2), creator_id=5)
        events.append(make_event("share", user_id=number + 1, video_id=2), creator_id=5)
    hits = search.search("sunset")
    assert [hit.video_id for hit in hits] == [2, 1]
    assert hits[0].text == hits[1].text == 1.0
    assert hits[0].quality > hits[1].quality
    config = search.config
    for hit in hits:
        assert hit.score == pytest.approx(
            config.text_weight * hit.text + config.quality_weight * hit.quality
        )
    assert [hit.video_id for hit in search.search("jo")] == [2, 1]


class _FixedMatches:
    """A search index answering every query with the same matches."""

    def __init__(self, matches: list[tuple[int, float]]) -> None:
        self.matches = matches

    def search(self, query: ParsedQuery, *, limit: int) -> list[tuple[int, float]]:
        return self.matches[:limit]


class _FixedStats:
    def __init__(self, stats: dict[int, VideoStats]) -> None:
        self.stats = stats

    def get_stats(self, video_ids: list[int]) -> dict[int, VideoStats]:
        return {video_id: self.stats[video_id] for video_id in video_ids if video_id in self.stats}


def _blend_one_by_one(
    matches: list[tuple[int, float]],
    stats: dict[int, VideoStats],
    limit: int,
    config: SearchConfig,
    ranking: RankingConfig,
) -> list[tuple[int, float, float, float]]:
    """The blend as :class:`VideoSearch` documents it, one match at a time with
    :func:`video_quality`: ``(video_id, score, text, quality)``, best score first,
    ties by lower id."""
    best = max(score for _, score in matches)
    blended = []
    for video_id, text_score in matches:
        quality = video_quality(stats.get(video_id) or VideoStats(video_id=video_id), ranking)
        relevance = min(1.0, text_score / best) if best > 0 else 0.0
        score = min(1.0, config.text_weight * relevance + config.quality_weight * quality)
        blended.append((video_id, score, relevance, quality))
    return sorted(blended, key=lambda hit: (-hit[1], hit[0]))[:limit]


_COUNTS = st.builds(
    lambda views, completion, likes, shares, comments: (
        views,
        views * completion,
        likes,
        shares,
        comments,
    ),
    st.integers(0, 10**9),
    st.floats(0.0, 1.0),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
)
_PRIORS = st.builds(
    RankingConfig,
    completion_prior_mean=st.floats(0.0, 1.0),
    completion_prior_views=st.sampled_from([0.0, 1.0, 20.0, 333.3]),
    engagement_prior_rate=st.sampled_from([0.0, 0.05, 1.5]),
    engagement_prior_views=st.sampled_from([0.0, 50.0, 7.25]),
    like_weight=st.floats(0.0, 5.0),
    share_weight=st.floats(0.0, 5.0),
    comment_weight=st.floats(0.0, 5.0),
    engagement_half_saturation=st.floats(0.01, 2.0),
)


@settings(max_examples=150, deadline=None)
@given(
    matches=st.dictionaries(
        st.integers(1, 10_000),
        st.sampled_from([0.0, 0.5, 1.25, 3.0, 7.5]) | st.floats(0.0, 50.0),
        min_size=1,
        max_size=60,
    ),
    counts=st.lists(_COUNTS | st.none(), min_size=60, max_size=60),
    limit=st.integers(1, 80),
    ranking=_PRIORS,
    text_weight=st.sampled_from([0.0, 0.3, 0.8, 1.0]),
)
def test_the_blend_ranks_as_one_match_at_a_time_does(
    matches: dict[int, float],
    counts: list[tuple[int, float, int, int, int] | None],
    limit: int,
    ranking: RankingConfig,
    text_weight: float,
) -> None:
    """The columnar blend gives exactly the hits of the documented per-match blend:
    the same videos in the same order (ties in score by lower id), the same floats.
    Matches the event store has no counts for (``None``) get the zero counts."""
    pairs = list(matches.items())
    stats = {
        video_id: VideoStats(
            video_id=video_id,
            views=row[0],
            completion_sum=row[1],
            likes=row[2],
            shares=row[3],
            comments=row[4],
        )
        for (video_id, _), row in zip(pairs, counts, strict=False)
        if row is not None
    }
    config = SearchConfig(text_weight=text_weight, quality_weight=1.0 - text_weight)
    search = VideoSearch(
        _FixedMatches(pairs),  # type: ignore[arg-type]
        stats=_FixedStats(stats),  # type: ignore[arg-type]
        config=config,
        ranking=ranking,
    )
    hits = search.search("anything", limit=limit)
    want = _blend_one_by_one(pairs, stats, limit, config, ranking)
    assert [(hit.video_id, hit.score, hit.text, hit.quality) for hit in hits] == want


def test_only_ready_videos_are_searchable() -> None:
    search = VideoSearch(InMemorySearchIndex())
    assert search.index_video(make_video(1, title="sunset")) is True
    assert search.index_video(make_video(1, title="sunset", state=ProcessingState.FAILED)) is False
    assert search.search("sunset") == []
    search.index_video(make_video(2, title="sunset"))
    assert search.remove_video(2) is True
    assert search.search("sunset") == []


def test_service_rejects_bad_limits_and_queries() -> None:
    search = VideoSearch(InMemorySearchIndex())
    with pytest.raises(InvalidInputError) as caught:
        search.search("x", limit=10_000)
    assert caught.value.field == "limit"
    with pytest.raises(QueryError):
        search.search("")
    with pytest.raises(QueryError):
        search.search("y" * 500)


def test_blend_weights_must_sum_to_one() -> None:
    with pytest.raises(ConfigError) as caught:
        SearchConfig(text_weight=0.5)
    assert caught.value.field == "weights"


def test_bad_documents_are_refused_and_nothing_is_written() -> None:
    index = build_index()
    search = VideoSearch(index)
    before = index.search(terms(("danc", True)), limit=10)
    with pytest.raises(InvalidInputError) as caught:
        index.index("Dance video")  # type: ignore[arg-type]
    assert caught.value.field == "document"
    with pytest.raises(InvalidInputError) as caught:
        SearchDocument(video_id=0, title="dance")
    assert caught.value.field == "video_id"
    with pytest.raises(InvalidInputError) as caught:
        SearchDocument(video_id=9, title="dance" * 100)
    assert caught.value.field == "title"
    with pytest.raises(InvalidInputError) as caught:
        search.index_video({"video_id": 9, "title": "dance"})  # type: ignore[arg-type]
    assert caught.value.field == "video"
    with pytest.raises(InvalidInputError) as caught:
        search.remove_video(-3)
    assert caught.value.field == "video_id"
    with pytest.raises(InvalidInputError) as caught:
        search.index_video(make_video(9, 1, title="dance"), creator="dancer")  # type: ignore[arg-type]
    assert caught.value.field == "creator"
    assert len(index) == 4
    assert index.search(terms(("danc", True)), limit=10) == before


class TestInMemorySearchIndex(SearchIndexContract):
    @pytest.fixture
    def search_index(self) -> InMemorySearchIndex:
        return InMemorySearchIndex()
