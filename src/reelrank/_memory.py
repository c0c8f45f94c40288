"""Embedded in-memory implementations of every store protocol.

They are the default backend: no server, no I/O, safe to share between threads (each
store guards its state with one lock). They suit tests, notebooks, demos and a single
process serving a catalog that fits in memory; state is lost when the process ends.
"""

from __future__ import annotations

import bisect
import heapq
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from ._models import (
    Creator,
    EngagementEvent,
    EngagementKind,
    FeedSnapshot,
    ModelInfo,
    ModelStatus,
    ProcessingState,
    Video,
    VideoStats,
    affinity,
    affinity_credit,
    check_aware,
    check_feed_key,
    check_id,
    check_ids,
    check_limit,
    check_tag,
    check_ttl,
    check_variant,
    finite_or_raise,
)
from .exceptions import InvalidInputError, NotFoundError
from .protocols import FeedKey

__all__ = [
    "InMemoryCatalog",
    "InMemoryEventStore",
    "InMemoryFeedCache",
    "InMemoryModelRegistry",
    "InMemorySeenStore",
]

_DAY_SECONDS = 86_400.0

DEFAULT_IDEMPOTENCY_SECONDS = 7 * _DAY_SECONDS
"""How long the in-memory stores remember an accepted event id by default: a week,
far beyond any client's retries (the Redis adapter's default too)."""

DEFAULT_SEEN_RETENTION_SECONDS = 30 * _DAY_SECONDS
"""How long :class:`InMemorySeenStore` keeps a seen mark by default: the default
:attr:`~reelrank.RankingConfig.seen_window_days`."""


_T = TypeVar("_T")


def _check_retention(field: str, value: object) -> float | None:
    return None if value is None else check_ttl(value, field)


class IdempotencyWindow:
    """The event ids accepted within the last ``horizon_seconds`` of ``clock``.

    An id is forgotten ``horizon_seconds`` after it was accepted (never, with
    ``None``), so memory holds only the ids a client could still retry. Ids are
    accepted in clock order, so expiry pops the oldest from the front of a queue:
    constant amortised time per accepted id. Not thread-safe: the owning store's lock
    guards it.
    """

    def __init__(
        self,
        horizon_seconds: float | None = DEFAULT_IDEMPOTENCY_SECONDS,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._horizon = _check_retention("idempotency_seconds", horizon_seconds)
        self._clock = clock
        self._ids: set[str] = set()
        self._accepted: deque[tuple[float, str]] = deque()

    def __len__(self) -> int:
        return len(self._ids)

    def accept(self, event_id: str) -> bool:
        """Remember ``event_id``; ``False`` if it is remembered already."""
        if self._horizon is None:
            if event_id in self._ids:
                return False
            self._ids.add(event_id)
            return True
        now = self._clock()
        oldest_kept = now - self._horizon
        while self._accepted and self._accepted[0][0] <= oldest_kept:
            self._ids.discard(self._accepted.popleft()[1])
        if event_id in self._ids:
            return False
        self._ids.add(event_id)
        self._accepted.append((now, event_id))
        return True


def _check_instance(field: str, value: object, kind: type[_T]) -> _T:
    if not isinstance(value, kind):
        raise InvalidInputError(field, f"must be a {kind.__name__}, got {type(value).__name__}")
    return value


# -- catalog ----------------------------------------------------------------------------


def _recency_key(video: Video) -> tuple[datetime, int]:
    return (video.published_at, video.video_id)


class InMemoryCatalog:
    """A :class:`~reelrank.Catalog` held in dictionaries.

    Ready videos are also kept in a list sorted by ``(published_at, video_id)``, so
    :meth:`recent_videos` reads only the ``limit`` newest instead of sorting the catalog.
    """

    bounds_own_calls = True
    """Never waits on I/O, so the feed service calls it on the request thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._videos: dict[int, Video] = {}
        self._creators: dict[int, Creator] = {}
        self._videos_by_creator: dict[int, set[int]] = {}
        self._ready_by_recency: list[tuple[datetime, int]] = []
        self._follows: dict[int, set[int]] = {}

    def put_video(self, video: Video) -> None:
        """Insert or replace a video; its creator must exist."""
        _check_instance("video", video, Video)
        with self._lock:
            if video.creator_id not in self._creators:
                raise NotFoundError("creator", video.creator_id)
            old = self._videos.get(video.video_id)
            if old is not None:
                self._unindex(old)
            self._videos[video.video_id] = video
            self._index(video)

    def put_creator(self, creator: Creator) -> None:
        """Insert or replace a creator."""
        _check_instance("creator", creator, Creator)
        with self._lock:
            self._creators[creator.creator_id] = creator

    def get_video(self, video_id: int) -> Video:
        """The video with this id; :class:`~reelrank.NotFoundError` if unknown."""
        check_id("video_id", video_id)
        with self._lock:
            video = self._videos.get(video_id)
        if video is None:
            raise NotFoundError("video", video_id)
        return video

    def get_videos(self, video_ids: Sequence[int]) -> dict[int, Video]:
        """Videos by id; unknown ids are omitted."""
        ids = check_ids("video_ids", video_ids)
        with self._lock:
            return {vid: self._videos[vid] for vid in ids if vid in self._videos}

    def get_creators(self, creator_ids: Sequence[int]) -> dict[int, Creator]:
        """Creators by id; unknown ids are omitted."""
        ids = check_ids("creator_ids", creator_ids)
        with self._lock:
            return {cid: self._creators[cid] for cid in ids if cid in self._creators}

    def set_state(self, video_id: int, state: ProcessingState) -> Video:
        """Move a video to ``state`` if the state machine allows it."""
        check_id("video_id", video_id)
        target = _check_instance("state", state, ProcessingState)
        with self._lock:
            video = self._videos.get(video_id)
            if video is None:
                raise NotFoundError("video", video_id)
            video.state.check_move_to(target)
            updated = video.model_copy(update={"state": target})
            self._unindex(video)
            self._videos[video_id] = updated
            self._index(updated)
            return updated

    def recent_videos(self, *, limit: int, since: datetime | None = None) -> list[Video]:
        """Ready videos, newest first; with ``since``, published at or after it."""
        check_limit(limit)
        cutoff = None if since is None else check_aware("since", since)
        with self._lock:
            result: list[Video] = []
            for published_at, video_id in reversed(self._ready_by_recency):
                if len(result) >= limit or (cutoff is not None and published_at < cutoff):
                    break
                result.append(self._videos[video_id])
            return result

    def follow(self, user_id: int, creator_id: int) -> None:
        """Record a follow; the creator must exist."""
        check_id("user_id", user_id)
        check_id("creator_id", creator_id)
        with self._lock:
            if creator_id not in self._creators:
                raise NotFoundError("creator", creator_id)
            self._follows.setdefault(user_id, set()).add(creator_id)

    def unfollow(self, user_id: int, creator_id: int) -> None:
        """Remove a follow if present."""
        check_id("user_id", user_id)
        check_id("creator_id", creator_id)
        with self._lock:
            self._follows.get(user_id, set()).discard(creator_id)

    def followed_creators(self, user_id: int) -> frozenset[int]:
        """Creators the user follows."""
        check_id("user_id", user_id)
        with self._lock:
            return frozenset(self._follows.get(user_id, ()))

    def followed_videos(self, user_id: int, *, limit: int) -> list[Video]:
        """Ready videos of followed creators, newest first."""
        check_id("user_id", user_id)
        check_limit(limit)
        with self._lock:
            candidates = (
                self._videos[video_id]
                for creator_id in self._follows.get(user_id, ())
                for video_id in self._videos_by_creator.get(creator_id, ())
                if self._videos[video_id].state is ProcessingState.READY
            )
            return heapq.nlargest(limit, candidates, key=_recency_key)

    def _index(self, video: Video) -> None:
        self._videos_by_creator.setdefault(video.creator_id, set()).add(video.video_id)
        if video.state is ProcessingState.READY:
            bisect.insort(self._ready_by_recency, _recency_key(video))

    def _unindex(self, video: Video) -> None:
        self._videos_by_creator[video.creator_id].discard(video.video_id)
        if video.state is ProcessingState.READY:
            key = _recency_key(video)
            index = bisect.bisect_left(self._ready_by_recency, key)
            del self._ready_by_recency[index]


# -- events and stats ---------------------------------------------------------------------


@dataclass(slots=True)
class _Counts:
    views: int = 0
    completion_sum: float = 0.0
    likes: int = 0
    shares: int = 0
    comments: int = 0


class InMemoryEventStore:
    """An :class:`~reelrank.EventStore` keeping running aggregates, not the events.

    It remembers every applied ``event_id`` (for idempotency), the set of users
    liking each video, per-video counts and per-(user, creator) affinity credit.
    Built :class:`~reelrank.VideoStats` are kept until the video's next event, because
    building thousands of models per feed request would cost more than the ranking.

    An applied ``event_id`` is remembered for ``idempotency_seconds`` of ``clock``
    (default a week, like the Redis adapter); a redelivery after that is
    applied again. ``None`` remembers every id for the store's lifetime, so memory then
    grows with the number of events. ``clock`` returns seconds from any fixed origin
    (default :func:`time.monotonic`); tests pass a fake one.
    """

    bounds_own_calls = True
    """Never waits on I/O, so the feed service calls it on the request thread."""

    def __init__(
        self,
        *,
        idempotency_seconds: float | None = DEFAULT_IDEMPOTENCY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._applied = IdempotencyWindow(idempotency_seconds, clock=clock)
        self._counts: dict[int, _Counts] = {}
        self._built: dict[int, VideoStats] = {}
        self._likers: dict[int, set[int]] = {}
        self._credit: dict[int, dict[int, float]] = {}
        self._total_credit: dict[int, float] = {}

    def append(self, event: EngagementEvent, *, creator_id: int) -> bool:
        """Apply an event once per ``event_id``; ``False`` for a duplicate."""
        _check_instance("event", event, EngagementEvent)
        check_id("creator_id", creator_id)
        kind = event.kind
        if kind is EngagementKind.WATCH and event.completion is None:
            raise InvalidInputError("completion", "a watch must carry completion when appended")
        with self._lock:
            if not self._applied.accept(event.event_id):
                return False
            self._built.pop(event.video_id, None)
            counts = self._counts.setdefault(event.video_id, _Counts())
            changes_state = True
            if kind is EngagementKind.WATCH:
                counts.views += 1
                counts.completion_sum += event.completion or 0.0
            elif kind is EngagementKind.SHARE:
                counts.shares += 1
            elif kind is EngagementKind.COMMENT:
                counts.comments += 1
            else:
                likers = self._likers.setdefault(event.video_id, set())
                liked = event.user_id in likers
                if kind is EngagementKind.LIKE and not liked:
                    likers.add(event.user_id)
                    counts.likes += 1
                elif kind is EngagementKind.UNLIKE and liked:
                    likers.discard(event.user_id)
                    counts.likes -= 1
                else:
                    changes_state = False
            if changes_state:
                credit = affinity_credit(kind, event.completion)
                per_creator = self._credit.setdefault(event.user_id, {})
                per_creator[creator_id] = per_creator.get(creator_id, 0.0) + credit
                self._total_credit[event.user_id] = (
                    self._total_credit.get(event.user_id, 0.0) + credit
                )
            return True

    def get_stats(self, video_ids: Sequence[int]) -> dict[int, VideoStats]:
        """Aggregates for every requested id; zeros for videos never engaged with."""
        ids = check_ids("video_ids", video_ids)
        with self._lock:
            result: dict[int, VideoStats] = {}
            for vid in ids:
                stats = self._built.get(vid)
                if stats is None:
                    stats = self._built[vid] = self._build_stats(vid)
                result[vid] = stats
            return result

    def _build_stats(self, video_id: int) -> VideoStats:
        counts = self._counts.get(video_id)
        if counts is None:
            return VideoStats(video_id=video_id)
        return VideoStats(
            video_id=video_id,
            views=counts.views,
            # Summing many floats may overshoot views by rounding; the invariant holds exactly.
            completion_sum=min(counts.completion_sum, float(counts.views)),
            likes=counts.likes,
            shares=counts.shares,
            comments=counts.comments,
        )

    def get_affinities(self, user_id: int, creator_ids: Sequence[int]) -> dict[int, float]:
        """Affinity of the user with every requested creator; ``0.0`` when none."""
        check_id("user_id", user_id)
        ids = check_ids("creator_ids", creator_ids)
        found = dict.fromkeys(ids, 0.0)
        with self._lock:
            per_creator = self._credit.get(user_id, {})
            total = self._total_credit.get(user_id, 0.0)
            # A user has credit with few creators, and a feed asks about many: walk the
            # shorter side.
            if len(per_creator) < len(found):
                for cid, credit in per_creator.items():
                    if cid in found:
                        found[cid] = affinity(credit, total)
            else:
                for cid in found:
                    if cid in per_creator:
                        found[cid] = affinity(per_creator[cid], total)
        return found

    def popular_video_ids(self, *, limit: int) -> list[int]:
        """Most viewed video ids, most views first, ties by lower id."""
        check_limit(limit)
        with self._lock:
            viewed = [(c.views, vid) for vid, c in self._counts.items() if c.views > 0]
        top = heapq.nsmallest(limit, viewed, key=lambda pair: (-pair[0], pair[1]))
        return [vid for _, vid in top]


# -- seen -------------------------------------------------------------------------------


_MIN_SEEN_BEFORE_TRIM = 64


class InMemorySeenStore:
    """A :class:`~reelrank.SeenStore`: per user, the last time each video was seen.

    A write forgets the user's marks older than ``retention_seconds`` before the
    write's time ``at`` (default 30 days, the default seen window; ``None`` keeps every
    mark), like the Redis seen store does.
    Keep it at least as long as the longest seen window any reader asks about. To stay
    cheap the trim runs only when the user's marks have doubled since the last one, so
    each write costs constant amortised time and a user holds at most about twice the
    marks of one retention period.
    """

    bounds_own_calls = True
    """Never waits on I/O, so the feed service calls it on the request thread."""

    def __init__(
        self, *, retention_seconds: float | None = DEFAULT_SEEN_RETENTION_SECONDS
    ) -> None:
        retention = _check_retention("retention_seconds", retention_seconds)
        self._retention = None if retention is None else timedelta(seconds=retention)
        self._lock = threading.Lock()
        self._seen: dict[int, dict[int, datetime]] = {}
        self._trim_at: dict[int, int] = {}

    def mark_seen(self, user_id: int, video_ids: Sequence[int], at: datetime) -> None:
        """Record views at ``at``; a later time wins over an earlier one."""
        check_id("user_id", user_id)
        ids = check_ids("video_ids", video_ids)
        when = check_aware("at", at)
        with self._lock:
            seen = self._seen.setdefault(user_id, {})
            for vid in ids:
                previous = seen.get(vid)
                if previous is None or previous < when:
                    seen[vid] = when
            if self._retention is not None and len(seen) >= self._trim_at.get(
                user_id, _MIN_SEEN_BEFORE_TRIM
            ):
                oldest_kept = when - self._retention
                for vid in [vid for vid, seen_at in seen.items() if seen_at < oldest_kept]:
                    del seen[vid]
                self._trim_at[user_id] = max(_MIN_SEEN_BEFORE_TRIM, 2 * len(seen))

    def __len__(self) -> int:
        """Seen marks held, over every user (trimmed ones excluded)."""
        with self._lock:
            return sum(len(seen) for seen in self._seen.values())

    def seen_among(self, user_id: int, video_ids: Sequence[int], *, since: datetime) -> set[int]:
        """The requested ids seen at or after ``since``."""
        check_id("user_id", user_id)
        ids = check_ids("video_ids", video_ids)
        cutoff = check_aware("since", since)
        with self._lock:
            seen = self._seen.get(user_id, {})
            return {vid for vid in ids if (at := seen.get(vid)) is not None and at >= cutoff}

    def recently_seen(self, user_id: int, *, since: datetime, limit: int) -> list[int]:
        """Ids seen at or after ``since``, most recent first."""
        check_id("user_id", user_id)
        cutoff = check_aware("since", since)
        check_limit(limit)
        with self._lock:
            recent = [(at, vid) for vid, at in self._seen.get(user_id, {}).items() if at >= cutoff]
        return [vid for _, vid in heapq.nlargest(limit, recent)]


# -- feed cache -------------------------------------------------------------------------


class InMemoryFeedCache:
    """A :class:`~reelrank.FeedCache` with expiry measured by ``clock``.

    ``clock`` returns seconds from any fixed origin (default :func:`time.monotonic`);
    tests pass a fake clock to expire entries without sleeping. Expired entries are
    dropped lazily, when read or overwritten, and by :meth:`purge_expired`.
    """

    bounds_own_calls = True
    """Never waits on I/O, so the feed service calls it on the request thread."""

    in_process = True
    """A level in this process that cannot fail or stall: the feed service calls it
    without a guard when stores that bound their own calls run inline."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._entries: dict[int, dict[str | None, tuple[FeedSnapshot, float]]] = {}

    def get(self, user_id: int, variant: str | None = None) -> FeedSnapshot | None:
        """The live snapshot for ``(user_id, variant)``, or ``None``."""
        check_id("user_id", user_id)
        check_variant(variant)
        with self._lock:
            return self._live(user_id, variant, self._clock())

    def get_many(self, keys: Sequence[FeedKey]) -> dict[FeedKey, FeedSnapshot]:
        """Live snapshots by key; missing keys are omitted."""
        checked = [check_feed_key(key) for key in keys]
        with self._lock:
            now = self._clock()
            result: dict[FeedKey, FeedSnapshot] = {}
            for user_id, variant in checked:
                snapshot = self._live(user_id, variant, now)
                if snapshot is not None:
                    result[(user_id, variant)] = snapshot
            return result

    def put(self, snapshot: FeedSnapshot, *, ttl_seconds: float) -> None:
        """Store ``snapshot`` for ``ttl_seconds``."""
        self.put_many([snapshot], ttl_seconds=ttl_seconds)

    def put_many(self, snapshots: Sequence[FeedSnapshot], *, ttl_seconds: float) -> None:
        """Store several snapshots with one TTL; later duplicates win."""
        ttl = check_ttl(ttl_seconds)
        for snapshot in snapshots:
            _check_instance("snapshots", snapshot, FeedSnapshot)
        with self._lock:
            expires_at = self._clock() + ttl
            for snapshot in snapshots:
                per_user = self._entries.setdefault(snapshot.user_id, {})
                per_user[snapshot.variant] = (snapshot, expires_at)

    def delete(self, user_id: int, variant: str | None = None) -> bool:
        """Drop one snapshot; ``True`` if a live one was there."""
        check_id("user_id", user_id)
        check_variant(variant)
        with self._lock:
            live = self._live(user_id, variant, self._clock()) is not None
            self._entries.get(user_id, {}).pop(variant, None)
            return live

    def invalidate_user(self, user_id: int) -> int:
        """Drop every variant of the user's feed; returns how many were live."""
        check_id("user_id", user_id)
        with self._lock:
            now = self._clock()
            entries = self._entries.pop(user_id, {})
            return sum(1 for _, expires_at in entries.values() if expires_at > now)

    def purge_expired(self) -> int:
        """Drop every expired entry now; returns how many were dropped."""
        with self._lock:
            now = self._clock()
            dropped = 0
            for user_id in list(self._entries):
                per_user = self._entries[user_id]
                for variant in [v for v, (_, exp) in per_user.items() if exp <= now]:
                    del per_user[variant]
                    dropped += 1
                if not per_user:
                    del self._entries[user_id]
            return dropped

    def _live(self, user_id: int, variant: str | None, now: float) -> FeedSnapshot | None:
        per_user = self._entries.get(user_id, {})
        entry = per_user.get(variant)
        if entry is None:
            return None
        snapshot, expires_at = entry
        if expires_at <= now:
            del per_user[variant]
            return None
        return snapshot


# -- model registry -----------------------------------------------------------------------


class InMemoryModelRegistry:
    """A :class:`~reelrank.ModelRegistry` held in dictionaries."""

    bounds_own_calls = True
    """Never waits on I/O, so the feed service calls it on the request thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[str, dict[str, ModelInfo]] = {}
        self._scores: dict[tuple[str, str], dict[int, float]] = {}

    def register(self, model: ModelInfo) -> None:
        """Add a staging or retired version."""
        _check_instance("model", model, ModelInfo)
        if model.status is ModelStatus.ACTIVE:
            raise InvalidInputError("status", "register as staging, then activate")
        with self._lock:
            versions = self._models.setdefault(model.name, {})
            if model.version in versions:
                raise InvalidInputError("version", f"{model.name} {model.version} already exists")
            versions[model.version] = model

    def get_model(self, name: str, version: str) -> ModelInfo:
        """One version; :class:`~reelrank.NotFoundError` if unknown."""
        check_tag("name", name)
        check_tag("version", version)
        with self._lock:
            return self._require(name, version)

    def list_models(self, name: str) -> list[ModelInfo]:
        """Every version of ``name`` in registration order."""
        check_tag("name", name)
        with self._lock:
            return list(self._models.get(name, {}).values())

    def activate(self, name: str, version: str) -> ModelInfo:
        """Make ``version`` active; the previously active version is retired."""
        check_tag("name", name)
        check_tag("version", version)
        with self._lock:
            target = self._require(name, version)
            versions = self._models[name]
            for other_version, other in versions.items():
                if other.status is ModelStatus.ACTIVE and other_version != version:
                    versions[other_version] = other.model_copy(
                        update={"status": ModelStatus.RETIRED}
                    )
            activated = target.model_copy(update={"status": ModelStatus.ACTIVE})
            versions[version] = activated
            return activated

    def active_model(self, name: str) -> ModelInfo | None:
        """The active version of ``name``, if any."""
        check_tag("name", name)
        with self._lock:
            return self._active(name)

    def put_scores(self, name: str, version: str, scores: Mapping[int, float]) -> None:
        """Store per-video scores in ``[0, 1]`` for a registered version."""
        check_tag("name", name)
        check_tag("version", version)
        if not isinstance(scores, Mapping):
            raise InvalidInputError("scores", "must be a mapping of video id to score")
        checked: dict[int, float] = {}
        for video_id, score in scores.items():
            check_id("scores", video_id)
            value = finite_or_raise("scores", score)
            if not 0.0 <= value <= 1.0:
                raise InvalidInputError("scores", f"score of {video_id} must be in [0, 1]")
            checked[video_id] = value
        with self._lock:
            self._require(name, version)
            self._scores.setdefault((name, version), {}).update(checked)

    def get_scores(
        self, name: str, video_ids: Sequence[int], *, version: str | None = None
    ) -> dict[int, float]:
        """Scores of ``version`` (the active one when ``None``); missing ones omitted."""
        check_tag("name", name)
        ids = check_ids("video_ids", video_ids)
        if version is not None:
            check_tag("version", version)
        with self._lock:
            if version is None:
                active = self._active(name)
                if active is None:
                    return {}
                version = active.version
            else:
                self._require(name, version)
            scores = self._scores.get((name, version), {})
            return {vid: scores[vid] for vid in ids if vid in scores}

    def _require(self, name: str, version: str) -> ModelInfo:
        model = self._models.get(name, {}).get(version)
        if model is None:
            raise NotFoundError("model", f"{name}:{version}")
        return model

    def _active(self, name: str) -> ModelInfo | None:
        for model in self._models.get(name, {}).values():
            if model.status is ModelStatus.ACTIVE:
                return model
        return None
