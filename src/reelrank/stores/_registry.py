"""The in-memory model registry: versions, their status and their scores."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from ..exceptions import InvalidInputError, NotFoundError
from ..models._registry import ModelInfo, ModelStatus
from ..validation import check_id, check_ids, check_tag, finite_or_raise
from ._common import _check_instance

__all__ = ["InMemoryModelRegistry"]


class InMemoryModelRegistry:
    """A :class:`~reelrank.ModelRegistry` held in dictionaries."""

    bounds_own_calls = True
    """Never waits on I/O, so the feed service calls it on the request thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[str, dict[str, ModelInfo]] = {}
        self._scores: dict[tuple[str, str], dict[int, float]] = {}

    def register(self, model: ModelInfo) -> None:
        """Add a staging or retired version."""
        _check_instance("model", model, ModelInfo)
        if model.status is ModelStatus.ACTIVE:
            raise InvalidInputError("status", "register as staging, then activate")
        with self._lock:
            versions = self._models.setdefault(model.name, {})
            if model.version in versions:
                raise InvalidInputError("version", f"{model.name} {model.version} already exists")
            versions[model.version] = model

    def get_model(self, name: str, version: str) -> ModelInfo:
        """One version; :class:`~reelrank.NotFoundError` if unknown."""
        check_tag("name", name)
        check_tag("version", version)
        with self._lock:
            return self._require(name, version)

    def list_models(self, name: str) -> list[ModelInfo]:
        """Every version of ``name`` in registration order."""
        check_tag("name", name)
        with self._lock:
            return list(self._models.get(name, {}).values())

    def activate(self, name: str, version: str) -> ModelInfo:
        """Make ``version`` active; the previously active version is retired."""
        check_tag("name", name)
        check_tag("version", version)
        with self._lock:
            target = self._require(name, version)
            versions = self._models[name]
            for other_version, other in versions.items():
                if other.status is ModelStatus.ACTIVE and other_version != version:
                    versions[other_version] = other.model_copy(
                        update={"status": ModelStatus.RETIRED}
                    )
            activated = target.model_copy(update={"status": ModelStatus.ACTIVE})
            versions[version] = activated
            return activated

    def active_model(self, name: str) -> ModelInfo | None:
        """The active version of ``name``, if any."""
        check_tag("name", name)
        with self._lock:
            return self._active(name)

    def put_scores(self, name: str, version: str, scores: Mapping[int, float]) -> None:
        """Store per-video scores in ``[0, 1]`` for a registered version."""
        check_tag("name", name)
        check_tag("version", version)
        if not isinstance(scores, Mapping):
            raise InvalidInputError("scores", "must be a mapping of video id to score")
        checked: dict[int, float] = {}
        for video_id, score in scores.items():
            check_id("scores", video_id)
            value = finite_or_raise("scores", score)
            if not 0.0 <= value <= 1.0:
                raise InvalidInputError("scores", f"score of {video_id} must be in [0, 1]")
            checked[video_id] = value
        with self._lock:
            self._require(name, version)
            self._scores.setdefault((name, version), {}).update(checked)

    def get_scores(
        self, name: str, video_ids: Sequence[int], *, version: str | None = None
    ) -> dict[int, float]:
        """Scores of ``version`` (the active one when ``None``); missing ones omitted."""
        check_tag("name", name)
        ids = check_ids("video_ids", video_ids)
        if version is not None:
            check_tag("version", version)
        with self._lock:
            if version is None:
                active = self._active(name)
                if active is None:
                    return {}
                version = active.version
            else:
                self._require(name, version)
            scores = self._scores.get((name, version), {})
            return {vid: scores[vid] for vid in ids if vid in scores}

    def _require(self, name: str, version: str) -> ModelInfo:
        model = self._models.get(name, {}).get(version)
        if model is None:
            raise NotFoundError("model", f"{name}:{version}")
        return model

    def _active(self, name: str) -> ModelInfo | None:
        for model in self._models.get(name, {}).values():
            if model.status is ModelStatus.ACTIVE:
                return model
        return None
