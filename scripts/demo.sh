#!/usr/bin/env bash
# Installs reelrank into a local virtual environment and prints a ranked demo feed.
# Needs no servers: everything runs on the embedded in-memory stores.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q -e . 2>&1 | grep -v '^WARNING: Location' || true
exec .venv/bin/reelrank demo "$@"
