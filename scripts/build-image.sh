#!/usr/bin/env bash
# Build the container image from the Dockerfile, on any of our machines; idempotent.
#
#   bash scripts/build-image.sh            -> image churn:dev (IMAGE=name:tag to change it)
#
# - With a Docker engine (`docker info` answers): `docker build` (BuildKit).
# - Otherwise: `buildah bud --isolation chroot` (Debian package buildah), the image lands in
#   the local containers storage where `buildah`/`podman` find it as localhost/churn:dev.
# - Base image: the Dockerfile's default (the official python:3.11.14-slim-bookworm) when it
#   is available or can be pulled. When it cannot (no registry reachable), a stand-in of the
#   same Debian release and Python minor is built once with debootstrap and cached:
#   Debian bookworm's python3 (3.11) made to look like the official image (python and pip
#   in /usr/local/bin, site-packages in /usr/local/lib/python3.11, no .pyc), passed as
#   --build-arg PYTHON_IMAGE. PYTHON_IMAGE=... forces a base.
# - pip inside the build reaches the package registry with the machine's CA bundle (PIP_CERT,
#   else SSL_CERT_FILE, else /etc/ssl/certs/ca-certificates.crt), given as the build secret
#   `pip-ca`: mounted for the install steps only, never stored in the image.
# A failure ends with one line naming the step that failed and why.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE="${IMAGE:-churn:dev}"
OFFICIAL_BASE="$(sed -n 's/^ARG PYTHON_IMAGE=//p' Dockerfile)"
# Bump the revision when the stand-in recipe below changes, so the cached one is rebuilt.
STANDIN_BASE="localhost/churn-python-standin:3.11-bookworm-r3"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
LOG_DIR="${BUILD_LOG_DIR:-${TMPDIR:-/tmp}}"
step="start"
log=""

say() { echo "build-image: [$(date +%H:%M:%S)] $*"; }

on_exit() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    local detail=""
    if [ -n "$log" ] && [ -f "$log" ]; then
      # The last Dockerfile step buildah/docker started, and the last error line it printed.
      local last_step last_error
      last_step="$(grep -oE '(STEP [0-9]+/[0-9]+: .*|#[0-9]+ \[[^]]+\] .*)' "$log" | tail -n 1 | cut -c1-90 || true)"
      last_error="$(grep -iE '(error|failed|denied|not found|no such|exit code)' "$log" \
        | grep -vE 'building at STEP|subprocess exited|^ *#|did not complete successfully' | tail -n 1 | cut -c1-160 || true)"
      detail=" at Dockerfile ${last_step:-?}: ${last_error:-see $log}"
    fi
    echo "build-image: FAILED in step '${step}'${detail} (exit ${status}; full log: ${log:-above})" >&2
  fi
}
trap on_exit EXIT

need() {  # need TOOL APT-PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  step="tools"
  echo "build-image: '$1' not found: install it with 'apt-get install -y $2' (Debian package $2)" >&2
  exit 2
}

ca_bundle() {
  local candidate
  for candidate in "${PIP_CERT:-}" "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt; do
    if [ -n "$candidate" ] && [ -s "$candidate" ]; then echo "$candidate"; return 0; fi
  done
  return 0
}

# ------------------------------------------------------------------ engine
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  engine=docker
else
  engine=buildah
  need buildah buildah
fi
say "engine: ${engine}; image: ${IMAGE}"

image_exists() {
  if [ "$engine" = docker ]; then docker image inspect "$1" >/dev/null 2>&1
  else buildah inspect --type image "$1" >/dev/null 2>&1; fi
}

# ------------------------------------------------------------------ base image
build_standin() {
  step="stand-in base (debootstrap)"
  need debootstrap debootstrap
  [ "$(id -u)" -eq 0 ] || { echo "build-image: debootstrap needs root" >&2; exit 2; }
  local work rootfs
  work="$(mktemp -d "${TMPDIR:-/tmp}/churn-standin.XXXXXX")"
  rootfs="$work/rootfs"
  # Cleaned up however this function ends (the EXIT trap reports the failure).
  trap 'rm -rf "$work"; on_exit' EXIT
  say "stand-in base: debootstrap bookworm (minbase + python3-venv) from ${DEBIAN_MIRROR}"
  mkdir -p /var/cache/churn-standin-debs
  debootstrap --variant=minbase --cache-dir=/var/cache/churn-standin-debs --include=python3-venv \
    bookworm "$rootfs" "$DEBIAN_MIRROR" > "$work/debootstrap.log" 2>&1 \
    || { tail -n 5 "$work/debootstrap.log" >&2; echo "build-image: debootstrap failed" >&2; exit 1; }
  say "stand-in base: python at the official image's paths (venv --copies in /usr/local)"
  chroot "$rootfs" /usr/bin/python3.11 -m venv --copies /usr/local
  chroot "$rootfs" /usr/local/bin/python -m pip --version >/dev/null
  # What the official slim image does not carry either: apt lists and caches, docs, man pages,
  # locales, and byte-code: it deletes every .pyc of its Python (Debian's postinst compiled
  # them here), so a read-only container compiles the standard library on every start unless
  # the image brings .pyc for it (the Dockerfile's record_imports step does, for what runs).
  # The Debian archive is reached over plain http (apt checks signatures), so the runtime
  # stage's apt-get needs no CA bundle of this machine.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
         "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
         "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*.log "$rootfs"/debootstrap
  find "$rootfs/usr/lib/python3.11" "$rootfs/usr/local" -depth -type d -name __pycache__ -exec rm -rf {} +
  echo "deb ${DEBIAN_MIRROR} bookworm main" > "$rootfs/etc/apt/sources.list"
  # As Debian's official container images do: apt keeps no package caches (otherwise every
  # `apt-get install` layer carries ~80 MB of /var/cache/apt/*.bin).
  cat > "$rootfs/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
  say "stand-in base: importing $(du -sm "$rootfs" | cut -f1) MB as ${STANDIN_BASE}"
  tar -C "$rootfs" --numeric-owner -cf "$work/rootfs.tar" .
  local ctr
  ctr="$(buildah from scratch)"
  buildah add --quiet "$ctr" "$work/rootfs.tar" / >/dev/null
  buildah config --env PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd python3 \
    --label org.opencontainers.image.description="Stand-in for ${OFFICIAL_BASE}: Debian bookworm + Debian python3.11 (scripts/build-image.sh)" \
    "$ctr"
  buildah commit --quiet --rm "$ctr" "$STANDIN_BASE" >/dev/null
  rm -rf "$work"
  trap on_exit EXIT
}

if [ -n "${PYTHON_IMAGE:-}" ]; then
  base="$PYTHON_IMAGE"
  say "base: ${base} (from PYTHON_IMAGE)"
elif [ "$engine" = docker ] || image_exists "$OFFICIAL_BASE" \
     || { step="pull base"; say "base: trying to pull ${OFFICIAL_BASE}"; timeout 120 buildah pull --quiet "docker.io/library/${OFFICIAL_BASE}" >/dev/null 2>&1; }; then
  base="$OFFICIAL_BASE"
  say "base: ${base} (the official image)"
else
  base="$STANDIN_BASE"
  if image_exists "$STANDIN_BASE"; then
    say "base: ${base} (cached stand-in; the official image cannot be pulled here)"
  else
    say "base: the official image cannot be pulled; building the stand-in ${base}"
    build_standin
  fi
fi

# ------------------------------------------------------------------ build
step="build"
log="$(mktemp "${LOG_DIR}/build-image.XXXXXX.log")"
ca="$(ca_bundle)"
args=(--build-arg "PYTHON_IMAGE=${base}" -t "$IMAGE" -f Dockerfile)
[ -n "$ca" ] && args+=(--secret "id=pip-ca,src=${ca}")
[ "$base" = "$STANDIN_BASE" ] && args+=(--label "org.opencontainers.image.base.name=${STANDIN_BASE}")
started=$SECONDS
say "building ${IMAGE} on ${base} (log: ${log})"
if [ "$engine" = docker ]; then
  DOCKER_BUILDKIT=1 docker build --progress=plain "${args[@]}" . 2>&1 | tee "$log"
else
  # --layers: reuse cached steps (the dependency layer survives code changes);
  # --force-rm: a failed step leaves no working container behind;
  # --format docker: keeps HEALTHCHECK, which the OCI format has no field for.
  buildah bud --isolation chroot --layers --force-rm --format docker "${args[@]}" . 2>&1 | tee "$log"
fi
step="inspect"
if [ "$engine" = docker ]; then
  size="$(( $(docker image inspect "$IMAGE" --format '{{.Size}}') / 1048576 )) MiB"
else
  size="$(buildah images --format '{{.Size}}' "$IMAGE" | sed -n 1p)"
fi
say "built ${IMAGE} in $((SECONDS - started)) s, ${size} uncompressed (per layer: python bench/bench_image.py)"
rm -f "$log"
log=""
