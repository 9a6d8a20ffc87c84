#!/usr/bin/env bash
# The box's images: no registry can be pulled from, so every image is built here (podman, on the debootstrap
# base of scripts/containers.sh) and imported into the box's containerd under the exact name its manifest uses.
#
#   scripts/cluster/images.sh build    # build what is missing (podman's layer cache makes a rebuild quick)
#   scripts/cluster/images.sh import   # import into the box's containerd what it lacks or has older
#   scripts/cluster/images.sh list     # the names
#
# Katib's images are built from the katib module at $KATIB_VERSION with the steps of its own Dockerfiles
# (cmd/**/Dockerfile): the Go commands from build.sh katib, the Python services' pkg/ and cmd/ folders with their
# requirements.txt installed by pip. Two differences, both in the base: Debian bookworm's python3 3.11 (Katib's
# python:3.11-slim is Debian bookworm with CPython 3.11) in a venv, and Debian for alpine under the Go commands.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
source "$HERE/versions.sh"
source "$HERE/layout.sh"

BASE="${BASE:-katib-digits-base:bookworm}"
CA="${CA:-/etc/ssl/certs/ca-certificates.crt}"
KATIB_IMAGES=ghcr.io/kubeflow/katib
TRIAL_IMAGE="docker.io/library/$("$REPO/scripts/image-tag")"  # katib-digits:<pyproject's version>
PYTHON_SERVICES=(suggestion-hyperopt:suggestion/hyperopt/v1beta1 suggestion-optuna:suggestion/optuna/v1beta1
  suggestion-hyperband:suggestion/hyperband/v1beta1 suggestion-skopt:suggestion/skopt/v1beta1
  earlystopping-medianstop:earlystopping/medianstop/v1beta1)
GO_SERVICES=(katib-controller:katib-controller katib-db-manager:katib-db-manager
  file-metrics-collector:file-metricscollector suggestion-goptuna:goptuna-suggestion)

log() { printf '%s images.sh: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

names() {
  echo "$PAUSE_IMAGE" "$COREDNS_IMAGE" "$POSTGRES_IMAGE" "$TRIAL_IMAGE"
  local entry
  for entry in "${GO_SERVICES[@]}" "${PYTHON_SERVICES[@]}"; do echo "$KATIB_IMAGES/${entry%%:*}:$KATIB_VERSION"; done
}

katib_module() { GOFLAGS=-mod=mod go mod download -json "github.com/kubeflow/katib@$KATIB_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p'; }

# from_files NAME CONTAINERFILE CONTEXT [podman build args]: build NAME unless it exists
build_image() {
  local name=$1 file=$2 context=$3; shift 3
  if podman image exists "$name" && [[ "${REBUILD:-}" != 1 ]]; then return; fi
  log "building $name"
  podman build -q --pull=never -f "$file" -t "$name" "$@" "$context" >/dev/null
}

pause() {
  podman image exists "$PAUSE_IMAGE" && return
  local dir src
  dir="$(mktemp -d)"
  src="$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')"
  gcc -Os -static -DVERSION="$PAUSE_VERSION" -o "$dir/pause" "$src/build/pause/linux/pause.c"
  strip "$dir/pause"
  printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$dir/Containerfile"
  build_image "$PAUSE_IMAGE" "$dir/Containerfile" "$dir"
  rm -rf "$dir"
}

coredns() {
  podman image exists "$COREDNS_IMAGE" && return
  local dir; dir="$(mktemp -d)"
  cp "$CLUSTER_CACHE/coredns-$COREDNS_VERSION/coredns" "$dir/"
  printf 'FROM scratch\nCOPY coredns /coredns\nUSER 65532:65532\nENTRYPOINT ["/coredns"]\n' >"$dir/Containerfile"
  build_image "$COREDNS_IMAGE" "$dir/Containerfile" "$dir"
  rm -rf "$dir"
}

postgres() {
  build_image "$POSTGRES_IMAGE" "$HERE/images/postgres.Containerfile" "$HERE/images" --build-arg BASE="localhost/$BASE"
}

katib_go() {
  local entry dir recipe
  for entry in "${GO_SERVICES[@]}"; do
    local name="$KATIB_IMAGES/${entry%%:*}:$KATIB_VERSION" binary=${entry#*:}
    dir="$(mktemp -d)"
    # cmd/<service>/Dockerfile's final stage: the binary in /app (goptuna: /opt/katib, group 0 writable)
    if [[ $binary == goptuna-suggestion ]]; then
      printf 'FROM localhost/%s\nENV TARGET_DIR=/opt/katib\nWORKDIR /opt/katib\nCOPY %s /opt/katib/\nRUN chgrp -R 0 /opt/katib && chmod -R g+rwX /opt/katib\nENTRYPOINT ["./%s"]\n' \
        "$BASE" "$binary" "$binary" >"$dir/Containerfile"
    elif [[ $binary == file-metricscollector ]]; then
      # Katib's alpine has busybox's pgrep, which the collector needs to stop an early-stopped trial (gopsutil's
      # Children runs `pgrep -P`); without it the sidecar dies and the trial is Failed, not EarlyStopped
      printf 'FROM localhost/%s\nRUN apt-get update -q && apt-get install -y -q --no-install-recommends procps && rm -rf /var/lib/apt/lists/*\nWORKDIR /app\nCOPY %s /app/\nENTRYPOINT ["./%s"]\n' \
        "$BASE" "$binary" "$binary" >"$dir/Containerfile"
    else
      printf 'FROM localhost/%s\nWORKDIR /app\nCOPY %s /app/\nENTRYPOINT ["./%s"]\n' "$BASE" "$binary" "$binary" >"$dir/Containerfile"
    fi
    # an image built from another recipe (an earlier version of this script) is rebuilt
    recipe="$(sha256sum <"$dir/Containerfile" | cut -c1-16)"
    printf 'LABEL katib-box.recipe=%s\n' "$recipe" >>"$dir/Containerfile"
    if [[ "$(podman image inspect --format '{{index .Labels "katib-box.recipe"}}' "$name" 2>/dev/null)" == "$recipe" ]]; then
      rm -rf "$dir"
      continue
    fi
    cp "$CLUSTER_CACHE/katib-$KATIB_VERSION/$binary" "$dir/"
    REBUILD=1 build_image "$name" "$dir/Containerfile" "$dir"
    rm -rf "$dir"
  done
}

katib_python() {
  local module entry context
  module="$(katib_module)"
  context="$(mktemp -d)"
  cp -r "$module/pkg" "$module/cmd" "$context/" && chmod -R u+w "$context"
  for entry in "${PYTHON_SERVICES[@]}"; do
    build_image "$KATIB_IMAGES/${entry%%:*}:$KATIB_VERSION" "$HERE/images/katib-python.Containerfile" "$context" \
      --build-arg BASE="localhost/$BASE" --build-arg SERVICE_DIR="cmd/${entry#*:}" \
      --build-arg PIP_CERT=/host-ca.crt -v "$CA:/host-ca.crt:ro"
  done
  rm -rf "$context"
}

trial() {  # our image, from our Dockerfile (scripts/containers.sh build), under the name experiments/ use
  IMAGE="$TRIAL_IMAGE" "$REPO/scripts/containers.sh" build
}

build() {
  local start=$SECONDS
  "$REPO/scripts/containers.sh" setup >/dev/null
  "$REPO/scripts/containers.sh" base
  pause
  coredns
  postgres
  katib_go
  katib_python
  trial
  log "images ready in $((SECONDS - start)) s"
}

# import: one archive of the images containerd lacks or holds at another ID, then `ctr images import`.
import() {
  local ctr=(ctr --address "$CONTAINERD_SOCK" -n k8s.io) wanted=() name id have
  mkdir -p "$STATE/imported"
  for name in $(names); do
    id="$(podman image inspect --format '{{.Id}}' "$name")"
    have="$(cat "$STATE/imported/$(echo "$name" | tr '/:' '__')" 2>/dev/null || true)"
    if [[ "$id" != "$have" ]] || ! "${ctr[@]}" images check "name==$name" 2>/dev/null | grep -q complete; then
      wanted+=("$name")
    fi
  done
  ((${#wanted[@]})) || { log "containerd has every image"; return; }
  local start=$SECONDS archive="$STATE/images.tar"
  log "importing ${#wanted[@]} images into the box's containerd"
  podman save -q --multi-image-archive -o "$archive" "${wanted[@]}"
  "${ctr[@]}" images import "$archive" >/dev/null
  rm -f "$archive"
  for name in "${wanted[@]}"; do
    podman image inspect --format '{{.Id}}' "$name" >"$STATE/imported/$(echo "$name" | tr '/:' '__')"
  done
  log "imported in $((SECONDS - start)) s"
}

case "${1:-}" in
  build) build ;;
  import) import ;;
  list) names | tr ' ' '\n' ;;
  trial) trial ;;
  *) echo "usage: $0 build|import|list|trial" >&2; exit 2 ;;
esac
