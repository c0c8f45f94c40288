#!/usr/bin/env bash
# Runs what deploy/Dockerfile does, without Docker, and checks the result:
#
#  1. builder stage: deploy/image-build.sh wheels, on a copy of the build context;
#  2. runtime stage: deploy/image-build.sh install into a fresh virtualenv from those
#     wheels only (--no-index), then numba-cache with NUMBA_CACHE_DIR set as in the image;
#     the "image" is then made read-only (chmod -R a-w);
#  3. the pod: the init container's copy of the cache to a writable directory; a process
#     from the virtualenv, as a user that cannot write the image's files, away from the
#     sources (PYTHONPATH unset), must load every kernel warmup() touches from that cache
#     (numba's per-dispatcher cache statistics: hits, and not one miss; the kernels
#     declared without cache=True, the parallel ones, compile in every process and are
#     listed);
#  4. the same process pointed at the read-only build cache instead fails at import
#     (numba: "cannot cache function ...: no locator available"): the reason the pod
#     copies the cache;
#  5. gunicorn from the virtualenv with the image's config, as that user: /healthz/startup,
#     /healthz/ready, and the Dockerfile's HEALTHCHECK command pass; SIGTERM stops it
#     with status 0.
#
# Run as root, "a user that cannot write" is uid 0 without the capabilities that bypass
# file permissions (setpriv); as another user, the file modes do it.
# Usage: deploy/docker-build-check.sh  (PYTHON=/path/to/python3.11 to choose the
# interpreter; nox -s image runs it). Takes a few minutes: not part of scripts/test.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
work=$(mktemp -d /tmp/reelrank-image-check.XXXXXX)
chmod 755 "$work"
server=
cleanup() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n==> %s\n' "$*"; }

runtime_user=()
if [ "$(id -u)" = 0 ]; then
  runtime_user=(setpriv --bounding-set -dac_override,-dac_read_search,-fowner)
fi
# The runtime process's environment: the image's ENV, nothing from this shell's
# PYTHONPATH or virtualenv.
venv="$work/opt/venv"
# The runtime user's home exists but cannot be written, like /nonexistent on the image's
# read-only root filesystem.
mkdir -p "$work/home"
chmod 555 "$work/home"
# It replaces the calling shell: call it in a subshell, ( as_runtime ... ).
as_runtime() {
  cd /
  exec "${runtime_user[@]}" env -i PATH="$venv/bin:/usr/bin:/bin" HOME="$work/home" \
    VIRTUAL_ENV="$venv" PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    NUMBA_THREADING_LAYER=omp "$@"
}

step "build context (the files .dockerignore lets through)"
mkdir -p "$work/context/deploy" "$work/context/examples"
for path in pyproject.toml README.md LICENSE CHANGELOG.md src adapters; do
  cp -r "$root/$path" "$work/context/"
done
cp -r "$root/examples/flask_app" "$work/context/examples/"
cp "$root/deploy/image-build.sh" "$root/deploy/gunicorn.conf.py" "$work/context/deploy/"
rm -rf "$work/context/adapters"/*/tests
find "$work/context" -name __pycache__ -prune -exec rm -rf {} +

step "builder: wheels"
(cd "$work/context" && env -u PYTHONPATH PYTHON="$python" SRC="$work/context" \
  WHEELS="$work/wheels" sh deploy/image-build.sh wheels >"$work/wheels.log" 2>&1) ||
  { cat "$work/wheels.log"; exit 1; }
ls "$work/wheels" | sed 's/^/  /'

step "runtime: install from the wheels only"
env -u PYTHONPATH PYTHON="$python" WHEELS="$work/wheels" VENV="$venv" \
  sh "$work/context/deploy/image-build.sh" install >"$work/install.log" 2>&1 ||
  { cat "$work/install.log"; exit 1; }

step "runtime: numba cache"
build_cache="$work/opt/reelrank/numba-cache"
SECONDS=0
env -u PYTHONPATH VENV="$venv" NUMBA_CACHE_DIR="$build_cache" NUMBA_THREADING_LAYER=omp \
  sh "$work/context/deploy/image-build.sh" numba-cache
echo "  built in ${SECONDS} s; $(find "$build_cache" -name '*.nbc' | wc -l) compiled entries"
cp "$work/context/deploy/gunicorn.conf.py" "$work/opt/reelrank/gunicorn.conf.py"
chmod -R a-w "$work/opt"

kernel_stats='
import sys, time
started = time.perf_counter()
import reelrank
from numba.core.caching import NullCache
from numba.core.dispatcher import Dispatcher
reelrank.warmup()
elapsed = time.perf_counter() - started
hits = misses = 0
uncached = set()
for name, module in list(sys.modules.items()):
    if name.startswith("reelrank"):
        for value in vars(module).values():
            if not isinstance(value, Dispatcher):
                continue
            if isinstance(value._cache, NullCache):
                # Declared without cache=True (the parallel kernels): compiled in every process.
                if value.signatures:
                    uncached.add(value.__name__)
                continue
            hits += sum(value.stats.cache_hits.values())
            misses += sum(value.stats.cache_misses.values())
print(reelrank.__file__, hits, misses, round(elapsed, 2), ",".join(sorted(uncached)) or "-")
'

step "pod: the init container copies the cache to a writable volume; kernels load from it"
pod_cache="$work/pod/numba"
mkdir -p "$pod_cache" "$work/pod/metrics" "$work/pod/data"
cp -a "$build_cache/." "$pod_cache/"
# cp -a as the runtime user would own the copy, so it could write it.
chmod -R u+w "$work/pod"
read -r file hits misses seconds uncached < <( (as_runtime NUMBA_CACHE_DIR="$pod_cache" python -c "$kernel_stats") )
echo "  reelrank from $file"
echo "  cached kernels: $hits cache hits, $misses misses; compiled (not cacheable): $uncached; import + warmup ${seconds} s"
case "$file" in "$venv"/*) ;; *) echo "reelrank was not imported from the virtualenv" >&2; exit 1 ;; esac
[ "$hits" -gt 0 ] && [ "$misses" -eq 0 ] || { echo "kernels were compiled, not loaded" >&2; exit 1; }

step "the read-only build cache itself cannot be used: numba refuses to import"
# numba only caches in a directory it can write; with none (the image's cache, a
# read-only home), the first @njit(cache=True) raises at import.
if (as_runtime NUMBA_CACHE_DIR="$build_cache" python -c "$kernel_stats") \
  >"$work/readonly.log" 2>&1; then
  echo "expected the import to fail with a read-only cache directory" >&2
  exit 1
fi
grep -q "no locator available" "$work/readonly.log" || { cat "$work/readonly.log"; exit 1; }
echo "  $(tail -n 1 "$work/readonly.log" | cut -c1-100)..."

step "gunicorn from the virtualenv, with the image's config"
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
service_env=(
  REELRANK_DATABASE_URL="sqlite:///$work/pod/data/reels.db" REELRANK_HOST=127.0.0.1
  REELRANK_PORT="$port" REELRANK_AUTH_SECRET=image-check-auth-secret-0123456789abcdef
  REELRANK_CURSOR_SECRET=image-check-cursor-secret REELRANK_VIDEOS=40 REELRANK_USERS=5
  REELRANK_EVENTS=100 NUMBA_CACHE_DIR="$pod_cache" PROMETHEUS_MULTIPROC_DIR="$work/pod/metrics"
)
(as_runtime "${service_env[@]}" python -m reelrank_example migrate >/dev/null)
(as_runtime "${service_env[@]}" python -m reelrank_example seed --if-empty >/dev/null)
(as_runtime "${service_env[@]}" gunicorn -c "$work/opt/reelrank/gunicorn.conf.py" \
  >"$work/gunicorn.log" 2>&1) &
server=$!
status() {
  "$python" -c 'import sys, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=5).status)
except Exception as error:
    print(getattr(error, "code", 0))' "http://127.0.0.1:$port$1"
}
for _ in $(seq 600); do
  [ "$(status /healthz/startup)" = 200 ] && break
  kill -0 "$server" 2>/dev/null || { cat "$work/gunicorn.log"; exit 1; }
  sleep 0.2
done
for path in /healthz/startup /healthz/ready /healthz/live; do
  code=$(status "$path")
  echo "  GET $path: $code"
  [ "$code" = 200 ] || { cat "$work/gunicorn.log"; exit 1; }
done
healthcheck=$("$python" -c 'import json, re, sys
text = open(sys.argv[1]).read().replace("\\\n", " ")
print(json.loads(re.search(r"^HEALTHCHECK .*? CMD (\[.*\])$", text, re.M).group(1))[2])' "$root/deploy/Dockerfile")
(as_runtime REELRANK_PORT="$port" python -c "$healthcheck")
echo "  the Dockerfile's HEALTHCHECK command passed"
kill -TERM "$server"
wait "$server" && code=0 || code=$?
server=
echo "  gunicorn exited with status $code after SIGTERM"
[ "$code" = 0 ] || { cat "$work/gunicorn.log"; exit 1; }

step "all checks passed"
