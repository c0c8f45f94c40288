"""The fast-math flags and ``numba.njit`` presets every kernel module compiles with.

One place decides how reelrank's kernels are compiled, so a scoring kernel, the cosine
top-k and the diversity re-rank cannot drift apart (one forgetting ``error_model`` or
picking up ``nnan``). Three presets:

* :data:`inline_helper` for small functions called from kernels: inlined into the
  caller at numba's IR level, so they cost no call and are never compiled on their own;
* :data:`serial_kernel` for kernels that run on the calling thread: cached on disk
  (a new process loads them instead of compiling) and releasing the GIL;
* :data:`parallel_kernel` for kernels that share work out with ``prange``: not cached,
  because a cached parallel kernel has been reported to break when the thread count
  changes between processes.

All use ``error_model="numpy"``: the default model adds a division-by-zero check to
every float division, which stops loops vectorising.
"""

from __future__ import annotations

from typing import Any

import numba

__all__ = ["FASTMATH", "inline_helper", "parallel_kernel", "serial_kernel"]

FASTMATH: set[str] = {"nsz", "arcp", "contract", "afn", "reassoc"}
"""The one fast-math flag set every reelrank kernel uses.

It leaves out ``nnan`` and ``ninf`` on purpose: kernels test for NaN (a missing model
score, an invalid affinity) and must keep doing so. A ``set`` because numba accepts no
other collection here; treat it as read-only.
"""

inline_helper: Any = numba.njit(inline="always", fastmath=FASTMATH, error_model="numpy")
"""Decorator for helpers called from kernels (always inlined into the caller)."""

serial_kernel: Any = numba.njit(cache=True, fastmath=FASTMATH, error_model="numpy", nogil=True)
"""Decorator for kernels that run on the calling thread (cached, GIL released)."""

parallel_kernel: Any = numba.njit(parallel=True, fastmath=FASTMATH, error_model="numpy", nogil=True)
"""Decorator for kernels that split their work with ``prange`` (not cached)."""
