"""MovieLens-100k as an event log and a catalog, read from RecBole's atomic files."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..exceptions import InvalidInputError

__all__ = ["MovieLens", "load_movielens_100k"]

_MEMBER = "recbole/dataset_example/ml-100k/"
_LIKE_DELAY_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class MovieLens:
    """MovieLens-100k mapped onto reelrank's event log and catalog columns."""

    events: pd.DataFrame
    """``user_id``, ``video_id``, ``time`` (epoch seconds), ``kind``, ``completion``."""
    catalog: pd.DataFrame
    """``video_id``, ``creator_id`` (the first genre), ``published_at``, ``title``,
    ``genres``."""
    genres: tuple[str, ...]
    """Genre names; ``creator_id`` indexes this tuple."""


def _read_atomic(source: Path, name: str) -> str:
    if source.is_dir():
        path = source / name
        if not path.is_file():
            raise InvalidInputError("source", f"{str(source)!r} has no {name}")
        return path.read_bytes().decode("latin-1")
    if source.suffix != ".whl" or not source.is_file():
        raise InvalidInputError(
            "source", f"expected a directory or a RecBole wheel (.whl), got {str(source)!r}"
        )
    with zipfile.ZipFile(source) as wheel:
        try:
            return wheel.read(_MEMBER + name).decode("latin-1")
        except KeyError:
            raise InvalidInputError(
                "source", f"{str(source)!r} does not contain {_MEMBER + name}"
            ) from None


def _atomic_frame(text: str) -> pd.DataFrame:
    """A RecBole atomic file: tab-separated, header fields written ``name:type``."""
    frame = pd.read_csv(io.StringIO(text), sep="\t", dtype=str, keep_default_na=False)
    frame.columns = [column.partition(":")[0] for column in frame.columns]
    return frame


def load_movielens_100k(source: str | Path) -> MovieLens:
    """Read MovieLens-100k from RecBole's copy and map it onto events and a catalog.

    RecBole's wheel ships the data set in its own atomic format under
    ``recbole/dataset_example/ml-100k/``; get the wheel without installing RecBole with
    ``pip download --no-deps recbole``. ``source`` is that wheel, or a directory holding
    ``ml-100k.inter`` and ``ml-100k.item``.

    The mapping, since films are not short videos:

    - each rating becomes a ``watch`` at its timestamp with ``completion = rating / 5``,
      and a rating of 4 or 5 also a ``like`` one second later; so with the default
      threshold of :func:`graded_relevance`, 3 stars grade 1 and 4 or 5 stars grade 2;
    - a film's "creator" is its first genre (``creator_id`` indexes
      :attr:`MovieLens.genres`), which gives affinity and the diversity rule something
      to work on;
    - ``published_at`` is 1 January of the release year (UTC), or the first rating of the
      film when the year is missing.
    """
    root = Path(source)
    ratings = _atomic_frame(_read_atomic(root, "ml-100k.inter"))
    items = _atomic_frame(_read_atomic(root, "ml-100k.item"))
    user_id = ratings["user_id"].astype(np.int64).to_numpy()
    video_id = ratings["item_id"].astype(np.int64).to_numpy()
    time = ratings["timestamp"].astype(np.float64).to_numpy()
    rating = ratings["rating"].astype(np.float64).to_numpy()
    watches = pd.DataFrame(
        {
            "user_id": user_id,
            "video_id": video_id,
            "time": time,
            "kind": "watch",
            "completion": rating / 5.0,
        }
    )
    liked = rating >= 4.0
    likes = pd.DataFrame(
        {
            "user_id": user_id[liked],
            "video_id": video_id[liked],
            "time": time[liked] + _LIKE_DELAY_SECONDS,
            "kind": "like",
            "completion": np.nan,
        }
    )
    events = (
        pd.concat([watches, likes], ignore_index=True)
        .sort_values(["time", "user_id", "video_id"], kind="stable")
        .reset_index(drop=True)
    )
    genres_per_item = items["class"].str.split()
    first_genre = genres_per_item.map(lambda names: names[0] if names else "unknown")
    genres = tuple(sorted(set(first_genre)))
    genre_index = {name: index for index, name in enumerate(genres)}
    item_ids = items["item_id"].astype(np.int64).to_numpy()
    first_rating = watches.groupby("video_id")["time"].min()
    year = pd.to_numeric(items["release_year"], errors="coerce").to_numpy(np.float64)
    released = pd.to_datetime(
        pd.Series(np.where(np.isnan(year), 1970, year).astype(np.int64)).astype(str),
        format="%Y",
        utc=True,
    )
    published = (released - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
    fallback = first_rating.reindex(item_ids).to_numpy(np.float64)
    published = np.where(np.isnan(year), fallback, published)
    catalog = pd.DataFrame(
        {
            "video_id": item_ids,
            "creator_id": first_genre.map(genre_index).to_numpy(np.int64),
            "published_at": published,
            "title": items["movie_title"].to_numpy(),
            "genres": items["class"].to_numpy(),
        }
    )
    return MovieLens(events=events, catalog=catalog, genres=genres)
