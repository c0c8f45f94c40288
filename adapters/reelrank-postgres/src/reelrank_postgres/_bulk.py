"""Bulk loading a catalog: ``COPY`` on PostgreSQL, ``executemany`` on SQLite, one transaction.

:func:`bulk_load` writes what the per-row API writes for the same rows, search index
included, only in bulk: the result is the one :meth:`SqlCatalog.put_creator`,
:meth:`SqlCatalog.put_video`, :meth:`SqlCatalog.follow` and indexing each video with
:meth:`VideoSearch.index_video <reelrank.VideoSearch.index_video>` would leave. On
PostgreSQL every table is copied (psycopg 3 ``cursor.copy``) into a temporary staging
table and merged from there with ``INSERT ... ON CONFLICT``, so loading ids that exist
replaces them as the per-row upserts do; on SQLite the per-row statements run as
``executemany`` batches.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select, text

from reelrank.models import Creator, ProcessingState, SearchDocument, Video
from reelrank.stores import SearchConfig
from reelrank.stores.adapter import InvalidInputError, check_id

from ._base import SqlStore
from ._catalog import _video_row
from ._errors import store_errors
from ._schema import creators as creators_table
from ._schema import follows as follows_table
from ._schema import videos as videos_table
from ._search import (
    _COUNT_CHANGE,
    _COUNT_DROP,
    _FTS_COLUMNS,
    _POSTINGS_IMPACT,
    _SQLITE_STATS_CHANGE,
    _STATS_CHANGE,
    _fields,
    _fts_terms,
    _fts_token,
    _tsvector_literal,
    _weighted,
)

__all__ = ["BulkLoadCounts", "BulkProgress", "bulk_load"]

BulkProgress = Callable[[str, int], None]
"""Called as ``progress(table, rows)`` after each batch of ``rows`` written to ``table``
(``"creators"``, ``"videos"``, ``"follows"``, ``"search"``)."""

DocumentOf = Callable[[Video], SearchDocument | None]
"""A video's search document, or ``None`` for a video that leaves the index."""

_VIDEO_COLUMNS = tuple(column.name for column in videos_table.columns)
_READ_CHUNK = 500


@dataclass(frozen=True, slots=True)
class BulkLoadCounts:
    """What one :func:`bulk_load` wrote."""

    creators: int
    """Creators inserted or replaced."""
    videos: int
    """Videos inserted or replaced."""
    follows: int
    """Follows given (following twice is one follow, as with :meth:`SqlCatalog.follow`)."""
    indexed: int
    """Ready videos whose search documents were written; the others' were dropped."""


def _no_progress(table: str, rows: int) -> None:
    del table, rows


def _check_all(
    creators: Iterable[Creator], videos: Iterable[Video], follows: Iterable[tuple[int, int]]
) -> tuple[dict[int, Creator], dict[int, tuple[int, Video]], list[tuple[int, tuple[int, int]]]]:
    """The rows by id (a later row replaces an earlier one, as upserts do), each with its
    position in the input for error messages."""
    by_creator: dict[int, Creator] = {}
    for number, creator in enumerate(creators):
        if not isinstance(creator, Creator):
            raise InvalidInputError(f"creators[{number}]", "must be a Creator")
        by_creator[creator.creator_id] = creator
    by_video: dict[int, tuple[int, Video]] = {}
    for number, video in enumerate(videos):
        if not isinstance(video, Video):
            raise InvalidInputError(f"videos[{number}]", "must be a Video")
        by_video[video.video_id] = (number, video)
    pairs: list[tuple[int, tuple[int, int]]] = []
    for number, pair in enumerate(follows):
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise InvalidInputError(f"follows[{number}]", "must be a (user_id, creator_id) pair")
        check_id(f"follows[{number}].user_id", pair[0])
        check_id(f"follows[{number}].creator_id", pair[1])
        pairs.append((number, pair))
    return by_creator, by_video, pairs


def _known_creators(
    connection: Connection, loaded: Mapping[int, Creator], wanted: Iterable[int]
) -> dict[int, Creator]:
    """``loaded`` plus the creators among ``wanted`` that the database holds already."""
    missing = sorted(set(wanted) - set(loaded))
    known = dict(loaded)
    for start in range(0, len(missing), _READ_CHUNK):
        chunk = missing[start : start + _READ_CHUNK]
        rows = connection.execute(
            select(creators_table).where(creators_table.c.creator_id.in_(chunk))
        ).all()
        for row in rows:
            known[row.creator_id] = Creator(
                creator_id=row.creator_id, handle=row.handle, display_name=row.display_name
            )
    return known


def bulk_load(
    engine: Engine,
    *,
    creators: Iterable[Creator] = (),
    videos: Iterable[Video] = (),
    follows: Iterable[tuple[int, int]] = (),
    sound_names: Mapping[int, str] | None = None,
    progress: BulkProgress | None = None,
    batch_rows: int = 10_000,
) -> BulkLoadCounts:
    """Load creators, videos (renditions and hashtags included) and follows in one
    transaction, and index the ready videos for search.

    The database ends as the per-row API would leave it: every creator put with
    :meth:`SqlCatalog.put_creator`, then every video with :meth:`SqlCatalog.put_video`
    and indexed with :meth:`VideoSearch.index_video <reelrank.VideoSearch.index_video>`
    (creator from this load or the database, sound name from ``sound_names`` by
    ``sound_id``; a video that is not ready is dropped from the index), then every
    follow with :meth:`SqlCatalog.follow`. The ``search_terms`` counts behind prefix
    search move with the documents written and replaced, so the search index reads
    as if every video had been indexed one by one.

    Nothing is written unless everything is: a video or follow naming a creator that
    is neither loaded nor in the database raises :class:`~reelrank.InvalidInputError`
    naming ``videos[i].creator_id`` or ``follows[i].creator_id`` (``i`` the row's
    position) before the first statement, and a database failure rolls the whole load
    back and raises :class:`~reelrank.StoreError` (``store="catalog"``).

    ``progress(table, rows)`` is called after each batch of at most ``batch_rows`` rows
    (for a progress bar). The search index is written by this call: do not index the
    same videos again through :class:`~reelrank_postgres.SqlSearchIndex`.
    """
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
        raise InvalidInputError("batch_rows", f"must be an int >= 1, got {batch_rows!r}")
    SqlStore(engine)  # checks the engine's dialect and the schema revision
    report = progress or _no_progress
    names = dict(sound_names or {})
    by_creator, by_video, pairs = _check_all(creators, videos, follows)
    postgres = engine.dialect.name == "postgresql"
    with store_errors("catalog", "bulk_load"), engine.begin() as connection:
        wanted = [video.creator_id for _, video in by_video.values()]
        wanted += [pair[1] for _, pair in pairs]
        known = _known_creators(connection, by_creator, wanted)
        for number, video in by_video.values():
            if video.creator_id not in known:
                raise InvalidInputError(
                    f"videos[{number}].creator_id", f"unknown creator {video.creator_id}"
                )
        for number, (_, creator_id) in pairs:
            if creator_id not in known:
                raise InvalidInputError(
                    f"follows[{number}].creator_id", f"unknown creator {creator_id}"
                )

        def document(video: Video) -> SearchDocument | None:
            # Built batch by batch as the index is written, not all at once: a million
            # documents would hold as much memory as the videos themselves.
            if video.state is not ProcessingState.READY:
                return None
            sound = "" if video.sound_id is None else names.get(video.sound_id, "")
            return SearchDocument.from_video(
                video, creator=known[video.creator_id], sound_name=sound
            )

        loaded = [video for _, video in by_video.values()]
        writer = _PostgresWriter if postgres else _SqliteWriter
        loader = writer(connection, report, batch_rows)
        loader.creators(list(by_creator.values()))
        loader.videos(loaded)
        loader.follows(list(dict.fromkeys(pair for _, pair in pairs)))
        loader.search(loaded, document)
    return BulkLoadCounts(
        creators=len(by_creator),
        videos=len(by_video),
        follows=len(pairs),
        indexed=sum(1 for video in loaded if video.state is ProcessingState.READY),
    )


class _Writer:
    def __init__(self, connection: Connection, report: BulkProgress, batch_rows: int) -> None:
        # The field weights search postings are written with (the in-memory default).
        self._config = SearchConfig()
        self._connection = connection
        self._report = report
        self._batch = batch_rows

    def _batches(self, rows: Iterable[Any]) -> Iterator[list[Any]]:
        iterator = iter(rows)
        while batch := list(itertools.islice(iterator, self._batch)):
            yield batch


class _SqliteWriter(_Writer):
    """The per-row API's statements, as ``executemany`` batches."""

    def _upsert(self, table: str, rows: Iterable[dict[str, Any]], statement: Any) -> None:
        for batch in self._batches(rows):
            self._connection.execute(statement, batch)
            self._report(table, len(batch))

    def creators(self, rows: list[Creator]) -> None:
        from sqlalchemy.dialects.sqlite import insert

        statement = insert(creators_table)
        upsert = statement.on_conflict_do_update(
            index_elements=[creators_table.c.creator_id],
            set_={
                "handle": statement.excluded.handle,
                "display_name": statement.excluded.display_name,
            },
        )
        self._upsert("creators", (creator.model_dump() for creator in rows), upsert)

    def videos(self, rows: list[Video]) -> None:
        from sqlalchemy.dialects.sqlite import insert

        statement = insert(videos_table)
        upsert = statement.on_conflict_do_update(
            index_elements=[videos_table.c.video_id],
            set_={name: statement.excluded[name] for name in _VIDEO_COLUMNS[1:]},
        )
        self._upsert("videos", (_video_row(video) for video in rows), upsert)

    def follows(self, rows: list[tuple[int, int]]) -> None:
        from sqlalchemy.dialects.sqlite import insert

        statement = insert(follows_table).on_conflict_do_nothing()
        values = ({"user_id": user_id, "creator_id": creator_id} for user_id, creator_id in rows)
        self._upsert("follows", values, statement)

    def search(self, videos: list[Video], document: DocumentOf) -> None:
        connection = self._connection
        deltas: Counter[str] = Counter()
        # Impact-ordered postings (migration 0007): staged with their frequencies and
        # lengths, written once the whole-index statistics they are scored with are known.
        postings = bool(
            connection.execute(
                text(
                    "SELECT count(*) FROM sqlite_master "
                    "WHERE type = 'table' AND name = 'search_postings'"
                )
            ).scalar_one()
        )
        if postings:
            connection.execute(
                text(
                    "CREATE TEMPORARY TABLE reelrank_bulk_postings "
                    "(term TEXT, video_id INTEGER, tf REAL, length REAL)"
                )
            )
        removed_lengths: list[float] = []
        added_lengths: list[float] = []
        for batch in self._batches(videos):
            old: dict[int, set[str]] = {}
            for start in range(0, len(batch), _READ_CHUNK):
                chunk = [video.video_id for video in batch[start : start + _READ_CHUNK]]
                marks = ", ".join(f":v{i}" for i in range(len(chunk)))
                rows = connection.execute(
                    text(
                        f"SELECT rowid, {', '.join(_FTS_COLUMNS)} FROM search_documents "
                        f"WHERE rowid IN ({marks})"
                    ),
                    {f"v{i}": video_id for i, video_id in enumerate(chunk)},
                ).all()
                old.update({int(row[0]): _fts_terms(row[1:]) for row in rows})
            if old:
                connection.execute(
                    text("DELETE FROM search_documents WHERE rowid = :video_id"),
                    [{"video_id": video_id} for video_id in old],
                )
                if postings:
                    removed_lengths += self._drop_postings(list(old))
            inserts = []
            staged: list[dict[str, Any]] = []
            for video in batch:
                video_id = video.video_id
                searchable = document(video)
                new: set[str] = set()
                if searchable is not None:
                    fields = _fields(searchable)
                    new = {term for terms in fields.values() for term in terms}
                    inserts.append(
                        {
                            "video_id": video_id,
                            **{
                                name: " ".join(_fts_token(term) for term in fields[name])
                                for name in _FTS_COLUMNS
                            },
                        }
                    )
                    if postings:
                        frequencies, length = _weighted(fields, self._config)
                        added_lengths.append(length)
                        staged.extend(
                            {"term": term, "video_id": video_id, "tf": tf, "length": length}
                            for term, tf in frequencies.items()
                        )
                _count(deltas, old.get(video_id, set()), new)
            if inserts:
                connection.execute(
                    text(
                        f"INSERT INTO search_documents (rowid, {', '.join(_FTS_COLUMNS)}) "
                        f"VALUES (:video_id, {', '.join(':' + name for name in _FTS_COLUMNS)})"
                    ),
                    inserts,
                )
            if staged:
                connection.execute(
                    text(
                        "INSERT INTO temp.reelrank_bulk_postings (term, video_id, tf, length) "
                        "VALUES (:term, :video_id, :tf, :length)"
                    ),
                    staged,
                )
            self._report("search", len(batch))
        if postings:
            added = math.fsum(added_lengths)
            connection.execute(
                _SQLITE_STATS_CHANGE,
                {
                    "documents": len(added_lengths) - len(removed_lengths),
                    "removed": math.fsum(removed_lengths),
                    "added": added,
                    "reference": added / len(added_lengths) if added_lengths else 0.0,
                    "k1": self._config.k1,
                    "b": self._config.b,
                },
            )
            connection.execute(
                text(
                    "INSERT INTO search_postings (term, impact, video_id, tf, length) "
                    f"SELECT p.term, {_POSTINGS_IMPACT}, p.video_id, p.tf, p.length "
                    "FROM temp.reelrank_bulk_postings AS p, search_stats AS s "
                    "ORDER BY p.term, 2 DESC, p.video_id"
                )
            )
            connection.execute(text("DROP TABLE temp.reelrank_bulk_postings"))
        _apply_counts(connection, deltas)

    def _drop_postings(self, video_ids: list[int]) -> list[float]:
        """Delete the postings of ``video_ids``; the length of each video that had any."""
        lengths: list[float] = []
        for start in range(0, len(video_ids), _READ_CHUNK):
            chunk = video_ids[start : start + _READ_CHUNK]
            marks = ", ".join(f":v{i}" for i in range(len(chunk)))
            values = {f"v{i}": video_id for i, video_id in enumerate(chunk)}
            lengths += self._connection.execute(
                text(
                    "SELECT max(length) FROM search_postings "
                    f"WHERE video_id IN ({marks}) GROUP BY video_id"
                ),
                values,
            ).scalars()
            self._connection.execute(
                text(f"DELETE FROM search_postings WHERE video_id IN ({marks})"), values
            )
        return lengths


def _count(deltas: Counter[str], old: set[str], new: set[str]) -> None:
    for term in old - new:
        deltas[term] -= 1
    for term in new - old:
        deltas[term] += 1


def _apply_counts(connection: Connection, deltas: Counter[str]) -> None:
    """Move the ``search_terms`` counts by ``deltas``, in term order (as the per-row
    index does, so a concurrent writer cannot deadlock with the load)."""
    ordered = [(term, delta) for term, delta in sorted(deltas.items()) if delta]
    if not ordered:
        return
    connection.execute(_COUNT_CHANGE, [{"term": term, "delta": delta} for term, delta in ordered])
    dropped = [{"term": term} for term, delta in ordered if delta < 0]
    if dropped:
        connection.execute(_COUNT_DROP, dropped)


class _PostgresWriter(_Writer):
    """``COPY`` into temporary staging tables, then one ``INSERT ... SELECT`` per table."""

    def _copy(self, table: str, columns: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> None:
        cursor = self._connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor:
            statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
            with cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)

    def _stage(
        self,
        name: str,
        like: str,
        columns: tuple[str, ...],
        rows: Iterable[tuple[Any, ...]],
    ) -> str:
        staging = f"reelrank_bulk_{name}"
        self._connection.execute(
            text(
                f"CREATE TEMPORARY TABLE {staging} (LIKE {like} INCLUDING DEFAULTS) ON COMMIT DROP"
            )
        )
        for batch in self._batches(rows):
            self._copy(staging, columns, batch)
            self._report(name, len(batch))
        return staging

    def creators(self, rows: list[Creator]) -> None:
        columns = ("creator_id", "handle", "display_name")
        staging = self._stage(
            "creators",
            "creators",
            columns,
            ((c.creator_id, c.handle, c.display_name) for c in rows),
        )
        self._connection.execute(
            text(
                f"INSERT INTO creators ({', '.join(columns)}) "
                f"SELECT {', '.join(columns)} FROM {staging} ORDER BY creator_id "
                "ON CONFLICT (creator_id) DO UPDATE SET handle = excluded.handle, "
                "display_name = excluded.display_name"
            )
        )

    def videos(self, rows: list[Video]) -> None:
        def row(video: Video) -> tuple[Any, ...]:
            values = _video_row(video)
            values["hashtags"] = json.dumps(values["hashtags"])
            values["renditions"] = json.dumps(values["renditions"])
            return tuple(values[name] for name in _VIDEO_COLUMNS)

        staging = self._stage("videos", "videos", _VIDEO_COLUMNS, (row(video) for video in rows))
        updates = ", ".join(f"{name} = excluded.{name}" for name in _VIDEO_COLUMNS[1:])
        self._connection.execute(
            text(
                f"INSERT INTO videos ({', '.join(_VIDEO_COLUMNS)}) "
                f"SELECT {', '.join(_VIDEO_COLUMNS)} FROM {staging} ORDER BY video_id "
                f"ON CONFLICT (video_id) DO UPDATE SET {updates}"
            )
        )

    def follows(self, rows: list[tuple[int, int]]) -> None:
        staging = self._stage("follows", "follows", ("user_id", "creator_id"), rows)
        self._connection.execute(
            text(
                f"INSERT INTO follows (user_id, creator_id) SELECT user_id, creator_id "
                f"FROM {staging} ORDER BY user_id, creator_id ON CONFLICT DO NOTHING"
            )
        )

    def search(self, videos: list[Video], document: DocumentOf) -> None:
        connection = self._connection
        connection.execute(
            text(
                "CREATE TEMPORARY TABLE reelrank_bulk_ids (video_id BIGINT PRIMARY KEY) "
                "ON COMMIT DROP"
            )
        )
        self._copy("reelrank_bulk_ids", ("video_id",), ((video.video_id,) for video in videos))
        # The loaded videos' documents go (their terms leave the counts); the ready
        # ones come back with their new terms. Rows are locked in id order.
        removed = connection.execute(
            text(
                "DELETE FROM search_documents AS d USING reelrank_bulk_ids AS i "
                "WHERE d.video_id = i.video_id RETURNING d.video_id, tsvector_to_array(d.document)"
            )
        ).all()
        old = {int(video_id): set(terms) for video_id, terms in removed}
        # Impact-ordered postings (migration 0006): staged with their frequencies and
        # lengths, written once the whole-index statistics they are scored with are known.
        postings = connection.execute(
            text("SELECT to_regclass('search_postings') IS NOT NULL")
        ).scalar_one()
        if postings:
            old_lengths = connection.execute(
                text(
                    "DELETE FROM search_postings AS p USING reelrank_bulk_ids AS i "
                    "WHERE p.video_id = i.video_id RETURNING p.video_id, p.length"
                )
            ).all()
            removed_length = math.fsum({row.video_id: row.length for row in old_lengths}.values())
            connection.execute(
                text(
                    'CREATE TEMPORARY TABLE reelrank_bulk_postings (term TEXT COLLATE "C", '
                    "video_id BIGINT, tf REAL, length DOUBLE PRECISION) ON COMMIT DROP"
                )
            )
        added_lengths: list[float] = []
        deltas: Counter[str] = Counter()
        for batch in self._batches(videos):
            rows: list[tuple[int, str]] = []
            staged: list[tuple[str, int, float, float]] = []
            for video in batch:
                searchable = document(video)
                new: set[str] = set()
                if searchable is not None:
                    fields = _fields(searchable)
                    new = {term for terms in fields.values() for term in terms}
                    rows.append((video.video_id, _tsvector_literal(fields)))
                    if postings:
                        frequencies, length = _weighted(fields, self._config)
                        added_lengths.append(length)
                        staged.extend(
                            (term, video.video_id, tf, length) for term, tf in frequencies.items()
                        )
                _count(deltas, old.get(video.video_id, set()), new)
            self._copy("search_documents", ("video_id", "document"), rows)
            if staged:
                self._copy("reelrank_bulk_postings", ("term", "video_id", "tf", "length"), staged)
            self._report("search", len(batch))
        if postings:
            added = math.fsum(added_lengths)
            # The statistics row before the term counts, as every writer locks them.
            connection.execute(
                _STATS_CHANGE,
                {
                    "documents": len(added_lengths) - len(old),
                    "removed": removed_length,
                    "added": added,
                    "reference": added / len(added_lengths) if added_lengths else 0.0,
                    "k1": self._config.k1,
                    "b": self._config.b,
                },
            )
            connection.execute(
                text(
                    "INSERT INTO search_postings (term, video_id, impact, tf, length) "
                    f"SELECT p.term, p.video_id, {_POSTINGS_IMPACT}, p.tf, p.length "
                    "FROM reelrank_bulk_postings AS p, search_stats AS s "
                    "ORDER BY p.video_id, p.term"
                )
            )
        changes = [(term, delta) for term, delta in sorted(deltas.items()) if delta]
        if not changes:
            return
        connection.execute(
            text(
                'CREATE TEMPORARY TABLE reelrank_bulk_terms (term TEXT COLLATE "C", '
                "delta BIGINT) ON COMMIT DROP"
            )
        )
        self._copy("reelrank_bulk_terms", ("term", "delta"), changes)
        connection.execute(
            text(
                "INSERT INTO search_terms (term, videos) SELECT term, delta "
                "FROM reelrank_bulk_terms ORDER BY term "
                "ON CONFLICT (term) DO UPDATE SET videos = search_terms.videos + excluded.videos"
            )
        )
        connection.execute(
            text(
                "DELETE FROM search_terms AS s USING reelrank_bulk_terms AS t "
                "WHERE s.term = t.term AND t.delta < 0 AND s.videos <= 0"
            )
        )
