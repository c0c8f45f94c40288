"""CPU per request log line of the example service, for two or more checkouts of the
code side by side.

Each checkout (a directory holding ``src``, ``adapters`` and ``examples``, such as a
``git worktree`` or a ``git archive`` of a commit) writes lines in a process of its
own, configured as a gunicorn worker is (:func:`reelrank_example.configure_logging`
with the default settings: JSON lines, redacted), to ``/dev/null``: the ``request``
line the app writes after every request (a cache-hit feed page's fields, a request
and a user id bound), and gunicorn's ``access`` line (off by default, written when
``accesslog`` is set). Blocks alternate between the checkouts, round by round, and
``time.process_time()`` over a block gives each process's CPU per line. The medians
and their ratios to the first checkout are printed with the load average::

    python benchmarks/log_line_cpu_versions.py /path/to/old /path/to/new --rounds 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

KINDS = ("request", "access")
SOURCE_DIRS = ("src", "adapters/reelrank-redis/src", "adapters/reelrank-postgres/src",
               "adapters/reelrank-clickhouse/src", "examples/flask_app")  # fmt: skip
REQUEST_ID = "0f3b8c2e9a7d4e61b5c0d2f4a6e8b1c3"


def _serve() -> None:
    """A logging process: answers ``KIND COUNT`` lines on stdin with the CPU
    microseconds per line of writing that many lines."""
    import logging

    import structlog
    from reelrank_example import Settings, configure_logging

    with open(os.devnull, "w") as sink:
        configure_logging(Settings(), stream=sink)
        structlog.contextvars.bind_contextvars(request_id=REQUEST_ID, user_id=1234)
        request_line = logging.getLogger("reelrank_example.requests")
        access_line = logging.getLogger("gunicorn.access")
        request_fields = {"method": "GET", "status": 200, "route": "/api/v1/reels",
                          "latency_ms": 3.125}  # fmt: skip
        access_fields = {"method": "GET", "path": "/api/v1/reels", "status": 200,
                         "latency_ms": 3.2, "bytes": 2345, "remote": "127.0.0.1",
                         "user_agent": "python-httpx/0.28.1", "request_id": REQUEST_ID,
                         "route": "/api/v1/reels", "user_id": 1234}  # fmt: skip
        for command in sys.stdin:
            kind, count = command.split()
            logger, event, fields = (
                (request_line, "request", request_fields)
                if kind == "request"
                else (access_line, "access", access_fields)
            )
            started = time.process_time()
            for _ in range(int(count)):
                logger.info(event, extra=fields)
            spent = time.process_time() - started
            print(f"{spent / int(count) * 1e6:.3f}", flush=True)


def main() -> None:
    """Alternate blocks between the checkouts and print the medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkouts", nargs="+", type=Path, help="the first is the baseline")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--block", type=int, default=5_000, help="lines per block")
    args = parser.parse_args()
    processes = []
    for root in args.checkouts:
        path = os.pathsep.join(str(root.resolve() / part) for part in SOURCE_DIRS)
        env = {**os.environ, "PYTHONPATH": path}
        processes.append(subprocess.Popen(
            [sys.executable, __file__, "--serve"], env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        ))  # fmt: skip
    print(f"load average at start: {Path('/proc/loadavg').read_text().strip()}")
    spent: dict[tuple[int, str], list[float]] = {}
    for _ in range(args.rounds):
        for kind in KINDS:
            for index, process in enumerate(processes):
                assert process.stdin is not None and process.stdout is not None
                process.stdin.write(f"{kind} {args.block}\n")
                process.stdin.flush()
                spent.setdefault((index, kind), []).append(float(process.stdout.readline()))
    for process in processes:
        assert process.stdin is not None
        process.stdin.close()
        process.wait()
    for kind in KINDS:
        base = statistics.median(spent[0, kind])
        for index, root in enumerate(args.checkouts):
            values = spent[index, kind]
            median = statistics.median(values)
            print(f"{kind:8} {root}: {median:7.2f} us/line "
                  f"({min(values):.2f}-{max(values):.2f}), x{median / base:.2f}")  # fmt: skip
    print(f"load average at end: {Path('/proc/loadavg').read_text().strip()}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        _serve()
    else:
        main()
