"""The model registry's value types: a ranking model version and its status."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from pydantic import Field

from ._base import DomainModel, FiniteFloat, Tag, UtcDatetime

__all__ = ["ModelInfo", "ModelStatus"]


class ModelStatus(StrEnum):
    """Lifecycle of a registered deep-learning model version."""

    STAGING = "staging"
    ACTIVE = "active"
    RETIRED = "retired"


class ModelInfo(DomainModel):
    """One version of a deep-learning model that scores videos."""

    name: Tag
    """Model name, for example ``"watch-time"``."""
    version: Tag
    """Version label, unique per name, for example ``"2026-11-29"`` or ``"v3"``."""
    status: ModelStatus = ModelStatus.STAGING
    """Lifecycle status; at most one version per name is ``active``."""
    metrics: Mapping[str, FiniteFloat] = Field(default_factory=dict)
    """Offline evaluation metrics by name (``"auc"``, ``"ndcg@10"``...)."""
    created_at: UtcDatetime
    """When the version was registered (UTC)."""
