"""``check_trending_kind``: the public check the core and the adapters' trending stores share."""

from __future__ import annotations

import pickle

import pytest

from reelrank import InvalidInputError, TrendingKind
from reelrank.stores.adapter import check_trending_kind


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("sound", TrendingKind.SOUND),
        ("hashtag", TrendingKind.HASHTAG),
        (TrendingKind.SOUND, TrendingKind.SOUND),
    ],
)
def test_a_kind_is_returned_as_the_enum(value: object, expected: TrendingKind) -> None:
    checked = check_trending_kind("kind", value)
    assert checked is expected


@pytest.mark.parametrize("value", ["Sound", "sounds", "", None, 1, b"sound"])
def test_anything_else_names_the_field_given(value: object) -> None:
    with pytest.raises(InvalidInputError) as info:
        check_trending_kind("trending_kind", value)
    assert info.value.field == "trending_kind"
    again = pickle.loads(pickle.dumps(info.value))
    assert again.field == "trending_kind" and str(again) == str(info.value)
