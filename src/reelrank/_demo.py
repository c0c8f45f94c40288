"""``reelrank demo``: serve two feed pages for a synthetic catalog and explain every item.

The demo fills the embedded in-memory stores with a catalog, engagement from other
viewers, one user's own history and a model's scores, then asks a
:class:`~reelrank.FeedRankingService` for two pages of that user's feed. It uses the
core only (numpy, numba, pydantic), so it runs right after ``pip install reelrank``.
The catalog, the engagement and the clock all derive from the seed, so the output is
reproducible.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

import numpy as np

from .feed import FeedRankingService, FeedServiceConfig, StoreDeadlines
from .models._base import WEIGHT_FIELDS
from .models._catalog import Creator, Video
from .models._engagement import EngagementEvent, EngagementKind
from .models._feed import FeedPage
from .models._registry import ModelInfo
from .scoring._config import RankingConfig
from .stores._cache import InMemoryFeedCache
from .stores._catalog import InMemoryCatalog
from .stores._events import InMemoryEventStore
from .stores._registry import InMemoryModelRegistry
from .stores._seen import InMemorySeenStore

__all__ = [
    "DEMO_NOW",
    "DEMO_USER",
    "DemoFeed",
    "DemoRow",
    "format_table",
    "run_demo",
    "serve_demo_feed",
]

DEMO_NOW = dt.datetime(2026, 1, 15, 12, 0, tzinfo=dt.UTC)
"""The fixed moment the demo serves at, so its output does not change with the clock."""

DEMO_USER = 1
"""The user whose feed the demo serves."""

_CREATORS = 40

_SOUNDS = 12

_MAX_AGE_HOURS = 14 * 24.0

_FAVOURITE_CREATORS = 3

_MODEL = "watch-time"

_FIRST_VIEWER = 1_000


@dataclass(frozen=True, slots=True)
class DemoRow:
    """One served item as the demo prints it."""

    position: int
    """Position in the feed, counted over both pages from 1."""
    video_id: int
    creator_id: int
    sound_id: int | None
    age_hours: float
    views: int
    score: float
    contributions: tuple[float, ...]
    """Weighted contributions in :data:`~reelrank.WEIGHT_FIELDS` order."""


@dataclass(frozen=True, slots=True)
class DemoFeed:
    """What the demo served, with the user's history that shaped it."""

    pages: tuple[tuple[FeedPage, tuple[DemoRow, ...]], ...]
    affinity: dict[int, float]
    """The user's affinity with each creator they engaged with."""
    watched: tuple[int, ...]
    """Videos the user had already watched, which the feed leaves out."""
    catalog_size: int


@dataclass(frozen=True, slots=True)
class _Stores:
    catalog: InMemoryCatalog
    events: InMemoryEventStore
    seen: InMemorySeenStore
    models: InMemoryModelRegistry
    watched: tuple[int, ...]


class _EventWriter:
    """Appends events with consecutive ids, as a client with its own counter would."""

    def __init__(self, events: InMemoryEventStore) -> None:
        self._events = events
        self._next_id = 0

    def add(
        self,
        video: Video,
        user_id: int,
        kind: EngagementKind,
        at: dt.datetime,
        *,
        completion: float | None = None,
    ) -> None:
        self._next_id += 1
        event = EngagementEvent(
            event_id=f"demo-{self._next_id}",
            kind=kind,
            user_id=user_id,
            video_id=video.video_id,
            occurred_at=at,
            completion=completion,
            channel="link" if kind is EngagementKind.SHARE else None,
        )
        self._events.append(event, creator_id=video.creator_id)


def _build_stores(seed: int, size: int) -> _Stores:
    rng = np.random.default_rng(seed)
    catalog = InMemoryCatalog()
    for creator_id in range(1, _CREATORS + 1):
        catalog.put_creator(Creator(creator_id=creator_id, handle=f"creator_{creator_id}"))
    ages = rng.uniform(0.0, _MAX_AGE_HOURS, size)
    creators = rng.integers(1, _CREATORS + 1, size)
    sounds = rng.integers(1, _SOUNDS + 1, size)
    has_sound = rng.random(size) < 0.4
    videos = []
    for index in range(size):
        video = Video(
            video_id=10_001 + index,
            creator_id=int(creators[index]),
            duration_seconds=float(rng.uniform(5.0, 90.0)),
            published_at=DEMO_NOW - dt.timedelta(hours=float(ages[index])),
            title=f"clip {index + 1}",
            sound_id=int(sounds[index]) if has_sound[index] else None,
        )
        catalog.put_video(video)
        videos.append(video)

    events = InMemoryEventStore()
    writer = _EventWriter(events)
    viewer = _FIRST_VIEWER
    for index, video in enumerate(videos):
        # Older videos had more time to be watched; popularity is long-tailed.
        views = min(int(rng.lognormal(2.2, 1.0) * (0.3 + ages[index] / _MAX_AGE_HOURS)), 250)
        appeal = rng.beta(2.0, 2.5)
        engagement = rng.beta(1.2, 25.0)
        at = video.published_at + dt.timedelta(hours=float(ages[index]) / 2)
        for view in range(views):
            watcher = viewer + view
            completion = float(np.clip(rng.normal(appeal, 0.2), 0.0, 1.0))
            writer.add(video, watcher, EngagementKind.WATCH, at, completion=completion)
            if rng.random() < min(engagement * 3.0, 1.0):
                writer.add(video, watcher, EngagementKind.LIKE, at)
            if rng.random() < engagement / 4.0:
                writer.add(video, watcher, EngagementKind.SHARE, at)
            if rng.random() < engagement / 2.0:
                writer.add(video, watcher, EngagementKind.COMMENT, at)
        viewer += views

    # The demo user loved a few creators' older videos and skimmed some others.
    seen = InMemorySeenStore()
    favourites = rng.choice(np.arange(1, _CREATORS + 1), _FAVOURITE_CREATORS, replace=False)
    older = [video for video in videos if video.published_at < DEMO_NOW - dt.timedelta(days=3)]
    watched: list[int] = []
    for rank, creator_id in enumerate(favourites.tolist()):
        theirs = [video for video in older if video.creator_id == creator_id][: 3 - rank]
        for video in theirs:
            at = DEMO_NOW - dt.timedelta(days=2)
            writer.add(video, DEMO_USER, EngagementKind.WATCH, at, completion=1.0)
            writer.add(video, DEMO_USER, EngagementKind.LIKE, at)
            if rank == 0:
                writer.add(video, DEMO_USER, EngagementKind.SHARE, at)
            watched.append(video.video_id)
    skimmed = rng.choice([video.video_id for video in older], min(4, len(older)), replace=False)
    for video_id in skimmed.tolist():
        writer.add(
            catalog.get_video(video_id),
            DEMO_USER,
            EngagementKind.WATCH,
            DEMO_NOW - dt.timedelta(days=1),
            completion=0.1,
        )
        watched.append(video_id)
    seen.mark_seen(DEMO_USER, watched, DEMO_NOW - dt.timedelta(days=1))

    models = InMemoryModelRegistry()
    models.register(ModelInfo(name=_MODEL, version="v1", created_at=DEMO_NOW))
    models.activate(_MODEL, "v1")
    scored = [video for video in videos if rng.random() < 0.8]  # new videos wait for the model
    models.put_scores(_MODEL, "v1", {video.video_id: float(rng.beta(2.0, 2.0)) for video in scored})
    return _Stores(catalog, events, seen, models, tuple(sorted(set(watched))))


def serve_demo_feed(seed: int = 7, catalog_size: int = 500, page_size: int = 10) -> DemoFeed:
    """Fill the in-memory stores and serve two pages of the demo user's feed."""
    stores = _build_stores(seed, catalog_size)
    # In-process stores answer in microseconds; generous deadlines keep a busy machine
    # from turning the demo into a degraded feed.
    deadlines = StoreDeadlines(catalog=10.0, events=10.0, seen=10.0, models=10.0, cache=10.0)
    config = FeedServiceConfig(
        model_name=_MODEL, deadlines=deadlines, cursor_secret="reelrank-demo-cursor-secret"
    )
    with FeedRankingService(
        catalog=stores.catalog,
        events=stores.events,
        seen=stores.seen,
        cache=InMemoryFeedCache(),
        models=stores.models,
        config=config,
        ranking=RankingConfig(),
        clock=lambda: DEMO_NOW,
    ) as service:
        first = service.feed(DEMO_USER, limit=page_size)
        pages = [first]
        if first.next_cursor is not None:
            pages.append(service.feed(DEMO_USER, limit=page_size, cursor=first.next_cursor))
    served = [item.video_id for page in pages for item in page.items]
    videos = stores.catalog.get_videos(served)
    stats = stores.events.get_stats(served)
    position = 0
    explained = []
    for page in pages:
        rows = []
        for item in page.items:
            position += 1
            video = videos[item.video_id]
            rows.append(
                DemoRow(
                    position=position,
                    video_id=item.video_id,
                    creator_id=video.creator_id,
                    sound_id=video.sound_id,
                    age_hours=(DEMO_NOW - video.published_at).total_seconds() / 3600.0,
                    views=stats[item.video_id].views,
                    score=item.score,
                    contributions=tuple(item.breakdown[name] for name in WEIGHT_FIELDS),
                )
            )
        explained.append((page, tuple(rows)))
    engaged = stores.events.get_affinities(DEMO_USER, list(range(1, _CREATORS + 1)))
    return DemoFeed(
        pages=tuple(explained),
        affinity={creator: value for creator, value in engaged.items() if value > 0.0},
        watched=stores.watched,
        catalog_size=catalog_size,
    )


def format_table(rows: Sequence[DemoRow], weights: Sequence[float]) -> list[str]:
    """Lay the rows out as a fixed-width text table, one line per item."""
    width = max(len(name) for name in WEIGHT_FIELDS)
    head = f"{'pos':>4}  {'video':>6}  {'creator':>7}  {'age':>7}  {'views':>6}  {'score':>6}"
    signals = "  ".join(f"{name:>{width}}" for name in WEIGHT_FIELDS)
    weight_cells = "  ".join(f"{'w=' + format(w, '.2f'):>{width}}" for w in weights)
    lines = [f"{head}  {signals}", f"{'':{len(head)}}  {weight_cells}"]
    for row in rows:
        cells = (
            f"{row.position:>4}  {row.video_id:>6}  {row.creator_id:>7}  "
            f"{_age(row.age_hours):>7}  {row.views:>6}  {row.score:>6.4f}"
        )
        parts = "  ".join(f"{value:>{width}.4f}" for value in row.contributions)
        lines.append(f"{cells}  {parts}")
    return lines


def _age(hours: float) -> str:
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} d"


def run_demo(out: TextIO, *, seed: int = 7, catalog_size: int = 500, page_size: int = 10) -> None:
    """Print the demo feed to ``out``."""
    feed = serve_demo_feed(seed, catalog_size, page_size)
    when = DEMO_NOW.strftime("%Y-%m-%d %H:%M UTC")
    affinity = ", ".join(f"{c}: {a:.2f}" for c, a in sorted(feed.affinity.items()))
    print(
        f"reelrank demo: the feed of user {DEMO_USER} over {feed.catalog_size} synthetic "
        f"videos (seed {seed}), served at {when}",
        file=out,
    )
    print("by FeedRankingService on the in-memory stores, one page after the other", file=out)
    print(f"user affinity by creator: {affinity or 'none'}", file=out)
    print(f"already watched, left out: {', '.join(map(str, feed.watched))}", file=out)
    weights = RankingConfig().weights
    for number, (page, rows) in enumerate(feed.pages, start=1):
        source = "from the cached snapshot" if page.from_cache else "ranked fresh"
        print(file=out)
        items = "1 item" if len(rows) == 1 else f"{len(rows)} items"
        print(f"page {number}: {items}, {source}", file=out)
        for line in format_table(rows, weights):
            print(line, file=out)
    print(file=out)
    print(
        "Each signal column is weight x signal; the five add up to score. Items follow the "
        "score, except\nthat the diversity rule moves one down rather than show more than "
        "two in a row from one creator\nor three with one sound.",
        file=out,
    )
