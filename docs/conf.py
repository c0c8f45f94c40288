"""Sphinx configuration for the reelrank documentation."""

from __future__ import annotations

import pkgutil
from typing import Any

from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.errors import PycodeError
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging

import reelrank

project = "reelrank"
author = "The reelrank developers"
copyright = "2026, The reelrank developers"
release = reelrank.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
html_theme = "furo"
html_title = f"reelrank {release}"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
    # pydantic's machinery, the same on every model
    "exclude-members": "model_config, model_fields, model_computed_fields, model_post_init",
}
nitpicky = False
exclude_patterns = ["_build"]

_logger = logging.getLogger(__name__)

# Modules whose names are public paths in their own right (``reelrank.exceptions.X``).
_PUBLIC_SUBMODULES = ("reelrank.exceptions", "reelrank.protocols")


def _module_attribute_docs() -> dict[str, list[str]]:
    """Docstrings written under module-level constants, found in reelrank's own modules."""
    found: dict[str, list[str]] = {}
    for module in pkgutil.walk_packages(reelrank.__path__, "reelrank."):
        # __main__ would run the command line; testing needs pytest and exports no constants
        if module.name.endswith(".__main__") or module.name.startswith("reelrank.testing"):
            continue
        try:
            docs = ModuleAnalyzer.for_module(module.name).find_attr_docs()
        except PycodeError:
            continue
        for (scope, name), lines in docs.items():
            if not scope:
                found.setdefault(name, list(lines))
    return found


def _document_reexported_constants(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Give ``reelrank.X`` constants the docstring written where X is defined.

    autodoc reads a constant's docstring from the module it is documented under; exported
    constants are defined in private modules, so without this they would show nothing, or
    the docstring of their type.
    """
    module, _, attribute = name.rpartition(".")
    if what != "data" or not (module == "reelrank" or module.startswith("reelrank.")):
        return
    docs = _module_attribute_docs().get(attribute)
    if docs is not None:
        lines[:] = docs


def _check_every_export_is_documented(app: Sphinx, env: BuildEnvironment) -> None:
    documented = set(env.get_domain("py").objects)
    for name in reelrank.__all__:
        if name.startswith("__"):
            continue
        paths = [f"reelrank.{name}", *(f"{module}.{name}" for module in _PUBLIC_SUBMODULES)]
        if not documented.intersection(paths):
            _logger.warning(
                "reelrank.%s is exported but documented nowhere; add it to docs/api.md", name
            )


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("autodoc-process-docstring", _document_reexported_constants)
    app.connect("env-check-consistency", _check_every_export_is_documented)
    return {"parallel_read_safe": True}
