"""Scoring: the ranking config, candidates, the ranker, batch scoring of frames,
the diversity re-rank and experiments.
"""

from __future__ import annotations

from .._public import _public_module
from ._candidates import Candidates
from ._config import RankingConfig
from ._diversity import DiversityRule
from ._experiments import Experiment, Variant, assignment_point
from ._frame import score_frame
from ._ranker import Ranker, Ranking

__all__ = [
    "Candidates",
    "DiversityRule",
    "Experiment",
    "Ranker",
    "Ranking",
    "RankingConfig",
    "Variant",
    "assignment_point",
    "score_frame",
]

_public_module(__name__, __all__, globals())
