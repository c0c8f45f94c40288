"""The SQL adapter on loopback PostgreSQL 15 and on a SQLite file: the candidate query and
the stats read of one 500-candidate page, against the in-memory stores in the same run.

One "page read" is ``recent_videos(limit=500)`` followed by ``get_stats`` of the 500 ids,
the two store calls a fresh ranking makes for its shared candidate pool. The ratio table
at the end of the run gives each backend's p50 against the in-memory stores' p50.
Skips when ``reelrank-postgres`` or the PostgreSQL server binaries are not installed
(``scripts/test.sh`` installs both).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import QUICK, SUMMARY

from reelrank import InMemoryCatalog, InMemoryEventStore
from reelrank.testing import make_creator, make_event, make_video

reelrank_postgres = pytest.importorskip("reelrank_postgres")
pg_testing = pytest.importorskip("reelrank_postgres.testing")

if pg_testing.find_postgres_bin() is None:
    pytest.skip("PostgreSQL server binaries are not installed", allow_module_level=True)

CANDIDATES = 500
VIDEOS = 1_000 if QUICK else 5_000
CREATORS = 50
WATCHED = 600 if QUICK else 3_000
TIMED_CALLS = 30 if QUICK else 300


def _percentiles(call: Callable[[], Any], count: int = TIMED_CALLS) -> tuple[float, float]:
    """(p50, p99) of ``count`` calls, in microseconds, after a short warm-up."""
    for _ in range(min(5, count)):
        call()
    samples = np.empty(count)
    for index in range(count):
        start = time.perf_counter_ns()
        call()
        samples[index] = time.perf_counter_ns() - start
    p50, p99 = np.percentile(samples, [50, 99]) / 1_000.0
    return float(p50), float(p99)


def _fill(catalog: Any, events: Any) -> None:
    now = datetime.now(UTC)
    for creator in range(1, CREATORS + 1):
        catalog.put_creator(make_creator(creator))
    for video in range(1, VIDEOS + 1):
        catalog.put_video(
            make_video(video, 1 + video % CREATORS, published_at=now - timedelta(seconds=video))
        )
    for video in range(1, WATCHED + 1):
        events.append(
            make_event("watch", user_id=1 + video % 7, video_id=video, completion=0.5),
            creator_id=1 + video % CREATORS,
        )


class Backends:
    """The same data in memory, in PostgreSQL and in SQLite."""

    def __init__(self, server: Any, directory: Path) -> None:
        config = reelrank_postgres.SqlStoreConfig
        self.engines = {
            "postgresql": reelrank_postgres.connect(config(url=server.url)),
            "sqlite": reelrank_postgres.connect(
                config(url=f"sqlite:///{directory / 'bench.db'}")
            ),
        }
        self.stores: dict[str, tuple[Any, Any]] = {
            "memory": (InMemoryCatalog(), InMemoryEventStore())
        }
        for name, engine in self.engines.items():
            reelrank_postgres.migrate(engine)
            self.stores[name] = (
                reelrank_postgres.SqlCatalog(engine),
                reelrank_postgres.SqlEventStore(engine),
            )
        for catalog, events in self.stores.values():
            _fill(catalog, events)

    def page_read(self, name: str) -> Callable[[], int]:
        catalog, events = self.stores[name]

        def read() -> int:
            ids = [video.video_id for video in catalog.recent_videos(limit=CANDIDATES)]
            return len(events.get_stats(ids))

        return read

    def close(self) -> None:
        for engine in self.engines.values():
            engine.dispose()


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backends]:
    with pg_testing.PostgresServer() as server:
        built = Backends(server, tmp_path_factory.mktemp("bench-sql"))
        yield built
        built.close()


@pytest.mark.parametrize("backend", ["memory", "postgresql", "sqlite"])
def test_page_read(benchmark: Any, backends: Backends, backend: str) -> None:
    read = backends.page_read(backend)
    assert benchmark(read) == CANDIDATES


def test_page_read_ratio_against_memory(benchmark: Any, backends: Backends) -> None:
    """p50 of each backend's page read, measured back to back in this run."""
    p50s: dict[str, float] = {}
    for name in ("memory", "postgresql", "sqlite"):
        p50, p99 = _percentiles(backends.page_read(name))
        p50s[name] = p50
        benchmark.extra_info[f"{name}_p50_us"] = round(p50, 1)
        benchmark.extra_info[f"{name}_p99_us"] = round(p99, 1)
        SUMMARY.append(
            f"sql page read ({CANDIDATES} candidates + stats), {name}: "
            f"p50 {p50 / 1e3:.2f} ms, p99 {p99 / 1e3:.2f} ms"
        )
    for name in ("postgresql", "sqlite"):
        ratio = p50s[name] / p50s["memory"]
        benchmark.extra_info[f"{name}_vs_memory"] = round(ratio, 1)
        SUMMARY.append(f"sql page read, {name} / memory (p50): x{ratio:.1f}")
    assert benchmark(backends.page_read("postgresql")) == CANDIDATES
