# shellcheck shell=bash disable=SC2034  # sourced: the variables are for the scripts that source it
# The box's pinned versions and where its builds are cached (sourced by the other scripts).
# Each built thing is cached under a folder named by its version, so a change here rebuilds only it.
KUBERNETES_VERSION=v1.34.12   # the newest v1.34 (a version Katib v0.19's CI tests) the Go module proxy serves
ETCD_VERSION=v3.6.5           # what Kubernetes 1.34 pins (hack/lib/etcd.sh)
COREDNS_VERSION=v1.12.1       # what kubeadm 1.34 deploys (cmd/kubeadm/app/constants)
PAUSE_VERSION=3.10.1          # the sandbox image kubeadm 1.34 names; compiled from Kubernetes' pause.c
KATIB_VERSION=v0.19.0

CLUSTER_CACHE="${KATIB_BOX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/katib-digits/cluster}"
