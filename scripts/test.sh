#!/usr/bin/env bash
# The whole test suite: unit tests and integration tests against real servers
# (MongoDB wire server, S3, Pushgateway, Prometheus, MLflow) that the fixtures start.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
bash scripts/install-test-services.sh
source scripts/env.sh

echo "== lint and types"
ruff check lib jobs serve tests bench scripts
mypy

echo "== tests"
set +e
python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "test.sh: pytest collected no tests; that is a failure here" >&2
  exit 1
fi
exit "$status"
