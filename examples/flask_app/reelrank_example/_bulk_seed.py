"""The synthetic catalog at scale: ``python -m reelrank_example seed --bulk``.

:func:`~reelrank_example.seed_synthetic_catalog` writes video by video through the
stores and walks each video through the processing pipeline, which is what a demo
needs and takes about a tenth of a second per video on PostgreSQL. A load test needs
catalogs of a million videos: :func:`seed_synthetic_catalog_bulk` draws a catalog of the
same shape with vectorised random draws (creators with a home topic, videos carrying
it among their hashtags, Zipf-popular sounds, follows of favourite topics, engagement
mostly with those topics), writes it with :func:`reelrank_postgres.bulk_load` (``COPY``)
in chunks, and writes the events in batches. The videos are stored ready (no
processing history) and the catalog is not the one the row-by-row seed draws from the
same seed. The events go in batches through the stores' ``append_many`` and
``record_many`` when they have them (ClickHouse), else through the recorder.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from reelrank import (
    Creator,
    EngagementEvent,
    EngagementRecorder,
    ProcessingState,
    RecorderConfig,
    Video,
)

from ._services import (
    _ADJECTIVES,
    _CATALOG_DAYS,
    _NOUNS,
    _SHARE_CHANNELS,
    _SOUNDS,
    _TOPICS,
    FIRST_USER_ID,
    FIRST_VIDEO_ID,
    Stores,
    _renditions,
    _sound_name,
)
from ._settings import Settings

__all__ = ["seed_synthetic_catalog_bulk"]

# Videos per bulk_load call (one transaction each): bounds the memory the Video
# objects of one call hold (a few kB each).
_VIDEO_CHUNK = 50_000
_EVENT_CHUNK = 10_000
_STATEMENT_TIMEOUT_SECONDS = 3_600.0
_KINDS = ("watch", "like", "share", "unlike")
_KIND_SHARES = (0.72, 0.18, 0.06, 0.04)


def seed_synthetic_catalog_bulk(
    stores: Stores, settings: Settings, *, now: datetime
) -> dict[str, int]:
    """Write ``settings.videos`` ready videos, their creators, follows and
    ``settings.events`` events into SQL ``stores``; rows written per kind.

    Raises :class:`~reelrank.ConfigError` naming ``database_url`` when the catalog is
    not in a SQL database.
    """
    from reelrank_postgres import SqlCatalog, SqlStoreConfig, bulk_load, connect

    from reelrank import ConfigError

    if not isinstance(stores.catalog, SqlCatalog):
        raise ConfigError("database_url", None, "a bulk seed needs the catalog in SQL")
    # Merging a chunk outlasts the request path's statement timeout (seconds).
    engine = connect(
        SqlStoreConfig(
            url=settings.database_url,
            statement_timeout_seconds=_STATEMENT_TIMEOUT_SECONDS,
            lock_timeout_seconds=_STATEMENT_TIMEOUT_SECONDS,
        )
    )
    try:
        counts = _write_catalog(engine, bulk_load, stores, settings, now)
    finally:
        engine.dispose()
    return counts


def _write_catalog(
    engine: Any, bulk_load: Any, stores: Stores, settings: Settings, now: datetime
) -> dict[str, int]:
    rng = np.random.default_rng(settings.seed)
    topics = len(_TOPICS)
    creators = [
        Creator(
            creator_id=number,
            handle=f"{_TOPICS[number % topics]}_{number}",
            display_name=f"{_ADJECTIVES[number % len(_ADJECTIVES)].title()} Creator {number}",
        )
        for number in range(1, settings.creators + 1)
    ]
    count = settings.videos
    creator_ids = rng.integers(1, settings.creators + 1, size=count)
    home = creator_ids % topics
    extras = rng.integers(0, topics, size=(count, 2))
    extra_counts = rng.integers(0, 3, size=count)
    popularity = 1.0 / np.arange(1, _SOUNDS + 1)
    sounds = rng.choice(_SOUNDS, size=count, p=popularity / popularity.sum()) + 1
    has_sound = rng.random(count) < 0.8
    ages = rng.uniform(0.0, _CATALOG_DAYS * 86_400.0, size=count)
    durations = rng.uniform(8.0, 90.0, size=count)
    adjectives = rng.integers(0, len(_ADJECTIVES), size=count)
    nouns = rng.integers(0, len(_NOUNS), size=count)

    def videos(start: int, stop: int) -> Iterator[Video]:
        for row in range(start, stop):
            video_id = FIRST_VIDEO_ID + row
            topic = _TOPICS[int(home[row])]
            tags = [topic]
            for extra in extras[row, : int(extra_counts[row])]:
                if _TOPICS[int(extra)] not in tags:
                    tags.append(_TOPICS[int(extra)])
            title = f"{_ADJECTIVES[int(adjectives[row])]} {topic} {_NOUNS[int(nouns[row])]}"
            creator = creators[int(creator_ids[row]) - 1]
            yield Video(
                video_id=video_id,
                creator_id=creator.creator_id,
                duration_seconds=float(durations[row]),
                published_at=now - timedelta(seconds=float(ages[row])),
                title=title,
                description=f"A {title} by @{creator.handle}.",
                hashtags=tuple(tags),
                sound_id=int(sounds[row]) if has_sound[row] else None,
                renditions=_renditions(video_id),
                state=ProcessingState.READY,
            )

    follows = _follows(rng, settings)
    sound_names = {sound: _sound_name(sound) for sound in range(1, _SOUNDS + 1)}
    for start in range(0, count, _VIDEO_CHUNK):
        first = start == 0
        bulk_load(
            engine,
            creators=creators if first else (),
            videos=list(videos(start, min(start + _VIDEO_CHUNK, count))),
            follows=follows if first else (),
            sound_names=sound_names,
        )
    events = _write_events(rng, stores, settings, now, creator_ids, home, ages)
    return {"creators": len(creators), "videos": count, "follows": len(follows), "events": events}


def _follows(rng: np.random.Generator, settings: Settings) -> list[tuple[int, int]]:
    """Each user follows, with probability 0.6 each, a creator of two favourite topics."""
    topics = len(_TOPICS)
    by_topic: dict[int, list[int]] = {}
    for number in range(1, settings.creators + 1):
        by_topic.setdefault(number % topics, []).append(number)
    pairs: set[tuple[int, int]] = set()
    for offset in range(settings.users):
        for topic in _favourites(settings.seed, offset):
            candidates = by_topic.get(topic, [])
            if candidates and rng.random() < 0.6:
                pairs.add((FIRST_USER_ID + offset, int(rng.choice(candidates))))
    return sorted(pairs)


def _favourites(seed: int, offset: int) -> tuple[int, int]:
    """The two favourite topics of the user ``offset`` places after the first."""
    first, second = np.random.default_rng((seed, offset)).choice(len(_TOPICS), 2, replace=False)
    return int(first), int(second)


def _write_events(
    rng: np.random.Generator,
    stores: Stores,
    settings: Settings,
    now: datetime,
    creator_ids: np.ndarray[Any, Any],
    home: np.ndarray[Any, Any],
    ages: np.ndarray[Any, Any],
) -> int:
    """``settings.events`` events by Zipf-free random users, three in four on a video of
    one of the user's favourite topics; returns how many were applied."""
    total = settings.events
    if total == 0 or creator_ids.size == 0:
        return 0
    by_topic = [np.flatnonzero(home == topic) for topic in range(len(_TOPICS))]
    users = rng.integers(0, settings.users, size=total)
    kinds = rng.choice(len(_KINDS), size=total, p=_KIND_SHARES)
    on_topic = rng.random(total) < 0.75
    picks = rng.random(total)
    completions = rng.beta(2.0, 1.5, size=total)
    channels = rng.integers(0, len(_SHARE_CHANNELS), size=total)
    when = rng.random(total)
    favourites = [_favourites(settings.seed, offset) for offset in range(settings.users)]
    append_many = getattr(stores.events, "append_many", None)
    record_many = getattr(stores.log, "record_many", None)
    recorder = EngagementRecorder(
        stores.catalog,
        stores.events,
        log=stores.log,
        config=RecorderConfig(max_event_age_seconds=None),
        now=lambda: now,
    )
    applied = 0
    batch: list[tuple[EngagementEvent, int]] = []
    for number in range(total):
        user = int(users[number])
        pool = by_topic[favourites[user][number % 2]]
        if not (on_topic[number] and pool.size):
            pool = np.arange(creator_ids.size)
        row = int(pool[int(picks[number] * pool.size)])
        # Some time between the video's publication and now.
        age = float(ages[row]) * (1.0 - float(when[number]))
        fields: dict[str, Any] = {
            "event_id": f"bulk-{settings.seed}-{number}",
            "kind": _KINDS[int(kinds[number])],
            "user_id": FIRST_USER_ID + user,
            "video_id": FIRST_VIDEO_ID + row,
            "occurred_at": now - timedelta(seconds=age),
        }
        if fields["kind"] == "watch":
            fields["completion"] = float(completions[number])
        elif fields["kind"] == "share":
            fields["channel"] = _SHARE_CHANNELS[int(channels[number])]
        event = EngagementEvent(**fields)
        if append_many is None or record_many is None:
            applied += recorder.record(event)
            continue
        batch.append((event, int(creator_ids[row])))
        if len(batch) == _EVENT_CHUNK or number == total - 1:
            applied += append_many(batch)
            record_many([event for event, _ in batch])
            batch = []
    return applied
