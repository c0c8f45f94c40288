"""What the back-fills of revisions 0006 (PostgreSQL) and 0007 (SQLite) share: writing
each document's postings and, at the end, the ``search_stats`` row.

Each revision reads its own documents (``tsvector`` on PostgreSQL, FTS5 columns on
SQLite) into term frequencies and a length, and stores the impacts its own way (an
update in place on PostgreSQL; on SQLite, where the impact is part of the key, by
rewriting the rows).
"""

from __future__ import annotations

import sqlalchemy as sa

from reelrank import SearchConfig

__all__ = ["PostingsBackfill"]


class PostingsBackfill:
    """Postings of back-filled documents, with impact 0 until the statistics exist."""

    def __init__(self, bind: sa.Connection, config: SearchConfig) -> None:
        self._bind = bind
        self._config = config
        self._rows: list[dict[str, object]] = []
        self.documents = 0
        """Documents added so far."""
        self.total_length = 0.0
        """Their lengths summed in the order they were added."""

    def add(self, video_id: int, frequencies: dict[str, float], length: float) -> None:
        """One document: its terms' field-weighted frequencies (only those above zero
        are kept) and its field-weighted length."""
        self.documents += 1
        self.total_length += length
        self._rows.extend(
            {"term": term, "video_id": video_id, "tf": tf, "length": length}
            for term, tf in frequencies.items()
            if tf > 0.0
        )

    def flush(self) -> None:
        """Insert the postings added since the last flush."""
        if self._rows:
            self._bind.execute(
                sa.text(
                    "INSERT INTO search_postings (term, video_id, impact, tf, length) "
                    "VALUES (:term, :video_id, 0, :tf, :length)"
                ),
                self._rows,
            )
            self._rows.clear()

    def write_stats(self) -> None:
        """Insert the ``search_stats`` row: the documents, their total length, and their
        mean length as the reference the impacts are then computed with."""
        documents, total = self.documents, self.total_length
        reference = total / documents if documents and total > 0 else 0.0
        self._bind.execute(
            sa.text(
                "INSERT INTO search_stats (id, documents, total_length, reference_length, "
                "k1, b) VALUES (1, :documents, :total, :reference, :k1, :b)"
            ),
            {
                "documents": documents,
                "total": total,
                "reference": reference,
                "k1": self._config.k1,
                "b": self._config.b,
            },
        )
