from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st

from reelrank import ConfigError, DiversityRule, InvalidInputError
from reelrank._kernels._diversity import NO_SOUND


def longest_run(values: list[int], *, skip: int | None = None) -> int:
    best = run = 0
    previous: int | None = None
    for value in values:
        run = run + 1 if value == previous and value != skip else 1
        if value == skip:
            run = 0
        previous = value
        best = max(best, run)
    return best


items = st.integers(min_value=0, max_value=60).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(1, 4), min_size=n, max_size=n),
        st.lists(st.sampled_from([NO_SOUND, 7, 8]), min_size=n, max_size=n),
    )
)
limits = st.one_of(st.none(), st.integers(1, 4))


@settings(deadline=None)  # the first example compiles the kernel
@given(items=items, max_creator=limits, max_sound=limits)
def test_kernel_matches_the_reference(
    items: tuple[list[int], list[int]], max_creator: int | None, max_sound: int | None
) -> None:
    creators, sounds = items
    rule = DiversityRule(max_creator_run=max_creator, max_sound_run=max_sound)
    order = rule.order(creators, sounds)
    assert order.dtype == np.int64
    assert order.tolist() == ref.diversity_order(creators, sounds, max_creator, max_sound)
    assert sorted(order.tolist()) == list(range(len(creators)))


@settings(deadline=None)
@given(items=items, max_creator=st.integers(1, 4))
def test_runs_respect_the_limit_when_enough_other_creators_remain(
    items: tuple[list[int], list[int]], max_creator: int
) -> None:
    creators, _ = items
    # Interleave so that no creator holds more than half of the items: always solvable.
    balanced = [creators[i // 2] if i % 2 == 0 else 100 + i for i in range(2 * len(creators))]
    order = DiversityRule(max_creator_run=max_creator, max_sound_run=None).order(balanced)
    assert longest_run([balanced[i] for i in order]) <= max_creator


def test_order_is_kept_when_no_limit_is_hit() -> None:
    creators = [1, 2, 1, 3, 3, 2, 1]
    order = DiversityRule(max_creator_run=2, max_sound_run=None).order(creators)
    assert order.tolist() == list(range(7))


def test_a_long_run_is_broken_by_the_next_best_other_creator() -> None:
    creators = [1, 1, 1, 1, 2, 3]
    order = DiversityRule(max_creator_run=2, max_sound_run=None).order(creators)
    assert [creators[i] for i in order] == [1, 1, 2, 1, 1, 3]
    assert order.tolist() == [0, 1, 4, 2, 3, 5]


def test_items_without_sound_never_form_a_run() -> None:
    creators = [1, 2, 3, 4]
    order = DiversityRule(max_creator_run=None, max_sound_run=1).order(creators, [NO_SOUND] * 4)
    assert order.tolist() == [0, 1, 2, 3]
    order = DiversityRule(max_creator_run=None, max_sound_run=1).order(creators, [9, 9, 5, 5])
    assert order.tolist() == [0, 2, 1, 3]


def test_single_creator_is_kept_rather_than_dropped() -> None:
    order = DiversityRule(max_creator_run=1).order([5] * 6)
    assert order.tolist() == list(range(6))


def test_empty_input() -> None:
    assert DiversityRule().order([]).tolist() == []


def test_bad_inputs_name_the_field() -> None:
    with pytest.raises(InvalidInputError) as info:
        DiversityRule().order([1, 2], [1])
    assert info.value.field == "sound_ids"
    with pytest.raises(InvalidInputError) as info:
        DiversityRule().order([[1, 2]])
    assert info.value.field == "creator_ids"
    with pytest.raises(ConfigError) as config_info:
        DiversityRule(max_creator_run=0)
    assert config_info.value.field == "max_creator_run"
