#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and controller tests, and the end-to-end
# tests against a real S3/IAM/STS server (Ceph RGW), an AWS stand-in (LocalStack), a real
# Kubernetes API server (etcd + kube-apiserver), and a one-node cluster that runs the images
# built here (the journey test: helm install, pods, a browser), all of which this script
# installs and starts.
# Needs root (the node's containers and network).
#
#   tests/run.sh            everything
#   tests/run.sh --no-lint  skip cargo fmt/clippy
#
# Honours CARGO_TARGET_DIR. Leaves nothing running; server logs stay in $UPLOADBUCKET_TEST_DIR
# (default: a temporary directory, printed on failure and removed after a passing run: the
# node's state and images in it are about 400 MB a run).
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
unset UPDATE_GOLDEN UPDATE_CRDS UPDATE_REFERENCE UPDATE_DASHBOARD_BUNDLE

if [ -n "${UPLOADBUCKET_TEST_DIR:-}" ]; then
  work=$UPLOADBUCKET_TEST_DIR temporary=0
else
  work=$(mktemp -d -t uploadbucket-tests.XXXXXX) temporary=1
fi
mkdir -p "$work"
export PATH="${UPLOADBUCKET_BIN_DIR:-$HOME/.cache/uploadbucket/bin}:$PATH"
# Where install-deps.sh puts the Prometheus operator's CRDs (cluster.rs validates against them).
export UPLOADBUCKET_MONITORING_CRDS="${UPLOADBUCKET_BIN_DIR:-$HOME/.cache/uploadbucket/bin}/../monitoring-crds"

# Work that runs beside the foreground, each in its own process group, output in $work/NAME.log.
declare -A job=()
background() { # [--nice N] NAME COMMAND...
  local nice=0
  if [ "$1" = --nice ]; then nice=$2; shift 2; fi
  local name=$1; shift
  # setsid puts the job in a scheduler autogroup of its own (Linux with autogroups on, as
  # here), where a nice value counts only against the job itself: the job lowers its group's
  # weight too, or three niced Go builds get three shares of the CPU to cargo's one.
  # shellcheck disable=SC2016
  setsid bash -c '[ "$0" = 0 ] || echo "$0" 2>/dev/null >/proc/self/autogroup || true; exec nice -n "$0" "$@"' \
    "$nice" "$@" >"$work/$name.log" 2>&1 &
  job[$name]=$!
}
await() { # NAME WHAT: waits for a background job; its log and a failure if it failed.
  wait "${job[$1]}" || { cat "$work/$1.log" >&2; echo "tests/run.sh: $2 failed" >&2; unset "job[$1]"; exit 1; }
  unset "job[$1]"
}

cleanup() {
  status=$?
  # Builds still running (the run failed early): stop them and their children.
  local pid
  for pid in "${job[@]}"; do kill -- "-$pid" 2>/dev/null || true; done
  tests/scripts/rgw.sh stop "$work/rgw" || true
  tests/scripts/localstack.sh stop "$work/localstack" || true
  tests/scripts/kube.sh stop "$work/kube" || true
  # The node's teardown is checked: a process, mount, link or rule left behind fails the run.
  tests/scripts/node.sh stop "$work/node" || status=1
  if [ $status -ne 0 ]; then
    echo "tests/run.sh: failed; server logs are in $work" >&2
  elif [ "$temporary" = 1 ]; then
    rm -rf "$work" || echo "tests/run.sh: passed, but could not remove $work" >&2
  fi
  exit $status
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Everything that needs a build starts now, side by side, so the two cores stay busy: on a
# fresh machine the Go builds (Kubernetes, helm, promtool: ~35 CPU minutes) and cargo's
# (~25) took 22 minutes together (2026-12-02), and cargo alone leaves one core idle through its
# long single-threaded steps (the release binaries' LTO, aws-sdk-s3). The Go builds run at a
# lower priority: they have the most parallel work and nothing waits on them until the tests,
# so cargo's chain goes at full speed and Go fills the gaps. Warm, all of it is a no-op.
background deps tests/scripts/install-deps.sh --no-go  # packages, npm, CRDs
background --nice 10 kubernetes tests/scripts/node.sh build
background --nice 10 helm tests/scripts/install-deps.sh helm
background --nice 10 promtool tests/scripts/install-deps.sh promtool
# The release binaries in the images (target/release; cargo locks debug and release apart).
background images tests/scripts/images.sh "$work/images"

if [ $lint = 1 ]; then
  echo "== cargo fmt --check"
  cargo fmt --all -- --check
  echo "== cargo clippy"
  cargo clippy --workspace --all-targets --quiet -- -D warnings
fi

echo "== building"
cargo build --workspace --all-targets --quiet
# The shipped sidecar (no dev store) with its own tests: the workspace build never compiles
# it so (it merges features). The operator alone is the release image's build.
cargo test -p uploadbucket-sidecar --no-default-features --features server --quiet --no-run

echo "== waiting for the background builds (logs in $work)"
await deps "installing the test dependencies (tests/scripts/install-deps.sh --no-go)"
await images "building the release images (tests/scripts/images.sh)"
tests/scripts/images.sh "$work/images" --example-only
await helm "building helm"
await promtool "building promtool"
await kubernetes "building Kubernetes"
tests/scripts/node.sh install  # the pause image (gcc came with the packages)

echo "== starting a one-node cluster (containerd + kubelet + kube-proxy + control plane)"
tests/scripts/node.sh start "$work/node" "$work/images"
# shellcheck disable=SC1091
source "$work/node/env"

echo "== starting Ceph RGW"
# Also on the node's IP, where pods reach it.
RGW_ALSO_ON=$UPLOADBUCKET_NODE_IP tests/scripts/rgw.sh start "$work/rgw" "$(free_port)" "$(free_port)"
# shellcheck disable=SC1091
source "$work/rgw/env"

echo "== starting LocalStack (the AWS stand-in)"
tests/scripts/localstack.sh start "$work/localstack" "$(free_port)"
# shellcheck disable=SC1091
source "$work/localstack/env"

echo "== starting etcd + kube-apiserver"
tests/scripts/kube.sh start "$work/kube"
# shellcheck disable=SC1091
source "$work/kube/env"
export UPLOADBUCKET_REQUIRE_SERVERS=1
# A failing test's panic message comes last in its report, where a summary of a long log
# (the operator's output) still shows it; a backtrace would bury it mid-report.
export RUST_BACKTRACE=0
# The credential chain must never reach for instance metadata on a test machine.
export AWS_EC2_METADATA_DISABLED=true

echo "== cargo test"
log="$work/cargo-test.log"
# The lifecycle test first, while RGW's lifecycle index holds no other test's buckets: RGW 16's
# manual passes (radosgw-admin lc process) ignore --bucket and take one bucket per index
# shard per pass, and with the rest of the suite's buckets in the index ten passes went by
# without reaching the test's bucket.
lifecycle=pending_uploads_expire_by_lifecycle_and_verified_ones_stay
# `--workspace`, as in the build above: with `-p` cargo resolves the features apart and
# rebuilds its dependencies (1.5 minutes on a fresh machine).
cargo test --workspace --test verify_rgw --quiet -- --exact "$lifecycle" 2>&1 | tee "$log"
# The shipped sidecar's own tests (built above), then the workspace's.
cargo test -p uploadbucket-sidecar --no-default-features --features server --quiet 2>&1 | tee -a "$log"
cargo test --workspace --quiet -- --skip "$lifecycle" 2>&1 | tee -a "$log"
# One closing line for the whole run (cargo prints one per test binary, doc-tests last).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1); if ($i ~ /^ignored/) s += $(i-1) } }
     END { printf "summary: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
