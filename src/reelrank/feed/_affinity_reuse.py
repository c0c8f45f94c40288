"""Users' last affinity reads, reused by this process's rankings for a bounded time."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

ReadToken = tuple[int, float]
"""Taken before a read (:meth:`AffinityReuse.token`): the forget count and the read's start."""


@dataclass(slots=True)
class _Read:
    read_at: float
    """When the oldest read merged into this entry began (monotonic seconds)."""
    asked: list[frozenset[int]] = field(default_factory=list)
    """The creators each merged read asked about; users ranked over the same candidate
    pool share one set, so an entry costs about its non-zero affinities only."""
    nonzero: dict[int, float] = field(default_factory=dict)
    """The non-zero affinities read; every other creator asked about has ``0.0``."""


class AffinityReuse:
    """The affinities last read for each user, reused while younger than ``max_age``.

    A read is kept only if its user was not forgotten (:meth:`forget`) between its
    start (:meth:`token`) and :meth:`keep`: a read that began before an event this
    process recorded for the user may lack the event's credit. Another user's forget
    leaves it be. The least recently used users are dropped beyond ``max_users``.
    Thread-safe.
    """

    def __init__(
        self, *, max_age_seconds: float, max_users: int, monotonic: Callable[[], float]
    ) -> None:
        self._max_age = max_age_seconds
        self._max_users = max_users
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._reads: OrderedDict[int, _Read] = OrderedDict()
        # Counts forgets, so that a read can tell whether its user's happened while it
        # ran: each forgotten user's last forget (its count and time), oldest first.
        self._forgets = 0
        self._forgotten: OrderedDict[int, tuple[int, float]] = OrderedDict()
        # Forgets dropped from ``_forgotten`` to bound it while still young: a read that
        # began before the last of them is not kept, whoever its user.
        self._dropped_through = 0
        # The last creator set kept, shared by the next reads that asked the same.
        self._shared_asked: frozenset[int] = frozenset()

    def token(self) -> ReadToken:
        """Taken before a read, to :meth:`keep` it."""
        with self._lock:
            return self._forgets, self._monotonic()

    def recall(
        self, user_id: int, creator_ids: Sequence[int]
    ) -> tuple[dict[int, float], list[int]]:
        """The user's reused affinities among ``creator_ids``, and the creators they do
        not cover (all of them when nothing young enough is kept)."""
        with self._lock:
            read = self._reads.get(user_id)
            if read is not None and self._monotonic() - read.read_at >= self._max_age:
                del self._reads[user_id]
                read = None
            if read is None:
                return {}, list(creator_ids)
            self._reads.move_to_end(user_id)
            # Entries are replaced, never changed, outside the lock: these stay whole.
            asked, nonzero = read.asked, read.nonzero
        covered = asked[0] if len(asked) == 1 else frozenset().union(*asked)
        missing = [creator for creator in creator_ids if creator not in covered]
        known = {
            creator: nonzero.get(creator, 0.0) for creator in creator_ids if creator in covered
        }
        return known, missing

    def keep(self, user_id: int, affinity: Mapping[int, float], token: ReadToken) -> None:
        """Keep a read (every creator it asked about, as the store answers) that began
        at ``token``; merged into a young entry of the user, whose older start stays."""
        forgets, read_at = token
        asked = frozenset(affinity)
        nonzero = {creator: value for creator, value in affinity.items() if value}
        with self._lock:
            if (
                forgets < self._dropped_through
                or self._forgotten.get(user_id, (0, 0.0))[0] > forgets
                # A read older than the bound would be dropped on recall, and must not
                # be merged into a younger entry either.
                or self._monotonic() - read_at >= self._max_age
            ):
                return
            if asked == self._shared_asked:
                asked = self._shared_asked
            else:
                self._shared_asked = asked
            read = self._reads.get(user_id)
            if read is None or self._monotonic() - read.read_at >= self._max_age:
                self._reads[user_id] = _Read(read_at, [asked], nonzero)
            else:
                self._reads[user_id] = _Read(
                    read.read_at, [*read.asked, asked], {**read.nonzero, **nonzero}
                )
            self._reads.move_to_end(user_id)
            while len(self._reads) > self._max_users:
                self._reads.popitem(last=False)

    def forget(self, user_id: int) -> None:
        """Drop the user's kept read, and keep none of the user's reads under way."""
        with self._lock:
            now = self._monotonic()
            self._forgets += 1
            self._reads.pop(user_id, None)
            self._forgotten[user_id] = (self._forgets, now)
            self._forgotten.move_to_end(user_id)
            # A forget older than the bound can be let go: a read that began before it
            # is older than the bound too, and is not kept for that reason.
            while self._forgotten:
                _, (count, forgotten_at) = next(iter(self._forgotten.items()))
                if now - forgotten_at < self._max_age and len(self._forgotten) <= self._max_users:
                    break
                self._forgotten.popitem(last=False)
                if now - forgotten_at < self._max_age:
                    self._dropped_through = count
