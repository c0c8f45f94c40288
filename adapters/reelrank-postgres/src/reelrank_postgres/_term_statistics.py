"""What a SQL search reads before ranking, kept in the process for a few seconds.

A search first needs, per query term, the indexed terms it matches with how many videos
hold each (the term itself, or a prefix's capped expansions, from ``search_terms``), and,
to rank by BM25 over the impact-ordered postings, the whole-index statistics
(``search_stats``). :class:`TermStatistics` keeps both for
:attr:`~reelrank.SearchConfig.term_statistics_seconds`, so a search whose terms were
read lately asks the database one statement (the ranking) instead of two.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["IndexStatistics", "TermKey", "TermStatistics"]

TermKey = tuple[str, bool]
"""A query term as its text and whether it is a prefix."""


class IndexStatistics(NamedTuple):
    """The ``search_stats`` row: what BM25 takes from the whole index."""

    documents: int
    total_length: float
    reference_length: float
    k1: float
    b: float


class TermStatistics:
    """Term counts and index statistics read at most ``seconds`` ago, at most ``terms``
    terms (the least recently used dropped first).

    :meth:`drop_all` empties it and starts a new generation: what a search read before
    it (racing a write of this process) is not kept, so after a write returns every
    search in the process reads what the write left.
    """

    def __init__(self, seconds: float, terms: int, clock: Callable[[], float]) -> None:
        self._seconds = seconds
        self._terms = terms
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: OrderedDict[TermKey, tuple[float, dict[str, int]]] = OrderedDict()
        self._statistics: tuple[float, IndexStatistics | None] | None = None
        self._generation = 0

    def now(self) -> float:
        """The clock's time, to stamp a read with (taken before it starts)."""
        return self._clock()

    def counts(self, keys: list[TermKey]) -> dict[TermKey, dict[str, int]]:
        """The kept counts of those of ``keys`` read less than ``seconds`` ago."""
        now = self._clock()
        found: dict[TermKey, dict[str, int]] = {}
        with self._lock:
            for key in keys:
                entry = self._counts.get(key)
                if entry is None:
                    continue
                if now - entry[0] >= self._seconds:
                    del self._counts[key]
                    continue
                self._counts.move_to_end(key)
                found[key] = entry[1]
        return found

    def statistics(self) -> tuple[bool, IndexStatistics | None]:
        """Whether index statistics read less than ``seconds`` ago are kept, and them
        (``None``: the index had none)."""
        with self._lock:
            entry = self._statistics
            if entry is None or self._clock() - entry[0] >= self._seconds:
                return False, None
            return True, entry[1]

    def generation(self) -> int:
        """The generation to pass to :meth:`put` for what is read from now on."""
        with self._lock:
            return self._generation

    def put(
        self,
        generation: int,
        read_at: float,
        counts: dict[TermKey, dict[str, int]],
        statistics: tuple[IndexStatistics | None] | None,
    ) -> None:
        """Keep what a search read from ``read_at`` on (``statistics`` a 1-tuple when
        they were read), unless :meth:`drop_all` ran since ``generation`` was taken."""
        with self._lock:
            if generation != self._generation:
                return
            for key, found in counts.items():
                self._counts[key] = (read_at, found)
                self._counts.move_to_end(key)
            while len(self._counts) > self._terms:
                self._counts.popitem(last=False)
            if statistics is not None:
                self._statistics = (read_at, statistics[0])

    def drop_all(self) -> None:
        """Forget everything kept, and anything read before this call."""
        with self._lock:
            self._counts.clear()
            self._statistics = None
            self._generation += 1

    def __len__(self) -> int:
        with self._lock:
            return len(self._counts)
