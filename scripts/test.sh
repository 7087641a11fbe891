#!/usr/bin/env bash
# The whole test suite: unit tests, integration tests against real servers (MongoDB wire
# server, S3, Pushgateway, Prometheus, MLflow) that the fixtures start, the deployment files,
# and the container image built and run (tests/image, marker `image`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
bash scripts/install-test-services.sh
source scripts/env.sh

# The image tests (tests/image) build and run the container image: with a Docker engine, or
# with Debian's buildah (+ debootstrap for the stand-in base when the official one cannot be
# pulled). Without either they fail, naming the package; as root we install them here.
if ! { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }; then
  missing=()
  for tool in buildah debootstrap; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
  if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" -eq 0 ]; then
    echo "== installing the image tools: ${missing[*]} (Debian packages)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

echo "== lint and types"
ruff check lib jobs serve tests bench scripts
mypy

echo "== tests"
set +e
python -m pytest --durations=15 "$@"  # the slowest tests, to keep the suite's time in view
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "test.sh: pytest collected no tests; that is a failure here" >&2
  exit 1
fi
exit "$status"
