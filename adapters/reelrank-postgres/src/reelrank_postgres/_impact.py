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

A query of several groups ranks the matches among its rarest group's best postings: on
PostgreSQL in one statement scored on the server (:func:`postgres_walk`), on SQLite,
where a statement costs microseconds, through :class:`SqlitePostings` in batches scored
in Python that stop once the rest cannot reach the top (:func:`several_groups`). A query
of one group is one statement of its own on PostgreSQL (``_ONE_GROUP`` in ``_search``,
``_ONE_TERM`` for one plain term) and :func:`one_group` on SQLite.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from sqlalchemy import Connection, text

__all__ = [
    "Scoring",
    "SqlitePostings",
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
# The candidates are looked up in video id order: consecutive descents of the primary
# key then share its upper pages and often a leaf (at 1M videos, two common words' walk
# 3.3 to 5.8 ms against 4.6 to 7.0 ms in bound order, medians of 21, load 7.4).
_PG_IN_ID_ORDER = "in_id_order AS (SELECT video_id FROM walk ORDER BY video_id)"
# The walk of a several-group search, on the server. The driver's terms (``depth`` > 0)
# read their ``depth`` best postings; the videos they hold, ranked by their bound
# ``idf x impact`` (a video keeps its best, ties to the lower id), are the candidates, at
# most ``count``. Each candidate's postings are read by one descent of the primary key
# (video_id, term) (``OFFSET 0`` keeps the planner from turning the LATERAL into a join
# that reads a common term's whole postings), joined with the query terms and scored
# exactly, a group scoring its best expansion and the groups summed rarest first, as in
# memory; the videos matching every group are ranked.
_PG_WALK = text(
    f"WITH {_PG_QUERY_TERMS}, "
    "ranked AS (SELECT p.video_id, max(q.idf * p.impact) AS bound "
    "FROM (SELECT * FROM q WHERE depth > 0) AS q "
    "CROSS JOIN LATERAL (SELECT s.video_id, s.impact FROM search_postings AS s "
    "WHERE s.term = q.term ORDER BY s.impact DESC, s.video_id LIMIT q.depth) AS p "
    "GROUP BY p.video_id), "
    "walk AS (SELECT video_id FROM ranked ORDER BY bound DESC, video_id LIMIT :count), "
    f"{_PG_IN_ID_ORDER}, "
    f"best AS (SELECT c.video_id, q.grp, max({_PG_BM25}) AS score FROM in_id_order AS c "
    "CROSS JOIN LATERAL (SELECT p.term, p.tf, p.length FROM search_postings AS p "
    "WHERE p.video_id = c.video_id OFFSET 0) AS s JOIN q ON q.term = s.term "
    "GROUP BY c.video_id, q.grp) "
    "SELECT video_id, sum(score ORDER BY grp) AS score FROM best GROUP BY video_id "
    "HAVING count(*) = :group_count ORDER BY score DESC, video_id LIMIT :limit"
)
# The same walk when every group is one plain term: a driver posting is a video of its
# own and a group's best expansion is its one posting, so neither is grouped; a
# candidate's score sums its postings' scores in group order, as ``best`` does. At 1M
# videos, two common words: 10.7 against 15.8 ms (load 4.9).
_PG_PLAIN_WALK = text(
    f"WITH {_PG_QUERY_TERMS}, "
    "walk AS (SELECT p.video_id FROM (SELECT * FROM q WHERE depth > 0) AS q "
    "CROSS JOIN LATERAL (SELECT s.video_id, s.impact FROM search_postings AS s "
    "WHERE s.term = q.term ORDER BY s.impact DESC, s.video_id LIMIT q.depth) AS p "
    f"ORDER BY q.idf * p.impact DESC, p.video_id LIMIT :count), {_PG_IN_ID_ORDER} "
    f"SELECT c.video_id, sum({_PG_BM25} ORDER BY q.grp) AS score FROM in_id_order AS c "
    "CROSS JOIN LATERAL (SELECT p.term, p.tf, p.length FROM search_postings AS p "
    "WHERE p.video_id = c.video_id OFFSET 0) AS s JOIN q ON q.term = s.term "
    "GROUP BY c.video_id HAVING count(*) = :group_count "
    "ORDER BY score DESC, c.video_id LIMIT :limit"
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
_SQLITE_MAX_IMPACT = (
    "SELECT impact FROM search_postings WHERE term = ? ORDER BY impact DESC LIMIT 1"
)


def postgres_walk(
    connection: Connection, scoring: Scoring, depths: list[int], budget: int, limit: int
) -> Hits:
    """Top ``limit`` of a query of several groups on PostgreSQL: the matches among the
    driver's (the first group's) best postings, at most ``budget`` candidates, scored in
    one statement. Exact when the driver holds no more postings than ``depths``."""
    groups = scoring.groups
    rows = connection.execute(
        _PG_PLAIN_WALK if all(len(group) == 1 for group in groups) else _PG_WALK,
        {
            "terms": [term for group in groups for term in group],
            "groups": [number for number, group in enumerate(groups) for _ in group],
            "idfs": [scoring.idfs[term] for group in groups for term in group],
            "depths": depths + [0] * sum(len(group) for group in groups[1:]),
            "k1": scoring.k1,
            "b": scoring.b,
            "mean": scoring.mean_length,
            "count": budget,
            "group_count": len(groups),
            "limit": limit,
        },
    ).all()
    return [(int(video_id), float(score)) for video_id, score in rows]


class SqlitePostings:
    """The postings on SQLite, read through the driver's connection: statements
    in-process cost microseconds, so a term's range is one statement of its own, and
    scores are computed in Python."""

    def __init__(self, connection: Connection) -> None:
        driver = connection.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        self._driver = driver
        # A several-group search's candidates in bound order, and the bound of the
        # driver postings beyond them: read by the first batch.
        self._candidates: list[tuple[float, int]] | None = None
        self._unread = 0.0

    def top(
        self, terms: list[str], depths: list[int], floors: list[float]
    ) -> list[list[tuple[int, float, float, float]]]:
        execute = self._driver.execute
        return [
            execute(_SQLITE_TOP, (term, floor, depth)).fetchall()
            for term, depth, floor in zip(terms, depths, floors, strict=True)
        ]

    def batch(
        self, scoring: Scoring, depths: list[int], start: int, count: int
    ) -> tuple[dict[int, float], float | None]:
        if self._candidates is None:
            driver = scoring.groups[0]
            bounds: dict[int, float] = {}
            unread = 0.0
            rows = self.top(driver, [depth + 1 for depth in depths], [0.0] * len(driver))
            for term, postings, depth in zip(driver, rows, depths, strict=True):
                idf = scoring.idfs[term]
                for video_id, _, _, impact in postings[:depth]:
                    bound = idf * impact
                    if bound > bounds.get(video_id, -1.0):
                        bounds[video_id] = bound
                if len(postings) > depth:
                    unread = max(unread, idf * postings[depth][3])
            self._candidates = sorted((-bound, video) for video, bound in bounds.items())
            self._unread = unread
        candidates = self._candidates
        scores = self._exact([video for _, video in candidates[start : start + count]], scoring)
        rest = start + count
        if rest < len(candidates):
            return scores, max(-candidates[rest][0], self._unread)
        return scores, self._unread if self._unread > 0.0 else None

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

    def max_impacts(self, terms: list[str]) -> list[float]:
        execute = self._driver.execute
        found = [execute(_SQLITE_MAX_IMPACT, (term,)).fetchone() for term in terms]
        return [float(row[0]) if row else 0.0 for row in found]


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
    reader: SqlitePostings,
    scoring: Scoring,
    depths: list[int],
    budget: int,
    first_batch: int,
    limit: int,
) -> Hits:
    """Top ``limit`` of a query of several groups, every one of which must match.

    Every match holds a posting of the rarest group, the driver, so the driver's best
    postings (``depths`` of each term) are the candidates, best bound
    (``idf x impact``) first, scored exactly in batches (``first_batch``, then twice as
    many each time). With ``theta`` the ``limit``-th best score found, a video not scored
    yet scores at most the largest driver bound left (times the slack) plus every other
    group's largest possible score (from each term's largest impact): once that is below
    ``theta``, no video left can enter the top ``limit`` and the result is exact, as it
    is when every driver posting has been a candidate. Otherwise the walk stops after
    ``budget`` candidates, and the result is the best matches among them.
    """
    scores: dict[int, float] = {}
    others_bound: float | None = None
    done, size = 0, first_batch
    while True:
        count = min(size, budget - done)
        found, left = reader.batch(scoring, depths, done, count)
        scores.update(found)
        done += count
        size *= 2
        if left is None or done >= budget:
            break  # exact when every driver posting was a candidate (``left`` is None)
        if len(scores) >= limit:
            if others_bound is None:
                others_bound = _largest_scores(reader, scoring, scoring.groups[1:])
            theta = sorted(scores.values(), reverse=True)[limit - 1]
            if left * scoring.slack + others_bound < theta:
                break  # nothing left can reach the top: exact
    return _ranked(scores, limit)


def _largest_scores(reader: SqlitePostings, scoring: Scoring, groups: list[list[str]]) -> float:
    """The sum over ``groups`` of the largest score any posting of the group can have."""
    terms = list(dict.fromkeys(term for group in groups for term in group))
    largest = dict(zip(terms, reader.max_impacts(terms), strict=True))
    return sum(
        max(scoring.idfs[term] * largest[term] * scoring.slack for term in group)
        for group in groups
    )
