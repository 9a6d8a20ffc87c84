#!/usr/bin/env bash
# The container tier on a machine with no Docker engine and no registry images:
# podman (runc, cgroupfs) from Debian's packages, a Debian bookworm base image
# made with debootstrap, the project image built from our Dockerfile on it, and
# podman's Docker-compatible API socket for kfp.local's DockerRunner.
#
#   scripts/containers.sh setup     # install and configure podman (root; idempotent)
#   scripts/containers.sh base      # katib-digits-base:bookworm (Debian + python3), once
#   scripts/containers.sh build     # katib-digits:test from the Dockerfile on that base
#   scripts/containers.sh service   # podman's Docker API at $SOCKET (background)
#   scripts/containers.sh stop      # stop that API service
#   scripts/containers.sh all       # setup, base, build, service
#
# Environment: IMAGE (katib-digits:test), BASE (katib-digits-base:bookworm),
# SOCKET (/run/katib-digits-podman.sock), CA (/etc/ssl/certs/ca-certificates.crt:
# the machine's CA bundle, mounted into the build so pip verifies TLS there).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE="${IMAGE:-katib-digits:test}"
BASE="${BASE:-katib-digits-base:bookworm}"
SOCKET="${SOCKET:-/run/katib-digits-podman.sock}"
CA="${CA:-/etc/ssl/certs/ca-certificates.crt}"
CONF=/etc/containers/containers.conf

log() { printf '%s containers.sh: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

setup() {
  local missing=()
  for tool in podman buildah runc debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  if ((${#missing[@]})); then
    log "installing ${missing[*]} (and their helpers) from Debian's packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah runc debootstrap uidmap \
      fuse-overlayfs slirp4netns >/dev/null
  fi
  # crun refuses this machine's hybrid cgroups and the default ulimits exceed the sandbox's.
  mkdir -p /etc/containers
  cat >"$CONF" <<'EOF'
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
  podman info --format '{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}}' >&2
}

base() {
  if podman image exists "$BASE"; then log "$BASE exists"; return; fi
  local root
  root="$(mktemp -d /var/tmp/katib-digits-base.XXXXXX)"
  log "debootstrap bookworm into $root (Debian's python3 3.11, as python:3.11-slim has)"
  debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
    bookworm "$root" >/dev/null
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | podman import --change 'CMD ["python3"]' - "$BASE" >/dev/null
  rm -rf "$root"
  log "$BASE imported"
}

build() {
  log "building $IMAGE from the Dockerfile on $BASE"
  podman build --build-arg PYTHON_IMAGE="localhost/$BASE" --build-arg PIP_CERT=/host-ca.crt \
    -v "$CA:/host-ca.crt:ro" -t "$IMAGE" -f Dockerfile . >&2
}

service() {
  if [[ -S "$SOCKET" ]] && curl -s --unix-socket "$SOCKET" http://d/_ping >/dev/null 2>&1; then
    log "podman API already at $SOCKET"; return
  fi
  rm -f "$SOCKET"
  nohup podman system service --time=0 "unix://$SOCKET" >/var/tmp/katib-digits-podman-service.log 2>&1 &
  for _ in $(seq 50); do
    [[ -S "$SOCKET" ]] && curl -s --unix-socket "$SOCKET" http://d/_ping >/dev/null 2>&1 && break
    sleep 0.2
  done
  log "podman API at $SOCKET (DOCKER_HOST=unix://$SOCKET)"
}

stop() {
  pkill -f "podman system service --time=0 unix://$SOCKET" || true
  rm -f "$SOCKET"
}

case "${1:-all}" in
  setup) setup ;;
  base) base ;;
  build) build ;;
  service) service ;;
  stop) stop ;;
  all) setup; base; build; service ;;
  *) echo "usage: $0 setup|base|build|service|stop|all" >&2; exit 2 ;;
esac
