#!/usr/bin/env bash
# Refresh the lock files from setup.cfg: THE command to run after any dependency change.
#   requirements.lock      runtime (install_requires), exact pins with hashes: the image installs it
#   requirements-dev.lock  runtime plus the [test] and [pipeline] extras, same versions: CI's install
# Compiled by uv (`uv pip compile --generate-hashes`) against PyPI for CPython 3.11 on
# Linux x86_64, what the image and GitHub's runners use. Existing pins are kept unless
# setup.cfg needs another version; `bash scripts/lock.sh --upgrade` moves everything to the latest.
# tests/unit/test_lockfile.py fails when setup.cfg and the locks disagree.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
python_bin=".venv/bin/python"
[ -x "$python_bin" ] || { echo "lock: run 'bash scripts/bootstrap.sh test' first (no .venv)" >&2; exit 1; }
uv=".venv/bin/uv"
if ! "$uv" --version 2>/dev/null | grep -q " ${UV_VERSION}"; then
  echo "lock: installing uv==${UV_VERSION} into .venv"
  "$python_bin" -m pip install -q "uv==${UV_VERSION}"
fi
common=(--quiet --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28
        --index-url https://pypi.org/simple --custom-compile-command "bash scripts/lock.sh" "$@")

# The dev lock first: one resolution of everything, so the runtime lock (resolved within its
# pins) has exactly the versions the test suite runs with.
echo "lock: requirements-dev.lock (runtime + [test] + [pipeline])"
"$uv" pip compile setup.cfg --extra test --extra pipeline "${common[@]}" -o requirements-dev.lock
"$python_bin" scripts/lockfile.py stamp dev requirements-dev.lock

echo "lock: requirements.lock (runtime, within the dev pins)"
"$uv" pip compile setup.cfg --constraint requirements-dev.lock "${common[@]}" -o requirements.lock
"$python_bin" scripts/lockfile.py stamp runtime requirements.lock
echo "lock: $(grep -c '^[a-zA-Z]' requirements.lock) runtime pins, $(grep -c '^[a-zA-Z]' requirements-dev.lock) dev pins"
