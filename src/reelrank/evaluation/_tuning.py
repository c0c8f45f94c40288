"""Tuning the five ranking weights on a validation split."""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from ..exceptions import InvalidInputError
from ..models._base import WEIGHT_FIELDS
from ..scoring._config import RankingConfig
from ..scoring._diversity import DiversityRule
from ._data import check_events, graded_relevance, moment_seconds
from ._metrics import ACCURACY_METRICS, accuracy
from ._replay import candidate_state, replay

__all__ = ["TuningResult", "config_to_toml", "tune_weights", "with_weights"]


def with_weights(base: RankingConfig, weights: npt.ArrayLike) -> RankingConfig:
    """``base`` with the five weights (in :data:`WEIGHT_FIELDS` order) replaced.

    The weights are normalized to sum to 1, so any non-negative vector with a positive
    sum is accepted.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (len(WEIGHT_FIELDS),) or not np.isfinite(w).all() or (w < 0).any():
        raise InvalidInputError("weights", f"expected 5 finite non-negative weights, got {w}")
    if w.sum() <= 0:
        raise InvalidInputError("weights", "at least one weight must be positive")
    w = w / w.sum()
    values = [float(x) for x in w[:-1]]
    # The last weight takes the remainder, so the sum is 1 to float precision; clipping
    # removes a negative remainder of the order of 1e-17.
    values.append(max(0.0, 1.0 - sum(values)))
    return RankingConfig.from_dict(
        {**base.model_dump(), **dict(zip(WEIGHT_FIELDS, values, strict=True))}
    )


def config_to_toml(config: RankingConfig) -> str:
    """Every field of ``config`` as TOML text that :meth:`RankingConfig.from_toml` loads."""
    lines = []
    for name, value in config.model_dump().items():
        lines.append(f"{name} = {value!r}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class TuningResult:
    """The outcome of :func:`tune_weights`."""

    config: RankingConfig
    """The best configuration found (the base with tuned weights)."""
    metric: str
    """The metric maximised, e.g. ``"ndcg@10"``."""
    baseline_value: float
    """The metric of the base configuration on the validation split."""
    best_value: float
    """The metric of :attr:`config` on the validation split."""
    trials: pd.DataFrame
    """Every configuration tried: ``phase``, the five weights and ``value``."""


def tune_weights(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    catalog: pd.DataFrame,
    *,
    metric: str = "ndcg",
    k: int = 10,
    trials: int = 40,
    refine_rounds: int = 3,
    seed: int = 0,
    base: RankingConfig | None = None,
    now: dt.datetime | float | None = None,
    snapshot_size: int = 100,
    diversity: DiversityRule | None = None,
    progress: bool | None = None,
) -> TuningResult:
    r"""Search the weight simplex for the weights that maximise ``metric@k``.

    Rankings are replayed at ``now`` from ``train`` (as :func:`evaluate` does) and judged
    against ``validation``. The search is seeded and deterministic:

    1. the base weights, then ``trials`` points drawn uniformly from the simplex
       (:math:`\mathrm{Dirichlet}(1, \dots, 1)`);
    2. coordinate refinement from the best point: for each weight in turn, move
       :math:`\pm\delta` of mass to it from the others (in proportion to them) and keep
       the move if the metric improves; :math:`\delta` starts at 0.1 and halves each of
       ``refine_rounds`` rounds.

    Only the five weights change; every other field comes from ``base``. Report the
    metric of the result on a separate test split: the validation value is optimistic.

    ``progress`` draws a tqdm bar on stderr, one step per configuration (with the best
    value so far): ``True`` always, ``False`` never, ``None`` (the default) only when
    stderr is a terminal. tqdm comes with the ``eval`` extra; the bar draws nothing from
    the random generator, so it never changes the result.
    """
    if metric not in ACCURACY_METRICS:
        raise InvalidInputError("metric", f"expected one of {ACCURACY_METRICS}, got {metric!r}")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 0:
        raise InvalidInputError("trials", f"must be a non-negative integer, got {trials!r}")
    if isinstance(refine_rounds, bool) or not isinstance(refine_rounds, int) or refine_rounds < 0:
        raise InvalidInputError(
            "refine_rounds", f"must be a non-negative integer, got {refine_rounds!r}"
        )
    if progress is not None and not isinstance(progress, bool):
        raise InvalidInputError("progress", f"must be True, False or None, got {progress!r}")
    start = base if base is not None else RankingConfig()
    history = check_events(train)
    if now is None:
        if history.empty:
            raise InvalidInputError("train", "no events: give now explicitly")
        moment = float(history["time"].max()) + 1e-3
    else:
        moment = moment_seconds(now, "now")
    state = candidate_state(history, catalog, moment)
    qrels = graded_relevance(validation)
    seen_pairs = history[["user_id", "video_id"]].drop_duplicates().assign(_seen=True)
    qrels = qrels.merge(seen_pairs, on=["user_id", "video_id"], how="left")
    qrels = qrels[qrels["_seen"].isna()].drop(columns="_seen")
    users = np.unique(qrels["user_id"].to_numpy())
    name = f"{metric}@{k}"

    def measure(config: RankingConfig) -> float:
        lists = replay(
            state,
            {"trial": config},
            users,
            k=k,
            snapshot_size=snapshot_size,
            diversity=diversity,
        )
        per_user = accuracy(lists, qrels, k)
        return float(per_user.loc[per_user["metric"] == name, "value"].mean())

    log: list[dict[str, Any]] = []
    # One step per configuration: the base, the random points, and each refinement move
    # (a move that would leave the simplex is skipped but still counts as its step).
    steps = 1 + trials + refine_rounds * len(WEIGHT_FIELDS) * 2
    with _progress_bar(progress, steps, name) as advance:
        search = _Search(start, measure, log, advance)
        baseline_value = search.try_weights(np.asarray(start.weights), "base")
        rng = np.random.default_rng(seed)
        for point in rng.dirichlet(np.ones(len(WEIGHT_FIELDS)), size=trials):
            search.try_weights(point, "random")
        step = 0.1
        for _ in range(refine_rounds):
            for index in range(len(WEIGHT_FIELDS)):
                for sign in (1.0, -1.0):
                    moved = _shift(search.best_weights, index, sign * step)
                    if moved is None:
                        advance(None)
                    else:
                        search.try_weights(moved, "refine")
            step /= 2.0
    return TuningResult(
        config=search.best_config,
        metric=name,
        baseline_value=baseline_value,
        best_value=search.best_value,
        trials=pd.DataFrame(log),
    )


_Advance = Callable[[float | None], None]
"""Moves a progress bar one step on, showing the best value so far (``None``: unchanged)."""


@contextmanager
def _progress_bar(progress: bool | None, steps: int, metric: str) -> Iterator[_Advance]:
    """A tqdm bar of ``steps`` steps on stderr, as :func:`tune_weights` describes it."""
    if progress is False:
        yield lambda best: None
        return
    try:
        tqdm = importlib.import_module("tqdm")
    except ImportError as exc:
        if progress is None:  # not asked for explicitly: go without
            yield lambda best: None
            return
        raise ImportError(
            "the tuning progress bar needs tqdm, which is not installed; install the eval "
            'extra: pip install "reelrank[eval]"'
        ) from exc
    # disable=None is tqdm's own test: draw only when the output stream is a terminal.
    bar = tqdm.tqdm(
        total=steps, desc="tuning", unit="config", disable=None if progress is None else False
    )

    def advance(best: float | None) -> None:
        if best is not None:
            bar.set_postfix({f"best {metric}": f"{best:.4f}"}, refresh=False)
        bar.update(1)

    try:
        yield advance
    finally:
        bar.close()


class _Search:
    """Keeps the best configuration seen and a log of every one tried."""

    def __init__(
        self,
        base: RankingConfig,
        measure: Callable[[RankingConfig], float],
        log: list[dict[str, Any]],
        advance: _Advance,
    ) -> None:
        self._base = base
        self._measure = measure
        self._log = log
        self._advance = advance
        self.best_config = base
        self.best_weights = np.asarray(base.weights, dtype=np.float64)
        self.best_value = -np.inf

    def try_weights(self, weights: npt.NDArray[np.float64], phase: str) -> float:
        config = with_weights(self._base, weights)
        value = self._measure(config)
        self._log.append(
            {
                "phase": phase,
                **dict(zip(WEIGHT_FIELDS, config.weights, strict=True)),
                "value": value,
            }
        )
        if value > self.best_value:  # strictly better: ties keep the earlier point
            self.best_config = config
            self.best_weights = np.asarray(config.weights, dtype=np.float64)
            self.best_value = value
        self._advance(self.best_value)
        return value


def _shift(
    weights: npt.NDArray[np.float64], index: int, delta: float
) -> npt.NDArray[np.float64] | None:
    """Move ``delta`` of mass to weight ``index`` from the others, pro rata; None if stuck."""
    target = weights[index] + delta
    if not 0.0 <= target <= 1.0:
        return None
    others = np.delete(weights, index)
    if others.sum() <= 0.0:
        return None
    moved = np.insert(others / others.sum() * (1.0 - target), index, target)
    if np.allclose(moved, weights):
        return None
    return moved
