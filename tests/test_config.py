from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reelrank import WEIGHT_FIELDS, ConfigError, RankingConfig
from reelrank.models import StrictModel


def test_defaults_match_the_documented_weights() -> None:
    config = RankingConfig()
    assert config.weights == (0.15, 0.40, 0.25, 0.15, 0.05)
    assert config.seen_window_days == 30


@pytest.mark.parametrize("field", WEIGHT_FIELDS)
@pytest.mark.parametrize("value", [-0.1, math.nan, math.inf, 1.5])
def test_bad_weight_names_the_field_and_value(field: str, value: float) -> None:
    with pytest.raises(ConfigError) as info:
        RankingConfig(**{field: value})
    assert info.value.field == field
    assert info.value.value is value or (math.isnan(value) and math.isnan(info.value.value))


def test_weights_must_sum_to_one() -> None:
    with pytest.raises(ConfigError) as info:
        RankingConfig(freshness=0.2)
    assert info.value.field == "weights"


def test_unknown_field_is_rejected() -> None:
    with pytest.raises(ConfigError) as info:
        RankingConfig.from_dict({"freshnes": 0.15})
    assert info.value.field == "freshnes"


@given(
    st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=5, max_size=5).filter(
        lambda ws: sum(ws) > 1e-3
    )
)
def test_any_normalised_non_negative_weights_are_accepted(raw: list[float]) -> None:
    total = sum(raw)
    weights = dict(zip(WEIGHT_FIELDS, (w / total for w in raw), strict=True))
    config = RankingConfig(**weights)
    assert math.isclose(sum(config.weights), 1.0, abs_tol=1e-6)


@given(
    st.sampled_from(WEIGHT_FIELDS),
    st.floats(allow_nan=True, allow_infinity=True).filter(lambda x: not (0.0 <= x <= 1.0)),
)
def test_out_of_range_weight_is_always_rejected(field: str, value: float) -> None:
    with pytest.raises(ConfigError) as info:
        RankingConfig(**{field: value})
    assert info.value.field == field


def test_loads_from_json_toml_and_env(tmp_path) -> None:  # type: ignore[no-untyped-def]
    expected = RankingConfig(completion=0.35, engagement=0.30, max_page_size=50)
    assert RankingConfig.from_json(expected.model_dump_json()) == expected
    toml = tmp_path / "ranking.toml"
    toml.write_text("[tool.reelrank]\ncompletion = 0.35\nengagement = 0.30\nmax_page_size = 50\n")
    assert RankingConfig.from_toml(toml, table="tool.reelrank") == expected
    env = {
        "REELRANK_COMPLETION": "0.35",
        "REELRANK_ENGAGEMENT": "0.30",
        "REELRANK_MAX_PAGE_SIZE": "50",
        "UNRELATED": "x",
    }
    assert RankingConfig.from_env(env) == expected


def test_env_with_unknown_name_is_rejected() -> None:
    with pytest.raises(ConfigError) as info:
        RankingConfig.from_env({"REELRANK_COMPLETON": "0.4"})
    assert info.value.field == "completon"


def test_malformed_json_and_toml_raise_config_error() -> None:
    with pytest.raises(ConfigError):
        RankingConfig.from_json("{")
    with pytest.raises(ConfigError):
        RankingConfig.from_json("[1, 2]")
    with pytest.raises(ConfigError):
        RankingConfig.from_toml("completion = ")


def test_nested_config_errors_name_the_full_path() -> None:
    from reelrank.models import StrictModel

    class Outer(StrictModel):
        ranking: RankingConfig = RankingConfig()
        """A nested config."""

    with pytest.raises(ConfigError) as info:
        Outer.model_validate({"ranking": {"freshness_half_life_hours": -1}})
    assert info.value.field == "ranking.freshness_half_life_hours"
    with pytest.raises(ConfigError) as info:
        Outer(ranking={"completion": 0.9})
    assert info.value.field == "ranking.weights"


# -- every config model follows the same rules ---------------------------------------------


def _exported_config_models() -> list[type[StrictModel]]:
    import reelrank

    modules: list[object] = [reelrank]
    try:
        import reelrank_redis
    except ImportError:  # the adapter is a separate distribution
        pass
    else:
        modules.append(reelrank_redis)
    found: dict[str, type[StrictModel]] = {}
    for module in modules:
        for name in module.__all__:  # type: ignore[attr-defined]
            value = getattr(module, name)
            if isinstance(value, type) and issubclass(value, StrictModel):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return [found[key] for key in sorted(found)]


def _all_config_models() -> list[type[StrictModel]]:
    # Every subclass, exported or not (nested configs count too).
    _exported_config_models()  # imports the adapter too, so its subclasses exist
    pending, seen = list(StrictModel.__subclasses__()), []
    while pending:
        model = pending.pop()
        if model not in seen:
            seen.append(model)
            pending.extend(model.__subclasses__())
    return sorted(seen, key=lambda model: f"{model.__module__}.{model.__qualname__}")


def test_the_exported_configs_are_found() -> None:
    names = {model.__name__ for model in _exported_config_models()}
    assert {"RankingConfig", "TrendingConfig", "SearchConfig", "Experiment"} <= names


@pytest.mark.parametrize("model", _all_config_models(), ids=lambda model: model.__name__)
def test_every_config_forbids_unknown_fields_and_documents_every_field(
    model: type[StrictModel],
) -> None:
    assert model.model_config.get("extra") == "forbid"
    assert model.__doc__, f"{model.__name__} has no docstring"
    undocumented = [
        name for name, field in model.model_fields.items() if not (field.description or "").strip()
    ]
    assert undocumented == [], f"{model.__name__} fields without a docstring: {undocumented}"
