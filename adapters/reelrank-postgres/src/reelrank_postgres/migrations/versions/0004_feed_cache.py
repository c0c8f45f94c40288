"""The shared feed-cache level: ranked snapshots (and remembered pages) every process sees.

One row per ``(user_id, variant)`` (the default feed's variant is stored as ``''``),
holding the snapshot as JSON and when it expires, in seconds since the Unix epoch. The
index on ``expires_at`` lets expired rows be purged without reading live ones.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "feed_cache",
        sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("variant", sa.String(64), primary_key=True),
        sa.Column("snapshot", sa.Text, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
    )
    op.create_index("ix_feed_cache_expiry", "feed_cache", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_feed_cache_expiry", table_name="feed_cache")
    op.drop_table("feed_cache")
