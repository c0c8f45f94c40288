"""A synthetic event log with a known ground truth, for testing evaluation and tuning."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from ..exceptions import InvalidInputError

__all__ = ["SyntheticData", "synthetic_events"]

_DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class SyntheticData:
    """A generated event log, its catalog and the latent truth behind them."""

    events: pd.DataFrame
    """``user_id``, ``video_id``, ``time`` (epoch seconds), ``kind``, ``completion``."""
    catalog: pd.DataFrame
    """``video_id``, ``creator_id``, ``published_at``, ``sound_id``, ``hashtag``,
    ``dl_score`` (a noisy view of the quality) and ``quality``."""
    creator_preference: npt.NDArray[np.float64]
    """``(users, creators)``: each user's latent taste for each creator (rows sum to 1)."""
    hashtag_preference: npt.NDArray[np.float64]
    """``(users, hashtags)``: each user's latent taste for each hashtag (rows sum to 1)."""
    start: float
    """Epoch seconds of the first event."""
    end: float
    """Epoch seconds after the last event."""


def synthetic_events(
    *,
    users: int = 300,
    creators: int = 40,
    videos: int = 1200,
    hashtags: int = 12,
    days: float = 14.0,
    seed: int = 0,
    start: float = 1_767_225_600.0,
) -> SyntheticData:
    r"""Generate watches, likes, comments and shares from latent tastes.

    The model:

    - Each user has a taste for creators (Dirichlet, concentration 0.2: a few favourites)
      and for hashtags (Dirichlet, 0.5); each video has a creator, a hashtag and a
      quality :math:`q \sim \mathrm{Beta}(2, 2)`. A fifth of the videos exist before the
      log starts, the rest arrive uniformly over it.
    - Activity is heavy-tailed: a user's number of sessions is
      :math:`\lceil \mathrm{LogNormal}(1.5, 1) \rceil`, capped at 200.
    - A session at a uniform time shows the user up to 30 videos published in the last
      three days, and the user watches the one of highest appeal plus Gumbel noise, where
      :math:`\mathrm{appeal}(u, v) = 0.5\,q_v + 2\,C_{u,c(v)} + H_{u,h(v)}` with
      :math:`C, H` the taste matrices scaled so each row's largest entry is 1.
    - Completion is :math:`\mathrm{Beta}` with mean
      :math:`\sigma(3\,(\mathrm{appeal} - 1.2))`; a like follows with probability
      :math:`0.6 c`, a comment :math:`0.2 c`, a share :math:`0.15 c\,q`.

    So taste (learnt by the ranker as affinity from history) and quality (seen through
    completion and engagement) both predict what a user engages with next.
    """
    for name, value in (("users", users), ("creators", creators), ("videos", videos)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidInputError(name, f"must be a positive integer, got {value!r}")
    if hashtags < 1 or days <= 0:
        raise InvalidInputError("days", "days and hashtags must be positive")
    rng = np.random.default_rng(seed)
    end = start + days * _DAY
    creator_taste = rng.dirichlet(np.full(creators, 0.2), size=users)
    hashtag_taste = rng.dirichlet(np.full(hashtags, 0.5), size=users)
    creator_scaled = creator_taste / creator_taste.max(axis=1, keepdims=True)
    hashtag_scaled = hashtag_taste / hashtag_taste.max(axis=1, keepdims=True)
    video_creator = rng.integers(0, creators, videos)
    video_hashtag = rng.integers(0, hashtags, videos)
    quality = rng.beta(2.0, 2.0, videos)
    published = np.where(
        rng.random(videos) < 0.2,
        start - rng.uniform(0.0, 3.0, videos) * _DAY,
        rng.uniform(start, end, videos),
    )
    sessions = np.minimum(np.ceil(rng.lognormal(1.5, 1.0, users)), 200).astype(np.int64)
    rows: list[tuple[int, int, float, str, float]] = []
    for user in range(users):
        for moment in np.sort(rng.uniform(start, end, sessions[user])).tolist():
            pool = np.flatnonzero((published <= moment) & (published > moment - 3 * _DAY))
            if pool.size == 0:
                continue
            shown = rng.choice(pool, size=min(30, pool.size), replace=False)
            appeal = (
                0.5 * quality[shown]
                + 2.0 * creator_scaled[user, video_creator[shown]]
                + hashtag_scaled[user, video_hashtag[shown]]
            )
            pick = int(np.argmax(appeal + rng.gumbel(0.0, 0.5, shown.size)))
            video, liking = int(shown[pick]), float(appeal[pick])
            mean = 1.0 / (1.0 + np.exp(-3.0 * (liking - 1.2)))
            completion = float(rng.beta(8.0 * mean + 0.1, 8.0 * (1.0 - mean) + 0.1))
            rows.append((user, video, moment, "watch", completion))
            for kind, chance, delay in (
                ("like", 0.6 * completion, 5.0),
                ("comment", 0.2 * completion, 10.0),
                ("share", 0.15 * completion * quality[video], 15.0),
            ):
                if rng.random() < chance:
                    rows.append((user, video, moment + delay, kind, float("nan")))
    events = pd.DataFrame(rows, columns=["user_id", "video_id", "time", "kind", "completion"])
    events = events.sort_values("time", kind="stable").reset_index(drop=True)
    catalog = pd.DataFrame(
        {
            "video_id": np.arange(videos, dtype=np.int64),
            "creator_id": video_creator.astype(np.int64),
            "published_at": published,
            "sound_id": rng.integers(0, 50, videos),
            "hashtag": video_hashtag,
            "dl_score": np.clip(quality + rng.normal(0.0, 0.15, videos), 0.0, 1.0),
            "quality": quality,
        }
    )
    return SyntheticData(
        events=events,
        catalog=catalog,
        creator_preference=creator_taste,
        hashtag_preference=hashtag_taste,
        start=start,
        end=end,
    )
