# Sourced by the project's scripts: the venv on PATH and local-only tool settings.
export PATH="$(pwd)/.venv/bin:${PATH}"
export DVC_NO_ANALYTICS=1
export DVC_SITE_CACHE_DIR="$(pwd)/.dvc/tmp/site-cache"
export MLFLOW_DISABLE_TELEMETRY=true
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false
