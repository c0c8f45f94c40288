"""The plan of ``followed_videos`` (and of ``followed_candidates``, the same read joined to
the statistics, and ``followed_columns``, which reads the ranking columns of the same
function) on real PostgreSQL: about ``limit`` rows per followed creator.

The statement the catalog runs is captured and explained (``EXPLAIN (ANALYZE, FORMAT
JSON)``) under statistics that used to flip the plan of the former join (none at all,
stale ones saying the user follows nobody, accurate ones, and a ``follows`` table
crowded by other users). Every time, ``videos`` must be read only through the partial
index of ready videos per creator, backwards, under a ``Limit``, once per followed
creator and at most ``limit`` entries a time, plus, for ``followed_videos``, at most
``limit`` rows by primary key (``followed_candidates`` reads no table row of ``videos``:
the index holds its columns), and at most ``limit`` rows of ``video_stats``; and any sort
must see no more than ``followed creators x limit`` rows, never all their videos.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from pg_support import TRUNCATE_ALL
from reelrank_postgres import SqlCatalog
from sqlalchemy import Engine, event, text

from reelrank.testing import EPOCH

pytestmark = pytest.mark.integration

_CREATORS = 60
_VIDEOS_PER_CREATOR = 150
_FOLLOWED = 30
_LIMIT = 20
_USER = 1


def _nodes(plan: dict[str, Any], parent: dict[str, Any] | None = None) -> Iterator[tuple[Any, Any]]:
    yield plan, parent
    for child in plan.get("Plans", []):
        yield from _nodes(child, plan)


@pytest.fixture
def catalog(postgres_engine: Engine) -> SqlCatalog:
    with postgres_engine.begin() as connection:
        connection.execute(text(TRUNCATE_ALL))
        connection.execute(
            text("INSERT INTO creators VALUES (:id, :handle, :name)"),
            [{"id": c, "handle": f"c{c}", "name": f"C {c}"} for c in range(1, _CREATORS + 1)],
        )
        rows = []
        for creator in range(1, _CREATORS + 1):
            for number in range(_VIDEOS_PER_CREATOR):
                video_id = creator * 1_000 + number
                rows.append(
                    {
                        "id": video_id,
                        "creator": creator,
                        "at": EPOCH + timedelta(seconds=(video_id * 7919) % 100_000),
                        # one video in ten is still processing: the partial index skips it
                        "state": "transcoding" if number % 10 == 3 else "ready",
                    }
                )
        connection.execute(
            text(
                "INSERT INTO videos VALUES (:id, :creator, 30.0, :at, 'title', '', "
                "'[]'::jsonb, NULL, '[]'::jsonb, :state)"
            ),
            rows,
        )
        # Statistics for every video: followed_candidates must read only its rows' own.
        connection.execute(
            text("INSERT INTO video_stats SELECT video_id, video_id % 7, 0.0, 0, 0, 0 FROM videos")
        )
    return SqlCatalog(postgres_engine)


def _follow_everyone(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO follows VALUES (:user, :creator)"),
            [{"user": _USER, "creator": c} for c in range(1, _FOLLOWED + 1)],
        )


def _analyze(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("ANALYZE follows"))
        connection.execute(text("ANALYZE videos"))


def _crowd_follows(engine: Engine) -> None:
    """20,000 other users each following one of the creators, then fresh statistics."""
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO follows SELECT u, 1 + u % :creators "
                "FROM generate_series(1000, 20999) AS u"
            ),
            {"creators": _CREATORS},
        )
    _analyze(engine)


def _crowd_creators(engine: Engine) -> None:
    """2,000 more creators with ten videos each, then fresh statistics: a creator now
    looks like it has about 14 videos, fewer than ``_LIMIT``."""
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO creators SELECT c, 'h' || c, 'n' FROM generate_series(1000, 2999) c")
        )
        connection.execute(
            text(
                "INSERT INTO videos SELECT 10000000 + c * 10 + n, c, 30.0, :at, 't', '', "
                "'[]'::jsonb, NULL, '[]'::jsonb, 'ready' "
                "FROM generate_series(1000, 2999) c, generate_series(0, 9) n"
            ),
            {"at": EPOCH},
        )
    _analyze(engine)


def _followed_ids(catalog: SqlCatalog, method: str) -> list[int]:
    if method == "followed_videos":
        return [video.video_id for video in catalog.followed_videos(_USER, limit=_LIMIT)]
    if method == "followed_columns":
        return list(catalog.followed_columns(_USER, limit=_LIMIT).video_ids.tolist())
    columns = catalog.followed_candidates(_USER, limit=_LIMIT)
    assert columns.stats.views.tolist() == [video % 7 for video in columns.video_ids.tolist()]
    return list(columns.video_ids.tolist())


_AUTO_EXPLAIN = (
    "LOAD 'auto_explain'",
    "SET auto_explain.log_min_duration = 0",
    "SET auto_explain.log_nested_statements = on",
    "SET auto_explain.log_analyze = on",
    "SET auto_explain.log_format = json",
    "SET auto_explain.log_level = notice",
)
_CALLS_IN_ONE_SESSION = 7
"""Calls of the function in one session: PL/pgSQL plans its statement for each of the
first five, then may keep a generic plan, and every one of them must keep the shape."""


def _captured(
    catalog: SqlCatalog, engine: Engine, method: str
) -> tuple[list[int], list[str], str, Any]:
    """The answer of ``method``, the settings it made and the statement (with its
    parameters) it ran."""
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        found = _followed_ids(catalog, method)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    *settings, (statement, parameters) = captured
    return found, [setting for setting, _ in settings], statement, parameters


def _explained(
    catalog: SqlCatalog, engine: Engine, method: str
) -> tuple[list[int], list[dict[str, Any]]]:
    """The answer of ``method`` and the analysed plans of the statement it ran: of the
    statement itself (``followed_videos``), or of the statement inside the function it
    calls (``followed_candidates``), which ``auto_explain`` reports as a notice per call,
    for several calls in one session."""
    found, settings, statement, parameters = _captured(catalog, engine, method)
    with engine.connect() as connection:
        driver = connection.connection.driver_connection
        assert driver is not None
        cursor = driver.cursor()
        if method == "followed_videos":
            # In a transaction, after the settings the catalog made (its SET LOCAL).
            for setting in settings:
                cursor.execute(setting)
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
            (document,) = cursor.fetchone()
            parsed = document if isinstance(document, list) else json.loads(document)
            return found, [parsed[0]["Plan"]]
        # One statement, no transaction block: the function pins its own setting.
        assert not settings, settings
        assert statement.count("reelrank_followed_candidates(") == 1, statement
        notices: list[str] = []
        driver.add_notice_handler(lambda notice: notices.append(notice.message_primary or ""))
        for setting in _AUTO_EXPLAIN:
            cursor.execute(setting)
        for _ in range(_CALLS_IN_ONE_SESSION):
            cursor.execute(statement, parameters)
            assert [row[0] for row in cursor.fetchall()] == found
        # The session's auto_explain settings must not reach another test.
        connection.invalidate()
    logged = [json.loads(notice.split("plan:", 1)[1]) for notice in notices if "plan:" in notice]
    plans = [entry["Plan"] for entry in logged if "LATERAL" in entry["Query Text"]]
    assert len(plans) == _CALLS_IN_ONE_SESSION, notices
    return found, plans


def _expected() -> list[int]:
    """The newest ``_LIMIT`` ready videos of the followed creators, worked out in Python."""
    ready = [
        (EPOCH + timedelta(seconds=(video * 7919) % 100_000), video)
        for creator in range(1, _FOLLOWED + 1)
        for number in range(_VIDEOS_PER_CREATOR)
        if number % 10 != 3
        for video in [creator * 1_000 + number]
    ]
    return [video for _, video in sorted(ready, reverse=True)[:_LIMIT]]


def _check_shapes(plans: list[dict[str, Any]], method: str) -> None:
    for plan in plans:
        _check_shape(plan, method)


def _check_shape(plan: dict[str, Any], method: str) -> None:
    scans = [
        (node, parent) for node, parent in _nodes(plan) if node.get("Relation Name") == "videos"
    ]
    per_creator = [node for node, _ in scans if node.get("Index Name") != "videos_pkey"]
    assert per_creator, plan
    for node, parent in scans:
        if node in per_creator:
            # the creator's newest entries from the partial index, at most limit a creator
            assert node["Node Type"] in ("Index Scan", "Index Only Scan"), plan
            assert node["Index Name"] == "ix_videos_ready_creator_recency_sound", plan
            assert node["Scan Direction"] == "Backward", plan
            assert parent is not None and parent["Node Type"] == "Limit", plan
            assert node["Actual Loops"] == _FOLLOWED, plan
            assert node["Actual Rows"] <= _LIMIT, plan  # rows per loop
        else:
            # the table rows of the kept entries only, and none for the candidates, whose
            # columns the index holds
            assert method == "followed_videos", plan
            assert node["Actual Rows"] * node["Actual Loops"] <= _LIMIT, plan
    stats_scans = [node for node, _ in _nodes(plan) if node.get("Relation Name") == "video_stats"]
    # followed_columns runs the function too, whose statistics join it does not return
    assert len(stats_scans) == (method != "followed_videos"), plan
    for node in stats_scans:
        # the statistics of the kept entries only
        assert node["Actual Rows"] * node["Actual Loops"] <= _LIMIT, plan
    for node, _ in _nodes(plan):
        if node["Node Type"] == "Sort":
            (child,) = node["Plans"]
            sorted_rows = child["Actual Rows"] * child["Actual Loops"]
            assert sorted_rows <= _FOLLOWED * _LIMIT, plan


@pytest.mark.parametrize("method", ["followed_videos", "followed_candidates", "followed_columns"])
def test_followed_videos_reads_limit_rows_per_creator_under_any_statistics(
    catalog: SqlCatalog, postgres_engine: Engine, method: str
) -> None:
    want = _expected()
    # 1. no statistics on the new rows at all
    _follow_everyone(postgres_engine)
    found, plans = _explained(catalog, postgres_engine, method)
    assert found == want
    _check_shapes(plans, method)
    # 2. stale statistics: analysed while the user followed nobody
    with postgres_engine.begin() as connection:
        connection.execute(text("DELETE FROM follows"))
    _analyze(postgres_engine)
    _follow_everyone(postgres_engine)
    found, plans = _explained(catalog, postgres_engine, method)
    assert found == want
    _check_shapes(plans, method)
    # 3. accurate statistics
    _analyze(postgres_engine)
    found, plans = _explained(catalog, postgres_engine, method)
    assert found == want
    _check_shapes(plans, method)
    # 4. a follows table crowded by other users
    _crowd_follows(postgres_engine)
    found, plans = _explained(catalog, postgres_engine, method)
    assert found == want
    _check_shapes(plans, method)
    # 5. statistics saying a creator has fewer videos than the limit (on the 1M catalog,
    # an estimate of 73 for a limit of 200 made the planner fetch each creator's rows by
    # bitmap and sort them; this catalog is too small to tempt it, so this state checks
    # the shape holds, not that it would have flipped)
    _crowd_creators(postgres_engine)
    found, plans = _explained(catalog, postgres_engine, method)
    assert found == want
    _check_shapes(plans, method)


def test_the_followed_candidates_function_pins_its_planner_settings(
    postgres_engine: Engine,
) -> None:
    """The settings the function runs with, whatever the session's: this catalog is too
    small to tempt the planner into a bitmap scan (the 1M-video one was, with a
    visibility map not yet set), so the setting itself is checked."""
    with postgres_engine.connect() as connection:
        settings = connection.execute(
            text("SELECT proconfig FROM pg_proc WHERE proname = 'reelrank_followed_candidates'")
        ).scalar_one()
    assert sorted(settings) == ["enable_bitmapscan=off", "plan_cache_mode=force_custom_plan"]
