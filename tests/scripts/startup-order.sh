#!/usr/bin/env bash
# The functions the signer's pod build runs from its start to its first signed URL (with keys
# in the environment, and with a web identity token exchanged at STS, over plain HTTP as in the
# suite and over TLS as at AWS), which its release link
# lays out side by side (sidecar/build.rs), so that an idle signer holds the pages
# of that code only, not of most of the binary.
#
#   tests/scripts/startup-order.sh          builds the pod build, traces it, writes
#                                           sidecar/startup-order.txt (commit it)
#   tests/scripts/startup-order.sh --check  traces the pod build as it is built; exits 1 unless
#                                           the file lists 95% or more of the code it ran
#
# The names are the build's own symbol names, which change with the compiler, the locked
# crate versions and the release profile: after such a change the file is stale, --check
# (run by the suite) fails, and running this script again mends it. The trace is callgrind's
# (valgrind); the sizes come from nm. Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/../.."
mode=${1:-write}
case "$mode" in write|--check) ;; *) echo "usage: tests/scripts/startup-order.sh [--check]" >&2; exit 2 ;; esac
target=${CARGO_TARGET_DIR:-target}
bin=$target/release/uploadbucket-sidecar
file=sidecar/startup-order.txt
build="cargo build --release --locked --quiet -p uploadbucket-sidecar --no-default-features --features server"
for tool in valgrind nm curl python3 openssl; do
  command -v $tool >/dev/null || { echo "startup-order.sh: needs $tool (tests/scripts/install-deps.sh)" >&2; exit 1; }
done
[ "$mode" = write ] && $build
[ -x "$bin" ] || { echo "startup-order.sh: no $bin; build it: $build" >&2; exit 1; }
# `cargo bench` and a plain `cargo build --release` put the build with the dev store there.
if grep -q dev_store <(nm "$bin"); then
  echo "startup-order.sh: $bin is not the pod build (it has the dev store); build it: $build" >&2
  exit 1
fi

work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# An STS for the web identity runs, over plain HTTP and over TLS (tests/scripts/sts_stand_in.py).
sts=tests/scripts/sts_stand_in.py
python3 $sts pki "$work/pki" || { echo "startup-order.sh: openssl failed" >&2; exit 1; }
sts_port=$(free_port)
python3 $sts serve "$sts_port" &
pids+=($!)
sts_tls_port=$(free_port)
python3 $sts serve "$sts_tls_port" "$work/pki" &
pids+=($!)
echo "startup.token.from-kubelet" >"$work/token"

# One run under callgrind, from start to the first signed URL, with credentials from $1.
trace() {
  local name=$1 port pid; shift
  port=$(free_port)
  env -i PATH="$PATH" UPLOADBUCKET_BUCKET=bench-bucket UPLOADBUCKET_REGION=eu-west-1 \
    UPLOADBUCKET_LISTEN="127.0.0.1:$port" RUST_LOG=warn AWS_EC2_METADATA_DISABLED=true "$@" \
    valgrind --tool=callgrind --demangle=no --compress-strings=no --compress-pos=no \
    --callgrind-out-file="$work/$name.callgrind" "$bin" >"$work/$name.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/$name.log" >&2; echo "startup-order.sh: the signer exited" >&2; exit 1; }
    sleep 0.1
  done
  curl -sf -o /dev/null -X POST -H 'content-type: application/json' \
    -d '{"filename":"cat.jpg","contentType":"image/jpeg","size":1048576}' "http://127.0.0.1:$port/uploads" ||
    { cat "$work/$name.log" >&2; echo "startup-order.sh: POST /uploads failed ($name)" >&2; exit 1; }
  kill -TERM "$pid"
  wait "$pid" || true
}
# As tests/bench.sh runs it: keys in the environment.
trace keys AWS_ACCESS_KEY_ID=AKIASTARTUPEXAMPLE00 AWS_SECRET_ACCESS_KEY=startupsecretstartupsecretstartupsecret0
# As in a pod with IRSA: a web identity token exchanged at STS, over plain HTTP (as against
# the suite's stand-ins), then over TLS with a chain to verify (as against AWS's STS). The
# exchange itself is the work of the signer's helper process (`credentials`), which valgrind
# does not follow: what is traced is the signer's own part, running the helper and reading it.
trace web-identity AWS_ROLE_ARN=arn:aws:iam::000000000000:role/upload \
  AWS_WEB_IDENTITY_TOKEN_FILE="$work/token" AWS_ENDPOINT_URL_STS="http://127.0.0.1:$sts_port"
trace web-identity-tls AWS_ROLE_ARN=arn:aws:iam::000000000000:role/upload \
  AWS_WEB_IDENTITY_TOKEN_FILE="$work/token" AWS_ENDPOINT_URL_STS="https://localhost:$sts_tls_port" \
  SSL_CERT_FILE="$work/pki/roots.pem"
nm -S --defined-only "$bin" >"$work/symbols"

python3 - "$mode" "$work/symbols" "$file" "$work/keys.callgrind" "$work/web-identity.callgrind" \
  "$work/web-identity-tls.callgrind" <<'PY'
import sys
mode, symbols, path, *traces = sys.argv[1:]
size = {}
for line in open(symbols):
    parts = line.split()
    if len(parts) == 4 and parts[2] in "tTwW":
        size[parts[3]] = int(parts[1], 16)
# Each run's functions (of the binary's own code), in the order the runs were made.
runs = [{l[3:].strip() for l in open(t) if l.startswith("fn=")} & size.keys() for t in traces]
ran = set().union(*runs)
total = sum(size[n] for n in ran)
if not ran:
    sys.exit("startup-order.sh: callgrind saw none of the binary's functions (no symbols?)")
if mode == "write":
    # What every run ran first, then what only one did, run by run: each run's code is then
    # one stretch, with at most the other runs' few own functions in between.
    common = set.intersection(*runs)
    order = sorted(common)
    for run in runs:
        order += sorted(run - common - set(order))
    with open(path, "w") as f:
        f.writelines(n + "\n" for n in order)
    print(f"startup-order.sh: {len(ran)} functions, {total / 1024:.0f} KiB, written to {path}")
    sys.exit(0)
listed = set(open(path).read().split())
covered = sum(size[n] for n in ran if n in listed)
share = covered / total
missing = sorted((n for n in ran if n not in listed), key=lambda n: -size[n])
print(f"startup-order.sh: {path} lists {share:.1%} of the {total / 1024:.0f} KiB of code the "
      f"signer ran to its first URL ({len(ran) - len(missing)} of {len(ran)} functions)")
if share < 0.95:
    print("largest missing: " + ", ".join(missing[:5]), file=sys.stderr)
    sys.exit(f"startup-order.sh: {path} is stale; run tests/scripts/startup-order.sh and commit it")
PY
