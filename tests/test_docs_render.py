"""The built docs render their formulas with no network: opened from disk in Chromium.

The docs are built into a temporary directory (Sphinx with warnings as errors), and the
"How scoring works" page is opened as a ``file://`` URL in headless Chromium with every
host name unresolvable and a proxy that refuses connections, so a formula renders only
if MathJax comes with the docs. Marked ``integration``: it needs Chromium (Debian's
``chromium``, which ``scripts/test.sh`` installs), the docs extra, and npm or an already
bundled MathJax in ``docs/_vendor``.
"""

from __future__ import annotations

import html.parser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import reelrank

pytestmark = pytest.mark.integration

DOCS = Path(__file__).resolve().parent.parent / "docs"
TEX_MARKERS = ("\\(", "\\[", "\\text{", "\\mathrm{", "$$")
"""What a formula looks like when MathJax did not run on it."""


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found is not None:
            return found
    return None


@pytest.fixture(scope="module")
def built_docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HTML docs of this checkout, built as CI builds them."""
    pytest.importorskip("sphinx", reason="the docs extra is not installed")
    pytest.importorskip("myst_parser", reason="the docs extra is not installed")
    out = tmp_path_factory.mktemp("docs-html")
    built = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", DOCS, out],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-4000:]
    return out


def _render(page: Path, profile: Path) -> str:
    """The page's DOM after its scripts ran, in headless Chromium with no network."""
    chromium = _chromium()
    if chromium is None:
        pytest.skip("Chromium is not installed (scripts/test.sh installs Debian's chromium)")
    done = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",  # the tests run as root in CI
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            # No network: every host name fails to resolve, and a connection to an
            # address goes to a proxy on the discard port, which nothing serves.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--proxy-server=127.0.0.1:9",
            f"--user-data-dir={profile}",
            # MathJax typesets once its deferred script has loaded; a virtual 20 s is
            # far more than it needs, and costs only the real time the page uses.
            "--virtual-time-budget=20000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "HOME": str(profile)},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


class _MathCensus(html.parser.HTMLParser):
    """Per Sphinx math element (class ``math``): its MathJax containers and stray text."""

    def __init__(self) -> None:
        super().__init__()
        self.formulas: list[dict[str, int | str]] = []
        self._depth = 0  # open elements inside the current math element, itself included
        self._in_container = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        if self._depth:
            self._depth += 1
            if tag == "mjx-container":
                self.formulas[-1]["containers"] = int(self.formulas[-1]["containers"]) + 1
                self._in_container = self._depth
            if tag == "svg" and self._in_container:
                self.formulas[-1]["svgs"] = int(self.formulas[-1]["svgs"]) + 1
        elif "math" in classes:
            self.formulas.append({"containers": 0, "svgs": 0, "text": ""})
            self._depth = 1

    def handle_endtag(self, tag: str) -> None:
        if self._depth:
            if self._depth == self._in_container:
                self._in_container = 0
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._depth and not self._in_container:
            self.formulas[-1]["text"] = str(self.formulas[-1]["text"]) + data


def _formulas(page_html: str) -> list[dict[str, int | str]]:
    census = _MathCensus()
    census.feed(page_html)
    return census.formulas


def test_the_scoring_page_loads_mathjax_from_the_docs_themselves(built_docs: Path) -> None:
    page = (built_docs / "scoring.html").read_text()
    # Sphinx appends a checksum query (?v=...) to the script's address.
    scripts = re.findall(r'<script[^>]*\ssrc="([^"]+)"', page)
    mathjax = [s for s in scripts if "mathjax" in s.lower()]
    assert len(mathjax) == 1 and mathjax[0].startswith("_static/mathjax/tex-svg.js"), scripts
    assert not [s for s in scripts if "//" in s], scripts
    assert (built_docs / "_static" / "mathjax" / "tex-svg.js").is_file()


def test_scoring_formulas_render_offline_from_the_file_system(
    built_docs: Path, tmp_path: Path
) -> None:
    page = built_docs / "scoring.html"
    unrendered = _formulas(page.read_text())
    # The page is the one with every formula: if it had none, this test would prove nothing.
    assert len(unrendered) >= 20
    assert all(f["containers"] == 0 for f in unrendered)

    rendered_dom = _render(page, tmp_path / "profile")
    rendered = _formulas(rendered_dom)
    assert len(rendered) == len(unrendered)
    for formula in rendered:
        assert formula["containers"] == 1, formula
        assert formula["svgs"] >= 1, formula
        assert str(formula["text"]).strip() == "", formula
    for marker in TEX_MARKERS:
        assert marker not in rendered_dom, marker


def test_every_page_names_the_release_it_documents(built_docs: Path) -> None:
    title = f"reelrank {reelrank.__version__}"
    for name in ("index.html", "scoring.html", "changelog.html"):
        page = (built_docs / name).read_text()
        assert title in page.split("<title>", 1)[1].split("</title>", 1)[0], name


def test_the_changelog_is_a_page_of_the_docs(built_docs: Path) -> None:
    changelog = (built_docs / "changelog.html").read_text()
    assert "Unreleased" in changelog
    assert f"{reelrank.__version__}" in changelog
    assert "changelog.html" in (built_docs / "index.html").read_text()
