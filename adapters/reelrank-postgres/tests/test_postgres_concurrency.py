"""Racing writers on both dialects: the database's unique keys, not a process lock,
keep every event counted once and one model version active."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest
from reelrank_postgres import (
    SqlCatalog,
    SqlEventStore,
    SqlModelRegistry,
    SqlStoreConfig,
    connect,
)
from sqlalchemy import Engine

from reelrank import InvalidTransitionError, ModelStatus, ProcessingState
from reelrank.testing import make_creator, make_event, make_model, make_video

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

THREADS = 6


@pytest.fixture
def racing(engine: Engine) -> Iterator[Engine]:
    """``engine``, with a SQLite busy timeout long enough for a loaded machine: SQLite runs
    one writer at a time, and six threads queue for it."""
    if engine.dialect.name != "sqlite":
        yield engine
        return
    patient = connect(
        SqlStoreConfig(url=engine.url.render_as_string(), sqlite_busy_timeout_seconds=30.0)
    )
    yield patient
    patient.dispose()


_T = TypeVar("_T")


def _race(calls: list[Callable[[], _T]]) -> list[_T]:
    with ThreadPoolExecutor(THREADS) as pool:
        return [future.result() for future in [pool.submit(call) for call in calls]]


def test_the_same_event_delivered_by_racing_threads_is_applied_once(racing: Engine) -> None:
    store = SqlEventStore(racing)
    watch = make_event("watch", completion=0.5)
    like = make_event("like", user_id=2)
    results = _race([lambda: store.append(watch, creator_id=1) for _ in range(THREADS)])
    assert sorted(results) == [False] * (THREADS - 1) + [True]
    results = _race([lambda: store.append(like, creator_id=1) for _ in range(THREADS)])
    assert results.count(True) == 1
    stats = store.get_stats([1])[1]
    assert (stats.views, stats.completion_sum, stats.likes) == (1, 0.5, 1)


def test_racing_likes_of_one_user_count_once(racing: Engine) -> None:
    store = SqlEventStore(racing)
    likes = [make_event("like", user_id=3) for _ in range(THREADS)]
    results = _race([lambda event=event: store.append(event, creator_id=1) for event in likes])
    assert all(results)  # every event id is new, so every event is applied...
    assert store.get_stats([1])[1].likes == 1  # ...but the user likes the video once
    single = SqlEventStore(racing).get_affinities(3, [1])[1]
    assert single == pytest.approx(1.0 / (1.0 + 1.0))


def test_racing_activations_leave_one_active_version(racing: Engine) -> None:
    registry = SqlModelRegistry(racing)
    versions = [f"v{n}" for n in range(THREADS)]
    for version in versions:
        registry.register(make_model(version=version))

    def activate(version: str) -> str:
        return registry.activate("watch-time", version).version

    outcomes = _race([lambda version=version: activate(version) for version in versions])
    # Activations of one name run one after the other: every one succeeds, and the
    # last one to run is the active version.
    assert sorted(outcomes) == versions
    active = [m for m in registry.list_models("watch-time") if m.status is ModelStatus.ACTIVE]
    assert len(active) == 1


def test_racing_state_moves_let_exactly_one_through(racing: Engine) -> None:
    catalog = SqlCatalog(racing)
    catalog.put_creator(make_creator(1))
    catalog.put_video(make_video(1, 1, state=ProcessingState.QUEUED))

    def move() -> str:
        try:
            return catalog.set_state(1, ProcessingState.TRANSCODING).state.value
        except InvalidTransitionError as exc:
            return exc.current

    outcomes = _race([move for _ in range(THREADS)])
    # One thread moved the video; every other one found it already transcoding, a state
    # from which "transcoding" is not a valid move.
    assert sorted(outcomes) == ["transcoding"] * THREADS
    assert catalog.get_video(1).state is ProcessingState.TRANSCODING
