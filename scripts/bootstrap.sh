#!/usr/bin/env bash
# Create .venv (Python 3.11) and install the project into it; idempotent.
# Usage: scripts/bootstrap.sh [extras]   e.g. scripts/bootstrap.sh test
# With requirements-dev.lock (scripts/lock.sh) every dependency, of the runtime and of the
# [test] and [pipeline] extras, is installed at its locked version with hash checking, then
# the project itself (editable, no dependencies): developers and CI get one environment,
# the one the lock describes. Extras the dev lock does not cover are installed unlocked.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python_bin="${PYTHON:-python3.11}"
command -v "$python_bin" >/dev/null 2>&1 || python_bin=python3
if ! "$python_bin" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "bootstrap: need Python 3.11, found $("$python_bin" --version 2>&1)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$python_bin" -m venv .venv || { apt-get update -qq && apt-get install -y -qq python3-venv && "$python_bin" -m venv .venv; }
fi
.venv/bin/python -m pip install -q --upgrade pip
locked_extras=",pipeline,test,"
unlocked=""
for extra in ${extras//,/ }; do
  case "$locked_extras" in *",$extra,"*) ;; *) unlocked="${unlocked:+$unlocked,}$extra" ;; esac
done
if [ -f requirements-dev.lock ]; then
  echo "bootstrap: installing requirements-dev.lock (hash-checked) into .venv"
  .venv/bin/python -m pip install -q --require-hashes -r requirements-dev.lock
  echo "bootstrap: installing the project (editable, dependencies from the lock)"
  .venv/bin/python -m pip install -q --no-deps -e .
  if [ -n "$unlocked" ]; then
    echo "bootstrap: extras [$unlocked] are not in the lock: installing them unlocked"
    .venv/bin/python -m pip install -q -e ".[${unlocked}]"
  fi
else
  spec=".[pipeline${extras:+,$extras}]"
  echo "bootstrap: no requirements-dev.lock, installing ${spec} unlocked"
  .venv/bin/python -m pip install -q -e "$spec"
fi
