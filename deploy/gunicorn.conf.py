"""gunicorn settings for the reels service (``gunicorn -c deploy/gunicorn.conf.py``).

Every value can be overridden by an environment variable, so the same file serves
``scripts/serve.sh`` on a laptop and the container in Kubernetes.
"""

from __future__ import annotations

import os

wsgi_app = "reelrank_example:create_default_app()"
bind = f"{os.environ.get('REELRANK_HOST', '127.0.0.1')}:{os.environ.get('REELRANK_PORT', '8000')}"
workers = int(os.environ.get("REELRANK_WORKERS", "2"))
accesslog = "-"

# -- Prometheus multiprocess mode ------------------------------------------------------
# Every worker writes its metrics to files in PROMETHEUS_MULTIPROC_DIR and /metrics sums
# them, so one scrape shows the whole pod. prometheus_client chooses its storage when it
# is imported, so the variable must be set before a worker imports it: here in the
# master, before any worker forks. (With preload_app the app, and prometheus_client,
# would be imported before on_starting runs; keep it off.)
_metrics_temp_dir: list[str] = []


def on_starting(server: object) -> None:
    """Start every metric at zero: create the directory, or empty the last run's files.

    Without ``PROMETHEUS_MULTIPROC_DIR`` a temporary directory is used, removed on exit.
    """
    import shutil
    import tempfile

    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        directory = tempfile.mkdtemp(prefix="reelrank-metrics-")
        _metrics_temp_dir.append(directory)
    os.makedirs(directory, exist_ok=True)
    for entry in os.scandir(directory):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.remove(entry.path)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory


def child_exit(server: object, worker: object) -> None:
    """Drop a dead worker's live gauges (in flight, breaker states...); its counters stay."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]


def on_exit(server: object) -> None:
    """Remove the temporary metrics directory, if ``on_starting`` made one."""
    import shutil

    for directory in _metrics_temp_dir:
        shutil.rmtree(directory, ignore_errors=True)
