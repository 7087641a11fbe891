# syntax=docker/dockerfile:1.7
#
# One image for the three entrypoints of the churn project:
#   docker run IMAGE train   -> console script `train` (SageMaker training contract)
#   docker run IMAGE score   -> console script `score` (nightly batch scoring)
#   docker run IMAGE serve   -> console script `serve` (gunicorn on :8080, the default)
#   docker run IMAGE churn --help   -> the full CLI
#
# Build:  docker build -t churn:dev .       (BuildKit is required: `RUN --mount`)
#
# Base image: the tag below pins Python 3.11 and Debian bookworm. A tag can be
# re-pushed upstream, so CD resolves it to a digest at build time and pins that
# (`FROM python:3.11.14-slim-bookworm@sha256:...`); the digest is recorded in the
# image labels by .github/workflows/cd.yaml. Both stages use the same base so the
# wheels built in `build` match the runtime's Python ABI and glibc.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

########################################################################
# Stage 1: build wheels for the project and all its runtime dependencies
########################################################################
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# Every runtime dependency (lightgbm, scikit-learn, pandas, pyarrow, mlflow, ...)
# ships manylinux wheels for CPython 3.11, so no compiler is installed here either;
# `--prefer-binary` keeps it that way. If a dependency ever needs compiling, add
# `build-essential` to THIS stage only: the runtime stage never gets a compiler.
#
# Dependency layer first (cached while only the code changes): when the repo has a
# lock file (requirements.lock, `pip-compile` output with exact pins) its wheels
# are built here. The glob lets the build work before that file exists.
COPY setup.cfg requirements*.lock ./
RUN if [ -f requirements.lock ]; then \
        pip wheel --prefer-binary --wheel-dir /wheels -r requirements.lock; \
    else \
        mkdir -p /wheels; \
    fi

# The project itself. .dockerignore keeps tests, data, mlruns, caches and .git out.
COPY . .
RUN if [ -f requirements.lock ]; then set -- --constraint requirements.lock; fi; \
    pip wheel --prefer-binary --find-links /wheels --wheel-dir /wheels "$@" . \
 && ls /wheels > /wheels/INDEX.txt

########################################################################
# Stage 2: slim runtime, no compiler, no pip cache, no test tools
########################################################################
FROM ${PYTHON_IMAGE} AS runtime

ARG APP_UID=10001
ARG APP_GID=10001

LABEL org.opencontainers.image.title="churn" \
      org.opencontainers.image.description="Customer churn: train, nightly batch score, real-time serve" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.14-slim-bookworm"

# libgomp1: OpenMP runtime that LightGBM's shared library links against.
# tini: a real PID 1 that forwards SIGTERM to the job and reaps zombies (Python
#       as PID 1 would ignore SIGTERM, so Kubernetes would have to SIGKILL it).
# DL3008 (pin apt versions) is ignored on purpose (docs/deployment.md, "Lint
# exceptions"): Debian security updates replace the exact
# versions in the archive, so pinned versions stop resolving within weeks; the
# base image digest pinned by CD is what makes a build reproducible.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 tini \
 && rm -rf /var/lib/apt/lists/*

# Fixed non-root UID/GID: Kubernetes' runAsUser/fsGroup in k8s/ use the same numbers.
RUN groupadd --system --gid "${APP_GID}" churn \
 && useradd --system --uid "${APP_UID}" --gid churn --home-dir /home/churn \
            --create-home --shell /usr/sbin/nologin churn \
 && mkdir -p /opt/ml \
 && chown churn:churn /opt/ml

# Install from the wheels of stage 1 only (--no-index: nothing comes from the
# network, and no package outside setup.cfg's install_requires gets in). The
# wheels are bind-mounted, not copied, so they add no layer. Then drop what a
# runtime never reads (sizes measured, see docs/deployment.md "Image size"):
#   - the test suites bundled inside numpy/pandas/scipy/sklearn/pyarrow/... (~126 MB)
#   - MLflow's web-UI bundle (~27 MB): this image never runs `mlflow server`
#   - pyarrow's C++ headers (~6 MB), only used to compile extensions
# The .pyc files are kept on purpose: PYTHONDONTWRITEBYTECODE=1 and a read-only
# root filesystem mean nothing is ever cached at run time, and without them the
# imports take ~3x longer at every process start (measured 9-15 s vs 32-41 s).
ARG SITE=/usr/local/lib/python3.11/site-packages
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/churn-*.whl \
 && find "${SITE}" -mindepth 2 -depth -type d -name tests -exec rm -rf {} + \
 && rm -rf "${SITE}/mlflow/server/js/build" "${SITE}/pyarrow/include" /root/.cache \
 && python -c "import churn, lightgbm, sklearn, pandas, pyarrow.parquet, mlflow.pyfunc, flask, gunicorn, prometheus_client"

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    DVC_NO_ANALYTICS=1 \
    LOG_FORMAT=json \
    MPLCONFIGDIR=/tmp/matplotlib \
    XDG_CACHE_HOME=/tmp/.cache \
    SAGEMAKER_BIND_TO_PORT=8080 \
    HOME=/home/churn

WORKDIR /home/churn
USER ${APP_UID}:${APP_GID}

EXPOSE 8080

# Docker-level health check for `serve` (Kubernetes ignores HEALTHCHECK and uses
# the probes in k8s/base/serving-deployment.yaml; SageMaker calls GET /ping
# itself). urllib raises on a non-2xx answer, so 503 "model not loaded" is
# unhealthy. For `train`/`score` containers the check simply stays unhealthy:
# they serve no HTTP and nothing acts on the status.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/ping' % os.environ.get('SAGEMAKER_BIND_TO_PORT', '8080'), timeout=3)"]

# Exec form throughout. ENTRYPOINT is only tini; the command is the argument, so
# `docker run IMAGE train` runs `tini -- train` exactly as SageMaker expects.
ENTRYPOINT ["tini", "--"]
CMD ["serve"]
