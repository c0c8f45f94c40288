"""Benchmark settings: ``REELRANK_BENCH_QUICK=1`` shrinks every case so CI keeps them runnable."""

from __future__ import annotations

import os
from typing import Any

import pytest

QUICK = os.environ.get("REELRANK_BENCH_QUICK") == "1"

SUMMARY: list[str] = []
"""Lines benchmark modules add for the end of the run, such as ratio tables."""


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print :data:`SUMMARY` after pytest-benchmark's own tables."""
    if SUMMARY:
        terminalreporter.section("ratios against baselines")
        for line in SUMMARY:
            terminalreporter.write_line(line)
