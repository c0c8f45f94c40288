"""Impact-ordered postings for PostgreSQL search: BM25 top-k without ranking every match.

``search_postings`` holds one row per (term, video) with the field-weighted term
frequency ``tf`` and the video's field-weighted ``length``, computed as
:class:`~reelrank.InMemorySearchIndex` computes them (reelrank's tokenizer and
:class:`~reelrank.SearchConfig`'s default field weights), and ``impact``: the BM25
term-frequency part ``tf (k1 + 1) / (tf + k1 (1 - b + b length / reference_length))``.
Walked through ``ix_search_postings_impact`` a term's best postings come first, so a
search reads the postings that can reach its top ``limit`` and stops (see
``reelrank_postgres._search``). The primary key ``(video_id, term)`` serves removals and
the look-ups of a candidate's other query terms.

``search_stats`` (one row) keeps what BM25 needs from the whole index, written with every
document: how many documents there are and their total length (so idf and the mean length
are the in-memory index's, exactly), and the ``reference_length``, ``k1`` and ``b`` the
stored impacts were computed with.

The back-fill reads the existing ``tsvector`` documents: weight A is the title, B the
hashtags, D the description; C holds the sound name and then the creator's name (in that
order), split by the length of the creator's name read from ``videos`` and ``creators``.
A document whose video is not in the catalog has its C positions counted as the creator's.
SQLite keeps its FTS5 path and gets nothing here.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from reelrank import SearchConfig, tokenize
from reelrank_postgres.migrations._postings import PostingsBackfill

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

_CHUNK = 20_000


def _backfill(bind: sa.Connection) -> None:
    config = SearchConfig()
    by_label = {
        "A": config.title_weight,
        "B": config.hashtag_weight,
        "D": config.description_weight,
    }
    postings = PostingsBackfill(bind, config)
    last = 0
    while True:
        rows = bind.execute(
            sa.text(
                "SELECT d.video_id, coalesce(c.handle || ' ' || c.display_name, '') AS creator "
                "FROM search_documents AS d "
                "LEFT JOIN videos AS v ON v.video_id = d.video_id "
                "LEFT JOIN creators AS c ON c.creator_id = v.creator_id "
                "WHERE d.video_id > :last ORDER BY d.video_id LIMIT :chunk"
            ),
            {"last": last, "chunk": _CHUNK},
        ).all()
        if not rows:
            break
        last = int(rows[-1].video_id)
        lexemes = bind.execute(
            sa.text(
                "SELECT d.video_id, u.lexeme, u.positions, u.weights "
                "FROM search_documents AS d, unnest(d.document) AS u "
                "WHERE d.video_id = ANY(CAST(:ids AS bigint[]))"
            ),
            {"ids": [int(row.video_id) for row in rows]},
        ).all()
        by_video: dict[int, list[tuple[str, list[int], list[str]]]] = {}
        for video_id, lexeme, positions, weights in lexemes:
            by_video.setdefault(int(video_id), []).append((lexeme, positions, weights))
        for row in rows:
            terms = by_video.get(int(row.video_id), [])
            creator_tokens = len(tokenize(row.creator)) if row.creator else None
            c_positions = sorted(
                position
                for _, positions, weights in terms
                for position, weight in zip(positions, weights, strict=True)
                if weight == "C"
            )
            if creator_tokens is None:
                creator_from = 0
            else:
                creator_from = (
                    c_positions[-creator_tokens] if 0 < creator_tokens <= len(c_positions) else 0
                )
            frequencies: dict[str, float] = {}
            length = 0.0
            for lexeme, positions, weights in terms:
                tf = 0.0
                for position, weight in zip(positions, weights, strict=True):
                    if weight == "C":
                        tf += (
                            config.creator_weight
                            if position >= creator_from
                            else config.sound_weight
                        )
                    else:
                        tf += by_label[weight]
                if tf > 0.0:
                    frequencies[lexeme] = tf
                    if not lexeme.startswith("#"):
                        length += tf
            postings.add(int(row.video_id), frequencies, length)
        postings.flush()
    postings.write_stats()
    if postings.documents:
        bind.execute(
            sa.text(
                "UPDATE search_postings AS p SET impact = p.tf * (s.k1 + 1) / "
                "(p.tf + s.k1 * (1 - s.b + s.b * p.length / s.reference_length)) "
                "FROM search_stats AS s"
            )
        )


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute(
        'CREATE TABLE search_postings (term TEXT COLLATE "C" NOT NULL, '
        "video_id BIGINT NOT NULL, impact REAL NOT NULL, tf REAL NOT NULL, "
        "length DOUBLE PRECISION NOT NULL, "
        "CONSTRAINT pk_search_postings PRIMARY KEY (video_id, term) INCLUDE (tf, length))"
    )
    # ``reference_length`` 0 means "not set yet": the first document written sets it.
    op.execute(
        "CREATE TABLE search_stats (id SMALLINT PRIMARY KEY CHECK (id = 1), "
        "documents BIGINT NOT NULL, total_length DOUBLE PRECISION NOT NULL, "
        "reference_length DOUBLE PRECISION NOT NULL, k1 DOUBLE PRECISION NOT NULL, "
        "b DOUBLE PRECISION NOT NULL)"
    )
    _backfill(bind)
    op.execute(
        "CREATE INDEX ix_search_postings_impact ON search_postings "
        "(term, impact DESC, video_id) INCLUDE (tf, length)"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_table("search_stats")
    op.drop_table("search_postings")
