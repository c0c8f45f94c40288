"""``reelrank load DIR`` (``python -m reelrank_example load DIR``): a catalog, and past
events, from CSV or Parquet files.

Every file is read and every row validated through reelrank's value types before
anything is written, so a malformed row is refused with :class:`LoadError` naming its
file, row and column, and the database is left as it was. The catalog (creators,
videos with their renditions, follows, and the search documents of the ready videos)
is then written in one transaction by :func:`reelrank_postgres.bulk_load` (``COPY`` on
PostgreSQL, ``executemany`` on SQLite); stores that are not SQL (the in-memory ones of
tests) get the same rows through the per-row store API. Past events go last, through
the same validating, deduplicating :class:`~reelrank.EngagementRecorder` the API uses,
without its age limit (they are history); their videos were checked to exist and be
ready first.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reelrank import (
    ConfigError,
    Creator,
    EngagementEvent,
    EngagementRecorder,
    InvalidInputError,
    ProcessingState,
    RecorderConfig,
    Rendition,
    Video,
    VideoSearch,
)

from ._services import Stores

__all__ = ["TABLES", "LoadError", "load_directory"]

TABLES = ("creators", "videos", "renditions", "follows", "events")
"""Files :func:`load_directory` reads, each as ``<name>.parquet`` or ``<name>.csv``;
``creators`` and ``videos`` are required."""


class LoadError(ConfigError):
    """A row of an input file is invalid; nothing was written.

    ``field`` is ``<table>[<row>].<column>`` (the row counted from 0, the header not
    counted), and :attr:`path`, :attr:`row` and :attr:`column` hold the parts.
    """

    def __init__(
        self, path: Path | str, table: str, row: int, column: str, value: Any, reason: str
    ):
        self.path = Path(path)
        """The file holding the row."""
        self.row = row
        """The row's position among the file's data rows, from 0."""
        self.column = column
        """The offending column."""
        super().__init__(f"{table}[{row}].{column}", value, f"{self.path.name}: {reason}")


class _Table:
    """The rows of one input file, and how to blame one of them."""

    def __init__(self, name: str, path: Path | None, rows: list[dict[str, Any]]) -> None:
        self.name = name
        self.path = path
        self.rows = rows

    def error(self, row: int, column: str, value: Any, reason: str) -> LoadError:
        assert self.path is not None  # only a file's rows are blamed
        return LoadError(self.path, self.name, row, column, value, reason)

    def checked(self, row: int, build: Callable[[], Any]) -> Any:
        """``build()``, with a failure blamed on this table's ``row``."""
        try:
            return build()
        except InvalidInputError as exc:
            raise self.error(row, exc.field, None, str(exc)) from None
        except ValidationError as exc:
            first = exc.errors()[0]
            # The value types raise InvalidInputError inside their validators; pydantic
            # wraps it, and its field is the one to name.
            cause = first.get("ctx", {}).get("error")
            if isinstance(cause, InvalidInputError):
                column = cause.field
            else:
                column = ".".join(str(part) for part in first["loc"]) or "<row>"
            raise self.error(row, column, first.get("input"), first["msg"]) from None


def _read(directory: Path, name: str, required: bool) -> _Table:
    import pandas as pd

    for suffix, read in ((".parquet", pd.read_parquet), (".csv", pd.read_csv)):
        path = directory / f"{name}{suffix}"
        if path.exists():
            frame = read(path)
            # NaN and NaT (empty CSV cells, Parquet nulls) become None, as the models expect.
            frame = frame.astype(object).where(frame.notna(), None)
            rows = [
                {str(k): v for k, v in row.items() if v is not None}
                for row in frame.to_dict(orient="records")
            ]
            return _Table(name, path, rows)
    if required:
        raise ConfigError(name, str(directory), f"needs {name}.parquet or {name}.csv")
    return _Table(name, None, [])


def _progress(total: int, name: str) -> Any:
    # tqdm ships no type information; imported by name, it is simply Any.
    tqdm: Any = importlib.import_module("tqdm")
    return tqdm.tqdm(total=total, desc=name, unit="row", disable=None)


def _rows(table: _Table) -> Iterator[tuple[int, dict[str, Any]]]:
    with _progress(len(table.rows), f"checking {table.name}") as bar:
        for number, row in enumerate(table.rows):
            yield number, row
            bar.update()


def _int(value: Any) -> Any:
    # CSV columns with empty cells come back as floats (12.0); ids are ints.
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _ids(row: dict[str, Any], *names: str) -> None:
    for name in names:
        if name in row:
            row[name] = _int(row[name])


def load_directory(stores: Stores, directory: Path) -> dict[str, int]:
    """Load the :data:`TABLES` found in ``directory`` into ``stores``; rows per table.

    ``videos.hashtags`` is a space-separated list; ``renditions`` rows attach to their
    ``video_id``; a video without a ``state`` column is ready. Ready videos are indexed
    for search. Raises :class:`LoadError` for an invalid row (a video of an unknown
    creator, an event of an unknown or unready video, an ``event_id`` given twice for
    different events included) before anything is written.
    """
    creators_table = _read(directory, "creators", True)
    creators: list[Creator] = []
    for number, row in _rows(creators_table):
        _ids(row, "creator_id")
        creators.append(creators_table.checked(number, partial(Creator.model_validate, row)))

    renditions_table = _read(directory, "renditions", False)
    renditions: dict[Any, list[Rendition]] = {}
    for number, row in _rows(renditions_table):
        video_id = _int(row.pop("video_id", None))
        _ids(row, "width", "height", "bitrate_kbps")
        rendition = renditions_table.checked(number, partial(Rendition.model_validate, row))
        renditions.setdefault(video_id, []).append(rendition)

    known_creators = {creator.creator_id for creator in creators}
    videos_table = _read(directory, "videos", True)
    videos: list[Video] = []
    for number, row in _rows(videos_table):
        _ids(row, "video_id", "creator_id", "sound_id")
        tags = row.get("hashtags")
        row["hashtags"] = tuple(str(tags).split()) if tags else ()
        row["renditions"] = tuple(renditions.get(row.get("video_id"), ()))
        video = videos_table.checked(number, partial(Video.model_validate, row))
        if video.creator_id not in known_creators and not stores.catalog.get_creators(
            [video.creator_id]
        ):
            raise videos_table.error(number, "creator_id", video.creator_id, "unknown creator")
        videos.append(video)

    follows_table = _read(directory, "follows", False)
    follows: list[tuple[int, int]] = []
    for number, row in _rows(follows_table):
        pair = (_int(row.get("user_id")), _int(row.get("creator_id")))
        for column, value in zip(("user_id", "creator_id"), pair, strict=True):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise follows_table.error(number, column, value, "must be an id (an int >= 1)")
        if pair[1] not in known_creators and not stores.catalog.get_creators([pair[1]]):
            raise follows_table.error(number, "creator_id", pair[1], "unknown creator")
        follows.append(pair)

    events = _checked_events(_read(directory, "events", False), videos, stores)
    counts = {
        "creators": len(creators),
        "renditions": len(renditions_table.rows),
        "videos": len(videos),
        "follows": len(follows),
    }
    _write_catalog(stores, creators, videos, follows)
    recorder = EngagementRecorder(
        stores.catalog,
        stores.events,
        log=stores.log,
        config=RecorderConfig(max_event_age_seconds=None),
    )
    with _progress(len(events), "events") as bar:
        for event in events:
            recorder.record(event)
            bar.update()
    counts["events"] = len(events)
    return counts


def _checked_events(table: _Table, videos: list[Video], stores: Stores) -> list[EngagementEvent]:
    """The events, checked as the recorder will check them, before anything is written."""
    ready = {video.video_id for video in videos if video.state is ProcessingState.READY}
    loaded = {video.video_id for video in videos}
    latest = datetime.now(UTC) + timedelta(seconds=RecorderConfig().max_future_skew_seconds)
    seen: dict[str, EngagementEvent] = {}
    events: list[EngagementEvent] = []
    for number, row in _rows(table):
        _ids(row, "user_id", "video_id")
        event = table.checked(number, partial(EngagementEvent.model_validate, row))
        if event.occurred_at > latest:
            raise table.error(number, "occurred_at", row.get("occurred_at"), "in the future")
        earlier = seen.setdefault(event.event_id, event)
        if earlier != event:
            raise table.error(number, "event_id", event.event_id, "reused for another event")
        if event.video_id not in ready:
            if event.video_id in loaded:
                raise table.error(number, "video_id", event.video_id, "video not ready")
            stored = stores.catalog.get_videos([event.video_id]).get(event.video_id)
            if stored is None:
                raise table.error(number, "video_id", event.video_id, "unknown video")
            if stored.state is not ProcessingState.READY:
                raise table.error(number, "video_id", event.video_id, "video not ready")
        events.append(event)
    return events


def _write_catalog(
    stores: Stores, creators: list[Creator], videos: list[Video], follows: list[tuple[int, int]]
) -> None:
    from reelrank_postgres import SqlCatalog, bulk_load

    if isinstance(stores.catalog, SqlCatalog):
        engine = stores.catalog.engine
        bars: dict[str, Any] = {}
        totals = {"creators": len(creators), "videos": len(videos), "follows": len(follows)}
        totals["search"] = len(videos)

        def progress(table: str, rows: int) -> None:
            if table not in bars:
                bars[table] = _progress(totals[table], f"writing {table}")
            bars[table].update(rows)

        try:
            bulk_load(engine, creators=creators, videos=videos, follows=follows, progress=progress)
        finally:
            for bar in bars.values():
                bar.close()
        return
    # Stores that are not SQL (the in-memory ones): the same rows through the store API.
    for loaded in creators:
        stores.catalog.put_creator(loaded)
    by_id = {loaded.creator_id: loaded for loaded in creators}
    search = VideoSearch(stores.search_index)
    for video in videos:
        stores.catalog.put_video(video)
        creator = by_id.get(video.creator_id)
        if creator is None:
            creator = stores.catalog.get_creators([video.creator_id]).get(video.creator_id)
        search.index_video(video, creator=creator)
    for user_id, creator_id in follows:
        stores.catalog.follow(user_id, creator_id)
