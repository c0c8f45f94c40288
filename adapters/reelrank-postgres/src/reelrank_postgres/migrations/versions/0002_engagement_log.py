"""The engagement log: individual events by time, for trending and creator
recommendations.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from reelrank_postgres._schema import EventId, UtcDateTime

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "engagement_log",
        sa.Column("event_id", EventId, primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("video_id", sa.BigInteger, nullable=False),
        sa.Column("occurred_at", UtcDateTime, nullable=False),
        sa.Column("watched_seconds", sa.Double, nullable=True),
        sa.Column("completion", sa.Double, nullable=True),
        sa.Column("channel", sa.String(64), nullable=True),
        sa.Column("variant", sa.String(64), nullable=True),
    )
    op.create_index("ix_engagement_log_time", "engagement_log", ["occurred_at", "event_id"])
    op.create_index(
        "ix_engagement_log_user_time", "engagement_log", ["user_id", "occurred_at", "event_id"]
    )


def downgrade() -> None:
    op.drop_table("engagement_log")
