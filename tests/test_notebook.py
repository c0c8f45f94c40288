"""examples/offline_scoring.ipynb: valid, stored without outputs, and its code runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

nbformat = pytest.importorskip("nbformat")
pd = pytest.importorskip("pandas")

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
    namespace: dict[str, Any] = {"__name__": "__notebook__"}
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            exec(compile(cell.source, f"{NOTEBOOK.name}[{index}]", "exec"), namespace)
    scored = namespace["scored"]
    np.testing.assert_allclose(
        scored[list(WEIGHT_FIELDS)].sum(axis=1), scored["score"], rtol=1e-5, atol=1e-6
    )
    top = namespace["top"]
    assert top["score"].is_monotonic_decreasing
    assert 0.0 <= namespace["overlap"] < 1.0  # the two configurations disagree somewhat
    best = namespace["best"]
    assert sorted(best["user_id"].unique().tolist()) == [1, 2, 3]
    config_affinity = namespace["per_user"]["affinity"] / namespace["per_user"]["raw_affinity"]
    np.testing.assert_allclose(config_affinity, RankingConfig().affinity, rtol=1e-5)
