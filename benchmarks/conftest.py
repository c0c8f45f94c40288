"""Benchmark settings: ``REELRANK_BENCH_QUICK=1`` shrinks every case so CI keeps them runnable."""

from __future__ import annotations

import os

QUICK = os.environ.get("REELRANK_BENCH_QUICK") == "1"
