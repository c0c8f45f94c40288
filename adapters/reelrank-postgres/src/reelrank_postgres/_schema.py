"""The tables the stores read and write, as SQLAlchemy Core metadata.

The migrations in ``reelrank_postgres/migrations`` create the same tables; the full-text
table differs per dialect (a ``tsvector`` column with a GIN index on PostgreSQL, an FTS5
virtual table on SQLite) and is reached with dialect-specific SQL in
:mod:`reelrank_postgres._search`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.dialects import postgresql

__all__ = [
    "HEAD_REVISION",
    "JsonDocument",
    "UtcDateTime",
    "affinity_credits",
    "affinity_totals",
    "creators",
    "engagement_events",
    "engagement_log",
    "feed_cache",
    "follows",
    "metadata",
    "model_scores",
    "model_versions",
    "processing_progress",
    "seen_videos",
    "trending_leases",
    "trending_snapshots",
    "video_likes",
    "video_stats",
    "videos",
]

HEAD_REVISION = "0009"
"""The schema revision this version of the adapter reads and writes."""


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on both dialects.

    PostgreSQL keeps a ``timestamptz``. SQLite has no time zones: values are stored as
    naive UTC text in one fixed format, so text order is time order.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JsonDocument: Any = JSON().with_variant(postgresql.JSONB(), "postgresql")
"""JSON text on SQLite, ``jsonb`` on PostgreSQL."""

EventId: Any = String(128).with_variant(String(128, collation="C"), "postgresql")
"""An event id that sorts by code point on both dialects (SQLite's default is binary), as
Python compares the ids in the in-memory stores."""

_READY = text("state = 'ready'")

metadata = MetaData()

creators = Table(
    "creators",
    metadata,
    Column("creator_id", BigInteger, primary_key=True, autoincrement=False),
    Column("handle", String(64), nullable=False),
    Column("display_name", String(200), nullable=False),
)

videos = Table(
    "videos",
    metadata,
    Column("video_id", BigInteger, primary_key=True, autoincrement=False),
    Column("creator_id", BigInteger, ForeignKey("creators.creator_id"), nullable=False),
    Column("duration_seconds", Double, nullable=False),
    Column("published_at", UtcDateTime, nullable=False),
    Column("title", String(300), nullable=False),
    Column("description", Text, nullable=False),
    Column("hashtags", JsonDocument, nullable=False),
    Column("sound_id", BigInteger, nullable=True),
    Column("renditions", JsonDocument, nullable=False),
    Column("state", String(16), nullable=False),
    Index(
        "ix_videos_ready_recency",
        "published_at",
        "video_id",
        postgresql_where=_READY,
        sqlite_where=_READY,
    ),
    # Followed creators' newest ready videos with what the feed ranks them by (revision
    # 0009; SQLite, which has no INCLUDE, keeps sound_id as a fourth key column).
    Index(
        "ix_videos_ready_creator_recency_sound",
        "creator_id",
        "published_at",
        "video_id",
        postgresql_include=["sound_id"],
        postgresql_where=_READY,
        sqlite_where=_READY,
    ),
)

follows = Table(
    "follows",
    metadata,
    Column("user_id", BigInteger, primary_key=True, autoincrement=False),
    Column(
        "creator_id",
        BigInteger,
        ForeignKey("creators.creator_id"),
        primary_key=True,
        autoincrement=False,
    ),
)

engagement_events = Table(
    "engagement_events",
    metadata,
    Column("event_id", String(128), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("user_id", BigInteger, nullable=False),
    Column("video_id", BigInteger, nullable=False),
    Column("creator_id", BigInteger, nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("watched_seconds", Double, nullable=True),
    Column("completion", Double, nullable=True),
    Column("channel", String(64), nullable=True),
    Column("variant", String(64), nullable=True),
)

video_stats = Table(
    "video_stats",
    metadata,
    Column("video_id", BigInteger, primary_key=True, autoincrement=False),
    Column("views", BigInteger, nullable=False),
    Column("completion_sum", Double, nullable=False),
    Column("likes", BigInteger, nullable=False),
    Column("shares", BigInteger, nullable=False),
    Column("comments", BigInteger, nullable=False),
    Index("ix_video_stats_popularity", "views", "video_id"),
)

video_likes = Table(
    "video_likes",
    metadata,
    Column("video_id", BigInteger, primary_key=True, autoincrement=False),
    Column("user_id", BigInteger, primary_key=True, autoincrement=False),
)

affinity_credits = Table(
    "affinity_credits",
    metadata,
    Column("user_id", BigInteger, primary_key=True, autoincrement=False),
    Column("creator_id", BigInteger, primary_key=True, autoincrement=False),
    Column("credit", Double, nullable=False),
)

affinity_totals = Table(
    "affinity_totals",
    metadata,
    Column("user_id", BigInteger, primary_key=True, autoincrement=False),
    Column("total", Double, nullable=False),
)

seen_videos = Table(
    "seen_videos",
    metadata,
    Column("user_id", BigInteger, primary_key=True, autoincrement=False),
    Column("video_id", BigInteger, primary_key=True, autoincrement=False),
    Column("seen_at", UtcDateTime, nullable=False),
    Index("ix_seen_videos_recency", "user_id", "seen_at", "video_id"),
)

_ACTIVE = text("status = 'active'")

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False),
    Column("version", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("metrics", JsonDocument, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ux_model_versions_name_version", "name", "version", unique=True),
    Index(
        "ux_model_versions_one_active",
        "name",
        unique=True,
        postgresql_where=_ACTIVE,
        sqlite_where=_ACTIVE,
    ),
)

model_scores = Table(
    "model_scores",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("version", String(64), primary_key=True),
    Column("video_id", BigInteger, primary_key=True, autoincrement=False),
    Column("score", Double, nullable=False),
)

processing_progress = Table(
    "processing_progress",
    metadata,
    Column("video_id", BigInteger, primary_key=True, autoincrement=False),
    Column("payload", Text, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

engagement_log = Table(
    "engagement_log",
    metadata,
    Column("event_id", EventId, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("user_id", BigInteger, nullable=False),
    Column("video_id", BigInteger, nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("watched_seconds", Double, nullable=True),
    Column("completion", Double, nullable=True),
    Column("channel", String(64), nullable=True),
    Column("variant", String(64), nullable=True),
    Index("ix_engagement_log_time", "occurred_at", "event_id"),
    Index("ix_engagement_log_user_time", "user_id", "occurred_at", "event_id"),
)

feed_cache = Table(
    "feed_cache",
    metadata,
    Column("user_id", BigInteger, primary_key=True, autoincrement=False),
    Column("variant", String(64), primary_key=True),
    Column("snapshot", Text, nullable=False),
    Column("expires_at", Double, nullable=False),
    Index("ix_feed_cache_expiry", "expires_at"),
)

trending_snapshots = Table(
    "trending_snapshots",
    metadata,
    Column("kind", String(16), primary_key=True),
    Column("window_hours", Double, primary_key=True),
    Column("snapshot", Text, nullable=False),
)

trending_leases = Table(
    "trending_leases",
    metadata,
    Column("kind", String(16), primary_key=True),
    Column("window_hours", Double, primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("expires_at", Double, nullable=False),
)
