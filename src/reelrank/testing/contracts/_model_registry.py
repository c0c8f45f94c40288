"""The contract of :class:`~reelrank.ModelRegistry`."""

from __future__ import annotations

import math

import pytest

from ...exceptions import InvalidInputError, NotFoundError
from ...models._registry import ModelStatus
from ...stores._protocols import ModelRegistry
from ..factories import make_model

__all__ = ["ModelRegistryContract"]


class ModelRegistryContract:
    """Checks a :class:`~reelrank.ModelRegistry`; needs a ``model_registry`` fixture."""

    def test_satisfies_the_protocol(self, model_registry: ModelRegistry) -> None:
        assert isinstance(model_registry, ModelRegistry)

    def test_register_and_get_round_trip(self, model_registry: ModelRegistry) -> None:
        first = make_model(version="v1", metrics={"auc": 0.71})
        second = make_model(version="v2", status=ModelStatus.RETIRED)
        model_registry.register(first)
        model_registry.register(second)
        model_registry.register(make_model(name="other"))
        assert model_registry.get_model("watch-time", "v1") == first
        assert model_registry.list_models("watch-time") == [first, second]
        assert model_registry.list_models("unknown") == []
        assert model_registry.active_model("watch-time") is None

    def test_unknown_version_raises_not_found(self, model_registry: ModelRegistry) -> None:
        with pytest.raises(NotFoundError) as info:
            model_registry.get_model("watch-time", "v9")
        assert info.value.kind == "model"
        with pytest.raises(NotFoundError):
            model_registry.activate("watch-time", "v9")

    def test_duplicate_version_is_refused(self, model_registry: ModelRegistry) -> None:
        model_registry.register(make_model(version="v1", metrics={"auc": 0.5}))
        with pytest.raises(InvalidInputError) as info:
            model_registry.register(make_model(version="v1", metrics={"auc": 0.9}))
        assert info.value.field == "version"
        assert model_registry.get_model("watch-time", "v1").metrics == {"auc": 0.5}

    def test_registering_as_active_is_refused(self, model_registry: ModelRegistry) -> None:
        with pytest.raises(InvalidInputError) as info:
            model_registry.register(make_model(status=ModelStatus.ACTIVE))
        assert info.value.field == "status"
        assert model_registry.list_models("watch-time") == []

    def test_activation_retires_the_previous_active(self, model_registry: ModelRegistry) -> None:
        for version in ("v1", "v2"):
            model_registry.register(make_model(version=version))
        assert model_registry.activate("watch-time", "v1").status is ModelStatus.ACTIVE
        activated = model_registry.activate("watch-time", "v2")
        assert activated.status is ModelStatus.ACTIVE
        assert activated.version == "v2"
        assert model_registry.active_model("watch-time") == activated
        statuses = {m.version: m.status for m in model_registry.list_models("watch-time")}
        assert statuses == {"v1": ModelStatus.RETIRED, "v2": ModelStatus.ACTIVE}
        again = model_registry.activate("watch-time", "v2")
        assert again == activated

    def test_scores_are_read_from_the_active_version(self, model_registry: ModelRegistry) -> None:
        model_registry.register(make_model(version="v1"))
        model_registry.register(make_model(version="v2"))
        model_registry.put_scores("watch-time", "v1", {1: 0.1, 2: 0.2})
        model_registry.put_scores("watch-time", "v2", {1: 0.9})
        assert model_registry.get_scores("watch-time", [1, 2]) == {}
        model_registry.activate("watch-time", "v1")
        assert model_registry.get_scores("watch-time", [1, 2, 3]) == {1: 0.1, 2: 0.2}
        model_registry.activate("watch-time", "v2")
        assert model_registry.get_scores("watch-time", [1, 2, 3]) == {1: 0.9}
        assert model_registry.get_scores("watch-time", [2], version="v1") == {2: 0.2}

    def test_put_scores_replaces_per_video(self, model_registry: ModelRegistry) -> None:
        model_registry.register(make_model(version="v1"))
        model_registry.put_scores("watch-time", "v1", {1: 0.1, 2: 0.2})
        model_registry.put_scores("watch-time", "v1", {2: 0.0, 3: 1.0})
        got = model_registry.get_scores("watch-time", [1, 2, 3], version="v1")
        assert got == {1: 0.1, 2: 0.0, 3: 1.0}

    @pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan, math.inf, "0.5"])
    def test_bad_scores_raise_and_write_nothing(
        self, model_registry: ModelRegistry, bad: object
    ) -> None:
        model_registry.register(make_model(version="v1"))
        with pytest.raises(InvalidInputError) as info:
            model_registry.put_scores("watch-time", "v1", {1: 0.5, 2: bad})  # type: ignore[dict-item]
        assert info.value.field == "scores"
        assert model_registry.get_scores("watch-time", [1, 2], version="v1") == {}

    def test_scores_of_unknown_versions_raise_not_found(
        self, model_registry: ModelRegistry
    ) -> None:
        with pytest.raises(NotFoundError):
            model_registry.put_scores("watch-time", "v1", {1: 0.5})
        with pytest.raises(NotFoundError):
            model_registry.get_scores("watch-time", [1], version="v1")
        assert model_registry.get_scores("watch-time", [1]) == {}
