"""gunicorn settings for the reels service (``gunicorn -c deploy/gunicorn.conf.py``).

Every value can be overridden by an environment variable, so the same file serves
``scripts/serve.sh`` on a laptop and the container in Kubernetes. The reasons for each
choice are in ``docs/operate/deployment.md``.
"""

from __future__ import annotations

import os


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _env_bool(name: str, default: bool) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


# --- Serving: processes, threads, timeouts, shutdown -------------------------------------
wsgi_app = "reelrank_example:create_default_app()"
bind = f"{os.environ.get('REELRANK_HOST', '127.0.0.1')}:{os.environ.get('REELRANK_PORT', '8000')}"
workers = _env_int("REELRANK_WORKERS", 2)
# Threads, not more processes, for the time a request waits on PostgreSQL, Redis or
# ClickHouse: the app and its stores are thread-safe, the ranking kernels release the GIL
# (nogil), and a frozen dependency then blocks one thread for its deadline instead of a
# whole worker. gthread also keeps client connections alive; the sync worker closes
# every connection after one request.
worker_class = os.environ.get("REELRANK_WORKER_CLASS", "gthread")
threads = _env_int("REELRANK_THREADS", 8)
# With gthread the worker's main loop reports to the master, not the request threads:
# this catches a worker that hangs as a whole (a GIL-holding loop), not a slow request;
# the stores' own deadlines bound those.
timeout = _env_int("REELRANK_TIMEOUT", 30)
# SIGTERM stops accepting connections and lets the requests in flight finish for up to
# this long before the master kills what is left. Keep it below the pod's
# terminationGracePeriodSeconds minus its preStop sleep.
graceful_timeout = _env_int("REELRANK_GRACEFUL_TIMEOUT", 25)
# Longer than the idle timeout of the proxy in front (ingress-nginx keeps upstream
# connections for 60 s), so the server never closes a connection the proxy is reusing.
keepalive = _env_int("REELRANK_KEEPALIVE", 75)
# Recycling bounds slow memory growth, but a new worker is not free: it imports numpy
# and numba, compiles the one kernel numba cannot cache (the parallel batch kernel,
# seconds of CPU), and starts with an empty in-process feed cache level. At a few
# hundred requests a second per worker this recycles about hourly; the jitter keeps
# the workers from restarting together.
max_requests = _env_int("REELRANK_MAX_REQUESTS", 1_000_000)
max_requests_jitter = _env_int("REELRANK_MAX_REQUESTS_JITTER", 100_000)
# Off: each worker builds its app after the fork. A preloaded app would run
# reelrank.warmup() in the master, which starts numba's OpenMP threads, and GNU OpenMP
# kills a forked child the first time it runs a parallel kernel; it would also share the
# master's database and Redis sockets between workers. Loading the cached kernels costs
# each worker a fraction of a second; the uncached parallel one compiles in each worker
# either way.
preload_app = _env_bool("REELRANK_PRELOAD", False)
# The heartbeat files live in memory: the container's root filesystem is read-only and
# /tmp on a disk-backed volume can stall the heartbeat.
worker_tmp_dir = os.environ.get(
    "REELRANK_WORKER_TMP_DIR", "/dev/shm" if os.path.isdir("/dev/shm") else None
)
# gunicorn 25.1+ opens a control socket under $HOME for gunicornc; the container's home
# is not writable, and worker counts change through the manifests, not at run time.
control_socket_disable = not _env_bool("REELRANK_CONTROL_SOCKET", False)
accesslog = "-"

# -- Prometheus multiprocess mode ------------------------------------------------------
# Every worker writes its metrics to files in PROMETHEUS_MULTIPROC_DIR and /metrics sums
# them, so one scrape shows the whole pod. prometheus_client chooses its storage when it
# is imported, so the variable must be set before anything imports it: here, when the
# master reads this file, before the logging settings below import the service package
# (and with it prometheus_client) and before any worker forks.
_metrics_temp_dir: list[str] = []
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    import tempfile

    _metrics_temp_dir.append(tempfile.mkdtemp(prefix="reelrank-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_temp_dir[0]


def on_starting(server: object) -> None:
    """Start every metric at zero: create the directory, or empty the last run's files.

    Without ``PROMETHEUS_MULTIPROC_DIR`` a temporary directory is used, removed on exit.
    """
    import shutil

    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(directory, exist_ok=True)
    for entry in os.scandir(directory):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.remove(entry.path)


def child_exit(server: object, worker: object) -> None:
    """Drop a dead worker's live gauges (in flight, breaker states...); its counters stay."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]


def worker_exit(server: object, worker: object) -> None:
    """In the worker, once it has stopped serving: stop the threads its app started and
    release its stores (``Services.close``, which waits 5 s at most)."""
    app = getattr(worker, "wsgi", None)
    services = getattr(app, "extensions", {}).get("reelrank_services")
    if services is not None:
        services.close()


def on_exit(server: object) -> None:
    """Remove the temporary metrics directory, if ``on_starting`` made one."""
    import shutil

    for directory in _metrics_temp_dir:
        shutil.rmtree(directory, ignore_errors=True)


# --- Logging: every line gunicorn and the app write is one JSON object (level and format
# from REELRANK_LOG_LEVEL / REELRANK_LOG_FORMAT). The access line leaves out the query
# string, which can hold a cursor, and carries the request id the app answered with.
from reelrank_example import gunicorn_logconfig_dict as _gunicorn_logconfig_dict  # noqa: E402

logconfig_dict = _gunicorn_logconfig_dict()
logger_class = "reelrank_example.GunicornLogger"
