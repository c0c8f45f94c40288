#!/usr/bin/env bash
# Installs everything the full test suite needs on a fresh Debian 12 machine (as root),
# then runs lint, type checks, unit and integration tests against real servers,
# the docs build and the benchmarks in quick mode. Exits non-zero on any failure.
set -euo pipefail
shopt -s nullglob
cd "$(dirname "$0")/.."
root=$(pwd)

# Server binaries the integration tests start on loopback ports of their own.
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ -x /usr/sbin/clickhouse-server ] || missing+=(clickhouse-server)
[ -x /usr/lib/postgresql/15/bin/postgres ] || missing+=(postgresql-15)
[ -f /usr/share/postgresql/15/extension/rum.control ] || missing+=(postgresql-15-rum)
[ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
# ClickHouse's replicated-mode test coordinates its replicas through a ZooKeeper it starts.
[ -x /usr/share/zookeeper/bin/zkServer.sh ] || missing+=(zookeeper)
# The docs test opens the built pages in headless Chromium; the docs build fetches
# MathJax with npm, to serve it from the docs themselves.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# The explorer page test drives that browser through its WebDriver.
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
# The HTTP load benchmark saturates a bare endpoint and the cached feed with wrk.
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
# The alert rules are checked and unit-tested with promtool.
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# Debian's python3 comes without the venv module (and its ensurepip) until this is installed.
[ -x .venv/bin/python ] || python3 -c 'import ensurepip, venv' >/dev/null 2>&1 ||
  missing+=(python3-venv)
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-upgrade "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
py="$root/.venv/bin/python"
# pip's output is kept out of the way unless it fails, so a broken install stops the run.
pip_install() {
  local log
  log=$(mktemp)
  if ! "$py" -m pip install -q "$@" >"$log" 2>&1; then
    cat "$log" >&2
    exit 1
  fi
  rm -f "$log"
}
pip_install --upgrade pip
adapters=() adapter_src=() adapter_tests=()
for dir in adapters/*/; do
  if [ -f "${dir}pyproject.toml" ]; then
    adapters+=(-e "${dir}[test]")
    adapter_src+=("${dir}src")
    adapter_tests+=("${dir}tests")
  fi
done
pip_install -e ".[dev,docs]" "${adapters[@]}"

export NUMBA_CACHE_DIR="$root/.numba_cache"
export PYTHONHASHSEED=0

step() { printf '\n==> %s\n' "$*"; }

step "lint"
"$py" -m ruff check .
"$py" -m ruff format --check .
# The import contracts in pyproject.toml: the core's layers, no cycles, adapters on public names.
"$root/.venv/bin/lint-imports" --no-cache --no-logo
step "mypy"
"$py" -m mypy src "${adapter_src[@]}" examples/flask_app/reelrank_example
step "tests (unit and integration)"
"$py" -m pytest tests "${adapter_tests[@]}" -q -rs -p no:cacheprovider
step "docs"
"$py" -m sphinx -W --keep-going -q -b html docs docs/_build/html
step "benchmarks (quick mode)"
REELRANK_BENCH_QUICK=1 "$py" -m pytest benchmarks -q -rs -p no:cacheprovider \
  --benchmark-disable-gc --benchmark-min-rounds=3 --benchmark-max-time=0.05 --benchmark-warmup=on
step "release artifacts (build, twine check, install away from the tree, smoke)"
"$py" scripts/release_check.py
