r"""Creator recommendations: creators a user does not follow yet, and may want to.

For a user :math:`u` with engagement in the lookback window, every candidate creator
:math:`c` is scored

.. math::

    s(u, c) = w_{co} \cdot \mathrm{co}(u, c) + w_{ct} \cdot \mathrm{content}(u, c)
              + w_q \cdot q(c)

* **co-engagement** -- users who engage with the creators you watch also watch
  :math:`c`. With :math:`A_u` the creators :math:`u` engaged with, :math:`a(u, x)` the
  user's affinity with creator :math:`x` (:func:`~reelrank.affinity`) and :math:`U_x`
  the *other* users who engaged with :math:`x` in the window,

  .. math::

      \mathrm{co}(u, c) = \frac{\sum_{x \in A_u} a(u, x)\,
          \frac{|U_x \cap U_c|}{\sqrt{|U_x|\,|U_c|}}}{\sum_{x \in A_u} a(u, x)}

  a weighted mean of cosine similarities between audiences, in :math:`[0, 1]`.
* **content affinity** -- the cosine between the user's sound and hashtag profile and
  the creator's. Each of the user's events (except ``unlike``) adds 1 to every sound
  and hashtag of the video; each known video of a creator adds 1 to its own. In
  :math:`[0, 1]`.
* **quality** -- :func:`~reelrank.video_quality` of the creator's pooled statistics
  (the sums of views, completions, likes, shares and comments over the creator's known
  videos), so it is smoothed towards the priors for creators with few views.

A user without engagement in the window (cold start) gets popular creators instead:
:math:`s(c) = w_p \cdot p(c) + (1 - w_p) \cdot q(c)`, where :math:`p(c)` is the creator's
views among the most viewed videos divided by the largest such total.

Everyone's engagement in the window is gathered into an audience graph that all
requests share until it is :attr:`~CreatorRecommenderConfig.graph_refresh_seconds` old.

Users and creators share one id space: a user who publishes does so as the creator
with the same id, so creator ``user_id`` is never recommended to that user. Followed
creators and the ``blocked`` ones passed in are left out too.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, model_validator

from ..exceptions import ConfigError, InvalidInputError
from ..models._base import DomainModel, StrictModel
from ..models._catalog import Video
from ..models._engagement import EngagementEvent, EngagementKind, VideoStats
from ..scoring._config import RankingConfig
from ..stores._protocols import Catalog, EngagementLog, EventStore
from ..validation import MAX_ID, check_aware, check_id, check_limit
from ._quality import video_quality

__all__ = ["CreatorRecommendation", "CreatorRecommender", "CreatorRecommenderConfig"]


class CreatorRecommenderConfig(StrictModel):
    """Weights and limits of creator recommendations (formulas in the module docs)."""

    co_engagement_weight: float = Field(default=0.5, ge=0.0, le=1.0, allow_inf_nan=False)
    """Weight :math:`w_{co}` of co-engagement."""
    content_weight: float = Field(default=0.3, ge=0.0, le=1.0, allow_inf_nan=False)
    """Weight :math:`w_{ct}` of the sound and hashtag affinity."""
    quality_weight: float = Field(default=0.2, ge=0.0, le=1.0, allow_inf_nan=False)
    """Weight :math:`w_q` of the creator's quality."""
    cold_start_popularity_weight: float = Field(default=0.7, ge=0.0, le=1.0, allow_inf_nan=False)
    """Cold start: weight :math:`w_p` of popularity; quality gets the rest."""
    lookback_days: float = Field(default=30.0, gt=0.0, le=3_650.0, allow_inf_nan=False)
    """Engagement older than this many days is ignored."""
    max_user_events: int = Field(default=1_000, ge=1, le=1_000_000)
    """Most of the user's own events read (the newest)."""
    max_window_events: int = Field(default=200_000, ge=1, le=100_000_000)
    """Most events of all users read to measure audiences (the newest)."""
    max_recent_videos: int = Field(default=10_000, ge=0, le=10_000_000)
    """Recently published ready videos read to profile creators' content."""
    graph_refresh_seconds: float = Field(default=300.0, ge=0.0, le=86_400.0, allow_inf_nan=False)
    """The audience graph (everyone's engagement in the lookback window, and the
    creators' sound and hashtag profiles) is built once and reused by every user's
    request until ``now`` is this many seconds away from when it was built; 0 rebuilds
    it on every request."""
    popular_videos: int = Field(default=1_000, ge=1, le=1_000_000)
    """Most viewed videos read for popular (cold-start) candidates."""
    max_limit: int = Field(default=200, ge=1, le=10_000)
    """Largest number of recommendations one call may return."""

    @model_validator(mode="after")
    def _check_weights(self) -> CreatorRecommenderConfig:
        total = self.co_engagement_weight + self.content_weight + self.quality_weight
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ConfigError(
                "weights", total, "co-engagement, content and quality weights must sum to 1"
            )
        return self


class CreatorRecommendation(DomainModel):
    """One recommended creator and how the score came about."""

    creator_id: int = Field(strict=True, ge=1, le=MAX_ID)
    """The recommended creator."""
    score: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)
    """Blended score; recommendations are ordered by it (ties: lower id first)."""
    co_engagement: float = Field(default=0.0, ge=0.0, le=1.0, allow_inf_nan=False)
    """Co-engagement with the creators the user engages with."""
    content_affinity: float = Field(default=0.0, ge=0.0, le=1.0, allow_inf_nan=False)
    """Overlap of the user's sounds and hashtags with the creator's."""
    quality: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)
    """The creator's pooled quality."""
    popularity: float = Field(default=0.0, ge=0.0, le=1.0, allow_inf_nan=False)
    """Cold start only: the creator's share of views among the most viewed videos."""
    cold_start: bool = False
    """Whether the user had no engagement and popular creators were recommended."""


def _profile_keys(video: Video) -> list[str]:
    keys = [f"#{tag}" for tag in video.hashtags]
    if video.sound_id is not None:
        keys.append(f"sound:{video.sound_id}")
    return keys


def _cosine(left: Counter[str], right: Counter[str]) -> float:
    if not left or not right:
        return 0.0
    dot = sum(weight * right[key] for key, weight in left.items() if key in right)
    norms = math.sqrt(sum(w * w for w in left.values()) * sum(w * w for w in right.values()))
    return min(1.0, dot / norms) if norms > 0.0 else 0.0


def _pooled(creator_id: int, stats: Collection[VideoStats]) -> VideoStats:
    views = sum(item.views for item in stats)
    return VideoStats(
        video_id=creator_id,
        views=views,
        completion_sum=min(float(views), sum(item.completion_sum for item in stats)),
        likes=sum(item.likes for item in stats),
        shares=sum(item.shares for item in stats),
        comments=sum(item.comments for item in stats),
    )


def _grouped(keys: NDArray[np.int64], values: NDArray[np.int64]) -> dict[int, frozenset[int]]:
    """``values`` grouped by ``keys``; rows with equal keys must be adjacent."""
    if keys.shape[0] == 0:
        return {}
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    ends = np.append(starts[1:], keys.shape[0])
    return {
        key: frozenset(values[start:end].tolist())
        for key, start, end in zip(
            keys[starts].tolist(), starts.tolist(), ends.tolist(), strict=True
        )
    }


@dataclass(frozen=True, slots=True)
class _AudienceGraph:
    """Who engaged with which creator in the lookback window, and what creators post.

    Built from every user's events at ``built_at``; shared by the requests of all users
    until it is rebuilt.
    """

    built_at: datetime
    videos: dict[int, Video]
    audiences: dict[int, frozenset[int]]
    creators_of_user: dict[int, frozenset[int]]
    creator_profiles: dict[int, Counter[str]]
    videos_by_creator: dict[int, list[int]]


class CreatorRecommender:
    """Recommends creators to follow.

    Reads follows and videos from ``catalog``, aggregates and affinities from
    ``events``, and individual events (the user's own and everyone's in the lookback
    window) from ``log``. Quality uses the priors of ``ranking``.
    """

    def __init__(
        self,
        catalog: Catalog,
        events: EventStore,
        log: EngagementLog,
        *,
        config: CreatorRecommenderConfig | None = None,
        ranking: RankingConfig | None = None,
    ) -> None:
        self._catalog = catalog
        self._events = events
        self._log = log
        self._config = config or CreatorRecommenderConfig()
        self._ranking = ranking or RankingConfig()
        self._graph_lock = threading.Lock()
        self._graph: _AudienceGraph | None = None

    @property
    def config(self) -> CreatorRecommenderConfig:
        """The configuration in use."""
        return self._config

    def recommend(
        self,
        user_id: int,
        *,
        now: datetime,
        limit: int = 20,
        blocked: Collection[int] = (),
    ) -> list[CreatorRecommendation]:
        """Up to ``limit`` creators for the user, best first.

        Never returns the user (as a creator), a followed creator or one in
        ``blocked``. Bad arguments raise :class:`~reelrank.InvalidInputError` naming
        ``user_id``, ``now``, ``limit`` or ``blocked``.
        """
        check_id("user_id", user_id)
        now = check_aware("now", now)
        check_limit("limit", limit)
        if limit > self._config.max_limit:
            raise InvalidInputError("limit", f"must be <= {self._config.max_limit}, got {limit}")
        if isinstance(blocked, str | bytes) or not isinstance(blocked, Collection):
            raise InvalidInputError("blocked", f"must be a collection of ids, got {blocked!r}")
        blocked_ids = {check_id("blocked", creator_id) for creator_id in blocked}
        if limit == 0:
            return []
        excluded = set(self._catalog.followed_creators(user_id)) | blocked_ids | {user_id}
        since = now - timedelta(days=self._config.lookback_days)
        history = self._log.user_events(user_id, since=since, limit=self._config.max_user_events)
        history = [event for event in history if event.occurred_at <= now]
        if not history:
            return self._cold_start(excluded, limit)
        return self._warm(user_id, history, excluded, now, limit)

    def _graph_for(self, now: datetime) -> _AudienceGraph:
        refresh = timedelta(seconds=self._config.graph_refresh_seconds)
        with self._graph_lock:
            graph = self._graph
            if graph is not None and refresh and abs(now - graph.built_at) <= refresh:
                return graph
        graph = self._build_graph(now)
        with self._graph_lock:
            self._graph = graph
        return graph

    def _build_graph(self, now: datetime) -> _AudienceGraph:
        config = self._config
        since = now - timedelta(days=config.lookback_days)
        window = self._log.columns_between(
            since, now + timedelta(microseconds=1), limit=config.max_window_events
        )
        recent = self._catalog.recent_videos(limit=config.max_recent_videos, since=since)
        videos = {video.video_id: video for video in recent}
        event_videos, video_of_event = np.unique(window.video_ids, return_inverse=True)
        videos.update(self._catalog.get_videos(sorted(set(event_videos.tolist()) - videos.keys())))
        # Who engaged with which creator: the distinct (creator, user) pairs of the
        # window, grouped both ways; events on videos the catalog does not know count
        # for no one.
        creator_of_video = np.array(
            [videos[v].creator_id if v in videos else 0 for v in event_videos.tolist()],
            dtype=np.int64,
        )
        pairs = np.unique(
            np.stack([creator_of_video[video_of_event], window.user_ids], axis=1), axis=0
        ).reshape(-1, 2)
        pairs = pairs[pairs[:, 0] != 0]
        audiences = _grouped(pairs[:, 0], pairs[:, 1])
        by_user = pairs[np.lexsort((pairs[:, 0], pairs[:, 1]))]
        creators_of_user = _grouped(by_user[:, 1], by_user[:, 0])
        creator_profiles: dict[int, Counter[str]] = {}
        videos_by_creator: dict[int, list[int]] = {}
        for video in videos.values():
            creator_profiles.setdefault(video.creator_id, Counter()).update(_profile_keys(video))
            videos_by_creator.setdefault(video.creator_id, []).append(video.video_id)
        return _AudienceGraph(
            built_at=now,
            videos=videos,
            audiences=audiences,
            creators_of_user=creators_of_user,
            creator_profiles=creator_profiles,
            videos_by_creator=videos_by_creator,
        )

    def _creator_quality(self, videos_by_creator: dict[int, list[int]]) -> dict[int, float]:
        all_ids = [vid for ids in videos_by_creator.values() for vid in ids]
        stats = self._events.get_stats(all_ids) if all_ids else {}
        return {
            creator_id: video_quality(
                _pooled(creator_id, [stats[vid] for vid in ids]), self._ranking
            )
            for creator_id, ids in videos_by_creator.items()
        }

    def _cold_start(self, excluded: set[int], limit: int) -> list[CreatorRecommendation]:
        popular_ids = self._events.popular_video_ids(limit=self._config.popular_videos)
        videos = self._catalog.get_videos(popular_ids)
        stats = self._events.get_stats(list(videos))
        views: dict[int, int] = {}
        videos_by_creator: dict[int, list[int]] = {}
        for video in videos.values():
            if video.creator_id in excluded:
                continue
            views[video.creator_id] = views.get(video.creator_id, 0) + stats[video.video_id].views
            videos_by_creator.setdefault(video.creator_id, []).append(video.video_id)
        if not views:
            return []
        most = max(views.values())
        quality = self._creator_quality(videos_by_creator)
        weight = self._config.cold_start_popularity_weight
        results = []
        for creator_id, creator_views in views.items():
            popularity = creator_views / most if most > 0 else 0.0
            results.append(
                CreatorRecommendation(
                    creator_id=creator_id,
                    score=min(1.0, weight * popularity + (1.0 - weight) * quality[creator_id]),
                    quality=quality[creator_id],
                    popularity=popularity,
                    cold_start=True,
                )
            )
        results.sort(key=lambda item: (-item.score, item.creator_id))
        return results[:limit]

    def _warm(
        self,
        user_id: int,
        history: list[EngagementEvent],
        excluded: set[int],
        now: datetime,
        limit: int,
    ) -> list[CreatorRecommendation]:
        config = self._config
        graph = self._graph_for(now)
        missing = sorted({e.video_id for e in history} - graph.videos.keys())
        history_videos = dict(graph.videos)
        if missing:
            history_videos.update(self._catalog.get_videos(missing))

        profile: Counter[str] = Counter()
        engaged: set[int] = set()
        for event in history:
            video = history_videos.get(event.video_id)
            if video is None:
                continue
            engaged.add(video.creator_id)
            if event.kind is not EngagementKind.UNLIKE:
                profile.update(_profile_keys(video))

        affinities = self._events.get_affinities(user_id, sorted(engaged))
        total_affinity = sum(affinities.values())
        co_engagement: dict[int, float] = {}
        if total_affinity > 0.0:
            for source in engaged:
                weight = affinities[source]
                source_audience = graph.audiences.get(source, frozenset()) - {user_id}
                if weight <= 0.0 or not source_audience:
                    continue
                overlaps: Counter[int] = Counter()
                for neighbour in source_audience:
                    overlaps.update(graph.creators_of_user[neighbour])
                for target, overlap in overlaps.items():
                    target_size = len(graph.audiences[target]) - (
                        user_id in graph.audiences[target]
                    )
                    similarity = overlap / math.sqrt(len(source_audience) * target_size)
                    co_engagement[target] = co_engagement.get(target, 0.0) + weight * similarity
            co_engagement = {
                creator: min(1.0, value / total_affinity)
                for creator, value in co_engagement.items()
            }

        content = {
            creator: _cosine(profile, creator_profile)
            for creator, creator_profile in graph.creator_profiles.items()
        }
        videos_by_creator = graph.videos_by_creator

        candidates = {
            creator
            for creator in set(co_engagement) | set(content)
            if creator not in excluded
            and (co_engagement.get(creator, 0.0) > 0.0 or content.get(creator, 0.0) > 0.0)
        }
        if not candidates:
            return self._cold_start(excluded, limit)
        quality = self._creator_quality(
            {creator: videos_by_creator.get(creator, []) for creator in candidates}
        )
        results = []
        for creator in candidates:
            co = co_engagement.get(creator, 0.0)
            shared = content.get(creator, 0.0)
            score = (
                config.co_engagement_weight * co
                + config.content_weight * shared
                + config.quality_weight * quality[creator]
            )
            results.append(
                CreatorRecommendation(
                    creator_id=creator,
                    score=min(1.0, score),
                    co_engagement=co,
                    content_affinity=shared,
                    quality=quality[creator],
                )
            )
        results.sort(key=lambda item: (-item.score, item.creator_id))
        return results[:limit]
