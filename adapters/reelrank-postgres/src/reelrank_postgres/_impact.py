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

A query of several groups walks every group's best postings by impact (the threshold
walk: :data:`_PG_WALK` documents it): the videos seen in every group are scored exactly,
the few seen in some groups that could still reach the top are looked up one descent
each, and the answer says whether it is proved exact. PostgreSQL runs it as one
statement scored on the server (:func:`postgres_walk`), SQLite, where a statement costs
microseconds, through :class:`SqlitePostings` scored in Python (:func:`several_groups`).
A query of one group is one statement of its own on PostgreSQL (``_ONE_GROUP`` in
``_search``) and :func:`one_group` on SQLite.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from sqlalchemy import Connection, text

__all__ = [
    "Scoring",
    "SqlitePostings",
    "Walk",
    "one_group",
    "postgres_walk",
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
# The walk of a several-group search, on the server (see :func:`postgres_walk`). Every
# group reads its terms' ``depth`` best postings by impact, and one more each: the
# group's frontier, the largest bound ``idf x impact x slack`` of a posting left unread
# (0 when the group was read to its end). A video seen in every group is a match with its
# exact score ("whole"); the ``offset + 1``-th best of those is a floor. A video seen in
# some groups only is "partial": it cannot match when a group it lacks was read to its
# end, and otherwise scores at most its known scores plus the frontiers of the groups it
# lacks. The ``checks`` partials with the largest such bound at or above the floor get
# their postings read by one descent of the primary key (video_id, term) each
# (``OFFSET 0`` keeps the planner from turning the LATERAL into a join that reads a
# common term's whole postings) and are scored exactly. A group scores its best
# expansion, the groups are summed rarest first, as in memory. Every row also carries
# the sum of the frontiers and whether partials were left unchecked, from which
# :func:`postgres_walk` tells whether the answer is proved exact (a walk without
# matches returns that one row, with a null video).
_PG_FRONTIERS = text(
    f"WITH {_PG_QUERY_TERMS} "
    "SELECT q.grp, max(q.idf * p.impact) AS bound FROM q CROSS JOIN LATERAL ("
    "SELECT s.impact FROM search_postings AS s WHERE s.term = q.term "
    "ORDER BY s.impact DESC, s.video_id OFFSET q.depth LIMIT 1) AS p GROUP BY q.grp"
)
_PG_WALK = text(
    f"WITH {_PG_QUERY_TERMS}, "
    "read AS (SELECT q.grp, p.video_id, max(p.score) AS score FROM q CROSS JOIN LATERAL ("
    f"SELECT s.video_id, {_PG_BM25} AS score FROM search_postings AS s "
    "WHERE s.term = q.term ORDER BY s.impact DESC, s.video_id LIMIT q.depth) AS p "
    "GROUP BY q.grp, p.video_id), "
    "videos AS (SELECT video_id, count(*) AS groups, sum(score) AS known, "
    "sum((CAST(:frontiers AS float8[]))[grp + 1]) AS known_frontier, "
    "count(*) FILTER (WHERE (CAST(:frontiers AS float8[]))[grp + 1] = 0.0) AS ended "
    "FROM read GROUP BY video_id), "
    "whole AS (SELECT video_id, known AS score FROM videos WHERE groups = :group_count), "
    "floor AS (SELECT coalesce((SELECT score FROM whole ORDER BY score DESC "
    "LIMIT 1 OFFSET :offset), 0.0) AS score), "
    "partial AS (SELECT v.video_id, v.known + CAST(:frontier AS float8) - v.known_frontier "
    "AS bound FROM videos AS v, floor AS f "
    "WHERE v.groups < :group_count AND v.ended = :ended "
    "AND v.known + CAST(:frontier AS float8) - v.known_frontier >= f.score "
    "ORDER BY bound DESC, v.video_id LIMIT :checks + 1), "
    f"scored AS (SELECT c.video_id, q.grp, max({_PG_BM25}) AS score "
    "FROM (SELECT video_id FROM partial ORDER BY bound DESC, video_id LIMIT :checks) AS c "
    "CROSS JOIN LATERAL (SELECT p.term, p.tf, p.length FROM search_postings AS p "
    "WHERE p.video_id = c.video_id OFFSET 0) AS s JOIN q ON q.term = s.term "
    "GROUP BY c.video_id, q.grp), "
    "found AS (SELECT video_id, score FROM whole UNION ALL "
    "SELECT video_id, sum(score ORDER BY grp) FROM scored GROUP BY video_id "
    "HAVING count(*) = :group_count) "
    "SELECT (SELECT count(*) FROM partial) > :checks AS unchecked, r.video_id, r.score "
    "FROM (SELECT 1) AS one LEFT JOIN LATERAL (SELECT video_id, score "
    "FROM found ORDER BY score DESC, video_id LIMIT :limit) AS r ON true"
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
@dataclass(frozen=True)
class Walk:
    """The answer of a several-group search, and whether it is proved exact."""

    hits: Hits
    exact: bool
    """Whether ``hits`` is the exact top ``limit`` of every match: no video left unread
    could reach it (the frontiers sum below the ``limit``-th score, or every group
    was read to its end) and every partial that could was checked."""


def _proved(hits: Hits, frontier: float, unchecked: bool, limit: int) -> bool:
    if unchecked:
        return False
    if frontier == 0.0:
        return True  # some group was read to its end and every candidate was scored
    return len(hits) >= limit and frontier < hits[limit - 1][1]


def postgres_walk(
    connection: Connection, scoring: Scoring, depths: list[int], checks: int, limit: int
) -> Walk:
    """Top ``limit`` of a query of several groups on PostgreSQL, in one statement
    (``_PG_WALK``): each term's best ``depths`` postings (aligned with the groups' terms
    in order), the matches among them scored exactly, at most ``checks`` partly seen
    videos looked up."""
    groups = scoring.groups
    params: dict[str, object] = {
        "terms": [term for group in groups for term in group],
        "groups": [number for number, group in enumerate(groups) for _ in group],
        "idfs": [scoring.idfs[term] for group in groups for term in group],
        "depths": depths,
    }
    frontiers = [0.0] * len(groups)
    for number, bound in connection.execute(_PG_FRONTIERS, params):
        frontiers[number] = float(bound) * scoring.slack
    total = 0.0
    for bound in frontiers:
        total += bound
    rows = connection.execute(
        _PG_WALK,
        {
            **params,
            "frontiers": frontiers,
            "frontier": total,
            "ended": sum(bound == 0.0 for bound in frontiers),
            "k1": scoring.k1,
            "b": scoring.b,
            "mean": scoring.mean_length,
            "checks": checks,
            "group_count": len(groups),
            "offset": limit - 1,
            "limit": limit,
        },
    ).all()
    hits = [(int(row.video_id), float(row.score)) for row in rows if row.video_id is not None]
    return Walk(hits, _proved(hits, total, bool(rows[0].unchecked), limit))


class SqlitePostings:
    """The postings on SQLite, read through the driver's connection: statements
    in-process cost microseconds, so a term's range is one statement of its own, and
    scores are computed in Python."""

    def __init__(self, connection: Connection) -> None:
        driver = connection.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        self._driver = driver

    def top(
        self, terms: list[str], depths: list[int], floors: list[float]
    ) -> list[list[tuple[int, float, float, float]]]:
        execute = self._driver.execute
        return [
            execute(_SQLITE_TOP, (term, floor, depth)).fetchall()
            for term, depth, floor in zip(terms, depths, floors, strict=True)
        ]

    def exact(self, videos: list[int], scoring: Scoring) -> dict[int, float]:
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
    reader: SqlitePostings, scoring: Scoring, depths: list[int], checks: int, limit: int
) -> Walk:
    """Top ``limit`` of a query of several groups, every one of which must match: the walk
    of ``_PG_WALK`` on SQLite, the postings read by :class:`SqlitePostings` and scored in
    Python, in the same order of operations.

    Each term's best ``depths`` postings (aligned with the groups' terms in order) are
    read, and one more: a group's frontier is the largest bound of a posting it left
    unread (0 when read to its end). A video seen in every group is scored exactly; one
    seen in some can only match when every group it lacks has postings left, and then
    scores at most its known scores plus those groups' frontiers. The ``checks`` of
    them with the largest such bound reaching the ``limit``-th exact score are looked
    up (one descent each) and scored. The answer is exact when nothing was left
    unchecked and no unread video can reach it (see :class:`Walk`).
    """
    groups = scoring.groups
    terms = [term for group in groups for term in group]
    numbers = [number for number, group in enumerate(groups) for _ in group]
    postings = reader.top(terms, [depth + 1 for depth in depths], [0.0] * len(terms))
    best: dict[int, dict[int, float]] = {}
    largest = [-1.0] * len(groups)
    for term, number, depth, rows in zip(terms, numbers, depths, postings, strict=True):
        idf = scoring.idfs[term]
        for video_id, tf, length, _ in rows[:depth]:
            score = scoring.bm25(idf, tf, length)
            known = best.setdefault(video_id, {})
            if score > known.get(number, -1.0):
                known[number] = score
        if len(rows) > depth:
            largest[number] = max(largest[number], idf * rows[depth][3])
    frontiers = [bound * scoring.slack if bound >= 0.0 else 0.0 for bound in largest]
    total = 0.0
    for bound in frontiers:
        total += bound
    ended = sum(bound == 0.0 for bound in frontiers)
    whole: dict[int, float] = {}
    partial: list[tuple[float, int]] = []
    for video_id, known in best.items():
        known_score = known_frontier = 0.0
        known_ended = 0
        for number in sorted(known):  # rarest group first, as in memory
            known_score += known[number]
            known_frontier += frontiers[number]
            known_ended += frontiers[number] == 0.0
        if len(known) == len(groups):
            whole[video_id] = known_score
        elif known_ended == ended:
            partial.append((known_score + total - known_frontier, video_id))
    ranked = sorted(whole.values(), reverse=True)
    floor = ranked[limit - 1] if len(ranked) >= limit else 0.0
    hopeful = sorted(
        ((bound, video) for bound, video in partial if bound >= floor),
        key=lambda item: (-item[0], item[1]),
    )
    found = dict(whole)
    found.update(reader.exact([video for _, video in hopeful[:checks]], scoring))
    hits = _ranked(found, limit)
    return Walk(hits, _proved(hits, total, len(hopeful) > checks, limit))
