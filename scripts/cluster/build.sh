#!/usr/bin/env bash
# Builds the box's binaries from upstream sources on the Go module proxy, once per version:
#
#   scripts/cluster/build.sh kubernetes   # kubelet, kube-apiserver, -controller-manager, -scheduler, -proxy, kubectl
#   scripts/cluster/build.sh etcd         # etcd (go.etcd.io/etcd/server/v3)
#   scripts/cluster/build.sh coredns      # CoreDNS with the plugins the box's Corefile uses
#   scripts/cluster/build.sh katib        # Katib's Go commands: controller, db-manager, metrics collector, goptuna
#   scripts/cluster/build.sh all
#
# Each lands in $CLUSTER_CACHE/<name>-<version>/ (versions.sh); a folder that is there is not rebuilt.
# One `go build` per module builds its commands together, so they share the compile and the Go build cache.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/versions.sh"

log() { printf '%s build.sh: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# go_build NAME VERSION MODULE_DIR LDFLAGS PACKAGE...: build PACKAGEs of MODULE_DIR into the cache.
go_build() {
  local name=$1 version=$2 module=$3 ldflags=$4; shift 4
  local out="$CLUSTER_CACHE/$name-$version"
  if [[ -f "$out/.built" ]]; then log "$name $version cached in $out"; return; fi
  log "building $name $version (cold: minutes; the Go caches make the next build fast)"
  local start=$SECONDS tmp="$out.tmp"
  rm -rf "$tmp" && mkdir -p "$tmp"
  (cd "$module" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w $ldflags" -o "$tmp/" "$@")
  touch "$tmp/.built"
  rm -rf "$out" && mv "$tmp" "$out"
  log "$name $version built in $((SECONDS - start)) s: $(find "$out" -maxdepth 1 -type f ! -name '.*' -printf '%f ')"
}

kubernetes() {
  local v=$KUBERNETES_VERSION minor=${KUBERNETES_VERSION#v1.}
  minor=${minor%%.*}
  local ldflags=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  go_build kubernetes "$v" "$HERE/modules/kubernetes" "$ldflags" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl
}

etcd() {
  go_build etcd "$ETCD_VERSION" "$HERE/modules/etcd" "" go.etcd.io/etcd/server/v3
  # go names the binary of .../server/v3 "server"
  [[ -x "$CLUSTER_CACHE/etcd-$ETCD_VERSION/etcd" ]] || mv "$CLUSTER_CACHE/etcd-$ETCD_VERSION/server" "$CLUSTER_CACHE/etcd-$ETCD_VERSION/etcd"
}

coredns() {
  go_build coredns "$COREDNS_VERSION" "$HERE/modules/coredns" "" katib-digits/cluster/coredns
}

# Katib's Go commands, each in its own folder (the four main packages are all named v1beta1 or similar).
katib() {
  local out="$CLUSTER_CACHE/katib-$KATIB_VERSION"
  if [[ -f "$out/.built" ]]; then log "katib $KATIB_VERSION cached in $out"; return; fi
  log "building Katib $KATIB_VERSION's Go commands"
  local start=$SECONDS name pkg tmp="$out.tmp"
  rm -rf "$tmp" && mkdir -p "$tmp"
  for name in katib-controller:katib-controller/v1beta1 katib-db-manager:db-manager/v1beta1 \
      file-metricscollector:metricscollector/v1beta1/file-metricscollector goptuna-suggestion:suggestion/goptuna/v1beta1; do
    pkg="github.com/kubeflow/katib/cmd/${name#*:}"
    (cd "$HERE/modules/katib" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" \
      -o "$tmp/${name%%:*}" "$pkg")
  done
  touch "$tmp/.built"
  rm -rf "$out" && mv "$tmp" "$out"
  log "katib $KATIB_VERSION built in $((SECONDS - start)) s"
}

case "${1:-all}" in
  kubernetes) kubernetes ;;
  etcd) etcd ;;
  coredns) coredns ;;
  katib) katib ;;
  all) kubernetes; etcd; coredns; katib ;;
  *) echo "usage: $0 kubernetes|etcd|coredns|katib|all" >&2; exit 2 ;;
esac
