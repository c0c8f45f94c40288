"""What every test module shares: the reels service package is importable from its tree.

The service (``examples/flask_app``) is not installed by the test set-up; its tests
import it from the source tree, whichever module the run starts with.

``--pages-in-steps`` runs the tests with cached cursor pages served by three store
calls instead of one ``take_page`` (the in-memory and Redis seen stores take pages in
one call by default), so the feed tests cover both paths.

The session fixtures ``service_redis_url``, ``service_redis_cluster`` and
``service_postgres_url`` start a real server the first time a test asks for one (the
service's idempotency stores in ``keyed_service.py``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


# Real servers for the service's idempotency stores (tests/keyed_service.py), started
# once for the modules that ask for them.


@pytest.fixture(scope="session")
def service_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway Redis server's URL."""
    from reelrank_redis.testing import RedisServer, find_redis_server

    if find_redis_server() is None:
        pytest.skip("redis-server is needed (scripts/test.sh installs it)")
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture(scope="session")
def service_redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A throwaway Redis Cluster of three masters (a ``RedisClusterServer``)."""
    from reelrank_redis.testing import RedisClusterServer, find_redis_server

    if find_redis_server() is None:
        pytest.skip("redis-server is needed (scripts/test.sh installs it)")
    with RedisClusterServer(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def service_postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server's URL, its database migrated for the service."""
    from reelrank_example import Settings, migrate
    from reelrank_postgres.testing import PostgresServer, find_postgres_bin

    if find_postgres_bin() is None:
        pytest.skip("PostgreSQL is needed (scripts/test.sh installs it)")
    with PostgresServer() as server:
        migrate(Settings(database_url=server.url))
        yield server.url
