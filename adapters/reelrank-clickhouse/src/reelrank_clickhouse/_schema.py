"""The ClickHouse schema: the event tables, the aggregate tables and the materialized
views that keep the aggregates current.

Every statement is ``CREATE ... IF NOT EXISTS``, so :func:`create_schema` may run on
every start. The layout (see *ClickHouse adapter* in the docs), view -> target table::

    events
      event_ids_mv      -> event_ids       ReplacingMergeTree,   ORDER BY event_id
      video_counts_mv   -> video_counts    AggregatingMergeTree, ORDER BY (video_id, kind)
      video_likes_mv    -> video_likes     AggregatingMergeTree, ORDER BY (video_id, user_id)
      creator_credit_mv -> creator_credit  AggregatingMergeTree,
                                           ORDER BY (user_id, creator_id, kind)
      user_likes_mv     -> user_likes      AggregatingMergeTree,
                                           ORDER BY (user_id, creator_id, video_id)
    engagement_log
      engagement_log_ids_mv -> engagement_log_ids  ReplacingMergeTree, ORDER BY event_id
"""

from __future__ import annotations

from clickhouse_sqlalchemy import types
from sqlalchemy import Column, MetaData, Table, text
from sqlalchemy.engine import Engine

from ._errors import store_errors

__all__ = ["EVENTS", "LOG", "create_schema", "drop_schema"]

_METADATA = MetaData()


def _event_columns() -> list[Column[object]]:
    return [
        Column("event_id", types.String, primary_key=True),
        Column("kind", types.String),
        Column("user_id", types.UInt64),
        Column("video_id", types.UInt64),
        Column("occurred_at", types.DateTime),
        Column("occurred_us", types.UInt32),
        Column("watched_seconds", types.Nullable(types.Float64)),
        Column("completion", types.Nullable(types.Float64)),
        Column("channel", types.Nullable(types.String)),
        Column("variant", types.Nullable(types.String)),
        Column("seq", types.UInt64),
    ]


EVENTS = Table("events", _METADATA, *_event_columns(), Column("creator_id", types.UInt64))
"""Insert-side description of the ``events`` table (the DDL below is authoritative)."""

LOG = Table("engagement_log", _METADATA, *_event_columns())
"""Insert-side description of the ``engagement_log`` table."""

_KIND = "Enum8('watch' = 1, 'like' = 2, 'unlike' = 3, 'share' = 4, 'comment' = 5)"

_EVENT_COLUMNS_DDL = f"""
    event_id String,
    kind {_KIND},
    user_id UInt64,
    video_id UInt64,
    occurred_at DateTime('UTC'),
    occurred_us UInt32,
    watched_seconds Nullable(Float64),
    completion Nullable(Float64),
    channel Nullable(String),
    variant Nullable(String),
    seq UInt64,
    ingested_at DateTime('UTC') DEFAULT now()"""

# A redelivered event has the same occurred_at and event_id as the original, so the
# ReplacingMergeTree sort key collapses such copies on merge; the partition by month
# lets an operator drop old months whole.
_STATEMENTS: tuple[str, ...] = (
    f"""CREATE TABLE IF NOT EXISTS events ({_EVENT_COLUMNS_DDL},
    creator_id UInt64
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, occurred_us, event_id)""",
    """CREATE TABLE IF NOT EXISTS event_ids (
    event_id String,
    occurred_at DateTime('UTC')
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY event_id""",
    """CREATE MATERIALIZED VIEW IF NOT EXISTS event_ids_mv TO event_ids AS
SELECT event_id, occurred_at FROM events""",
    """CREATE TABLE IF NOT EXISTS video_counts (
    video_id UInt64,
    kind Enum8('watch' = 1, 'like' = 2, 'unlike' = 3, 'share' = 4, 'comment' = 5),
    events AggregateFunction(count),
    completion_sum AggregateFunction(sum, Float64)
) ENGINE = AggregatingMergeTree()
ORDER BY (video_id, kind)""",
    """CREATE MATERIALIZED VIEW IF NOT EXISTS video_counts_mv TO video_counts AS
SELECT video_id, kind,
       countState() AS events,
       sumState(ifNull(completion, 0.)) AS completion_sum
FROM events
WHERE kind IN ('watch', 'share', 'comment')
GROUP BY video_id, kind""",
    """CREATE TABLE IF NOT EXISTS video_likes (
    video_id UInt64,
    user_id UInt64,
    liked AggregateFunction(argMax, UInt8, UInt64)
) ENGINE = AggregatingMergeTree()
ORDER BY (video_id, user_id)""",
    """CREATE MATERIALIZED VIEW IF NOT EXISTS video_likes_mv TO video_likes AS
SELECT video_id, user_id, argMaxState(toUInt8(kind = 'like'), seq) AS liked
FROM events
WHERE kind IN ('like', 'unlike')
GROUP BY video_id, user_id""",
    """CREATE TABLE IF NOT EXISTS creator_credit (
    user_id UInt64,
    creator_id UInt64,
    kind Enum8('watch' = 1, 'like' = 2, 'unlike' = 3, 'share' = 4, 'comment' = 5),
    events AggregateFunction(count),
    completion_sum AggregateFunction(sum, Float64)
) ENGINE = AggregatingMergeTree()
ORDER BY (user_id, creator_id, kind)""",
    """CREATE MATERIALIZED VIEW IF NOT EXISTS creator_credit_mv TO creator_credit AS
SELECT user_id, creator_id, kind,
       countState() AS events,
       sumState(ifNull(completion, 0.)) AS completion_sum
FROM events
WHERE kind IN ('watch', 'share', 'comment')
GROUP BY user_id, creator_id, kind""",
    """CREATE TABLE IF NOT EXISTS user_likes (
    user_id UInt64,
    creator_id UInt64,
    video_id UInt64,
    liked AggregateFunction(argMax, UInt8, UInt64)
) ENGINE = AggregatingMergeTree()
ORDER BY (user_id, creator_id, video_id)""",
    """CREATE MATERIALIZED VIEW IF NOT EXISTS user_likes_mv TO user_likes AS
SELECT user_id, creator_id, video_id, argMaxState(toUInt8(kind = 'like'), seq) AS liked
FROM events
WHERE kind IN ('like', 'unlike')
GROUP BY user_id, creator_id, video_id""",
    f"""CREATE TABLE IF NOT EXISTS engagement_log ({_EVENT_COLUMNS_DDL}
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, occurred_us, event_id)""",
    """CREATE TABLE IF NOT EXISTS engagement_log_ids (
    event_id String,
    occurred_at DateTime('UTC')
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY event_id""",
    """CREATE MATERIALIZED VIEW IF NOT EXISTS engagement_log_ids_mv TO engagement_log_ids AS
SELECT event_id, occurred_at FROM engagement_log""",
)

_OBJECTS_IN_DROP_ORDER: tuple[str, ...] = (
    "event_ids_mv",
    "video_counts_mv",
    "video_likes_mv",
    "creator_credit_mv",
    "user_likes_mv",
    "engagement_log_ids_mv",
    "events",
    "event_ids",
    "video_counts",
    "video_likes",
    "creator_credit",
    "user_likes",
    "engagement_log",
    "engagement_log_ids",
)


def create_schema(engine: Engine) -> None:
    """Create every table and materialized view in the engine's database, if missing.

    Idempotent: safe to run on every start. Views are created after their target
    tables and before any insert, so no event misses an aggregate.
    Raises :class:`~reelrank.StoreError` when the server refuses a statement.
    """
    with store_errors("events", "create schema"), engine.connect() as connection:
        for statement in _STATEMENTS:
            connection.execute(text(statement))


def drop_schema(engine: Engine) -> None:
    """Drop every table and view :func:`create_schema` made (views first). Data is lost."""
    with store_errors("events", "drop schema"), engine.connect() as connection:
        for name in _OBJECTS_IN_DROP_ORDER:
            connection.execute(text(f"DROP TABLE IF EXISTS {name}"))
