"""Search term statistics: how many videos hold each index term, for the prefix cap.

A prefix term expands to at most ``SearchConfig.max_prefix_expansions`` indexed terms,
the ones held by the most videos (ties: the alphabetically smaller term), as in the
in-memory index. Neither a GIN index nor FTS5 can list a prefix's terms by document
count cheaply (``ts_stat`` and ``fts5vocab`` read every posting), so the counts are kept
in ``search_terms``, written with every indexed or removed document. Terms sort by code
point on both dialects (``COLLATE "C"`` on PostgreSQL, SQLite's BINARY collation), as
Python sorts strings.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(
            'CREATE TABLE search_terms (term TEXT COLLATE "C" PRIMARY KEY, videos BIGINT NOT NULL)'
        )
        op.execute(
            "INSERT INTO search_terms (term, videos) "
            "SELECT word, ndoc FROM ts_stat('SELECT document FROM search_documents')"
        )
        return
    op.execute(
        "CREATE TABLE search_terms (term TEXT PRIMARY KEY, videos INTEGER NOT NULL) WITHOUT ROWID"
    )
    # FTS5 tokens are the hex of the term's UTF-8 bytes (see _search.py); the vocabulary
    # table's "doc" column counts the rows holding each.
    op.execute(
        "CREATE VIRTUAL TABLE temp.search_vocab_0003 USING fts5vocab(main, search_documents, row)"
    )
    rows = bind.execute(sa.text("SELECT term, doc FROM temp.search_vocab_0003")).all()
    op.execute("DROP TABLE temp.search_vocab_0003")
    if rows:
        bind.execute(
            sa.text("INSERT INTO search_terms (term, videos) VALUES (:term, :videos)"),
            [{"term": bytes.fromhex(token[1:]).decode(), "videos": doc} for token, doc in rows],
        )


def downgrade() -> None:
    op.drop_table("search_terms")
