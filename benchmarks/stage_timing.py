"""What the stage benchmarks share (``miss_page_stages.py``, ``search_stages.py``):
timing a request's stages by wrappers on the service's objects, one serving process per
checkout on one set of real stores, blocks alternated between the checkouts round by
round, and the table of stages.

A stage script runs as the driver (``main``) and, with ``--serve FLAG``, as the serving
process of one checkout: that process prints ``ready``, then answers each block size it
reads on its input with one line of JSON (``{"cpu": ..., "rows": ...}``).
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SOURCE_DIRS = ("src", "adapters/reelrank-redis/src", "adapters/reelrank-postgres/src",
               "adapters/reelrank-clickhouse/src", "examples/flask_app")  # fmt: skip
"""A checkout's source folders, put on its serving process's ``PYTHONPATH``."""


def serve_with_metrics_dir(serve: Callable[[bool], None], flag: bool) -> None:
    """``serve(flag)`` with a multiprocess metrics directory of its own, as a gunicorn
    worker has."""
    with tempfile.TemporaryDirectory(prefix="reelrank-metrics-") as metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        serve(flag)


class StageTimer:
    """Wall milliseconds per stage of the request being measured (:attr:`current`).

    With :attr:`request_thread` set, a call made on another thread during the request (a
    background read) is counted apart, as ``STAGE (another thread)``: the request did
    not wait for it.
    """

    def __init__(self) -> None:
        self.current: dict[str, float] | None = None
        self.request_thread: int | None = None
        self.wrapped: set[int] = set()

    def wrap(self, owner: Any, name: str, stage: str) -> None:
        """Time ``owner.name`` as ``stage``."""
        function = getattr(owner, name)

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                current = self.current
                if current is not None:
                    elapsed = 1e3 * (time.perf_counter() - started)
                    here = self.request_thread in (None, threading.get_ident())
                    key = stage if here else f"{stage} (another thread)"
                    current[key] = current.get(key, 0.0) + elapsed

        setattr(owner, name, timed)

    def wrap_store(self, store: Any, label: str) -> None:
        """Time every public method of ``store`` as ``LABEL.METHOD``, and of the store it
        wraps if it is a proxy (a guard, a group commit, a store sharing its counts)."""
        self.wrapped.add(id(store))
        inner = vars(store).get("_store")
        for name in dir(type(store)):
            if name.startswith("_") or not callable(getattr(type(store), name, None)):
                continue
            if isinstance(getattr(type(store), name), property):
                continue
            # A proxy's own method around the store's: timed apart, not twice as one.
            proxied = inner is not None and hasattr(inner, name)
            self.wrap(store, name, f"{label} proxy.{name}" if proxied else f"{label}.{name}")
        if inner is not None:
            self.wrap_store(inner, label)


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Blocks:
    """What each checkout's serving process answered, block by block."""

    names: list[str]
    """The checkouts, the baseline first."""
    cpu: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    """Each block's CPU per request (ms), by checkout."""
    rows: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    """Each block's ``rows``, by checkout."""
    loads: list[str] = field(default_factory=list)
    """The 1-minute load average after each round."""
    load: str = ""
    """The load averages at the end."""


def run_checkouts(
    script: str,
    checkouts: Sequence[Path],
    flag: bool,
    *,
    catalog: dict[str, str],
    fold_stats: bool,
    rounds: int,
    block: int,
) -> Blocks:
    """Seed one stack with ``catalog``, roll its statistics up if ``fold_stats``, start
    ``script --serve FLAG`` once per checkout, and ask each for ``rounds`` blocks of
    ``block`` requests in turn (after a warm-up of half a block), the order shifted each
    round."""
    from reelrank_example import testing

    with (
        tempfile.TemporaryDirectory() as directory,
        testing.ServiceStack(Path(directory), catalog, bulk=True) as stack,
    ):
        if fold_stats:
            watermark = stack.wait_for_seed_watermark()
            assert watermark is not None  # no stopping event was given
            stack.command("fold-stats", "--until", watermark[0].isoformat())
        processes: dict[str, Any] = {}
        for checkout in checkouts:
            root = checkout.resolve()
            env = {**os.environ, **stack.env,
                   "PYTHONPATH": os.pathsep.join(str(root / part) for part in SOURCE_DIRS),
                   "NUMBA_CACHE_DIR": str(root / ".numba_cache")}  # fmt: skip
            processes[str(checkout)] = subprocess.Popen(
                [sys.executable, script, "--serve", str(int(flag))],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
            )  # fmt: skip
        for name, process in processes.items():
            assert process.stdout.readline().strip() == "ready", f"{name} did not start"
        for process in processes.values():  # warm-up, not counted
            _ask(process, block // 2)
        blocks = Blocks(list(processes))
        for round_number in range(rounds):
            order = list(processes.items())
            shift = round_number % len(order)
            for name, process in order[shift:] + order[:shift]:
                answer = _ask(process, block)
                blocks.cpu[name].append(answer["cpu"])
                blocks.rows[name].append(answer["rows"])
            blocks.loads.append(Path("/proc/loadavg").read_text().split()[0])
        blocks.load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        for process in processes.values():
            process.stdin.close()
            process.wait(timeout=60)
    return blocks


def _ask(process: Any, count: int) -> dict[str, Any]:
    process.stdin.write(f"{count}\n")
    process.stdin.flush()
    return dict(json.loads(process.stdout.readline()))


def print_stage_table(names: Sequence[str], rows: dict[str, list[dict[str, float]]]) -> None:
    """A markdown table of each stage's n, p50 and p99 per checkout, and the last
    checkout's p50 over the first's; stages in the baseline's order, then the others'."""
    stage_names: list[str] = []
    for name in names:
        stage_names += [
            s for s in sorted({s for r in rows[name] for s in r}) if s not in stage_names
        ]
    print("| stage | "
          + " | ".join(f"{Path(name).name}: n, p50 / p99 ms" for name in names)
          + " | p50 ratio |")  # fmt: skip
    print("|" + " --- |" * (len(names) + 2))
    for stage in stage_names:
        cells = []
        p50s = []
        for name in names:
            values = [row[stage] for row in rows[name] if stage in row]
            if not values:
                cells.append("-")
                p50s.append(float("nan"))
                continue
            p50s.append(statistics.median(values))
            cells.append(f"{len(values)}, {p50s[-1]:.2f} / {quantile(values, 0.99):.2f}")
        ratio = p50s[-1] / p50s[0] if p50s[0] else float("nan")
        print(f"| {stage} | " + " | ".join(cells) + f" | {ratio:.3f} |")


def print_cpu(blocks: Blocks, unit: str) -> None:
    """Each checkout's median CPU per request over its blocks, and its ratio to the first."""
    base = statistics.median(blocks.cpu[blocks.names[0]])
    for name in blocks.names:
        cpu = blocks.cpu[name]
        median = statistics.median(cpu)
        print(f"CPU per {unit}, {name}: median of blocks {median:.2f} ms "
              f"({min(cpu):.2f}-{max(cpu):.2f}), x{median / base:.3f}")  # fmt: skip
