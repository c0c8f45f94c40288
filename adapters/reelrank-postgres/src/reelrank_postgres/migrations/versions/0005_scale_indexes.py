"""Indexes for catalogs of a million videos: followed creators' videos, and RUM search.

* ``ix_videos_ready_creator_recency`` replaces ``ix_videos_creator_recency``: ready
  videos only, on ``(creator_id, published_at, video_id)``. Read backwards for one
  creator, it yields that creator's newest ready videos in order, so
  ``followed_videos`` stops after ``limit`` rows per followed creator instead of
  fetching and sorting all their videos.
* On PostgreSQL, when the ``rum`` extension is installed on the server (Debian/Ubuntu
  package ``postgresql-15-rum``) and this role may create it, a RUM index
  ``ix_search_documents_rum`` (``rum_tsvector_ops``, which keeps term positions in the
  index) lets search return the best-ranked matches in index order
  (``ORDER BY document <=> query LIMIT n``) without ranking every match on the heap.
  Without the extension the migration creates nothing for search and the adapter keeps
  its GIN path; installing the extension later and running this migration's statement
  by hand (see the PostgreSQL adapter's docs) switches search over. The GIN index stays
  either way: it serves the fallback path and is what RUM is checked against.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

_READY = sa.text("state = 'ready'")

RUM_INDEX = "ix_search_documents_rum"
# Partial on a predicate every row meets (video ids are positive): only a query that says
# ``video_id > 0`` may use it, so the planner never answers the adapter's other ``@@``
# searches with a RUM bitmap scan, which costs about 0.8 s for a 64-way OR at 1M videos
# where GIN's costs milliseconds.
CREATE_RUM_INDEX = (
    f"CREATE INDEX IF NOT EXISTS {RUM_INDEX} ON search_documents "
    "USING rum (document rum_tsvector_ops) WHERE video_id > 0"
)


def _create_rum_extension(bind: sa.Connection) -> bool:
    """Create the ``rum`` extension if the server has it; whether it is now there."""
    installed = bind.execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'rum'")).first()
    if installed is not None:
        return True
    available = bind.execute(
        sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'rum'")
    ).first()
    if available is None:
        return False
    try:
        # A savepoint: a role that may not create extensions leaves the migration going.
        with bind.begin_nested():
            bind.execute(sa.text("CREATE EXTENSION rum"))
    except sa.exc.DBAPIError:
        return False
    return True


def upgrade() -> None:
    op.drop_index("ix_videos_creator_recency", table_name="videos")
    op.create_index(
        "ix_videos_ready_creator_recency",
        "videos",
        ["creator_id", "published_at", "video_id"],
        postgresql_where=_READY,
        sqlite_where=_READY,
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql" and _create_rum_extension(bind):
        op.execute(CREATE_RUM_INDEX)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # The extension stays: other databases' objects may use it.
        op.execute(f"DROP INDEX IF EXISTS {RUM_INDEX}")
    op.drop_index("ix_videos_ready_creator_recency", table_name="videos")
    op.create_index(
        "ix_videos_creator_recency", "videos", ["creator_id", "published_at", "video_id"]
    )
