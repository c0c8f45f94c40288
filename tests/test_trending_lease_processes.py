"""Two real processes ask for the same expired trending result at the same moment: one
takes the shared store's lease and computes, the other serves the previous snapshot.

Each process builds its own :class:`~reelrank.Trending` on a shared
:class:`~reelrank_postgres.SqlTrendingSnapshotStore` (a SQLite file) or
:class:`~reelrank_redis.RedisTrendingSnapshotStore` (a real Redis, integration session),
over an engagement log whose window read waits for the other process's answer, so the
two calls overlap.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from reelrank import (
    CoordinatedTrendingSnapshotStore,
    TrendingKind,
    TrendingSnapshot,
)
from reelrank.testing import EPOCH

ROOT = Path(__file__).resolve().parents[1]
NOW = EPOCH + timedelta(days=30)
LATER = NOW + timedelta(seconds=120)

# One worker: once both are up, asks for the top sounds 120 s after the stored snapshot
# (too old for the 60 s reuse) and prints what it got and how many times it read the
# log. A read of the log waits until the other worker has answered (30 s at most), so
# the two calls overlap for certain: if both computed, both would wait out the 30 s and
# both report a read.
_WORKER = """
import json, os, sys, time
from datetime import datetime, timedelta
from pathlib import Path
from reelrank import InMemoryCatalog, InMemoryEngagementLog, Trending, TrendingConfig
from reelrank.testing import make_creator, make_event, make_video

backend, target, now, meeting = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
if backend == "sql":
    from reelrank_postgres import SqlStoreConfig, SqlTrendingSnapshotStore, connect
    store = SqlTrendingSnapshotStore(connect(SqlStoreConfig(url=target)))
else:
    from reelrank_redis import RedisConfig, RedisTrendingSnapshotStore, connect
    config = RedisConfig(url=target, prefix="lease")
    store = RedisTrendingSnapshotStore(connect(config), config)
now = datetime.fromisoformat(now)
catalog = InMemoryCatalog()
catalog.put_creator(make_creator(1))
catalog.put_video(make_video(1, published_at=now - timedelta(days=40), sound_id=3))
log = InMemoryEngagementLog()
log.record(make_event(video_id=1, occurred_at=now - timedelta(hours=1)))
me = str(os.getpid())
reads = []

def wait_for(pattern, count, seconds):
    deadline = time.monotonic() + seconds
    while len([p for p in meeting.glob(pattern) if not p.name.endswith(me)]) < count:
        if time.monotonic() > deadline:
            return
        time.sleep(0.01)

class SlowLog:
    def __getattr__(self, name):
        return getattr(log, name)

    def columns_between(self, *args, **kwargs):
        reads.append(1)
        wait_for("done-*", 1, 30.0)
        return log.columns_between(*args, **kwargs)

trending = Trending(catalog, SlowLog(), snapshots=store, config=TrendingConfig(reuse_seconds=60))
(meeting / f"ready-{me}").touch()
wait_for("ready-*", 1, 60.0)
result = trending.top("sound", now=now)
(meeting / f"done-{me}").touch()
print(json.dumps({"computed_at": result.computed_at.isoformat(), "reads": len(reads),
                  "keys": [item.key for item in result.items]}))
"""


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from reelrank_redis.testing import RedisServer, find_redis_server

    if find_redis_server() is None:
        pytest.skip("redis-server is needed (scripts/test.sh installs it)")
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


def _store(backend: str, target: str) -> CoordinatedTrendingSnapshotStore:
    if backend == "sql":
        from reelrank_postgres import SqlStoreConfig, SqlTrendingSnapshotStore, connect, migrate

        engine = connect(SqlStoreConfig(url=target))
        migrate(engine)
        return SqlTrendingSnapshotStore(engine)
    from reelrank_redis import RedisConfig, RedisTrendingSnapshotStore, connect

    config = RedisConfig(url=target, prefix="lease")
    return RedisTrendingSnapshotStore(connect(config), config)


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    adapters = sorted((ROOT / "adapters").iterdir())
    source = [str(ROOT / "src"), *(str(path / "src") for path in adapters)]
    env["PYTHONPATH"] = os.pathsep.join([*source, env.get("PYTHONPATH", "")])
    return env


@pytest.mark.parametrize("backend", ["sql", pytest.param("redis", marks=pytest.mark.integration)])
def test_one_process_computes_while_the_other_serves_the_previous_snapshot(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    target = (
        f"sqlite:///{tmp_path / 'trending.db'}"
        if backend == "sql"
        else request.getfixturevalue("redis_url")
    )
    store = _store(backend, target)
    previous = TrendingSnapshot(
        kind=TrendingKind.SOUND, window_hours=24.0, computed_at=NOW, items=()
    )
    store.put_snapshot(previous)
    meeting = tmp_path / "meeting"
    meeting.mkdir()
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, backend, target, LATER.isoformat(), str(meeting)],
            env=_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    answers: list[dict[str, Any]] = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        answers.append(json.loads(out))
    answers.sort(key=lambda answer: answer["computed_at"])
    # One served the previous snapshot without reading the log; the other computed.
    assert answers[0] == {"computed_at": NOW.isoformat(), "reads": 0, "keys": []}
    assert answers[1] == {"computed_at": LATER.isoformat(), "reads": 1, "keys": [3]}
    stored = store.latest_snapshot(TrendingKind.SOUND, 24.0)
    assert stored is not None and stored.computed_at == LATER
    # The computing process gave its lease back.
    assert store.acquire_lease(TrendingKind.SOUND, 24.0, owner="next", seconds=5.0)
