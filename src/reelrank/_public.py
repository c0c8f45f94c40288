"""Giving exported objects the public module path they are documented under."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def _public_module(module: str, names: Iterable[str], namespace: Mapping[str, Any]) -> None:
    """Set ``__module__`` of the classes and functions in ``names`` to ``module``.

    Objects are defined in private modules; users import them from the public
    subpackage, so reprs, pickles, tracebacks and the API reference name that instead.
    An object keeps the first public module it is given: the lowest layer exporting it.
    """
    for name in names:
        obj = namespace[name]
        current = getattr(obj, "__module__", None)
        private = isinstance(current, str) and current.startswith("reelrank.") and "._" in current
        if private and (isinstance(obj, type) or callable(obj)):
            obj.__module__ = module
