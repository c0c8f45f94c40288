"""Search reusing a query's text matches for SearchConfig.match_reuse_seconds."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reelrank import (
    ConfigError,
    InMemorySearchIndex,
    ParsedQuery,
    SearchConfig,
    SearchDocument,
    VideoSearch,
)
from reelrank.testing import make_video


class CountingIndex:
    """The in-memory index, counting the searches asked of it."""

    def __init__(self) -> None:
        self.inner = InMemorySearchIndex()
        self.searches = 0

    def index(self, document: SearchDocument) -> None:
        self.inner.index(document)

    def remove(self, video_id: int) -> bool:
        return self.inner.remove(video_id)

    def search(self, query: ParsedQuery, *, limit: int) -> list[tuple[int, float]]:
        self.searches += 1
        return self.inner.search(query, limit=limit)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def reusing(
    seconds: float = 30.0, queries: int = 100
) -> tuple[VideoSearch, CountingIndex, FakeClock]:
    index, clock = CountingIndex(), FakeClock()
    config = SearchConfig(
        candidate_pool=5, match_reuse_seconds=seconds, match_reuse_queries=queries
    )
    search = VideoSearch(index, config=config, clock=clock)
    for video_id, title in enumerate(["cat videos", "cat video dance", "dog videos"], start=1):
        search.index_video(make_video(video_id, title=title))
    return search, index, clock


def ids(search: VideoSearch, text: str, *, as_you_type: bool = False) -> list[int]:
    return [hit.video_id for hit in search.search(text, as_you_type=as_you_type)]


def test_reuse_is_off_by_default() -> None:
    index = CountingIndex()
    search = VideoSearch(index)
    search.index_video(make_video(1, title="cat videos"))
    assert SearchConfig().match_reuse_seconds == 0.0
    search.search("cat")
    search.search("cat")
    assert index.searches == 2


def test_same_query_asks_the_index_once_within_the_reuse_time_and_again_after() -> None:
    search, index, clock = reusing(seconds=30.0)
    assert ids(search, "cat") == [1, 2]
    clock.now += 29.9
    assert ids(search, "cat") == [1, 2]
    assert index.searches == 1
    clock.now += 0.1
    assert ids(search, "cat") == [1, 2]
    assert index.searches == 2
    # Kept again from the second read on.
    clock.now += 10.0
    search.search("cat")
    assert index.searches == 2


def test_normalised_equal_queries_share_their_matches() -> None:
    search, index, _ = reusing()
    assert ids(search, "Cat  Videos") == [1]
    assert ids(search, "cat videos") == [1]
    assert ids(search, "\uff23\uff21\uff34 videos videos") == [1]  # full-width CAT
    assert index.searches == 1
    # An unfinished word typed is a prefix term: the same query as an explicit one.
    assert ids(search, "cat vid", as_you_type=True) == [2, 1]
    assert ids(search, "cat vid*") == [2, 1]
    assert index.searches == 2
    # Another prefix flag, term order or depth is another query.
    assert ids(search, "cat vid") == []
    search.search("videos cat")
    search.search("cat videos", limit=6)  # past candidate_pool 5
    assert index.searches == 5


def test_a_removed_video_is_never_returned_after_remove_video() -> None:
    search, index, _ = reusing()
    assert ids(search, "videos") == [1, 3]
    assert search.remove_video(1) is True
    assert ids(search, "videos") == [3]
    assert index.searches == 2
    # A video that left the ready state is dropped the same way.
    search.index_video(make_video(3, title="dog videos", state="failed"))
    assert ids(search, "videos") == []


def test_an_indexed_video_appears_at_once() -> None:
    search, _, _ = reusing()
    assert ids(search, "dog") == [3]
    search.index_video(make_video(4, title="dog dog dog"))
    assert ids(search, "dog") == [4, 3]
    # An edit that drops the term drops the video.
    search.index_video(make_video(3, title="a hamster"))
    assert ids(search, "dog") == [4]


class RemovingDuringRead(CountingIndex):
    """Removes a video through the search service while its first read is under way,
    as another thread of the process could."""

    def __init__(self) -> None:
        super().__init__()
        self.service: VideoSearch | None = None

    def search(self, query: ParsedQuery, *, limit: int) -> list[tuple[int, float]]:
        matches = super().search(query, limit=limit)
        if self.searches == 1 and self.service is not None:
            self.service.remove_video(1)
        return matches


def test_matches_read_while_a_video_is_removed_are_not_kept() -> None:
    index = RemovingDuringRead()
    search = VideoSearch(index, config=SearchConfig(match_reuse_seconds=60.0), clock=FakeClock())
    search.index_video(make_video(1, title="cat"))
    search.index_video(make_video(2, title="cat"))
    index.service = search
    # The read raced the removal: its answer may hold the video, but is not kept.
    assert ids(search, "cat") == [1, 2]
    assert ids(search, "cat") == [2]
    assert index.searches == 2


def test_the_least_recently_used_query_is_dropped_past_the_bound() -> None:
    search, index, _ = reusing(queries=2)
    search.search("cat")
    search.search("dog")
    search.search("cat")  # now "dog" is the least recently used
    search.search("videos")  # drops "dog"
    assert index.searches == 3
    search.search("cat")
    search.search("videos")
    assert index.searches == 3
    search.search("dog")
    assert index.searches == 4


def test_on_matches_reports_whether_each_search_reused_its_matches() -> None:
    outcomes: list[bool] = []
    index = CountingIndex()
    config = SearchConfig(match_reuse_seconds=5.0)
    search = VideoSearch(index, config=config, clock=FakeClock(), on_matches=outcomes.append)
    search.index_video(make_video(1, title="cat"))
    search.search("cat")
    search.search("cat")
    search.search("cat", limit=0)  # no matches needed
    assert outcomes == [False, True]
    off: list[bool] = []
    VideoSearch(index, on_matches=off.append).search("cat")
    assert off == [False]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("match_reuse_seconds", -1.0),
        ("match_reuse_seconds", float("inf")),
        ("match_reuse_seconds", 3601.0),
        ("match_reuse_queries", 0),
        ("term_statistics_seconds", -1.0),
        ("term_statistics_seconds", float("nan")),
        ("term_statistics_seconds", 3601.0),
    ],
)
def test_bad_reuse_settings_name_their_field(field: str, value: float) -> None:
    with pytest.raises(ConfigError) as caught:
        SearchConfig(**{field: value})
    assert caught.value.field == field


_WORDS = ("cat", "dog", "dance", "videos", "fun")
_QUERIES = ("cat", "videos", "Videos  CAT", "da*", "#fun")

_titles = st.lists(st.sampled_from(_WORDS), min_size=1, max_size=4).map(" ".join)
_operations = st.lists(
    st.one_of(
        st.tuples(st.just("search"), st.sampled_from(_QUERIES), st.integers(1, 4)),
        st.tuples(
            st.just("index"),
            st.integers(1, 5),
            _titles,
        ),
        st.tuples(st.just("remove"), st.integers(1, 5), st.just("")),
        st.tuples(st.just("wait"), st.sampled_from([0.5, 3.0, 11.0]), st.just("")),
    ),
    min_size=8,
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(
    operations=_operations,
    bound=st.integers(1, 4),
    titles=st.lists(_titles, min_size=4, max_size=4),
)
def test_results_with_reuse_equal_results_asking_the_index_every_time(
    operations: list[tuple[str, object, object]], bound: int, titles: list[str]
) -> None:
    clock = FakeClock()
    config = SearchConfig(candidate_pool=3, match_reuse_seconds=10.0, match_reuse_queries=bound)
    reused = VideoSearch(InMemorySearchIndex(), config=config, clock=clock)
    reference = VideoSearch(InMemorySearchIndex(), config=SearchConfig(candidate_pool=3))
    for video_id, title in enumerate(titles, start=1):
        for service in (reused, reference):
            service.index_video(make_video(video_id, title=title))
    for kind, first, second in operations:
        if kind == "search":
            assert isinstance(first, str) and isinstance(second, int)
            assert reused.search(first, limit=second) == reference.search(first, limit=second)
        elif kind == "index":
            assert isinstance(first, int) and isinstance(second, str)
            for service in (reused, reference):
                service.index_video(make_video(first, title=second))
        elif kind == "remove":
            assert isinstance(first, int)
            assert reused.remove_video(first) == reference.remove_video(first)
        else:
            assert isinstance(first, float)
            clock.now += first
        assert reused._reuse is not None and len(reused._reuse) <= bound
