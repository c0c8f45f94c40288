"""Sphinx configuration for the reelrank documentation."""

from __future__ import annotations

project = "reelrank"
author = "The reelrank developers"
copyright = "2026, The reelrank developers"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
html_theme = "furo"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
nitpicky = False
exclude_patterns = ["_build"]
