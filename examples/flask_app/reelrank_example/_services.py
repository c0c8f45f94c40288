"""Wiring: the stores, the reelrank services built on them, and a synthetic catalog.

:func:`create_app <reelrank_example.create_app>` takes a built :class:`Services`; nothing
in the request path knows where the stores live. :func:`configured_stores` is the one
place that decides, from :class:`Settings`: the SQL database (SQLite by default), and
ClickHouse and Redis when their URLs are set. Every store that must agree across worker
processes lives in one of them; only the LRU level of the feed cache is per process,
over a shared level (Redis, or a table in the SQL database).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import unquote, urlsplit

import numpy as np
import sqlalchemy as sa
from flask import g, has_request_context

from reelrank import (
    Catalog,
    ConfigError,
    Creator,
    CreatorRecommender,
    DependencyGuard,
    EmbeddingIndex,
    EngagementLog,
    EngagementRecorder,
    EventStore,
    Experiment,
    FeedCache,
    FeedRankingService,
    FeedServiceConfig,
    FollowedCandidatesCatalog,
    GroupCommitEngagementLog,
    GroupCommitEventStore,
    GuardedStore,
    InMemoryCatalog,
    InMemoryEngagementLog,
    InMemoryEventStore,
    InMemoryProgressStore,
    InMemorySearchIndex,
    InMemorySeenStore,
    InMemoryTrendingSnapshotStore,
    LRUFeedCache,
    ManifestConfig,
    ModelRegistry,
    ProcessingState,
    ProcessingTracker,
    ProgressStore,
    RankingConfig,
    RecorderConfig,
    Rendition,
    SearchConfig,
    SearchIndex,
    SeenStore,
    SimilarVideos,
    StoreDeadlines,
    StoreError,
    TieredFeedCache,
    Trending,
    TrendingConfig,
    TrendingSnapshotStore,
    Variant,
    VariantResolver,
    Video,
    VideoSearch,
)

from ._cards import CatalogSharingVideos, EventsSharingCounts, ReusedCounts
from ._metrics import AppMetrics
from ._settings import Settings

if TYPE_CHECKING:
    from reelrank_redis import RedisClient

__all__ = [
    "FIRST_USER_ID",
    "FIRST_VIDEO_ID",
    "IdempotencyRecord",
    "IdempotencyStore",
    "MemoryIdempotencyStore",
    "RedisIdempotencyStore",
    "Services",
    "SqlIdempotencyStore",
    "Stores",
    "build_default_services",
    "build_services",
    "configured_stores",
    "is_empty",
    "memory_stores",
    "migrate",
    "seed_synthetic_catalog",
]

_logger = logging.getLogger(__name__)

FIRST_VIDEO_ID = 10_001
"""Id of the first synthetic video; the others follow it."""
FIRST_USER_ID = 100_001
"""Id of the first synthetic user; the others follow it."""

Clock = Callable[[], datetime]

_TOPICS = (
    "dance", "comedy", "cooking", "travel", "fitness", "music", "pets", "diy",
    "fashion", "gaming", "art", "science", "football", "makeup", "nature",
)  # fmt: skip
_ADJECTIVES = ("quick", "easy", "wild", "tiny", "epic", "calm", "daily", "secret", "first")
_NOUNS = ("hack", "routine", "challenge", "story", "tutorial", "moment", "trick", "fail")
_SOUNDS = 40
_CATALOG_DAYS = 14.0
_RENDITIONS = (("360p", 640, 360, 800), ("720p", 1280, 720, 2_500), ("1080p", 1920, 1080, 5_000))
_SHARE_CHANNELS = ("link", "whatsapp", "messages", "email")


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """The answer given to the first request made with an ``Idempotency-Key``.

    Before the event is written the first request leaves a *pending* record (``status``
    0, no response) holding the time it stamped the event with, so that a retry after a
    lost answer redelivers the event with the same ``occurred_at``.
    """

    fingerprint: str
    """Hash of the request's payload; a retry must match it."""
    status: int
    """HTTP status answered; 0 while the first request has not answered yet."""
    response: str
    """JSON body answered; empty while pending."""
    occurred_at: datetime | None = None
    """The time a pending request stamped its event with (``None`` in records written
    before pending records existed, and when the body carried its own time)."""

    @classmethod
    def pending_for(cls, fingerprint: str, occurred_at: datetime) -> IdempotencyRecord:
        """The record a first request leaves before it writes its event stamped
        ``occurred_at``."""
        return cls(fingerprint, _PENDING_STATUS, "", occurred_at=occurred_at)

    @property
    def pending(self) -> bool:
        """Whether the first request has not answered yet."""
        return self.status == _PENDING_STATUS


_PENDING_STATUS = 0


class IdempotencyStore(Protocol):
    """Where answers to ``Idempotency-Key`` requests are remembered."""

    def get(self, scope: str) -> IdempotencyRecord | None:
        """The record of ``scope`` (caller and key), unless absent or expired."""
        ...

    def put(self, scope: str, record: IdempotencyRecord, *, ttl: timedelta) -> bool | None:
        """Remember ``record`` for ``ttl`` unless a live record is already there, which
        is kept; whether ``record`` was stored (``True``), or the record there was kept
        (``False``), or ``None`` for "unknown".

        The answer saves a first request reading its record back. A store that returns
        ``None`` (one written before ``put`` answered) costs a first request that read:
        the service then reads the record back to learn which one is there.
        """
        ...

    def replace(self, scope: str, record: IdempotencyRecord, *, ttl: timedelta) -> None:
        """Remember ``record`` for ``ttl`` in place of any record there (a pending
        record's final answer)."""
        ...


class MemoryIdempotencyStore:
    """Records in this process only (tests and single-process embedding)."""

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self._clock = clock or _utc_now
        self._records: dict[str, tuple[datetime, IdempotencyRecord]] = {}
        self._lock = threading.Lock()

    def get(self, scope: str) -> IdempotencyRecord | None:
        """The record of ``scope``, unless absent or expired."""
        with self._lock:
            entry = self._records.get(scope)
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]

    def put(self, scope: str, record: IdempotencyRecord, *, ttl: timedelta) -> bool:
        """Remember ``record`` for ``ttl`` unless a live record is already there;
        whether it was stored."""
        with self._lock:
            entry = self._records.get(scope)
            if entry is not None and entry[0] > self._clock():
                return False
            self._records[scope] = (self._clock() + ttl, record)
            return True

    def replace(self, scope: str, record: IdempotencyRecord, *, ttl: timedelta) -> None:
        """Remember ``record`` for ``ttl`` in place of any record there."""
        with self._lock:
            self._records[scope] = (self._clock() + ttl, record)


_metadata = sa.MetaData()
_idempotency = sa.Table(
    "reelrank_service_idempotency",
    _metadata,
    sa.Column("scope", sa.String(400), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("response", sa.Text, nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)


class SqlIdempotencyStore:
    """Records in the service's SQL database, shared by every worker and replica.

    Database failures raise :class:`~reelrank.StoreError` (``store="idempotency"``;
    :class:`~reelrank.StoreTimeoutError` for a timeout), which the service handles as
    an unavailable idempotency store, as it does Redis's.
    """

    def __init__(self, engine: sa.Engine, clock: Callable[[], datetime] | None = None) -> None:
        from reelrank_postgres import store_errors

        self._engine = engine
        self._clock = clock or _utc_now
        # The SQL adapter's translation: its stores and this one fail alike.
        self._errors = store_errors

    def get(self, scope: str) -> IdempotencyRecord | None:
        """The record of ``scope``, unless absent or expired."""
        with self._errors("idempotency", "get"), self._engine.connect() as connection:
            row = connection.execute(
                sa.select(_idempotency).where(_idempotency.c.scope == scope)
            ).first()
        if row is None:
            return None
        expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
        if expires <= self._clock():
            return None
        if row.status == _PENDING_STATUS:
            return IdempotencyRecord(
                row.fingerprint, row.status, "", occurred_at=_pending_stamp(row.response)
            )
        return IdempotencyRecord(row.fingerprint, row.status, row.response)

    def put(self, scope: str, record: IdempotencyRecord, *, ttl: timedelta) -> bool:
        """Remember ``record`` for ``ttl`` unless a live record is already there;
        whether it was stored.

        One upsert that writes over an expired record only: a live one (a concurrent
        first request's) is kept, and the row the statement returns, or not, says which
        happened. (Not the row count: it came back -1 on PostgreSQL.)
        """
        now = self._clock()
        statement = self._upsert(
            _sql_row(scope, record, now + ttl), only_over=_idempotency.c.expires_at <= now
        ).returning(_idempotency.c.scope)
        with self._errors("idempotency", "put"), self._engine.begin() as connection:
            written = connection.execute(statement).first()
        return written is not None

    def replace(self, scope: str, record: IdempotencyRecord, *, ttl: timedelta) -> None:
        """Remember ``record`` for ``ttl`` in place of any record there."""
        statement = self._upsert(_sql_row(scope, record, self._clock() + ttl))
        with self._errors("idempotency", "replace"), self._engine.begin() as connection:
            connection.execute(statement)

    def _upsert(self, row: dict[str, Any], *, only_over: Any = None) -> Any:
        """``row`` inserted, or written over the scope's record (only where the
        condition ``only_over`` holds for that record, when given). An upsert, because
        concurrent writes of one scope must not collide on its key, as a delete then
        insert would under READ COMMITTED."""
        upsert: Any
        if self._engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as upsert
        else:
            from sqlalchemy.dialects.sqlite import insert as upsert
        statement = upsert(_idempotency).values(row)
        return statement.on_conflict_do_update(
            index_elements=[_idempotency.c.scope],
            set_={name: statement.excluded[name] for name in row if name != "scope"},
            where=only_over,
        )


# A pending record has no response yet, so its stamp travels in the response column:
# tables created before pending records existed need no new column.
def _sql_row(scope: str, record: IdempotencyRecord, expires_at: datetime) -> dict[str, Any]:
    response = record.response
    if record.pending and record.occurred_at is not None:
        response = record.occurred_at.isoformat()
    return {
        "scope": scope,
        "fingerprint": record.fingerprint,
        "status": record.status,
        "response": response,
        "expires_at": expires_at,
    }


def _pending_stamp(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class RedisIdempotencyStore:
    """Records in the state Redis, shared by every worker and replica.

    One string per scope (``<prefix>:idem:<sha256 of the scope>``) holding the record as
    JSON, written with ``SET ... NX PX``: the first answer stays until its TTL runs
    out, measured by Redis itself; ``replace`` (a pending record's final answer)
    is ``SET ... PX`` without ``NX``. Redis failures raise :class:`~reelrank.StoreError`
    (``store="idempotency"``), answered with 503.
    """

    def __init__(self, client: Any, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    def _key(self, scope: str) -> str:
        return f"{self._prefix}:idem:{hashlib.sha256(scope.encode()).hexdigest()}"

    def get(self, scope: str) -> IdempotencyRecord | None:
        """The record of ``scope``, unless absent or expired."""
        import redis

        try:
            raw = self._client.get(self._key(scope))
        except redis.RedisError as exc:
            raise StoreError("idempotency", f"get failed: {type(exc).__name__}") from exc
        if raw is None:
            return None
        fields = json.loads(raw)
        # Records written before pending records existed have no "occurred_at".
        return IdempotencyRecord(
            fields["fingerprint"],
            fields["status"],
            fields["response"],
            occurred_at=_pending_stamp(fields.get("occurred_at")),
        )

    def put(self, scope: str, record: IdempotencyRecord, *, ttl: timedelta) -> bool:
        """Remember ``record`` for ``ttl`` unless a live record is already there;
        whether it was stored (``SET NX`` answers it)."""
        return self._set(scope, record, ttl=ttl, keep_existing=True)

    def replace(self, scope: str, record: IdempotencyRecord, *, ttl: timedelta) -> None:
        """Remember ``record`` for ``ttl`` in place of any record there."""
        self._set(scope, record, ttl=ttl, keep_existing=False)

    def _set(
        self, scope: str, record: IdempotencyRecord, *, ttl: timedelta, keep_existing: bool
    ) -> bool:
        import redis

        fields: dict[str, Any] = {
            "fingerprint": record.fingerprint,
            "status": record.status,
            "response": record.response,
        }
        if record.occurred_at is not None:
            fields["occurred_at"] = record.occurred_at.isoformat()
        milliseconds = max(1, round(ttl.total_seconds() * 1000))
        try:
            answer = self._client.set(
                self._key(scope), json.dumps(fields), nx=keep_existing, px=milliseconds
            )
        except redis.RedisError as exc:
            raise StoreError("idempotency", f"put failed: {type(exc).__name__}") from exc
        # SET answers OK, or nothing when NX found a key there.
        return bool(answer)


@dataclasses.dataclass(frozen=True, slots=True)
class Stores:
    """The storage the services read and write; swap any field to change a backend."""

    catalog: Catalog
    """Videos, creators and follows."""
    events: EventStore
    """Engagement aggregates: stats, affinities, popular videos."""
    seen: SeenStore
    """What each user was already shown."""
    log: EngagementLog
    """Individual engagement events, read by trending and creator recommendations."""
    progress: ProgressStore
    """Processing progress of uploaded videos."""
    cache: FeedCache | None = None
    """Where ranked feed snapshots are kept; ``None`` ranks every page."""
    search_index: SearchIndex = dataclasses.field(default_factory=InMemorySearchIndex)
    """The inverted index behind search."""
    trending_snapshots: TrendingSnapshotStore = dataclasses.field(
        default_factory=InMemoryTrendingSnapshotStore
    )
    """Last trending results: served by every process while younger than
    ``trending_reuse_seconds`` (and, while a process computes the next one, up to
    ``trending_refresh_ahead_seconds`` older), and when a store fails."""
    embeddings: EmbeddingIndex | None = None
    """Video embeddings for similar videos; ``None`` uses the metadata fallback only."""
    idempotency: IdempotencyStore = dataclasses.field(default_factory=MemoryIdempotencyStore)
    """Answers to ``Idempotency-Key`` requests."""
    models: ModelRegistry | None = None
    """Registered models and their scores (the feed's deep-learning signal)."""
    closers: tuple[Callable[[], None], ...] = ()
    """Called by :meth:`Services.close` (connection pools, for example)."""


_CLOSE_TIMEOUT_SECONDS = 5.0
"""How long :meth:`Services.close` waits, in all, for background work under way: well
past the service's read deadlines (0.25 s per card or count read), so a refresh on a
slow store ends in time, and short beside gunicorn's 25 s graceful timeout."""


class _Closing:
    """What :meth:`Services.close` stops first, and whether it has run."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.closed = False
        self.stops: list[Callable[[float], None]] = []
        self.guards: list[DependencyGuard] = []


@dataclasses.dataclass(frozen=True, slots=True)
class Services:
    """Everything the HTTP layer calls, built from :class:`Stores`."""

    stores: Stores
    """The stores the services were built on."""
    feed: FeedRankingService
    """Ranked, cached, paged feeds."""
    recorder: EngagementRecorder
    """Validated, idempotent engagement events."""
    trending: Trending
    """Trending sounds and hashtags."""
    creators: CreatorRecommender
    """Creators to follow."""
    search: VideoSearch
    """Text search blended with quality."""
    similar: SimilarVideos
    """"More like this" videos."""
    processing: ProcessingTracker
    """Processing progress of uploads."""
    manifests: ManifestConfig
    """How HLS and DASH manifests are written."""
    clock: Clock
    """Current time (aware UTC datetime) for windows and timestamps."""
    metrics: AppMetrics = dataclasses.field(default_factory=AppMetrics)
    """The service's Prometheus metrics; the feed service and the recorder report to
    its observer."""
    search_counts: ReusedCounts | None = None
    """The counts :attr:`search` reuses (``None`` when it reads them on every search):
    an event recorded by this process drops its video's counts there."""
    shared_counts: EventsSharingCounts | None = None
    """The event store as the feed service reads it, handing the counts it reads to the
    card reader :func:`~reelrank_example.create_app` shares them with; ``None`` when the
    catalog reads the followed videos' counts itself (the SQL catalog on the SQL event
    store, one statement that this proxy would turn into two)."""
    shared_videos: CatalogSharingVideos | None = None
    """The catalog as the feed service reads it, handing the videos it reads (its
    candidate pool's, and a request's followed videos when read as models) to the card
    reader :func:`~reelrank_example.create_app` shares them with."""

    _closing: _Closing = dataclasses.field(default_factory=_Closing, repr=False, compare=False)

    def stop_on_close(self, stop: Callable[[float], None]) -> None:
        """Have :meth:`close` call ``stop`` with the seconds it may wait, before it
        stops anything else: for background work on these services started elsewhere
        (:func:`~reelrank_example.create_app` adds its start-up, its card reader and its
        readiness checks), in the order added."""
        with self._closing.lock:
            self._closing.stops.append(stop)

    def close_guard(self, guard: DependencyGuard) -> None:
        """Have :meth:`close` stop ``guard``'s worker pool, after every producer that
        calls through it and before the stores' closers (:func:`build_services` adds
        the guards of the :class:`~reelrank.GuardedStore` stores it is given)."""
        with self._closing.lock:
            if all(guard is not added for added in self._closing.guards):
                self._closing.guards.append(guard)

    def close(self, *, timeout: float = _CLOSE_TIMEOUT_SECONDS) -> None:
        """Stop every thread the services, and the app built on them, started; then
        release the stores.

        Producers stop before the stores they read: what :meth:`stop_on_close` added,
        the search counts' background reads, the feed service's candidate pool refresh
        and worker threads, trending's refresh ahead (after the computation under way),
        the event recorder's writes beside the event store, the worker pools of the
        guards added with :meth:`close_guard`, then the stores' closers (the ClickHouse
        event store's background read before its engine, waited for within one query's
        timeouts).
        Work not started is dropped; work under way before the closers is waited for up
        to ``timeout`` seconds in all (5 s by default), so a store paused mid-call
        cannot hang the close: such a call is left to its driver's timeout. Closing
        again does nothing."""
        with self._closing.lock:
            if self._closing.closed:
                return
            self._closing.closed = True
            stops = list(self._closing.stops)
            guards = list(self._closing.guards)
        deadline = time.monotonic() + timeout

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        for stop in stops:
            stop(left())
        if self.search_counts is not None:
            self.search_counts.close(left())
        self.feed.close(timeout=left())
        self.trending.close(timeout=left())
        self.recorder.close(timeout=left())
        for guard in guards:
            guard.close(left())
        for close in self.stores.closers:
            close()


def memory_stores() -> Stores:
    """Embedded in-memory stores with an in-process LRU feed cache."""
    return Stores(
        catalog=InMemoryCatalog(),
        events=InMemoryEventStore(),
        seen=InMemorySeenStore(),
        log=InMemoryEngagementLog(),
        progress=InMemoryProgressStore(),
        cache=LRUFeedCache(),
    )


def _sql_engine(settings: Settings) -> sa.Engine:
    from reelrank_postgres import SqlStoreConfig, connect

    engine = connect(SqlStoreConfig(url=settings.database_url))
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_wal)
    if settings.tracing:
        from ._tracing import trace_sql_engine

        trace_sql_engine(engine)
    return engine


def _sqlite_wal(dbapi_connection: Any, connection_record: Any) -> None:
    # Write-ahead logging lets the workers read while one writes, and with NORMAL
    # synchronisation a commit no longer waits for an fsync (a power cut may lose the
    # last commits, never corrupt the file): seeding is minutes faster.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _clickhouse_config(settings: Settings) -> Any:
    """``clickhouse://user:password@host:port/database`` as the adapter's config."""
    from reelrank_clickhouse import ClickHouseConfig

    assert settings.clickhouse_url is not None
    parts = urlsplit(settings.clickhouse_url.get_secret_value())
    if parts.scheme not in ("clickhouse", "clickhouse+native") or not parts.hostname:
        raise ConfigError("clickhouse_url", settings.clickhouse_url, "not a clickhouse:// URL")
    options: dict[str, Any] = {"host": parts.hostname}
    if parts.port is not None:
        options["port"] = parts.port
    if parts.path.strip("/"):
        options["database"] = parts.path.strip("/")
    if parts.username:
        options["user"] = unquote(parts.username)
    if parts.password:
        options["password"] = unquote(parts.password)
    return ClickHouseConfig(**options)


def migrate(settings: Settings) -> None:
    """Bring every configured database to the newest schema (the ``migrate`` command)."""
    from reelrank_postgres import migrate as migrate_sql

    engine = _sql_engine(settings)
    try:
        migrate_sql(engine)
        _metadata.create_all(engine)
    finally:
        engine.dispose()
    if settings.clickhouse_url is not None:
        from reelrank_clickhouse import connect as connect_clickhouse
        from reelrank_clickhouse import create_schema, migrate_schema

        clickhouse = connect_clickhouse(_clickhouse_config(settings))
        try:
            # Tables of an earlier schema version are upgraded first (deploys stop the
            # writers before migrating), then anything missing is created.
            migrate_schema(clickhouse)
            create_schema(clickhouse)
        finally:
            clickhouse.dispose()


def fold_stats(settings: Settings, *, until: datetime | None = None) -> int | None:
    """Roll ClickHouse's per-video statistics up (the ``fold-stats`` command).

    Reads of the event store then merge one roll-up row per candidate plus what arrived
    since, instead of every like state (see the ClickHouse adapter's
    ``ClickHouseEventStore.fold_stats``); run it every few minutes, from one place (the
    deployment's CronJob). ``until`` is the arrival watermark (default: a minute ago).
    Returns how many videos the roll-up holds, ``0`` when the last one is not older,
    and ``None`` without ClickHouse (the SQL and in-memory event stores need no roll-up).
    """
    if settings.clickhouse_url is None:
        return None
    from reelrank_clickhouse import ClickHouseEventStore
    from reelrank_clickhouse import connect as connect_clickhouse

    clickhouse = connect_clickhouse(_clickhouse_config(settings))
    try:
        return ClickHouseEventStore(clickhouse).fold_stats(until=until)
    finally:
        clickhouse.dispose()


def _redis_bounds(settings: Settings) -> dict[str, Any]:
    """The request path's Redis timeouts. The adapter never retries a timeout; it retries
    a reset connection once, at once (after a restart), which costs no wait."""
    return {
        "socket_timeout_seconds": settings.redis_timeout_seconds,
        "connect_timeout_seconds": settings.redis_timeout_seconds,
    }


def configured_stores(settings: Settings) -> Stores:
    """The stores :class:`Settings` name, on a database migrated by :func:`migrate`.

    The SQL database (``database_url``) holds the catalog, search, progress, seen sets
    and idempotency keys, plus events and the engagement log unless ``clickhouse_url``
    is set. The feed cache is a per-process LRU level over a shared level that every
    worker and replica sees (so a retried cursor gets its page from any of them): Redis
    with ``redis_url``, else a table in the SQL database. The per-process level keeps
    an entry at most ``local_cache_ttl_seconds``, the bound on how stale another
    worker's level can be after an invalidation. The seen sets and the idempotency keys
    move to ``redis_state_url`` (default: ``redis_url``) when one is set. The trending
    snapshots, which every worker and replica serves for ``trending_reuse_seconds``,
    live in the feed cache's Redis with ``redis_url``, else in the SQL database.
    """
    from reelrank_postgres import (
        SqlCatalog,
        SqlEngagementLog,
        SqlEventStore,
        SqlFeedCache,
        SqlModelRegistry,
        SqlProgressStore,
        SqlSearchIndex,
        SqlSeenStore,
        SqlTrendingSnapshotStore,
    )

    engine = _sql_engine(settings)
    closers: list[Callable[[], None]] = [engine.dispose]
    try:
        events: EventStore = SqlEventStore(engine)
        log: EngagementLog = SqlEngagementLog(engine)
        if settings.clickhouse_url is not None:
            from reelrank_clickhouse import ClickHouseEngagementLog, ClickHouseEventStore
            from reelrank_clickhouse import connect as connect_clickhouse

            clickhouse_config = _clickhouse_config(settings)
            clickhouse = connect_clickhouse(clickhouse_config)
            closers.append(clickhouse.dispose)
            clickhouse_events = ClickHouseEventStore(
                clickhouse, held_like_pairs=settings.clickhouse_held_like_pairs
            )
            # Its background read of the since-sums queries through the engine, so it
            # ends (within one query's timeouts) before the engine is disposed of.
            closers.insert(
                closers.index(clickhouse.dispose),
                functools.partial(
                    clickhouse_events.close,
                    timeout=clickhouse_config.connect_timeout_seconds
                    + clickhouse_config.send_receive_timeout_seconds,
                ),
            )
            # The request threads of a process store their events in shared batches:
            # an event costs ClickHouse a few round trips and an insert whatever the
            # batch's size, and each store writes one batch at a time.
            events = cast(EventStore, GroupCommitEventStore(clickhouse_events))
            log = cast(EngagementLog, GroupCommitEngagementLog(ClickHouseEngagementLog(clickhouse)))
            if settings.tracing:
                from ._tracing import trace_clickhouse_store

                events = trace_clickhouse_store(events, "events")
                log = trace_clickhouse_store(log, "log")
        shared_cache: FeedCache = SqlFeedCache(engine)
        seen: SeenStore = SqlSeenStore(engine)
        idempotency: IdempotencyStore = SqlIdempotencyStore(engine)
        trending_snapshots: TrendingSnapshotStore = SqlTrendingSnapshotStore(engine)
        redis_client: RedisClient | None = None
        if settings.tracing and (settings.redis_url or settings.redis_state_url):
            from ._tracing import trace_redis

            trace_redis()
        if settings.redis_url is not None:
            from reelrank_redis import RedisConfig, RedisFeedCache, RedisTrendingSnapshotStore
            from reelrank_redis import connect as connect_redis

            redis_config = RedisConfig(
                url=settings.redis_url, prefix=settings.redis_prefix, **_redis_bounds(settings)
            )
            redis_client = connect_redis(redis_config)
            closers.append(redis_client.close)
            shared_cache = RedisFeedCache(redis_client, redis_config)
            trending_snapshots = RedisTrendingSnapshotStore(redis_client, redis_config)
        cache = TieredFeedCache(
            LRUFeedCache(), shared_cache, local_ttl_seconds=settings.local_cache_ttl_seconds
        )
        state_url = settings.redis_state_url or settings.redis_url
        if state_url is not None:
            from reelrank_redis import RedisConfig, RedisSeenStore
            from reelrank_redis import connect as connect_redis

            if settings.redis_state_url is None:
                _logger.warning(
                    "the seen sets and idempotency keys share the feed cache's Redis: give "
                    "that server no "
                    "eviction policy, or set REELRANK_REDIS_STATE_URL to a server of its own"
                )
            state_config = RedisConfig(
                url=state_url, prefix=settings.redis_prefix, **_redis_bounds(settings)
            )
            # On the feed cache's server, the seen store shares its client: a cached
            # cursor page is then taken in one round trip (see PageTakingSeenStore).
            state_client = redis_client if settings.redis_state_url is None else None
            if state_client is None:
                state_client = connect_redis(state_config)
                closers.append(state_client.close)
            seen = RedisSeenStore(state_client, state_config)
            idempotency = RedisIdempotencyStore(state_client, settings.redis_prefix)
        return Stores(
            catalog=SqlCatalog(engine),
            events=events,
            seen=seen,
            log=log,
            progress=SqlProgressStore(engine),
            cache=cache,
            search_index=SqlSearchIndex(
                engine,
                config=SearchConfig(
                    term_statistics_seconds=settings.search_term_statistics_seconds
                ),
            ),
            trending_snapshots=trending_snapshots,
            idempotency=idempotency,
            models=SqlModelRegistry(engine),
            closers=tuple(closers),
        )
    except BaseException:
        for close in closers:
            close()
        raise


def is_empty(stores: Stores) -> bool:
    """Whether the catalog holds no video yet (``scripts/serve.sh`` seeds it then)."""
    return not stores.catalog.recent_videos(limit=1)


def _experiment() -> Experiment:
    fresh = RankingConfig(
        freshness=0.30, completion=0.30, engagement=0.20, affinity=0.15, deep_learning=0.05
    )
    return Experiment(
        name="freshness-boost",
        salt="reelrank-example",
        variants=(
            Variant(name="control", share=0.5),
            Variant(name="fresh", share=0.5, config=fresh),
        ),
    )


def _search_counts(events: EventStore, settings: Settings) -> ReusedCounts | None:
    """The counts search reuses, each video's for ``settings.search_counts_seconds``
    (and ``settings.search_counts_stale_seconds`` more while read again in the
    background, and those it has none that recent for read in the background unless
    ``settings.search_waits_for_unknown_counts``); ``None`` when it reads them from
    ``events`` on every search."""
    if settings.search_counts_seconds <= 0:
        return None
    return ReusedCounts(
        events,
        ttl=settings.search_counts_seconds,
        stale=settings.search_counts_stale_seconds,
        wait_for_unknown=settings.search_waits_for_unknown_counts,
        bounded_age=settings.bounded_counts_seconds,
    )


def _search_matches(metrics: AppMetrics, reused: bool) -> None:
    """Count where a search's matches came from, and tell the request (its
    ``Cache-Status``)."""
    metrics.search_matches(reused)
    if has_request_context():
        g.search_matches = "hit" if reused else "miss"


def build_services(
    stores: Stores,
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    feed_config: FeedServiceConfig | None = None,
    metrics: AppMetrics | None = None,
) -> Services:
    """Build every service on ``stores``; nothing is read or written yet.

    ``feed_config`` replaces the feed service's defaults (deadlines, cache lifetimes...);
    without it, only the cursor secret comes from ``settings``. The feed service and
    the event recorder report to ``metrics`` (default: new metrics).
    """
    settings = settings or Settings()
    clock = clock or _utc_now
    metrics = metrics or AppMetrics()
    resolver: VariantResolver | None = None
    if settings.experiment:
        experiment = _experiment()

        def resolver(user_id: int) -> tuple[str | None, RankingConfig]:
            variant = experiment.assign(user_id)
            return variant.name, variant.config

    shared_counts = None
    if not (
        isinstance(stores.catalog, FollowedCandidatesCatalog)
        and stores.catalog.reads_stats_of(stores.events)
    ):
        shared_counts = EventsSharingCounts(stores.events)
    shared_videos = CatalogSharingVideos(stores.catalog)
    feed = FeedRankingService(
        catalog=cast(Catalog, shared_videos),
        events=stores.events if shared_counts is None else cast(EventStore, shared_counts),
        seen=stores.seen,
        cache=stores.cache,
        models=stores.models,
        config=feed_config
        or FeedServiceConfig(
            cursor_secret=settings.cursor_secret,
            model_name=settings.model_name,
            deadlines=StoreDeadlines(cache=settings.shared_cache_deadline_seconds),
            refill_ahead_items=settings.feed_refill_ahead_items,
            refill_deadline_seconds=settings.feed_refill_deadline_seconds,
            hold_ran_out_feeds=settings.feed_hold_ran_out,
            affinity_reuse_seconds=settings.feed_affinity_reuse_seconds,
        ),
        assign_variant=resolver,
        clock=clock,
        observer=metrics.observer,
    )
    search_counts = _search_counts(stores.events, settings)
    services = Services(
        stores=stores,
        feed=feed,
        recorder=EngagementRecorder(
            stores.catalog,
            stores.events,
            log=stores.log,
            # Events from clients may be as old as the idempotency horizon, no older: an
            # older one could be a redelivery whose key is forgotten, and count twice.
            config=RecorderConfig(
                max_event_age_seconds=settings.idempotency_hours * 3600.0,
                parallel_writes=settings.parallel_event_writes,
                parallel_write_threads=settings.parallel_event_write_threads,
            ),
            now=clock,
            observer=metrics.observer,
            on_user_event=feed.forget_affinities,
        ),
        trending=Trending(
            stores.catalog,
            stores.log,
            snapshots=stores.trending_snapshots,
            config=TrendingConfig(
                reuse_seconds=settings.trending_reuse_seconds,
                refresh_ahead_seconds=settings.trending_refresh_ahead_seconds,
            ),
        ),
        creators=CreatorRecommender(stores.catalog, stores.events, stores.log),
        # VideoSearch calls get_stats only.
        search=VideoSearch(
            stores.search_index,
            stats=stores.events if search_counts is None else cast(EventStore, search_counts),
            config=SearchConfig(
                match_reuse_seconds=settings.search_match_reuse_seconds,
                match_reuse_queries=settings.search_match_reuse_queries,
            ),
            on_matches=functools.partial(_search_matches, metrics),
        ),
        similar=SimilarVideos(stores.catalog, embeddings=stores.embeddings, seen=stores.seen),
        processing=ProcessingTracker(stores.progress, catalog=stores.catalog, clock=clock),
        manifests=ManifestConfig(frame_rate=30.0),
        clock=clock,
        metrics=metrics,
        search_counts=search_counts,
        shared_counts=shared_counts,
        shared_videos=shared_videos,
    )
    for field in dataclasses.fields(stores):
        store = getattr(stores, field.name)
        if isinstance(store, GuardedStore):
            services.close_guard(store.guard)
    if settings.tracing:
        from ._tracing import trace_services

        return trace_services(services)
    return services


def build_default_services(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    feed_config: FeedServiceConfig | None = None,
) -> Services:
    """In-memory stores seeded with the synthetic catalog, and their services.

    For tests and notebooks: nothing is shared with another process. A served
    deployment uses :func:`configured_stores` on a database seeded once by the
    ``seed`` command.
    """
    settings = settings or Settings()
    clock = clock or _utc_now
    stores = memory_stores()
    embeddings = seed_synthetic_catalog(stores, settings, now=clock())
    return build_services(
        dataclasses.replace(stores, embeddings=embeddings),
        settings,
        clock=clock,
        feed_config=feed_config,
    )


# -- the synthetic catalog ---------------------------------------------------------------


def _renditions(video_id: int) -> tuple[Rendition, ...]:
    return tuple(
        Rendition(
            width=width,
            height=height,
            bitrate_kbps=kbps,
            codec="avc1.64001f",
            uri=f"https://cdn.example.com/v/{video_id}/{name}/index.m3u8",
        )
        for name, width, height, kbps in _RENDITIONS
    )


def _sound_name(sound_id: int) -> str:
    return f"{_ADJECTIVES[sound_id % len(_ADJECTIVES)]} beat {sound_id}"


def seed_synthetic_catalog(stores: Stores, settings: Settings, *, now: datetime) -> EmbeddingIndex:
    """Fill ``stores`` with a reproducible catalog and return its video embeddings.

    Every creator has a home topic; videos carry it among their hashtags, and their
    embeddings sit near the topic's centroid, so similar videos and creator
    recommendations have structure to find. Ready videos go through the processing
    pipeline (queued, transcoding, packaging, ready); :attr:`Settings.pending_videos`
    more stop part-way. Users follow a few creators of their favourite topics and
    engage mostly with those topics, through the same validating recorder the API uses.
    """
    rng = np.random.default_rng(settings.seed)
    catalog = stores.catalog
    tracker = ProcessingTracker(stores.progress, catalog=catalog, clock=lambda: now)
    # The seed writes history (events up to 14 days old): no age limit, unlike the
    # service's recorder.
    recorder = EngagementRecorder(
        catalog,
        stores.events,
        log=stores.log,
        config=RecorderConfig(max_event_age_seconds=None),
        now=lambda: now,
    )
    search = VideoSearch(stores.search_index)
    topics = len(_TOPICS)

    creators: list[Creator] = []
    for number in range(1, settings.creators + 1):
        creator = Creator(
            creator_id=number,
            handle=f"{_TOPICS[number % topics]}_{number}",
            display_name=f"{_ADJECTIVES[number % len(_ADJECTIVES)].title()} Creator {number}",
        )
        catalog.put_creator(creator)
        creators.append(creator)

    sound_popularity = 1.0 / np.arange(1, _SOUNDS + 1)
    sound_popularity /= sound_popularity.sum()
    ready: list[Video] = []
    total = settings.videos + settings.pending_videos
    for index in range(total):
        video_id = FIRST_VIDEO_ID + index
        creator = creators[int(rng.integers(len(creators)))]
        home = creator.creator_id % topics
        extra = rng.choice(topics, size=int(rng.integers(0, 3)), replace=False)
        hashtags = [_TOPICS[home], *(_TOPICS[int(t)] for t in extra)]
        has_sound = rng.random() < 0.8
        sound_id = int(rng.choice(_SOUNDS, p=sound_popularity)) + 1 if has_sound else None
        age = timedelta(days=float(rng.uniform(0.0, _CATALOG_DAYS)))
        title = (
            f"{_ADJECTIVES[int(rng.integers(len(_ADJECTIVES)))]} {_TOPICS[home]} "
            f"{_NOUNS[int(rng.integers(len(_NOUNS)))]}"
        )
        video = Video(
            video_id=video_id,
            creator_id=creator.creator_id,
            duration_seconds=float(rng.uniform(8.0, 90.0)),
            published_at=now - age,
            title=title,
            description=f"A {title} by @{creator.handle}.",
            hashtags=tuple(hashtags),
            sound_id=sound_id,
            renditions=_renditions(video_id),
            state=ProcessingState.QUEUED,
        )
        catalog.put_video(video)
        stop = None if index < settings.videos else index - settings.videos
        _process(tracker, video_id, stop)
        if stop is None:
            published = catalog.get_video(video_id)
            ready.append(published)
            sound_name = "" if sound_id is None else _sound_name(sound_id)
            search.index_video(published, creator=creator, sound_name=sound_name)

    _seed_engagement(rng, catalog, recorder, ready, settings, now)
    return _embeddings(rng, ready, settings.embedding_dimensions)


_PENDING_STOPS = (
    ProcessingState.QUEUED,
    ProcessingState.TRANSCODING,
    ProcessingState.PACKAGING,
    ProcessingState.FAILED,
)


def _process(tracker: ProcessingTracker, video_id: int, stop: int | None) -> None:
    """Walk a queued video through the pipeline; ``stop`` picks where a pending one halts."""
    names = [name for name, *_ in _RENDITIONS]
    tracker.start(video_id, names)
    halt = None if stop is None else _PENDING_STOPS[stop % len(_PENDING_STOPS)]
    if halt is ProcessingState.QUEUED:
        return
    tracker.move_to(video_id, ProcessingState.TRANSCODING)
    if halt is ProcessingState.TRANSCODING:
        tracker.report_rendition(video_id, names[0], 100.0)
        tracker.report_rendition(video_id, names[1], 45.0)
        return
    if halt is ProcessingState.FAILED:
        tracker.report_rendition(video_id, names[0], 60.0, error="encoder crashed")
        return
    for name in names:
        tracker.report_rendition(video_id, name, 100.0)
    tracker.move_to(video_id, ProcessingState.PACKAGING)
    if halt is ProcessingState.PACKAGING:
        tracker.report(video_id, 30.0)
        return
    tracker.move_to(video_id, ProcessingState.READY)


def _seed_engagement(
    rng: np.random.Generator,
    catalog: Catalog,
    recorder: EngagementRecorder,
    ready: list[Video],
    settings: Settings,
    now: datetime,
) -> None:
    if not ready:
        return
    topics = len(_TOPICS)
    by_topic: dict[str, list[Video]] = {}
    for video in ready:
        by_topic.setdefault(video.hashtags[0], []).append(video)
    creators_by_topic: dict[str, list[int]] = {}
    for number in range(1, settings.creators + 1):
        creators_by_topic.setdefault(_TOPICS[number % topics], []).append(number)
    favourites: dict[int, list[str]] = {}
    for offset in range(settings.users):
        user_id = FIRST_USER_ID + offset
        liked = [_TOPICS[int(t)] for t in rng.choice(topics, size=2, replace=False)]
        favourites[user_id] = liked
        for topic in liked:
            candidates = creators_by_topic.get(topic, [])
            if candidates and rng.random() < 0.6:
                catalog.follow(user_id, int(rng.choice(candidates)))
    kinds = rng.choice(4, size=settings.events, p=[0.72, 0.18, 0.06, 0.04])
    for number in range(settings.events):
        user_id = FIRST_USER_ID + int(rng.integers(settings.users))
        topic_videos = by_topic.get(favourites[user_id][int(rng.integers(2))], [])
        pool = topic_videos if topic_videos and rng.random() < 0.75 else ready
        video = pool[int(rng.integers(len(pool)))]
        span = (now - video.published_at).total_seconds()
        occurred_at = video.published_at + timedelta(seconds=float(rng.uniform(0.0, span)))
        event: dict[str, Any] = {
            "event_id": f"seed-{settings.seed}-{number}",
            "user_id": user_id,
            "video_id": video.video_id,
            "occurred_at": occurred_at,
        }
        kind = int(kinds[number])
        if kind == 0:
            event.update(kind="watch", completion=float(rng.beta(2.0, 1.5)))
        elif kind == 1:
            event.update(kind="like")
        elif kind == 2:
            channel = _SHARE_CHANNELS[int(rng.integers(len(_SHARE_CHANNELS)))]
            event.update(kind="share", channel=channel)
        else:
            event.update(kind="unlike")
        recorder.record(event)


def _embeddings(rng: np.random.Generator, ready: list[Video], dimensions: int) -> EmbeddingIndex:
    centroids = {topic: rng.normal(size=dimensions) for topic in _TOPICS}
    vectors = np.empty((len(ready), dimensions), dtype=np.float64)
    for row, video in enumerate(ready):
        tags = [centroids[tag] for tag in video.hashtags if tag in centroids]
        vectors[row] = 2.0 * centroids[video.hashtags[0]] + np.mean(tags, axis=0)
        vectors[row] += rng.normal(scale=0.5, size=dimensions)
    return EmbeddingIndex([video.video_id for video in ready], vectors)
