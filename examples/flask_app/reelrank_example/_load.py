"""``python -m reelrank_example load DIR``: a catalog (and past events) from CSV or Parquet.

Every row goes through reelrank's value types and stores, so a malformed row is refused
with the file, row and field named, and events are validated and deduplicated by the
same recorder the API uses.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reelrank import (
    ConfigError,
    Creator,
    EngagementRecorder,
    InvalidInputError,
    Rendition,
    Video,
    VideoSearch,
)

from ._services import Stores

__all__ = ["TABLES", "load_directory"]

TABLES = ("creators", "videos", "renditions", "follows", "events")
"""Files ``load_directory`` reads, in order, each as ``<name>.parquet`` or ``<name>.csv``;
``events`` is optional."""


def _rows(directory: Path, name: str, required: bool) -> list[dict[str, Any]]:
    import pandas as pd

    for suffix, read in ((".parquet", pd.read_parquet), (".csv", pd.read_csv)):
        path = directory / f"{name}{suffix}"
        if path.exists():
            frame = read(path)
            # NaN and NaT (empty CSV cells, Parquet nulls) become None, as the models expect.
            frame = frame.astype(object).where(frame.notna(), None)
            return [
                {str(k): v for k, v in row.items() if v is not None}
                for row in frame.to_dict(orient="records")
            ]
    if required:
        raise ConfigError(name, str(directory), f"needs {name}.parquet or {name}.csv")
    return []


def _checked(name: str, number: int, build: Callable[[], Any]) -> Any:
    try:
        return build()
    except InvalidInputError as exc:
        raise ConfigError(f"{name}[{number}].{exc.field}", None, str(exc)) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        # The value types raise InvalidInputError inside their validators; pydantic wraps
        # it, and its field is the one to name.
        cause = first.get("ctx", {}).get("error")
        if isinstance(cause, InvalidInputError):
            field = cause.field
        else:
            field = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"{name}[{number}].{field}", first.get("input"), first["msg"]) from None


def _progress(rows: list[dict[str, Any]], name: str) -> Iterator[tuple[int, dict[str, Any]]]:
    # tqdm ships no type information; imported by name, it is simply Any.
    tqdm: Any = importlib.import_module("tqdm")
    yield from tqdm.tqdm(enumerate(rows), total=len(rows), desc=name, unit="row")


def _int(value: Any) -> Any:
    # CSV columns with empty cells come back as floats (12.0); ids are ints.
    return int(value) if isinstance(value, float) and value.is_integer() else value


def load_directory(stores: Stores, directory: Path) -> dict[str, int]:
    """Load the :data:`TABLES` found in ``directory`` into ``stores``; rows per table.

    ``videos.hashtags`` is a space-separated list; ``renditions`` rows attach to their
    ``video_id``. Ready videos are indexed for search.
    """
    counts: dict[str, int] = {}
    creators: dict[int, Creator] = {}
    for number, row in _progress(_rows(directory, "creators", True), "creators"):
        row["creator_id"] = _int(row.get("creator_id"))
        creator = _checked("creators", number, partial(Creator.model_validate, row))
        stores.catalog.put_creator(creator)
        creators[creator.creator_id] = creator
    counts["creators"] = len(creators)

    renditions: dict[Any, list[Rendition]] = {}
    rendition_rows = _rows(directory, "renditions", False)
    for number, row in enumerate(rendition_rows):
        video_id = _int(row.pop("video_id", None))
        for key in ("width", "height", "bitrate_kbps"):
            row[key] = _int(row.get(key))
        rendition = _checked("renditions", number, partial(Rendition.model_validate, row))
        renditions.setdefault(video_id, []).append(rendition)
    counts["renditions"] = len(rendition_rows)

    search = VideoSearch(stores.search_index)
    videos = _rows(directory, "videos", True)
    for number, row in _progress(videos, "videos"):
        for key in ("video_id", "creator_id", "sound_id"):
            if key in row:
                row[key] = _int(row[key])
        tags = row.get("hashtags")
        row["hashtags"] = tuple(str(tags).split()) if tags else ()
        row["renditions"] = tuple(renditions.get(row.get("video_id"), ()))
        video = _checked("videos", number, partial(Video.model_validate, row))
        stores.catalog.put_video(video)
        search.index_video(video, creator=creators.get(video.creator_id))
    counts["videos"] = len(videos)

    follows = _rows(directory, "follows", False)
    for _, row in _progress(follows, "follows"):
        stores.catalog.follow(_int(row["user_id"]), _int(row["creator_id"]))
    counts["follows"] = len(follows)

    recorder = EngagementRecorder(stores.catalog, stores.events, log=stores.log)
    events = _rows(directory, "events", False)
    for number, row in _progress(events, "events"):
        for key in ("user_id", "video_id"):
            row[key] = _int(row.get(key))
        _checked("events", number, partial(recorder.record, row))
    counts["events"] = len(events)
    return counts
