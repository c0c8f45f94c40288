"""The explorer page at ``/``, in headless Chromium (Debian's ``chromium`` and ``chromedriver``).

The page loads, shows the 20 cards of the demo user's feed, and moving a weight slider
re-orders them.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from reelrank.testing.servers import free_port

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "flask_app"))

from reelrank_example import (
    Settings,
    build_services,
    create_app,
    memory_stores,
    seed_synthetic_catalog,
)

webdriver = pytest.importorskip("selenium.webdriver")
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None, reason="needs Debian's chromium and chromedriver"
)


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    settings = Settings(auth_secret="e" * 40, demo=True, videos=120, users=10, events=800)
    stores = memory_stores()
    embeddings = seed_synthetic_catalog(stores, settings, now=datetime.now(UTC))
    services = build_services(dataclasses.replace(stores, embeddings=embeddings), settings)
    port = free_port()
    server = make_server("127.0.0.1", port, create_app(services, settings), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    services.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def test_the_explorer_shows_cards_and_sliders_reorder_them(base_url: str, browser: object) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    driver.get(base_url + "/")  # type: ignore[attr-defined]
    wait = WebDriverWait(driver, 60)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card")) == 20)

    def order() -> list[str]:
        cards = driver.find_elements(By.CSS_SELECTOR, ".card")  # type: ignore[attr-defined]
        return [card.get_attribute("data-video-id") for card in cards]

    before = order()
    assert len(set(before)) == 20
    assert driver.find_element(By.ID, "hashtags").text  # type: ignore[attr-defined]
    # Move two sliders to their ends, as a user would, and let the page re-render.
    for name, value in (("freshness", "1"), ("completion", "0")):
        driver.execute_script(  # type: ignore[attr-defined]
            "const s = document.getElementById(arguments[0]); s.value = arguments[1];"
            "s.dispatchEvent(new Event('input'));",
            f"w-{name}",
            value,
        )
    after = order()
    assert sorted(after) == sorted(before)
    assert after != before
