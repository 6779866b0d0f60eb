#!/usr/bin/env bash
# A one-node Kubernetes cluster that runs pods, for the journey test (tests/tests/journey.rs):
# containerd + etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kube-proxy +
# kubelet, all on this machine, plus a static OIDC issuer for the service-account tokens.
#
#   tests/scripts/node.sh install               build the node binaries and the pause image (once, cached)
#   tests/scripts/node.sh build                 the binaries only (Go; tests/run.sh runs this
#                                               beside cargo, before gcc may be installed)
#   tests/scripts/node.sh start DIR [IMAGES]    start everything; import IMAGES/*.tar; writes DIR/env
#   tests/scripts/node.sh stop DIR              stop everything; leaves no process, mount, netns,
#                                               link, iptables rule or cgroup behind
#
# Needs root, containerd + runc + containernetworking-plugins + iptables (Debian packages,
# tests/scripts/install-deps.sh) and Go. Binaries are built from the Go module
# k8s.io/kubernetes like kube.sh's API server and land in ${UPLOADBUCKET_BIN_DIR}.
#
# Network (one cluster per machine: fixed names and addresses):
#   node IP 10.250.0.1/32 on lo (the kubelet refuses loopback node IPs; the kernel here has no
#   `dummy` links); the API server listens there, so pods reach it.
#   pods on the bridge ubbr0, 10.244.0.0/24, host side 10.244.0.1. Pods get routes to each
#   other (the bridge), to the node IP and to Service IPs (10.96.0.0/24) through 10.244.0.1,
#   and nothing else: no default route, no masquerade, IP forwarding untouched (off here), so
#   no pod packet leaves this machine.
#   Services: kube-proxy (iptables mode), as real clusters run it. The chart relies on two
#   paths, both local to the host and so needing no forwarding: a pod to the `kubernetes`
#   Service (DNAT to the API server on the node IP) and the API server to the webhook's
#   Service (host-originated, DNAT to the pod). `--enable-aggregator-routing` would cover
#   the second only; the in-cluster config of every client needs the first.
set -euo pipefail

K8S_VERSION=v1.37.2
bin="${UPLOADBUCKET_BIN_DIR:-$HOME/.cache/uploadbucket/bin}"
images_cache="$(dirname "$bin")/images"
here="$(cd "$(dirname "$0")" && pwd)"
NODE=uploadbucket-node
NODE_IP=10.250.0.1
BRIDGE=ubbr0
POD_SUBNET=10.244.0.0/24
BRIDGE_IP=10.244.0.1
SVC_RANGE=10.96.0.0/24
PAUSE_IMAGE=registry.k8s.io/pause:3.10-local

T0=$(date +%s.%N)
log() { printf "node.sh [+%5ss] %s\n" "$(awk -v a="$(date +%s.%N)" -v b="$T0" "BEGIN{printf \"%.1f\", a-b}")" "$*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

build() {
  # etcd, kube-apiserver and the node's binaries (one go build for whichever are missing).
  "$here/kube.sh" install kube-controller-manager kube-scheduler kube-proxy kubelet
}

install() {
  build
  # The sandbox ("pause") image, from the module's own pause.c, linked statically.
  if [ ! -f "$images_cache/pause.tar" ]; then
    mkdir -p "$images_cache"
    local tmp; tmp=$(mktemp -d)
    local src
    src=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
    gcc -Os -static -DVERSION="$K8S_VERSION" -o "$tmp/pause" "$src/build/pause/linux/pause.c"
    strip "$tmp/pause"
    python3 "$here/oci_image.py" --out "$images_cache/pause.tar" --name "$PAUSE_IMAGE" \
      --entrypoint /pause --user 65535:65535 --file "$tmp/pause=/pause"
    rm -rf "$tmp"
  fi
}

kubeconfig() { # file user token server
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: node
    cluster: {server: "$4", certificate-authority: "$D/pki/ca.crt"}
users:
  - name: $2
    user: {token: $3}
contexts:
  - name: node
    context: {cluster: node, user: $2}
current-context: node
EOF
}

spawn() { # name cmd...   (background; pid in $D/name.pid, output in $D/name.log)
  local name=$1; shift
  "$@" >"$D/$name.log" 2>&1 &
  echo $! >"$D/$name.pid"
}

wait_for() { # what seconds log cmd...
  local what=$1 secs=$2 logf=$3; shift 3
  local end=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$end" ]; then
      [ -f "$D/$logf.log" ] && tail -30 "$D/$logf.log" >&2
      echo "node.sh: timed out waiting for $what (logs in $D)" >&2
      return 1
    fi
    sleep 0.5
  done
  log "$what"
}

pki() {
  mkdir -p "$D/pki"
  (
    cd "$D/pki"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 -subj /CN=uploadbucket-node-ca 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj /CN=kube-apiserver 2>/dev/null
    printf 'subjectAltName=IP:%s,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' "$NODE_IP" >apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 30 -extfile apiserver.ext 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout kubelet-client.key -out kubelet-client.csr -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl x509 -req -in kubelet-client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out kubelet-client.crt -days 30 -extfile client.ext 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
}

# The service-account issuer as IAM sees it: discovery and a JWKS (with the x5c certificate
# Ceph RGW requires) for the API server's signing key, served as static files. On EKS the
# cluster's issuer plays this part.
issuer() { # port
  local port=$1 url="http://127.0.0.1:$1" dir="$D/issuer"
  mkdir -p "$dir/.well-known" "$dir/openid/v1"
  openssl req -x509 -key "$D/pki/sa.key" -subj /CN=uploadbucket-node-issuer -days 30 -outform DER -out "$D/pki/issuer.der" 2>/dev/null
  python3 - "$D/pki" "$dir" "$url" <<'PY'
import base64, hashlib, json, subprocess, sys
pki, out, url = sys.argv[1:4]
b64u = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
der_pub = subprocess.run(["openssl", "rsa", "-in", f"{pki}/sa.key", "-pubout", "-outform", "DER"],
                         capture_output=True, check=True).stdout
modulus = subprocess.run(["openssl", "rsa", "-in", f"{pki}/sa.key", "-noout", "-modulus"],
                         capture_output=True, check=True, text=True).stdout.strip().split("=", 1)[1]
cert = open(f"{pki}/issuer.der", "rb").read()
# kid: what kube-apiserver puts in its tokens' header (SHA-256 of the PKIX public key).
key = {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": b64u(hashlib.sha256(der_pub).digest()),
       "n": b64u(bytes.fromhex(modulus)), "e": "AQAB", "x5c": [base64.b64encode(cert).decode()]}
json.dump({"keys": [key]}, open(f"{out}/openid/v1/jwks", "w"))
json.dump({"issuer": url, "jwks_uri": f"{url}/openid/v1/jwks", "response_types_supported": ["id_token"],
           "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"]},
          open(f"{out}/.well-known/openid-configuration", "w"))
open(f"{pki}/issuer.thumbprint", "w").write(hashlib.sha1(cert).hexdigest())
PY
  spawn issuer python3 -m http.server --bind 127.0.0.1 --directory "$dir" "$port"
}

network() {
  ip addr show dev lo | grep -q " $NODE_IP/32" || ip addr add "$NODE_IP/32" dev lo
  # A fixed MAC: a bridge without one takes the lowest MAC of its ports, so it changes as
  # pods come and go, and pods whose ARP cache holds the old one lose the node (seen here:
  # a replacement operator pod timed out reaching RGW).
  ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" address 02:75:62:00:00:01 type bridge
  ip addr show dev "$BRIDGE" | grep -q " $BRIDGE_IP/" || ip addr add "$BRIDGE_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # The host reaches Service IPs from the bridge address, so pods can answer it.
  ip route replace "$SVC_RANGE" dev "$BRIDGE" src "$BRIDGE_IP"
  mkdir -p "$D/cni/net.d" "$D/cni/ipam"
  cat >"$D/cni/net.d/10-uploadbucket.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "uploadbucket",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": false, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$D/cni/ipam",
              "ranges": [[{"subnet": "$POD_SUBNET", "rangeStart": "10.244.0.10", "rangeEnd": "10.244.0.250"}]],
              "routes": [{"dst": "$NODE_IP/32", "gw": "$BRIDGE_IP"}, {"dst": "$SVC_RANGE", "gw": "$BRIDGE_IP"}]}}
  ]
}
EOF
}

containerd_up() {
  mkdir -p "$D/containerd"
  cat >"$D/containerd/config.toml" <<EOF
version = 2
root = "$D/containerd/root"
state = "$D/containerd/state"
[grpc]
  address = "$D/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # This VM's capability bounding set lacks CAP_SYS_RESOURCE, so runc cannot lower
  # oom_score_adj ("can't get final child's PID from pipe: EOF"): clamp it instead.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$D/cni/net.d"
EOF
  spawn containerd containerd --config "$D/containerd/config.toml"
  wait_for "containerd" 30 containerd ctr_ version
  local tar
  for tar in "$images_cache/pause.tar" "$@"; do
    ctr_ images import "$tar" >/dev/null
  done
  log "images imported: $(ctr_ images ls -q | grep -v '^sha256:' | tr '\n' ' ')"
}

ctr_() { ctr -a "$D/containerd/containerd.sock" -n k8s.io "$@"; }

start() {
  [ "$(id -u)" -eq 0 ] || { echo "node.sh: needs root (network, containers)" >&2; exit 1; }
  if [ -f "$D/kube-apiserver.pid" ] && kill -0 "$(cat "$D/kube-apiserver.pid")" 2>/dev/null; then
    echo "node.sh: a cluster is already running in $D (node.sh stop $D first)" >&2; exit 1
  fi
  ip link show "$BRIDGE" >/dev/null 2>&1 && { echo "node.sh: $BRIDGE exists: another node.sh cluster runs on this machine (one at a time)" >&2; exit 1; }
  # A fresh cluster every time: no state from an earlier run in DIR.
  rm -rf "$D"
  mkdir -p "$D"
  D=$(cd "$D" && pwd)
  install
  local img=() dir=${1:-}
  if [ -n "$dir" ]; then for t in "$dir"/*.tar; do img+=("$t"); done; fi
  log "starting in $D"
  ls /run/netns 2>/dev/null | sort >"$D/netns.before" || true
  network
  containerd_up "${img[@]}"
  pki

  local etcd_port peer_port api_port kubelet_port issuer_port proxy_health proxy_metrics
  etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port)
  kubelet_port=$(free_port); issuer_port=$(free_port); proxy_health=$(free_port); proxy_metrics=$(free_port)
  issuer "$issuer_port"
  spawn etcd "$bin/etcd" --data-dir "$D/etcd" --name node \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "node=http://127.0.0.1:$peer_port" --unsafe-no-fsync

  local admin kubelet kcm sched proxy
  admin=$(openssl rand -hex 16); kubelet=$(openssl rand -hex 16); kcm=$(openssl rand -hex 16)
  sched=$(openssl rand -hex 16); proxy=$(openssl rand -hex 16)
  cat >"$D/pki/tokens.csv" <<EOF
$admin,admin,admin,system:masters
$kubelet,system:node:$NODE,kubelet,system:nodes
$kcm,system:kube-controller-manager,kcm
$sched,system:kube-scheduler,sched
$proxy,system:kube-proxy,kube-proxy
EOF
  spawn kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$api_port" \
    --tls-cert-file "$D/pki/apiserver.crt" --tls-private-key-file "$D/pki/apiserver.key" \
    --client-ca-file "$D/pki/ca.crt" --token-auth-file "$D/pki/tokens.csv" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --service-account-issuer "http://127.0.0.1:$issuer_port" \
    --service-account-key-file "$D/pki/sa.pub" --service-account-signing-key-file "$D/pki/sa.key" \
    --service-cluster-ip-range "$SVC_RANGE" \
    --kubelet-client-certificate "$D/pki/kubelet-client.crt" --kubelet-client-key "$D/pki/kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP \
    --allow-privileged=true
  local server="https://$NODE_IP:$api_port"
  kubeconfig "$D/kubeconfig" admin "$admin" "$server"
  kubeconfig "$D/kubelet.kubeconfig" "system:node:$NODE" "$kubelet" "$server"
  kubeconfig "$D/kcm.kubeconfig" system:kube-controller-manager "$kcm" "$server"
  kubeconfig "$D/sched.kubeconfig" system:kube-scheduler "$sched" "$server"
  kubeconfig "$D/proxy.kubeconfig" system:kube-proxy "$proxy" "$server"
  export KUBECONFIG="$D/kubeconfig"
  wait_for "kube-apiserver" 120 kube-apiserver kubectl get --raw /readyz

  spawn kube-controller-manager "$bin/kube-controller-manager" --kubeconfig "$D/kcm.kubeconfig" \
    --secure-port 0 --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file "$D/pki/sa.key" --root-ca-file "$D/pki/ca.crt" \
    --cluster-signing-cert-file "$D/pki/ca.crt" --cluster-signing-key-file "$D/pki/ca.key" \
    --allocate-node-cidrs=false
  spawn kube-scheduler "$bin/kube-scheduler" --kubeconfig "$D/sched.kubeconfig" --secure-port 0 --leader-elect=false

  # kube-proxy: leaves conntrack sysctls and route_localnet alone (no localhost NodePorts).
  cat >"$D/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $D/proxy.kubeconfig}
hostnameOverride: $NODE
healthzBindAddress: 127.0.0.1:$proxy_health
metricsBindAddress: 127.0.0.1:$proxy_metrics
nodePortAddresses: ["$NODE_IP/32"]
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false, masqueradeAll: false}
EOF
  spawn kube-proxy "$bin/kube-proxy" --config "$D/kube-proxy.yaml"

  mkdir -p "$D/kubelet" "$D/pod-logs"
  # cgroup v1 host: failCgroupV1 false + cgroupfs (containerd 1.6 cannot tell the kubelet its
  # driver). resolvConf "": pods get no upstream nameserver (nothing outside to ask).
  cat >"$D/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$D/containerd/containerd.sock
address: $NODE_IP
port: $kubelet_port
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $D/pki/ca.crt}
authorization: {mode: Webhook}
resolvConf: ""
podLogsDir: $D/pod-logs
failSwapOn: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "50Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
serializeImagePulls: false
EOF
  spawn kubelet "$bin/kubelet" --config "$D/kubelet.yaml" --kubeconfig "$D/kubelet.kubeconfig" \
    --root-dir "$D/kubelet" --hostname-override "$NODE" --node-ip "$NODE_IP" --v 1
  node_ready() { kubectl get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' | grep -qx True; }
  wait_for "node $NODE Ready" 180 kubelet node_ready
  wait_for "default service account" 60 kube-controller-manager kubectl get serviceaccount default -n default
  cat >"$D/env" <<EOF
export UPLOADBUCKET_NODE_KUBECONFIG=$D/kubeconfig
export UPLOADBUCKET_NODE_IP=$NODE_IP
export UPLOADBUCKET_NODE_ISSUER=http://127.0.0.1:$issuer_port
export UPLOADBUCKET_NODE_ISSUER_THUMBPRINT=$(cat "$D/pki/issuer.thumbprint")
export UPLOADBUCKET_NODE_DIR=$D
EOF
  log "cluster up: KUBECONFIG=$D/kubeconfig"
}

stop_pid() { # name [grace seconds, default 15]: SIGTERM, the grace, SIGKILL
  local f="$D/$1.pid" pid grace=${2:-15}
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 $((grace * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null && log "$1 still running $grace s after SIGTERM: killed" || true
  fi
  rm -f "$f"
}

stop() {
  D=$(cd "$D" 2>/dev/null && pwd) || return 0
  export KUBECONFIG="$D/kubeconfig"
  # The kubelet tears pods down through CRI (CNI DEL, unmounts) while everything still runs.
  if [ -f "$D/kubelet.pid" ] && kubectl get --raw /readyz >/dev/null 2>&1; then
    kubectl delete validatingwebhookconfigurations,mutatingwebhookconfigurations --all >/dev/null 2>&1 || true
    kubectl delete deployments,replicasets,statefulsets,daemonsets,jobs --all -A --wait=false >/dev/null 2>&1 || true
    kubectl delete pods --all -A --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
    for _ in $(seq 1 40); do [ -z "$(ctr_ tasks ls -q 2>/dev/null)" ] && break; sleep 0.5; done
    log "pods deleted"
  fi
  local p
  for p in kubelet kube-proxy kube-scheduler kube-controller-manager issuer; do stop_pid "$p" & done; wait
  # The API server drains its watches for long after SIGTERM; nothing is left to drain.
  stop_pid kube-apiserver 3; stop_pid etcd
  if [ -f "$D/containerd.pid" ]; then
    local t shims
    for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
    shims=$(pgrep -f -- "-address $D/containerd/containerd.sock" || true)
    stop_pid containerd
    for p in $shims; do kill -9 "$p" 2>/dev/null || true; done
  fi
  # kube-proxy's iptables chains, then the kubelet's (KUBE-FIREWALL, KUBE-KUBELET-CANARY,
  # KUBE-IPTABLES-HINT): every KUBE-* rule and chain in the tables they use.
  [ -x "$bin/kube-proxy" ] && "$bin/kube-proxy" --cleanup >/dev/null 2>&1 || true
  local ipt table rule chain
  for ipt in iptables ip6tables; do
    command -v $ipt >/dev/null || continue
    for table in filter nat mangle; do
      $ipt -t $table -S 2>/dev/null | grep -E '^-A .*-j KUBE-' | sed 's/^-A/-D/' | while read -r rule; do
        eval "$ipt -t $table $rule" 2>/dev/null || true
      done || true
      for chain in $($ipt -t $table -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}'); do
        $ipt -t $table -F "$chain" 2>/dev/null || true
      done
      for chain in $($ipt -t $table -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}'); do
        $ipt -t $table -X "$chain" 2>/dev/null || true
      done
    done
  done
  # Mounts under DIR (deepest first), network namespaces CNI made, veths, bridge, route, node IP.
  grep -o " $D/[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  if [ -f "$D/netns.before" ]; then
    local ns
    for ns in $(ls /run/netns 2>/dev/null | grep '^cni-' | sort | comm -13 "$D/netns.before" -); do
      umount "/run/netns/$ns" 2>/dev/null || true; rm -f "/run/netns/$ns"
    done
  fi
  local v
  for v in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do ip link del "$v" 2>/dev/null || true; done
  ip route del "$SVC_RANGE" dev "$BRIDGE" 2>/dev/null || true
  ip link del "$BRIDGE" 2>/dev/null || true
  ip addr del "$NODE_IP/32" dev lo 2>/dev/null || true
  # The cgroups the kubelet and containerd made (cgroup v1 hierarchies), now empty.
  local h
  for h in /sys/fs/cgroup/*/; do
    for c in kubepods k8s.io; do
      [ -d "$h$c" ] && find "$h$c" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
  done
  # Nothing may be left: say what is, and fail.
  local left=""
  pgrep -f -- "$D/" >/dev/null && left="$left processes($(pgrep -f -- "$D/" | tr '\n' ' '))"
  grep -q " $D/" /proc/mounts && left="$left mounts"
  ip link show "$BRIDGE" >/dev/null 2>&1 && left="$left link:$BRIDGE"
  ip -o link show master "$BRIDGE" 2>/dev/null | grep -q . && left="$left veths"
  ip addr show dev lo | grep -q " $NODE_IP/32" && left="$left address:$NODE_IP"
  iptables-save 2>/dev/null | grep -q KUBE- && left="$left iptables"
  for h in /sys/fs/cgroup/*/; do [ -d "${h}kubepods" ] && left="$left cgroup:${h}kubepods"; done
  if [ -f "$D/netns.before" ] && ls /run/netns 2>/dev/null | grep '^cni-' | sort | comm -13 "$D/netns.before" - | grep -q .; then
    left="$left netns"
  fi
  if [ -n "$left" ]; then
    echo "node.sh: stop left behind:$left" >&2
    return 1
  fi
  log "stopped; nothing left behind"
}

D=${2:-}
case "${1:-}" in
  install) install ;;
  build) build ;;
  start) [ -n "$D" ] || { echo "usage: node.sh start DIR [IMAGES]" >&2; exit 2; }; start "${3:-}" ;;
  stop) [ -n "$D" ] || { echo "usage: node.sh stop DIR" >&2; exit 2; }; stop ;;
  *) echo "usage: tests/scripts/node.sh install | start DIR [IMAGES] | stop DIR" >&2; exit 2 ;;
esac
