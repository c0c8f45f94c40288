"""The import rules that ``lint-imports`` cannot state on its own.

The contracts in ``[tool.importlinter]`` (pyproject.toml) check the core's layers, cycles
between sibling modules and the adapters' imports. Two gaps remain, closed here on the same
grimp import graph (which, like the contracts, counts imports under ``if TYPE_CHECKING:``):

* a cycle through a package's own ``__init__`` (``reelrank.stores`` imports
  ``reelrank.stores._seen``, which imports ``reelrank.stores``) has no two siblings in it, so
  the ``acyclic_siblings`` contract does not see it;
* module expressions cannot say "every module whose name starts with an underscore", so the
  adapters' contract lists the core's private modules, and this checks that the list is
  complete.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("reelrank", cache_dir=None)


def _contracts() -> list[dict[str, Any]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts: list[dict[str, Any]] = config["tool"]["importlinter"]["contracts"]
    return contracts


def _is_private(module: str) -> bool:
    # Dunder modules (``reelrank.__main__``) are not private; ``_name`` ones are, and so is
    # everything below them.
    return any(part.startswith("_") and not part.startswith("__") for part in module.split(".")[1:])


def test_no_import_cycles_among_core_modules(graph: grimp.ImportGraph) -> None:
    # Each import that can be followed back to its importer closes a cycle; a cycle is
    # reported once, not once per import in it.
    cycles: dict[frozenset[str], str] = {}
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                cycles.setdefault(frozenset(back), " -> ".join((importer, *back)))
    assert sorted(cycles.values()) == []


def test_adapter_contract_forbids_exactly_the_private_core_modules(
    graph: grimp.ImportGraph,
) -> None:
    (contract,) = [c for c in _contracts() if c["type"] == "forbidden"]
    assert set(contract["source_modules"]) == {
        "reelrank_redis",
        "reelrank_postgres",
        "reelrank_clickhouse",
    }
    forbidden: set[str] = set()
    for expression in contract["forbidden_modules"]:
        matched = graph.find_matching_modules(expression) if "*" in expression else {expression}
        # The contract treats each forbidden module as a package, descendants included.
        forbidden |= matched | {d for m in matched for d in graph.find_descendants(m)}
    private = {module for module in graph.modules if _is_private(module)}
    assert sorted(private - forbidden) == [], "private modules the adapters may import"
    assert sorted(forbidden - private) == [], "public modules the adapters may not import"
