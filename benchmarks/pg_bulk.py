"""Loading the :mod:`search_corpus` catalog into PostgreSQL with COPY, for benchmark set-up.

Loading a million videos one ``put_video`` / ``index`` call at a time takes most of an
hour; COPY writes the same rows, in the adapter's own format, in a minute or two. This is
benchmark set-up, not an API: the rows are written straight into the tables that
migration ``head`` created, the term counts are built with the statements migration
0003 uses on existing documents, and the impact-ordered postings of migration 0006 are
written with the adapter's own analysis (its indexes dropped during the copy and built
after it).

Rows are written in video id order, as a catalog whose ids grow with time is written, so
the heap is ordered by id. The video with the ``i``-th smallest id is published ``i``
seconds after :data:`EPOCH` (the highest id is the newest); video ``row`` belongs to
creator ``creator_ranks[row] + 1`` and is ready.
"""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from search_corpus import Corpus

from reelrank import SearchConfig, SearchDocument

__all__ = ["EPOCH", "copy_catalog", "copy_search_documents", "creator_count", "vacuum_analyze"]

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
"""When the oldest corpus video was published."""


def creator_count(corpus: Corpus) -> int:
    """How many creators the corpus's videos may belong to (ids ``1..count``)."""
    return int(corpus.creator_ranks.max()) + 1 if len(corpus) else 0


def _raw(engine: Any) -> Any:
    """A driver connection without the adapter's statement timeout (COPY takes minutes)."""
    connection = engine.raw_connection()
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 0")
    return connection


def copy_search_documents(engine: Any, corpus: Corpus) -> float:
    """Write every video's search document, its impact-ordered postings, the statistics
    and the term counts; documents per second."""
    from reelrank_postgres import _search

    config = SearchConfig()
    started = time.perf_counter()
    connection = _raw(engine)
    postings = _raw(engine)
    order = np.argsort(corpus.video_ids, kind="stable").tolist()

    def document(row: int) -> SearchDocument:
        return SearchDocument(
            video_id=int(corpus.video_ids[row]),
            title=corpus.titles[row],
            hashtags=corpus.hashtags[row],
            sound_name=corpus.sound_names[row],
            creator_name=corpus.creator_names[row],
        )

    # Stored impacts only order each term's postings and bound the scores (the searches
    # score from tf and length), so the reference length may be a sample's mean.
    sample = [
        _search._weighted(_search._fields(document(row)), config)[1] for row in order[:20_000]
    ]
    reference = math.fsum(sample) / len(sample) if sample and math.fsum(sample) > 0 else 1.0
    k1, b = config.k1, config.b
    lengths: list[float] = []
    try:
        with connection.cursor() as cursor, postings.cursor() as posting_cursor:
            # Indexes build far faster than they take rows one by one (RUM above all):
            # drop them and build them again after the rows are in, as a bulk load would.
            cursor.execute("SELECT pg_get_indexdef(to_regclass('ix_search_documents_rum'))")
            (rum_index,) = cursor.fetchone()
            if rum_index:
                cursor.execute("DROP INDEX ix_search_documents_rum")
            posting_cursor.execute("SET maintenance_work_mem = '512MB'")
            posting_cursor.execute("ALTER TABLE search_postings DROP CONSTRAINT pk_search_postings")
            posting_cursor.execute("DROP INDEX ix_search_postings_impact")
            with (
                cursor.copy("COPY search_documents (video_id, document) FROM STDIN") as copy,
                posting_cursor.copy(
                    "COPY search_postings (term, video_id, impact, tf, length) FROM STDIN"
                ) as copy_postings,
            ):
                # In id order, as a catalog whose ids grow with time is written.
                for row in order:
                    searchable = document(row)
                    fields = _search._fields(searchable)
                    copy.write_row((searchable.video_id, _search._tsvector_literal(fields)))
                    frequencies, length = _search._weighted(fields, config)
                    lengths.append(length)
                    norm = k1 * (1.0 - b + b * length / reference)
                    for term, tf in frequencies.items():
                        impact = tf * (k1 + 1.0) / (tf + norm)
                        copy_postings.write_row((term, searchable.video_id, impact, tf, length))
            posting_cursor.execute(
                "INSERT INTO search_stats (id, documents, total_length, reference_length, k1, b) "
                "VALUES (1, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
                "documents = excluded.documents, total_length = excluded.total_length, "
                "reference_length = excluded.reference_length, k1 = excluded.k1, b = excluded.b",
                (len(lengths), math.fsum(lengths), reference, k1, b),
            )
            posting_cursor.execute(
                "ALTER TABLE search_postings ADD CONSTRAINT pk_search_postings "
                "PRIMARY KEY (video_id, term) INCLUDE (tf, length)"
            )
            posting_cursor.execute(
                "CREATE INDEX ix_search_postings_impact ON search_postings "
                "(term, impact DESC, video_id) INCLUDE (tf, length)"
            )
            cursor.execute(
                "INSERT INTO search_terms (term, videos) "
                "SELECT word, ndoc FROM ts_stat('SELECT document FROM search_documents')"
            )
            if rum_index:
                cursor.execute(rum_index)
        postings.commit()
        connection.commit()
    finally:
        connection.close()
        postings.close()
    vacuum_analyze(engine, "search_documents", "search_terms", "search_postings", "search_stats")
    return len(corpus) / (time.perf_counter() - started)


def copy_catalog(engine: Any, corpus: Corpus) -> float:
    """Write the corpus's creators and videos (ready, one second apart); videos per second."""
    started = time.perf_counter()
    order = np.argsort(corpus.video_ids, kind="stable")
    creators = creator_count(corpus)
    renditions = json.dumps([])
    connection = _raw(engine)
    try:
        with connection.cursor() as cursor:
            with cursor.copy("COPY creators (creator_id, handle, display_name) FROM STDIN") as copy:
                for creator in range(1, creators + 1):
                    copy.write_row((creator, f"creator{creator}", f"Creator {creator}"))
            with cursor.copy(
                "COPY videos (video_id, creator_id, duration_seconds, published_at, title, "
                "description, hashtags, sound_id, renditions, state) FROM STDIN"
            ) as copy:
                for position, row in enumerate(order.tolist()):
                    copy.write_row(
                        (
                            int(corpus.video_ids[row]),
                            int(corpus.creator_ranks[row]) + 1,
                            30.0,
                            EPOCH + timedelta(seconds=position),
                            corpus.titles[row][:300],
                            "",
                            json.dumps(list(corpus.hashtags[row])),
                            None,
                            renditions,
                            "ready",
                        )
                    )
        connection.commit()
    finally:
        connection.close()
    vacuum_analyze(engine, "creators", "videos")
    return len(corpus) / (time.perf_counter() - started)


def vacuum_analyze(engine: Any, *tables: str) -> None:
    """``VACUUM ANALYZE`` each table (outside a transaction, as VACUUM needs), again until
    its visibility map covers every page (for at most about 30 s), then ``CHECKPOINT``.

    Right after a bulk load autovacuum's own ANALYZE of the table holds a snapshot, and
    a VACUUM run meanwhile marks no page all-visible: index-only scans (the followed
    videos' ``LATERAL`` read) then fetch every row from the heap, as a served table that
    autovacuum has visited does not (at 1M videos, 3.8 against 7.8 ms a call).
    """
    from sqlalchemy import text

    all_visible = text(
        "SELECT relallvisible >= relpages FROM pg_class WHERE oid = to_regclass(:table)"
    )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in tables:
            connection.execute(text(f"VACUUM ANALYZE {table}"))
            for _ in range(60):
                if connection.execute(all_visible, {"table": table}).scalar_one():
                    break
                time.sleep(0.5)
                connection.execute(text(f"VACUUM {table}"))
        # The load and the vacuums dirtied every page of the tables: flushed now, not by a
        # checkpoint that would otherwise fall among the timed calls and slow them.
        connection.execute(text("CHECKPOINT"))
