"""What the contracts share: the ids every store must refuse, and a time step."""

from __future__ import annotations

from datetime import timedelta

__all__ = ["BAD_IDS", "hours"]

BAD_IDS = (0, -1, 2**63, True, 1.0, "1")
"""Values no id argument accepts: out of range, or not an ``int`` (``bool`` included)."""


def hours(n: float) -> timedelta:
    """``n`` hours, for placing data before or after :data:`~reelrank.testing.EPOCH`."""
    return timedelta(hours=n)
