"""Ranking configuration: signal weights and the parameters of each signal."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from pydantic import Field, ValidationError, model_validator

from ..exceptions import ConfigError
from ..models._base import WEIGHT_FIELDS, StrictModel, config_error_from, load_toml_table

__all__ = ["RankingConfig"]

_WEIGHT_SUM_TOLERANCE = 1e-6


class RankingConfig(StrictModel):
    """How candidates are scored.

    The score is ``sum(weight_i * signal_i)`` over five signals that each lie in
    ``[0, 1]``; the weights are non-negative and sum to 1, so the score lies in
    ``[0, 1]`` too. See *How scoring works* in the docs for every formula.
    """

    freshness: float = 0.15
    """Weight of the freshness signal (exponential decay with age)."""
    completion: float = 0.40
    """Weight of the smoothed mean watch completion."""
    engagement: float = 0.25
    """Weight of the smoothed, saturated engagement rate."""
    affinity: float = 0.15
    """Weight of the user's affinity with the video's creator."""
    deep_learning: float = 0.05
    """Weight of the externally supplied model score."""

    freshness_half_life_hours: float = Field(default=48.0, gt=0.0, allow_inf_nan=False)
    """Age in hours at which freshness has decayed to one half."""

    completion_prior_mean: float = Field(default=0.5, ge=0.0, le=1.0)
    """Completion assumed for a video nobody has watched yet."""
    completion_prior_views: float = Field(default=20.0, ge=0.0, allow_inf_nan=False)
    """Pseudo-views of the completion prior: how many real views it takes to outweigh it."""

    like_weight: float = Field(default=1.0, ge=0.0, allow_inf_nan=False)
    """Weight of one like in the engagement rate."""
    share_weight: float = Field(default=3.0, ge=0.0, allow_inf_nan=False)
    """Weight of one share in the engagement rate."""
    comment_weight: float = Field(default=2.0, ge=0.0, allow_inf_nan=False)
    """Weight of one comment in the engagement rate."""
    engagement_prior_rate: float = Field(default=0.05, ge=0.0, allow_inf_nan=False)
    """Weighted engagement per view assumed for a video nobody has watched yet."""
    engagement_prior_views: float = Field(default=50.0, ge=0.0, allow_inf_nan=False)
    """Pseudo-views of the engagement prior."""
    engagement_half_saturation: float = Field(default=0.1, gt=0.0, allow_inf_nan=False)
    """Weighted engagement rate that maps to a signal of 0.5 (``rate / (rate + this)``)."""

    dl_neutral_score: float = Field(default=0.5, ge=0.0, le=1.0)
    """Deep-learning score used for a candidate that has none."""

    seen_window_days: float = Field(default=30.0, gt=0.0, allow_inf_nan=False)
    """A video seen within this many days is never shown to the user again."""

    max_page_size: int = Field(default=100, ge=1, le=10_000)
    """Largest number of items one feed page may hold."""

    @model_validator(mode="after")
    def _check_weights(self) -> Self:
        total = 0.0
        for name in WEIGHT_FIELDS:
            value = getattr(self, name)
            if not math.isfinite(value) or not 0.0 <= value <= 1.0:
                raise ConfigError(name, value, "weight must be finite and in [0, 1]")
            total += value
        if abs(total - 1.0) > _WEIGHT_SUM_TOLERANCE:
            raise ConfigError(
                "weights", total, f"weights must sum to 1 within {_WEIGHT_SUM_TOLERANCE}"
            )
        return self

    @property
    def weights(self) -> tuple[float, float, float, float, float]:
        """The five weights in :data:`WEIGHT_FIELDS` order."""
        return (self.freshness, self.completion, self.engagement, self.affinity, self.deep_learning)

    @property
    def seen_window_seconds(self) -> float:
        """The seen window in seconds."""
        return self.seen_window_days * 86_400.0

    # -- loaders -----------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build a config from a mapping; raises :class:`ConfigError` on bad values."""
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise config_error_from(exc) from exc

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        """Build a config from a JSON object."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError("<json>", None, f"not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError("<json>", data, "expected a JSON object")
        return cls.from_dict(data)

    @classmethod
    def from_toml(cls, source: str | Path, *, table: str | None = None) -> Self:
        """Build a config from TOML text or a ``.toml`` file path.

        ``table`` selects a dotted sub-table, for example ``"tool.reelrank"``.
        """
        return cls.from_dict(load_toml_table(source, table))

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, prefix: str = "REELRANK_"
    ) -> Self:
        """Build a config from environment variables such as ``REELRANK_COMPLETION=0.5``.

        Variable names are the field names upper-cased after ``prefix``; a variable
        with the prefix that names no field is an error, like an unknown key.
        """
        env = os.environ if environ is None else environ
        data: dict[str, str] = {}
        for key, value in env.items():
            if key.startswith(prefix):
                data[key[len(prefix) :].lower()] = value
        return cls.from_dict(data)
