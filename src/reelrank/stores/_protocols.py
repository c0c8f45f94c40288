"""The store protocols reelrank is built on, one per concern.

Every backend (the embedded in-memory stores, the Redis adapter, your own) implements
these structural protocols; nothing needs to inherit from them. They are
``runtime_checkable``, so ``isinstance(store, Catalog)`` checks that the methods exist
(not their signatures).

Shared rules, part of every contract below:

* Ids are positive int64 integers (see :mod:`reelrank._models`); a bad id, a bad limit
  or another bad argument raises :class:`~reelrank.InvalidInputError` naming the
  argument, and nothing is written.
* Bulk reads take any sequence of ids, may contain duplicates, and return a ``dict``
  keyed by id. Whether unknown ids are omitted or filled with a neutral value is stated
  per method.
* Reads of many users at once (the ``*_many`` methods of the optional bulk-read
  protocols) are the exception: they refuse an empty batch and a user asked for twice,
  since either is a caller's mistake, and return every requested user.
* A backend failure raises :class:`~reelrank.StoreError` (or a subclass such as
  :class:`~reelrank.StoreTimeoutError`), raised ``from`` the driver's exception.
* ``limit`` arguments are ints ``>= 0``; a result never holds more than ``limit`` items.
* Datetimes passed in must be timezone-aware; datetimes returned are UTC.

The reusable test suite in :mod:`reelrank.testing` checks every rule stated here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from ..models._catalog import Creator, ProcessingState, Video, VideoLabels
from ..models._engagement import EngagementEvent, VideoStats
from ..models._feed import FeedSnapshot, PageOutcome, PageRequest
from ..models._followed_columns import FollowedColumns, FollowedVideoColumns
from ..models._label_columns import VideoLabelColumns
from ..models._processing import ProcessingProgress
from ..models._registry import ModelInfo
from ..models._search import ParsedQuery, SearchDocument
from ..models._stats_columns import VideoStatsColumns
from ..models._trending import TrendingKind, TrendingSnapshot
from ..models._window import EngagementWindow

__all__ = [
    "InProcessStore",
    "SelfBoundingStore",
    "bounds_own_calls",
    "is_in_process",
    "AtomicSeenStore",
    "BulkReadCatalog",
    "BulkReadEventStore",
    "BulkReadSeenStore",
    "BoundedAgeEventStore",
    "CoordinatedTrendingSnapshotStore",
    "Catalog",
    "EngagementLog",
    "EventStore",
    "FeedCache",
    "FeedKey",
    "FollowedCandidatesCatalog",
    "FollowedColumnsCatalog",
    "LabelColumnsCatalog",
    "ModelRegistry",
    "PageTakingSeenStore",
    "ProgressStore",
    "SearchIndex",
    "SeenStore",
    "TrendingSnapshotStore",
]

FeedKey = tuple[int, str | None]
"""Key of a cached feed: ``(user_id, variant)``; ``variant`` is ``None`` for the default feed."""


@runtime_checkable
class Catalog(Protocol):
    """Videos, creators and who follows whom; the source of feed candidates.

    Candidate lists (:meth:`recent_videos`, :meth:`followed_videos`) hold only videos in
    the ``ready`` state.
    """

    def put_video(self, video: Video) -> None:
        """Insert or replace a video (keyed by ``video_id``).

        The creator must exist, else :class:`~reelrank.NotFoundError` (``kind="creator"``).
        """

    def put_creator(self, creator: Creator) -> None:
        """Insert or replace a creator (keyed by ``creator_id``)."""

    def get_video(self, video_id: int) -> Video:
        """The video with this id.

        Raises :class:`~reelrank.NotFoundError` (``kind="video"``) if unknown.
        """

    def get_videos(self, video_ids: Sequence[int]) -> dict[int, Video]:
        """Videos by id, in any state; unknown ids are omitted."""

    def get_creators(self, creator_ids: Sequence[int]) -> dict[int, Creator]:
        """Creators by id; unknown ids are omitted."""

    def set_state(self, video_id: int, state: ProcessingState) -> Video:
        """Move a video to ``state`` and return the updated video.

        Raises :class:`~reelrank.NotFoundError` for an unknown video and
        :class:`~reelrank.InvalidTransitionError` when
        :meth:`ProcessingState.can_move_to <reelrank.ProcessingState.can_move_to>`
        refuses the move (nothing changes then).
        """

    def recent_videos(self, *, limit: int, since: datetime | None = None) -> list[Video]:
        """Ready videos, newest ``published_at`` first (ties: higher ``video_id`` first).

        With ``since``, only videos published at or after it.
        """

    def get_labels(self, video_ids: Sequence[int]) -> dict[int, VideoLabels]:
        """The :class:`~reelrank.VideoLabels` of :meth:`get_videos` for the same ids
        (any state; unknown ids omitted), without reading the rest of each video."""

    def recent_labels(self, *, limit: int, since: datetime | None = None) -> list[VideoLabels]:
        """The :class:`~reelrank.VideoLabels` of :meth:`recent_videos` for the same
        arguments, in its order.

        For reads of many videos that need only their sound and hashtags (trending
        reads every video of its windows).
        """

    def follow(self, user_id: int, creator_id: int) -> None:
        """Record that the user follows the creator; following twice is a no-op.

        Raises :class:`~reelrank.NotFoundError` (``kind="creator"``) for an unknown creator.
        """

    def unfollow(self, user_id: int, creator_id: int) -> None:
        """Remove a follow; removing one that does not exist is a no-op."""

    def followed_creators(self, user_id: int) -> frozenset[int]:
        """Ids of the creators the user follows; empty for an unknown user."""

    def followed_videos(self, user_id: int, *, limit: int) -> list[Video]:
        """Ready videos of the creators the user follows, ordered like :meth:`recent_videos`."""


@runtime_checkable
class EventStore(Protocol):
    """Engagement events and the aggregates derived from them.

    :meth:`append` is idempotent by ``event_id``: an id seen before changes nothing,
    so a retried delivery is counted once in every statistic. A backend may forget an
    id after a retry horizon far longer than any client retries (the in-memory and
    Redis stores default to a week), which bounds the memory ids take. The aggregates follow
    the rules in *Stores and events* of the docs:

    * ``watch``: ``views += 1``, ``completion_sum += completion``;
    * ``like`` / ``unlike``: ``likes`` counts users who currently like the video; a like
      by a user who already likes it, or an unlike by one who does not, changes nothing;
    * ``share`` and ``comment``: ``shares += 1`` / ``comments += 1``;
    * affinity credit per (user, creator) as given by
      :func:`~reelrank.affinity_credit`, turned into affinity by :func:`~reelrank.affinity`.
    """

    def append(self, event: EngagementEvent, *, creator_id: int) -> bool:
        """Apply one event for a video published by ``creator_id``.

        Returns ``True`` if the event was applied, ``False`` if its ``event_id`` had
        already been applied (nothing changes then). A ``watch`` must carry
        ``completion`` (the :class:`~reelrank.EngagementRecorder` derives it from
        ``watched_seconds``), else :class:`~reelrank.InvalidInputError` naming
        ``completion``.
        """

    def get_stats(self, video_ids: Sequence[int]) -> dict[int, VideoStats]:
        """Aggregates by video id; every requested id is present, all zero if never engaged."""

    def stats_columns(self, video_ids: Sequence[int]) -> VideoStatsColumns:
        """The statistics :meth:`get_stats` returns for the same ids, as columns: one row
        per distinct requested id, in the order of first request, all zero if never
        engaged. Bad ids raise as in :meth:`get_stats`.

        What the feed reads for its candidates, without a model per video. A store
        without a faster path implements it as
        ``VideoStatsColumns.from_stats(self.get_stats(video_ids), video_ids)``.
        """

    def get_affinities(self, user_id: int, creator_ids: Sequence[int]) -> dict[int, float]:
        """Affinity in ``[0, 1]`` of the user with each creator; every requested id is
        present, ``0.0`` when the user never engaged with that creator."""

    def popular_video_ids(self, *, limit: int) -> list[int]:
        """Ids of the most viewed videos, most views first (ties: lower id first).

        Only videos with at least one view are listed. The list may hold videos that
        are no longer ready; callers fetch them through :meth:`Catalog.get_videos`.
        """


@runtime_checkable
class EngagementLog(Protocol):
    """Individual engagement events by time, for discovery features.

    Trending reads the recent events of everyone, creator recommendations those of one
    user and of the audiences around them; both read everyone's events as columns
    (:meth:`columns_between`). Recording is idempotent by ``event_id``,
    like :meth:`EventStore.append`: an application records each event it appends.
    """

    def record(self, event: EngagementEvent) -> bool:
        """Keep one event; ``False`` (and nothing changes) if its id was recorded before."""

    def events_between(
        self, start: datetime, end: datetime, *, limit: int
    ) -> list[EngagementEvent]:
        """Events with ``start <= occurred_at < end``: the newest ``limit`` of them,
        newest first (ties: higher ``event_id`` first)."""

    def columns_between(self, start: datetime, end: datetime, *, limit: int) -> EngagementWindow:
        """The events :meth:`events_between` returns for the same arguments, in the same
        order, as columns (video, user, kind code, time in microseconds).

        For computations that group and weigh many events (trending, the creators'
        audience graph): a backend reads only the four columns and builds no event
        model per row. Bad arguments raise :class:`~reelrank.InvalidInputError` naming
        ``start``, ``end`` or ``limit``, as :meth:`events_between` does.
        """

    def user_events(self, user_id: int, *, since: datetime, limit: int) -> list[EngagementEvent]:
        """The user's events at or after ``since``: the newest ``limit``, newest first
        (ties: higher ``event_id`` first); empty for an unknown user."""


@runtime_checkable
class SeenStore(Protocol):
    """Which videos each user has already been shown."""

    def mark_seen(self, user_id: int, video_ids: Sequence[int], at: datetime) -> None:
        """Record that the user saw these videos at ``at``.

        A video seen again keeps the later of the two times.
        """

    def seen_among(self, user_id: int, video_ids: Sequence[int], *, since: datetime) -> set[int]:
        """The subset of ``video_ids`` the user saw at or after ``since``."""

    def recently_seen(self, user_id: int, *, since: datetime, limit: int) -> list[int]:
        """Ids the user saw at or after ``since``, most recently seen first
        (ties: higher id first)."""


@runtime_checkable
class FeedCache(Protocol):
    """Ranked feed snapshots with a time to live, keyed by ``(user_id, variant)``.

    ``ttl_seconds`` must be finite and ``> 0`` (else :class:`~reelrank.InvalidInputError`
    naming ``ttl_seconds``). An entry is returned unchanged (equal to what was put)
    until its TTL runs out, then it is as if it had never been put. Backends may
    measure time on their own server; expiry may lag by up to half a second.
    """

    def get(self, user_id: int, variant: str | None = None) -> FeedSnapshot | None:
        """The live snapshot for the key, or ``None``."""

    def get_many(self, keys: Sequence[FeedKey]) -> dict[FeedKey, FeedSnapshot]:
        """Live snapshots by key; missing or expired keys are omitted."""

    def put(self, snapshot: FeedSnapshot, *, ttl_seconds: float) -> None:
        """Store a snapshot under :attr:`FeedSnapshot.key`, replacing any previous one."""

    def put_many(self, snapshots: Sequence[FeedSnapshot], *, ttl_seconds: float) -> None:
        """Store several snapshots with the same TTL (for warming the cache).

        Two snapshots with the same key: the later one in the sequence wins.
        """

    def delete(self, user_id: int, variant: str | None = None) -> bool:
        """Drop one snapshot; ``True`` if a live one was there."""

    def invalidate_user(self, user_id: int) -> int:
        """Drop the user's snapshots of every variant; returns how many live ones were dropped."""


@runtime_checkable
class ModelRegistry(Protocol):
    """Versions of deep-learning models and the per-video scores they produced.

    At most one version per model name is ``active``. Scores are in ``[0, 1]``.
    """

    def register(self, model: ModelInfo) -> None:
        """Add a model version in ``staging`` or ``retired`` status.

        A version that already exists for the name, or a model given as ``active``,
        raises :class:`~reelrank.InvalidInputError` (``version`` / ``status``); use
        :meth:`activate` to make a version active.
        """

    def get_model(self, name: str, version: str) -> ModelInfo:
        """One version; :class:`~reelrank.NotFoundError` (``kind="model"``) if unknown."""

    def list_models(self, name: str) -> list[ModelInfo]:
        """Every version of the named model, in registration order; empty if unknown."""

    def activate(self, name: str, version: str) -> ModelInfo:
        """Make the version active and retire the previously active one.

        Returns the activated model; :class:`~reelrank.NotFoundError` if unknown.
        """

    def active_model(self, name: str) -> ModelInfo | None:
        """The active version of the named model, or ``None``."""

    def put_scores(self, name: str, version: str, scores: Mapping[int, float]) -> None:
        """Store per-video scores of a registered version, replacing earlier scores of
        the same videos.

        Every score must be finite and in ``[0, 1]`` (else
        :class:`~reelrank.InvalidInputError` naming ``scores``, nothing written);
        :class:`~reelrank.NotFoundError` for an unregistered version.
        """

    def get_scores(
        self, name: str, video_ids: Sequence[int], *, version: str | None = None
    ) -> dict[int, float]:
        """Scores by video id from ``version``, or from the active version when ``None``.

        Videos without a score are omitted; with no active version and ``version=None``
        the result is empty. An explicit unknown version raises
        :class:`~reelrank.NotFoundError`.
        """


@runtime_checkable
class ProgressStore(Protocol):
    """Processing progress of uploaded videos, one record per video.

    :class:`~reelrank.ProcessingTracker` validates every change before it writes, so a
    store only keeps what it is given.
    """

    def get_progress(self, video_id: int) -> ProcessingProgress | None:
        """The progress of the video, or ``None`` if processing never started."""

    def put_progress(self, progress: ProcessingProgress) -> None:
        """Insert or replace the progress of ``progress.video_id``.

        Anything but a :class:`~reelrank.ProcessingProgress` raises
        :class:`~reelrank.InvalidInputError` naming ``progress``.
        """


@runtime_checkable
class TrendingSnapshotStore(Protocol):
    """Trending snapshots, one per ``(kind, window_hours)``; the fallback of
    :class:`~reelrank.Trending` when the catalog or the log fails."""

    def put_snapshot(self, snapshot: TrendingSnapshot) -> None:
        """Keep the snapshot, replacing the one of the same kind and window.

        Anything but a :class:`~reelrank.TrendingSnapshot` raises
        :class:`~reelrank.InvalidInputError` naming ``snapshot``.
        """

    def latest_snapshot(self, kind: TrendingKind, window_hours: float) -> TrendingSnapshot | None:
        """The last snapshot put for this kind and window, or ``None``.

        ``24`` and ``24.0`` are the same window. An unknown ``kind`` or a
        ``window_hours`` that is not a finite number raises
        :class:`~reelrank.InvalidInputError` naming it.
        """


@runtime_checkable
class CoordinatedTrendingSnapshotStore(TrendingSnapshotStore, Protocol):
    """A :class:`~reelrank.TrendingSnapshotStore` that also hands out *leases*: the right,
    for a while, to compute one kind and window, held by one owner at a time.

    Processes sharing the store then compute a result once between them: when the stored
    snapshot is too old to reuse, :class:`~reelrank.Trending` computes only if it takes
    the lease, and otherwise serves the stored snapshot (with its ``computed_at``) while
    the holder computes the next one.
    """

    def acquire_lease(
        self, kind: TrendingKind, window_hours: float, *, owner: str, seconds: float
    ) -> bool:
        """Take the lease of this kind and window for ``seconds``, unless a lease on it
        is held and has not expired (whoever holds it). ``True`` if taken.

        An unknown ``kind``, a ``window_hours`` that is not a finite number, an
        ``owner`` that is not a non-empty string of at most 64 characters or
        ``seconds`` that are not a positive finite number raise
        :class:`~reelrank.InvalidInputError` naming it.
        """

    def release_lease(self, kind: TrendingKind, window_hours: float, *, owner: str) -> None:
        """Give the lease of this kind and window back if ``owner`` holds it; a lease
        held by another owner, or none, is left alone. Bad arguments raise as in
        :meth:`acquire_lease`."""


@runtime_checkable
class SearchIndex(Protocol):
    """A full-text index of videos.

    The in-memory :class:`~reelrank.InMemorySearchIndex` implements it with BM25; a
    database backend (for example a PostgreSQL ``tsvector`` column with a ``GIN``
    index, prefix terms as ``term:*``) implements the same three methods. Scores are
    comparable within one result only.
    """

    def index(self, document: SearchDocument) -> None:
        """Add a document, replacing any earlier one of the same video.

        Anything but a :class:`~reelrank.SearchDocument` raises
        :class:`~reelrank.InvalidInputError` naming ``document``.
        """

    def remove(self, video_id: int) -> bool:
        """Drop a video's document; ``True`` if there was one."""

    def search(self, query: ParsedQuery, *, limit: int) -> list[tuple[int, float]]:
        """Up to ``limit`` ``(video_id, text_score)`` pairs of videos matching every
        term, by score descending (ties: lower id first); scores are positive.

        A term matches an indexed term equal to it, or, for a prefix term, every
        indexed term it starts; a hashtag term (``#word``) matches hashtags only.
        """


@runtime_checkable
class AtomicSeenStore(SeenStore, Protocol):
    """A :class:`~reelrank.SeenStore` that can filter a page and mark it seen in one call.

    :class:`FeedRankingService` cuts each page with :meth:`take_unseen` when the seen
    store has it: one round trip per page instead of a lookup and a write, and two
    requests for the same user at the same moment cannot both take the same video.
    """

    def take_unseen(
        self,
        user_id: int,
        video_ids: Sequence[int],
        *,
        limit: int,
        since: datetime,
        at: datetime,
    ) -> list[int]:
        """Take the first ``limit`` of ``video_ids`` (in their order) that the user has not
        seen at or after ``since``, mark them seen at ``at``, and return them in order.

        Atomic: no other call sees the ids as unseen once they are taken. Equivalent to
        :meth:`~reelrank.SeenStore.seen_among` followed by
        :meth:`~reelrank.SeenStore.mark_seen` of the ids it returns.
        """


@runtime_checkable
class BulkReadCatalog(Catalog, Protocol):
    """A :class:`~reelrank.Catalog` that reads the followed videos of many users in one call.

    Cache warming (:meth:`FeedRankingService.warm <reelrank.FeedRankingService.warm>`)
    uses it when the catalog has it, and otherwise calls
    :meth:`~reelrank.Catalog.followed_videos` once per user
    (:func:`~reelrank.stores.adapter.bulk_followed_videos` does either).
    """

    def followed_videos_many(
        self, user_ids: Sequence[int], *, limit: int
    ) -> dict[int, list[Video]]:
        """What :meth:`~reelrank.Catalog.followed_videos` returns for each user with the
        same ``limit``, keyed by user id; every requested user is present.

        ``user_ids`` must be a non-empty sequence of distinct valid ids, else
        :class:`~reelrank.InvalidInputError` naming ``user_ids``; a bad ``limit`` raises
        naming ``limit``. A backend reads them in one round trip, or in a few when it
        splits a large batch into chunks.
        """
        ...


@runtime_checkable
class BulkReadEventStore(EventStore, Protocol):
    """An :class:`~reelrank.EventStore` that reads the affinities of many users in one call.

    Cache warming uses it when the event store has it, and otherwise calls
    :meth:`~reelrank.EventStore.get_affinities` once per user
    (:func:`~reelrank.stores.adapter.bulk_affinities` does either).
    """

    def get_affinities_many(
        self, creator_ids_by_user: Mapping[int, Sequence[int]]
    ) -> dict[int, dict[int, float]]:
        """What :meth:`~reelrank.EventStore.get_affinities` returns for each user and
        their own creator ids, keyed by user id; every requested user is present.

        ``creator_ids_by_user`` must be a non-empty mapping of valid user ids to
        sequences of valid creator ids (which may be empty or repeat an id, as in
        :meth:`~reelrank.EventStore.get_affinities`), else
        :class:`~reelrank.InvalidInputError` naming ``creator_ids_by_user``. A backend
        reads them in one round trip, or in a few when it splits a large batch into
        chunks.
        """
        ...


@runtime_checkable
class BoundedAgeEventStore(EventStore, Protocol):
    """An :class:`~reelrank.EventStore` that can answer a statistics read from what it
    holds in this process, when the caller accepts counts up to a stated age.

    A caller that already shows or ranks by counts some seconds old (cached counts, a
    card's counts, a candidate pool's) asks :meth:`stats_columns_within` first and reads
    :meth:`~reelrank.EventStore.stats_columns` only when it gets ``None``: a store with
    a copy of its statistics in memory (the ClickHouse store's held roll-up and
    since-sums) answers without a round trip. The in-memory store answers exactly.
    """

    def stats_columns_within(
        self, video_ids: Sequence[int], *, max_age_seconds: float
    ) -> VideoStatsColumns | None:
        """The statistics :meth:`~reelrank.EventStore.stats_columns` returns for the same
        ids, except that events that arrived in the last ``max_age_seconds`` may be left
        out; or ``None`` when the store cannot promise that without reading from its
        backend (the caller then reads :meth:`~reelrank.EventStore.stats_columns`).

        Every event that arrived more than ``max_age_seconds`` ago is counted, some
        later ones may be, and no event is counted twice (a store states what else it
        may leave out, and for how long). Never blocks on I/O. Bad ids raise as in
        :meth:`~reelrank.EventStore.stats_columns`; ``max_age_seconds`` must be a finite
        number ``>= 0``, else :class:`~reelrank.InvalidInputError` naming it.
        """
        ...


@runtime_checkable
class BulkReadSeenStore(SeenStore, Protocol):
    """A :class:`~reelrank.SeenStore` that reads the recently seen ids of many users in
    one call.

    Cache warming uses it when the seen store has it, and otherwise calls
    :meth:`~reelrank.SeenStore.recently_seen` once per user
    (:func:`~reelrank.stores.adapter.bulk_recently_seen` does either).
    """

    def recently_seen_many(
        self, user_ids: Sequence[int], *, since: datetime, limit: int
    ) -> dict[int, list[int]]:
        """What :meth:`~reelrank.SeenStore.recently_seen` returns for each user with the
        same ``since`` and ``limit``, keyed by user id; every requested user is present.

        ``user_ids`` must be a non-empty sequence of distinct valid ids, else
        :class:`~reelrank.InvalidInputError` naming ``user_ids``; a naive ``since`` or a
        bad ``limit`` raise naming them. A backend reads them in one round trip, or in a
        few when it splits a large batch into chunks.
        """
        ...


@runtime_checkable
class FollowedCandidatesCatalog(Catalog, Protocol):
    """A :class:`~reelrank.Catalog` that can read a user's followed videos as ranking
    columns together with their statistics, in one round trip.

    A feed's cache miss reads the user's followed videos and then their statistics from
    the event store: two round trips, and a :class:`~reelrank.Video` built per row of
    which the ranking uses four fields. A catalog whose database also holds the event
    store's statistics (the SQL adapter's) can do both in one statement.
    :class:`~reelrank.FeedRankingService` uses :meth:`followed_candidates` when the
    catalog has it and :meth:`reads_stats_of` says yes for its event store; otherwise
    it calls :meth:`~reelrank.Catalog.followed_videos` and
    :meth:`EventStore.stats_columns <reelrank.EventStore.stats_columns>`.
    """

    def reads_stats_of(self, events: EventStore) -> bool:
        """Whether :meth:`followed_candidates` reads the statistics ``events`` holds
        (the same database), so that its statistics are what
        ``events.stats_columns`` would return."""

    def followed_candidates(self, user_id: int, *, limit: int) -> FollowedVideoColumns:
        """The videos :meth:`~reelrank.Catalog.followed_videos` returns for the same
        arguments, in its order, as columns, with their statistics (all zero for a
        video never engaged with).

        Bad arguments raise as in :meth:`~reelrank.Catalog.followed_videos`.
        """


@runtime_checkable
class FollowedColumnsCatalog(Catalog, Protocol):
    """A :class:`~reelrank.Catalog` that can read a user's followed videos as ranking
    columns, without building a :class:`~reelrank.Video` per row.

    A feed's cache miss whose catalog cannot read the event store's statistics itself
    (:class:`~reelrank.FollowedCandidatesCatalog`), such as a catalog in PostgreSQL
    with the events in ClickHouse, reads the user's followed videos and then their
    statistics from the event store. With this read it builds no
    :class:`~reelrank.Video` (renditions and all) for the four fields it ranks by:
    :class:`~reelrank.FeedRankingService` calls :meth:`followed_columns` and then
    :meth:`EventStore.stats_columns <reelrank.EventStore.stats_columns>` for the rows
    outside its candidate pool, and :meth:`~reelrank.Catalog.followed_videos` only for
    a catalog without it.
    """

    def followed_columns(self, user_id: int, *, limit: int) -> FollowedColumns:
        """The videos :meth:`~reelrank.Catalog.followed_videos` returns for the same
        arguments, in its order, as columns.

        Bad arguments raise as in :meth:`~reelrank.Catalog.followed_videos`.
        """


@runtime_checkable
class LabelColumnsCatalog(Catalog, Protocol):
    """A :class:`~reelrank.Catalog` that can read videos' labels as columns
    (:class:`~reelrank.VideoLabelColumns`), without a :class:`~reelrank.VideoLabels`
    per video.

    :class:`~reelrank.Trending` reads the labels of every video published in its two
    windows (tens of thousands) and of every other video engaged with in them. As
    tuples, each with a datetime and a tuple of hashtags, they stay alive through the
    computation, and every garbage collection its allocations set off walks them all
    while holding the interpreter lock, delaying the requests of the same process.
    Trending calls :meth:`recent_label_columns` and :meth:`label_columns`, and
    :meth:`~reelrank.Catalog.recent_labels` and :meth:`~reelrank.Catalog.get_labels`
    only for a catalog without them. A catalog without a faster path implements them as
    ``VideoLabelColumns.from_labels(self.recent_labels(limit=limit, since=since))`` and
    ``VideoLabelColumns.from_labels(sorted(self.get_labels(video_ids).values()))``.
    """

    def recent_label_columns(
        self, *, limit: int, since: datetime | None = None
    ) -> VideoLabelColumns:
        """The labels :meth:`~reelrank.Catalog.recent_labels` returns for the same
        arguments, in its order, as columns.

        Bad arguments raise as in :meth:`~reelrank.Catalog.recent_labels`.
        """

    def label_columns(self, video_ids: Sequence[int]) -> VideoLabelColumns:
        """The labels :meth:`~reelrank.Catalog.get_labels` returns for the same ids, as
        columns: one row per distinct known id (any state), ascending ids; unknown ids
        are omitted.

        Bad ids raise as in :meth:`~reelrank.Catalog.get_labels`.
        """


@runtime_checkable
class PageTakingSeenStore(SeenStore, Protocol):
    """A :class:`~reelrank.SeenStore` that serves a cursor page in one call, together with
    the feed cache its page records live in.

    A cached cursor page otherwise costs three store calls: look the remembered page up
    in the feed cache, filter and mark the page's ids in the seen store, remember the
    page. When the two stores are one deployment (the same Redis server, through the
    same client), :meth:`take_page` does all three at once, and
    :class:`~reelrank.FeedRankingService` uses it for pages cut from a cached snapshot.
    The request and its outcome are :class:`~reelrank.PageRequest` and
    :class:`~reelrank.PageOutcome`.
    :func:`~reelrank.stores.adapter.take_page_in_steps` is the same operation in
    separate calls: the reference an implementation must agree with.
    """

    def takes_pages_with(self, cache: FeedCache) -> bool:
        """Whether :meth:`take_page` can keep page records in ``cache`` (a level of the
        feed cache): only a cache this store reaches within the same call."""

    def take_page(self, cache: FeedCache, request: PageRequest) -> PageOutcome:
        """Recall the live record under ``request.record_key`` in ``cache``; if there is
        none, take the first ``request.limit`` rows from ``request.start`` whose ids the
        user has not seen since ``request.since``, mark them seen at ``request.at`` and,
        if any were taken, keep their record (see :class:`~reelrank.PageRequest`) in ``cache`` for
        ``request.ttl_seconds``.

        Equivalent to :func:`~reelrank.stores.adapter.take_page_in_steps`, and atomic at
        least while the page is found among the first 32 ids it looks at: two calls for
        one record key at the same moment take one page, and the other recalls it. It
        should be one round trip then. A ``cache`` it does not take pages with raises
        :class:`~reelrank.InvalidInputError` naming ``cache``.
        """


@runtime_checkable
class SelfBoundingStore(Protocol):
    """A store that says whether every one of its calls ends within a bound of its own.

    A store declares the capability with a class attribute or property
    ``bounds_own_calls``; the instance's value says whether it holds (an adapter may set
    it only when its client has short timeouts and no retries that outlast them). The
    feed service calls such stores on the request thread, skipping the worker thread that
    would otherwise enforce its deadline. Use :func:`bounds_own_calls` to ask a store.
    """

    @property
    def bounds_own_calls(self) -> bool:
        """True when no call can outlast the store's own timeouts."""
        ...


@runtime_checkable
class InProcessStore(Protocol):
    """A store that lives in this process and cannot fail or stall, such as a dict.

    Declared with a class attribute ``in_process = True``. The feed service calls an
    in-process cache level without a guard. Use :func:`is_in_process` to ask a store.
    """

    in_process: bool


def bounds_own_calls(store: object) -> bool:
    """Whether ``store`` declares :class:`SelfBoundingStore` and holds to it.

    The declaration is looked up on the class, so a wrapper that forwards attributes to
    such a store (a fault injector, a proxy to another process) is not mistaken for one.
    """
    declared = hasattr(type(store), "bounds_own_calls")
    return declared and getattr(store, "bounds_own_calls", False) is True


def is_in_process(store: object) -> bool:
    """Whether ``store``'s class declares :class:`InProcessStore` (``in_process = True``)."""
    return getattr(type(store), "in_process", False) is True
