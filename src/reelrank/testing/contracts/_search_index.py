"""The contract of :class:`~reelrank.SearchIndex`."""

from __future__ import annotations

import pytest

from ...exceptions import InvalidInputError
from ...models._search import SearchDocument
from ...stores._protocols import SearchIndex
from ...stores._text import parse_query
from ._support import BAD_IDS

__all__ = ["SearchIndexContract"]


class SearchIndexContract:
    """Checks a :class:`~reelrank.SearchIndex`; needs a ``search_index`` fixture."""

    @staticmethod
    def _ids(index: SearchIndex, text: str, *, limit: int = 10) -> list[int]:
        return [video_id for video_id, _ in index.search(parse_query(text), limit=limit)]

    def test_satisfies_the_protocol(self, search_index: SearchIndex) -> None:
        assert isinstance(search_index, SearchIndex)

    def test_an_empty_index_finds_nothing(self, search_index: SearchIndex) -> None:
        assert search_index.search(parse_query("cats"), limit=10) == []

    def test_every_term_must_match(self, search_index: SearchIndex) -> None:
        search_index.index(SearchDocument(video_id=1, title="dance party"))
        search_index.index(SearchDocument(video_id=2, title="dance lesson"))
        search_index.index(SearchDocument(video_id=3, description="cooking"))
        assert sorted(self._ids(search_index, "dance")) == [1, 2]
        assert self._ids(search_index, "dance party") == [1]
        assert self._ids(search_index, "dance cooking") == []

    def test_scores_are_positive_and_ordered(self, search_index: SearchIndex) -> None:
        search_index.index(SearchDocument(video_id=1, title="cat", description="a dog"))
        search_index.index(SearchDocument(video_id=2, title="cat cat cat", hashtags=("cat",)))
        search_index.index(SearchDocument(video_id=3, description="cat"))
        hits = search_index.search(parse_query("cat"), limit=10)
        assert {video_id for video_id, _ in hits} == {1, 2, 3}
        assert all(score > 0.0 for _, score in hits)
        keys = [(-score, video_id) for video_id, score in hits]
        assert keys == sorted(keys)

    def test_ties_go_to_the_lower_id_and_limit_cuts(self, search_index: SearchIndex) -> None:
        for video_id in (9, 4, 6):
            search_index.index(SearchDocument(video_id=video_id, title="same words"))
        hits = search_index.search(parse_query("same"), limit=2)
        assert [video_id for video_id, _ in hits] == [4, 6]
        assert hits[0][1] == hits[1][1]
        assert search_index.search(parse_query("same"), limit=0) == []

    def test_prefix_and_hashtag_terms(self, search_index: SearchIndex) -> None:
        search_index.index(SearchDocument(video_id=1, title="dancing"))
        search_index.index(SearchDocument(video_id=2, hashtags=("dance",)))
        search_index.index(SearchDocument(video_id=3, title="dandelion"))
        assert sorted(self._ids(search_index, "danc*")) == [1, 2]
        assert self._ids(search_index, "#dance") == [2]
        assert self._ids(search_index, "#danc*") == [2]
        assert self._ids(search_index, "danc") == []

    def test_reindexing_replaces_the_document(self, search_index: SearchIndex) -> None:
        search_index.index(SearchDocument(video_id=1, title="cats"))
        search_index.index(SearchDocument(video_id=1, title="dogs"))
        assert self._ids(search_index, "cats") == []
        assert self._ids(search_index, "dogs") == [1]

    def test_remove_drops_the_document(self, search_index: SearchIndex) -> None:
        search_index.index(SearchDocument(video_id=1, title="cats"))
        search_index.index(SearchDocument(video_id=2, title="cats"))
        assert search_index.remove(1) is True
        assert search_index.remove(1) is False
        assert search_index.remove(404) is False
        assert self._ids(search_index, "cats") == [2]

    def test_bad_arguments_raise_and_write_nothing(self, search_index: SearchIndex) -> None:
        with pytest.raises(InvalidInputError) as info:
            search_index.index({"video_id": 1, "title": "cats"})  # type: ignore[arg-type]
        assert info.value.field == "document"
        assert search_index.search(parse_query("cats"), limit=10) == []
        for bad in BAD_IDS:
            with pytest.raises(InvalidInputError) as info:
                search_index.remove(bad)  # type: ignore[arg-type]
            assert info.value.field == "video_id"
        for bad_limit in (-1, 1.5, True, None):
            with pytest.raises(InvalidInputError) as info:
                search_index.search(parse_query("cats"), limit=bad_limit)  # type: ignore[arg-type]
            assert info.value.field == "limit"
