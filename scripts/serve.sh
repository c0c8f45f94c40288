#!/usr/bin/env bash
# Serves the reels service under gunicorn (2 workers) on http://127.0.0.1:8000.
#
# Installs reelrank, the PostgreSQL/SQLite adapter and the service into .venv, migrates
# the database, seeds the synthetic catalog when the catalog is empty, and starts. With
# nothing configured the data lives in an embedded SQLite file (.venv/reelrank.db); set
# REELRANK_DATABASE_URL, REELRANK_CLICKHOUSE_URL and REELRANK_REDIS_URL to serve from real
# servers. Without REELRANK_AUTH_SECRET (or a public key / JWKS) it runs in demo mode and
# prints a ready token and curl line.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  # Debian's python3 comes without the venv module (and its ensurepip) until this is installed.
  if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-upgrade python3-venv >/dev/null
  fi
  python3 -m venv .venv
fi
extras=()
[ -n "${REELRANK_REDIS_URL:-}${REELRANK_REDIS_STATE_URL:-}" ] && extras+=(-e adapters/reelrank-redis)
[ -n "${REELRANK_CLICKHOUSE_URL:-}" ] && extras+=(-e adapters/reelrank-clickhouse)
service=examples/flask_app
case "${REELRANK_TRACING:-}" in [Tt]rue|1|[Yy]es|[Oo]n) service="examples/flask_app[tracing]" ;; esac
log=$(mktemp)
if ! .venv/bin/python -m pip install -q -e . -e adapters/reelrank-postgres "${extras[@]}" \
  -e "$service" >"$log" 2>&1; then
  cat "$log" >&2
  exit 1
fi
rm -f "$log"

# The embedded database lives in the (git-ignored) virtualenv, so a demo leaves the work
# tree clean; delete the file to start from a fresh synthetic catalog.
export REELRANK_DATABASE_URL="${REELRANK_DATABASE_URL:-sqlite:///$PWD/.venv/reelrank.db}"
export REELRANK_HOST="${REELRANK_HOST:-127.0.0.1}" REELRANK_PORT="${REELRANK_PORT:-8000}"
export REELRANK_WORKERS="${REELRANK_WORKERS:-2}"
# Every worker must verify the cursors and tokens the others sign: draw the keys once.
export REELRANK_CURSOR_SECRET="${REELRANK_CURSOR_SECRET:-$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))')}"
if [ -z "${REELRANK_AUTH_SECRET:-}${REELRANK_AUTH_PUBLIC_KEY_FILE:-}${REELRANK_AUTH_JWKS_FILE:-}" ]; then
  export REELRANK_DEMO=true
  REELRANK_AUTH_SECRET="$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))')"
  export REELRANK_AUTH_SECRET
fi

.venv/bin/python -m reelrank_example migrate
.venv/bin/python -m reelrank_example seed --if-empty
if [ "${REELRANK_DEMO:-}" = true ]; then
  token=$(.venv/bin/python -m reelrank_example token 100001)
  echo "demo mode: explorer on http://$REELRANK_HOST:$REELRANK_PORT/ ; a token for user 100001, valid 24 hours:"
  echo "  $token"
  echo "  curl -H 'Authorization: Bearer $token' 'http://$REELRANK_HOST:$REELRANK_PORT/api/v1/reels?limit=5'"
fi
exec .venv/bin/gunicorn -c deploy/gunicorn.conf.py
