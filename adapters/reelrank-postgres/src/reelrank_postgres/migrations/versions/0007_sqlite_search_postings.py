"""Impact-ordered postings for SQLite search, the design of revision 0006 on PostgreSQL.

SQLite gets the same two tables PostgreSQL got in revision 0006:

* ``search_postings``: one row per (term, video) with the field-weighted term frequency
  ``tf``, the video's field-weighted ``length`` and the BM25 ``impact``
  ``tf (k1 + 1) / (tf + k1 (1 - b + b length / reference_length))``. It is a
  ``WITHOUT ROWID`` table whose primary key ``(term, impact DESC, video_id)`` is the
  clustering order, so a term's best postings are the first rows of its range and a
  search reads them with the rows themselves (no second look-up).
  ``ix_search_postings_video`` on ``(video_id, term, tf, length)`` serves removals and
  the look-ups of a candidate's postings, from the index alone.
* ``search_stats`` (one row): documents, their total length, and the
  ``reference_length``, ``k1`` and ``b`` the stored impacts were computed with.

The back-fill reads the FTS5 rows, which keep every field in a column of its own (one
hex token per term), so the frequencies and lengths come out exactly as the writes
compute them (reelrank's tokenizer, :class:`~reelrank.SearchConfig`'s default field
weights, a ``#tag`` counted in the frequency but not in the length). The FTS5 table
stays: it ranks the searches that cannot use the postings (``use_impact_postings=False``,
or other ``k1`` / ``b`` than the postings were built with). PostgreSQL gets nothing here.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from reelrank import SearchConfig
from reelrank_postgres.migrations._postings import PostingsBackfill

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

_CHUNK = 20_000
_COLUMNS = ("title", "description", "hashtags", "sound", "creator")


def _backfill(bind: sa.Connection) -> None:
    config = SearchConfig()
    weights = {
        "title": config.title_weight,
        "description": config.description_weight,
        "hashtags": config.hashtag_weight,
        "sound": config.sound_weight,
        "creator": config.creator_weight,
    }
    postings = PostingsBackfill(bind, config)
    last = 0
    while True:
        rows = bind.execute(
            sa.text(
                f"SELECT rowid, {', '.join(_COLUMNS)} FROM search_documents "
                "WHERE rowid > :last ORDER BY rowid LIMIT :chunk"
            ),
            {"last": last, "chunk": _CHUNK},
        ).all()
        if not rows:
            break
        last = int(rows[-1][0])
        for row in rows:
            frequencies: dict[str, float] = {}
            length = 0.0
            # Fields in the order the writes sum them (title, description, hashtags,
            # sound, creator), so the float sums are the same.
            for name, column in zip(_COLUMNS, row[1:], strict=True):
                for token in (column or "").split():
                    term = bytes.fromhex(token[1:]).decode()
                    frequencies[term] = frequencies.get(term, 0.0) + weights[name]
                    if not term.startswith("#"):
                        length += weights[name]
            postings.add(int(row[0]), frequencies, length)
        postings.flush()
    postings.write_stats()
    if postings.documents:
        # The impact is part of the primary key: rows are rewritten, not updated in place.
        bind.execute(
            sa.text(
                "CREATE TEMPORARY TABLE search_postings_0007 AS SELECT p.term, "
                "p.tf * (s.k1 + 1) / (p.tf + s.k1 * (1 - s.b + s.b * p.length / "
                "s.reference_length)) AS impact, p.video_id, p.tf, p.length "
                "FROM search_postings AS p, search_stats AS s"
            )
        )
        bind.execute(sa.text("DELETE FROM search_postings"))
        bind.execute(
            sa.text(
                "INSERT INTO search_postings (term, impact, video_id, tf, length) "
                "SELECT term, impact, video_id, tf, length FROM temp.search_postings_0007 "
                "ORDER BY term, impact DESC, video_id"
            )
        )
        bind.execute(sa.text("DROP TABLE temp.search_postings_0007"))


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    op.execute(
        "CREATE TABLE search_postings (term TEXT NOT NULL, impact REAL NOT NULL, "
        "video_id INTEGER NOT NULL, tf REAL NOT NULL, length REAL NOT NULL, "
        "PRIMARY KEY (term, impact DESC, video_id)) WITHOUT ROWID"
    )
    # ``reference_length`` 0 means "not set yet": the first document written sets it.
    op.execute(
        "CREATE TABLE search_stats (id INTEGER PRIMARY KEY CHECK (id = 1), "
        "documents INTEGER NOT NULL, total_length REAL NOT NULL, "
        "reference_length REAL NOT NULL, k1 REAL NOT NULL, b REAL NOT NULL)"
    )
    _backfill(bind)
    op.execute(
        "CREATE INDEX ix_search_postings_video ON search_postings (video_id, term, tf, length)"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.drop_table("search_stats")
    op.drop_table("search_postings")
