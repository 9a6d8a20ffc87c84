# shellcheck shell=bash disable=SC2034  # sourced: the variables are for the scripts that source it
# Where the box lives and its addresses (sourced by the other scripts). Every address is inside $NETNS.
NETNS=katib-box
NODE_NAME=katib-box
NODE_LINK=kbox0                 # a bridge with no ports: it holds the node's address and the default route
NODE_IP=10.201.0.2
POD_CIDR=10.244.0.0/24          # cni0, the CNI bridge
SERVICE_CIDR=10.96.0.0/16
SERVICE_API_IP=10.96.0.1        # the `kubernetes` Service: the first address of SERVICE_CIDR
DNS_IP=10.96.0.10
API_PORT="${KATIB_BOX_API_PORT:-16443}"   # on 127.0.0.1, for kubectl and the Python client on the host

STATE=/var/lib/katib-box        # certificates, etcd, containerd's images, the kubelet's pods
RUN=/run/katib-box              # pids, sockets
LOGS="$STATE/logs"
PKI="$STATE/pki"
CONTAINERD_SOCK="$RUN/containerd/containerd.sock"
VOLUMES=24                      # local PersistentVolumes under $STATE/volumes (box.sh volumes)

# Images the box builds of its own (Katib's keep the names its manifests and katib-config give them)
PAUSE_IMAGE="localhost/katib-box/pause:$PAUSE_VERSION"
COREDNS_IMAGE="localhost/katib-box/coredns:$COREDNS_VERSION"
POSTGRES_IMAGE=localhost/katib-box/postgres:15-bookworm   # Debian's PostgreSQL 15 for Katib's postgres:14.5-alpine
