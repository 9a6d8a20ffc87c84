#!/usr/bin/env bash
# The Katib box: a real single-node Kubernetes, built from upstream sources (build.sh), with Katib v0.19.0 from
# its own manifests (katib.sh), inside a network namespace of its own. Root, Debian.
#
#   scripts/cluster/box.sh up       # build what is missing, start the cluster, install Katib; a no-op when running
#   scripts/cluster/box.sh down     # stop everything; no process, mount, namespace, cgroup or rule is left
#   scripts/cluster/box.sh status   # what runs, and the node
#   scripts/cluster/box.sh leftovers  # after down: anything left behind (exit 1), for CI
#   scripts/cluster/kubectl ...     # kubectl against the box, from the host (a loopback port)
#
# The network rule: every address the cluster uses (node, pods, Services, DNS) lives in the network namespace
# $NETNS, whose default route goes into a bridge with no ports, so nothing leaves it. The host has no link into
# it; the API reaches the host only as a unix socket turned into a port on 127.0.0.1 ($API_PORT).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/versions.sh"
source "$HERE/layout.sh"

log() { printf '%s box.sh: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "$*"; exit 1; }
in_ns() { nsenter --net="/run/netns/$NETNS" -- "$@"; }
K8S="$CLUSTER_CACHE/kubernetes-$KUBERNETES_VERSION"

# ---------------------------------------------------------------------------------------------- host packages
packages() {
  local missing=()
  for tool in containerd runc iptables conntrack socat openssl gcc; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  [[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
  ((${#missing[@]})) || return 0
  log "installing from Debian's packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containerd runc containernetworking-plugins iptables \
    conntrack socat openssl gcc libc6-dev >/dev/null
}

# ---------------------------------------------------------------------------------------------- network
network() {
  [[ -e "/run/netns/$NETNS" ]] || ip netns add "$NETNS"
  in_ns ip link set lo up
  if ! in_ns ip link show "$NODE_LINK" >/dev/null 2>&1; then
    in_ns ip link add "$NODE_LINK" type bridge   # no ports: it only holds the node's address
    in_ns ip addr add "$NODE_IP/24" dev "$NODE_LINK"
    in_ns ip link set "$NODE_LINK" up
    in_ns ip route add default dev "$NODE_LINK"   # kube-proxy and the kubelet want a default route; it leads nowhere
  fi
  in_ns sysctl -qw net.ipv4.ip_forward=1   # pods reach the node's address through cni0, inside the namespace only
  in_ns sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------- certificates
# One CA signs everything: the apiserver and kubelet serving certificates, the clients of the apiserver (admin,
# controller-manager, scheduler, kubelet, kube-proxy), the apiserver's client certificate for the kubelet and for
# etcd, and etcd's serving certificate. Made once per box; `down --purge` removes them.
cert() {  # cert NAME SUBJECT [SANS]
  local name=$1 subject=$2 sans=${3:-}
  [[ -f "$PKI/$name.crt" ]] && return
  openssl genrsa -out "$PKI/$name.key" 2048 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subject" -out "$PKI/$name.csr" 2>/dev/null
  local ext="$PKI/$name.ext"
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' >"$ext"
  [[ -n "$sans" ]] && printf 'subjectAltName=%s\n' "$sans" >>"$ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -days 365 \
    -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$ext"
}

kubeconfig() {  # kubeconfig NAME CERT SERVER
  local name=$1 cert=$2 server=$3
  cat >"$STATE/$name.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: katib-box
  cluster: {server: "$server", certificate-authority: "$PKI/ca.crt"}
users:
- name: $cert
  user: {client-certificate: "$PKI/$cert.crt", client-key: "$PKI/$cert.key"}
contexts:
- name: katib-box
  context: {cluster: katib-box, user: $cert}
current-context: katib-box
EOF
}

pki() {
  mkdir -p "$PKI" && chmod 700 "$PKI"
  if [[ ! -f "$PKI/ca.crt" ]]; then
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -out "$PKI/ca.crt" -days 365 \
      -subj "/CN=katib-box-ca" 2>/dev/null
  fi
  cert apiserver "/CN=kube-apiserver" \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:$SERVICE_API_IP,IP:$NODE_IP,IP:127.0.0.1"
  cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  cert apiserver-etcd-client "/CN=kube-apiserver-etcd-client"
  cert etcd "/CN=etcd" "DNS:localhost,IP:127.0.0.1"
  cert admin "/O=system:masters/CN=katib-box-admin"
  cert controller-manager "/CN=system:kube-controller-manager"
  cert scheduler "/CN=system:kube-scheduler"
  cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" "DNS:$NODE_NAME,IP:$NODE_IP"
  cert kube-proxy "/CN=system:kube-proxy"
  [[ -f "$PKI/sa.key" ]] || { openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null; openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null; }
  local inside="https://$NODE_IP:6443"
  kubeconfig admin admin "https://127.0.0.1:$API_PORT"   # the host's, through the loopback port
  kubeconfig admin-inside admin "$inside"
  kubeconfig controller-manager controller-manager "$inside"
  kubeconfig scheduler scheduler "$inside"
  kubeconfig kubelet kubelet "$inside"
  kubeconfig kube-proxy kube-proxy "$inside"
}

# ---------------------------------------------------------------------------------------------- processes
# start NAME COMMAND...: COMMAND in the box's network namespace, in the background, its pid and log in $RUN/$LOGS.
start() {
  local name=$1; shift
  if alive "$name"; then return; fi
  # nsenter and setsid exec, so $! is the program's pid and its session (not so through a shell function)
  nsenter --net="/run/netns/$NETNS" -- setsid "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}
alive() { [[ -f "$RUN/$1.pid" ]] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }
wait_for() {  # wait_for WHAT SECONDS COMMAND...
  local what=$1 limit=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "$what: not ready within ${limit}s (logs: $LOGS)"
    sleep 1
  done
}

containerd_config() {
  mkdir -p "$STATE/cni/net.d" "$STATE/cni/ipam"
  cat >"$STATE/containerd.toml" <<EOF
version = 2
root = "$STATE/containerd"
state = "$RUN/containerd"
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # root here lacks CAP_SYS_RESOURCE: without this runc fails to set the sandbox's oom_score_adj of -998
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
EOF
  cat >"$STATE/cni/net.d/10-katib-box.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "katib-box",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}],
              "dataDir": "$STATE/cni/ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

kubelet_config() {
  printf '# no upstream: names outside the cluster do not resolve in the box\n' >"$STATE/resolv.conf"
  cat >"$STATE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$PKI/ca.crt"}
authorization: {mode: Webhook}
tlsCertFile: "$PKI/kubelet.crt"
tlsPrivateKeyFile: "$PKI/kubelet.key"
containerRuntimeEndpoint: "unix://$CONTAINERD_SOCK"
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
clusterDomain: cluster.local
clusterDNS: ["$DNS_IP"]
resolvConf: "$STATE/resolv.conf"
podLogsDir: "$STATE/pod-logs"
# the images are imported, not pulled: never collect them
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "200Mi", nodefs.available: "2%", imagefs.available: "2%"}
serializeImagePulls: false
EOF
  cat >"$STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: "$STATE/kube-proxy.kubeconfig"}
clusterCIDR: "$POD_CIDR"
hostnameOverride: "$NODE_NAME"
bindAddress: "$NODE_IP"
# leave the conntrack sysctls as they are (they are not the namespace's to set here)
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
}

control_plane() {
  local sans_issuer="https://kubernetes.default.svc.cluster.local"
  start etcd "$CLUSTER_CACHE/etcd-$ETCD_VERSION/etcd" --name katib-box --data-dir "$STATE/etcd" \
    --listen-client-urls https://127.0.0.1:2379 --advertise-client-urls https://127.0.0.1:2379 \
    --listen-peer-urls https://127.0.0.1:2380 --initial-advertise-peer-urls https://127.0.0.1:2380 \
    --initial-cluster katib-box=https://127.0.0.1:2380 \
    --cert-file "$PKI/etcd.crt" --key-file "$PKI/etcd.key" --client-cert-auth --trusted-ca-file "$PKI/ca.crt" \
    --peer-cert-file "$PKI/etcd.crt" --peer-key-file "$PKI/etcd.key" --peer-client-cert-auth \
    --peer-trusted-ca-file "$PKI/ca.crt"
  start kube-apiserver "$K8S/kube-apiserver" --advertise-address "$NODE_IP" --bind-address 0.0.0.0 --secure-port 6443 \
    --etcd-servers https://127.0.0.1:2379 --etcd-cafile "$PKI/ca.crt" \
    --etcd-certfile "$PKI/apiserver-etcd-client.crt" --etcd-keyfile "$PKI/apiserver-etcd-client.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --allow-privileged=true \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --client-ca-file "$PKI/ca.crt" --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" --kubelet-certificate-authority "$PKI/ca.crt" \
    --kubelet-preferred-address-types InternalIP,Hostname \
    --service-account-issuer "$sans_issuer" --service-account-key-file "$PKI/sa.pub" \
    --service-account-signing-key-file "$PKI/sa.key"
  # the host's loopback port: a unix socket in $RUN joins the two namespaces
  start api-socket socat "UNIX-LISTEN:$RUN/api.sock,fork,unlink-early" "TCP:$NODE_IP:6443"
  if ! alive api-port; then
    setsid socat "TCP-LISTEN:$API_PORT,bind=127.0.0.1,fork,reuseaddr" "UNIX-CONNECT:$RUN/api.sock" \
      >"$LOGS/api-port.log" 2>&1 </dev/null &
    echo $! >"$RUN/api-port.pid"
  fi
  wait_for "kube-apiserver" 120 "$K8S/kubectl" --kubeconfig "$STATE/admin.kubeconfig" get --raw /readyz
  start kube-controller-manager "$K8S/kube-controller-manager" --kubeconfig "$STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$STATE/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR"
  start kube-scheduler "$K8S/kube-scheduler" --kubeconfig "$STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig "$STATE/scheduler.kubeconfig" --authorization-kubeconfig "$STATE/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false
}

node() {
  start containerd containerd --config "$STATE/containerd.toml"
  wait_for containerd 60 ctr --address "$CONTAINERD_SOCK" version
  "$HERE/images.sh" import
  start kubelet "$K8S/kubelet" --config "$STATE/kubelet.yaml" --kubeconfig "$STATE/kubelet.kubeconfig" \
    --root-dir "$STATE/kubelet" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP"
  start kube-proxy "$K8S/kube-proxy" --config "$STATE/kube-proxy.yaml"
  wait_for "node $NODE_NAME Ready" 180 "$K8S/kubectl" --kubeconfig "$STATE/admin.kubeconfig" wait --timeout 5s \
    --for condition=Ready "node/$NODE_NAME"
}

addons() {
  local kubectl=("$K8S/kubectl" --kubeconfig "$STATE/admin.kubeconfig")
  sed -e "s|@DNS_IP@|$DNS_IP|g" -e "s|@COREDNS_IMAGE@|$COREDNS_IMAGE|g" "$HERE/manifests/coredns.yaml" \
    | "${kubectl[@]}" apply -f - >/dev/null
  "${kubectl[@]}" apply -f "$HERE/manifests/storage.yaml" >/dev/null
  volumes | "${kubectl[@]}" apply -f - >/dev/null
  "${kubectl[@]}" -n kube-system rollout status deployment/coredns --timeout 180s >/dev/null
}

# The box's storage: $VOLUMES local PersistentVolumes of the default class, each a root-owned 0755 folder as a
# fresh block-storage volume is, so fsGroup and a pod's user matter as they do on a real cluster. A claim binds
# one when its first pod is scheduled; a released volume is not reused until the next `up`.
volumes() {
  local i dir
  for i in $(seq -w 1 "$VOLUMES"); do
    dir="$STATE/volumes/pv-$i"
    mkdir -p "$dir" && chown root:root "$dir" && chmod 0755 "$dir"
    cat <<EOF
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: katib-box-pv-$i}
spec:
  capacity: {storage: 20Gi}
  accessModes: [ReadWriteOnce, ReadOnlyMany, ReadWriteMany]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: standard
  local: {path: "$dir"}
  nodeAffinity:
    required:
      nodeSelectorTerms:
        - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: ["$NODE_NAME"]}]
EOF
  done
}

up() {
  [[ $EUID -eq 0 ]] || die "needs root (network namespaces, containerd, the kubelet)"
  if healthy; then log "the box is already up: $("$HERE/kubectl" get nodes --no-headers 2>/dev/null)"; usage; return; fi
  local start=$SECONDS
  packages
  "$HERE/build.sh" all
  "$HERE/images.sh" build
  mkdir -p "$STATE" "$RUN" "$LOGS" "$STATE/pod-logs"
  network
  pki
  containerd_config
  kubelet_config
  control_plane
  node
  addons
  log "Kubernetes $KUBERNETES_VERSION up in $((SECONDS - start)) s; installing Katib $KATIB_VERSION"
  "$HERE/katib.sh" install
  log "the box is up in $((SECONDS - start)) s"
  usage
}

usage() {
  cat >&2 <<EOF
  kubectl:     scripts/cluster/kubectl get pods -A
  kubeconfig:  $STATE/admin.kubeconfig (https://127.0.0.1:$API_PORT; also KUBECONFIG for the Python client)
  inside:      nsenter --net=/run/netns/$NETNS ...   (node $NODE_IP, pods $POD_CIDR, Services $SERVICE_CIDR)
  logs:        $LOGS
  stop:        make cluster-down
EOF
}

healthy() {
  alive kube-apiserver && alive kubelet && alive containerd && alive api-port \
    && "$K8S/kubectl" --kubeconfig "$STATE/admin.kubeconfig" get --raw /readyz >/dev/null 2>&1
}

status() {
  local name
  for name in etcd kube-apiserver api-socket api-port kube-controller-manager kube-scheduler containerd kubelet kube-proxy; do
    if alive "$name"; then echo "$name: running (pid $(cat "$RUN/$name.pid"))"; else echo "$name: not running"; fi
  done
  healthy && "$HERE/kubectl" get nodes -o wide
}

# ---------------------------------------------------------------------------------------------- down
stop() {  # stop NAME: SIGTERM, then SIGKILL after 20 s
  local name=$1 pid
  [[ -f "$RUN/$name.pid" ]] || return 0
  pid="$(cat "$RUN/$name.pid")"
  if kill -0 "$pid" 2>/dev/null; then
    pkill -TERM -s "$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    pkill -KILL -s "$pid" 2>/dev/null || true
  fi
  rm -f "$RUN/$name.pid"
}

kill_pods() {  # every process in the kubelet's pod cgroups, and the cgroups themselves
  local dir pid
  for _ in 1 2 3; do
    for dir in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
      [[ -d "$dir" ]] || continue
      while read -r pid; do kill -KILL "$pid" 2>/dev/null || true; done \
        < <(find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null)
    done
    sleep 0.5
  done
  for dir in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [[ -d "$dir" ]] && find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  # the shims of the box's containerd (they outlive it)
  pkill -KILL -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" 2>/dev/null || true
}

unmount_all() {  # every mount below the box's folders, deepest first
  local target
  for _ in 1 2 3; do
    { findmnt -rn -o TARGET | grep -E "^($STATE|$RUN)(/|$)" || true; } | sort -r | while read -r target; do
      umount "$target" 2>/dev/null || umount -l "$target" 2>/dev/null || true
    done
  done
}

remove_containers() {  # while containerd runs: every pod's containers go, the imported images stay
  alive containerd || return 0
  local c
  for c in $(ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
    ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true
  done
  sleep 1
  for c in $(ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
    ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks delete -f "$c" >/dev/null 2>&1 || true
  done
  for c in $(ctr --address "$CONTAINERD_SOCK" -n k8s.io containers ls -q 2>/dev/null); do
    ctr --address "$CONTAINERD_SOCK" -n k8s.io containers rm "$c" >/dev/null 2>&1 || true
  done
}

down() {
  local purge=${1:-}
  stop kube-proxy
  stop kubelet
  remove_containers
  kill_pods
  stop containerd
  kill_pods
  for name in kube-scheduler kube-controller-manager api-port api-socket kube-apiserver etcd; do stop "$name"; done
  unmount_all
  [[ -e "/run/netns/$NETNS" ]] && ip netns del "$NETNS"
  rm -rf "$RUN"
  if [[ "$purge" == --purge ]]; then
    rm -rf "$STATE"
  else  # the cluster's state goes; the certificates and containerd's imported images stay for the next `up`
    find "$STATE" -mindepth 1 -maxdepth 1 ! -name pki ! -name containerd ! -name imported -exec rm -rf {} + 2>/dev/null || true
  fi
  log "the box is down"
}

# leftovers: what a `down` should have removed; exit 1 when anything is there
leftovers() {
  local found=0 what
  what="$(pgrep -a -f "$STATE|$RUN|$CLUSTER_CACHE" | grep -v -e pgrep -e 'box.sh' || true)"
  [[ -n "$what" ]] && { echo "processes: $what"; found=1; }
  what="$(findmnt -rn -o TARGET | grep -E "^($STATE|$RUN)(/|$)" || true)"
  [[ -n "$what" ]] && { echo "mounts: $what"; found=1; }
  [[ -e "/run/netns/$NETNS" ]] && { echo "network namespace: $NETNS"; found=1; }
  what="$(find /sys/fs/cgroup -maxdepth 2 -name 'kubepods*' 2>/dev/null || true)"
  [[ -n "$what" ]] && { echo "cgroups: $what"; found=1; }
  what="$(iptables-save 2>/dev/null | grep -E 'KUBE-|CNI-' || true)"
  [[ -n "$what" ]] && { echo "host iptables rules: $what"; found=1; }
  what="$(ip link show cni0 2>/dev/null; ip link show "$NODE_LINK" 2>/dev/null || true)"   # set -e: no link is the good case
  [[ -n "$what" ]] && { echo "links on the host: $what"; found=1; }
  if ((found)); then log "the box left the above behind"; return 1; fi
  log "nothing of the box is left: no process, mount, network namespace, cgroup or link"
}

case "${1:-}" in
  up) up ;;
  leftovers) leftovers ;;
  down) down "${2:-}" ;;
  status) status ;;
  *) echo "usage: $0 up|down [--purge]|status|leftovers" >&2; exit 2 ;;
esac
