"""The in-memory catalog: videos, creators and follows in dicts and sorted lists."""

from __future__ import annotations

import bisect
import heapq
import threading
from collections.abc import Sequence
from datetime import datetime

from ..exceptions import NotFoundError
from ..models._catalog import Creator, ProcessingState, Video, VideoLabels
from ..models._followed_columns import NO_SOUND_ID, FollowedColumns
from ..models._label_columns import VideoLabelColumns
from ..validation import check_aware, check_id, check_ids, check_limit, check_user_ids
from ._common import _check_instance

__all__ = ["InMemoryCatalog"]


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
        check_limit("limit", limit)
        cutoff = None if since is None else check_aware("since", since)
        with self._lock:
            result: list[Video] = []
            for published_at, video_id in reversed(self._ready_by_recency):
                if len(result) >= limit or (cutoff is not None and published_at < cutoff):
                    break
                result.append(self._videos[video_id])
            return result

    def get_labels(self, video_ids: Sequence[int]) -> dict[int, VideoLabels]:
        """The labels of :meth:`get_videos` for the same ids."""
        return {vid: VideoLabels.of(video) for vid, video in self.get_videos(video_ids).items()}

    def recent_labels(self, *, limit: int, since: datetime | None = None) -> list[VideoLabels]:
        """The labels of :meth:`recent_videos`, in its order."""
        return [VideoLabels.of(video) for video in self.recent_videos(limit=limit, since=since)]

    def recent_label_columns(
        self, *, limit: int, since: datetime | None = None
    ) -> VideoLabelColumns:
        """:meth:`recent_labels` as columns (a :class:`~reelrank.LabelColumnsCatalog`)."""
        videos = self.recent_videos(limit=limit, since=since)
        return VideoLabelColumns.from_labels(VideoLabels.of(video) for video in videos)

    def label_columns(self, video_ids: Sequence[int]) -> VideoLabelColumns:
        """:meth:`get_labels` as columns, ascending ids (a
        :class:`~reelrank.LabelColumnsCatalog`)."""
        videos = self.get_videos(video_ids)
        return VideoLabelColumns.from_labels(
            VideoLabels.of(videos[video_id]) for video_id in sorted(videos)
        )

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
        check_limit("limit", limit)
        with self._lock:
            return self._followed_videos(user_id, limit)

    def followed_columns(self, user_id: int, *, limit: int) -> FollowedColumns:
        """:meth:`followed_videos` as columns (a :class:`~reelrank.FollowedColumnsCatalog`)."""
        videos = self.followed_videos(user_id, limit=limit)
        return FollowedColumns.from_arrays(
            video_ids=[video.video_id for video in videos],
            creator_ids=[video.creator_id for video in videos],
            sound_ids=[
                NO_SOUND_ID if video.sound_id is None else video.sound_id for video in videos
            ],
            published_at=[video.published_at.timestamp() for video in videos],
        )

    def followed_videos_many(
        self, user_ids: Sequence[int], *, limit: int
    ) -> dict[int, list[Video]]:
        """:meth:`followed_videos` of each user, read under one hold of the lock."""
        users = check_user_ids("user_ids", user_ids)
        check_limit("limit", limit)
        with self._lock:
            return {user_id: self._followed_videos(user_id, limit) for user_id in users}

    def _followed_videos(self, user_id: int, limit: int) -> list[Video]:
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
