"""Trending snapshots every process shares: the last result of each kind and window.

``trending_snapshots`` holds one row per ``(kind, window_hours)`` with the
:class:`~reelrank.TrendingSnapshot` as JSON (exact: floats are written in their shortest
round-trip form), so every worker and replica serves the same stored result instead of
computing its own. ``trending_leases`` holds the lease of whoever is computing the next
result of a kind and window: its ``owner`` token and when it expires, in seconds since
the Unix epoch.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "trending_snapshots",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("window_hours", sa.Double, primary_key=True),
        sa.Column("snapshot", sa.Text, nullable=False),
    )
    op.create_table(
        "trending_leases",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("window_hours", sa.Double, primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("trending_leases")
    op.drop_table("trending_snapshots")
