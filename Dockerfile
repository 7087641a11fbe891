# syntax=docker/dockerfile:1.7
#
# One image for the three entrypoints of the churn project:
#   docker run IMAGE train   -> console script `train` (SageMaker training contract)
#   docker run IMAGE score   -> console script `score` (nightly batch scoring)
#   docker run IMAGE serve   -> console script `serve` (gunicorn on :8080, the default)
#   docker run IMAGE churn --help   -> the full CLI
#
# Build:  bash scripts/build-image.sh       (docker, or buildah where no engine runs)
#         docker build -t churn:dev .       (BuildKit is required: `RUN --mount`)
#
# Base image: the tag below pins Python 3.11 and Debian bookworm. A tag can be
# re-pushed upstream, so CD resolves it to a digest at build time and pins that
# (`FROM python:3.11.14-slim-bookworm@sha256:...`); the digest is recorded in the
# image labels by .github/workflows/cd.yaml. Both stages use the same base so the
# virtual environment built in `build` runs on the runtime's Python and glibc.
# Where no registry is reachable, scripts/build-image.sh passes a stand-in of the
# same Debian release and Python minor as PYTHON_IMAGE (docs/deployment.md).

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

########################################################################
# Stage 1: the runtime's virtual environment, installed, trimmed and compiled
########################################################################
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# binutils: `strip` for the shared libraries below; libgomp1: so that the check after
# stripping can load LightGBM's library. This stage only: the runtime gets no toolchain.
# DL3008 (pin apt versions) is ignored on purpose, see the runtime stage.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends binutils libgomp1 \
 && rm -rf /var/lib/apt/lists/*

# Everything the image runs lives in one virtual environment, copied whole into the
# runtime stage (one layer, nothing of this stage's pip, caches or binutils).
RUN python -m venv --without-pip /opt/venv
WORKDIR /src

# Dependencies first (this layer is cached while only the code changes): exactly the
# pins of requirements.lock (scripts/lock.sh), every download checked against its hash,
# no resolver decisions at build time. All of them ship manylinux wheels, so no compiler.
# Build secret `pip-ca` (optional): a CA bundle for a registry behind a TLS-intercepting
# proxy (scripts/build-image.sh passes the machine's); it is mounted for this step only
# and never stored in a layer. The cache mount keeps pip's downloads between builds.
COPY requirements.lock ./
RUN --mount=type=secret,id=pip-ca --mount=type=cache,target=/root/.cache/pip \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
 && python -m pip --python /opt/venv/bin/python install --require-hashes --no-deps --no-compile \
        -r requirements.lock

# Drop what a runtime never reads (sizes measured: docs/deployment.md "Image size"):
#   - the test suites bundled inside numpy/pandas/scipy/sklearn/pyarrow/...
#   - pyarrow's Arrow Flight libraries (nothing here speaks Flight; only pyarrow.flight
#     links them), its C++ include and source trees (only for compiling extensions),
#     and the second and third identical copies of its libarrow_python* libraries (the
#     wheel format has no symlinks: they become links to the .so.NNNN the others load)
#   - botocore's API models of the ~400 AWS services the code never calls: boto3 is
#     here for MLflow's S3 artifact store, which needs S3 and, for the credential chain
#     (IRSA web identity, SSO), STS and SSO
#   - C/C++/Cython sources, C headers, static libraries and type stubs of every package
#     (read when compiling against a package or type-checking it, never by an import)
#   - fontTools but the four modules matplotlib's Agg (PNG) path imports (fontTools.agl,
#     through matplotlib.dviread); the rest serves the PDF/PS/SVG backends, and the plots
#     are PNG. Should a matplotlib update import more of it, the build's record step (train
#     writes the plots) fails with the ImportError: keep that module here
#   - matplotlib's sample data and the fonts Agg never draws with: the PDF/PS core and AFM
#     fonts, and DejaVu Serif (DejaVu Sans, the default, with its Mono and Display faces,
#     and mathtext's STIX and Computer Modern, its fallback, stay)
#   - Pillow's codecs matplotlib's PNG writer (PIL._imaging, which links none of them)
#     never loads: fonts (ImageFont; matplotlib draws text with its own FreeType), colour
#     management, WebP, AVIF, Tk. Pillow imports each behind `except ImportError` and
#     then reports that format as unsupported
#   - numpy.distutils (a build tool) and databricks-sdk's modules (only MLflow's Databricks
#     integrations import them, for databricks:// URIs; the namespace package stays)
#   - identical copies of libgfortran/libquadmath in scipy.libs: links to numpy.libs' ones
#     (the loader follows the link; both were loaded under the same name anyway)
# The record step below runs train, score and serve on what is left; the image tests
# check the plots, the MLflow logging and the Delta/Parquet writes in the container.
# Then strip the symbol tables of the shared libraries, except those auditwheel
# grafted into `*.libs/` (patchelf rewrote them; strip breaks their load segments), and
# load every stripped library once so a broken one fails the build, not a job at 02:30
# (os._exit: libraries loaded bare, outside their Python modules, must not run their
# destructors at interpreter exit).
ARG SITE=/opt/venv/lib/python3.11/site-packages
RUN find "${SITE}" -mindepth 2 -depth -type d -name tests -exec rm -rf {} + \
 && rm -rf "${SITE}/pyarrow/include" "${SITE}/pyarrow/src" \
           "${SITE}"/pyarrow/*flight* "${SITE}"/pyarrow/_pyarrow_cpp_tests* \
 && for lib in "${SITE}"/pyarrow/lib*.so.[0-9]*[0-9]; do \
      case "$lib" in *.so.*.*) continue ;; esac; \
      for copy in "${lib%.so.*}.so" "$lib".*.*; do \
        if [ -f "$copy" ] && cmp -s "$lib" "$copy"; then ln -sf "$(basename "$lib")" "$copy"; fi; \
      done; \
    done \
 && find "${SITE}/botocore/data" -mindepth 1 -maxdepth 1 -type d \
        ! -name s3 ! -name sts ! -name sso ! -name sso-oidc -exec rm -rf {} + \
 && find "${SITE}" -type f \( -name '*.c' -o -name '*.cpp' -o -name '*.h' -o -name '*.pyx' -o -name '*.pxd' \
        -o -name '*.pxi' -o -name '*.tp' -o -name '*.a' -o -name '*.pyi' \) -delete \
 && find "${SITE}/fontTools" -mindepth 1 -depth ! -path "${SITE}/fontTools/__init__.py" \
        ! -path "${SITE}/fontTools/agl.py" ! -path "${SITE}/fontTools/misc" \
        ! -path "${SITE}/fontTools/misc/__init__.py" ! -path "${SITE}/fontTools/misc/loggingTools.py" \
        ! -path "${SITE}/fontTools/misc/textTools.py" -exec rm -rf {} + \
 && MPL="${SITE}/matplotlib/mpl-data" \
 && rm -rf "${MPL}/sample_data" "${MPL}/fonts/afm" "${MPL}/fonts/pdfcorefonts" \
           "${MPL}"/fonts/ttf/DejaVuSerif* \
 && rm -f "${SITE}"/PIL/_imagingft.* "${SITE}"/PIL/_imagingcms.* "${SITE}"/PIL/_webp.* "${SITE}"/PIL/_avif.* \
          "${SITE}"/PIL/_imagingtk.* "${SITE}"/pillow.libs/libfreetype-* "${SITE}"/pillow.libs/libharfbuzz-* \
          "${SITE}"/pillow.libs/libpng16-* "${SITE}"/pillow.libs/libbrotli* "${SITE}"/pillow.libs/liblcms2-* \
          "${SITE}"/pillow.libs/libwebp* "${SITE}"/pillow.libs/libsharpyuv-* "${SITE}"/pillow.libs/libavif-* \
 && rm -rf "${SITE}/numpy/distutils" "${SITE}/databricks/sdk" \
 && for lib in "${SITE}"/scipy.libs/*; do \
      twin="${SITE}/numpy.libs/$(basename "$lib")"; \
      if [ -f "$twin" ] && cmp -s "$lib" "$twin"; then ln -sf "../numpy.libs/$(basename "$lib")" "$lib"; fi; \
    done \
 && find "${SITE}" -type f -name '*.so*' ! -path '*.libs/*' -exec strip --strip-unneeded {} + \
 && /opt/venv/bin/python -c "import ctypes, os, pathlib, sys; \
      libs = [p for p in pathlib.Path(sys.argv[1]).rglob('*.so*') if '.libs/' not in str(p) and not p.is_symlink()]; \
      [ctypes.CDLL(str(p)) for p in libs]; print(len(libs), 'stripped libraries load', flush=True); \
      os._exit(0)" "${SITE}"

# The project itself (.dockerignore keeps tests, data, mlruns, caches and .git out),
# without dependencies (all are above), then pip's consistency check of the whole set.
COPY . .
RUN --mount=type=secret,id=pip-ca --mount=type=cache,target=/root/.cache/pip \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
 && python -m pip wheel --no-deps --wheel-dir /tmp/dist . \
 && python -m pip --python /opt/venv/bin/python install --no-deps --no-index --no-compile /tmp/dist/churn-*.whl \
 && python -m pip --python /opt/venv/bin/python check

# Byte-code for exactly what runs (scripts/record_imports.py): the image's entrypoints run
# once here on the trimmed environment, as the image runs them (train in the SageMaker
# layout with its plots and MLflow logging, score to a Delta table, serve under gunicorn),
# recording every module they import; those, and only those, get a .pyc. The root
# filesystem is read-only at run time (and PYTHONDONTWRITEBYTECODE=1), so without a shipped
# .pyc each process start compiles what it imports again; a module no recorded path imports
# keeps its .py only (still importable, compiled in memory). The official base ships no .pyc
# of its standard library, so the modules of it that run get theirs in /opt/stdlib-pyc.
# `unchecked-hash` .pyc stay valid whatever the file times after COPY. A failing entrypoint
# fails the build here, naming the step. Cold start and sizes: bench/bench_image.py.
RUN python scripts/record_imports.py --venv /opt/venv --stdlib-pyc-root /opt/stdlib-pyc

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

# The whole environment from stage 1 in one layer, owned by root (read-only to the app),
# and the .pyc of the standard library modules that run (a tree mirroring /).
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/stdlib-pyc/ /

ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    DVC_NO_ANALYTICS=1 \
    LOG_FORMAT=json \
    MPLCONFIGDIR=/tmp/matplotlib \
    XDG_CACHE_HOME=/tmp/.cache \
    SAGEMAKER_BIND_TO_PORT=8080 \
    HOME=/home/churn

# The three entrypoints import with the runtime's own libraries (libgomp1 above).
RUN python -c "import churn, churn_jobs.cli, churn_jobs.nightly_job, churn_serve.server, lightgbm, sklearn, pandas, pyarrow.parquet, deltalake, mlflow.sklearn, skops.io, flask, gunicorn, prometheus_client"

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
