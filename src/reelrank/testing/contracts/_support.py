"""What the contracts share: the ids every store must refuse, a time step, and the
optional bulk reads' skip."""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

import pytest

__all__ = ["BAD_IDS", "BAD_USER_BATCHES", "bulk_read_store", "hours"]

_StoreT = TypeVar("_StoreT")

BAD_IDS = (0, -1, 2**63, True, 1.0, "1")
"""Values no id argument accepts: out of range, or not an ``int`` (``bool`` included)."""


def hours(n: float) -> timedelta:
    """``n`` hours, for placing data before or after :data:`~reelrank.testing.EPOCH`."""
    return timedelta(hours=n)


def bulk_read_store(store: object, protocol: type[_StoreT]) -> _StoreT:
    """``store`` if it implements the optional bulk-read ``protocol``, else skip the test:
    a store without the bulk reads is read one user at a time, which needs no check."""
    if not isinstance(store, protocol):
        pytest.skip(f"{type(store).__name__} does not implement {protocol.__name__} (optional)")
    return store


# Bad ``user_ids`` of a read of many users: what every ``*_many`` method refuses.
BAD_USER_BATCHES: tuple[object, ...] = ([], [1, 2, 1], "12", 7, *([1, bad] for bad in BAD_IDS))
