"""Replaying an event log: each user's candidates as of a moment, ranked like the feed.

The ranking path is the feed service's: :meth:`Ranker.rank` over the candidates with the
user's affinities and the seen filter, keeping the ``snapshot_size`` best, then
:meth:`DiversityRule.order` over them. Only the first ``k`` are kept for evaluation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from ..exceptions import InvalidInputError
from ..models._engagement import AFFINITY_CREDITS, AFFINITY_PRIOR_CREDIT, EngagementKind
from ..scoring import Candidates, Ranker
from ..scoring._config import RankingConfig
from ..scoring._diversity import DiversityRule
from ._data import check_catalog, check_events, moment_seconds

__all__ = ["CandidateState", "candidate_state", "replay"]


@dataclass(frozen=True, slots=True)
class CandidateState:
    """What the feed would know at ``now``: candidates, affinities and seen videos."""

    now: float
    """The moment, epoch seconds."""
    candidates: Candidates
    """Every catalog video published at or before ``now``, with its counters then."""
    catalog: pd.DataFrame
    """The catalog rows of :attr:`candidates`, in the same order."""
    affinity: Mapping[int, Mapping[int, float]]
    """``user_id -> {creator_id: affinity}`` from the events before ``now``."""
    last_seen: pd.DataFrame
    """``user_id``, ``video_id``, ``time``: each user's latest event on each video."""
    interactions: pd.Series[Any]
    """Distinct users with an event on each video, by ``video_id`` (for novelty)."""
    users: int
    """Distinct users with an event before ``now``."""


def candidate_state(
    history: pd.DataFrame, catalog: pd.DataFrame, now: dt.datetime | float
) -> CandidateState:
    """Rebuild the counters, affinities and seen sets from the events before ``now``.

    Counters per video: ``views`` is the number of watches, ``completion_sum`` the sum of
    their completions, ``likes`` the likes minus unlikes (at least 0), ``shares`` and
    ``comments`` the counts. Affinity per (user, creator) is
    :func:`~reelrank.affinity` of the credits :func:`~reelrank.affinity_credit` gives
    each event. Events at or after ``now`` are ignored.
    """
    moment = moment_seconds(now, "now")
    events = check_events(history)
    events = events[events["time"].to_numpy() < moment]
    videos = check_catalog(catalog)
    videos = videos[videos["published_at"].to_numpy() <= moment].reset_index(drop=True)
    kinds = events["kind"]
    watch = (kinds == EngagementKind.WATCH.value).to_numpy()
    counters = (
        pd.DataFrame(
            {
                "video_id": events["video_id"].to_numpy(),
                "views": watch.astype(np.float64),
                "completion_sum": np.where(watch, events["completion"].to_numpy(), 0.0),
                "likes": (kinds == "like").to_numpy(np.float64)
                - (kinds == "unlike").to_numpy(np.float64),
                "shares": (kinds == "share").to_numpy(np.float64),
                "comments": (kinds == "comment").to_numpy(np.float64),
            }
        )
        .groupby("video_id")
        .sum()
    )
    stats = counters.reindex(videos["video_id"].to_numpy(), fill_value=0.0)
    dl_score = videos["dl_score"].to_numpy() if "dl_score" in videos.columns else None
    candidates = Candidates.from_arrays(
        video_id=videos["video_id"].to_numpy(),
        creator_id=videos["creator_id"].to_numpy(),
        published_at=videos["published_at"].to_numpy(),
        views=stats["views"].to_numpy(),
        completion_sum=stats["completion_sum"].to_numpy(),
        likes=np.maximum(stats["likes"].to_numpy(), 0.0),
        shares=stats["shares"].to_numpy(),
        comments=stats["comments"].to_numpy(),
        dl_score=dl_score,
    )
    return CandidateState(
        now=moment,
        candidates=candidates,
        catalog=videos,
        affinity=_affinities(events, check_catalog(catalog)),
        last_seen=events.groupby(["user_id", "video_id"])["time"].max().reset_index(),
        interactions=events.groupby("video_id")["user_id"].nunique(),
        users=int(events["user_id"].nunique()),
    )


def _affinities(events: pd.DataFrame, catalog: pd.DataFrame) -> dict[int, dict[int, float]]:
    credit_of = {kind.value: credit for kind, credit in AFFINITY_CREDITS.items()}
    kinds = events["kind"].to_numpy()
    credit = np.where(
        kinds == EngagementKind.WATCH.value,
        events["completion"].to_numpy(),
        np.array([credit_of.get(kind, 0.0) for kind in kinds], dtype=np.float64),
    )
    creators = catalog.set_index("video_id")["creator_id"]
    with_creator = events.assign(
        credit=credit, creator_id=creators.reindex(events["video_id"].to_numpy()).to_numpy()
    ).dropna(subset=["creator_id"])
    per_pair = with_creator.groupby(["user_id", "creator_id"])["credit"].sum().clip(lower=0.0)
    totals = per_pair.groupby(level="user_id").sum()
    # affinity(own, total) = own / (max(total, own) + prior); total >= own holds here.
    values = per_pair / (totals.reindex(per_pair.index, level="user_id") + AFFINITY_PRIOR_CREDIT)
    result: dict[int, dict[int, float]] = {}
    users = values.index.get_level_values("user_id").to_numpy(np.int64)
    creator_ids = values.index.get_level_values("creator_id").to_numpy(np.int64)
    for user, creator, value in zip(users, creator_ids, values.to_numpy(), strict=True):
        result.setdefault(int(user), {})[int(creator)] = float(value)
    return result


def _seen(state: CandidateState, config: RankingConfig) -> dict[int, npt.NDArray[np.int64]]:
    recent = state.last_seen[
        state.last_seen["time"].to_numpy() >= state.now - config.seen_window_seconds
    ]
    users = recent["user_id"].to_numpy(np.int64)
    order = np.argsort(users, kind="stable")
    keys, starts = np.unique(users[order], return_index=True)
    groups = np.split(recent["video_id"].to_numpy(np.int64)[order], starts[1:])
    return {int(user): videos for user, videos in zip(keys, groups, strict=True)}


def replay(
    state: CandidateState,
    configs: Mapping[str, RankingConfig],
    users: Iterable[int],
    *,
    k: int = 10,
    snapshot_size: int = 100,
    diversity: DiversityRule | None = None,
) -> pd.DataFrame:
    """Rank each user's candidates with each config, as the feed service would.

    Args:
        state: the candidates and user state at the moment of ranking
            (:func:`candidate_state`).
        configs: the configurations to compare, by name.
        users: the users to rank for; a user without history gets no affinity.
        k: list length kept per user and config.
        snapshot_size: how many items :meth:`Ranker.rank` keeps before the diversity
            re-rank, like :attr:`FeedServiceConfig.snapshot_size`.
        diversity: the re-rank; the feed's default rule when ``None``.

    Returns:
        A tidy frame with the columns ``config``, ``user_id``, ``rank`` (from 1),
        ``video_id``, ``creator_id`` and ``score``.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidInputError("k", f"must be a positive integer, got {k!r}")
    if snapshot_size < k:
        raise InvalidInputError("snapshot_size", f"must be at least k = {k}")
    if not configs:
        raise InvalidInputError("configs", "give at least one configuration")
    rule = DiversityRule() if diversity is None else diversity
    creators = state.catalog["creator_id"].to_numpy(np.int64)
    sounds = (
        state.catalog["sound_id"].to_numpy(np.int64)
        if "sound_id" in state.catalog.columns
        else np.full(len(creators), -1, np.int64)
    )
    user_list = [int(user) for user in users]
    # Arrays are collected per list and joined once: a frame per user would cost more
    # than the ranking itself.
    names: list[str] = []
    lengths: list[int] = []
    user_ids: list[int] = []
    video_ids: list[npt.NDArray[np.int64]] = []
    creator_ids: list[npt.NDArray[np.int64]] = []
    scores: list[npt.NDArray[np.float32]] = []
    for name, config in configs.items():
        ranker = Ranker(config)
        seen = _seen(state, config)
        for user in user_list:
            ranking = ranker.rank(
                state.candidates,
                k=snapshot_size,
                now=state.now,
                affinity=state.affinity.get(user),
                seen=seen.get(user),
            )
            positions = ranking.positions
            order = rule.order(creators[positions], sounds[positions])[:k]
            names.append(name)
            lengths.append(len(order))
            user_ids.append(user)
            video_ids.append(ranking.video_ids[order])
            creator_ids.append(creators[positions[order]])
            scores.append(ranking.scores[order])
    counts = np.asarray(lengths, dtype=np.int64)
    total = int(counts.sum())
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return pd.DataFrame(
        {
            "config": np.repeat(np.asarray(names, dtype=object), counts),
            "user_id": np.repeat(np.asarray(user_ids, dtype=np.int64), counts),
            "rank": np.arange(total, dtype=np.int64) - starts + 1,
            "video_id": _joined(video_ids, np.int64),
            "creator_id": _joined(creator_ids, np.int64),
            "score": _joined(scores, np.float32),
        }
    )


def _joined(arrays: list[npt.NDArray[Any]], dtype: type[np.generic]) -> npt.NDArray[Any]:
    return np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.empty(0, dtype)
