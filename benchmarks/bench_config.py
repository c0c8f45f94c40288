"""Cost of validating a ranking config, which services do once per experiment variant."""

from __future__ import annotations

from typing import Any

from reelrank import RankingConfig


def test_config_validation(benchmark: Any) -> None:
    data = RankingConfig().model_dump()
    config = benchmark(RankingConfig.from_dict, data)
    assert config == RankingConfig()
