"""The cost of a call forwarded by a store proxy, in a baseline source tree and this one.

Each proxy of the core and of the example service (:class:`~reelrank.GuardedStore`, the
group commit wrappers, :class:`~reelrank.testing.FaultInjector`, the example's
``EventsSharingCounts``) forwards the store methods it does not define itself. This
times one such call, to a store method that does nothing, through the baseline tree's
proxy and this tree's, in one process and in turns (the order swapped each round), so
what differs is the proxy alone. The baseline's modules are loaded from its files into
this tree's packages (their relative imports resolve here), so the proxies must keep
their constructors. A :class:`~reelrank.GuardedStore` is timed with an inline guard (the
proxy's own cost, as for a store called on the request thread) and with a worker pool
(the hand-off to a worker thread, which a guarded call normally pays)::

    python benchmarks/proxy_calls.py BASELINE_TREE [ROUNDS] [CALLS]

``BASELINE_TREE`` is a checkout (``git worktree add``) of the commit to compare with.
Prints, per proxy, the nanoseconds per call of each tree over the rounds (median, min
and max) and the ratio of the medians (this tree over the baseline), with the load
average before and after.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from reelrank import CircuitBreaker, DependencyGuard, EngagementEvent, WorkerPool


class _Store:
    """A store whose methods do nothing, so a call costs what the proxy adds."""

    def get_stats(self, video_ids: Sequence[int]) -> int:
        return len(video_ids)

    def append_each(self, items: Sequence[tuple[EngagementEvent, int]]) -> list[bool]:
        return [True] * len(items)

    def record_each(self, events: Sequence[EngagementEvent]) -> list[bool]:
        return [True] * len(events)

    def stats_columns(self, video_ids: Sequence[int]) -> int:
        return len(video_ids)


def _load(tree: Path, relative: str, module: str) -> ModuleType:
    """The file ``relative`` of ``tree`` as ``module`` (a sibling of this tree's own)."""
    spec = importlib.util.spec_from_file_location(module, tree / relative)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[module] = loaded
    spec.loader.exec_module(loaded)
    return loaded


def _proxies(tree: Path | None, tag: str) -> dict[str, Any]:
    """Each proxy of ``tree`` (``None``: this one) over a fresh :class:`_Store`."""
    files = {
        "guarded": ("src/reelrank/feed/_guarded_store.py", "reelrank.feed._guarded_store"),
        "group": ("src/reelrank/stores/_group_commit.py", "reelrank.stores._group_commit"),
        "faults": ("src/reelrank/testing/faults.py", "reelrank.testing.faults"),
        "cards": ("examples/flask_app/reelrank_example/_cards.py", "reelrank_example._cards"),
    }
    modules = {
        key: importlib.import_module(name)
        if tree is None
        else _load(tree, relative, f"{name}_{tag}")
        for key, (relative, name) in files.items()
    }

    def guard(inline: bool) -> DependencyGuard:
        return DependencyGuard(
            "store",
            pool=WorkerPool(1),
            breaker=CircuitBreaker("store"),
            deadline_seconds=5.0,
            max_stalled=1,
            inline=inline,
        )

    return {
        "GuardedStore, inline guard": modules["guarded"].GuardedStore(_Store(), guard(True)),
        "GuardedStore, worker pool": modules["guarded"].GuardedStore(_Store(), guard(False)),
        "GroupCommitEventStore": modules["group"].GroupCommitEventStore(_Store()),
        "GroupCommitEngagementLog": modules["group"].GroupCommitEngagementLog(_Store()),
        "FaultInjector": modules["faults"].FaultInjector(_Store()),
        "EventsSharingCounts": modules["cards"].EventsSharingCounts(_Store()),
    }


def _ns_per_call(proxy: Any, calls: int) -> float:
    """Each call looks the method up again, as callers do (``proxy.method(...)``)."""
    ids = [1, 2, 3]
    started = time.perf_counter_ns()
    for _ in range(calls):
        proxy.get_stats(ids)
    return (time.perf_counter_ns() - started) / calls


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main(argv: list[str]) -> None:
    baseline_tree = Path(argv[0]).resolve()
    rounds = int(argv[1]) if len(argv) > 1 else 10
    calls = int(argv[2]) if len(argv) > 2 else 100_000
    trees = {"baseline": _proxies(baseline_tree, "baseline"), "this": _proxies(None, "this")}
    times: dict[str, dict[str, list[float]]] = {name: {} for name in trees}
    print("load average before:", _loadavg())
    for round_number in range(rounds):
        order = ["baseline", "this"] if round_number % 2 == 0 else ["this", "baseline"]
        for case in trees["this"]:
            # The pool's hand-off is a thousand times dearer: fewer calls give its median.
            count = calls // 50 if "worker pool" in case else calls
            for tree in order:
                ns = _ns_per_call(trees[tree][case], count)
                times[tree].setdefault(case, []).append(ns)
    print("load average after:", _loadavg())
    print(
        f"{rounds} rounds; ns per call, median (min to max) of the baseline and of this"
        " tree; ratio of the medians (this / baseline)"
    )
    for case in trees["this"]:
        base, this = times["baseline"][case], times["this"][case]
        ratio = statistics.median(this) / statistics.median(base)
        print(f"  {case:28s} {_spread(base)}   {_spread(this)}   {ratio:.2f}x")


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):7.0f} ({min(values):.0f} to {max(values):.0f})"


if __name__ == "__main__":
    main(sys.argv[1:])
