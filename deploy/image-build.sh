#!/bin/sh
# The build steps of deploy/Dockerfile, one per subcommand, so that
# deploy/docker-build-check.sh runs the very same commands outside Docker.
#
#   SRC=. WHEELS=/wheels image-build.sh wheels      wheels of the service and every dependency
#   WHEELS=/wheels VENV=/opt/venv image-build.sh install
#                                                  a fresh virtualenv from those wheels only
#   VENV=/opt/venv NUMBA_CACHE_DIR=... image-build.sh numba-cache
#                                                  compile every request-path kernel into
#                                                  the cache, readable by any user
set -eu
python=${PYTHON:-python}
case "$1" in
wheels)
  "$python" -m pip wheel --no-cache-dir --wheel-dir "$WHEELS" \
    "$SRC" "$SRC/adapters/reelrank-postgres" "$SRC/adapters/reelrank-redis" \
    "$SRC/adapters/reelrank-clickhouse" "$SRC/examples/flask_app"
  ;;
install)
  "$python" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --no-cache-dir --no-index --find-links "$WHEELS" \
    reelrank-example reelrank-postgres reelrank-redis reelrank-clickhouse
  ;;
numba-cache)
  "$VENV/bin/python" -c "import reelrank; reelrank.warmup()"
  chmod -R a+rX "$NUMBA_CACHE_DIR"
  ;;
*)
  echo "usage: $0 wheels|install|numba-cache" >&2
  exit 2
  ;;
esac
