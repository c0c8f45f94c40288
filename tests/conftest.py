"""What every test module shares: the reels service package is importable from its tree.

The service (``examples/flask_app``) is not installed by the test set-up; its tests
import it from the source tree, whichever module the run starts with.

``--pages-in-steps`` runs the tests with cached cursor pages served by three store
calls instead of one ``take_page`` (the in-memory and Redis seen stores take pages in
one call by default), so the feed tests cover both paths.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from reelrank import FeedServiceConfig

_SERVICE = str(Path(__file__).resolve().parents[1] / "examples" / "flask_app")
if _SERVICE not in sys.path:
    sys.path.insert(0, _SERVICE)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--pages-in-steps",
        action="store_true",
        help=(
            "build every feed service with take_pages_in_one_call=False, so cached cursor "
            "pages take the three separate store calls (the path of a seen store without "
            "take_page)"
        ),
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--pages-in-steps"):
        FeedServiceConfig.model_fields["take_pages_in_one_call"].default = False
        FeedServiceConfig.model_rebuild(force=True)
