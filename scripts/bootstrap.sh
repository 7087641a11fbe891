#!/usr/bin/env bash
# Create .venv (Python 3.11) and install the project into it; idempotent.
# Usage: scripts/bootstrap.sh [extras]   e.g. scripts/bootstrap.sh test
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
spec="."
[ -n "$extras" ] && spec=".[${extras}]"
echo "bootstrap: installing ${spec} into .venv"
.venv/bin/python -m pip install -q -e "$spec"
