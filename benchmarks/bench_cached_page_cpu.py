"""CPU per cache-hit cursor page of the example service, in-process, on the stores the
load benchmark uses: real PostgreSQL, ClickHouse and Redis started by the fixtures.

The Flask test client serves ``GET /api/v1/reels?limit=20&cursor=...`` for users
following their cursors through cached snapshots (every measured page answers
``Cache-Status: reelrank; hit``), and ``time.process_time()`` over a block of 100 pages
gives the CPU per page (every thread of the process, so store calls on worker threads
count). Two services run side by side in this process on the same servers, with users
of their own: one serves a cursor page with one Redis call (``take_page``), the other
with the three separate calls (``take_pages_in_one_call=False``). Their blocks
alternate with a bare Flask endpoint's (:func:`reelrank_example.testing.bare_app`), the
baseline, so a noisy moment of the shared machine falls on all three alike. The figures
go to the ratio table at the end of the run, with the load average.

About a minute with the servers' start and seeding (600 videos, 200 users); quick mode
(``REELRANK_BENCH_QUICK=1``, in CI) measures 3 blocks per setup, the full run 6.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from conftest import QUICK, SUMMARY, loadavg

pytest.importorskip("reelrank_redis")
pytest.importorskip("reelrank_postgres")
pytest.importorskip("reelrank_clickhouse")
testing = pytest.importorskip("reelrank_example.testing")

from reelrank_example import (  # noqa: E402
    FIRST_USER_ID,
    Settings,
    build_services,
    configured_stores,
    create_app,
    issue_token,
)

from reelrank import FeedServiceConfig, StoreDeadlines  # noqa: E402

pytestmark = pytest.mark.timeout(600)

USERS = 200
USERS_EACH = USERS // 2
PAGE_SIZE = 20
BLOCK = 100
CATALOG = {
    "REELRANK_VIDEOS": "600",
    "REELRANK_PENDING_VIDEOS": "0",
    "REELRANK_USERS": str(USERS),
    "REELRANK_EVENTS": "2000",
    "REELRANK_CREATORS": "10",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with testing.ServiceStack(tmp_path_factory.mktemp("stack"), CATALOG) as started:
        yield started


class _Service:
    """The example service in this process, with users of its own following cursors."""

    def __init__(self, settings: Settings, users: range, *, in_one_call: bool) -> None:
        stores = configured_stores(settings)
        self.services = build_services(
            stores,
            settings,
            feed_config=FeedServiceConfig(
                cursor_secret=settings.cursor_secret,
                model_name=settings.model_name,
                deadlines=StoreDeadlines(cache=settings.shared_cache_deadline_seconds),
                take_pages_in_one_call=in_one_call,
            ),
        )
        assert (self.services.feed._take_page is not None) is in_one_call
        self.client = create_app(self.services, settings).test_client()
        secret = settings.auth_secret.get_secret_value()  # type: ignore[union-attr]
        self._headers = {
            user: {"Authorization": f"Bearer {issue_token(secret, user)}"} for user in users
        }
        self._users = list(users)
        self._cursors: dict[int, str] = {}
        self._next = 0
        self.cpu_per_page: list[float] = []
        # Snapshots ranked ahead, under the batch deadline: a first page ranked during
        # the request could miss the catalog's deadline on a busy machine.
        self.services.feed.refresh_candidates()
        assert self.services.feed.warm(self._users) == len(self._users)
        for user in self._users:
            self._cursors[user] = self._page(user, None)[0]

    def _page(self, user: int, cursor: str | None) -> tuple[str, str]:
        path = f"/api/v1/reels?limit={PAGE_SIZE}"
        if cursor is not None:
            path += f"&cursor={cursor}"
        response = self.client.get(path, headers=self._headers[user])
        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json()
        assert body["next_cursor"], body
        return body["next_cursor"], response.headers["Cache-Status"]

    def serve(self, pages: int) -> None:
        started = time.process_time()
        for _ in range(pages):
            user = self._users[self._next % len(self._users)]
            self._next += 1
            self._cursors[user], status = self._page(user, self._cursors[user])
            assert status == "reelrank; hit"
        self.cpu_per_page.append((time.process_time() - started) / pages)

    def redis_calls(self) -> tuple[int, int]:
        stats = self.services.feed.stats().dependencies
        return stats["seen"].calls, stats["cache"].calls


class _Bare:
    def __init__(self) -> None:
        self.client = testing.bare_app().test_client()
        self.cpu_per_page: list[float] = []

    def serve(self, pages: int) -> None:
        started = time.process_time()
        for _ in range(pages):
            assert self.client.get("/ping").status_code == 200
        self.cpu_per_page.append((time.process_time() - started) / pages)


def test_cached_cursor_page_cpu(benchmark: Any, stack: Any) -> None:
    settings = stack.settings()
    assert settings.redis_state_url is None  # the seen store shares the cache's Redis
    one_call = _Service(
        settings, range(FIRST_USER_ID, FIRST_USER_ID + USERS_EACH), in_one_call=True
    )
    steps = _Service(
        settings, range(FIRST_USER_ID + USERS_EACH, FIRST_USER_ID + USERS), in_one_call=False
    )
    bare = _Bare()
    setups = {"one call": one_call, "three calls": steps, "bare endpoint": bare}
    try:
        # 600 videos rank into snapshots of 200: a user's first page and 8 cursor pages
        # come from one snapshot, so no measured page re-ranks.
        blocks = (3 if QUICK else 6) * USERS_EACH // BLOCK
        for setup in setups.values():
            setup.serve(BLOCK // 2)  # warm-up, not counted
            setup.cpu_per_page.clear()
        calls_before = one_call.redis_calls()
        for _ in range(blocks):
            for setup in setups.values():
                setup.serve(BLOCK)
        seen_calls, cache_calls = (
            after - before
            for after, before in zip(one_call.redis_calls(), calls_before, strict=True)
        )
        assert (seen_calls, cache_calls) == (blocks * BLOCK, 0)
        load = loadavg()
        figures = {
            name: [seconds * 1e3 for seconds in setup.cpu_per_page]
            for name, setup in setups.items()
        }
        medians = {name: float(np.median(values)) for name, values in figures.items()}
        benchmark.extra_info.update(
            {f"{name.replace(' ', '_')}_cpu_ms": round(value, 3) for name, value in medians.items()}
        )
        SUMMARY.append(
            f"example service, cache-hit cursor page CPU, {blocks} blocks of {BLOCK} "
            "(median, range): "
            + "; ".join(
                f"{name} {medians[name]:.2f} ms ({min(values):.2f}-{max(values):.2f})"
                for name, values in figures.items()
            )
            + f"; one call / three calls x{medians['one call'] / medians['three calls']:.2f}"
            + f"; bare / one call x{medians['bare endpoint'] / medians['one call']:.3f}"
            + f"; bare / three calls x{medians['bare endpoint'] / medians['three calls']:.3f}"
            + f" (load {load}, pid {os.getpid()})"
        )
        benchmark.pedantic(one_call.serve, args=(1,), rounds=1, iterations=1)
    finally:
        one_call.services.close()
        steps.services.close()
