"""Creator affinity pinned by hand-worked values, not by the library's own formula.

a(u, c) = C(u, c) / (sum over c' of C(u, c') + 1), where a watch earns its completion, a
like or a comment 1, a share 2 and an unlike -1. The event-store contract checks the
same values through every store's ``get_affinities``.
"""

from __future__ import annotations

import pytest

from reelrank import (
    AFFINITY_CREDITS,
    AFFINITY_PRIOR_CREDIT,
    EngagementKind,
    InvalidInputError,
    affinity,
    affinity_credit,
)


def test_the_documented_constants() -> None:
    assert AFFINITY_PRIOR_CREDIT == 1.0
    assert dict(AFFINITY_CREDITS) == {
        EngagementKind.LIKE: 1.0,
        EngagementKind.UNLIKE: -1.0,
        EngagementKind.SHARE: 2.0,
        EngagementKind.COMMENT: 1.0,
    }


@pytest.mark.parametrize(
    ("kind", "completion", "credit"),
    [
        (EngagementKind.WATCH, 1.0, 1.0),
        (EngagementKind.WATCH, 0.25, 0.25),
        (EngagementKind.WATCH, 0.0, 0.0),
        (EngagementKind.LIKE, None, 1.0),
        (EngagementKind.COMMENT, None, 1.0),
        (EngagementKind.SHARE, None, 2.0),
        (EngagementKind.UNLIKE, None, -1.0),
    ],
)
def test_credit_of_each_kind(kind: EngagementKind, completion: float | None, credit: float) -> None:
    assert affinity_credit(kind, completion) == credit


def test_a_watch_without_completion_earns_nothing_and_raises() -> None:
    with pytest.raises(InvalidInputError) as info:
        affinity_credit(EngagementKind.WATCH)
    assert info.value.field == "completion"


@pytest.mark.parametrize(
    ("creator_credit", "total_credit", "expected"),
    [
        pytest.param(0.0, 0.0, 0.0, id="no engagement"),
        pytest.param(1.0, 1.0, 1 / 2, id="one full watch"),
        pytest.param(10.0, 10.0, 10 / 11, id="ten full watches of one creator"),
        pytest.param(2.0, 2.0, 2 / 3, id="one share"),
        pytest.param(3.0, 3.0, 3 / 4, id="a full watch and a share"),
        pytest.param(1.0, 3.0, 1 / 4, id="a full watch, a share of another creator"),
        pytest.param(2.0, 3.0, 2 / 4, id="a share, a full watch of another creator"),
        pytest.param(1.5, 2.5, 1.5 / 3.5, id="a half watch and a like, a comment elsewhere"),
        pytest.param(0.0, 5.0, 0.0, id="all engagement elsewhere"),
        # Float rounding after an unlike can leave a tiny negative credit: it counts as 0.
        pytest.param(-1e-12, 0.0, 0.0, id="a rounding residue"),
        # A total below the creator's own credit (rounding again) is raised to it.
        pytest.param(1.0, 0.5, 1 / 2, id="a total below the creator's credit"),
    ],
)
def test_affinity_values(creator_credit: float, total_credit: float, expected: float) -> None:
    assert affinity(creator_credit, total_credit) == pytest.approx(expected, rel=1e-12, abs=0.0)
