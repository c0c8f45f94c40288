"""Benchmark settings: ``REELRANK_BENCH_QUICK=1`` shrinks every case so CI keeps them runnable.

The example service (``examples/flask_app``) is not installed by the test set-up; the
benchmarks that serve it import it from the source tree, whichever module the run
collects first.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

_SERVICE = str(Path(__file__).resolve().parents[1] / "examples" / "flask_app")
if _SERVICE not in sys.path:
    sys.path.insert(0, _SERVICE)

QUICK = os.environ.get("REELRANK_BENCH_QUICK") == "1"

SUMMARY: list[str] = []
"""Lines benchmark modules add for the end of the run, such as ratio tables."""


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, to print next to a figure."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def interleaved(
    calls: list[Callable[[], Any]], rounds: int, *, rotate: bool = False
) -> list[list[float]]:
    """Seconds of each call per round, alternating the calls so machine noise hits all alike.

    With ``rotate`` each round starts one call later, so no call always follows the same
    other one (an insert that leaves the server merging its parts slows the call after it).
    """
    samples: list[list[float]] = [[] for _ in calls]
    for round_number in range(rounds):
        start = round_number % len(calls) if rotate else 0
        for index in [*range(start, len(calls)), *range(start)]:
            started = time.perf_counter()
            calls[index]()
            samples[index].append(time.perf_counter() - started)
    return samples


def p50_p99_ms(samples: list[float]) -> tuple[float, float]:
    """Median and 99th percentile (nearest rank) of ``samples`` seconds, in milliseconds."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1e3, p99 * 1e3


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print :data:`SUMMARY` after pytest-benchmark's own tables."""
    if SUMMARY:
        terminalreporter.section("ratios against baselines")
        for line in SUMMARY:
            terminalreporter.write_line(line)
