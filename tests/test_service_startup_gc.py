"""The service's start-up path freezes what it allocated, out of the garbage collector's
reach, makes full collections rarer, and sets the thread switch interval.

Run in a process of its own (``gc.freeze`` is process-wide), over a migrated embedded
SQLite database, the way ``gunicorn "reelrank_example:create_default_app()"`` starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Start-up runs on a background thread once the app exists; the startup probe turns 200
# when it is done.
_START = (
    "import gc, sys, time\n"
    "from reelrank_example import create_default_app\n"
    "before = gc.get_freeze_count()\n"
    "probe = create_default_app().test_client()\n"
    "deadline = time.monotonic() + 300\n"
    "while probe.get('/healthz/startup').status_code != 200:\n"
    "    assert time.monotonic() < deadline, 'start-up did not finish'\n"
    "    time.sleep(0.1)\n"
    "scrape = probe.get('/metrics').get_data(as_text=True).splitlines()\n"
    "timed = sum(float(line.split()[-1]) for line in scrape\n"
    "            if line.startswith('reelrank_gc_pause_seconds_count'))\n"
    "print(before, gc.get_freeze_count(), gc.get_threshold()[2], int(timed),\n"
    "      round(sys.getswitchinterval() * 1e6))\n"
)


@pytest.mark.slow  # a fresh process compiles or loads every kernel and warms feeds
def test_create_default_app_freezes_start_up_allocations_and_tunes_collections(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELRANK_")}
    source = [
        str(ROOT / "src"),
        *(str(path / "src") for path in sorted((ROOT / "adapters").iterdir())),
        str(ROOT / "examples" / "flask_app"),
    ]
    env["PYTHONPATH"] = os.pathsep.join([*source, env.get("PYTHONPATH", "")])
    env["REELRANK_DATABASE_URL"] = f"sqlite:///{tmp_path / 'reels.db'}"
    env["REELRANK_AUTH_SECRET"] = "g" * 40
    env["REELRANK_SWITCH_INTERVAL_SECONDS"] = "0.002"
    run = {"env": env, "check": True, "capture_output": True, "text": True, "timeout": 600}
    subprocess.run([sys.executable, "-m", "reelrank_example", "migrate"], **run)  # type: ignore[call-overload]
    started = subprocess.run([sys.executable, "-c", _START], **run)  # type: ignore[call-overload]
    before, after, full_threshold, timed, switch_us = (int(n) for n in started.stdout.split()[-5:])
    assert before == 0
    assert after > 10_000  # the stores, kernels and app: many objects, all frozen
    # Python's default is a full collection per 10 middle ones; start-up sets 100.
    assert full_threshold == 100
    assert timed > 0  # start-up's own collections, in reelrank_gc_pause_seconds
    assert switch_us == 2_000  # REELRANK_SWITCH_INTERVAL_SECONDS, against Python's 5 ms
