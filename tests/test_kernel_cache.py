"""The parallel kernels are cached on disk like the serial ones, whatever the thread count.

A service worker starting with a warm numba cache must not compile ``batch_kernel``
again (seconds per worker), and a cache written by a process with one thread count
must serve a process with another (caching a ``parallel=True`` kernel has been reported
to break there). Each process here is a fresh interpreter on a throwaway cache folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import reelrank

_PROBE = """
import json
import numpy as np
from reelrank._kernels import _rank as kernels

rng = np.random.default_rng(3)
static = rng.random(700).astype(np.float32)
affinity = rng.random((9, 700)).astype(np.float32)
parallel = np.empty_like(affinity)
serial = np.empty_like(affinity)
valid = kernels.batch_kernel(static, affinity, np.float32(0.25), parallel)
kernels.batch_kernel_serial(static, affinity, np.float32(0.25), serial)
stats = kernels.batch_kernel.stats
print(json.dumps({
    "valid": bool(valid),
    "equal": bool(np.array_equal(parallel, serial)),
    "hits": sum(stats.cache_hits.values()),
    "misses": sum(stats.cache_misses.values()),
}))
"""


def _probe(cache: Path, threads: int) -> dict[str, object]:
    source = str(Path(reelrank.__file__).resolve().parents[1])
    env = {
        **os.environ,
        "NUMBA_CACHE_DIR": str(cache),
        "NUMBA_NUM_THREADS": str(threads),
        "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_batch_kernel_is_loaded_from_the_cache_by_a_process_with_other_threads(
    tmp_path: Path,
) -> None:
    first = _probe(tmp_path, threads=2)
    assert first == {"valid": True, "equal": True, "hits": 0, "misses": 1}
    for threads in (1, 2):
        again = _probe(tmp_path, threads=threads)
        assert again == {"valid": True, "equal": True, "hits": 1, "misses": 0}
