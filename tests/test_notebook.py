"""examples/offline_scoring.ipynb: valid, stored without outputs, and its code runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

nbformat = pytest.importorskip("nbformat")
pd = pytest.importorskip("pandas")
matplotlib = pytest.importorskip("matplotlib")

from reelrank import WEIGHT_FIELDS, RankingConfig  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "offline_scoring.ipynb"


@pytest.fixture(scope="module")
def notebook() -> Any:
    return nbformat.read(NOTEBOOK, as_version=4)


def test_the_notebook_is_valid_and_has_no_outputs(notebook: Any) -> None:
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)


def test_the_code_cells_run_in_order(notebook: Any) -> None:
    matplotlib.use("Agg")  # no display in tests
    import matplotlib.pyplot as plt

    namespace: dict[str, Any] = {"__name__": "__notebook__"}
    try:
        for index, cell in enumerate(notebook.cells):
            if cell.cell_type == "code":
                exec(compile(cell.source, f"{NOTEBOOK.name}[{index}]", "exec"), namespace)
        # score distribution, contributions of the top 10, freshness decay, rank changes
        assert len(plt.get_fignums()) == 4
    finally:
        plt.close("all")
    freshness = namespace["freshness"].to_numpy()
    ages = namespace["ages"]
    # the curve drawn is 2 ** (-age / half-life), read back from score_frame
    np.testing.assert_allclose(freshness, 2.0 ** (-ages / 48.0), rtol=1e-4, atol=1e-6)
    scored = namespace["scored"]
    np.testing.assert_allclose(
        scored[list(WEIGHT_FIELDS)].sum(axis=1), scored["score"], rtol=1e-5, atol=1e-6
    )
    top = namespace["top"]
    assert top["score"].is_monotonic_decreasing
    assert 0.0 <= namespace["overlap"] < 1.0  # the two configurations disagree somewhat
    comparison = namespace["comparison"]
    # each configuration's own top 20 holds its ranks 1 to 20
    assert sorted(comparison.loc[namespace["fresh_top"], "fresh-first rank"]) == list(range(1, 21))
    assert sorted(comparison.loc[namespace["base_top"], "base rank"]) == list(range(1, 21))
    best = namespace["best"]
    assert sorted(best["user_id"].unique().tolist()) == [1, 2, 3]
    config_affinity = namespace["per_user"]["affinity"] / namespace["per_user"]["raw_affinity"]
    np.testing.assert_allclose(config_affinity, RankingConfig().affinity, rtol=1e-5)
