#!/usr/bin/env bash
# The functions the signer's pod build runs from its start to its first signed URL, which its
# release link lays out side by side (sidecar/build.rs), so that an idle signer holds the pages
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
for tool in valgrind nm curl python3; do
  command -v $tool >/dev/null || { echo "startup-order.sh: needs $tool (tests/scripts/install-deps.sh)" >&2; exit 1; }
done
[ "$mode" = write ] && $build
[ -x "$bin" ] || { echo "startup-order.sh: no $bin; build it: $build" >&2; exit 1; }

work=$(mktemp -d)
pid=
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# As tests/bench.sh runs it: keys from the environment, one signed URL.
env -i PATH="$PATH" UPLOADBUCKET_BUCKET=bench-bucket UPLOADBUCKET_REGION=eu-west-1 \
  UPLOADBUCKET_LISTEN="127.0.0.1:$port" RUST_LOG=warn AWS_EC2_METADATA_DISABLED=true \
  AWS_ACCESS_KEY_ID=AKIASTARTUPEXAMPLE00 AWS_SECRET_ACCESS_KEY=startupsecretstartupsecretstartupsecret0 \
  valgrind --tool=callgrind --demangle=no --compress-strings=no --compress-pos=no \
  --callgrind-out-file="$work/callgrind.out" "$bin" >"$work/sidecar.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/sidecar.log" >&2; echo "startup-order.sh: the signer exited" >&2; exit 1; }
  sleep 0.1
done
curl -sf -o /dev/null -X POST -H 'content-type: application/json' \
  -d '{"filename":"cat.jpg","contentType":"image/jpeg","size":1048576}' "http://127.0.0.1:$port/uploads" ||
  { cat "$work/sidecar.log" >&2; echo "startup-order.sh: POST /uploads failed" >&2; exit 1; }
kill -TERM "$pid"
wait "$pid" || true
pid=
nm -S --defined-only "$bin" >"$work/symbols"

python3 - "$mode" "$work/callgrind.out" "$work/symbols" "$file" <<'PY'
import sys
mode, trace, symbols, path = sys.argv[1:]
ran = {l[3:].strip() for l in open(trace) if l.startswith("fn=")}
size = {}
for line in open(symbols):
    parts = line.split()
    if len(parts) == 4 and parts[2] in "tTwW":
        size[parts[3]] = int(parts[1], 16)
ran = {name for name in ran if name in size}
total = sum(size[n] for n in ran)
if not ran:
    sys.exit("startup-order.sh: callgrind saw none of the binary's functions (no symbols?)")
if mode == "write":
    with open(path, "w") as f:
        f.writelines(n + "\n" for n in sorted(ran))
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
