#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and controller tests, and the end-to-end
# tests against a real S3/IAM/STS server (Ceph RGW), a real Kubernetes API server
# (etcd + kube-apiserver), and a one-node cluster that runs the images built here (the
# journey test: helm install, pods, a browser), all of which this script installs and starts.
# Needs root (the node's containers and network).
#
#   tests/run.sh            everything
#   tests/run.sh --no-lint  skip cargo fmt/clippy
#
# Honours CARGO_TARGET_DIR. Leaves nothing running; server logs stay in $UPLOADBUCKET_TEST_DIR
# (default: a temporary directory, printed on failure).
set -euo pipefail
cd "$(dirname "$0")/.."

lint=1
for arg in "$@"; do
  case "$arg" in
    --no-lint) lint=0 ;;
    *) echo "usage: tests/run.sh [--no-lint]" >&2; exit 2 ;;
  esac
done

# Checks that can rewrite their expected files never do so here.
unset UPDATE_GOLDEN UPDATE_CRDS

# promtool builds in the background (below).
tests/scripts/install-deps.sh --no-promtool
export PATH="${UPLOADBUCKET_BIN_DIR:-$HOME/.cache/uploadbucket/bin}:$PATH"
# Where install-deps.sh put the Prometheus operator's CRDs (cluster.rs validates against them).
export UPLOADBUCKET_MONITORING_CRDS="${UPLOADBUCKET_BIN_DIR:-$HOME/.cache/uploadbucket/bin}/../monitoring-crds"

work=${UPLOADBUCKET_TEST_DIR:-$(mktemp -d -t uploadbucket-tests.XXXXXX)}
mkdir -p "$work"
cleanup() {
  status=$?
  # A Kubernetes build still running (the run failed early): stop it and its go processes.
  [ -n "${k8s_build:-}" ] && kill -- "-$k8s_build" 2>/dev/null || true
  [ -n "${promtool_build:-}" ] && kill -- "-$promtool_build" 2>/dev/null || true
  tests/scripts/rgw.sh stop "$work/rgw" || true
  tests/scripts/kube.sh stop "$work/kube" || true
  # The node's teardown is checked: a process, mount, link or rule left behind fails the run.
  tests/scripts/node.sh stop "$work/node" || status=1
  [ $status -eq 0 ] || echo "tests/run.sh: failed; server logs are in $work" >&2
  exit $status
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The Kubernetes binaries (Go; ~15 minutes the first time, then cached) build while cargo
# works: on 2 cores they fill the stretches where rustc runs on one.
k8s_log="$work/k8s-build.log"
setsid tests/scripts/node.sh install >"$k8s_log" 2>&1 &
k8s_build=$!
promtool_log="$work/promtool-build.log"
setsid tests/scripts/install-deps.sh promtool >"$promtool_log" 2>&1 &
promtool_build=$!

if [ $lint = 1 ]; then
  echo "== cargo fmt --check"
  cargo fmt --all -- --check
  echo "== cargo clippy"
  cargo clippy --workspace --all-targets --quiet -- -D warnings
fi

echo "== building"
cargo build --workspace --all-targets --quiet

echo "== building the images (release binaries; tests/scripts/images.sh)"
tests/scripts/images.sh "$work/images" --example

wait $k8s_build || { cat "$k8s_log" >&2; echo "tests/run.sh: building Kubernetes failed" >&2; exit 1; }
k8s_build=""
wait $promtool_build || { cat "$promtool_log" >&2; echo "tests/run.sh: building promtool failed" >&2; exit 1; }
promtool_build=""

echo "== starting a one-node cluster (containerd + kubelet + kube-proxy + control plane)"
tests/scripts/node.sh start "$work/node" "$work/images"
# shellcheck disable=SC1091
source "$work/node/env"

echo "== starting Ceph RGW"
# Also on the node's IP, where pods reach it.
RGW_ALSO_ON=$UPLOADBUCKET_NODE_IP tests/scripts/rgw.sh start "$work/rgw" "$(free_port)" "$(free_port)"
# shellcheck disable=SC1091
source "$work/rgw/env"

echo "== starting etcd + kube-apiserver"
tests/scripts/kube.sh start "$work/kube"
# shellcheck disable=SC1091
source "$work/kube/env"
export UPLOADBUCKET_REQUIRE_SERVERS=1
# The credential chain must never reach for instance metadata on a test machine.
export AWS_EC2_METADATA_DISABLED=true

echo "== cargo test"
log="$work/cargo-test.log"
# The shipped builds, which the workspace build never compiles (it merges features): the
# sidecar as its image builds it (no dev store) with its own tests, and the operator alone.
# The lifecycle test first, while RGW's lifecycle index holds no other test's buckets: RGW 16's
# manual passes (radosgw-admin lc process) ignore --bucket and take one bucket per index
# shard per pass, and with the rest of the suite's buckets in the index ten passes went by
# without reaching the test's bucket.
lifecycle=pending_uploads_expire_by_lifecycle_and_verified_ones_stay
cargo test -p uploadbucket-tests --test verify_rgw --quiet -- --exact "$lifecycle" 2>&1 | tee "$log"
cargo test -p uploadbucket-sidecar --no-default-features --features server --quiet 2>&1 | tee -a "$log"
cargo build -p uploadbucket-operator --quiet
cargo test --workspace --quiet -- --skip "$lifecycle" 2>&1 | tee -a "$log"
# One closing line for the whole run (cargo prints one per test binary, doc-tests last).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1); if ($i ~ /^ignored/) s += $(i-1) } }
     END { printf "summary: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
