#!/usr/bin/env bash
# Installs reelrank into a local virtual environment and prints a ranked demo feed.
# Needs no servers: everything runs on the embedded in-memory stores.
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
log=$(mktemp)
if ! .venv/bin/python -m pip install -q -e . >"$log" 2>&1; then
  cat "$log" >&2
  exit 1
fi
rm -f "$log"
exec .venv/bin/reelrank demo "$@"
