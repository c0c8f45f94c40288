"""The feed's followed read from one index, in one round trip, with its plan pinned.

* ``ix_videos_ready_creator_recency_sound`` replaces ``ix_videos_ready_creator_recency``
  (ready videos on ``(creator_id, published_at, video_id)``) with the same keys and the
  ``sound_id`` beside them: ``INCLUDE (sound_id)`` on PostgreSQL, a fourth key column on
  SQLite, which has no ``INCLUDE``. The feed ranks a followed video by its id, creator,
  sound and publication time, so its read finds them all in the index (an index-only
  scan once the table is vacuumed) instead of fetching the kept videos' table rows.
* On PostgreSQL, the function ``reelrank_followed_candidates(user_id, limit)`` runs
  that read (:meth:`~reelrank_postgres.SqlCatalog.followed_candidates`): per followed
  creator its newest ``limit`` ready videos from the index (a ``LATERAL`` subquery), the
  newest ``limit`` of those, and their statistics by primary key. It is declared with
  ``SET enable_bitmapscan = off``, which holds while it runs (its plans included): with
  bitmap scans allowed, statistics saying a creator has fewer videos than ``limit``, or
  a visibility map not yet set after a bulk load, make the planner fetch every video of
  every followed creator by bitmap and sort them all (28 ms instead of 2 at 1M videos).
  Before, the statement ran in a transaction of its own only for a ``SET LOCAL`` of the
  same setting: four round trips (``BEGIN``, ``SET LOCAL``, the read, ``ROLLBACK``)
  where a call of the function is one. It is also declared with ``SET plan_cache_mode
  = force_custom_plan``: PL/pgSQL would otherwise keep a generic plan after five calls
  of a session, planned without the user's follows or the limit (a ``LIMIT`` of
  unknown size counts as a tenth of the rows), and such a plan joined the statistics by
  hash over the whole ``video_stats`` table on a small catalog.

The index is built in the migration's transaction, which blocks writes to ``videos``
while it builds (5 s for a million videos). :func:`~reelrank_postgres.migrate` runs the
revisions in one transaction, in which PostgreSQL refuses ``CREATE INDEX
CONCURRENTLY``; an operator who must not block writes builds the index by hand first,
with :data:`CREATE_CONCURRENTLY`, and the migration then finds it (``IF NOT EXISTS``).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None

COVERING_INDEX = "ix_videos_ready_creator_recency_sound"
REPLACED_INDEX = "ix_videos_ready_creator_recency"
_KEYS = "creator_id, published_at, video_id"
_READY = "WHERE state = 'ready'"
CREATE_CONCURRENTLY = (
    f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {COVERING_INDEX} "
    f"ON videos ({_KEYS}) INCLUDE (sound_id) {_READY}"
)
"""The PostgreSQL index of this revision, built without blocking writes (outside a
transaction block), for an operator to run before :func:`~reelrank_postgres.migrate`."""

FOLLOWED_CANDIDATES_FUNCTION = "reelrank_followed_candidates"
_CREATE_FUNCTION = f"""
CREATE FUNCTION {FOLLOWED_CANDIDATES_FUNCTION}(p_user_id bigint, p_limit integer)
RETURNS TABLE (
    video_id bigint, creator_id bigint, sound_id bigint, published_at timestamptz,
    views bigint, completion_sum double precision, likes bigint, shares bigint,
    comments bigint
)
LANGUAGE plpgsql STABLE
SET enable_bitmapscan = off
SET plan_cache_mode = force_custom_plan
AS $function$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT newest.video_id, newest.creator_id, newest.sound_id, newest.published_at,
           stats.views, stats.completion_sum, stats.likes, stats.shares, stats.comments
    FROM (
        SELECT of_creator.video_id, of_creator.published_at, of_creator.sound_id,
               followed.creator_id
        FROM follows AS followed
        CROSS JOIN LATERAL (
            SELECT videos.video_id, videos.published_at, videos.sound_id
            FROM videos
            WHERE videos.creator_id = followed.creator_id AND videos.state = 'ready'
            ORDER BY videos.published_at DESC, videos.video_id DESC
            LIMIT p_limit
        ) AS of_creator
        WHERE followed.user_id = p_user_id
        ORDER BY of_creator.published_at DESC, of_creator.video_id DESC
        LIMIT p_limit
    ) AS newest
    LEFT JOIN video_stats AS stats ON stats.video_id = newest.video_id
    ORDER BY newest.published_at DESC, newest.video_id DESC;
END
$function$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE INDEX IF NOT EXISTS {COVERING_INDEX} "
            f"ON videos ({_KEYS}) INCLUDE (sound_id) {_READY}"
        )
        op.execute(_CREATE_FUNCTION)
    else:
        op.execute(f"CREATE INDEX {COVERING_INDEX} ON videos ({_KEYS}, sound_id) {_READY}")
    op.execute(f"DROP INDEX {REPLACED_INDEX}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION {FOLLOWED_CANDIDATES_FUNCTION}(bigint, integer)")
    op.execute(f"CREATE INDEX {REPLACED_INDEX} ON videos ({_KEYS}) {_READY}")
    op.execute(f"DROP INDEX {COVERING_INDEX}")
