"""Sphinx configuration for the reelrank documentation."""

from __future__ import annotations

import functools
import importlib
import pkgutil
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.environment import BuildEnvironment
from sphinx.errors import ExtensionError, PycodeError
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging

import reelrank

project = "reelrank"
author = "The reelrank developers"
copyright = "2026, The reelrank developers"
# The version of the package these pages were built from, shown in every page's title.
release = reelrank.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    # MyST-NB reads the example notebooks (and, through MyST-Parser, every Markdown page).
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
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
exclude_patterns = ["_build", "_vendor"]

# The example notebooks are stored without outputs; the build copies them from examples/
# into docs/examples/ (ignored by git) and runs them, so the pages show figures drawn by
# the code of this very build. A cell that fails fails the build.
_DOCS = Path(__file__).parent
_NOTEBOOKS = ("offline_scoring.ipynb", "offline_evaluation.ipynb")
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_timeout = 300
nb_merge_streams = True
# Figures of the signal formulas, drawn from the scoring engine when the build starts.
_GENERATED = _DOCS / "_static" / "generated"

# MathJax is served from the built docs themselves, not from a CDN, so the formulas render
# for readers without network access (a copy on disk, a docs archive, a closed network).
# The SVG output needs no web fonts, which browsers refuse to load from file:// pages.
MATHJAX_VERSION = "3.2.2"
_MATHJAX_STATIC = Path(__file__).parent / "_vendor" / "static"
_MATHJAX_PARTS = ("tex-svg.js", "input", "output", "ui", "a11y", "sre")
html_static_path = [str(_MATHJAX_STATIC)]
mathjax_path = "mathjax/tex-svg.js"

_logger = logging.getLogger(__name__)

# The public modules whose ``__all__`` the reference must cover, each documented name under
# at least one of its public paths. Test support is imported too: it needs pytest, which the
# docs build installs with the ``test`` extra.
_EXPORTING_MODULES = (
    "reelrank",
    "reelrank.models",
    "reelrank.stores",
    "reelrank.scoring",
    "reelrank.feed",
    "reelrank.discovery",
    "reelrank.media",
    "reelrank.validation",
    "reelrank.exceptions",
    "reelrank.protocols",
    "reelrank.testing",
)
# Further modules an exported object is reachable at, by a path the guides use.
_ALIAS_MODULES = (
    "reelrank.testing.contracts",
    "reelrank.testing.factories",
    "reelrank.testing.faults",
    "reelrank.testing.servers",
)


@functools.cache
def _public_paths() -> dict[str, frozenset[str]]:
    """Every public path of every exported object, mapped to all paths of the same object.

    ``reelrank.Video``, ``reelrank.models.Video`` and the ``__module__`` path name one class;
    the reference documents it under one of them. Paths are grouped by name as well as by
    identity, so two equal small constants exported under different names stay apart.
    """
    groups: dict[tuple[str, int], set[str]] = {}
    for module_name in (*_EXPORTING_MODULES, *_ALIAS_MODULES):
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            if name.startswith("__"):
                continue
            obj = getattr(module, name)
            paths = groups.setdefault((name, id(obj)), set())
            paths.add(f"{module_name}.{name}")
            home = getattr(obj, "__module__", None)
            if (
                isinstance(home, str)
                and home.startswith("reelrank")
                and name == getattr(obj, "__name__", None)
            ):
                paths.add(f"{home}.{name}")
    return {path: frozenset(paths) for paths in groups.values() for path in paths}


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


def _hide_private_bases(app: Sphinx, name: str, obj: Any, options: Any, bases: list[type]) -> None:
    """Show a class's bases without the private ones, which no page documents (such as
    the base the column classes share): a private base shows its own bases instead."""
    shown: list[type] = []
    for base in bases:
        while any(part.startswith("_") for part in base.__module__.split(".")):
            base = base.__bases__[0]
        shown.append(base)
    bases[:] = shown


def _check_every_export_is_documented(app: Sphinx, env: BuildEnvironment) -> None:
    documented = set(env.get_domain("py").objects)
    paths = _public_paths()
    for module_name in _EXPORTING_MODULES:
        for name in importlib.import_module(module_name).__all__:
            if name.startswith("__"):
                continue
            if not documented.intersection(paths[f"{module_name}.{name}"]):
                _logger.warning(
                    "%s.%s is exported but documented nowhere; add it to docs/api.md",
                    module_name,
                    name,
                )


def _resolve_other_public_path(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: nodes.TextElement
) -> nodes.reference | None:
    """Resolve a reference to any public path of an object to the path it is documented at.

    Guides write ``reelrank.Ranker``, type hints name ``__module__`` paths such as
    ``reelrank.scoring.Ranker``; each object is documented once, under one of them.
    """
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target.startswith("reelrank"):
        return None
    paths = _public_paths()
    # The target may name a member (``reelrank.Ranker.rank``): find the exported object in it.
    head, tail = target, ""
    while head and head not in paths:
        head, _, last = head.rpartition(".")
        tail = f".{last}{tail}"
    domain = env.get_domain("py")
    for alias in sorted(paths.get(head, ())):
        if alias == head:
            continue
        found = domain.resolve_xref(
            env, node["refdoc"], app.builder, node["reftype"], alias + tail, node, contnode
        )
        if found is not None:
            return found
    return None


def _bundle_mathjax(app: Sphinx, config: Config) -> None:
    """Put MathJax into ``_vendor/static/mathjax``, fetched from the npm registry once.

    Runs on ``config-inited`` at the default priority, before the HTML builder checks that
    every ``html_static_path`` entry exists.
    """
    target = _MATHJAX_STATIC / "mathjax"
    stamp = target / "VERSION"
    if stamp.is_file() and stamp.read_text().strip() == MATHJAX_VERSION:
        return
    npm = shutil.which("npm")
    if npm is None:
        raise ExtensionError(
            f"the docs bundle MathJax {MATHJAX_VERSION} from the npm registry, and npm is "
            "not installed (Debian: apt-get install npm). Or unpack the es5 directory of "
            f"the npm package mathjax@{MATHJAX_VERSION} into {target} and write "
            f"{MATHJAX_VERSION} into {stamp}."
        )
    with tempfile.TemporaryDirectory() as scratch:
        packed = subprocess.run(
            [npm, "pack", f"mathjax@{MATHJAX_VERSION}", "--pack-destination", scratch, "--silent"],
            capture_output=True,
            text=True,
            check=False,
        )
        if packed.returncode != 0:
            raise ExtensionError(
                f"npm pack mathjax@{MATHJAX_VERSION} failed: {packed.stderr.strip()}"
            )
        with tarfile.open(Path(scratch) / packed.stdout.strip().splitlines()[-1]) as archive:
            archive.extractall(scratch, filter="data")
        # Assembled beside the target and renamed into place, so a build that stops
        # half-way leaves no partial copy behind that a later build would take as whole.
        _MATHJAX_STATIC.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="mathjax-", dir=_MATHJAX_STATIC.parent))
        es5 = Path(scratch) / "package" / "es5"
        for part in _MATHJAX_PARTS:
            copy = shutil.copytree if (es5 / part).is_dir() else shutil.copy2
            copy(es5 / part, staging / part)
        (staging / "VERSION").write_text(MATHJAX_VERSION + "\n")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)


def _copy_notebooks(app: Sphinx, config: Config) -> None:
    """Copy the example notebooks into the docs source tree, where MyST-NB finds them."""
    target = _DOCS / "examples"
    target.mkdir(exist_ok=True)
    for name in _NOTEBOOKS:
        source = _DOCS.parent / "examples" / name
        copy = target / name
        # An unchanged copy keeps its timestamp, so Sphinx does not reread the page.
        if not copy.is_file() or copy.read_bytes() != source.read_bytes():
            shutil.copy2(source, copy)


def _signal_curves(app: Sphinx, config: Config) -> None:
    """Draw freshness, completion and engagement against age or views, from the engine.

    Each curve is a column of :meth:`Ranker.explain` for a batch of candidates that differ
    in one input, divided by the signal's weight: the figures show what the code computes,
    not a re-implementation of the formulas.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from reelrank import WEIGHT_FIELDS, Candidates, Ranker, RankingConfig

    defaults = RankingConfig()
    ranker = Ranker(defaults)
    now = 1_767_225_600.0

    def signal(field: str, *, age_hours: Any = 0.0, views: Any, **counts: Any) -> Any:
        views = np.asarray(views, dtype=np.float64)
        n = views.size
        filled = {
            name: np.broadcast_to(np.asarray(counts.get(name, 0.0), np.float64), n)
            for name in ("completion_sum", "likes", "shares", "comments")
        }
        candidates = Candidates.from_arrays(
            video_id=np.arange(n),
            creator_id=np.zeros(n, np.int64),
            published_at=now - np.broadcast_to(np.asarray(age_hours), n) * 3600.0,
            views=views,
            **filled,
        )
        column = WEIGHT_FIELDS.index(field)
        return ranker.explain(candidates, now=now)[:, column] / getattr(defaults, field)

    _GENERATED.mkdir(parents=True, exist_ok=True)
    figures = {}

    fig, ax = plt.subplots(figsize=(6, 3.2))
    ages = np.linspace(0.0, 10 * 24, 241)
    ax.plot(ages, signal("freshness", age_hours=ages, views=np.zeros(ages.size)))
    half_life = defaults.freshness_half_life_hours
    ax.axvline(half_life, color="grey", linestyle=":", label=f"half-life {half_life:g} h")
    ax.set(xlabel="age (hours)", ylabel="freshness", title="Freshness decay")
    ax.legend()
    figures["freshness.png"] = fig

    views = np.unique(np.round(np.logspace(0, 4, 200)))
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for mean in (0.9, 0.7, 0.3, 0.1):
        curve = signal("completion", views=views, completion_sum=views * mean)
        ax.plot(views, curve, label=f"mean completion {mean:g}")
    ax.axhline(defaults.completion_prior_mean, color="grey", linestyle=":", label="prior mean")
    ax.set(xscale="log", xlabel="views", ylabel="completion", ylim=(0, 1))
    ax.set_title("Completion: the prior gives way to the data")
    ax.legend(fontsize="small")
    figures["completion.png"] = fig

    fig, ax = plt.subplots(figsize=(6, 3.2))
    for rate in (0.3, 0.1, 0.03, 0.0):
        curve = signal("engagement", views=views, likes=views * rate)
        ax.plot(views, curve, label=f"likes per view {rate:g}")
    ax.set(xscale="log", xlabel="views", ylabel="engagement", ylim=(0, 1))
    ax.set_title("Engagement: smoothed rate, then saturated")
    ax.legend(fontsize="small")
    figures["engagement.png"] = fig

    for name, figure in figures.items():
        figure.tight_layout()
        figure.savefig(_GENERATED / name, dpi=100)
        plt.close(figure)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("config-inited", _bundle_mathjax)
    app.connect("config-inited", _copy_notebooks)
    app.connect("config-inited", _signal_curves)
    app.connect("autodoc-process-docstring", _document_reexported_constants)
    app.connect("autodoc-process-bases", _hide_private_bases)
    app.connect("env-check-consistency", _check_every_export_is_documented)
    app.connect("missing-reference", _resolve_other_public_path)
    return {"parallel_read_safe": True}
