"""BM25 top-k over the impact-ordered postings, shared by PostgreSQL and SQLite.

``search_postings`` holds, per (term, video), the field-weighted term frequency ``tf``,
the video's field-weighted ``length`` and ``impact``, the BM25 term-frequency part at a
reference length. A term's postings are read best impact first, and a posting's score at
the current mean length is at most ``idf x impact x slack`` (see ``_impact_search`` in
``reelrank_postgres._search``), so a search reads only the postings that can reach its
top ``limit``.

Scores are the in-memory kernel's expression in the same order of operations (IEEE
double): a group (a term, or a prefix's expansions) scores its best expansion, groups are
summed rarest first, as :class:`~reelrank.InMemorySearchIndex` sums them.

A query of several groups (:func:`several_groups`) walks its rarest group's best
postings in batches through a :class:`PostingsReader`: on PostgreSQL each batch is one
statement scored on the server, on SQLite the rows are read in process (statements cost
microseconds there) and scored in Python. A query of one group is one statement of its
own on PostgreSQL (``_ONE_GROUP`` in ``_search``) and :func:`one_group` on SQLite.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Connection, text

__all__ = [
    "PostgresPostings",
    "PostingsReader",
    "Scoring",
    "SqlitePostings",
    "one_group",
    "several_groups",
]

Hits = list[tuple[int, float]]

# BM25 of a posting ``s`` for a query term ``q``, the in-memory kernel's expression in
# the same order of operations (IEEE double in both), so the scores come out the same.
_PG_BM25 = (
    "q.idf * s.tf * (CAST(:k1 AS float8) + 1.0) / (s.tf + CAST(:k1 AS float8) * "
    "(1.0 - CAST(:b AS float8) + CAST(:b AS float8) * s.length / CAST(:mean AS float8)))"
)
_PG_QUERY_TERMS = (
    'q AS (SELECT t.term COLLATE "C" AS term, t.grp, t.idf, t.depth FROM unnest('
    "CAST(:terms AS text[]), CAST(:groups AS int[]), CAST(:idfs AS float8[]), "
    "CAST(:depths AS bigint[])) AS t(term, grp, idf, depth))"
)
# One batch of a several-group search, on the server. Every query term reads its
# ``depth`` best postings; the videos they hold are the candidates, ranked by their bound
# (the largest ``idf x impact`` among their postings read), ties to the lower id.
# Candidates ``(start, start + count]`` get their postings read by one descent of the
# primary key (video_id, term) each (``OFFSET 0`` keeps the planner from turning the
# LATERAL into a join that reads a common term's whole postings), joined with the query
# terms and scored exactly, a group scoring its best expansion and the groups summed
# rarest first, as in memory. Extra rows: (0, number of candidates), and per group
# (-1 - group, the largest bound of its postings not scored yet: read ones of later
# candidates, or the next one of a term past its depth), NULL when there is none.
_PG_BATCH = text(
    f"WITH {_PG_QUERY_TERMS}, "
    "read AS (SELECT p.video_id, q.grp, q.idf * p.impact AS bound FROM q "
    "CROSS JOIN LATERAL (SELECT s.video_id, s.impact FROM search_postings AS s "
    "WHERE s.term = q.term ORDER BY s.impact DESC, s.video_id LIMIT q.depth) AS p), "
    "ordered AS (SELECT video_id, row_number() OVER (ORDER BY max(bound) DESC, video_id) "
    "AS position FROM read GROUP BY video_id), "
    "batch AS (SELECT video_id FROM ordered "
    "WHERE position > :start AND position <= :start + :count), "
    f"best AS (SELECT c.video_id, q.grp, max({_PG_BM25}) AS score FROM batch AS c "
    "CROSS JOIN LATERAL (SELECT p.term, p.tf, p.length FROM search_postings AS p "
    "WHERE p.video_id = c.video_id OFFSET 0) AS s JOIN q ON q.term = s.term "
    "GROUP BY c.video_id, q.grp) "
    "SELECT video_id, sum(score ORDER BY grp) AS score FROM best GROUP BY video_id "
    "HAVING count(*) = :group_count "
    "UNION ALL SELECT 0, count(*) FROM ordered "
    "UNION ALL SELECT -1 - g.grp, greatest((SELECT max(r.bound) FROM read AS r "
    "JOIN ordered AS o ON o.video_id = r.video_id WHERE r.grp = g.grp "
    "AND o.position > :start + :count), (SELECT max(q.idf * (SELECT s.impact "
    "FROM search_postings AS s WHERE s.term = q.term ORDER BY s.impact DESC, s.video_id "
    "OFFSET q.depth LIMIT 1)) FROM q WHERE q.grp = g.grp)) "
    "FROM generate_series(0, :group_count - 1) AS g(grp)"
)

_SQLITE_TOP = (
    "SELECT video_id, tf, length, impact FROM search_postings "
    "WHERE term = ? AND impact >= ? ORDER BY impact DESC, video_id LIMIT ?"
)
# ``+term``: the same one descent per video on SQLite, whose planner would otherwise
# probe every (video, term) pair.
_SQLITE_POSTINGS_OF = (
    "SELECT video_id, term, tf, length FROM search_postings "
    "WHERE video_id IN (SELECT value FROM json_each(?)) "
    "AND +term IN (SELECT value FROM json_each(?))"
)


class PostingsReader(Protocol):
    """The reads :func:`several_groups` needs, in one dialect."""

    def batch(self, scoring: Scoring, depths: list[int], start: int, count: int) -> Batch:
        """A several-group search's candidates ``(start, start + count]``, scored.

        Every query term's best ``depths`` postings (in the order of the groups' terms)
        are read; the videos they hold are the candidates, ranked by the largest
        ``idf x impact`` among their postings read, ties to the lower id.
        """
        ...


class PostgresPostings:
    """:class:`PostingsReader` on PostgreSQL: one statement per read, arrays as parameters."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def batch(self, scoring: Scoring, depths: list[int], start: int, count: int) -> Batch:
        groups = scoring.groups
        rows = self._connection.execute(
            _PG_BATCH,
            {
                "terms": [term for group in groups for term in group],
                "groups": [number for number, group in enumerate(groups) for _ in group],
                "idfs": [scoring.idfs[term] for group in groups for term in group],
                "depths": depths,
                "k1": scoring.k1,
                "b": scoring.b,
                "mean": scoring.mean_length,
                "start": start,
                "count": count,
                "group_count": len(groups),
            },
        ).all()
        scores: dict[int, float] = {}
        left: list[float | None] = [None] * len(groups)
        candidates = 0
        for video_id, value in rows:
            if video_id > 0:
                scores[int(video_id)] = float(value)
            elif video_id == 0:
                candidates = int(value)
            else:
                left[-1 - video_id] = None if value is None else float(value)
        return Batch(scores, left, candidates)


class SqlitePostings:
    """:class:`PostingsReader` on SQLite, through the driver's connection: statements
    in-process cost microseconds, so a term's range is one statement of its own, and
    scores are computed in Python."""

    def __init__(self, connection: Connection) -> None:
        driver = connection.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        self._driver = driver
        # A several-group search's candidates in bound order, each group's postings
        # read (bound, video) best first, and each group's largest bound past the
        # postings read: filled by the first batch.
        self._order: list[int] | None = None
        self._position: dict[int, int] = {}
        self._group_bounds: list[list[tuple[float, int]]] = []
        self._unread: list[float | None] = []

    def top(
        self, terms: list[str], depths: list[int], floors: list[float]
    ) -> list[list[tuple[int, float, float, float]]]:
        execute = self._driver.execute
        return [
            execute(_SQLITE_TOP, (term, floor, depth)).fetchall()
            for term, depth, floor in zip(terms, depths, floors, strict=True)
        ]

    def batch(self, scoring: Scoring, depths: list[int], start: int, count: int) -> Batch:
        if self._order is None:
            self._read_candidates(scoring, depths)
        assert self._order is not None
        order, position = self._order, self._position
        scores = self._exact(order[start : start + count], scoring)
        rest = start + count
        left: list[float | None] = []
        for bounds, unread in zip(self._group_bounds, self._unread, strict=True):
            # The group's largest bound among postings of candidates not scored yet.
            later = next((bound for bound, video in bounds if position[video] >= rest), None)
            values = [value for value in (later, unread) if value is not None]
            left.append(max(values) if values else None)
        return Batch(scores, left, len(order))

    def _read_candidates(self, scoring: Scoring, depths: list[int]) -> None:
        terms = [term for group in scoring.groups for term in group]
        numbers = [number for number, group in enumerate(scoring.groups) for _ in group]
        rows = self.top(terms, [depth + 1 for depth in depths], [0.0] * len(terms))
        best: dict[int, float] = {}
        group_bounds: list[list[tuple[float, int]]] = [[] for _ in scoring.groups]
        unread: list[float | None] = [None] * len(scoring.groups)
        for term, number, postings, depth in zip(terms, numbers, rows, depths, strict=True):
            idf = scoring.idfs[term]
            for video_id, _, _, impact in postings[:depth]:
                bound = idf * impact
                group_bounds[number].append((bound, video_id))
                if bound > best.get(video_id, -1.0):
                    best[video_id] = bound
            if len(postings) > depth:
                next_bound = idf * postings[depth][3]
                unread[number] = max(unread[number] or 0.0, next_bound)
        ranked = sorted((-bound, video) for video, bound in best.items())
        self._order = [video for _, video in ranked]
        self._position = {video: number for number, video in enumerate(self._order)}
        self._group_bounds = [sorted(bounds, reverse=True) for bounds in group_bounds]
        self._unread = unread

    def _exact(self, videos: list[int], scoring: Scoring) -> dict[int, float]:
        if not videos:
            return {}
        terms = list(dict.fromkeys(term for group in scoring.groups for term in group))
        rows = self._driver.execute(
            _SQLITE_POSTINGS_OF, (json.dumps(sorted(videos)), json.dumps(terms))
        ).fetchall()
        # A term may sit in two groups ("dance da*"): its posting counts in both.
        groups_of: dict[str, list[int]] = {}
        for number, group in enumerate(scoring.groups):
            for term in group:
                groups_of.setdefault(term, []).append(number)
        count = len(scoring.groups)
        best: dict[int, list[float]] = {}
        for video_id, term, tf, length in rows:
            score = scoring.bm25(scoring.idfs[term], tf, length)
            groups = best.setdefault(video_id, [-1.0] * count)
            for number in groups_of[term]:
                if score > groups[number]:
                    groups[number] = score
        exact: dict[int, float] = {}
        for video_id, groups in best.items():
            if min(groups) >= 0.0:
                total = groups[0]
                for score in groups[1:]:
                    total += score  # rarest group first, as in memory
                exact[video_id] = total
        return exact


@dataclass(frozen=True)
class Scoring:
    """What BM25 needs beyond a posting, and the query's terms rarest group first."""

    groups: list[list[str]]
    """Each group's terms (a term, or a prefix's capped expansions), rarest group first."""
    idfs: dict[str, float]
    k1: float
    b: float
    mean_length: float
    slack: float
    """A stored impact times this (and the idf) bounds the posting's score now."""

    def bm25(self, idf: float, tf: float, length: float) -> float:
        # The in-memory kernel's expression, in its order of operations.
        norm = self.k1 * (1.0 - self.b + self.b * length / self.mean_length)
        return idf * tf * (self.k1 + 1.0) / (tf + norm)


@dataclass(frozen=True)
class Batch:
    """One batch of a several-group search."""

    scores: dict[int, float]
    """Exact scores of the batch's candidates that match every group."""
    left: list[float | None]
    """Per group, the largest ``idf x impact`` of its postings not scored yet (``None``
    when every video holding the group was scored)."""
    candidates: int
    """How many candidates the search has in all."""


def _ranked(scores: dict[int, float], limit: int) -> Hits:
    hits = sorted(scores.items(), key=lambda hit: (-hit[1], hit[0]))
    return hits[:limit]


def one_group(
    reader: SqlitePostings,
    scoring: Scoring,
    first_depths: list[int],
    limit: int,
    cap: int,
) -> Hits:
    """Exact top ``limit`` of a one-group query, in two passes.

    The best ``first_depths`` postings of each term give a floor, the ``limit``-th best
    video score among them; then every posting whose bound reaches the floor (at most
    ``cap`` a term) is scored, each video keeping its best expansion.
    """
    (terms,) = scoring.groups
    idfs = [scoring.idfs[term] for term in terms]
    scores = _best_by_video(reader.top(terms, first_depths, [0.0] * len(terms)), idfs, scoring)
    ranked = sorted(scores.values(), reverse=True)
    floor = ranked[limit - 1] if len(ranked) >= limit else 0.0
    floors = [floor / (idf * scoring.slack) for idf in idfs]
    scores = _best_by_video(reader.top(terms, [cap] * len(terms), floors), idfs, scoring)
    return _ranked(scores, limit)


def _best_by_video(
    postings: list[list[tuple[int, float, float, float]]], idfs: list[float], scoring: Scoring
) -> dict[int, float]:
    best: dict[int, float] = {}
    for rows, idf in zip(postings, idfs, strict=True):
        for video_id, tf, length, _ in rows:
            score = scoring.bm25(idf, tf, length)
            if score > best.get(video_id, -1.0):
                best[video_id] = score
    return best


def several_groups(
    reader: PostingsReader,
    scoring: Scoring,
    depths: list[int],
    budget: int,
    first_batch: int,
    limit: int,
) -> Hits:
    """Top ``limit`` of a query of several groups, every one of which must match: the
    threshold algorithm over each group's postings in bound order.

    Every query term's best ``depths`` postings are read (cheap, a range of the index);
    the videos they hold are the candidates, best bound (``idf x impact``) first, scored
    exactly in batches (``first_batch``, then twice as many each time). After a batch,
    with ``theta`` the ``limit``-th best score found, a video not scored yet scores at
    most the sum over the groups of each group's largest bound left (its postings read
    for candidates not scored yet, or the next one of a term past its depth), times the
    slack: once that is below ``theta`` no video left can enter the top and the result
    is exact. It is exact too once a group has nothing left: every video holding it was
    scored. Otherwise the walk stops after ``budget`` candidates (or when none is left),
    and the result is the best matches among them.
    """
    scores: dict[int, float] = {}
    done, size = 0, first_batch
    while True:
        count = min(size, budget - done)
        batch = reader.batch(scoring, depths, done, count)
        scores.update(batch.scores)
        done += count
        size *= 2
        if any(left is None for left in batch.left):
            break  # every video holding that group was scored: exact
        if done >= min(budget, batch.candidates):
            break  # the walk's end: the best matches among the candidates
        if len(scores) >= limit:
            theta = sorted(scores.values(), reverse=True)[limit - 1]
            if sum(left for left in batch.left if left is not None) * scoring.slack < theta:
                break  # nothing left can reach the top: exact
    return _ranked(scores, limit)
