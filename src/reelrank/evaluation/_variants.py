"""Reading an online experiment back from the variants recorded on engagement events.

An :class:`~reelrank.EngagementRecorder` with ``variant_for`` stores the user's variant
on every :class:`~reelrank.EngagementEvent`. This module turns such events into one value
per user and metric (the shape of :attr:`Evaluation.per_user`) and compares two variants
with a bootstrap interval, as an offline comparison of configs is compared.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import InvalidInputError
from ..models._engagement import EngagementEvent, EngagementKind
from ._data import EVENT_COLUMNS, check_events, graded_relevance

__all__ = [
    "VARIANT_METRICS",
    "VariantOutcomes",
    "compare_variants",
    "events_frame",
    "unpaired_bootstrap",
    "variant_outcomes",
]

VARIANT_METRICS = ("watches", "completion", "likes", "shares", "comments", "relevant", "gain")
"""The per-user outcomes of :func:`variant_outcomes`, in this order."""


def events_frame(events: Iterable[EngagementEvent]) -> pd.DataFrame:
    """An event log frame of :class:`~reelrank.EngagementEvent` objects, with ``variant``.

    For example the events an :class:`~reelrank.protocols.EngagementLog` returns from
    ``events_between``. Columns: those of an event log (``time`` in epoch seconds) and
    ``variant`` (missing where the event carries none).
    """
    rows = []
    for event in events:
        if not isinstance(event, EngagementEvent):
            raise InvalidInputError("events", f"expected EngagementEvent, got {type(event)!r}")
        rows.append(
            (
                event.user_id,
                event.video_id,
                event.occurred_at.timestamp(),
                event.kind.value,
                np.nan if event.completion is None else event.completion,
                event.variant,
            )
        )
    frame = pd.DataFrame(rows, columns=[*EVENT_COLUMNS, "variant"])
    return frame.astype(
        {"user_id": np.int64, "video_id": np.int64, "time": np.float64, "completion": np.float64}
    )


@dataclass(frozen=True, slots=True)
class VariantOutcomes:
    """The result of :func:`variant_outcomes`: tidy pandas frames."""

    per_user: pd.DataFrame
    """``variant``, ``user_id``, ``metric``, ``value``: each user's outcome, in their variant."""
    summary: pd.DataFrame
    """``variant``, ``metric``, ``value`` (the mean over users), ``users``."""
    mixed_users: int
    """Users left out because their events carry more than one variant."""

    def compare(
        self,
        control: str,
        treatment: str,
        *,
        metrics: Sequence[str] | None = None,
        resamples: int = 2000,
        confidence: float = 0.95,
        seed: int = 0,
    ) -> pd.DataFrame:
        """:func:`unpaired_bootstrap` of ``treatment - control`` over the chosen metrics."""
        return unpaired_bootstrap(
            self.per_user,
            control,
            treatment,
            metrics=metrics,
            resamples=resamples,
            confidence=confidence,
            seed=seed,
        )


def variant_outcomes(events: pd.DataFrame, *, completion_threshold: float = 0.5) -> VariantOutcomes:
    """Each user's outcomes during an experiment, grouped by the variant on their events.

    ``events`` is an event log (see :func:`check_events`) with a ``variant`` column, e.g.
    from :func:`events_frame`. Events without a variant are ignored. A user whose events
    carry two variants (re-assigned mid-experiment, say) is left out and counted in
    :attr:`VariantOutcomes.mixed_users`: attributing them to either would bias both.

    Per user, over their events:

    - ``watches``: watch events; ``completion``: their mean completion (a user without
      a watch has no value for it);
    - ``likes``: likes minus unlikes; ``shares`` and ``comments``: counts;
    - ``relevant``: videos with a grade of at least 1 and ``gain``: the sum of grades,
      both by :func:`graded_relevance` (the judgements of the offline metrics).

    The unit is the user, as in the offline comparison, so heavy users do not dominate.
    """
    if "variant" not in getattr(events, "columns", ()):
        raise InvalidInputError("variant", "required column of the event log is missing")
    checked = check_events(events)
    variant = events["variant"].to_numpy(dtype=object)
    keep = np.array([isinstance(v, str) and v != "" for v in variant], dtype=bool)
    checked = checked[keep].reset_index(drop=True).assign(variant=variant[keep].astype(str))
    per_user_variants = checked.groupby("user_id")["variant"].nunique()
    mixed = per_user_variants.index[per_user_variants.to_numpy() > 1]
    checked = checked[~checked["user_id"].isin(mixed)].reset_index(drop=True)
    if checked.empty:
        raise InvalidInputError("variant", "no event carries a variant")
    kinds = checked["kind"]
    watch = (kinds == EngagementKind.WATCH.value).to_numpy()
    counts = (
        pd.DataFrame(
            {
                "user_id": checked["user_id"],
                "watches": watch.astype(np.float64),
                "completion": np.where(watch, checked["completion"].to_numpy(), np.nan),
                "likes": (kinds == EngagementKind.LIKE.value).to_numpy(np.float64)
                - (kinds == EngagementKind.UNLIKE.value).to_numpy(np.float64),
                "shares": (kinds == EngagementKind.SHARE.value).to_numpy(np.float64),
                "comments": (kinds == EngagementKind.COMMENT.value).to_numpy(np.float64),
            }
        )
        .groupby("user_id")
        .agg(
            watches=("watches", "sum"),
            completion=("completion", "mean"),
            likes=("likes", "sum"),
            shares=("shares", "sum"),
            comments=("comments", "sum"),
        )
    )
    grades = graded_relevance(checked, completion_threshold=completion_threshold)
    by_user = grades.groupby("user_id")["relevance"]
    counts["relevant"] = by_user.size().reindex(counts.index, fill_value=0).astype(np.float64)
    counts["gain"] = by_user.sum().reindex(counts.index, fill_value=0).astype(np.float64)
    counts["variant"] = checked.groupby("user_id")["variant"].first()
    per_user = (
        counts.reset_index()
        .melt(id_vars=["variant", "user_id"], value_vars=list(VARIANT_METRICS), var_name="metric")
        .dropna(subset=["value"])
    )
    # Sorted by variant, then metric in VARIANT_METRICS order, then user.
    per_user["metric"] = pd.Categorical(per_user["metric"], categories=VARIANT_METRICS)
    per_user = per_user.sort_values(["variant", "metric", "user_id"], kind="stable")
    per_user["metric"] = per_user["metric"].astype(str)
    per_user = per_user.reset_index(drop=True)[["variant", "user_id", "metric", "value"]]
    summary = (
        per_user.groupby(["variant", "metric"], sort=False)["value"]
        .agg(value="mean", users="size")
        .reset_index()
    )
    return VariantOutcomes(per_user=per_user, summary=summary, mixed_users=len(mixed))


def unpaired_bootstrap(
    per_user: pd.DataFrame,
    control: str,
    treatment: str,
    *,
    metrics: Sequence[str] | None = None,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    r"""Bootstrap confidence interval of ``mean(treatment) - mean(control)`` per metric.

    For an online experiment, where each user is in one variant: there are no pairs, so
    each variant's users are resampled with replacement separately (``resamples`` times,
    seeded) and the interval is the percentile interval of the differences of the
    resampled means. ``p_value`` is :math:`2 \min(P(\Delta^* \le 0), P(\Delta^* \ge 0))`,
    capped at 1, as in :func:`paired_bootstrap`.

    ``per_user`` has the columns ``variant``, ``user_id``, ``metric`` and ``value``
    (:attr:`VariantOutcomes.per_user`). Returns ``metric``, ``control``, ``treatment``,
    ``control_mean``, ``treatment_mean``, ``difference``, ``ci_low``, ``ci_high``,
    ``p_value``, ``control_users`` and ``treatment_users``.
    """
    if not 0.0 < confidence < 1.0:
        raise InvalidInputError("confidence", f"must lie in (0, 1), got {confidence!r}")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise InvalidInputError("resamples", f"must be a positive integer, got {resamples!r}")
    present = set(per_user["variant"])
    for name in (control, treatment):
        if name not in present:
            raise InvalidInputError("variant", f"no user in variant {name!r}")
    chosen = list(dict.fromkeys(per_user["metric"])) if metrics is None else list(metrics)
    rng = np.random.default_rng(seed)
    tail = (1.0 - confidence) / 2.0
    rows: list[dict[str, Any]] = []
    for metric in chosen:
        of_metric = per_user[per_user["metric"] == metric]
        a = of_metric.loc[of_metric["variant"] == control, "value"].to_numpy(np.float64)
        b = of_metric.loc[of_metric["variant"] == treatment, "value"].to_numpy(np.float64)
        if a.size == 0 or b.size == 0:
            raise InvalidInputError("metric", f"{metric!r} has no value in one of the variants")
        treatment_means = b[rng.integers(0, b.size, size=(resamples, b.size))].mean(axis=1)
        control_means = a[rng.integers(0, a.size, size=(resamples, a.size))].mean(axis=1)
        deltas = treatment_means - control_means
        low, high = np.quantile(deltas, [tail, 1.0 - tail])
        p_value = min(1.0, 2.0 * min(float((deltas <= 0).mean()), float((deltas >= 0).mean())))
        rows.append(
            {
                "metric": metric,
                "control": control,
                "treatment": treatment,
                "control_mean": float(a.mean()),
                "treatment_mean": float(b.mean()),
                "difference": float(b.mean() - a.mean()),
                "ci_low": float(low),
                "ci_high": float(high),
                "p_value": p_value,
                "control_users": int(a.size),
                "treatment_users": int(b.size),
            }
        )
    return pd.DataFrame(rows)


def compare_variants(
    events: pd.DataFrame,
    *,
    control: str,
    treatment: str,
    metric: str | Sequence[str] | None = None,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    completion_threshold: float = 0.5,
) -> pd.DataFrame:
    """:func:`variant_outcomes` of an event log, then :func:`unpaired_bootstrap` of two variants.

    ``metric`` is one of :data:`VARIANT_METRICS`, several, or ``None`` for all.
    """
    chosen = [metric] if isinstance(metric, str) else metric
    for name in chosen or ():
        if name not in VARIANT_METRICS:
            raise InvalidInputError("metric", f"expected one of {VARIANT_METRICS}, got {name!r}")
    outcomes = variant_outcomes(events, completion_threshold=completion_threshold)
    return outcomes.compare(
        control,
        treatment,
        metrics=chosen,
        resamples=resamples,
        confidence=confidence,
        seed=seed,
    )
