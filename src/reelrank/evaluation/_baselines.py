"""Reference rankings that use no ranking config: most popular first, and random."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import numpy.typing as npt
import pandas as pd

from ..exceptions import InvalidInputError
from ._replay import CandidateState

__all__ = ["popularity_rankings", "random_rankings"]


def popularity_rankings(
    state: CandidateState, users: Iterable[int], *, k: int = 10, name: str = "popularity"
) -> pd.DataFrame:
    """Each user's ``k`` most popular unseen candidates, in the shape :func:`replay` gives.

    Popularity is the number of distinct users with an event on the video before the
    moment of ranking (ties: lower ``video_id`` first); ``score`` is that count. Videos
    the user had any event on are left out, as the evaluation's judgements leave them out.
    """
    popularity = state.interactions.reindex(state.catalog["video_id"], fill_value=0)
    counts = popularity.to_numpy(np.float64)
    order = np.lexsort((state.catalog["video_id"].to_numpy(), -counts)).astype(np.int64)
    return _lists(state, users, k, name, lambda _user: order, counts)


def random_rankings(
    state: CandidateState,
    users: Iterable[int],
    *,
    k: int = 10,
    seed: int = 0,
    name: str = "random",
) -> pd.DataFrame:
    """``k`` unseen candidates per user drawn uniformly at random (seeded); ``score`` is 0."""
    rng = np.random.default_rng(seed)
    size = len(state.catalog)
    return _lists(state, users, k, name, lambda _user: rng.permutation(size), np.zeros(size))


def _lists(
    state: CandidateState,
    users: Iterable[int],
    k: int,
    name: str,
    order_for: Callable[[int], npt.NDArray[np.int64]],
    scores: npt.NDArray[np.float64],
) -> pd.DataFrame:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidInputError("k", f"must be a positive integer, got {k!r}")
    video_ids = state.catalog["video_id"].to_numpy(np.int64)
    creator_ids = state.catalog["creator_id"].to_numpy(np.int64)
    seen_users = state.last_seen["user_id"].to_numpy(np.int64)
    seen_videos = state.last_seen["video_id"].to_numpy(np.int64)
    frames = []
    for user in users:
        order = order_for(int(user))
        excluded = seen_videos[seen_users == int(user)]
        positions = order[~np.isin(video_ids[order], excluded)][:k]
        frames.append(
            pd.DataFrame(
                {
                    "config": name,
                    "user_id": np.int64(user),
                    "rank": np.arange(1, positions.size + 1, dtype=np.int64),
                    "video_id": video_ids[positions],
                    "creator_id": creator_ids[positions],
                    "score": scores[positions].astype(np.float32),
                }
            )
        )
    columns = ["config", "user_id", "rank", "video_id", "creator_id", "score"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
