#!/usr/bin/env bash
# Katib on the box (after box.sh has the cluster up):
#
#   scripts/cluster/katib.sh install   # Katib's manifests (katib/kustomization.yaml), Ready as Katib's CI checks it,
#                                      # then this project's asha service registered as deploy/katib-config/asha.yaml says
#   scripts/cluster/katib.sh smoke     # the webhook admits Katib's valid test Experiment and rejects its invalid one
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
source "$HERE/versions.sh"
source "$HERE/layout.sh"
KUBECTL="${KUBECTL:-$HERE/kubectl}"   # scripts/e2e-kind.sh: KUBECTL=kubectl, another cluster
PY="${PYTHON:-$REPO/.venv/bin/python}"

log() { printf '%s katib.sh: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
module() { GOFLAGS=-mod=mod go mod download -json "github.com/kubeflow/katib@$KATIB_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p'; }

install() {
  local start=$SECONDS dir="${KATIB_WORK:-$STATE/katib}"
  rm -rf "$dir" && mkdir -p "$dir/overlay"
  cp -r "$(module)/manifests" "$dir/" && chmod -R u+w "$dir/manifests"
  cp "$HERE/katib/kustomization.yaml" "$dir/overlay/"
  "$KUBECTL" kustomize "$dir/overlay" >"$dir/katib.yaml"
  "$KUBECTL" apply -f "$dir/katib.yaml" >/dev/null
  # what Katib's CI waits for (test/e2e/v1beta1/scripts/gh-actions/setup-katib.sh), less the UI
  until "$KUBECTL" -n kubeflow get pods -l katib.kubeflow.org/component=controller -o name 2>/dev/null | grep -q pod; do sleep 1; done
  if ! "$KUBECTL" wait --for=condition=ContainersReady=True --timeout=300s -n kubeflow pod \
      -l "katib.kubeflow.org/component in (postgres,controller,db-manager)" >/dev/null; then
    "$KUBECTL" -n kubeflow get pods -o wide >&2
    "$KUBECTL" -n kubeflow describe pods >&2
    log "Katib's pods did not become ContainersReady within 300 s"
    exit 1
  fi
  register_asha
  smoke
  log "Katib $KATIB_VERSION ready in $((SECONDS - start)) s"
}

# deploy/katib-config/asha.yaml's runtime.suggestions entry merged into the katib-config ConfigMap, the way that
# file tells a user to (every other entry kept)
register_asha() {
  local dir="${KATIB_WORK:-$STATE/katib}"
  "$KUBECTL" -n kubeflow get configmap katib-config -o jsonpath='{.data.katib-config\.yaml}' >"$dir/katib-config.yaml"
  "$PY" - "$dir/katib-config.yaml" "$REPO/deploy/katib-config/asha.yaml" <<'PY'
import sys

import yaml

path, fragment = sys.argv[1:]
config = yaml.safe_load(open(path))
entries = yaml.safe_load(open(fragment))["runtime"]["suggestions"]
names = {entry["algorithmName"] for entry in entries}
suggestions = config["runtime"]["suggestions"]
suggestions[:] = [s for s in suggestions if s["algorithmName"] not in names] + entries
yaml.safe_dump(config, open(path, "w"), sort_keys=False)
PY
  "$KUBECTL" -n kubeflow create configmap katib-config --from-file=katib-config.yaml="$dir/katib-config.yaml" \
    --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
  log "asha registered in katib-config (deploy/katib-config/asha.yaml)"
}

smoke() {  # as Katib's CI does before its runs
  local testdata out
  testdata="$(module)/test/e2e/v1beta1/testdata"
  local deadline=$((SECONDS + 120))
  until "$KUBECTL" apply -f "$testdata/valid-experiment.yaml" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { "$KUBECTL" apply -f "$testdata/valid-experiment.yaml"; exit 1; }
    sleep 2   # the controller patches the webhooks' CA bundle after it starts
  done
  "$KUBECTL" delete -f "$testdata/valid-experiment.yaml" --wait=true >/dev/null
  if out="$("$KUBECTL" apply -f "$testdata/invalid-experiment.yaml" 2>&1)"; then
    log "Katib's webhook admitted its own invalid Experiment: $out"
    "$KUBECTL" delete -f "$testdata/invalid-experiment.yaml" >/dev/null 2>&1 || true
    exit 1
  fi
  log "webhook: valid Experiment admitted, invalid one rejected (${out#*denied the request: })"
}

case "${1:-}" in
  install) install ;;
  smoke) smoke ;;
  *) echo "usage: $0 install|smoke" >&2; exit 2 ;;
esac
