#!/usr/bin/env bash
# End-to-end on a throwaway kind cluster: Katib v0.19.0 standalone, our image,
# the manifests in deploy/, one shipped Experiment with a small budget, then
# retrain + predict with its result. Optionally also the Katib backend
# (pipeline/cluster/katib_api.py) and the KFP pipeline on KFP standalone.
#
# Needs: docker (or podman: KIND_EXPERIMENTAL_PROVIDER=podman), kind, kubectl, go, and the project set up
# (`make setup`). With IMAGES=build (no registry needed) every Katib image is built here as the Katib box
# builds it (scripts/cluster/images.sh, as Katib's own CI builds and loads its images) and loaded into kind;
# IMAGES=pull takes Katib's from its registry. The project's tests run this script against stand-ins for
# kind, kubectl, docker and the rest (tests/project/test_e2e_script.py) and check it with `bash -n` and
# ShellCheck; it has not been run on kind where the project is developed (no Docker engine there); the
# same Experiments do run on Katib there, on the box (make test-cluster, docs/cluster.md).
#
# Settings (environment):
#   EXPERIMENT=experiments/tpe.yaml  the Experiment to run
#   MAX_TRIALS=2 TRIAL_ROWS=600 TRIAL_EPOCHS=1  the small budget patched into a copy of it
#   TIMEOUT=1800                 seconds to wait for the Experiment (and for each other wait)
#   RUN_BACKEND=1                also run the same Experiment through pipeline/cluster/katib_api.py
#   WITH_KFP=0                   1: install KFP standalone ($KFP_VERSION) and run the pipeline there
#   KSERVE_SETUP=""              a command that installs KServe in the new cluster (e.g. KServe's quick
#                                install for your release); the KServe part (deploy/kserve/) runs only when
#                                the InferenceService CRD is there, so without it that part is skipped
#   KEEP_CLUSTER=0               1: leave the cluster up at the end
#   IMAGES=build                 build: every image built here and loaded (no registry); pull: Katib's pulled
#   NODE_IMAGE=kindest/node:v1.34.0  kind's node, pinned: Katib v0.19's CI tests Kubernetes 1.31-1.34, and its
#                                pod webhook needs >= 1.28
#   CLUSTER=katib-digits-e2e IMAGE=$(scripts/image-tag) KATIB_VERSION=v0.19.0 KFP_VERSION=2.15.0 (Kubeflow 1.11's)
set -euo pipefail

CLUSTER="${CLUSTER:-katib-digits-e2e}"
SHIPPED_IMAGE="$("$(dirname "$0")/image-tag")"  # katib-digits:<version>: the name experiments/ and deploy/ carry
IMAGE="${IMAGE:-$SHIPPED_IMAGE}"  # the pipeline's default too
KATIB_VERSION="${KATIB_VERSION:-v0.19.0}"
KFP_VERSION="${KFP_VERSION:-2.15.0}"
IMAGES="${IMAGES:-build}"
NODE_IMAGE="${NODE_IMAGE:-kindest/node:v1.34.0}"
EXPERIMENT="${EXPERIMENT:-experiments/tpe.yaml}"
MAX_TRIALS="${MAX_TRIALS:-2}"
TRIAL_ROWS="${TRIAL_ROWS:-600}"
TRIAL_EPOCHS="${TRIAL_EPOCHS:-1}"
TIMEOUT="${TIMEOUT:-1800}"
RUN_BACKEND="${RUN_BACKEND:-1}"
WITH_KFP="${WITH_KFP:-0}"
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"
NS=katib-digits
RUNNER="system:serviceaccount:kubeflow:pipeline-runner"  # KFP standalone runs every step as this account

cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
CLI="${KATIB_DIGITS:-.venv/bin/katib-digits}"
WORK="$(mktemp -d)"
PF_PID=""

log() { printf '\n== %s\n' "$*"; }

cleanup() {
  local rc=$?
  if [[ $rc -ne 0 ]]; then
    log "FAILED (exit $rc): cluster state"
    kubectl -n "$NS" get experiments,trials,suggestions,pods -o wide || true
    kubectl -n "$NS" describe experiments || true
  fi
  if [[ -n "$PF_PID" ]]; then kill "$PF_PID" 2>/dev/null || true; fi
  if [[ "$KEEP_CLUSTER" != 1 ]]; then kind delete cluster --name "$CLUSTER" || true; fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "e2e-kind.sh: needs $tool on PATH" >&2; exit 2; }
done
[[ -x "$PY" && -x "$CLI" ]] || { echo "e2e-kind.sh: run 'make setup' first (needs $PY and $CLI)" >&2; exit 2; }
[[ -f "$EXPERIMENT" ]] || { echo "e2e-kind.sh: $EXPERIMENT not found" >&2; exit 2; }

log "kind cluster $CLUSTER"
kind create cluster --name "$CLUSTER" --image "$NODE_IMAGE" --wait 120s

if [[ "$IMAGES" == build ]]; then
  log "every image built here (scripts/cluster/images.sh) and loaded into kind"
  scripts/cluster/images.sh build
  # shellcheck disable=SC2046  # one name per word
  podman save -q --multi-image-archive -o "$WORK/images.tar" $(scripts/cluster/images.sh list)
  kind load image-archive "$WORK/images.tar" --name "$CLUSTER"
  IMAGE="$SHIPPED_IMAGE"  # images.sh builds it as docker.io/library/$SHIPPED_IMAGE
  log "Katib $KATIB_VERSION from its manifests, as the box installs it (katib-standalone-postgres, no UI)"
  KUBECTL=kubectl KATIB_WORK="$WORK/katib" scripts/cluster/katib.sh install
else
  log "Katib $KATIB_VERSION (standalone)"
  kubectl apply -k "github.com/kubeflow/katib.git/manifests/v1beta1/installs/katib-standalone?ref=${KATIB_VERSION}"
  kubectl -n kubeflow wait --for=condition=Available deployment --all --timeout="${TIMEOUT}s"
  log "Katib's webhook admits a valid Experiment and rejects an invalid one (as Katib's CI checks)"
  KUBECTL=kubectl scripts/cluster/katib.sh smoke
  log "image $IMAGE"
  docker build -t "$IMAGE" .
  # `kind load docker-image` fails with Docker's containerd image store (kind #3795); an archive works with both.
  docker save "$IMAGE" -o "$WORK/image.tar"
  kind load image-archive "$WORK/image.tar" --name "$CLUSTER"
fi

log "namespace, RBAC, data volume"
kubectl apply -f deploy/namespace.yaml
kubectl -n "$NS" apply -f deploy/rbac.yaml -f deploy/data-pvc.yaml
sed "s|image: ${SHIPPED_IMAGE}|image: ${IMAGE}|" deploy/data-sample-job.yaml | kubectl -n "$NS" apply -f -
kubectl -n "$NS" wait --for=condition=Complete job/digit-recognizer-data-sample --timeout="${TIMEOUT}s"

can_i_katib_calls() {  # the runner may make every call the tune step makes in namespace $1
  "$PY" -c 'from pipeline.cluster.katib_api import required_rbac
for (group, plural), verbs in sorted(required_rbac().items()):
    for verb in sorted(verbs):
        print(verb, f"{plural}.{group}" if group else plural)' > "$WORK/verbs"
  while read -r verb resource; do
    kubectl auth can-i "$verb" "$resource" -n "$1" --as="$RUNNER"
  done < "$WORK/verbs"
}

log "KFP's runner account may make every call the tune step makes (deploy/rbac.yaml binds it)"
can_i_katib_calls "$NS"

log "a small-budget copy of $EXPERIMENT"
# The pipeline's small-budget copy (steps.smoke_copy, as the box's tier makes it): maxTrialCount by the budget
# rule, --max-rows and (not for hyperband/asha, whose epochs are the resource) --epochs appended, small requests.
"$PY" - "$EXPERIMENT" "$WORK/experiment.yaml" "$NS" "$IMAGE" "$MAX_TRIALS" "$TRIAL_ROWS" "$TRIAL_EPOCHS" <<'PY'
import sys

import yaml

from pipeline import lint
from pipeline.workflow.steps import smoke_copy

src, dst, ns, image, trials, rows, epochs = sys.argv[1:]
small = smoke_copy(lint.load(src), ns, int(trials), int(rows), int(epochs), requests={"cpu": "500m", "memory": "1Gi"})
for container in small.trial_spec["spec"]["template"]["spec"]["containers"]:
    if container["image"].startswith("katib-digits:"):
        container["image"] = image
        container["imagePullPolicy"] = "IfNotPresent"
yaml.safe_dump(small.raw, open(dst, "w"), sort_keys=False)
PY
"$CLI" lint "$WORK/experiment.yaml"
NAME="$("$PY" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["metadata"]["name"])' "$WORK/experiment.yaml")"

log "kubectl apply Experiment $NAME and wait"
kubectl apply -f "$WORK/experiment.yaml"
deadline=$((SECONDS + TIMEOUT))
while :; do
  true_conditions="$(kubectl -n "$NS" get experiment "$NAME" \
    -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type}{" "}{end}')"
  case " $true_conditions " in
    *" Succeeded "*) break ;;
    *" Failed "*) echo "Experiment $NAME failed" >&2; exit 1 ;;
  esac
  if ((SECONDS >= deadline)); then echo "Experiment $NAME: no result within ${TIMEOUT}s" >&2; exit 1; fi
  kubectl -n "$NS" get trials -l "katib.kubeflow.org/experiment=${NAME}" --no-headers || true
  sleep 15
done
kubectl -n "$NS" get experiment "$NAME" -o json > "$WORK/experiment.json"
kubectl -n "$NS" get experiment "$NAME" -o jsonpath='{.status.currentOptimalTrial}'
echo

log "retrain the best trial's parameters and predict"
"$CLI" train --params "$WORK/experiment.json" --experiment "$WORK/experiment.yaml" \
  --data data/sample --out "$WORK/model" --epochs 1 --ensemble 1
"$CLI" predict --model "$WORK/model" --data data/sample --out "$WORK/submission.csv"
rows="$(wc -l < "$WORK/submission.csv")"
[[ "$rows" -gt 1 ]] || { echo "submission.csv has no rows" >&2; exit 1; }
echo "submission.csv: $((rows - 1)) predictions"

if [[ -n "${KSERVE_SETUP:-}" ]]; then
  log "KServe setup: $KSERVE_SETUP"
  bash -c "$KSERVE_SETUP"
fi
if kubectl get crd inferenceservices.serving.kserve.io >/dev/null 2>&1; then
  log "KServe: the exported SavedModel on the data volume, both InferenceServices, a prediction from each"
  "$CLI" export --model "$WORK/model" --out "$WORK/models/digits"
  with_image() {  # the manifest with $IMAGE in every container that runs ours
    "$PY" - "$1" "$IMAGE" <<'PY'
import sys
import yaml

doc = yaml.safe_load(open(sys.argv[1]))
pod = doc["spec"]["predictor"] if doc["kind"] == "InferenceService" else doc["spec"]
for container in pod["containers"]:
    if container["image"].startswith("katib-digits:"):
        container["image"] = sys.argv[2]
print(yaml.safe_dump(doc, sort_keys=False))
PY
  }
  with_image deploy/data-shell-pod.yaml | kubectl -n "$NS" apply -f -
  kubectl -n "$NS" wait --for=condition=Ready pod/digit-recognizer-data-shell --timeout="${TIMEOUT}s"
  # where the pipeline's export step publishes (EXPORT_DIR), as version 1
  kubectl -n "$NS" exec digit-recognizer-data-shell -- mkdir -p /data/models/digits
  kubectl -n "$NS" cp "$WORK/models/digits/1" digit-recognizer-data-shell:/data/models/digits/1
  kubectl -n "$NS" delete pod digit-recognizer-data-shell --wait=true
  kubectl apply -f deploy/kserve/inferenceservice.yaml
  with_image deploy/kserve/custom-predictor.yaml | kubectl apply -f -
  # The first test row as one 28x28x1 instance: the shape TF Serving's signature takes, which ours accepts too.
  "$PY" -c 'import csv, gzip, json
row = next(csv.DictReader(gzip.open("data/sample/test.csv.gz", "rt")))
px = [int(row[f"pixel{i}"]) for i in range(784)]
print(json.dumps({"instances": [[[[v] for v in px[r * 28:(r + 1) * 28]] for r in range(28)]]}))' > "$WORK/instance.json"
  for isvc in digits digits-custom; do
    kubectl -n "$NS" wait --for=condition=Ready "inferenceservice/$isvc" --timeout="${TIMEOUT}s"
    pod="$(kubectl -n "$NS" get pod -l "serving.kserve.io/inferenceservice=$isvc" \
      -o jsonpath='{.items[0].metadata.name}')"
    # straight to the model server's port in the pod: no ingress needed, serverless or raw deployment
    kubectl -n "$NS" port-forward "pod/$pod" 18080:8080 >/dev/null 2>&1 &
    PF_PID=$!
    sleep 5
    curl -sf -H 'Content-Type: application/json' --data-binary @"$WORK/instance.json" \
      http://localhost:18080/v1/models/digits:predict > "$WORK/answer-$isvc.json"
    kill "$PF_PID"
    PF_PID=""
    "$PY" -c 'import json, sys
(p,) = json.load(open(sys.argv[1]))["predictions"]
assert len(p) == 10 and abs(sum(p) - 1) < 1e-3, p
print(sys.argv[2], "predicts", max(range(10), key=p.__getitem__))' "$WORK/answer-$isvc.json" "$isvc"
  done
else
  log "KServe not installed (no inferenceservices.serving.kserve.io CRD): deploy/kserve/ skipped"
fi

if [[ "$RUN_BACKEND" == 1 ]]; then
  log "the same Experiment through pipeline/cluster/katib_api.py (create, wait, delete)"
  "$PY" - "$WORK/experiment.yaml" "$NS" "$TIMEOUT" <<'PY'
import json
import sys

from pipeline import lint
from pipeline.cluster.katib_api import run_on_katib
from pipeline.katib.result import parse_result

path, ns, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3])
final = run_on_katib(lint.load(path).raw, ns, timeout_s=timeout, delete_after=True, poll_s=10)
print(final["metadata"]["name"], json.dumps(parse_result(final, "final").optimal.to_katib()))
PY
fi

if [[ "$WITH_KFP" == 1 ]]; then
  log "KFP $KFP_VERSION (standalone) and the pipeline"
  kubectl apply -k "github.com/kubeflow/pipelines/manifests/kustomize/cluster-scoped-resources?ref=${KFP_VERSION}"
  kubectl wait --for=condition=established --timeout=120s crd/applications.app.k8s.io
  kubectl apply -k "github.com/kubeflow/pipelines/manifests/kustomize/env/platform-agnostic?ref=${KFP_VERSION}"
  kubectl -n kubeflow wait --for=condition=Available deployment --all --timeout="${TIMEOUT}s"
  log "the runner KFP uses for every step may do what KFP's driver and launcher and our tune step do"
  kubectl auth can-i get configmaps/kfp-launcher -n kubeflow --as="$RUNNER"
  # the artifact store's Secret (SeaweedFS on 2.15's platform-agnostic install; the name is MinIO's, not re-checked)
  kubectl auth can-i get secrets/mlpipeline-minio-artifact -n kubeflow --as="$RUNNER"
  kubectl auth can-i create workflowtaskresults.argoproj.io -n kubeflow --as="$RUNNER"
  kubectl auth can-i patch workflowtaskresults.argoproj.io -n kubeflow --as="$RUNNER"
  can_i_katib_calls kubeflow
  # standalone KFP runs every step in its own namespace: the data claim goes there (docs/cluster.md, section 3)
  kubectl -n kubeflow apply -f deploy/data-pvc.yaml
  sed "s|image: ${SHIPPED_IMAGE}|image: ${IMAGE}|" deploy/data-sample-job.yaml | kubectl -n kubeflow apply -f -
  kubectl -n kubeflow wait --for=condition=Complete job/digit-recognizer-data-sample --timeout="${TIMEOUT}s"
  kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80 >/dev/null 2>&1 &
  PF_PID=$!
  sleep 5
  "$CLI" pipeline compile -o "$WORK/pipeline.yaml" --image "$IMAGE"
  # The small-budget copy above (its trials already carry --max-rows and, where allowed, --epochs), in the
  # run's namespace (no --namespace: standalone KFP would refuse another), a 1-epoch retrain.
  url="$("$CLI" pipeline run --host http://localhost:8080 --image "$IMAGE" \
    --experiment "$WORK/experiment.yaml" --max-trials "$MAX_TRIALS" --parallel 1 \
    --retrain-epochs 1 --ensemble 1 --timeout "$TIMEOUT" | tail -n 1)"
  echo "run: $url"
  "$PY" - "${url##*/}" "$TIMEOUT" <<'PY'
import sys

import kfp

run = kfp.Client(host="http://localhost:8080").wait_for_run_completion(sys.argv[1], timeout=int(sys.argv[2]))
print("pipeline run state:", run.state)
sys.exit(0 if run.state == "SUCCEEDED" else 1)
PY
fi

log "e2e passed"
