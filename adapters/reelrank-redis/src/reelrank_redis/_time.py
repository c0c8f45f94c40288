"""Datetimes as integer microseconds since the Unix epoch (exact in a Redis score)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["EPOCH", "from_microseconds", "to_microseconds"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""The Unix epoch, UTC."""


def to_microseconds(moment: datetime) -> int:
    """Microseconds from the epoch to an aware ``moment``.

    Integer arithmetic keeps it exact; as a Redis score (a double) it stays exact for
    about 285 years either side of 1970.
    """
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_microseconds(value: int) -> datetime:
    """Inverse of :func:`to_microseconds`, as a UTC datetime."""
    return EPOCH + timedelta(microseconds=value)
