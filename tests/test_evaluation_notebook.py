"""examples/offline_evaluation.ipynb: valid, stored without outputs, and its code runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ranx")
matplotlib = pytest.importorskip("matplotlib")

from reelrank import RankingConfig  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "offline_evaluation.ipynb"


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
        assert len(plt.get_fignums()) == 3  # activity, tuning trials, held-out accuracy
    finally:
        plt.close("all")
    tuned = namespace["tuned"]
    assert tuned.best_value >= tuned.baseline_value
    table = namespace["held_out_table"]
    assert list(table.index) == ["default", "tuned"]
    assert RankingConfig.from_toml(namespace["config_to_toml"](tuned.config)) == tuned.config
