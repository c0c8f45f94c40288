"""Video quality: a video's smoothed completion and engagement, as search and creator
recommendations blend it with their own relevance.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..models._engagement import VideoStats
from ..scoring._config import RankingConfig

__all__ = ["video_quality"]


def video_quality(stats: VideoStats, config: RankingConfig | None = None) -> float:
    r"""Quality of a video in ``[0, 1]``: the mean of its smoothed completion and
    engagement signals, with the priors of ``config`` (the ranking config).

    .. math::

        c = \min\left(1, \frac{S + \mu_c V_c}{v + V_c}\right), \quad
        r = \frac{w_l l + w_s s + w_m m + \rho V_e}{v + V_e}, \quad
        q = \frac{1}{2}\left(c + \frac{r}{r + h}\right)

    with ``v`` views, ``S`` the completion sum, ``l, s, m`` likes, shares and
    comments, and the priors (:math:`\mu_c, V_c, \rho, V_e`), weights and half
    saturation ``h`` of :class:`~reelrank.RankingConfig`. Before any view (and with
    zero prior views) the priors themselves are used.
    """
    config = config or RankingConfig()
    completion_total = stats.views + config.completion_prior_views
    completion = (
        min(
            1.0,
            (stats.completion_sum + config.completion_prior_mean * config.completion_prior_views)
            / completion_total,
        )
        if completion_total > 0
        else config.completion_prior_mean
    )
    engagement_total = stats.views + config.engagement_prior_views
    weighted = (
        config.like_weight * stats.likes
        + config.share_weight * stats.shares
        + config.comment_weight * stats.comments
    )
    rate = (
        (weighted + config.engagement_prior_rate * config.engagement_prior_views) / engagement_total
        if engagement_total > 0
        else config.engagement_prior_rate
    )
    engagement = rate / (rate + config.engagement_half_saturation)
    return 0.5 * (completion + engagement)


def _qualities(counts: NDArray[np.float64], config: RankingConfig) -> NDArray[np.float64]:
    """:func:`video_quality` of each row of ``counts`` (views, completion sum, likes,
    shares, comments, as floats), the same arithmetic in the same order per row, so
    each value equals the function's."""
    views, completion_sum, likes, shares, comments = counts.T
    completion_total = views + config.completion_prior_views
    completion = np.full(len(counts), config.completion_prior_mean)
    np.divide(
        completion_sum + config.completion_prior_mean * config.completion_prior_views,
        completion_total,
        out=completion,
        where=completion_total > 0,
    )
    np.minimum(completion, 1.0, out=completion)
    engagement_total = views + config.engagement_prior_views
    weighted = (
        config.like_weight * likes + config.share_weight * shares + config.comment_weight * comments
    )
    rate = np.full(len(counts), config.engagement_prior_rate)
    np.divide(
        weighted + config.engagement_prior_rate * config.engagement_prior_views,
        engagement_total,
        out=rate,
        where=engagement_total > 0,
    )
    engagement = rate / (rate + config.engagement_half_saturation)
    result: NDArray[np.float64] = 0.5 * (completion + engagement)
    return result
