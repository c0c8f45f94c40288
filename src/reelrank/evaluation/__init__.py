"""Offline evaluation: replaying event logs, ranking metrics, splits and weight tuning.

Needs the ``eval`` extra (pandas, pyarrow, ranx, matplotlib); every metric of ranking
accuracy is computed by ranx. See *Offline evaluation* in the docs for the methods and
formulas.
"""

from __future__ import annotations

try:  # the eval extra; a clear message instead of a bare ModuleNotFoundError
    import pandas as _pandas  # noqa: F401
    import ranx as _ranx  # type: ignore[import-untyped]  # noqa: F401
except ImportError as exc:
    raise ImportError(
        f"reelrank.evaluation needs {exc.name}, which is not installed; install the eval "
        'extra: pip install "reelrank[eval]"'
    ) from exc

from .._public import _public_module
from ._baselines import popularity_rankings, random_rankings
from ._data import check_catalog, check_events, graded_relevance, hold_last_split, time_split
from ._metrics import (
    ACCURACY_METRICS,
    Evaluation,
    accuracy,
    beyond_accuracy,
    evaluate,
    gini,
    paired_bootstrap,
)
from ._movielens import MovieLens, load_movielens_100k
from ._replay import CandidateState, candidate_state, replay
from ._synthetic import SyntheticData, synthetic_events
from ._tuning import TuningResult, config_to_toml, tune_weights, with_weights
from ._variants import (
    VARIANT_METRICS,
    VariantOutcomes,
    compare_variants,
    events_frame,
    unpaired_bootstrap,
    variant_outcomes,
)

__all__ = [
    "ACCURACY_METRICS",
    "CandidateState",
    "Evaluation",
    "MovieLens",
    "SyntheticData",
    "TuningResult",
    "VARIANT_METRICS",
    "VariantOutcomes",
    "accuracy",
    "beyond_accuracy",
    "candidate_state",
    "check_catalog",
    "check_events",
    "compare_variants",
    "config_to_toml",
    "evaluate",
    "events_frame",
    "gini",
    "graded_relevance",
    "hold_last_split",
    "load_movielens_100k",
    "paired_bootstrap",
    "popularity_rankings",
    "random_rankings",
    "replay",
    "synthetic_events",
    "time_split",
    "tune_weights",
    "unpaired_bootstrap",
    "variant_outcomes",
    "with_weights",
]

_public_module(__name__, __all__, globals())
