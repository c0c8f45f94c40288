"""The ClickHouse event store: events in a ReplacingMergeTree table, their aggregates and id
counts in one AggregatingMergeTree table kept current by one materialized view, and
corrections for the rare event that two writers delivered at the same moment."""

from __future__ import annotations

import contextlib
import math
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from clickhouse_driver import Client
from numpy.typing import NDArray
from sqlalchemy.engine import Engine

from reelrank import (
    MAX_ID,
    EngagementEvent,
    EngagementKind,
    InvalidInputError,
    StoreError,
    VideoStats,
    VideoStatsColumns,
    affinity,
    affinity_credit,
)
from reelrank.stores.adapter import (
    check_aware,
    check_id,
    check_ids,
    check_ids_by_user,
    check_limit,
    check_max_age,
    check_ttl,
    chunked,
)

from ._client import (
    ONE_BLOCK,
    DriverClients,
    id_check_columns,
    id_frame,
    id_table,
    numpy_columns,
    server_client,
)
from ._columns import insert_columns
from ._config import ClickHouseTables
from ._errors import store_errors
from ._rows import (
    EVENT_COLUMNS,
    EVENT_SELECT,
    SECONDS_COLUMN,
    SEQ_COLUMN,
    ArrivalSequence,
    event_columns,
    event_from_row,
)
from ._schema import ARRIVAL_BUCKET_SHIFT, FINE_BUCKET_SHIFT, FINE_PER_COARSE_BITS, KIND_CODES, Tag

__all__ = ["ClickHouseEventStore"]

_STORE = "events"
# The kinds whose extra copies are corrected, as the insert columns hold them.
_COUNTED = frozenset(
    kind.value for kind in (EngagementKind.WATCH, EngagementKind.SHARE, EngagementKind.COMMENT)
)
# Where the fields of a correction are among the insert columns (EVENT_COLUMNS, then
# creator_id).
_KIND_COLUMN, _USER_COLUMN, _VIDEO_COLUMN, _COMPLETION_COLUMN, _CREATOR_COLUMN = 1, 2, 3, 7, 11
# The Nullable insert columns (watched_seconds, completion, channel, variant): one that
# no event of a batch fills is left out of its insert (see _Queries.insert_of).
_NULLABLE_COLUMNS = frozenset({6, 7, 8, 9})
_LIKES = KIND_CODES["like"]  # the code under which reads report like counts
_Pair = tuple[EngagementEvent, int]
# Up to this many videos whose like counts are read again are named in the query's text,
# so the server reads their like states only (a few kilobytes of text).
_FEW_VIDEOS = 1_000
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_KIND_OF_CODE = {code: EngagementKind(kind) for kind, code in KIND_CODES.items()}
# What each row of the folded stats query is (its ``part`` column).
(
    _FOLDED,
    _ARRIVALS_BEFORE,
    _FOLDED_VIDEOS,
    _ARRIVED_SINCE,
    _CORRECTED,
    _NEWEST,
    _BUCKET_TOTAL,
    _CHANGED_PAIR,
) = range(8)
# A (video, user) pair is held as one int64, ``video << 32 | user``: sorted, the pairs
# of a video are adjacent. Pairs with larger ids are not held (reads then take the path
# that reads like counts again from the server).
_PAIR_USER_BITS = 32
_PAIR_VIDEO_LIMIT = 1 << 31
_PAIR_USER_LIMIT = 1 << _PAIR_USER_BITS
# The most corrections the store holds for bounded-age reads; with more (a deployment
# whose writers race constantly) those reads answer None and callers read exactly.
_HELD_CORRECTIONS_LIMIT = 100_000
# How long the store keeps its held data fresh for bounded-age reads after the last one
# was asked for: a worker that stops asking stops reading in the background.
_BOUNDED_IDLE_SECONDS = 60.0
# The video a background check reads, for its checks and their side effects only.
_CHECK_VIDEO = np.array([1], dtype=np.int64)


def _row_of(requested: NDArray[np.int64], video_ids: NDArray[np.int64]) -> NDArray[np.intp]:
    """The position in ``requested`` (distinct ids) of each of ``video_ids``, which the
    server returned for requested ids only."""
    order = np.argsort(requested, kind="stable")
    found = np.searchsorted(requested, video_ids, sorter=order)
    rows: NDArray[np.intp] = order[np.minimum(found, requested.shape[0] - 1)]
    if video_ids.shape[0] and not np.array_equal(requested[rows], video_ids):
        raise StoreError(_STORE, "get_stats: the server returned a video that was not requested")
    return rows


@dataclass
class _Sums:
    """Per-video sums of the requested videos, row ``i`` for the ``i``-th distinct id."""

    views: NDArray[np.int64]
    completion_sum: NDArray[np.float64]
    likes: NDArray[np.int64]
    shares: NDArray[np.int64]
    comments: NDArray[np.int64]

    @classmethod
    def zeros(cls, count: int) -> _Sums:
        return cls(
            np.zeros(count, dtype=np.int64),
            np.zeros(count, dtype=np.float64),
            np.zeros(count, dtype=np.int64),
            np.zeros(count, dtype=np.int64),
            np.zeros(count, dtype=np.int64),
        )

    def add(
        self,
        rows: NDArray[np.intp],
        views: NDArray[np.int64],
        completion_sum: NDArray[np.float64],
        likes: NDArray[np.int64],
        shares: NDArray[np.int64],
        comments: NDArray[np.int64],
    ) -> None:
        """Add the values of result rows, each to the sums of its video's row; a video
        may have several result rows (a roll-up row, what arrived since, corrections)."""
        for into, values in (
            (self.views, views),
            (self.completion_sum, completion_sum),
            (self.likes, likes),
            (self.shares, shares),
            (self.comments, comments),
        ):
            np.add.at(into, rows, values)

    def add_all_but_likes(self, other: _Sums) -> None:
        """Add ``other``'s sums of the same videos, row by row, except its like counts
        (for the callers, the number of likes and unlikes, not a count of likes)."""
        self.views += other.views
        self.completion_sum += other.completion_sum
        self.shares += other.shares
        self.comments += other.comments

    def columns(self, requested: NDArray[np.int64]) -> VideoStatsColumns:
        """The statistics of the requested videos, checked: a negative count means the
        tables are inconsistent (a :class:`~reelrank.StoreError`), and a completion sum
        summed from many floats may overshoot the views (or a corrected one dip below
        zero) by rounding, so it is clamped to ``[0, views]``, where it holds exactly."""
        for counts in (self.views, self.likes, self.shares, self.comments):
            negative = np.flatnonzero(counts < 0)
            if negative.shape[0]:
                raise StoreError(
                    _STORE, f"get_stats: negative counts for video {requested[negative[0]]}"
                )
        completion = np.minimum(np.maximum(self.completion_sum, 0.0), self.views)
        return VideoStatsColumns.from_arrays(
            video_ids=requested,
            views=self.views,
            completion_sum=completion,
            likes=self.likes,
            shares=self.shares,
            comments=self.comments,
        )


@dataclass(frozen=True)
class _HeldRollUp:
    """A complete roll-up's rows held by the store: its watermark, its arrival count,
    and its per-video sums sorted by video id."""

    fold: int
    arrivals: int
    video_ids: NDArray[np.int64]
    values: _Sums

    def rows_of(self, requested: NDArray[np.int64]) -> _Sums:
        """The roll-up's sums of the requested videos (zeros for videos it lacks), in a
        new :class:`_Sums` of their own."""
        sums = _Sums.zeros(requested.shape[0])
        if not self.video_ids.shape[0]:
            return sums
        found = np.minimum(np.searchsorted(self.video_ids, requested), self.video_ids.shape[0] - 1)
        held = self.video_ids[found] == requested
        rows = found[held]
        for into, source in (
            (sums.views, self.values.views),
            (sums.completion_sum, self.values.completion_sum),
            (sums.likes, self.values.likes),
            (sums.shares, self.values.shares),
            (sums.comments, self.values.comments),
        ):
            into[held] = source[rows]
        return sums


@dataclass(frozen=True)
class _LikesSince:
    """Like counts of roll-up ``fold``'s videos with likes or unlikes since it, read
    again from their pairs or computed from the held liked pairs, sorted by video: each
    with ``marks``, a number of likes and unlikes of the video since the roll-up that
    the count includes (those that had arrived when the read that fetched it began, or
    those of the pairs it was computed from). Likes and unlikes are only ever added, so
    while a video's number is unchanged no like state of it has changed, and the count
    still holds."""

    fold: int
    video_ids: NDArray[np.int64]
    marks: NDArray[np.int64]
    likes: NDArray[np.int64]

    def still_held(
        self, fold: int, video_ids: NDArray[np.int64], marks: NDArray[np.int64]
    ) -> tuple[NDArray[np.bool_], NDArray[np.int64]]:
        """Which of ``video_ids`` (with their ``marks`` now) have a count that still
        holds, and those counts."""
        held = np.zeros(video_ids.shape[0], dtype=np.bool_)
        if fold != self.fold or not self.video_ids.shape[0]:
            return held, np.zeros(0, dtype=np.int64)
        found = np.minimum(np.searchsorted(self.video_ids, video_ids), self.video_ids.shape[0] - 1)
        held = (self.video_ids[found] == video_ids) & (self.marks[found] == marks)
        return held, self.likes[found[held]]

    def with_counts(
        self,
        fold: int,
        video_ids: NDArray[np.int64],
        marks: NDArray[np.int64],
        likes: NDArray[np.int64],
    ) -> _LikesSince:
        """These counts (of roll-up ``fold``) with ``video_ids``' replaced by the new
        ones; a newer roll-up's counts start afresh."""
        if fold == self.fold:
            kept = ~np.isin(self.video_ids, video_ids)
            video_ids = np.concatenate((self.video_ids[kept], video_ids))
            marks = np.concatenate((self.marks[kept], marks))
            likes = np.concatenate((self.likes[kept], likes))
        order = np.argsort(video_ids, kind="stable")
        return _LikesSince(fold, video_ids[order], marks[order], likes[order])


_NO_LIKES_SINCE = _LikesSince(
    -1, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
)
# What a read with held since-sums returns in place of the newest roll-up when the
# server's bucket totals differ from them.
_SINCE_STALE = -1


def _sums_by_video(
    video_ids: NDArray[np.int64], sums: Sequence[_Sums]
) -> tuple[NDArray[np.int64], _Sums]:
    """The distinct ``video_ids`` (sorted) and the sums of each, from ``sums`` whose
    rows, concatenated, are the rows of ``video_ids``."""
    distinct, rows = np.unique(video_ids, return_inverse=True)
    total = _Sums.zeros(distinct.shape[0])
    for name in ("views", "completion_sum", "likes", "shares", "comments"):
        values = np.concatenate([getattr(each, name) for each in sums])
        into = getattr(total, name)
        # Integer sums are exact: bincount's float64 holds integers up to 2**53.
        into[:] = np.bincount(rows, weights=values, minlength=distinct.shape[0])
    return distinct, total


def _pair_keys(videos: NDArray[np.int64], users: NDArray[np.int64]) -> NDArray[np.int64] | None:
    """The pairs' keys, ``video << 32 | user``, or ``None`` when some id is too large."""
    if videos.shape[0] and (
        int(videos.max()) >= _PAIR_VIDEO_LIMIT or int(users.max()) >= _PAIR_USER_LIMIT
    ):
        return None
    keys: NDArray[np.int64] = (videos << _PAIR_USER_BITS) | users
    return keys


@dataclass(frozen=True)
class _ChangedPairs:
    """The pairs with likes or unlikes in some arrival buckets: sorted keys (see
    :func:`_pair_keys`), each pair's latest state there (1 liked, 0 not) and its number
    of likes and unlikes there."""

    keys: NDArray[np.int64]
    liked: NDArray[np.int64]
    events: NDArray[np.int64]

    @classmethod
    def of_rows(
        cls,
        videos: NDArray[np.int64],
        users: NDArray[np.int64],
        liked: NDArray[np.int64],
        events: NDArray[np.int64],
    ) -> _ChangedPairs | None:
        """The pairs of rows that hold each pair once; ``None`` when some id is too
        large to hold."""
        keys = _pair_keys(videos, users)
        if keys is None:
            return None
        order = np.argsort(keys, kind="stable")
        return cls(keys[order], liked[order], events[order])

    @staticmethod
    def latest(ordered: Sequence[_ChangedPairs]) -> _ChangedPairs:
        """The pairs of ``ordered`` (of ever later buckets), each with the state of the
        last that holds it (likes and unlikes arrive in bucket order) and its likes and
        unlikes in all of them."""
        if len(ordered) == 1:
            return ordered[0]
        keys = np.concatenate([each.keys for each in ordered])
        if not keys.shape[0]:
            return _NO_CHANGED_PAIRS
        liked = np.concatenate([each.liked for each in ordered])
        events = np.concatenate([each.events for each in ordered])
        rank = np.repeat(np.arange(len(ordered)), [each.keys.shape[0] for each in ordered])
        order = np.lexsort((rank, keys))
        keys, liked, events = keys[order], liked[order], events[order]
        first = np.ones(keys.shape[0], dtype=np.bool_)
        first[1:] = keys[1:] != keys[:-1]
        last = np.ones(keys.shape[0], dtype=np.bool_)
        last[:-1] = first[1:]
        return _ChangedPairs(
            keys[last], liked[last], np.add.reduceat(events, np.flatnonzero(first))
        )

    def of_videos(self, videos: NDArray[np.int64]) -> _ChangedPairs:
        """The pairs of ``videos`` (sorted, distinct, each below 2**31), sorted."""
        low = np.searchsorted(self.keys, videos << _PAIR_USER_BITS)
        high = np.searchsorted(self.keys, (videos + 1) << _PAIR_USER_BITS)
        lengths = high - low
        total = int(lengths.sum())
        if total == self.keys.shape[0]:
            return self
        starts = low - (np.cumsum(lengths) - lengths)
        rows = np.repeat(starts, lengths) + np.arange(total)
        return _ChangedPairs(self.keys[rows], self.liked[rows], self.events[rows])

    def marks(self, videos: NDArray[np.int64]) -> NDArray[np.int64]:
        """The likes and unlikes of each of ``videos`` (distinct; holding every pair
        here) in these buckets."""
        marks = np.zeros(videos.shape[0], dtype=np.int64)
        np.add.at(marks, _row_of(videos, self.keys >> _PAIR_USER_BITS), self.events)
        return marks


_NO_CHANGED_PAIRS = _ChangedPairs(
    np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
)


@dataclass(frozen=True)
class _HeldLikes:
    """The pairs liked as of the like-state rows before roll-up ``fold``'s watermark
    (its first fine bucket; the rows a migration wrote are in bucket 0): sorted keys
    (see :func:`_pair_keys`), and the number of them of each video (sorted)."""

    fold: int
    keys: NDArray[np.int64]
    video_ids: NDArray[np.int64]
    counts: NDArray[np.int64]

    @classmethod
    def of_pairs(cls, fold: int, keys: NDArray[np.int64]) -> _HeldLikes:
        keys = np.sort(keys)
        video_ids, counts = np.unique(keys >> _PAIR_USER_BITS, return_counts=True)
        return cls(fold, keys, video_ids, counts.astype(np.int64))

    def likes(self, videos: NDArray[np.int64], changed: _ChangedPairs) -> NDArray[np.int64]:
        """The like counts of ``videos`` (distinct) now, given ``changed``, every pair of
        theirs with a like or unlike since the watermark and its latest state: the pairs
        liked at the watermark, less those that changed, plus those that changed whose
        latest state is liked. A pair that did not change has its state at the
        watermark still."""
        counts = np.zeros(videos.shape[0], dtype=np.int64)
        if self.video_ids.shape[0]:
            found = np.minimum(np.searchsorted(self.video_ids, videos), self.video_ids.shape[0] - 1)
            held = self.video_ids[found] == videos
            counts[held] = self.counts[found[held]]
        if not changed.keys.shape[0]:
            return counts
        was_liked = np.zeros(changed.keys.shape[0], dtype=np.int64)
        if self.keys.shape[0]:
            found = np.minimum(np.searchsorted(self.keys, changed.keys), self.keys.shape[0] - 1)
            was_liked = (self.keys[found] == changed.keys).astype(np.int64)
        np.add.at(
            counts,
            _row_of(videos, changed.keys >> _PAIR_USER_BITS),
            changed.liked - was_liked,
        )
        return counts


def _add_sums_of(
    video_ids: NDArray[np.int64], values: _Sums, requested: NDArray[np.int64], into: _Sums
) -> None:
    """Add the sums ``values`` of the sorted ``video_ids`` to the rows of ``into`` of the
    requested videos among them."""
    if not video_ids.shape[0]:
        return
    found = np.minimum(np.searchsorted(video_ids, requested), video_ids.shape[0] - 1)
    held = np.flatnonzero(video_ids[found] == requested)
    rows = found[held]
    for name in ("views", "completion_sum", "likes", "shares", "comments"):
        getattr(into, name)[held] += getattr(values, name)[rows]


@dataclass(frozen=True)
class _SinceChunk:
    """What arrived in the held fine buckets of one coarse arrival bucket (the unit of
    the roll-ups' watermarks), for every video that got events there: sorted video ids
    and their sums (``likes`` holding the number of likes and unlikes), ``total``, the
    number of events they count, and ``pairs``, the pairs with likes or unlikes there
    and their latest states (``None`` when the store does not hold them: some id too
    large, or the store holds no liked pairs)."""

    coarse: int
    total: int
    video_ids: NDArray[np.int64]
    values: _Sums
    pairs: _ChangedPairs | None

    def add_to(self, requested: NDArray[np.int64], into: _Sums) -> None:
        """Add this chunk's sums of the requested videos to their rows of ``into``."""
        _add_sums_of(self.video_ids, self.values, requested, into)

    def merged(self, other: _SinceChunk) -> _SinceChunk:
        """This chunk and ``other``, of later fine buckets of the same coarse one."""
        video_ids, values = _sums_by_video(
            np.concatenate((self.video_ids, other.video_ids)), (self.values, other.values)
        )
        pairs = None
        if self.pairs is not None and other.pairs is not None:
            pairs = _ChangedPairs.latest((self.pairs, other.pairs))
        return _SinceChunk(self.coarse, self.total + other.total, video_ids, values, pairs)


@dataclass(frozen=True)
class _FoldedSince:
    """The since-chunks from roll-up ``fold``'s watermark on, folded into one: sorted
    video ids and their sums over the chunks (``likes`` holding the number of likes and
    unlikes), added in chunk order as a read adding chunk by chunk would, so that a
    bounded-age read looks each candidate up once rather than once per chunk; and
    ``like_counts``, the like count now of every video with pairs that changed in the
    chunks, computed from the held liked pairs when the chunks were extended (``None``
    when the store held none for the roll-up then, or the chunks do not hold their
    pairs)."""

    fold: int
    video_ids: NDArray[np.int64]
    values: _Sums
    like_counts: _LikesSince | None = None

    @classmethod
    def of_chunks(cls, fold: int, chunks: Sequence[_SinceChunk]) -> _FoldedSince:
        if not chunks:
            return cls(fold, np.zeros(0, dtype=np.int64), _Sums.zeros(0))
        video_ids, values = _sums_by_video(
            np.concatenate([chunk.video_ids for chunk in chunks]),
            [chunk.values for chunk in chunks],
        )
        return cls(fold, video_ids, values)

    def add_to(self, requested: NDArray[np.int64], into: _Sums) -> None:
        """Add the folded sums of the requested videos to their rows of ``into``."""
        _add_sums_of(self.video_ids, self.values, requested, into)

    def with_like_counts(self, liked: _HeldLikes, changed: Sequence[_ChangedPairs]) -> _FoldedSince:
        """These sums with the like counts now of the videos of ``changed`` (the pairs
        of the folded chunks, in bucket order), from ``liked`` (of the same roll-up)."""
        latest = _ChangedPairs.latest(changed) if changed else _NO_CHANGED_PAIRS
        # The keys are sorted, so their videos are: distinct where they change (an
        # order of magnitude faster than np.unique's hashing for 100,000s of pairs).
        of_pairs = latest.keys >> _PAIR_USER_BITS
        distinct = np.ones(of_pairs.shape[0], dtype=np.bool_)
        distinct[1:] = of_pairs[1:] != of_pairs[:-1]
        videos = of_pairs[distinct]
        marks = np.zeros(videos.shape[0], dtype=np.int64)
        if self.video_ids.shape[0]:
            found = np.minimum(np.searchsorted(self.video_ids, videos), self.video_ids.shape[0] - 1)
            present = self.video_ids[found] == videos
            marks[present] = self.values.likes[found[present]]
        counts = _LikesSince(self.fold, videos, marks, liked.likes(videos, latest))
        return replace(self, like_counts=counts)


@dataclass(frozen=True)
class _HeldSince:
    """What arrived in fine buckets ``[start, unheld)``, held by the store in
    :class:`_SinceChunk` s, one per coarse bucket with arrivals. ``start`` is a coarse
    boundary (a roll-up's watermark), so it serves every roll-up whose watermark lies
    in ``[start, unheld]``: the chunks from that watermark on.

    ``checked_ns`` (nanoseconds of the store's clock) is a moment before which every
    event that reached the server is counted, for roll-up ``checked_fold``: the start
    of the last read that found the held chunks' totals and the roll-up's arrivals
    unchanged on the server, or of a later read of new buckets, whichever is older
    (rows are only ever added, so a read's snapshot holds every event inserted before
    it began). The bounded-age read (:meth:`ClickHouseEventStore.stats_columns_within`)
    answers from the chunks only while it is recent enough. ``checked_all`` says that
    read found no bucket with arrivals after the held ones, so that every event that
    reached the server before ``checked_ns`` is counted, whatever its bucket (a quiet
    moment: the held buckets need not be recent then)."""

    start: int
    unheld: int
    chunks: tuple[_SinceChunk, ...]
    checked_fold: int
    checked_ns: int
    checked_all: bool = False
    folded: _FoldedSince | None = None

    def serves(self, fold: int) -> bool:
        """Whether it holds every fine bucket from roll-up ``fold``'s watermark on up to
        :attr:`unheld`."""
        return self.start <= fold << FINE_PER_COARSE_BITS <= self.unheld

    def matches(self, fold: int, buckets: NDArray[np.int64], totals: NDArray[np.int64]) -> bool:
        """Whether the server's totals of the fine buckets since roll-up ``fold``'s
        watermark (``buckets``, each once, and their ``totals``) are, on the held ones,
        what the chunks count: otherwise an event arrived in a held bucket after it was
        read (a late batch, a part a replica fetched later)."""
        held = buckets < self.unheld
        coarse, rows = np.unique(buckets[held] >> FINE_PER_COARSE_BITS, return_inverse=True)
        found = np.bincount(rows, weights=totals[held], minlength=coarse.shape[0])
        expected = {chunk.coarse: chunk.total for chunk in self.chunks if chunk.coarse >= fold}
        return {
            int(each): int(total) for each, total in zip(coarse, found, strict=True)
        } == expected

    def add_to(self, fold: int, requested: NDArray[np.int64], into: _Sums) -> None:
        """Add what arrived since roll-up ``fold``'s watermark in the held buckets to
        the requested videos' rows of ``into``."""
        if self.folded is not None and self.folded.fold == fold:
            self.folded.add_to(requested, into)
            return
        for chunk in self.chunks:
            if chunk.coarse >= fold:
                chunk.add_to(requested, into)

    def like_counts(self, fold: int) -> _LikesSince:
        """The like counts computed when the chunks were extended, for roll-up
        ``fold`` (none when they were not)."""
        folded = self.folded
        if folded is None or folded.fold != fold or folded.like_counts is None:
            return _NO_LIKES_SINCE
        return folded.like_counts

    def with_like_counts(self, liked: _HeldLikes | None) -> _HeldSince:
        """These since-sums with the like counts now of the videos liked or unliked in
        them, from ``liked`` when it is of the roll-up they were folded for and the
        chunks hold their pairs (else unchanged)."""
        folded = self.folded
        if folded is None or liked is None or liked.fold != folded.fold:
            return self
        changed = self.changed_pairs(folded.fold)
        if changed is None:
            return self
        return replace(self, folded=folded.with_like_counts(liked, changed))

    def changed_pairs(self, fold: int) -> list[_ChangedPairs] | None:
        """The pairs that changed in the held buckets since roll-up ``fold``'s
        watermark, a :class:`_ChangedPairs` per chunk in bucket order; ``None`` when a
        chunk does not hold its pairs."""
        pairs = [chunk.pairs for chunk in self.chunks if chunk.coarse >= fold]
        if any(each is None for each in pairs):
            return None
        return [each for each in pairs if each is not None]

    def extended(
        self,
        fold: int,
        unheld: int,
        columns: Sequence[Any],
        pair_columns: Sequence[Any] | None,
        read_ns: int,
    ) -> _HeldSince:
        """The chunks from roll-up ``fold``'s watermark on, with the rows of
        :attr:`_Queries.arrived_between` from :attr:`unheld` up to ``unheld`` added,
        and with those of :attr:`_Queries.pairs_between` (``None``: pairs not held),
        read from ``read_ns`` on (the store's clock; it bounds :attr:`checked_ns`).
        A coarse bucket with pairs and no sums (events that arrived between the two
        queries) gets a chunk counting no event: the server's total of the bucket
        then differs from it, and reads drop these since-sums."""
        chunks = {chunk.coarse: chunk for chunk in self.chunks if chunk.coarse >= fold}
        pieces: dict[int, _SinceChunk] = {}
        if columns:
            coarse = np.asarray(columns[0], dtype=np.int64)
            video_ids = np.asarray(columns[1], dtype=np.int64)
            sums = _Sums(
                np.asarray(columns[2], dtype=np.int64),
                np.asarray(columns[3], dtype=np.float64),
                np.asarray(columns[4], dtype=np.int64),
                np.asarray(columns[5], dtype=np.int64),
                np.asarray(columns[6], dtype=np.int64),
            )
            for each in np.unique(coarse).tolist():
                rows = np.flatnonzero(coarse == each)
                order = rows[np.argsort(video_ids[rows], kind="stable")]
                values = _Sums(
                    sums.views[order],
                    sums.completion_sum[order],
                    sums.likes[order],
                    sums.shares[order],
                    sums.comments[order],
                )
                total = int(values.views.sum() + values.likes.sum())
                total += int(values.shares.sum() + values.comments.sum())
                pieces[each] = _SinceChunk(each, total, video_ids[order], values, None)
        pairs_of = _pairs_by_coarse(pair_columns)
        no_pairs = None if pair_columns is None else _NO_CHANGED_PAIRS
        for each in set(pieces) | set(pairs_of):
            piece = pieces.get(each) or _SinceChunk(
                each, 0, np.zeros(0, dtype=np.int64), _Sums.zeros(0), None
            )
            piece = replace(piece, pairs=pairs_of.get(each, no_pairs))
            held = chunks.get(each)
            chunks[each] = piece if held is None else held.merged(piece)
        start = max(self.start, fold << FINE_PER_COARSE_BITS)
        ordered = tuple(chunks[key] for key in sorted(chunks))
        return _HeldSince(
            start,
            unheld,
            ordered,
            self.checked_fold,
            min(self.checked_ns, read_ns),
            self.checked_all,
            _FoldedSince.of_chunks(fold, ordered),
        )

    def checked(self, fold: int, at_ns: int, buckets: NDArray[np.int64]) -> _HeldSince:
        """These since-sums, found whole on the server for roll-up ``fold`` by a read
        that began at ``at_ns`` and found arrivals in ``buckets``."""
        return replace(
            self,
            checked_fold=fold,
            checked_ns=at_ns,
            checked_all=not (buckets >= self.unheld).any(),
        )

    def counts_all_before(self) -> int:
        """A moment (the store's clock) before which every event that arrived is
        counted, by arrival number: the start of the first bucket not held, or, when
        the last check found no arrivals after the held buckets, that check's start."""
        unheld_ns = self.unheld << FINE_BUCKET_SHIFT
        return max(unheld_ns, self.checked_ns) if self.checked_all else unheld_ns


@dataclass(frozen=True)
class _HeldCorrections:
    """Every correction of extra copies on the server when a read that began at
    ``read_ns`` (the store's clock) ran, sorted by video: each one's deltas to its
    video's counts (``likes`` unused, zero) and ``seen_ns``, when the store first saw
    it with its copy count (the end of that read). The copies a correction subtracts
    were inserted before it was written, so their arrival numbers are below
    ``seen_ns``: once the held since-sums hold every bucket before it, and were found
    whole after it, the copies are counted there (or in the roll-up) and the correction
    applies. ``first_seen`` keeps ``seen_ns`` per (event id, copies) for the next read."""

    read_ns: int
    video_ids: NDArray[np.int64]
    deltas: _Sums
    seen_ns: NDArray[np.int64]
    first_seen: dict[tuple[str, int], int]

    @classmethod
    def of_rows(
        cls,
        columns: Sequence[Any],
        read_ns: int,
        seen_ns: int,
        before: _HeldCorrections | None,
    ) -> _HeldCorrections:
        """The rows of :attr:`_Queries.held_corrections` (event id, copies, video,
        views, completion, shares, comments), read from ``read_ns`` to ``seen_ns``,
        with the moments ``before`` first saw them."""
        known = {} if before is None else before.first_seen
        if not columns:
            empty = np.zeros(0, dtype=np.int64)
            return cls(read_ns, empty, _Sums.zeros(0), empty, {})
        keys = list(zip(columns[0].tolist(), columns[1].tolist(), strict=True))
        first_seen = {key: known.get(key, seen_ns) for key in keys}
        video_ids = np.asarray(columns[2], dtype=np.int64)
        order = np.argsort(video_ids, kind="stable")
        seen = np.array([first_seen[key] for key in keys], dtype=np.int64)
        deltas = _Sums(
            np.asarray(columns[3], dtype=np.int64)[order],
            np.asarray(columns[4], dtype=np.float64)[order],
            np.zeros(order.shape[0], dtype=np.int64),
            np.asarray(columns[5], dtype=np.int64)[order],
            np.asarray(columns[6], dtype=np.int64)[order],
        )
        return cls(read_ns, video_ids[order], deltas, seen[order], first_seen)

    def subtract_from(
        self, requested: NDArray[np.int64], into: _Sums, applies_before_ns: int
    ) -> bool:
        """Add the deltas of the requested videos' corrections to ``into``; ``False``
        (``into`` unchanged) when one of them was first seen at or after
        ``applies_before_ns``, so that its copies may or may not be counted yet."""
        if not self.video_ids.shape[0]:
            return True
        low = np.searchsorted(self.video_ids, requested, side="left")
        high = np.searchsorted(self.video_ids, requested, side="right")
        if not (high > low).any():
            return True
        lengths = high - low
        rows = np.repeat(low, lengths) + (
            np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        )
        if (self.seen_ns[rows] >= applies_before_ns).any():
            return False
        into.add(
            np.repeat(np.arange(requested.shape[0]), lengths),
            self.deltas.views[rows],
            self.deltas.completion_sum[rows],
            self.deltas.likes[rows],
            self.deltas.shares[rows],
            self.deltas.comments[rows],
        )
        return True


def _changed_pairs(
    held: Sequence[_ChangedPairs], columns: Sequence[Any], parts: NDArray[np.int64]
) -> list[_ChangedPairs] | None:
    """The pairs that changed since a roll-up's watermark, in bucket order: those of
    the held since-sums (``held``), then the rows of the buckets after them (the
    ``_CHANGED_PAIR`` rows of a held read); ``None`` when some id of the rows is too
    large to hold."""
    rows = parts == _CHANGED_PAIR
    fresh = _ChangedPairs.of_rows(
        np.asarray(columns[0], dtype=np.int64)[rows],
        np.asarray(columns[2], dtype=np.int64)[rows],
        np.asarray(columns[4], dtype=np.int64)[rows],
        np.asarray(columns[5], dtype=np.int64)[rows],
    )
    if fresh is None:
        return None
    return [*held, fresh]


def _pairs_by_coarse(columns: Sequence[Any] | None) -> dict[int, _ChangedPairs | None]:
    """The rows of :attr:`_Queries.pairs_between` (coarse bucket, video, user, state)
    as the changed pairs of each coarse bucket (``None`` where some id is too large)."""
    if not columns:
        return {}
    coarse = np.asarray(columns[0], dtype=np.int64)
    videos, users, liked, events = (np.asarray(columns[i], dtype=np.int64) for i in (1, 2, 3, 4))
    pairs: dict[int, _ChangedPairs | None] = {}
    for each in np.unique(coarse).tolist():
        rows = coarse == each
        pairs[each] = _ChangedPairs.of_rows(videos[rows], users[rows], liked[rows], events[rows])
    return pairs


def _arrival_bucket(at: datetime) -> int:
    """The arrival bucket that starts at or before ``at``: arrival numbers are
    nanoseconds since 1970, bucketed by :data:`ARRIVAL_BUCKET_SHIFT` bits."""
    since = at - _UNIX_EPOCH
    nanoseconds = (since.days * 86_400 + since.seconds) * 1_000_000_000 + since.microseconds * 1_000
    return nanoseconds >> ARRIVAL_BUCKET_SHIFT


def _hours(seconds: Sequence[int]) -> tuple[int, ...]:
    """The distinct hours (since 1970) of Unix times ``seconds``, for ``IN %(hours)s``."""
    hours: list[int] = np.unique(np.asarray(seconds, dtype=np.int64) // 3600).tolist()
    return tuple(hours)


def _corrections(table: str, where: str) -> str:
    """One row per corrected event id matching ``where``: its fields (``fixed_*``) and
    ``extra``, the number of its copies beyond the first (the highest count any writer
    recorded; aliases differ from the columns, which ``where`` refers to)."""
    return f"""SELECT event_id, any(kind) AS fixed_kind, any(user_id) AS fixed_user,
       any(video_id) AS fixed_video, any(creator_id) AS fixed_creator,
       any(completion) AS fixed_completion, toInt64(max(copies)) - 1 AS extra
FROM {table} WHERE {where} GROUP BY event_id"""


def _raced_since(table: str) -> str:
    """The ids of ``table`` stored more than once on or after an hour (hours since
    1970), with their copy counts and smallest arrival numbers."""
    return f"""SELECT event_id, countMerge(events), minMerge(first_seq)
FROM {table} WHERE tag = {Tag.EVENT_ID} AND a >= %(hour)s
GROUP BY event_id HAVING countMerge(events) > 1"""


def _likes_now(table: str, videos: str) -> str:
    """The like count of each video ``a {videos}``: its users whose latest like or
    unlike is a like."""
    return f"""SELECT a, toInt64(sum(is_liked)) FROM (
    SELECT a, b, argMaxMerge(liked) AS is_liked
    FROM {table} WHERE tag = {Tag.VIDEO_LIKE} AND a {videos} GROUP BY a, b
) GROUP BY a"""


# The arguments of a Distributed engine: cluster, database, local table[, sharding key].
_DISTRIBUTED_ARGUMENTS = re.compile(r"^Distributed\((.*)\)$", re.DOTALL)
_REPLICATED = """SELECT count() FROM system.replicas
WHERE database = %(database)s AND table = %(table)s"""
_CLUSTER_SERVERS = """SELECT shard_num, host_address, port FROM system.clusters
WHERE cluster = %(cluster)s ORDER BY shard_num, replica_num"""


@dataclass(frozen=True)
class _Replicas:
    """Where the local tables behind the store's Distributed tables live: the database,
    the local names of the events, aggregates and corrections tables, and every
    replica's ``(shard_num, host, port)``."""

    database: str
    events: str
    aggregates: str
    corrections: str
    servers: list[tuple[int, str, int]]

    def qualified(self, table: str) -> str:
        return f"{self.database}.{table}"


def _affinities(
    credit_rows: Iterable[tuple[int, int, int, float]], creator_ids: list[int]
) -> dict[int, float]:
    """The affinities with ``creator_ids`` from a user's rows of the credit query
    (creator, kind code, events, completion sum), ``0.0`` where none.

    The rows are added up in sorted order, so that a user's affinities are the same
    floats whether the rows came from the query of one user or of many (the server
    returns the parts of a ``UNION ALL`` in any order).
    """
    credit: dict[int, float] = {}
    for creator_id, code, events, completion_sum in sorted(credit_rows):
        kind = _KIND_OF_CODE[code]
        if kind is EngagementKind.WATCH:
            earned = float(completion_sum)
        else:
            earned = events * affinity_credit(kind)
        credit[creator_id] = credit.get(creator_id, 0.0) + earned
    # A corrected sum may dip below zero by rounding; credit never does.
    credit = {creator_id: max(value, 0.0) for creator_id, value in credit.items()}
    total = sum(credit.values())
    found = dict.fromkeys(creator_ids, 0.0)
    for creator_id in found:
        if creator_id in credit:
            found[creator_id] = affinity(credit[creator_id], total)
    return found


class _Queries:
    """The store's statements for one set of table names."""

    def __init__(self, tables: ClickHouseTables) -> None:
        agg, fix = tables.aggregates, tables.corrections
        self.tables = tables
        self.insert = f"INSERT INTO {tables.events} ({EVENT_COLUMNS}, creator_id) VALUES"
        self._insert_names = [*EVENT_COLUMNS.split(", "), "creator_id"]
        self.insert_corrections = (
            f"INSERT INTO {fix} "
            "(event_id, kind, user_id, video_id, creator_id, completion, copies) VALUES"
        )
        # GLOBAL IN: over Distributed tables the initiator ships the batch to every shard.
        # The hashes narrow the rows by number (PREWHERE reads their column only); the
        # ids themselves are compared on the rows left.
        id_rows = f"""FROM {agg}
PREWHERE tag = {Tag.EVENT_ID} AND a IN %(hours)s
  AND b GLOBAL IN (SELECT cityHash64(event_id) FROM batch)
WHERE c = 0 AND event_id GLOBAL IN batch"""
        self.copies = f"""SELECT event_id, countMerge(events), minMerge(first_seq)
{id_rows}
GROUP BY event_id"""
        # The second check: the ids stored more than once. After the insert every id of
        # the batch is there, and grouping them all cost more than the rest of the query;
        # so ``totals`` comes first, without grouping. Its copy count equals its number
        # of distinct hashes only when no id is there twice (two ids sharing a hash make
        # them differ too), and only otherwise is ``copied`` asked which.
        self.totals = f"SELECT toUInt64(countMerge(events)), uniqExact(b)\n{id_rows}"
        self.copied = f"{self.copies}\nHAVING countMerge(events) > 1"
        # Counts by (video, kind code), like counts under the like code, and minus the
        # extra copies of corrected events: one round trip, rows summed by the caller
        # (an outer GROUP BY over the UNION ALL made the query slower on 18.16).
        self.stats = f"""
SELECT a, c, toInt64(countMerge(events)) AS n, sumMerge(completion_sum) AS s
FROM {agg} WHERE tag = {Tag.VIDEO_COUNT} AND a GLOBAL IN ids GROUP BY a, c
UNION ALL
SELECT a, toUInt64({_LIKES}) AS c, toInt64(sum(liked)) AS n, toFloat64(0) AS s FROM (
    SELECT a, b, argMaxMerge(liked) AS liked
    FROM {agg} WHERE tag = {Tag.VIDEO_LIKE} AND a GLOBAL IN ids GROUP BY a, b
) GROUP BY a
UNION ALL
SELECT fixed_video AS a, toUInt64(toUInt8(fixed_kind)) AS c, -sum(extra) AS n,
       -sum(extra * fixed_completion) AS s
FROM ({_corrections(fix, "video_id GLOBAL IN ids")}) GROUP BY a, c"""
        rollup = tables.stats_rollup
        watch, share, comment = (KIND_CODES[kind] for kind in ("watch", "share", "comment"))
        likes_code = (KIND_CODES["like"], KIND_CODES["unlike"])
        # One snapshot of the aggregate table (one table reference): the like state of
        # every pair, the counts of every (video, kind) that arrived before the fold, and
        # the number of events that arrived before it, as video 0's ``arrivals``.
        self.fold = f"""INSERT INTO {rollup}
    (fold, video_id, views, completion_sum, likes, shares, comments, arrivals, videos)
SELECT %(fold)s, video, sumIf(n, kind = {watch}), sumIf(s, kind = {watch}),
       sumIf(n, kind = 0), sumIf(n, kind = {share}), sumIf(n, kind = {comment}),
       toUInt64(sumIf(n, kind = 255)), toUInt64(0)
FROM (
    SELECT if(tag = {Tag.VIDEO_LIKE}, a, b) AS video,
           multiIf(tag = {Tag.VIDEO_LIKE}, 0, tag = {Tag.ARRIVED}, 255, c) AS kind,
           if(tag = {Tag.VIDEO_LIKE}, toInt64(is_liked), count_of) AS n, sum_of AS s
    FROM (
        SELECT tag, a, b, c, argMaxMerge(liked) AS is_liked,
               toInt64(countMerge(events)) AS count_of, sumMerge(completion_sum) AS sum_of
        FROM {agg}
        WHERE tag = {Tag.VIDEO_LIKE}
           OR (tag = {Tag.FINE_ARRIVED_COUNT} AND a < %(fold_start)s)
           OR (tag = {Tag.ARRIVED} AND a < %(fold)s)
        GROUP BY tag, a, b, c
    )
) GROUP BY video"""
        # An incremental roll-up: the previous complete roll-up's rows (``%(previous)s``,
        # its watermark) plus the counts that arrived from its watermark up to the new
        # one; the like counts of the videos with likes or unlikes since the previous
        # watermark read again from their pairs (the others keep the previous roll-up's);
        # video 0 carries the arrival count, the previous one's plus what arrived
        # between. The counts and the like states come from one table reference; the set
        # of videos liked since comes from a subquery, so the caller checks that no event
        # arrived before the new watermark while the statement ran.
        self.fold_since = f"""INSERT INTO {rollup}
    (fold, video_id, views, completion_sum, likes, shares, comments, arrivals, videos)
SELECT %(fold)s, video, sum(views_), sum(completion_),
       if(max(liked_since) = 1, sum(likes_now), sum(likes_before)),
       sum(shares_), sum(comments_), toUInt64(sum(arrivals_)), toUInt64(0)
FROM (
    SELECT video_id AS video, views AS views_, completion_sum AS completion_,
           likes AS likes_before, toInt64(0) AS likes_now, toUInt8(0) AS liked_since,
           shares AS shares_, comments AS comments_, toInt64(0) AS arrivals_
    FROM {rollup} WHERE fold = %(previous)s AND video_id != 0
    UNION ALL
    SELECT toUInt64(0), toInt64(0), toFloat64(0), toInt64(0), toInt64(0), toUInt8(0),
           toInt64(0), toInt64(0), toInt64(%(previous_arrivals)s)
    UNION ALL
    SELECT video, sumIf(n, kind = {watch}), sumIf(s, kind = {watch}), toInt64(0),
           sumIf(n, kind = 0), toUInt8(max(kind = 0)), sumIf(n, kind = {share}),
           sumIf(n, kind = {comment}), sumIf(n, kind = 255)
    FROM (
        SELECT if(tag = {Tag.VIDEO_LIKE}, a, b) AS video,
               multiIf(tag = {Tag.VIDEO_LIKE}, 0, tag = {Tag.ARRIVED}, 255, c) AS kind,
               if(tag = {Tag.VIDEO_LIKE}, toInt64(is_liked), count_of) AS n, sum_of AS s
        FROM (
            SELECT tag, a, b, c, argMaxMerge(liked) AS is_liked,
                   toInt64(countMerge(events)) AS count_of, sumMerge(completion_sum) AS sum_of
            FROM {agg}
            WHERE (tag = {Tag.VIDEO_LIKE} AND a GLOBAL IN (
                      SELECT b FROM {agg}
                      WHERE tag = {Tag.FINE_ARRIVED_COUNT} AND a >= %(previous_start)s
                        AND c IN {likes_code}))
               OR (tag = {Tag.FINE_ARRIVED_COUNT}
                   AND a >= %(previous_start)s AND a < %(fold_start)s)
               OR (tag = {Tag.ARRIVED} AND a >= %(previous)s AND a < %(fold)s)
            GROUP BY tag, a, b, c
        )
    ) GROUP BY video
) GROUP BY video"""
        # How many events arrived before a roll-up's watermark, and from there up to a
        # new one: the checks around an incremental roll-up.
        self.arrivals_around = f"""SELECT toInt64(sumIf(n, a < %(previous)s)),
       toInt64(sumIf(n, a >= %(previous)s))
FROM (
    SELECT a, countMerge(events) AS n FROM {agg}
    WHERE tag = {Tag.ARRIVED} AND a < %(fold)s GROUP BY a
)"""
        self.fold_videos = f"""SELECT count() FROM {rollup}
WHERE fold = %(fold)s AND video_id != 0"""
        self.fold_arrivals = f"""SELECT max(arrivals) FROM {rollup}
WHERE fold = %(fold)s AND video_id = 0"""
        self.insert_fold_marker = f"INSERT INTO {rollup} (fold, video_id, arrivals, videos) VALUES"
        self.folds = f"""SELECT fold, max(arrivals), max(videos) FROM {rollup}
WHERE video_id = 0 GROUP BY fold HAVING max(videos) > 0 ORDER BY fold DESC LIMIT 1"""
        self.last_fold = f"SELECT max(fold) FROM {rollup}"
        # From the roll-up: the candidates' rows; the checks that it is whole (its video
        # rows) and that nothing arrived late before its watermark (the arrival count of
        # the coarse buckets before ``%(fold)s``); what arrived after it, from fine
        # bucket ``%(unheld)s`` on (``%(start)s``, the watermark's first, or the first one
        # the store
        # does not hold: counts to add, and in ``likes`` the number of likes and unlikes,
        # whose videos' like counts are read again from their pairs); minus the extra
        # copies of corrected events. Columns: video, part, views, completion, likes,
        # shares, comments.
        rolled_rows = f"""
SELECT video_id AS a, toUInt8({_FOLDED}) AS part, views, completion_sum, likes, shares, comments
FROM {rollup} WHERE fold = %(fold)s AND video_id GLOBAL IN ids"""
        arrivals_before = f"""
SELECT toUInt64(0), toUInt8({_ARRIVALS_BEFORE}), toInt64(countMerge(events)), toFloat64(0),
       toInt64(0), toInt64(0), toInt64(0)
FROM {agg} WHERE tag = {Tag.ARRIVED} AND a < %(fold)s"""
        folded_videos = f"""
SELECT toUInt64(0), toUInt8({_FOLDED_VIDEOS}), toInt64(count()), toFloat64(0),
       toInt64(0), toInt64(0), toInt64(0)
FROM {rollup} WHERE fold = %(fold)s AND video_id != 0"""
        arrived_since = f"""
SELECT video, toUInt8({_ARRIVED_SINCE}), sumIf(n, kind = {watch}), sumIf(s, kind = {watch}),
       sumIf(n, kind IN {likes_code}), sumIf(n, kind = {share}), sumIf(n, kind = {comment})
FROM (
    SELECT b AS video, c AS kind, toInt64(countMerge(events)) AS n, sumMerge(completion_sum) AS s
    FROM {agg} WHERE tag = {Tag.FINE_ARRIVED_COUNT} AND a >= %(unheld)s AND b GLOBAL IN ids
    GROUP BY b, c
) GROUP BY video"""
        corrected = f"""
SELECT fixed_video, toUInt8({_CORRECTED}), -sumIf(extra, fixed_kind = 'watch'),
       -sumIf(extra * fixed_completion, fixed_kind = 'watch'), toInt64(0),
       -sumIf(extra, fixed_kind = 'share'), -sumIf(extra, fixed_kind = 'comment')
FROM ({_corrections(fix, "video_id GLOBAL IN ids")}) GROUP BY fixed_video"""
        # The newest complete roll-up's marker: its watermark in ``views``, its arrival
        # count in ``likes``, its number of videos in ``shares``.
        newest = f"""
SELECT toUInt64(0), toUInt8({_NEWEST}), toInt64(newest_fold), toFloat64(0),
       toInt64(newest_arrivals), toInt64(newest_videos), toInt64(0)
FROM (
    SELECT fold AS newest_fold, max(arrivals) AS newest_arrivals, max(videos) AS newest_videos
    FROM {rollup} WHERE video_id = 0 GROUP BY fold HAVING newest_videos > 0
    ORDER BY fold DESC LIMIT 1
)"""
        self.folded_stats = "\nUNION ALL".join(
            (rolled_rows, arrivals_before, folded_videos, arrived_since, corrected)
        )
        # The arrivals before the watermark (one row, of bucket 0, when there are any;
        # from the coarse totals) and the total of each fine bucket since (a row per
        # bucket with arrivals), from one snapshot.
        bucket_totals = f"""
SELECT if(tag = {Tag.ARRIVED}, toUInt64(0), a) AS bucket,
       toUInt8(if(tag = {Tag.ARRIVED}, {_ARRIVALS_BEFORE}, {_BUCKET_TOTAL})) AS total_part,
       toInt64(countMerge(events)), toFloat64(0), toInt64(0), toInt64(0), toInt64(0)
FROM {agg}
WHERE (tag = {Tag.ARRIVED} AND a < %(fold)s) OR (tag = {Tag.FINE_ARRIVED} AND a >= %(start)s)
GROUP BY bucket, total_part"""
        # With the roll-up's rows held by the store (``%(fold)s`` is the held one's
        # watermark, ``%(start)s`` its first fine bucket): in one round trip, which
        # roll-up is the newest,
        # the late-arrival check and the bucket totals since, what arrived since
        # ``%(unheld)s`` and the corrections.
        self.held_stats = "\nUNION ALL".join((newest, bucket_totals, arrived_since, corrected))
        # With the pairs liked at the held roll-up's watermark held too: also the like
        # state of the requested videos' pairs with likes or unlikes from ``%(unheld)s``
        # on (user in ``views``, state in ``likes``, likes and unlikes in ``shares``).
        changed_pairs = f"""
SELECT b, toUInt8({_CHANGED_PAIR}), toInt64(c), toFloat64(0), toInt64(argMaxMerge(liked)),
       toInt64(countMerge(events)), toInt64(0)
FROM {agg} WHERE tag = {Tag.FINE_LIKE} AND a >= %(unheld)s AND b GLOBAL IN ids
GROUP BY b, c"""
        self.held_stats_with_pairs = "\nUNION ALL".join(
            (newest, bucket_totals, arrived_since, corrected, changed_pairs)
        )
        # What arrived in fine buckets ``[%(low)s, %(high)s)``, summed per coarse bucket
        # (of the roll-ups' watermarks) and video, for every video: the store's held
        # since-sums. Columns: coarse bucket, video, views, completion, likes and
        # unlikes, shares, comments (one table reference: the sums of a coarse bucket are
        # its total in one snapshot).
        self.arrived_between = f"""
SELECT coarse, video, sumIf(n, kind = {watch}), sumIf(s, kind = {watch}),
       sumIf(n, kind IN {likes_code}), sumIf(n, kind = {share}), sumIf(n, kind = {comment})
FROM (
    SELECT bitShiftRight(a, {FINE_PER_COARSE_BITS}) AS coarse, b AS video, c AS kind,
           toInt64(countMerge(events)) AS n, sumMerge(completion_sum) AS s
    FROM {agg}
    WHERE tag = {Tag.FINE_ARRIVED_COUNT} AND a >= %(low)s AND a < %(high)s
    GROUP BY coarse, b, c
) GROUP BY coarse, video"""
        # The like state of each pair with likes or unlikes in fine buckets
        # ``[%(low)s, %(high)s)``, per coarse bucket: the pairs of the held since-sums.
        # Read after ``arrived_between``: a later snapshot holds every row the earlier
        # one did, and an event counted here and not there makes the server's bucket
        # totals differ from the held ones. Columns: coarse bucket, video, user, state,
        # likes and unlikes.
        self.pairs_between = f"""
SELECT bitShiftRight(a, {FINE_PER_COARSE_BITS}) AS coarse, b, c, toInt64(argMaxMerge(liked)),
       toInt64(countMerge(events))
FROM {agg}
WHERE tag = {Tag.FINE_LIKE} AND a >= %(low)s AND a < %(high)s
GROUP BY coarse, b, c"""
        # Every correction, at most ``%(limit)s`` of them, with its deltas to its
        # video's counts: the store's held corrections, for bounded-age reads.
        # Columns: event id, copies beyond the first, video, views, completion, shares,
        # comments.
        self.held_corrections = f"""
SELECT event_id, extra, fixed_video, -if(fixed_kind = 'watch', extra, 0),
       -if(fixed_kind = 'watch', extra * fixed_completion, 0),
       -if(fixed_kind = 'share', extra, 0), -if(fixed_kind = 'comment', extra, 0)
FROM ({_corrections(fix, "1")}) WHERE extra > 0
LIMIT %(limit)s"""
        # The pairs liked as of the like-state rows before fine bucket ``%(start)s`` (a
        # roll-up's watermark), at most ``%(limit)s`` of them; and how many events
        # arrived before the roll-up's watermark ``%(fold)s``, the check that the
        # pairs read are the roll-up's (rows are only ever added).
        self.liked_before = f"""SELECT b, c FROM {agg}
WHERE tag = {Tag.FINE_LIKE} AND a < %(start)s
GROUP BY b, c HAVING argMaxMerge(liked) = 1
LIMIT %(limit)s"""
        self.arrivals_before = f"""SELECT toInt64(countMerge(events)) FROM {agg}
WHERE tag = {Tag.ARRIVED} AND a < %(fold)s"""
        self.roll_up_rows = f"""SELECT video_id, views, completion_sum, likes, shares, comments
FROM {rollup} WHERE fold = %(fold)s AND video_id != 0"""
        # The like counts of the videos in ``ids``, from the like state of their pairs.
        self.likes_now = _likes_now(agg, "GLOBAL IN ids")
        # The same for a few videos named in the text (``%(videos)s``): 18.16 narrows
        # the key range with a set of literals, not with an external table's, so this
        # reads the granules of those videos only, not every like state.
        self.likes_now_of_few = _likes_now(agg, "IN %(videos)s")
        self.credit = f"""
SELECT b, c, toInt64(countMerge(events)) AS n, sumMerge(completion_sum) AS s
FROM {agg} WHERE tag = {Tag.CREDIT} AND a = %(user_id)s GROUP BY b, c
UNION ALL
SELECT b, toUInt64({_LIKES}) AS c, toInt64(sum(liked)) AS n, toFloat64(0) AS s FROM (
    SELECT b, c, argMaxMerge(liked) AS liked
    FROM {agg} WHERE tag = {Tag.USER_LIKE} AND a = %(user_id)s GROUP BY b, c
) GROUP BY b
UNION ALL
SELECT fixed_creator AS b, toUInt64(toUInt8(fixed_kind)) AS c, -sum(extra) AS n,
       -sum(extra * fixed_completion) AS s
FROM ({_corrections(fix, "user_id = %(user_id)s")}) GROUP BY b, c"""
        # The credit query for the users of the external table ``users``, each row
        # led by its user.
        self.credit_many = f"""
SELECT a, b, c, toInt64(countMerge(events)) AS n, sumMerge(completion_sum) AS s
FROM {agg} WHERE tag = {Tag.CREDIT} AND a GLOBAL IN users GROUP BY a, b, c
UNION ALL
SELECT a, b, toUInt64({_LIKES}) AS c, toInt64(sum(liked)) AS n, toFloat64(0) AS s FROM (
    SELECT a, b, c, argMaxMerge(liked) AS liked
    FROM {agg} WHERE tag = {Tag.USER_LIKE} AND a GLOBAL IN users GROUP BY a, b, c
) GROUP BY a, b
UNION ALL
SELECT fixed_user AS a, fixed_creator AS b, toUInt64(toUInt8(fixed_kind)) AS c,
       -sum(extra) AS n, -sum(extra * fixed_completion) AS s
FROM ({_corrections(fix, "user_id GLOBAL IN users")}) GROUP BY a, b, c"""
        self.raced_since = _raced_since(agg)
        self.distributed = """SELECT name, engine_full FROM system.tables
WHERE database = currentDatabase() AND engine = 'Distributed' AND name IN %(names)s"""
        self.events_of_ids = f"""SELECT {EVENT_SELECT}, creator_id FROM {tables.events}
WHERE occurred_at >= %(since)s AND event_id GLOBAL IN batch
LIMIT 1 BY event_id"""
        self.popular = f"""SELECT a, sum(n) AS views FROM (
    SELECT a, toInt64(countMerge(events)) AS n
    FROM {agg} WHERE tag = {Tag.VIDEO_COUNT} AND c = {KIND_CODES["watch"]} GROUP BY a
    UNION ALL
    SELECT fixed_video AS a, -sum(extra) AS n
    FROM ({_corrections(fix, "kind = 'watch'")}) GROUP BY a
) GROUP BY a HAVING views > 0
ORDER BY views DESC, a ASC LIMIT %(limit)s"""

    def insert_of(self, columns: Sequence[list[Any]]) -> tuple[str, list[list[Any]]]:
        """The ``INSERT`` of the insert ``columns`` and the columns it sends: a
        ``Nullable`` column that no event of the batch fills is left out, and the server
        stores its default, NULL, as the driver would have. The driver writes a
        ``Nullable`` column item by item in Python (1.8 ms for 10,000 strings, 0.8 ms
        for 10,000 floats at load 6), and most batches carry no ``watched_seconds`` or
        ``variant`` at all."""
        kept = [
            index
            for index, column in enumerate(columns)
            if index not in _NULLABLE_COLUMNS or column.count(None) != len(column)
        ]
        if len(kept) == len(columns):
            return self.insert, list(columns)
        names = ", ".join(self._insert_names[index] for index in kept)
        return (
            f"INSERT INTO {self.tables.events} ({names}) VALUES",
            [columns[index] for index in kept],
        )


class ClickHouseEventStore:
    """An :class:`~reelrank.EventStore` on ClickHouse, exactly once per ``event_id``.

    Every applied event is a row of ``events``; one materialized view turns each
    inserted block into rows of ``event_aggregates``: per-video counts, like states and
    per-(user, creator) credit, a copy count per event id, and counts by arrival bucket.
    Reads merge the aggregate states of the requested keys only, so their cost does not
    grow with the number of events; :meth:`stats_columns` and :meth:`get_stats` read a
    periodic per-video roll-up (:meth:`fold_stats`) plus what arrived since, when it
    holds. ``tables`` names the tables (:class:`ClickHouseTables`; in sharded mode, the
    ``Distributed`` ones). ``held_roll_up_videos`` is the largest roll-up (in videos)
    whose rows the store keeps in memory, 48 bytes a video, so that a stats read sends
    only the candidates' ids and gets back what arrived since the roll-up; ``0`` reads
    the candidates' rolled-up rows from the server on every read. A negative or
    non-integer value raises :class:`~reelrank.InvalidInputError` naming it. With
    ``hold_arrivals`` (the default) and a held roll-up, the store also holds what
    arrived since the roll-up's watermark, per video, in fine arrival buckets of about
    a second, which a thread of its own keeps current: a repeated read gets back only
    the candidates' arrivals of the buckets it does not hold yet (the last few seconds),
    and checks the totals of the ones it holds. ``arrival_settle_seconds`` (2 s) is how
    long after a bucket's end the store reads it for every video (``0``: at once).
    ``held_like_pairs`` is the most (video, user) pairs liked at the held roll-up's
    watermark that the store keeps in memory, 8 bytes a pair (5,000,000 by default,
    about 40 MB; ``0``: none): a thread of its own reads them once per held roll-up,
    and from then on a read computes the like counts of the candidates liked or unliked
    since the watermark from them and from the pairs that changed since (schema version
    4), in the same single query, instead of reading every pair of those videos again.
    Bad values raise :class:`~reelrank.InvalidInputError` naming them.
    :meth:`stats_columns_within` (the :class:`~reelrank.BoundedAgeEventStore` read)
    answers from those held data with no round trip; while it is asked for, a thread
    of the store's own refreshes them every ``bounded_refresh_seconds`` (1 s; a
    number ``> 0``, else :class:`~reelrank.InvalidInputError`).

    **Exactly once.** :meth:`append_many` asks for the copy counts of the batch's ids
    (one query), inserts the new events (one columnar insert) and asks again whether
    any id it inserted is stored more than once (one query, and a second one for
    which, when some is). Two writers that passed the first check with the same new
    id at the same moment both insert it; the second check of at least one of them (the
    later to insert) sees two copies, and it writes a *correction* that reads subtract.
    A correction records the id's copy count, so writers that see the same copies
    write the same row and reads take one. An insert is one part of the aggregate
    table, there whole or not at all, so a batch whose insert failed (even by a
    server killed in the middle) is either fully counted with its ids or not at all,
    and its retry finds it; a retry also rewrites the corrections of any id it finds
    with several copies, so a writer that died between its insert and its correction
    is repaired by the redelivery. Like states need no correction: copies of one event
    carry the same state, and the state is that of the last to arrive.

    Of writers racing on one id, the one whose copy arrived first (smallest arrival
    number) returns it as applied, the others as a duplicate; in the rare order where
    a copy with a smaller number is inserted after the first writer's second check,
    both return it as applied. The statistics count it once either way.

    Writes go over one driver client of the store's own, under a lock; reads over the
    engine's pooled connections. Thread-safe.

    :meth:`get_affinities_many` (the :class:`~reelrank.BulkReadEventStore` read cache
    warming uses) reads the credit of many users in one query per
    :attr:`users_per_query` users.
    """

    users_per_query = 500
    """The users one query of :meth:`get_affinities_many` reads; a larger batch takes
    one query per slice of this many, which bounds the rows of one reply."""

    def __init__(
        self,
        engine: Engine,
        *,
        tables: ClickHouseTables | None = None,
        held_roll_up_videos: int = 1_000_000,
        hold_arrivals: bool = True,
        arrival_settle_seconds: float = 2.0,
        held_like_pairs: int = 5_000_000,
        bounded_refresh_seconds: float = 1.0,
    ) -> None:
        if type(held_roll_up_videos) is not int or held_roll_up_videos < 0:
            raise InvalidInputError("held_roll_up_videos", "must be an int >= 0")
        if type(held_like_pairs) is not int or held_like_pairs < 0:
            raise InvalidInputError("held_like_pairs", "must be an int >= 0")
        if not isinstance(hold_arrivals, bool):
            raise InvalidInputError("hold_arrivals", "must be True or False")
        check_max_age("arrival_settle_seconds", arrival_settle_seconds)
        check_ttl("bounded_refresh_seconds", bounded_refresh_seconds)
        self._engine = engine
        self._clients = DriverClients(engine)
        self._queries = _Queries(tables or ClickHouseTables())
        self._held_videos_limit = held_roll_up_videos
        self._held: _HeldRollUp | None = None
        self._likes_since = _NO_LIKES_SINCE
        self._hold_lock = threading.Lock()
        self._hold_arrivals = hold_arrivals
        self._settle_ns = round(arrival_settle_seconds * 1e9)
        self._since: _HeldSince | None = None
        self._since_lock = threading.Lock()  # held while a thread extends ``_since``
        self._since_thread: threading.Thread | None = None
        self._like_pairs_limit = held_like_pairs
        self._liked: _HeldLikes | None = None
        # The roll-up whose liked pairs the store does not hold (too many, ids too
        # large): not read again for it.
        self._liked_refused = -1
        self._liked_lock = threading.Lock()  # held while a thread reads ``_liked``
        self._liked_thread: threading.Thread | None = None
        self._corrections: _HeldCorrections | None = None
        self._refresh_seconds = float(bounded_refresh_seconds)
        self._refresh_thread: threading.Thread | None = None
        self._refresh_lock = threading.Lock()  # held while starting the refresh thread
        self._refresh_stop = threading.Event()  # set by close
        self._bounded_asked = -math.inf  # time.monotonic() of the last bounded-age read
        self._clock_ns = time.time_ns  # the clock of arrival numbers and checks
        self._closed = False  # no background read starts once set
        self._close_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._sequence = ArrivalSequence()

    @property
    def engine(self) -> Engine:
        """The engine the store queries."""
        return self._engine

    def close(self, *, timeout: float | None = None) -> None:
        """Start no more background reads of what arrived since the held roll-up, of
        its liked pairs or of the refresh for bounded-age reads, and wait up to
        ``timeout`` seconds in all (``None``: until they end, within the driver's
        timeouts) for those under way, so that the engine can be disposed of next.

        Reads and writes still work afterwards, reading what arrived from the server.
        Closing again does nothing more. The engine is the caller's to dispose of.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._refresh_stop.set()
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(deadline - time.monotonic(), 0.0)

        # A background read holds its lock while it runs. Taking each lock, and keeping
        # it, waits for the read under way and keeps any other from starting, even one
        # whose starter found the store open just before it closed.
        for lock in (self._since_lock, self._liked_lock):
            wait = left()
            lock.acquire(timeout=-1 if wait is None else wait)
        with self._refresh_lock:
            refresh = self._refresh_thread
        for thread in (refresh, self._since_thread, self._liked_thread):
            if thread is not None:
                thread.join(left())

    def append(self, event: EngagementEvent, *, creator_id: int) -> bool:
        """Apply one event once per ``event_id``; ``False`` for an id seen before."""
        return self.append_many([(event, creator_id)]) == 1

    def append_many(self, items: Sequence[tuple[EngagementEvent, int]]) -> int:
        """Apply a batch of ``(event, creator_id)`` pairs in one insert.

        Returns how many were applied: an id already stored, or repeated within the
        batch after its first occurrence, is skipped. Every pair is validated before
        anything is written, so a bad one raises :class:`~reelrank.InvalidInputError`
        and nothing of the batch is stored.
        """
        return sum(self.append_each(items))

    def append_each(self, items: Sequence[tuple[EngagementEvent, int]]) -> list[bool]:
        """:meth:`append_many`, saying for each pair whether it was applied (``False``
        for an id stored before, or repeated within the batch after its first
        occurrence). For :class:`~reelrank.GroupCommitEventStore`, which stores the
        events of concurrent requests in one batch and answers each request."""
        batch = self._validated(items)
        applied = self._append(batch)
        if len(batch) == len(items):  # no id repeated: the batch is the items, in order
            return [applied.get(event_id, False) for event_id in batch]
        results: list[bool] = []
        answered: set[str] = set()
        for event, _ in items:
            results.append(event.event_id not in answered and applied.get(event.event_id, False))
            answered.add(event.event_id)
        return results

    def append_columns(
        self,
        *,
        event_id: Any,
        kind: Any,
        user_id: Any,
        video_id: Any,
        creator_id: Any,
        occurred_at: Any,
        watched_seconds: Any = None,
        completion: Any = None,
        channel: Any = None,
        variant: Any = None,
    ) -> int:
        """Apply a batch of events given as columns (numpy arrays, or sequences), one
        event per row, with the semantics of :meth:`append_many`: exactly once per
        ``event_id``, a repeat within the batch skipped after its first occurrence;
        returns how many were applied.

        For a pipeline that already holds columns (a frame of logged events): no
        :class:`~reelrank.EngagementEvent` is built, and the columns are checked with
        numpy against the same rules (the field patterns, ids between 1 and
        :data:`~reelrank.MAX_ID`, a watch's completion in ``[0, 1]``, a share's
        channel, fields only their kinds carry). ``kind`` holds the kinds' names
        (``"watch"``...); ``occurred_at`` numpy ``datetime64`` values in UTC (for a
        time-zone-aware pandas column, ``column.dt.tz_convert("UTC").dt.tz_localize(None)``);
        ``watched_seconds`` and ``completion`` numbers, and ``channel`` and ``variant``
        strings, with NaN or ``None`` where an event has none; the four
        may be left out when no event carries them. A bad column raises
        :class:`~reelrank.InvalidInputError` naming it, and nothing is stored.
        """
        ids, columns = insert_columns(
            event_id=event_id,
            kind=kind,
            user_id=user_id,
            video_id=video_id,
            creator_id=creator_id,
            occurred_at=occurred_at,
            watched_seconds=watched_seconds,
            completion=completion,
            channel=channel,
            variant=variant,
        )
        return sum(self._store_columns(ids, columns).values())

    def _append(self, batch: dict[str, _Pair]) -> dict[str, bool]:
        """Store the validated ``batch``; whether each id was applied by this call."""
        # The columns are built outside the store's write lock.
        columns = event_columns([event for event, _ in batch.values()], 0)
        columns.append([creator_id for _, creator_id in batch.values()])
        return self._store_columns(list(batch), columns)

    def _store_columns(self, ids: list[str], columns: list[list[Any]]) -> dict[str, bool]:
        """Store the events of the insert ``columns`` (distinct ``ids``, checked);
        whether each id was applied by this call."""
        if not ids:
            return {}
        with self._write_lock, store_errors(_STORE, "append"):
            client = self._clients.writer()
            stored = self._copies(client, self._queries.copies, ids, columns[SECONDS_COLUMN])
            # A redelivery repairs a race whose correction was never written.
            self._correct(client, ids, columns, stored)
            if stored:
                # Narrowed to the new events only when the first check found some stored.
                fresh = [index for index, event_id in enumerate(ids) if event_id not in stored]
                if not fresh:
                    return {}
                columns = [[column[index] for index in fresh] for column in columns]
                ids = [ids[index] for index in fresh]
            first_seq = self._sequence.take(len(ids))
            columns[SEQ_COLUMN] = list(range(first_seq, first_seq + len(ids)))
            client.execute(*self._queries.insert_of(columns), columnar=True)
            seconds = columns[SECONDS_COLUMN]
            copies = (
                self._copies(client, self._queries.copied, ids, seconds)
                if self._copied(client, ids, seconds)
                else {}
            )
            raced = set(self._correct(client, ids, columns, copies))
            # A raced id is this writer's if its own copy arrived first.
            mine = range(first_seq, first_seq + len(ids))
        return {event_id: event_id not in raced or copies[event_id][1] in mine for event_id in ids}

    def reconcile(self, *, since: datetime, sync_timeout_seconds: float = 300.0) -> int:
        """Write the missing corrections of events stored more than once on or after
        the day of ``since``; returns how many ids were stored more than once.

        :meth:`append_many` corrects every copy it can see. One it cannot: in replicated
        mode, a batch whose insert reached a replica that then died before the others
        fetched it, retried through another replica, is stored twice once the first
        replica is back, and no writer saw both copies. Run this after a replica
        recovers (it reads every id of the days since ``since``). Idempotent.

        In replicated mode (the store's tables are ``Distributed`` over
        ``Replicated*MergeTree`` tables) a read through the ``Distributed`` table sees
        one replica per shard, which may not have fetched every part yet, and a
        correction written through it reaches the other replicas later. So
        ``reconcile`` connects to every replica the cluster lists (the engine's user,
        password and database) and:

        1. brings each one up to date with ``SYSTEM SYNC REPLICA`` on its events,
           aggregates and corrections tables: each has then fetched every part
           announced in ZooKeeper. A replica that is down fails the call with
           :class:`~reelrank.StoreError`, one that has not caught up after
           ``sync_timeout_seconds`` (per statement; 18.16 itself waits without limit,
           the socket gives up) with :class:`~reelrank.StoreTimeoutError`; nothing is
           written then;
        2. reads the copy counts from each replica's own aggregates table; the
           replicas of a shard must agree, otherwise it raises
           :class:`~reelrank.StoreError` and writes nothing (a correction computed
           from the replica with more copies would subtract too much on the others;
           run it again once writes in flight have replicated);
        3. writes the corrections, then syncs every replica's corrections table, so
           when it returns, reads on every replica count each event once.
        """
        at = check_aware("since", since)
        check_ttl("sync_timeout_seconds", sync_timeout_seconds)
        first_hour = (at - _UNIX_EPOCH).days * 24  # the start of since's day
        with self._write_lock, store_errors(_STORE, "reconcile"):
            client = self._clients.writer()
            replicas = self._replicas(client)
            if replicas is None:
                copies = self._raced(client, self._queries.raced_since, first_hour)
                self._correct_raced(client, at, copies)
                return len(copies)
            clients = [
                server_client(self._engine, host, port, float(sync_timeout_seconds))
                for _, host, port in replicas.servers
            ]
            try:
                tables = (replicas.events, replicas.aggregates, replicas.corrections)
                for each in clients:
                    for table in tables:
                        each.execute(f"SYSTEM SYNC REPLICA {replicas.qualified(table)}")
                copies = self._agreed_copies(replicas, clients, first_hour)
                self._correct_raced(client, at, copies)
                if copies:
                    for each in clients:
                        each.execute(
                            f"SYSTEM SYNC REPLICA {replicas.qualified(replicas.corrections)}"
                        )
            finally:
                for each in clients:
                    each.disconnect()
        return len(copies)

    @staticmethod
    def _raced(client: Client, query: str, first_hour: int) -> dict[str, tuple[int, int]]:
        rows = client.execute(query, {"hour": first_hour})
        return {row[0]: (int(row[1]), int(row[2])) for row in rows}

    def _correct_raced(
        self, client: Client, at: datetime, copies: dict[str, tuple[int, int]]
    ) -> None:
        """Write the corrections of ``copies``, reading the events' fields first."""
        if not copies:
            return
        start = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        rows = client.execute(
            self._queries.events_of_ids,
            {"since": start.replace(tzinfo=None)},
            external_tables=[id_table("batch", "event_id", "String", copies)],
        )
        ids = [str(row[0]) for row in rows]
        columns = event_columns([event_from_row(row[:-1]) for row in rows], 0)
        columns.append([int(row[-1]) for row in rows])
        self._correct(client, ids, columns, {key: copies[key] for key in ids})

    def _replicas(self, client: Client) -> _Replicas | None:
        """The replicas behind the store's ``Distributed`` tables, or ``None`` when the
        tables are not ``Distributed`` over replicated tables (one server, or shards
        without replicas: reads through the tables then see every row)."""
        tables = self._queries.tables
        names = (tables.events, tables.aggregates, tables.corrections)
        engines = dict(client.execute(self._queries.distributed, {"names": names}))
        if set(engines) != set(names):
            return None
        arguments = {}
        for name, engine_full in engines.items():
            found = _DISTRIBUTED_ARGUMENTS.match(str(engine_full).strip())
            if found is None:
                return None
            arguments[name] = [part.strip().strip("'\"`") for part in found.group(1).split(",")]
        cluster, database, aggregates = arguments[tables.aggregates][:3]
        replicated = client.execute(_REPLICATED, {"database": database, "table": aggregates})
        if not replicated[0][0]:
            return None
        servers = [
            (int(shard), str(host), int(port))
            for shard, host, port in client.execute(_CLUSTER_SERVERS, {"cluster": cluster})
        ]
        return _Replicas(
            database=database,
            events=arguments[tables.events][2],
            aggregates=aggregates,
            corrections=arguments[tables.corrections][2],
            servers=servers,
        )

    @staticmethod
    def _agreed_copies(
        replicas: _Replicas, clients: Sequence[Client], first_hour: int
    ) -> dict[str, tuple[int, int]]:
        """The copy counts of the raced ids, read from every replica's own aggregates
        table; raises when two replicas of a shard disagree."""
        query = _raced_since(replicas.qualified(replicas.aggregates))
        by_shard: dict[int, dict[str, tuple[int, int]]] = {}
        for (shard, host, port), each in zip(replicas.servers, clients, strict=True):
            copies = ClickHouseEventStore._raced(each, query, first_hour)
            agreed = by_shard.setdefault(shard, copies)
            if copies != agreed:
                differing = sorted(set(copies.items()) ^ set(agreed.items()))
                raise StoreError(
                    _STORE,
                    f"reconcile: replica {host}:{port} of shard {shard} holds other copy "
                    f"counts than its peers for {len({key for key, _ in differing})} ids "
                    f"(first: {differing[0][0]}) after syncing; nothing was written. "
                    "Run it again once writes in flight have replicated.",
                )
        merged: dict[str, tuple[int, int]] = {}
        for copies in by_shard.values():
            merged.update(copies)
        return merged

    @staticmethod
    def _validated(items: Sequence[tuple[EngagementEvent, int]]) -> dict[str, _Pair]:
        """The batch by id, first occurrence of each; raises on any bad item."""
        if isinstance(items, str | bytes) or not isinstance(items, Sequence):
            raise InvalidInputError("items", "must be a sequence of (event, creator_id) pairs")
        batch: dict[str, _Pair] = {}
        # Hoisted out of the loop: this loop runs once per event of batches of 10,000s.
        watch = EngagementKind.WATCH
        for item in items:
            if not isinstance(item, tuple) or len(item) != 2:
                raise InvalidInputError("items", f"each item must be (event, creator_id): {item!r}")
            event, creator_id = item
            if not isinstance(event, EngagementEvent):
                raise InvalidInputError("event", "must be an EngagementEvent")
            if type(creator_id) is not int or not 1 <= creator_id <= MAX_ID:
                # Raises, naming the field, unless creator_id is a valid int subclass.
                check_id("creator_id", creator_id)
            if event.kind is watch and event.completion is None:
                raise InvalidInputError("completion", "a watch must carry completion when appended")
            if event.event_id not in batch:
                batch[event.event_id] = item
        return batch

    def _copies(
        self, client: Client, query: str, ids: Sequence[str], seconds: Sequence[int]
    ) -> dict[str, tuple[int, int]]:
        """``{event_id: (copies, smallest arrival number)}`` of the stored ids among
        ``ids`` (all of them with :attr:`_Queries.copies`, those stored more than once
        with :attr:`_Queries.copied`), looked up under the hours of the events' times
        ``seconds`` (Unix seconds, as :func:`event_columns` gives them)."""
        columns = id_check_columns(client, query, {"hours": _hours(seconds)}, table="batch",
                                   ids=list(ids))  # fmt: skip
        # ``tolist`` gives plain str and int: a numpy integer would be looked up in a
        # ``range`` by iterating it.
        return {
            event_id: (copies, first_seq)
            for event_id, copies, first_seq in zip(
                *(column.tolist() for column in columns), strict=True
            )
        }

    def _copied(self, client: Client, ids: Sequence[str], seconds: Sequence[int]) -> bool:
        """Whether any of ``ids`` may be stored more than once, from their total copy
        count and number of distinct hashes (see :attr:`_Queries.totals`)."""
        copies, hashes = id_check_columns(
            client, self._queries.totals, {"hours": _hours(seconds)}, table="batch", ids=list(ids)
        )
        return int(copies[0]) != int(hashes[0])

    def _correct(
        self,
        client: Client,
        ids: Sequence[str],
        columns: Sequence[Sequence[Any]],
        copies: dict[str, tuple[int, int]],
    ) -> list[str]:
        """Write a correction for every id stored more than once among ``ids`` (the
        events of the insert ``columns``); returns those ids. Likes and unlikes need
        none (see the class)."""
        raced = [event_id for event_id, (count, _) in copies.items() if count > 1]
        if not raced:
            return raced
        position = {event_id: index for index, event_id in enumerate(ids)}
        rows = [
            (position[event_id], copies[event_id][0])
            for event_id in raced
            if columns[_KIND_COLUMN][position[event_id]] in _COUNTED
        ]
        if rows:
            client.execute(
                self._queries.insert_corrections,
                [
                    [columns[0][index] for index, _ in rows],
                    [columns[_KIND_COLUMN][index] for index, _ in rows],
                    [columns[_USER_COLUMN][index] for index, _ in rows],
                    [columns[_VIDEO_COLUMN][index] for index, _ in rows],
                    [columns[_CREATOR_COLUMN][index] for index, _ in rows],
                    [columns[_COMPLETION_COLUMN][index] or 0.0 for index, _ in rows],
                    [count for _, count in rows],
                ],
                columnar=True,
            )
        return raced

    def fold_stats(
        self,
        *,
        until: datetime | None = None,
        timeout_seconds: float = 300.0,
        incremental: bool = True,
    ) -> int:
        """Roll the per-video statistics up to an arrival watermark, so that
        :meth:`get_stats` reads one row per candidate instead of its like states and
        count rows; returns how many videos the roll-up holds.

        Folds every event whose arrival bucket (its arrival number, nanoseconds of the
        writer's clock, in buckets of 2**36 ns, about 69 s) ends at or before ``until``
        (default: a minute ago, so batches still in flight are not expected in it).
        Run it periodically (every few minutes: a read adds what arrived since the last
        roll-up, which a store holding its since-sums reads once, and a new store's
        first read and an incremental roll-up read whole). It writes
        the roll-up, then marks it complete; until then reads use the previous one. A
        roll-up never reuses a watermark: when the last one's is not older than
        ``until``'s, nothing is written and ``0`` returned.

        With ``incremental`` (the default) and a previous complete roll-up that still
        holds (nothing arrived late before its watermark, its rows all there), the new
        one is the previous one's rows plus the counts that arrived between the two
        watermarks, with the like counts of the videos liked or unliked since read again
        from their pairs: its cost grows with what arrived since and the number of like
        states, not with the history of counts. Otherwise, or with ``incremental=False``,
        it reads every like state and every arrival row (seconds at 10 M events). If an
        event arrives before the new watermark while an incremental roll-up is written,
        the roll-up is left unmarked (no read uses it) and ``0`` returned; the next call,
        with a later watermark, rolls up again.

        Reads stay exact whatever happens to a roll-up: :meth:`get_stats` uses one only
        while its row count and the number of events that arrived before its watermark
        are what the roll-up recorded, and otherwise merges the states as before
        (an event that arrived late, such as a batch with an old arrival number or a
        part fetched later by a replica, sends reads there until the next roll-up).
        ``timeout_seconds`` bounds each statement (the engine's socket timeout is
        meant for reads).
        """
        at = datetime.now(UTC) - timedelta(minutes=1) if until is None else until
        at = check_aware("until", at)
        if not (
            isinstance(timeout_seconds, int | float)
            and not isinstance(timeout_seconds, bool)
            and math.isfinite(timeout_seconds)
            and timeout_seconds > 0
        ):
            raise InvalidInputError("timeout_seconds", "must be a positive number of seconds")
        if not isinstance(incremental, bool):
            raise InvalidInputError("incremental", "must be True or False")
        fold = _arrival_bucket(at)
        url = self._engine.url
        with store_errors(_STORE, "fold_stats"):
            client = server_client(
                self._engine, str(url.host), int(url.port or 9000), float(timeout_seconds)
            )
            try:
                last = client.execute(self._queries.last_fold)[0][0]
                if last is not None and int(last) >= fold:
                    return 0
                params = {"fold": fold, "fold_start": fold << FINE_PER_COARSE_BITS}
                folded = self._fold_since(client, fold) if incremental else None
                if folded is False:
                    return 0  # an event arrived late meanwhile: the next call rolls up
                if folded is None:
                    # One block, so one part per server: the roll-up of one server is
                    # there whole or not at all (the marker below is what reads look for).
                    client.execute(self._queries.fold, params, settings=ONE_BLOCK)
                videos = int(client.execute(self._queries.fold_videos, params)[0][0])
                arrivals = int(client.execute(self._queries.fold_arrivals, params)[0][0] or 0)
                client.execute(self._queries.insert_fold_marker, [(fold, 0, arrivals, videos)])
            finally:
                client.disconnect()
        return videos

    def get_stats(self, video_ids: Sequence[int]) -> dict[int, VideoStats]:
        """Aggregates for every requested id; zeros for videos never engaged with.

        The models of :meth:`stats_columns`; the feed reads the columns, which cost a
        fraction of this (10,000 models are 10,000 objects for the garbage collector).
        """
        return self.stats_columns(video_ids).to_stats()

    def _fold_since(self, client: Client, fold: int) -> bool | None:
        """Write roll-up ``fold`` from the latest complete one plus what arrived since
        it: ``True`` when written, ``None`` when there is no previous roll-up that holds
        (the caller folds everything), ``False`` when an event arrived before the new
        watermark while the statement ran (the rows written are left without a marker,
        so no read uses them)."""
        previous = self._newest_fold(client)
        if previous is None:
            return None
        last, last_arrivals, last_videos = previous
        params = {
            "fold": fold,
            "fold_start": fold << FINE_PER_COARSE_BITS,
            "previous": last,
            "previous_start": last << FINE_PER_COARSE_BITS,
            "previous_arrivals": last_arrivals,
        }
        before, between = client.execute(self._queries.arrivals_around, params)[0]
        last_rows = int(client.execute(self._queries.fold_videos, {"fold": last})[0][0])
        if before != last_arrivals or last_rows != last_videos:
            return None  # events arrived late before it, or its rows were merged away
        client.execute(self._queries.fold_since, params, settings=ONE_BLOCK)
        # Rows are only ever added to the aggregate table, and a roll-up's rows only
        # replaced by a newer roll-up's: unchanged totals and rows after the statement
        # mean it read what they counted.
        after = client.execute(self._queries.arrivals_around, params)[0]
        last_rows = int(client.execute(self._queries.fold_videos, {"fold": last})[0][0])
        return after == (before, between) and last_rows == last_videos

    def stats_columns(self, video_ids: Sequence[int]) -> VideoStatsColumns:
        """The statistics of every requested id as columns (one row per distinct id, in
        the order of first request); zeros for videos never engaged with.

        Reads the latest complete roll-up of :meth:`fold_stats` plus what arrived after
        it, when the roll-up is whole and nothing arrived late before its watermark;
        otherwise (and before any roll-up) merges every requested video's states. What
        arrived after it comes from the store's held since-sums for the buckets it holds
        (see the class), when their totals on the server are what it counted, and from
        the server for the rest. The like count of a video with likes or unlikes since
        the roll-up comes from the pairs liked at the roll-up's watermark, held by the
        store (``held_like_pairs``), and the pairs that changed since; until the store
        holds them, or when it does not, it is read again from the video's pairs, the
        store keeps the counts it read, and a later read reads again only the videos
        with likes or unlikes that arrived after them. The rows come back as columns and
        are summed with numpy, with no object per video.
        """
        ids = check_ids("video_ids", video_ids)
        unique = list(dict.fromkeys(ids))
        requested = np.array(unique, dtype=np.int64)
        if unique:
            with store_errors(_STORE, "get_stats"), self._clients.reader() as client:
                found = self._folded_stats(client, requested)
                if found is None:
                    found = self._merged_stats(client, requested)
        else:
            found = _Sums.zeros(0)
        return found.columns(requested)

    def stats_columns_within(
        self, video_ids: Sequence[int], *, max_age_seconds: float
    ) -> VideoStatsColumns | None:
        """The statistics of :meth:`stats_columns` for the same ids, leaving out at most
        the events that arrived in the last ``max_age_seconds``, from the store's memory
        without a round trip; ``None`` when what it holds is not recent enough (the
        :class:`~reelrank.BoundedAgeEventStore` read).

        Answers from the held roll-up, the held since-sums and, for the like counts of
        videos liked or unliked since the roll-up, the held liked pairs (or like counts
        an exact read kept for as many likes and unlikes), less the held corrections,
        when all of these are no older than ``max_age_seconds``: the start of the last
        read that found the since-sums and the roll-up whole on the server (the exact
        read's late-arrival and bucket-total checks), the start of the first fine
        bucket the since-sums do not hold (unless that check found no arrivals after
        them), and the read of the corrections. An event that arrives late in a held
        bucket is therefore counted once the bound has passed since it arrived, or
        the answer is ``None``. A requested video's correction that the store first
        saw after that check began, or after the first bucket not held began, makes
        it answer ``None`` (its copies may or may not be counted yet); a correction
        written on the server is left out for at most one refresh after it is
        written. Ages are measured by the store's clock against arrival numbers, the
        writers' clocks: skew between them adds to the age.

        Each call keeps those data fresh for a minute more: a thread of the store's own
        runs the exact read's checks (one query, which also loads a newer roll-up and
        extends the since-sums) and reads the corrections (one query) every
        ``bounded_refresh_seconds``, until a minute passes without a bounded-age read or
        the store closes. The store must hold its roll-up and arrivals
        (``held_roll_up_videos > 0``, ``hold_arrivals``) to answer at all.
        """
        ids = check_ids("video_ids", video_ids)
        max_age = check_max_age("max_age_seconds", max_age_seconds)
        if not self._held_videos_limit or not self._hold_arrivals:
            return None
        self._keep_fresh()
        held, since, corrections = self._held, self._since, self._corrections
        if held is None or since is None or corrections is None:
            return None
        oldest = self._clock_ns() - round(max_age * 1e9)
        counted_before = since.counts_all_before()
        if (
            not since.serves(held.fold)
            or since.checked_fold != held.fold
            or since.checked_ns < oldest
            or counted_before < oldest
            or corrections.read_ns < oldest
        ):
            return None
        requested = np.array(list(dict.fromkeys(ids)), dtype=np.int64)
        # Summed in id order: each held array is searched for the ids in order, several
        # times faster for 10,000 ids than in the order asked; put back in that at the end.
        order = np.argsort(requested, kind="stable")
        found = self._held_sums(held, since, corrections, requested[order], counted_before)
        if found is None:
            return None
        values = _Sums.zeros(requested.shape[0])
        for name in ("views", "completion_sum", "likes", "shares", "comments"):
            getattr(values, name)[order] = getattr(found, name)
        return values.columns(requested)

    def _held_sums(
        self,
        held: _HeldRollUp,
        since: _HeldSince,
        corrections: _HeldCorrections,
        requested: NDArray[np.int64],
        counted_before: int,
    ) -> _Sums | None:
        """The sums of ``requested`` (distinct, sorted) from the held data, as
        :meth:`stats_columns_within` answers them, or ``None`` when it answers ``None``."""
        values = held.rows_of(requested)
        arrived = _Sums.zeros(requested.shape[0])
        since.add_to(held.fold, requested, arrived)
        values.add_all_but_likes(arrived)  # like counts: replaced below
        liked = np.flatnonzero(arrived.likes != 0)
        if liked.shape[0]:
            counts = self._held_like_counts(held, since, requested[liked], arrived.likes[liked])
            if counts is None:
                return None
            values.likes[liked] = counts
        if not corrections.subtract_from(requested, values, min(counted_before, since.checked_ns)):
            return None
        summed = (values.views, values.likes, values.shares, values.comments)
        if any((each < 0).any() for each in summed):
            return None  # held data that disagree: the exact read decides
        return values

    def _held_like_counts(
        self,
        held: _HeldRollUp,
        since: _HeldSince,
        videos: NDArray[np.int64],
        marks: NDArray[np.int64],
    ) -> NDArray[np.int64] | None:
        """The like counts of ``videos`` (distinct), liked or unliked since roll-up
        ``held`` as many times as ``marks`` in the held since-sums, from memory: the
        counts an exact read kept for as many likes and unlikes, else from the held
        liked pairs and the pairs the since-sums hold; ``None`` when the store holds
        neither for some video."""
        counts = np.zeros(videos.shape[0], dtype=np.int64)
        kept = np.zeros(videos.shape[0], dtype=np.bool_)
        # Those the refresh computed with the since-sums first, then those an exact
        # read kept.
        for known in (since.like_counts(held.fold), self._likes_since):
            left = np.flatnonzero(~kept)
            found, found_counts = known.still_held(held.fold, videos[left], marks[left])
            counts[left[found]] = found_counts
            kept[left[found]] = True
        stale = videos[~kept]
        if not stale.shape[0]:
            return counts
        liked = self._liked
        changed = since.changed_pairs(held.fold)
        if (
            liked is None
            or liked.fold != held.fold
            or not changed
            or int(stale.max()) >= _PAIR_VIDEO_LIMIT
        ):
            return None
        in_order = np.sort(stale)
        latest = _ChangedPairs.latest([part.of_videos(in_order) for part in changed])
        counts[~kept] = liked.likes(stale, latest)
        return counts

    def _keep_fresh(self) -> None:
        """Note a bounded-age read, and start the thread that keeps the held data fresh
        for it unless it runs (or the store is closed)."""
        self._bounded_asked = time.monotonic()
        thread = self._refresh_thread
        if thread is not None and thread.is_alive():
            return
        with self._refresh_lock:
            thread = self._refresh_thread
            if self._closed or (thread is not None and thread.is_alive()):
                return
            thread = threading.Thread(
                target=self._refresh_while_asked,
                name="reelrank-clickhouse-bounded-refresh",
                daemon=True,
            )
            self._refresh_thread = thread
            thread.start()

    def _refresh_while_asked(self) -> None:
        """Refresh the held data every ``bounded_refresh_seconds`` until a minute
        passes without a bounded-age read or the store closes."""
        while not self._refresh_stop.is_set():
            if time.monotonic() - self._bounded_asked > _BOUNDED_IDLE_SECONDS:
                return
            started = time.monotonic()
            # On a failure bounded reads answer None as the data age; the next try may work.
            with contextlib.suppress(StoreError):
                self._refresh_held()
            self._refresh_stop.wait(max(self._refresh_seconds - (time.monotonic() - started), 0))

    def _refresh_held(self) -> None:
        """Read the corrections into memory, then run an exact read's checks, which load
        a newer roll-up, find the since-sums whole (or drop them) and start the
        background reads of the buckets settled since and of the liked pairs. In that
        order: a correction read here has its copies on the server before the checks
        begin."""
        with store_errors(_STORE, "stats_columns_within"), self._clients.reader() as client:
            read_ns = self._clock_ns()
            columns = numpy_columns(
                client, self._queries.held_corrections, {"limit": _HELD_CORRECTIONS_LIMIT + 1}
            )
            seen_ns = self._clock_ns()
            if columns and columns[0].shape[0] > _HELD_CORRECTIONS_LIMIT:
                self._corrections = None
            else:
                self._corrections = _HeldCorrections.of_rows(
                    columns, read_ns, seen_ns, self._corrections
                )
            self._folded_stats(client, _CHECK_VIDEO)

    def _folded_stats(self, client: Client, requested: NDArray[np.int64]) -> _Sums | None:
        """The sums of the requested videos from the latest complete roll-up plus what
        arrived after it, or ``None`` when there is none or it no longer holds
        (incomplete, or events arrived late before its watermark).

        The roll-up's rows come from the store's memory when it holds the newest
        roll-up (one round trip: which roll-up is newest, the checks, what arrived since,
        the corrections); a read that finds a newer one loads its rows first, when the
        roll-up has at most ``held_roll_up_videos`` videos and no other read of the
        store is loading it; otherwise the candidates' rows are read from the server.
        """
        held = self._held
        if held is not None:
            newest, found = self._held_stats(client, requested, held)
            if newest is None or newest == held.fold:
                return found
        newest_fold = self._newest_fold(client)
        if newest_fold is None:
            return None
        fold, arrivals, videos = newest_fold
        if 0 < videos <= self._held_videos_limit and self._hold_lock.acquire(blocking=False):
            try:
                held = self._hold(client, fold, arrivals, videos)
            finally:
                self._hold_lock.release()
            if held is not None:
                newest, found = self._held_stats(client, requested, held)
                if newest is None or newest == held.fold:
                    return found
                # A newer roll-up completed meanwhile: read its rows from the server.
                newest_fold = self._newest_fold(client)
                if newest_fold is None:
                    return None
                fold, arrivals, videos = newest_fold
        return self._server_folded_stats(client, requested, fold, arrivals, videos)

    def _newest_fold(self, client: Client) -> tuple[int, int, int] | None:
        """The newest complete roll-up's number, arrivals counted and videos, if any."""
        folds = client.execute(self._queries.folds)
        if not folds:
            return None
        fold, arrivals, videos = (int(value) for value in folds[0])
        return fold, arrivals, videos

    def _hold(self, client: Client, fold: int, arrivals: int, videos: int) -> _HeldRollUp | None:
        """Load the rows of the roll-up ``fold`` into memory, as the store's held roll-up;
        ``None`` (holding nothing new) when its rows are not the ``videos`` rows it
        recorded (merged away by a newer roll-up, or written twice by concurrent
        folds)."""
        columns = numpy_columns(client, self._queries.roll_up_rows, {"fold": fold})
        if not columns:
            return None
        video_ids = np.asarray(columns[0], dtype=np.int64)
        order = np.argsort(video_ids, kind="stable")
        video_ids = video_ids[order]
        if video_ids.shape[0] != videos or (video_ids[1:] == video_ids[:-1]).any():
            return None
        held = _HeldRollUp(
            fold=fold,
            arrivals=arrivals,
            video_ids=video_ids,
            values=_Sums(
                np.asarray(columns[1], dtype=np.int64)[order],
                np.asarray(columns[2], dtype=np.float64)[order],
                np.asarray(columns[3], dtype=np.int64)[order],
                np.asarray(columns[4], dtype=np.int64)[order],
                np.asarray(columns[5], dtype=np.int64)[order],
            ),
        )
        self._held = held
        return held

    def _held_stats(
        self, client: Client, requested: NDArray[np.int64], held: _HeldRollUp
    ) -> tuple[int | None, _Sums | None]:
        """The newest complete roll-up's watermark (``None`` when there is none) and,
        when that is the held roll-up and no event arrived late before it, the sums of
        the requested videos: its rows plus what arrived since, from the held
        since-sums (:class:`_HeldSince`) and the buckets after them. When an event
        arrived in a held bucket after the store read it, the store drops its
        since-sums and reads again everything since the roll-up."""
        since = self._since if self._hold_arrivals else None
        if since is not None and not since.serves(held.fold):
            since = None
        newest, found = self._held_read(client, requested, held, since)
        if newest == _SINCE_STALE:
            if self._since is since:  # not replaced meanwhile by a newer one
                self._since = None
            newest, found = self._held_read(client, requested, held, None)
        return newest, found

    def _held_read(
        self,
        client: Client,
        requested: NDArray[np.int64],
        held: _HeldRollUp,
        since: _HeldSince | None,
    ) -> tuple[int | None, _Sums | None]:
        """:meth:`_held_stats` with the since-sums ``since`` (or none); the newest
        roll-up is :data:`_SINCE_STALE` when the server's bucket totals differ from
        ``since``'s."""
        start = held.fold << FINE_PER_COARSE_BITS
        liked = self._liked
        held_pairs = None if since is None else since.changed_pairs(held.fold)
        if liked is None or liked.fold != held.fold or (since is not None and held_pairs is None):
            liked = None
        asked_ns = self._clock_ns()
        columns = numpy_columns(
            client,
            self._queries.held_stats if liked is None else self._queries.held_stats_with_pairs,
            {
                "fold": held.fold,
                "start": start,
                "unheld": start if since is None else since.unheld,
            },
            external_tables=[id_frame("ids", "id", "UInt64", requested)],
        )
        if not columns:
            return None, None
        parts = np.asarray(columns[1], dtype=np.int64)
        views = np.asarray(columns[2], dtype=np.int64)
        newest = views[parts == _NEWEST]
        if not newest.shape[0]:
            return None, None
        if int(newest[0]) != held.fold:
            return int(newest[0]), None
        if int(views[parts == _ARRIVALS_BEFORE].sum()) != held.arrivals:
            return held.fold, None
        is_total = parts == _BUCKET_TOTAL
        buckets = np.asarray(columns[0], dtype=np.int64)[is_total]
        if since is not None and not since.matches(held.fold, buckets, views[is_total]):
            return _SINCE_STALE, None
        if since is not None:
            checked = since.checked(held.fold, asked_ns, buckets)
            if self._since is since:  # not replaced meanwhile by an extended one
                self._since = checked
            since = checked
        arrived = _Sums.zeros(requested.shape[0])
        if since is not None:
            since.add_to(held.fold, requested, arrived)
        values = held.rows_of(requested)
        pairs = None
        if liked is not None:
            pairs = _changed_pairs(held_pairs or [], columns, parts)
        self._add_rows(
            client,
            held.fold,
            requested,
            values,
            columns,
            parts,
            arrived,
            None if liked is None or pairs is None else (liked, pairs),
        )
        if self._hold_arrivals:
            self._extend_since(held.fold, since, buckets, asked_ns)
        self._hold_likes(held)
        return held.fold, values

    def _hold_likes(self, held: _HeldRollUp) -> None:
        """Start a thread that reads the pairs liked at roll-up ``held``'s watermark
        into the store's memory, unless the store holds them already, does not hold
        them for that roll-up (``held_like_pairs``), or another thread is at it."""
        liked = self._liked
        if (
            not self._like_pairs_limit
            or (liked is not None and liked.fold == held.fold)
            or self._liked_refused == held.fold
        ):
            return
        if self._closed or not self._liked_lock.acquire(blocking=False):
            return
        thread = threading.Thread(
            target=self._read_likes,
            args=(held,),
            name="reelrank-clickhouse-held-likes",
            daemon=True,
        )
        self._liked_thread = thread
        thread.start()

    def _read_likes(self, held: _HeldRollUp) -> None:
        """Read the pairs liked at roll-up ``held``'s watermark and hold them (under
        :attr:`_liked_lock`, which it releases): when they are at most
        ``held_like_pairs`` with ids that fit a key, and the events that arrived before
        the watermark are still those the roll-up counted, after the read (then the
        rows read are the roll-up's)."""
        try:
            limit = self._like_pairs_limit
            with store_errors(_STORE, "get_stats"), self._clients.reader() as client:
                columns = numpy_columns(
                    client,
                    self._queries.liked_before,
                    {"start": held.fold << FINE_PER_COARSE_BITS, "limit": limit + 1},
                )
                before = client.execute(self._queries.arrivals_before, {"fold": held.fold})
            if int(before[0][0]) != held.arrivals:
                return  # events arrived late before it: reads leave the roll-up
            videos, users = (
                (np.asarray(column, dtype=np.int64) for column in columns[:2])
                if columns
                else (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
            )
            keys = _pair_keys(videos, users)
            if keys is None or keys.shape[0] > limit:
                self._liked_refused = held.fold
                return
            liked = self._liked = _HeldLikes.of_pairs(held.fold, keys)
            # The held since-sums' like counts, for bounded-age reads, without waiting
            # for their next extension (a quiet store may not extend them for long).
            since = self._since
            if since is not None:
                counted = since.with_like_counts(liked)
                if self._since is since:  # not replaced meanwhile by an extended one
                    self._since = counted
        except StoreError:
            pass  # reads stay exact without: they read like counts again
        finally:
            self._liked_lock.release()

    def _extend_since(
        self, fold: int, since: _HeldSince | None, buckets: NDArray[np.int64], checked_ns: int
    ) -> None:
        """Start a thread that reads the settled buckets since roll-up ``fold`` that
        ``since`` does not hold yet (all of them when there is none) into the store's
        since-sums, unless there are none (``buckets`` has the fine buckets with
        arrivals) or another thread is at it; new since-sums count as checked at
        ``checked_ns``, when the read that found the roll-up whole began. A bucket is
        settled once
        ``arrival_settle_seconds`` have passed since its end by the store's clock
        (with ``0``, at once: a bucket that gets more events later makes the store read
        again)."""
        start = fold << FINE_PER_COARSE_BITS
        high = int(buckets.max()) + 1 if buckets.shape[0] else start
        if self._settle_ns:
            high = min(high, (self._clock_ns() - self._settle_ns) >> FINE_BUCKET_SHIFT)
        low = start if since is None else since.unheld
        if since is not None and not ((buckets >= low) & (buckets < high)).any():
            # No arrivals in the settled buckets not held yet, as of the read that found
            # ``buckets`` (which ``since`` was checked by): they are held, empty, so that
            # the held buckets keep up while few events arrive (for bounded-age reads).
            if high > low and self._since is since:
                self._since = replace(since, unheld=high)
            return
        if self._closed or not self._since_lock.acquire(blocking=False):
            return
        thread = threading.Thread(
            target=self._read_since,
            args=(fold, since or _HeldSince(start, start, (), fold, checked_ns), max(high, low)),
            name="reelrank-clickhouse-held-arrivals",
            daemon=True,
        )
        self._since_thread = thread
        thread.start()

    def _read_since(self, fold: int, since: _HeldSince, high: int) -> None:
        """Read what arrived in fine buckets ``[since.unheld, high)`` for every video,
        and the pairs that changed there unless the store holds no liked pairs
        (``held_like_pairs=0``), and hold ``since`` with them (under
        :attr:`_since_lock`, which it releases)."""
        try:
            columns: Sequence[Any] = []
            pairs: Sequence[Any] | None = [] if self._like_pairs_limit else None
            read_ns = self._clock_ns()
            if high > since.unheld:
                with store_errors(_STORE, "get_stats"), self._clients.reader() as client:
                    between = {"low": since.unheld, "high": high}
                    columns = numpy_columns(client, self._queries.arrived_between, between)
                    if pairs is not None:
                        pairs = numpy_columns(client, self._queries.pairs_between, between)
            extended = since.extended(fold, high, columns, pairs, read_ns)
            # Like counts computed here, off the read path: bounded-age reads look
            # them up rather than merging the changed pairs of their candidates.
            self._since = extended.with_like_counts(self._liked)
        except StoreError:
            pass  # reads stay exact without: they read what arrived from the server
        finally:
            self._since_lock.release()

    def _server_folded_stats(
        self, client: Client, requested: NDArray[np.int64], fold: int, arrivals: int, videos: int
    ) -> _Sums | None:
        """The sums of the requested videos with the candidates' rows of roll-up ``fold``
        read from the server, or ``None`` when it no longer holds."""
        start = fold << FINE_PER_COARSE_BITS
        columns = numpy_columns(
            client,
            self._queries.folded_stats,
            {"fold": fold, "start": start, "unheld": start},
            external_tables=[id_frame("ids", "id", "UInt64", requested)],
        )
        if not columns:
            return None
        parts = np.asarray(columns[1], dtype=np.int64)
        views = np.asarray(columns[2], dtype=np.int64)
        for part, expected in ((_ARRIVALS_BEFORE, arrivals), (_FOLDED_VIDEOS, videos)):
            if (views[parts == part] != expected).any():
                return None
        row_videos = np.asarray(columns[0], dtype=np.int64)
        folded = parts == _FOLDED
        if np.unique(row_videos[folded]).shape[0] != np.count_nonzero(folded):
            return None  # a roll-up written twice (concurrent folds)
        values = _Sums.zeros(requested.shape[0])
        self._add_rows(
            client, fold, requested, values, columns, parts, _Sums.zeros(requested.shape[0])
        )
        return values

    def _add_rows(
        self,
        client: Client,
        fold: int,
        requested: NDArray[np.int64],
        values: _Sums,
        columns: Sequence[Sequence[Any]],
        parts: NDArray[np.int64],
        arrived: _Sums,
        like_pairs: tuple[_HeldLikes, list[_ChangedPairs]] | None = None,
    ) -> None:
        """Add the rows of roll-up ``fold``, what arrived since (the rows of a roll-up
        read plus ``arrived``, the held since-sums of the requested videos, with the
        number of likes and unlikes in ``likes``) and the corrections to ``values``; the
        like counts of videos with likes or unlikes since the roll-up replace the
        rolled-up ones (a like count depends on the order of each pair's likes and
        unlikes, so the arrival rows cannot give it). Those the store counted before
        with as many likes and unlikes since as now come from its memory; the others,
        with ``like_pairs`` (the pairs liked at the roll-up's watermark and those that
        changed since, in bucket order), from those (:meth:`_HeldLikes.likes`), and
        without, read again from their pairs."""
        row_videos = np.asarray(columns[0], dtype=np.int64)
        views, likes, shares, comments = (
            np.asarray(columns[index], dtype=np.int64) for index in (2, 4, 5, 6)
        )
        completion = np.asarray(columns[3], dtype=np.float64)
        for sums, of_part in ((values, (_FOLDED, _CORRECTED)), (arrived, (_ARRIVED_SINCE,))):
            rows = np.isin(parts, of_part)
            sums.add(
                _row_of(requested, row_videos[rows]),
                views[rows],
                completion[rows],
                likes[rows],
                shares[rows],
                comments[rows],
            )
        values.add_all_but_likes(arrived)  # like counts: replaced below
        liked = arrived.likes != 0
        liked_since, marks = requested[liked], arrived.likes[liked]
        if not liked_since.shape[0]:
            return
        known = self._likes_since
        still_held, held_likes = known.still_held(fold, liked_since, marks)
        values.likes[_row_of(requested, liked_since[still_held])] = held_likes
        stale, stale_marks = liked_since[~still_held], marks[~still_held]
        if not stale.shape[0]:
            return
        if like_pairs is not None and int(stale.max()) < _PAIR_VIDEO_LIMIT:
            liked_at_watermark, changed = like_pairs
            # The videos' pairs of each part first: the held parts hold every video's,
            # a few hundred thousand pairs a minute at 10,000 events/s.
            in_order = np.sort(stale)
            latest = _ChangedPairs.latest([part.of_videos(in_order) for part in changed])
            counted = liked_at_watermark.likes(stale, latest)
            values.likes[_row_of(requested, stale)] = counted
            # Kept with the likes and unlikes of the pairs they were counted from, not
            # ``stale_marks`` (another part of the query, maybe another snapshot): rows
            # are only ever added, so a later read with as many has the same events.
            self._likes_since = known.with_counts(fold, stale, latest.marks(stale), counted)
            return
        if stale.shape[0] <= _FEW_VIDEOS:
            likes_now = numpy_columns(
                client, self._queries.likes_now_of_few, {"videos": tuple(stale.tolist())}
            )
        else:
            likes_now = numpy_columns(
                client,
                self._queries.likes_now,
                external_tables=[id_frame("ids", "id", "UInt64", stale)],
            )
        # A video whose every like was undone since may have no pair liked: zero.
        read_again = np.zeros(stale.shape[0], dtype=np.int64)
        if likes_now:
            read_again[_row_of(stale, np.asarray(likes_now[0], dtype=np.int64))] = np.asarray(
                likes_now[1], dtype=np.int64
            )
        values.likes[_row_of(requested, stale)] = read_again
        # Another read may have replaced the counts meanwhile; either's are exact.
        self._likes_since = known.with_counts(fold, stale, stale_marks, read_again)

    def _merged_stats(self, client: Client, requested: NDArray[np.int64]) -> _Sums:
        """The sums of the requested videos merged from every state."""
        columns = numpy_columns(
            client,
            self._queries.stats,
            external_tables=[id_frame("ids", "id", "UInt64", requested)],
        )
        values = _Sums.zeros(requested.shape[0])
        if not columns:
            return values
        rows = _row_of(requested, np.asarray(columns[0], dtype=np.int64))
        codes = np.asarray(columns[1], dtype=np.int64)
        events = np.asarray(columns[2], dtype=np.int64)
        watch = codes == KIND_CODES["watch"]
        zero = np.zeros_like(events)
        values.add(
            rows,
            np.where(watch, events, zero),
            np.where(watch, np.asarray(columns[3], dtype=np.float64), 0.0),
            np.where(codes == _LIKES, events, zero),
            np.where(codes == KIND_CODES["share"], events, zero),
            np.where(codes == KIND_CODES["comment"], events, zero),
        )
        return values

    def get_affinities(self, user_id: int, creator_ids: Sequence[int]) -> dict[int, float]:
        """Affinity of the user with every requested creator; ``0.0`` when none.

        The user's credit with every creator is read (the total is the denominator of
        :func:`~reelrank.affinity`), from the keys of one user only.
        """
        check_id("user_id", user_id)
        ids = check_ids("creator_ids", creator_ids)
        if not ids:
            return {}
        with store_errors(_STORE, "get_affinities"), self._clients.reader() as client:
            rows = client.execute(self._queries.credit, {"user_id": user_id})
        return _affinities(rows, ids)

    def get_affinities_many(
        self, creator_ids_by_user: Mapping[int, Sequence[int]]
    ) -> dict[int, dict[int, float]]:
        """:meth:`get_affinities` of each user with their creators: the same credit
        query for many users at once, one per :attr:`users_per_query` users (the users
        travel as an external table)."""
        requested = check_ids_by_user("creator_ids_by_user", creator_ids_by_user)
        asking = [uid for uid, ids in requested.items() if ids]
        rows_of: dict[int, list[tuple[int, int, int, float]]] = {uid: [] for uid in asking}
        for chunk in chunked(asking, self.users_per_query):
            with store_errors(_STORE, "get_affinities_many"), self._clients.reader() as client:
                rows = client.execute(
                    self._queries.credit_many,
                    external_tables=[id_table("users", "id", "UInt64", chunk)],
                )
            for user_id, creator_id, code, events, completion_sum in rows:
                rows_of[user_id].append((creator_id, code, events, completion_sum))
        return {uid: _affinities(rows_of.get(uid, ()), ids) for uid, ids in requested.items()}

    def popular_video_ids(self, *, limit: int) -> list[int]:
        """Most viewed video ids, most views first, ties by lower id."""
        check_limit("limit", limit)
        if limit == 0:
            return []
        with store_errors(_STORE, "popular_video_ids"), self._clients.reader() as client:
            rows = client.execute(self._queries.popular, {"limit": limit})
        return [int(row[0]) for row in rows]
