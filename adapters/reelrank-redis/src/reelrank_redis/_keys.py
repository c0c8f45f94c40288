"""The key layout: every key starts with the configured prefix and a format version.

============================================  ===========  =====================================
key                                           type         holds
============================================  ===========  =====================================
``{prefix}:feed:v1:{variant}:{user}``         string       one packed feed snapshot (TTL)
``{prefix}:feedvariants:v1:{user}``           set          variants cached for the user (TTL)
``{prefix}:stats:v1:feed``                    hash         ``hits`` and ``misses`` of the cache
``{prefix}:seen:v1:{user}``                   sorted set   seen video ids scored by time (TTL)
``{prefix}:event:v1:{event_id}``              string       an applied event id (TTL)
``{prefix}:video:v1:{video}``                 hash         real-time counters of a video
``{prefix}:likers:v1:{video}``                set          users currently liking a video
``{prefix}:affinity:v1:{user}``               hash         affinity credit by creator, ``total``
``{prefix}:popular:v1``                       sorted set   views by video
============================================  ===========  =====================================

``{variant}`` is ``-`` for the default feed (a variant tag cannot start with ``-``, so
it never clashes with a real one). A change of the snapshot format bumps ``v1``, so
new code never misreads bytes an older version wrote; the old keys simply expire.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_VARIANT", "KeyLayout", "id_member", "member_id"]

DEFAULT_VARIANT = "-"
"""How the default feed (``variant=None``) is written in keys."""

_ID_BYTES = 8


def id_member(video_id: int) -> bytes:
    """A sorted-set member for an id: 8 bytes big-endian.

    Byte-wise order equals numeric order for positive int64 ids, so Redis breaks score
    ties by id (ZRANGE orders equal scores lexicographically).
    """
    return video_id.to_bytes(_ID_BYTES, "big")


def member_id(member: bytes) -> int:
    """Inverse of :func:`id_member`."""
    return int.from_bytes(member, "big")


@dataclass(frozen=True, slots=True)
class KeyLayout:
    """Builds the keys of one prefix (see the module docstring for the table)."""

    prefix: str

    def feed(self, user_id: int, variant: str | None) -> str:
        """Key of one cached snapshot."""
        return f"{self.prefix}:feed:v1:{variant or DEFAULT_VARIANT}:{user_id}"

    def feed_variant_prefix(self) -> str:
        """Start of every snapshot key, up to the variant."""
        return f"{self.prefix}:feed:v1:"

    def feed_variants(self, user_id: int) -> str:
        """Key of the set of variants cached for a user."""
        return f"{self.prefix}:feedvariants:v1:{user_id}"

    def feed_stats(self) -> str:
        """Key of the cache's hit and miss counters."""
        return f"{self.prefix}:stats:v1:feed"

    def seen(self, user_id: int) -> str:
        """Key of the user's seen sorted set."""
        return f"{self.prefix}:seen:v1:{user_id}"

    def event(self, event_id: str) -> str:
        """Key recording that an event id was applied."""
        return f"{self.prefix}:event:v1:{event_id}"

    def video_counters(self, video_id: int) -> str:
        """Key of a video's real-time counters."""
        return f"{self.prefix}:video:v1:{video_id}"

    def likers(self, video_id: int) -> str:
        """Key of the set of users currently liking a video."""
        return f"{self.prefix}:likers:v1:{video_id}"

    def affinity(self, user_id: int) -> str:
        """Key of a user's affinity credit by creator."""
        return f"{self.prefix}:affinity:v1:{user_id}"

    def popular(self) -> str:
        """Key of the views-by-video sorted set."""
        return f"{self.prefix}:popular:v1"
