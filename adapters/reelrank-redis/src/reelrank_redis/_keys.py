"""The key layout: every key starts with the configured prefix and a format version.

============================================  ==========  ==================================
key                                           type        holds
============================================  ==========  ==================================
``{prefix}:feed:v2:{u<user>}:{variant}``      string      one packed feed snapshot (TTL)
``{prefix}:feedvariants:v2:{u<user>}``        set         variants cached for the user (TTL)
``{prefix}:seen:v2:{u<user>}``                sorted set  seen video ids scored by time (TTL)
``{prefix}:affinity:v2:{u<user>}``            hash        credit by creator, and ``total``
``{prefix}:credited:v2:{u<user>}:{event}``    string      event credited to its user (TTL)
``{prefix}:event:v2:{b<bucket>}:{event}``     string      event counted for its video (TTL)
``{prefix}:video:v2:{b<bucket>}:{video}``     hash        real-time counters of a video
``{prefix}:likers:v2:{b<bucket>}:{video}``    set         users currently liking a video
``{prefix}:popular:v2:{b<bucket>}``           sorted set  views by video, one bucket's videos
``{prefix}:stats:v2:{b<bucket>}``             hash        ``hits`` and ``misses`` of the cache
``{prefix}:trending:v2:{t<kind>:<window>}``   string      last trending snapshot, as JSON
``{prefix}:trendlease:v2:{t<kind>:<window>}`` string      owner computing the next (TTL)
============================================  ==========  ==================================

The part in braces is a Redis Cluster *hash tag*: only it decides a key's slot.

* Every key of one user carries ``{u<user>}``, so a user's snapshots, variant index,
  seen set and affinity share a slot, and the scripts and transactions over them run on
  one node.
* Per-video keys carry ``{b<video mod BUCKETS>}``: a video's counters, likers and the
  popularity bucket it is ranked in share a slot, and the global popularity ranking is
  :data:`BUCKETS` sorted sets (merged on read) rather than one hot key. The cache
  statistics are spread over the same buckets.
* A trending snapshot and its lease are hash-tagged by kind and window
  (``{tsound:24.0}``), so they share a slot; every command touches one key.

``{variant}`` is ``-`` for the default feed (a variant tag cannot start with ``-``, so
it never clashes with a real one). A change of the layout or of the snapshot format
bumps the version (``v1`` -> ``v2`` moved every key into a hash tag), so new code never
misreads keys an older version wrote: the old keys are not read any more and expire
(the TTL'd ones) or are deleted by the operator (see the adapter's documentation).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BUCKETS", "DEFAULT_VARIANT", "LAYOUT_VERSION", "KeyLayout", "id_member", "member_id"]

DEFAULT_VARIANT = "-"
"""How the default feed (``variant=None``) is written in keys."""

LAYOUT_VERSION = "v2"
"""The version written into every key."""

BUCKETS = 32
"""How many hash-tagged buckets the per-video keys, the popularity ranking and the cache
statistics are spread over. Part of the layout: changing it moves keys, so it needs a
version bump like any other layout change."""

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

    def _user(self, kind: str, user_id: int) -> str:
        return f"{self.prefix}:{kind}:{LAYOUT_VERSION}:{{u{user_id}}}"

    def _bucket(self, kind: str, bucket: int) -> str:
        return f"{self.prefix}:{kind}:{LAYOUT_VERSION}:{{b{bucket}}}"

    @staticmethod
    def bucket_of(video_id: int) -> int:
        """The bucket a video's keys live in."""
        return video_id % BUCKETS

    def feed(self, user_id: int, variant: str | None) -> str:
        """Key of one cached snapshot."""
        return f"{self._user('feed', user_id)}:{variant or DEFAULT_VARIANT}"

    def feed_variants(self, user_id: int) -> str:
        """Key of the set of variants cached for a user."""
        return self._user("feedvariants", user_id)

    def feed_stats(self, bucket: int) -> str:
        """Key of one bucket of the cache's hit and miss counters."""
        return self._bucket("stats", bucket)

    def seen(self, user_id: int) -> str:
        """Key of the user's seen sorted set."""
        return self._user("seen", user_id)

    def affinity(self, user_id: int) -> str:
        """Key of a user's affinity credit by creator."""
        return self._user("affinity", user_id)

    def event_credited(self, user_id: int, event_id: str) -> str:
        """Key recording that an event's affinity credit reached its user."""
        return f"{self._user('credited', user_id)}:{event_id}"

    def event_counted(self, video_id: int, event_id: str) -> str:
        """Key recording that an event was applied to its video's counters."""
        return f"{self._bucket('event', self.bucket_of(video_id))}:{event_id}"

    def video_counters(self, video_id: int) -> str:
        """Key of a video's real-time counters."""
        return f"{self._bucket('video', self.bucket_of(video_id))}:{video_id}"

    def likers(self, video_id: int) -> str:
        """Key of the set of users currently liking a video."""
        return f"{self._bucket('likers', self.bucket_of(video_id))}:{video_id}"

    def popular(self, bucket: int) -> str:
        """Key of one bucket of the views-by-video ranking."""
        return self._bucket("popular", bucket)

    def trending(self, kind: str, window_hours: float) -> str:
        """Key of the trending snapshot of one kind (``sound``, ``hashtag``) and window,
        written as Python writes the float (``24.0``), so ``24`` and ``24.0`` share it."""
        return f"{self.prefix}:trending:{LAYOUT_VERSION}:{{t{kind}:{float(window_hours)!r}}}"

    def trending_lease(self, kind: str, window_hours: float) -> str:
        """Key of the lease of whoever computes the next snapshot of a kind and window."""
        return f"{self.prefix}:trendlease:{LAYOUT_VERSION}:{{t{kind}:{float(window_hours)!r}}}"
