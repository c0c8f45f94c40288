"""What the contracts share: the ids every store must refuse, a time step, and the
optional bulk reads' skip."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

__all__ = ["BAD_IDS", "BAD_USER_BATCHES", "hours", "skip_without"]

BAD_IDS = (0, -1, 2**63, True, 1.0, "1")
"""Values no id argument accepts: out of range, or not an ``int`` (``bool`` included)."""


def hours(n: float) -> timedelta:
    """``n`` hours, for placing data before or after :data:`~reelrank.testing.EPOCH`."""
    return timedelta(hours=n)


def skip_without(store: object, protocol: Any) -> None:
    """Skip the test unless ``store`` implements the optional ``protocol`` (a bulk read):
    a store without it is read one user at a time, which needs no check of its own."""
    if not isinstance(store, protocol):
        pytest.skip(f"{type(store).__name__} does not implement {protocol.__name__} (optional)")


# Bad ``user_ids`` of a read of many users: what every ``*_many`` method refuses.
BAD_USER_BATCHES: tuple[object, ...] = ([], [1, 2, 1], "12", 7, *([1, bad] for bad in BAD_IDS))
