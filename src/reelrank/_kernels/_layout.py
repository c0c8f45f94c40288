"""How candidates and scoring parameters are laid out for the scoring kernels.

The scoring wrapper (:mod:`reelrank.scoring._ranker`) packs its arguments by these
constants and the kernels in :mod:`._rank` read them by the same constants, so this
module is the whole contract between the two.

Candidates arrive as one C-contiguous ``float32`` block of shape ``(N_ROWS, n)``, one
row per feature (the ``ROW_*`` constants), so a kernel call passes one array for all
features and the hot loops stream a few contiguous rows. The scoring parameters arrive
as one ``float32`` vector of length ``N_PARAMS`` laid out by the ``P_*`` constants.
"""

from __future__ import annotations

__all__ = [
    "N_PARAMS",
    "N_ROWS",
    "P_COMMENT_WEIGHT",
    "P_COMPLETION_PRIOR_MASS",
    "P_COMPLETION_PRIOR_MEAN",
    "P_COMPLETION_PRIOR_VIEWS",
    "P_DL_NEUTRAL",
    "P_ENGAGEMENT_HALF_SATURATION",
    "P_ENGAGEMENT_PRIOR_MASS",
    "P_ENGAGEMENT_PRIOR_RATE",
    "P_ENGAGEMENT_PRIOR_VIEWS",
    "P_INV_HALF_LIFE_HOURS",
    "P_LIKE_WEIGHT",
    "P_SHARE_WEIGHT",
    "P_W_AFFINITY",
    "P_W_COMPLETION",
    "P_W_DEEP_LEARNING",
    "P_W_ENGAGEMENT",
    "P_W_FRESHNESS",
    "ROW_COMMENTS",
    "ROW_COMPLETION",
    "ROW_DL",
    "ROW_LIKES",
    "ROW_PUBLISHED_HOURS",
    "ROW_SHARES",
    "ROW_VIEWS",
]


# Rows of the feature block.
ROW_PUBLISHED_HOURS = 0
"""Publish time in hours relative to the block's own epoch (see ``Candidates``)."""

ROW_VIEWS = 1

ROW_COMPLETION = 2
"""Completion sum, already clipped to views."""

ROW_LIKES = 3

ROW_SHARES = 4

ROW_COMMENTS = 5

ROW_DL = 6
"""Model score in ``[0, 1]``; NaN when missing."""

N_ROWS = 7


# Slots of the parameter vector.
P_W_FRESHNESS = 0

P_W_COMPLETION = 1

P_W_ENGAGEMENT = 2

P_W_AFFINITY = 3

P_W_DEEP_LEARNING = 4

P_INV_HALF_LIFE_HOURS = 5

P_COMPLETION_PRIOR_MASS = 6

P_COMPLETION_PRIOR_VIEWS = 7

P_COMPLETION_PRIOR_MEAN = 8

P_LIKE_WEIGHT = 9

P_SHARE_WEIGHT = 10

P_COMMENT_WEIGHT = 11

P_ENGAGEMENT_PRIOR_MASS = 12

P_ENGAGEMENT_PRIOR_VIEWS = 13

P_ENGAGEMENT_PRIOR_RATE = 14

P_ENGAGEMENT_HALF_SATURATION = 15

P_DL_NEUTRAL = 16

N_PARAMS = 17
