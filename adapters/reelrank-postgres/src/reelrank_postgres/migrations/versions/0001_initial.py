"""Initial schema: catalog, engagement aggregates, seen marks, model registry,
processing progress and the full-text index.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from reelrank_postgres._schema import JsonDocument, UtcDateTime

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_READY = sa.text("state = 'ready'")
_ACTIVE = sa.text("status = 'active'")


def _id(name: str, **kwargs: object) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger, autoincrement=False, **kwargs)  # type: ignore[arg-type]


def upgrade() -> None:
    op.create_table(
        "creators",
        _id("creator_id", primary_key=True),
        sa.Column("handle", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
    )
    op.create_table(
        "videos",
        _id("video_id", primary_key=True),
        sa.Column(
            "creator_id", sa.BigInteger, sa.ForeignKey("creators.creator_id"), nullable=False
        ),
        sa.Column("duration_seconds", sa.Double, nullable=False),
        sa.Column("published_at", UtcDateTime, nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("hashtags", JsonDocument, nullable=False),
        _id("sound_id", nullable=True),
        sa.Column("renditions", JsonDocument, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
    )
    op.create_index(
        "ix_videos_ready_recency",
        "videos",
        ["published_at", "video_id"],
        postgresql_where=_READY,
        sqlite_where=_READY,
    )
    op.create_index(
        "ix_videos_creator_recency", "videos", ["creator_id", "published_at", "video_id"]
    )
    op.create_table(
        "follows",
        _id("user_id", primary_key=True),
        sa.Column(
            "creator_id",
            sa.BigInteger,
            sa.ForeignKey("creators.creator_id"),
            primary_key=True,
            autoincrement=False,
        ),
    )
    op.create_table(
        "engagement_events",
        sa.Column("event_id", sa.String(128), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        _id("user_id", nullable=False),
        _id("video_id", nullable=False),
        _id("creator_id", nullable=False),
        sa.Column("occurred_at", UtcDateTime, nullable=False),
        sa.Column("watched_seconds", sa.Double, nullable=True),
        sa.Column("completion", sa.Double, nullable=True),
        sa.Column("channel", sa.String(64), nullable=True),
        sa.Column("variant", sa.String(64), nullable=True),
    )
    op.create_table(
        "video_stats",
        _id("video_id", primary_key=True),
        sa.Column("views", sa.BigInteger, nullable=False),
        sa.Column("completion_sum", sa.Double, nullable=False),
        sa.Column("likes", sa.BigInteger, nullable=False),
        sa.Column("shares", sa.BigInteger, nullable=False),
        sa.Column("comments", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_video_stats_popularity", "video_stats", ["views", "video_id"])
    op.create_table(
        "video_likes", _id("video_id", primary_key=True), _id("user_id", primary_key=True)
    )
    op.create_table(
        "affinity_credits",
        _id("user_id", primary_key=True),
        _id("creator_id", primary_key=True),
        sa.Column("credit", sa.Double, nullable=False),
    )
    op.create_table(
        "affinity_totals",
        _id("user_id", primary_key=True),
        sa.Column("total", sa.Double, nullable=False),
    )
    op.create_table(
        "seen_videos",
        _id("user_id", primary_key=True),
        _id("video_id", primary_key=True),
        sa.Column("seen_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_seen_videos_recency", "seen_videos", ["user_id", "seen_at", "video_id"])
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("metrics", JsonDocument, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_index(
        "ux_model_versions_name_version", "model_versions", ["name", "version"], unique=True
    )
    op.create_index(
        "ux_model_versions_one_active",
        "model_versions",
        ["name"],
        unique=True,
        postgresql_where=_ACTIVE,
        sqlite_where=_ACTIVE,
    )
    op.create_table(
        "model_scores",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("version", sa.String(64), primary_key=True),
        _id("video_id", primary_key=True),
        sa.Column("score", sa.Double, nullable=False),
    )
    op.create_table(
        "processing_progress",
        _id("video_id", primary_key=True),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.create_table(
            "search_documents",
            _id("video_id", primary_key=True),
            sa.Column("document", postgresql.TSVECTOR, nullable=False),
        )
        op.create_index(
            "ix_search_documents_document",
            "search_documents",
            ["document"],
            postgresql_using="gin",
        )
    else:
        # rowid is the video id; every column holds encoded index terms (see _search.py).
        op.execute(
            "CREATE VIRTUAL TABLE search_documents USING fts5("
            "title, description, hashtags, sound, creator)"
        )


def downgrade() -> None:
    for table in (
        "search_documents",
        "processing_progress",
        "model_scores",
        "model_versions",
        "seen_videos",
        "affinity_totals",
        "affinity_credits",
        "video_likes",
        "video_stats",
        "engagement_events",
        "follows",
        "videos",
        "creators",
    ):
        op.drop_table(table)
