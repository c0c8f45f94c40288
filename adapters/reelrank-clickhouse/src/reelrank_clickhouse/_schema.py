"""The ClickHouse schema: the event tables, the aggregate table and the one materialized
view that keeps it current, the corrections table, and the engagement log.

Every statement is ``CREATE ... IF NOT EXISTS``, so :func:`create_schema` may run on
every start. The layout (default names; see *ClickHouse adapter* in the docs)::

    events              ReplacingMergeTree by month, ORDER BY (occurred_at, occurred_us, event_id)
      event_aggregates_mv -> event_aggregates   AggregatingMergeTree, not partitioned,
                                                ORDER BY (tag, a, b, c, event_id),
                                                index_granularity from the config
    event_corrections   ReplacingMergeTree(copies), ORDER BY event_id
    engagement_log      ReplacingMergeTree by month, ORDER BY (occurred_at, occurred_us, event_id)

``event_aggregates`` holds every aggregate *and* the per-id copy counts, one kind of
row per ``tag`` (see :class:`Tag`). One view feeding one unpartitioned table writes one
part per inserted block, and a part appears whole or not at all: so an insert
interrupted by a crash either counted an event everywhere and remembered its id, or did
neither, and its retry is then counted exactly once.

In sharded mode every table above lives on each shard under its name plus the local
suffix, and a ``Distributed`` table of the plain name, sharded by
``cityHash64(user_id)``, spans them: a redelivered event reaches the shard that holds
the original.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from reelrank import ConfigError

from ._client import ONE_BLOCK, DriverClients
from ._config import ClickHouseConfig, ClickHouseTables, connect
from ._errors import store_errors

__all__ = [
    "ARRIVAL_BUCKET_SHIFT",
    "FINE_BUCKET_SHIFT",
    "KIND_CODES",
    "SCHEMA_VERSION",
    "SchemaVersionError",
    "Tag",
    "create_schema",
    "drop_schema",
    "migrate_schema",
]


class Tag(IntEnum):
    """What a row of the aggregate table is, and what its key columns ``a, b, c`` hold."""

    EVENT_ID = 0
    """``a`` hour of ``occurred_at`` (hours since 1970), ``b`` ``cityHash64(event_id)``,
    ``event_id``: the id's copy count and the smallest arrival number of its copies."""
    VIDEO_COUNT = 1
    """``a`` video, ``c`` kind code: count and completion sum of watches, shares, comments."""
    VIDEO_LIKE = 2
    """``a`` video, ``b`` user: the like state (the last like or unlike to arrive)."""
    CREDIT = 3
    """``a`` user, ``b`` creator, ``c`` kind code: count and completion sum."""
    USER_LIKE = 4
    """``a`` user, ``b`` creator, ``c`` video: the like state again, keyed for a user."""
    ARRIVED_COUNT = 6
    """``a`` arrival bucket (:data:`ARRIVAL_BUCKET_SHIFT`), ``b`` video, ``c`` kind code:
    count and completion sum of the events of every kind that arrived in the bucket
    (written by schema version 2 only; version 3 reads the fine rows)."""
    ARRIVED = 7
    """``a`` arrival bucket: how many events arrived in the bucket (schema version 2
    and on: the check that nothing arrived late before a roll-up's watermark reads one
    row per 69 s of history)."""
    FINE_ARRIVED_COUNT = 8
    """:attr:`ARRIVED_COUNT` by fine arrival bucket (:data:`FINE_BUCKET_SHIFT`; schema
    version 3)."""
    FINE_ARRIVED = 9
    """:attr:`ARRIVED` by fine arrival bucket (schema version 3): read for the buckets
    since a roll-up's watermark only."""
    FINE_LIKE = 10
    """``a`` fine arrival bucket, ``b`` video, ``c`` user: the like state of the pair's
    likes and unlikes that arrived in the bucket (schema version 4). A store reads the
    pairs that changed since a roll-up's watermark from these rows, and holds the pairs
    liked before it (see :class:`~reelrank_clickhouse.ClickHouseEventStore`). Rows
    :func:`migrate_schema` wrote for the pairs stored before version 4 are in bucket
    0."""


SCHEMA_VERSION = 4
"""The version of the tables :func:`create_schema` makes. Version 2 added the arrival
rows and the statistics roll-up table; version 3 counts arrivals by fine buckets
(:attr:`Tag.FINE_ARRIVED_COUNT`, :attr:`Tag.FINE_ARRIVED`) instead of coarse ones by
video, and both ways in total; version 4 adds the like state of each pair by fine
arrival bucket (:attr:`Tag.FINE_LIKE`).
:func:`migrate_schema` upgrades versions 1, 2 and 3 in place."""

ARRIVAL_BUCKET_SHIFT = 36
"""A roll-up's watermark is an arrival bucket: an arrival number ``seq`` (nanoseconds of
the writer's clock) shifted right by this many bits, buckets of 2**36 ns, about 68.7 s."""

FINE_BUCKET_SHIFT = 30
"""The arrival rows count events by fine arrival bucket: ``seq`` shifted right by this
many bits, buckets of 2**30 ns, about 1.07 s. A roll-up's watermark ``w`` is fine bucket
``w << (ARRIVAL_BUCKET_SHIFT - FINE_BUCKET_SHIFT)``: the boundaries align."""

FINE_PER_COARSE_BITS = ARRIVAL_BUCKET_SHIFT - FINE_BUCKET_SHIFT


KIND_CODES = {"watch": 1, "like": 2, "unlike": 3, "share": 4, "comment": 5}
"""The ``Enum8`` code of each engagement kind, as the aggregate table's ``c`` holds it."""

_KIND = "Enum8(" + ", ".join(f"'{kind}' = {code}" for kind, code in KIND_CODES.items()) + ")"

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

# Each event becomes three rows of the aggregate table: its id, and its two keys (by
# video, by user) for its kind. ``event_id`` is kept on the id row only, under the hour
# of ``occurred_at`` (a redelivery has the same) and the id's hash: a duplicate check
# reads the ids of the batch's hours only and compares numbers before strings, and old
# hours can be deleted. Hours rather than days because a check reads every id of its
# buckets: with a day of events in one bucket its cost grew with the day's traffic.
_HOUR = "toUInt64(intDiv(toUInt32(occurred_at), 3600))"
# Every event also counts under its arrival bucket, by video and kind and in the
# bucket's total, so a read can add what arrived after a roll-up (see
# ClickHouseEventStore.fold_stats) and check that nothing arrived late before it. Fine
# buckets (version 3) let a store hold what arrived since the roll-up up to a few
# seconds ago and read only the newest buckets again. The coarse total stays: the
# late-arrival check reads every total before the watermark, one row per 69 s of
# history rather than per second (a month of fine totals made it 60 ms slower). The
# totals of an insert collapse into one row per bucket, so each adds a row per block.
_BUCKET = f"bitShiftRight(seq, {FINE_BUCKET_SHIFT})"
_COARSE_BUCKET = f"bitShiftRight(seq, {ARRIVAL_BUCKET_SHIFT})"
_ARRIVAL_ROWS = f"""(toUInt8({Tag.FINE_ARRIVED_COUNT}), {_BUCKET}, video_id,
      toUInt64(toUInt8(kind))),
     (toUInt8({Tag.FINE_ARRIVED}), {_BUCKET}, toUInt64(0), toUInt64(0)),
     (toUInt8({Tag.ARRIVED}), {_COARSE_BUCKET}, toUInt64(0), toUInt64(0))"""
_AGGREGATE_ROWS = f"""if(kind IN ('like', 'unlike'),
    [(toUInt8({Tag.EVENT_ID}), {_HOUR}, toUInt64(0), toUInt64(0)),
     (toUInt8({Tag.VIDEO_LIKE}), video_id, user_id, toUInt64(0)),
     (toUInt8({Tag.USER_LIKE}), user_id, creator_id, video_id),
     (toUInt8({Tag.FINE_LIKE}), {_BUCKET}, video_id, user_id),
     {_ARRIVAL_ROWS}],
    [(toUInt8({Tag.EVENT_ID}), {_HOUR}, toUInt64(0), toUInt64(0)),
     (toUInt8({Tag.VIDEO_COUNT}), video_id, toUInt64(0), toUInt64(toUInt8(kind))),
     (toUInt8({Tag.CREDIT}), user_id, creator_id, toUInt64(toUInt8(kind))),
     {_ARRIVAL_ROWS}])"""
# What tells the views of versions 4, 3 and 2 in their stored definitions (version 1's
# has none), newest first: each view has the marks of the versions before it too.
_VERSION_MARKS = (
    (4, f"toUInt8({Tag.FINE_LIKE})"),
    (3, f"toUInt8({Tag.FINE_ARRIVED})"),
    (2, f"toUInt8({Tag.ARRIVED})"),
)


class SchemaVersionError(ConfigError):
    """The tables are of another schema version than this release's
    (:data:`SCHEMA_VERSION`); :func:`migrate_schema` upgrades them."""

    def __init__(self, found: int, where: str) -> None:
        super().__init__(
            "schema",
            found,
            f"{where} holds schema version {found}, this release needs {SCHEMA_VERSION}: "
            "run migrate_schema (with every writer stopped)",
        )
        self.found = found


@dataclass(frozen=True)
class _Layout:
    """Table names and engines of one schema: one server, or one shard of a cluster."""

    tables: ClickHouseTables
    suffix: str  # "" on one server; the local suffix on a shard
    replicated: bool
    database: str
    aggregates_index_granularity: int

    def local(self, name: str) -> str:
        return name + self.suffix

    def engine(self, family: str, name: str, *arguments: str) -> str:
        if not self.replicated:
            return f"{family}({', '.join(arguments)})"
        path = f"'/clickhouse/tables/{{shard}}/{self.database}/{self.local(name)}'"
        replica = "'{replica}'"
        return f"Replicated{family}({', '.join((path, replica, *arguments))})"

    def statements(self) -> list[str]:
        t = self.tables
        events, aggregates = self.local(t.events), self.local(t.aggregates)
        corrections, log = self.local(t.corrections), self.local(t.engagement_log)
        rollup = self.local(t.stats_rollup)
        return [
            # A redelivered event has the same occurred_at and event_id as the original,
            # so the ReplacingMergeTree key collapses the raw copies on merge; by month so
            # an operator can drop old months whole.
            f"""CREATE TABLE IF NOT EXISTS {events} ({_EVENT_COLUMNS_DDL},
    creator_id UInt64
) ENGINE = {self.engine("ReplacingMergeTree", t.events)}
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, occurred_us, event_id)""",
            f"""CREATE TABLE IF NOT EXISTS {aggregates} (
    tag UInt8,
    a UInt64,
    b UInt64,
    c UInt64,
    event_id String,
    events AggregateFunction(count),
    completion_sum AggregateFunction(sum, Float64),
    liked AggregateFunction(argMax, UInt8, UInt64),
    first_seq AggregateFunction(min, UInt64)
) ENGINE = {self.engine("AggregatingMergeTree", t.aggregates)}
ORDER BY (tag, a, b, c, event_id)
SETTINGS index_granularity = {self.aggregates_index_granularity}""",
            self.aggregates_view(),
            # Writers that saw the same copies write the same row; a writer that saw
            # more copies writes a higher version. Reads take the highest per id.
            f"""CREATE TABLE IF NOT EXISTS {corrections} (
    event_id String,
    kind {_KIND},
    user_id UInt64,
    video_id UInt64,
    creator_id UInt64,
    completion Float64,
    copies UInt64
) ENGINE = {self.engine("ReplacingMergeTree", t.corrections, "copies")}
ORDER BY event_id""",
            # One row per video and roll-up (``fold``: the arrival bucket it folded up
            # to), and per roll-up a marker row of video 0 (its arrival count, and its
            # number of video rows once complete). A newer roll-up replaces an older one
            # row by row as parts merge; reads name the roll-up they use.
            f"""CREATE TABLE IF NOT EXISTS {rollup} (
    fold UInt64,
    video_id UInt64,
    views Int64,
    completion_sum Float64,
    likes Int64,
    shares Int64,
    comments Int64,
    arrivals UInt64,
    videos UInt64
) ENGINE = {self.engine("ReplacingMergeTree", t.stats_rollup, "fold")}
ORDER BY video_id""",
            f"""CREATE TABLE IF NOT EXISTS {log} ({_EVENT_COLUMNS_DDL}
) ENGINE = {self.engine("ReplacingMergeTree", t.engagement_log)}
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, occurred_us, event_id)""",
        ]

    def aggregates_view(self) -> str:
        """The materialized view feeding the aggregate table (created after it)."""
        events, aggregates = self.local(self.tables.events), self.local(self.tables.aggregates)
        return f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {aggregates}_mv TO {aggregates} AS
SELECT key.1 AS tag, key.2 AS a, if(tag = {Tag.EVENT_ID}, cityHash64(event_id), key.3) AS b,
       key.4 AS c,
       if(key.1 = {Tag.EVENT_ID}, event_id, '') AS event_id,
       countState() AS events,
       sumState(ifNull(completion, 0.)) AS completion_sum,
       argMaxState(toUInt8(kind = 'like'), seq) AS liked,
       minState(seq) AS first_seq
FROM {events}
ARRAY JOIN {_AGGREGATE_ROWS} AS key
GROUP BY tag, a, b, c, event_id"""

    def arrival_backfill(self, found: int) -> str:
        """The arrival rows version ``found`` lacks, for what is stored so far, in one
        insert of one block. From version 1: the watches, shares and comments, as fine
        rows and a coarse total of bucket 0 (before any roll-up; likes need none, a
        roll-up reads like states from their own rows). From version 2: each coarse row
        by video and kind, and each coarse total, as a fine row of the first fine bucket
        of its coarse one, ``b << FINE_PER_COARSE_BITS``, so a roll-up's watermark
        splits them as before (its coarse totals stay as they are)."""
        aggregates = self.local(self.tables.aggregates)
        # Columns renamed in the subquery: on 18.16 an aggregate of a column named like
        # the insert's target column is taken for that column.
        if found == 1:
            counted = f"""SELECT toUInt64(0) AS bucket, a AS video, c AS kind, events AS n,
           completion_sum AS s
    FROM {aggregates} WHERE tag = {Tag.VIDEO_COUNT}"""
        else:
            counted = f"""SELECT bitShiftLeft(a, {FINE_PER_COARSE_BITS}) AS bucket, b AS video,
           c AS kind, events AS n, completion_sum AS s
    FROM {aggregates} WHERE tag = {Tag.ARRIVED_COUNT}"""
        totals = [Tag.FINE_ARRIVED, Tag.ARRIVED] if found == 1 else [Tag.FINE_ARRIVED]
        return f"""INSERT INTO {aggregates} (tag, a, b, c, event_id, events, completion_sum)
SELECT toUInt8({Tag.FINE_ARRIVED_COUNT}), bucket, video, kind, '',
       countMergeState(n), sumMergeState(s)
FROM ({counted}) GROUP BY bucket, video, kind""" + "".join(
            f"""
UNION ALL
SELECT toUInt8({tag}), bucket, toUInt64(0), toUInt64(0), '',
       countMergeState(n), sumMergeState(s)
FROM ({counted}) GROUP BY bucket"""
            for tag in totals
        )

    def like_backfill(self) -> str:
        """The like-state rows by fine bucket (:attr:`Tag.FINE_LIKE`) that versions 1 to
        3 lack, for what is stored so far, in one insert of one block: one row per
        (video, user) pair with a like or unlike, in bucket 0 (before every roll-up's
        watermark), with the pair's merged state, which keeps the arrival number of its
        last like or unlike."""
        aggregates = self.local(self.tables.aggregates)
        # Columns renamed in the subquery, as in arrival_backfill.
        return f"""INSERT INTO {aggregates} (tag, a, b, c, event_id, liked)
SELECT toUInt8({Tag.FINE_LIKE}), toUInt64(0), video, user_id_, '', argMaxMergeState(state)
FROM (SELECT a AS video, b AS user_id_, liked AS state
      FROM {aggregates} WHERE tag = {Tag.VIDEO_LIKE})
GROUP BY video, user_id_"""

    def drop_order(self) -> list[str]:
        t = self.tables
        views = [f"{self.local(t.aggregates)}_mv", *self.former_log_ids()[:1]]
        return views + [self.local(name) for name in t.model_dump().values()]

    def former_log_ids(self) -> list[str]:
        """The view and the table that kept the engagement log's ids before the log's
        duplicate check read the log itself, in the order to drop them: every insert
        into the log still wrote the view's table, which nothing reads any more."""
        log_ids = self.local(self.tables.engagement_log_ids)
        return [f"{log_ids}_mv", log_ids]


def _distributed(config: ClickHouseConfig) -> list[str]:
    """A ``Distributed`` table over each local table, of the table's plain name.

    Tables written through it are sharded by ``cityHash64(user_id)``; the views' targets
    have no ``user_id`` and are only read through theirs (their rows are made on the
    shard that received the event).
    """
    assert config.cluster is not None
    tables = config.tables
    statements = []
    for name in tables.model_dump().values():
        if name == tables.engagement_log_ids:
            continue  # no longer created (see _Layout.former_log_ids)
        local = name + config.local_suffix
        arguments = [config.cluster, config.database, local]
        if name == tables.stats_rollup:
            arguments.append("video_id")
        elif name != tables.aggregates:
            arguments.append("cityHash64(user_id)")
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {name} AS {local} "
            f"ENGINE = Distributed({', '.join(arguments)})"
        )
    return statements


@contextmanager
def _servers(engine: Engine, config: ClickHouseConfig | None) -> Iterator[list[tuple[int, Engine]]]:
    """The engines to create the schema on, with their shard numbers: ``engine`` alone,
    or one per cluster server, by shard and replica."""
    if config is None or config.cluster is None:
        yield [(1, engine)]
        return
    with store_errors("events", "list cluster servers"), engine.connect() as connection:
        addresses = connection.execute(
            text(
                "SELECT DISTINCT shard_num, replica_num, host_address, port FROM system.clusters "
                "WHERE cluster = :cluster ORDER BY shard_num, replica_num"
            ),
            {"cluster": config.cluster},
        ).fetchall()
    if not addresses:
        raise ConfigError("cluster", config.cluster, "no such cluster in system.clusters")
    engines = [
        (
            int(shard),
            connect(config.model_copy(update={"host": host, "port": int(port), "pool_size": 1})),
        )
        for shard, _, host, port in addresses
    ]
    try:
        yield engines
    finally:
        for _, each in engines:
            each.dispose()


def _found_version(connection: Connection, layout: _Layout) -> int | None:
    """The schema version of the aggregate view in the connection's database, or
    ``None`` when there is none yet."""
    found = connection.execute(
        text(
            "SELECT create_table_query FROM system.tables "
            "WHERE database = currentDatabase() AND name = :view"
        ),
        {"view": f"{layout.local(layout.tables.aggregates)}_mv"},
    ).fetchall()
    if not found:
        return None
    definition = str(found[0][0])
    return next((version for version, mark in _VERSION_MARKS if mark in definition), 1)


def _layout(config: ClickHouseConfig | None) -> _Layout:
    if config is None:
        config = ClickHouseConfig()
    sharded = config.cluster is not None
    return _Layout(
        config.tables,
        config.local_suffix if sharded else "",
        config.replicated,
        config.database,
        config.aggregates_index_granularity,
    )


def create_schema(engine: Engine, config: ClickHouseConfig | None = None) -> None:
    """Create every table and materialized view, if missing.

    On one server (``config`` ``None`` or without a cluster) the schema goes into the
    engine's database. In sharded mode (:attr:`ClickHouseConfig.cluster`) the adapter
    reads the cluster's servers from ``system.clusters`` and connects to each: it
    creates the per-shard tables and view there, then the ``Distributed`` tables, so
    any server can take the stores' queries. ``ON CLUSTER`` DDL is not used, as it
    needs ZooKeeper. Idempotent: safe to run on every start. Views are created after
    their target tables and before any insert, so no event misses an aggregate. A new
    aggregate table gets :attr:`ClickHouseConfig.aggregates_index_granularity`; tables
    that exist are left as they are, whatever their granularity.
    Raises :class:`~reelrank.StoreError` when a server refuses a statement and
    :class:`~reelrank.ConfigError` when the cluster is unknown, and
    :class:`SchemaVersionError` (writing nothing on that server) when the tables are of
    an earlier schema version: run :func:`migrate_schema` first.
    """
    layout = _layout(config)
    with _servers(engine, config) as servers:
        for _, server in servers:
            statements = layout.statements()
            if config is not None and config.cluster is not None:
                statements += _distributed(config)
            with store_errors("events", "create schema"), server.connect() as connection:
                found = _found_version(connection, layout)
                if found is not None and found != SCHEMA_VERSION:
                    raise SchemaVersionError(found, f"{server.url.host}:{server.url.port}")
                for statement in statements:
                    connection.execute(text(statement))


def drop_schema(engine: Engine, config: ClickHouseConfig | None = None) -> None:
    """Drop every table and view :func:`create_schema` made (views first), on every
    server of the cluster in sharded mode. Data is lost."""
    layout = _layout(config)
    with _servers(engine, config) as servers:
        for _, server in servers:
            names = layout.drop_order()
            if config is not None and config.cluster is not None:
                names = list(config.tables.model_dump().values()) + names
            with store_errors("events", "drop schema"), server.connect() as connection:
                for name in names:
                    connection.execute(text(f"DROP TABLE IF EXISTS {name}"))


def migrate_schema(engine: Engine, config: ClickHouseConfig | None = None) -> bool:
    """Upgrade tables of schema version 1, 2 or 3 to :data:`SCHEMA_VERSION`, on every
    server of the cluster in sharded mode; returns whether anything was upgraded.

    **Stop every writer first**: an event inserted while the view is replaced is
    stored without its aggregates. On each server whose aggregate view is of an older
    version it drops the view and writes the rows the older version lacks for what is
    stored so far (each one ``INSERT ... SELECT`` of one block, once per shard: on the
    first replica, whose part the others fetch). From versions 1 and 2, the fine
    arrival rows: from version 1, the watches, shares and comments as rows of bucket 0,
    before any roll-up; from version 2, each coarse arrival row as a row of the first
    fine bucket of its coarse one, so the roll-ups already written keep their
    watermarks and stay exact. From versions 1, 2 and 3, the like state of every
    (video, user) pair as a row of bucket 0, with its last like or unlike: before
    every roll-up's watermark, so a roll-up written before the migration keeps holding.
    Then it creates the current view and the roll-up table. The version-2 arrival rows
    are left in place, unread. On every server, whatever the version, it also drops
    the former table of the engagement log's ids and its view
    (:attr:`ClickHouseTables.engagement_log_ids`): the log's duplicate check reads the
    log itself, and that view only made every insert into the log write a second
    table. Safe to run again after a failure: each backfill is skipped where its rows
    exist. Tables of the current version, or none, are left alone.
    """
    layout = _layout(config)
    upgraded = False
    with _servers(engine, config) as servers:
        backfilled: set[int] = set()
        for shard, server in servers:
            with store_errors("events", "migrate schema"), server.connect() as connection:
                upgraded = _drop_former_log_ids(connection, layout, config) or upgraded
                found = _found_version(connection, layout)
                aggregates = layout.local(layout.tables.aggregates)
                if found == SCHEMA_VERSION or (
                    found is None and not _exists(connection, aggregates)
                ):
                    continue
                if found is not None:
                    connection.execute(text(f"DROP TABLE IF EXISTS {aggregates}_mv"))
                if layout.replicated:
                    connection.execute(text(f"SYSTEM SYNC REPLICA {aggregates}"))
                has_fine_rows = connection.execute(
                    text(f"SELECT count() FROM {aggregates} WHERE tag = {Tag.FINE_ARRIVED}")
                ).scalar()
                if shard not in backfilled and not has_fine_rows:
                    # A view dropped by an interrupted run: version 2's arrival rows
                    # tell that version from version 1.
                    if found is None:
                        found = 2 if _has_coarse_rows(connection, aggregates) else 1
                    client = DriverClients(server).writer()
                    try:
                        client.execute(layout.arrival_backfill(found), settings=ONE_BLOCK)
                    finally:
                        client.disconnect()
                has_like_rows = connection.execute(
                    text(f"SELECT count() FROM {aggregates} WHERE tag = {Tag.FINE_LIKE}")
                ).scalar()
                if shard not in backfilled and not has_like_rows:
                    client = DriverClients(server).writer()
                    try:
                        client.execute(layout.like_backfill(), settings=ONE_BLOCK)
                    finally:
                        client.disconnect()
                backfilled.add(shard)
                connection.execute(text(layout.aggregates_view()))
                upgraded = True
    create_schema(engine, config)  # the roll-up table, and the Distributed one over it
    return upgraded


def _drop_former_log_ids(
    connection: Connection, layout: _Layout, config: ClickHouseConfig | None
) -> bool:
    """Drop the former table of the engagement log's ids and its view (and, in sharded
    mode, the ``Distributed`` table over it) where they exist; whether any did."""
    names = layout.former_log_ids()
    if config is not None and config.cluster is not None:
        names.append(layout.tables.engagement_log_ids)
    present = [name for name in names if _exists(connection, name)]
    for name in present:
        connection.execute(text(f"DROP TABLE IF EXISTS {name}"))
    return bool(present)


def _exists(connection: Connection, table: str) -> bool:
    return bool(
        connection.execute(
            text(
                "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = :t"
            ),
            {"t": table},
        ).scalar()
    )


def _has_coarse_rows(connection: Connection, aggregates: str) -> bool:
    return bool(
        connection.execute(
            text(f"SELECT count() FROM {aggregates} WHERE tag = {Tag.ARRIVED}")
        ).scalar()
    )
