"""Start-up work the workers of one gunicorn master do one at a time (the warming)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from reelrank_example._metrics import MULTIPROCESS_DIR_ENV
from reelrank_example._turns import workers_take_turns

WAIT = 30.0


@pytest.fixture(autouse=True)
def _shared_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MULTIPROCESS_DIR_ENV, str(tmp_path))


def test_a_second_worker_waits_for_the_first_ones_turn_to_end() -> None:
    # Each open of the lock file is a lock of its own, as in two processes.
    order: list[str] = []
    first_in = threading.Event()
    first_may_end = threading.Event()

    def first() -> None:
        with workers_take_turns("warming", wait_seconds=WAIT) as turn:
            assert turn
            order.append("first began")
            first_in.set()
            assert first_may_end.wait(WAIT)
            order.append("first ended")

    def second() -> None:
        assert first_in.wait(WAIT)
        with workers_take_turns("warming", wait_seconds=WAIT) as turn:
            assert turn
            order.append("second began")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    assert first_in.wait(WAIT)
    first_may_end.set()
    for thread in threads:
        thread.join(WAIT)
    assert order == ["first began", "first ended", "second began"]


def test_a_worker_goes_ahead_once_it_waited_long_enough() -> None:
    with workers_take_turns("warming", wait_seconds=WAIT) as held:
        assert held
        with workers_take_turns("warming", wait_seconds=0.2) as turn:
            assert not turn
        # Other work does not wait for it.
        with workers_take_turns("other", wait_seconds=0.0) as turn:
            assert turn
