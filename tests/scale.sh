#!/usr/bin/env bash
# Operator figures from one run on this machine.
#  Webhook: AdmissionReviews for an annotated pod POSTed to the operator's /mutate over
#  kept-alive TLS (wrk) at concurrency 1 and 32, against a real kube-apiserver: p50 and p99
#  latency and reviews/s, each the median of BENCH_ROUNDS runs of BENCH_SECONDS, with the
#  rounds' range. The operator runs as a standby replica (another holds the Lease), so it
#  only serves the webhook; every review must come back "injected" (checked on /metrics).
#
#  Objects: SCALE_OBJECTS (1000; a list such as "1000 10000" runs each count in turn, a
#  namespace and an operator each, its webhook on as deployed) UploadBuckets created at
#  once against Ceph RGW (S3 and IAM: a bucket and an IRSA role each) and the real API server: time until all are Ready,
#  the operator's peak and settled RSS and CPU seconds, AWS requests per object (the
#  operator's own count), and a full resync of all of them (each reconciled once more) with
#  the writes it made, its reads per object and how long a window it took. The targets are
#  checked: a missed one fails the run (exit 1) after the tables are printed.
#
#   tests/scale.sh                      both, the current release build
#   tests/scale.sh OTHER_OPERATOR_BIN   the webhook of that binary too, in the same run
#   SCALE_ONLY=webhook|objects|fairness tests/scale.sh
#   SCALE_ONLY=objects SCALE_OBJECTS="1000 10000" tests/scale.sh   (the fleet figures)
#
# The operator runs as its image does (MALLOC_ARENA_MAX=1, set in the image).
# Needs kube-apiserver + etcd (tests/scripts/kube.sh install), Ceph RGW
# (tests/scripts/install-deps.sh), python3 with boto3, and wrk (installed if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${BENCH_SECONDS:-10}
rounds=${BENCH_ROUNDS:-3}
baseline=${1:-}
export PATH="${UPLOADBUCKET_BIN_DIR:-$HOME/.cache/uploadbucket/bin}:$PATH"

if ! command -v wrk >/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq && $sudo apt-get install -y -qq wrk >/dev/null
fi
tests/scripts/kube.sh install

echo "== building (release)" >&2
cargo build --release -q -p uploadbucket-operator
target=${CARGO_TARGET_DIR:-target}
current=$target/release/uploadbucket-operator

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  tests/scripts/kube.sh stop "$work/kube" >/dev/null 2>&1 || true
  tests/scripts/rgw.sh stop "$work/rgw" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "== starting etcd + kube-apiserver" >&2
tests/scripts/kube.sh start "$work/kube" >&2
export KUBECONFIG=$work/kube/kubeconfig
kubectl apply -f crds/uploadbuckets.uploadbucket.io.yaml >/dev/null
kubectl wait --for=condition=Established crd/uploadbuckets.uploadbucket.io --timeout=60s >/dev/null
kubectl create namespace bench >/dev/null
# Another replica holds the Lease for an hour: the benchmarked operator stays a standby.
now=$(date -u +%Y-%m-%dT%H:%M:%S.000000Z)
kubectl apply -f - >/dev/null <<YAML
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: uploadbucket-operator, namespace: bench}
spec: {holderIdentity: elsewhere, leaseDurationSeconds: 3600, acquireTime: "$now", renewTime: "$now"}
---
apiVersion: uploadbucket.io/v1alpha1
kind: UploadBucket
metadata: {name: photos, namespace: bench}
spec: {cors: {allowedOrigins: ["https://shop.example.com"]}}
YAML
# The status a provisioned UploadBucket has (no S3 server takes part here).
kubectl patch uploadbucket photos -n bench --subresource=status --type=merge -p "$(cat <<JSON
{"status": {"bucketName": "bench-photos", "region": "us-east-1", "conditions": [
  {"type": "Ready", "status": "True", "reason": "Provisioned", "message": "bench", "lastTransitionTime": "$now"},
  {"type": "BucketReady", "status": "True", "reason": "Provisioned", "message": "bench", "lastTransitionTime": "$now"}]}}
JSON
)" >/dev/null

# The webhook's serving certificate (for the webhook benchmark and the objects' operator).
certs() {
  [ -f "$work/certs/tls.crt" ] && return 0
  mkdir -p "$work/certs"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$work/certs/tls.key" -out "$work/certs/tls.crt" 2>/dev/null
}

bench_webhook() {
certs
cat >"$work/review.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = [[{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{
"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","kind":{"group":"","version":"v1","kind":"Pod"},
"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"bench","operation":"CREATE",
"userInfo":{"username":"bench"},"object":{"apiVersion":"v1","kind":"Pod",
"metadata":{"generateName":"web-","namespace":"bench","annotations":{"uploadbucket.io/inject":"photos"}},
"spec":{"containers":[{"name":"app","image":"shop/web:1.4"}]}}}}]]
LUA

# Starts operator $1 (label $2); sets $webhook and $admin. It never reaches AWS (a standby,
# its endpoint a closed port), so the account id the operator checks its buckets' owner
# against is given, not asked of STS.
start_operator() {
  webhook=$(free_port); admin=$(free_port)
  KUBECONFIG=$KUBECONFIG AWS_ACCESS_KEY_ID=unused AWS_SECRET_ACCESS_KEY=unused \
    AWS_EC2_METADATA_DISABLED=true UPLOADBUCKET_REGION=us-east-1 UPLOADBUCKET_AWS_ACCOUNT_ID=123456789012 \
    UPLOADBUCKET_S3_ENDPOINT=http://127.0.0.1:9 UPLOADBUCKET_WATCH_NAMESPACE=bench \
    UPLOADBUCKET_LEADER_ELECTION=true UPLOADBUCKET_LEADER_ELECTION_NAMESPACE=bench POD_NAME="bench-$2" \
    UPLOADBUCKET_WEBHOOK_CERT_DIR="$work/certs" UPLOADBUCKET_WEBHOOK_LISTEN="127.0.0.1:$webhook" \
    UPLOADBUCKET_ADMIN_LISTEN="127.0.0.1:$admin" UPLOADBUCKET_SIDECAR_IMAGE=uploadbucket/sidecar:bench \
    MALLOC_ARENA_MAX=1 RUST_LOG=info "$1" run >"$work/operator-$2.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    curl -sfk "https://127.0.0.1:$webhook/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  cat "$work/operator-$2.log" >&2; echo "scale.sh: the operator ($2) did not start" >&2; exit 1
}

# One wrk run: prints "p50_ms p99_ms reviews_per_s".
run_wrk() {
  local c=$1 out
  out=$(wrk -t "$(( c < 2 ? 1 : 2 ))" -c "$c" -d "${secs}s" --latency -s "$work/review.lua" \
    "https://127.0.0.1:$webhook/mutate")
  # A rate made of error answers or broken connections is no rate: the run fails.
  if grep -qE "Non-2xx|Socket errors" <<<"$out"; then
    echo "scale.sh: wrk at concurrency $c: $(grep -E 'Non-2xx|Socket errors' <<<"$out")" >&2; kill $$; exit 1
  fi
  awk '
      function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
      $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) } /Requests\/sec/ { rps = $2 }
      END { printf "%.3f %.3f %.0f\n", p50, p99, rps }' <<<"$out"
}

declare -A result
labels=(current)
[ -n "$baseline" ] && labels=(baseline current)
for label in "${labels[@]}"; do
  bin=$current; [ "$label" = baseline ] && bin=$baseline
  start_operator "$bin" "$label"
  run_wrk 1 >/dev/null  # warm-up: connections, caches
  for c in 1 32; do
    for r in $(seq "$rounds"); do
      result[$label,$c,$r]=$(run_wrk "$c")
      echo "$label c=$c round $r: ${result[$label,$c,$r]}" >&2
    done
  done
  metrics=$(curl -sf "http://127.0.0.1:$admin/metrics")
  # Every review injected: a count of any other outcome (denied, skipped, error, invalid)
  # fails the run, and so does no injection at all.
  others=$(awk '/^uploadbucket_webhook_reviews_total\{/ && !/outcome="injected"/ { n += $NF } END { print n + 0 }' <<<"$metrics")
  injected=$(awk '/^uploadbucket_webhook_reviews_total\{outcome="injected"\}/ { n += $NF } END { print n + 0 }' <<<"$metrics")
  if [ "$others" != 0 ] || [ "$injected" = 0 ]; then
    grep uploadbucket_webhook <<<"$metrics" >&2
    echo "scale.sh: reviews were not all answered with an injection ($label)" >&2; exit 1
  fi
  kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
done

python3 - "$secs" "$rounds" "${labels[*]}" <<PY
import sys
secs, rounds, labels = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
raw = """$(for k in "${!result[@]}"; do echo "$k ${result[$k]}"; done)"""
data = {}
for line in raw.strip().splitlines():
    key, p50, p99, rps = line.split()
    label, c, r = key.split(",")
    data.setdefault((label, c), []).append((float(p50), float(p99), float(rps)))
def med(v): v = sorted(v); return v[(len(v) - 1) // 2]
print(f"\n## Webhook (AdmissionReview of an annotated pod over kept-alive TLS; median of {rounds} {secs}s wrk runs, range in brackets; 2 cores, load generator on the same machine)\n")
print("| operator | concurrency | p50 ms | p99 ms | reviews/s |")
print("|---|---|---|---|---|")
for label in labels:
    for c in ("1", "32"):
        rows = data[(label, c)]
        cols = []
        for i, fmt in ((0, "{:.2f}"), (1, "{:.2f}"), (2, "{:.0f}")):
            vals = [r[i] for r in rows]
            cols.append(f"{fmt.format(med(vals))} [{fmt.format(min(vals))}-{fmt.format(max(vals))}]")
        print(f"| {label} | {c} | " + " | ".join(cols) + " |")
PY
}

# The objects' targets, per count: all Ready within 60 s per 1,000 objects, settled RSS 32 MiB
# up to 1,000 objects and 64 MiB beyond, at most 10 S3 and 4 IAM requests per new object, and
# a resync that writes nothing. A missed target fails the run (after the table).
missed=0

bench_objects_setup() {
  python3 -c 'import boto3' 2>/dev/null || python3 -m pip install -q boto3
  echo "== starting Ceph RGW" >&2
  tests/scripts/rgw.sh start "$work/rgw" "$(free_port)" "$(free_port)" >&2
  # shellcheck disable=SC1091
  source "$work/rgw/env"
  radosgw-admin -c "$UPLOADBUCKET_TEST_RGW_CONF" user modify --uid=uploadbucket-test --max-buckets=100000 >/dev/null
  # The cluster's OIDC provider in RGW's IAM, as once per cluster.
  provider=$(python3 - <<'PY'
import os, boto3
iam = boto3.client("iam", endpoint_url=os.environ["UPLOADBUCKET_TEST_S3_ENDPOINT"], region_name="us-east-1",
    aws_access_key_id=os.environ["UPLOADBUCKET_TEST_ACCESS_KEY_ID"],
    aws_secret_access_key=os.environ["UPLOADBUCKET_TEST_SECRET_ACCESS_KEY"])
print(iam.create_open_id_connect_provider(Url="https://scale.issuer.test", ClientIDList=["sts.amazonaws.com"],
    ThumbprintList=["0123456789abcdef0123456789abcdef01234567"])["OpenIDConnectProviderArn"])
PY
)
}

# CPU seconds (user + system) used so far by the processes whose pid files are given.
cpu_of() {
  local total=0 f s
  for f in "$@"; do
    [ -s "$f" ] || continue
    s=$(awk -v tck="$(getconf CLK_TCK)" '{ printf "%.1f", ($14 + $15) / tck }' "/proc/$(cat "$f")/stat" 2>/dev/null) || continue
    total=$(awk -v a="$total" -v b="${s:-0}" 'BEGIN { printf "%.1f", a + b }')
  done
  echo "$total"
}
# "store api": the CPU seconds of RGW (radosgw, its OSD and monitor) and of the API server
# with etcd, to tell which of them limits the time to Ready.
servers_cpu() {
  echo "$(cpu_of "$work/rgw/rgw.pid" "$work/rgw/run/osd.0.pid" "$work/rgw/run/mon.a.pid") $(cpu_of "$work"/kube/*.pid)"
}

# One count: bench_objects N. A namespace and an operator of its own.
bench_objects() {
  # The resync period grows with the count (60 s per 1,000 objects beyond 1,000): a resync
  # costs about 9 S3 and 2 IAM reads per object, and at 10,000 objects every 120 s that is
  # ~1,000 requests a second, more than RGW serves on this machine (measured: new objects
  # then starve); every 600 s, spread over the period, ~180 a second.
  local n=$1 ns=scale-$1 resync=${SCALE_RESYNC_SECONDS:-$(( $1 <= 1000 ? 120 : 60 * $1 / 1000 ))}
  kubectl create namespace "$ns" >/dev/null
  local admin; admin=$(free_port)
  # As deployed: the webhook on too, whose lookups share the controller's watch cache.
  certs
  KUBECONFIG=$KUBECONFIG AWS_ACCESS_KEY_ID=$UPLOADBUCKET_TEST_ACCESS_KEY_ID \
    AWS_SECRET_ACCESS_KEY=$UPLOADBUCKET_TEST_SECRET_ACCESS_KEY AWS_EC2_METADATA_DISABLED=true \
    UPLOADBUCKET_REGION=us-east-1 UPLOADBUCKET_S3_ENDPOINT="$UPLOADBUCKET_TEST_S3_ENDPOINT" \
    UPLOADBUCKET_S3_PATH_STYLE=true UPLOADBUCKET_S3_BACKEND=rgw UPLOADBUCKET_WATCH_NAMESPACE="$ns" \
    UPLOADBUCKET_OIDC_PROVIDER_ARN="$provider" UPLOADBUCKET_IAM_ENDPOINT="$UPLOADBUCKET_TEST_S3_ENDPOINT" \
    UPLOADBUCKET_RESYNC_SECONDS="$resync" \
    UPLOADBUCKET_ADMIN_LISTEN="127.0.0.1:$admin" RUST_LOG=warn \
    UPLOADBUCKET_WEBHOOK_CERT_DIR="$work/certs" UPLOADBUCKET_WEBHOOK_LISTEN="127.0.0.1:$(free_port)" \
    UPLOADBUCKET_SIDECAR_IMAGE=uploadbucket/sidecar:bench MALLOC_ARENA_MAX=1 \
    "$current" run >"$work/operator-objects-$n.log" 2>&1 &
  local op=$!
  pids+=("$op")
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  # The operator's counters and its /proc figures: "reconciles s3r s3w iamr iamw cpu_s rss_kib
  # hwm_kib s3_until_ready iam_until_ready" (the last two: requests made by passes of objects
  # not Ready yet, apart from the resyncs of Ready ones).
  sample() {
    local m; m=$(curl -sf "http://127.0.0.1:$admin/metrics")
    local tck; tck=$(getconf CLK_TCK)
    awk -v tck="$tck" -v pid="$op" '
      /^uploadbucket_reconciles_total / { rec = $2 }
      /^uploadbucket_aws_requests_total\{service="s3",kind="read"\}/ { s3r = $2 }
      /^uploadbucket_aws_requests_total\{service="s3",kind="write"\}/ { s3w = $2 }
      /^uploadbucket_aws_requests_total\{service="iam",kind="read"\}/ { iamr = $2 }
      /^uploadbucket_aws_requests_total\{service="iam",kind="write"\}/ { iamw = $2 }
      /^uploadbucket_aws_requests_until_ready_total\{service="s3"\}/ { s3u = $2 }
      /^uploadbucket_aws_requests_until_ready_total\{service="iam"\}/ { iamu = $2 }
      END {
        getline stat < ("/proc/" pid "/stat"); split(stat, f, " ")
        while ((getline line < ("/proc/" pid "/status")) > 0) {
          if (line ~ /^VmRSS/) { split(line, a); rss = a[2] } if (line ~ /^VmHWM/) { split(line, b); hwm = b[2] }
        }
        printf "%d %d %d %d %d %.1f %d %d %d %d\n", rec, s3r, s3w, iamr, iamw, (f[14] + f[15]) / tck, rss, hwm, s3u, iamu
      }' <<<"$m"
  }
  # The operator before any object: what the per-object figure is counted from.
  sleep 2
  local idle; idle=$(sample)
  echo "  idle: $idle" >&2
  echo "== $n UploadBuckets at once" >&2
  for i in $(seq "$n"); do
    printf 'apiVersion: uploadbucket.io/v1alpha1\nkind: UploadBucket\nmetadata: {name: b%05d, namespace: %s}\nspec: {cors: {allowedOrigins: ["https://shop.example.com"]}, serviceAccountNames: [web], deletionPolicy: Delete}\n---\n' "$i" "$ns"
  done >"$work/objects-$n.yaml"
  local servers0; servers0=$(servers_cpu)
  local t0; t0=$(date +%s.%N)
  kubectl create -f "$work/objects-$n.yaml" >/dev/null
  local t_created; t_created=$(date +%s.%N)
  local ready=0 limit=$(( 900 * (n + 999) / 1000 ))
  # Polled from the operator's own gauge (listing 10,000 objects every 2 s with kubectl took
  # most of a core and slowed what it measured); the API server's view is checked once at
  # the end.
  ready_from_api() {
    kubectl get uploadbuckets -n "$ns" -o json | python3 -c '
import json, sys
items = json.load(sys.stdin)["items"]
print(sum(1 for i in items if any(c["type"] == "Ready" and c["status"] == "True" for c in i.get("status", {}).get("conditions", []))))'
  }
  while :; do
    ready=$(curl -sf "http://127.0.0.1:$admin/metrics" | awk '/^uploadbucket_ready\{/ { s += $2 } END { print s + 0 }')
    local now; now=$(date +%s.%N)
    local elapsed; elapsed=$(awk -v a="$now" -v b="$t0" 'BEGIN { printf "%.0f", a - b }')
    echo "  ${elapsed} s: $ready Ready" >&2
    [ "$ready" -ge "$n" ] && break
    if [ "$elapsed" -gt "$limit" ]; then echo "scale.sh: not all $n Ready after $limit s" >&2; exit 1; fi
    sleep 2
  done
  local t_ready; t_ready=$(date +%s.%N)
  local servers1; servers1=$(servers_cpu)
  local api_ready; api_ready=$(ready_from_api)
  [ "$api_ready" -ge "$n" ] || { echo "scale.sh: the operator counts $n Ready, the API server $api_ready" >&2; exit 1; }
  # The passes brought back by the operator's own writes finish (they make no AWS call);
  # bounded, since with many objects the first resyncs may begin before the last is Ready.
  local at_ready prev tries=0
  at_ready=$(sample)
  while sleep 5; prev=$at_ready; at_ready=$(sample); tries=$((tries + 1))
    [ "$tries" -lt 6 ] && [ "$(cut -d' ' -f1-5 <<<"$prev")" != "$(cut -d' ' -f1-5 <<<"$at_ready")" ]; do :; done
  echo "  all Ready, settled: $at_ready" >&2
  # A full resync: every object reconciled once more, with nothing changed. Each object's
  # first resync comes at a point its uid fixes, half a period to one and a half after its
  # Ready; the window the resync takes is measured. Deadline: twice the period.
  local want=$(( $(cut -d' ' -f1 <<<"$at_ready") + n )) first="" last t_now rec
  local deadline=$(( $(date +%s) + 2 * resync + 60 ))
  while :; do
    rec=$(sample | cut -d' ' -f1); t_now=$(date +%s.%N)
    [ -z "$first" ] && [ "$rec" -gt "$(cut -d' ' -f1 <<<"$at_ready")" ] && first=$t_now
    if [ "$rec" -ge "$want" ]; then last=$t_now; break; fi
    if [ "$(date +%s)" -gt "$deadline" ]; then
      echo "scale.sh: the resync reached $rec of $want reconciles in $(( 2 * resync + 60 )) s" >&2; exit 1
    fi
    sleep 1
  done
  sleep 10  # the last passes finish
  local after; after=$(sample)
  echo "  after a resync: $after" >&2
  python3 - "$n" "$t0" "$t_created" "$t_ready" "$at_ready" "$after" "$first" "$last" "$resync" "$idle" "$servers0" "$servers1" <<'PY' || missed=1
import sys
n = int(sys.argv[1]); t0, tc, tr = map(float, sys.argv[2:5])
a = [float(x) for x in sys.argv[5].split()]; b = [float(x) for x in sys.argv[6].split()]
first, last, resync = float(sys.argv[7]), float(sys.argv[8]), int(sys.argv[9])
idle = [float(x) for x in sys.argv[10].split()]
(store0, api0), (store1, api1) = ([float(x) for x in v.split()] for v in sys.argv[11:13])
rec, s3r, s3w, iamr, iamw, cpu, rss, hwm, s3u, iamu = range(10)
d = [b[i] - a[i] for i in range(6)]
# Per new object: the requests of passes made while objects were not Ready (with many
# objects the first resyncs of the early ones come before the last is Ready).
s3_new, iam_new = a[s3u] / n, a[iamu] / n
ready_s, settled = tr - t0, b[rss] / 1024
targets = [
    ("all Ready", ready_s <= 60 * max(1, n / 1000), f"{ready_s:.0f} s <= {60 * max(1, n / 1000):.0f} s"),
    ("S3 requests per new object", s3_new <= 10, f"{s3_new:.1f} <= 10"),
    ("IAM requests per new object", iam_new <= 4, f"{iam_new:.1f} <= 4"),
    ("RSS settled", settled <= (32 if n <= 1000 else 64), f"{settled:.1f} MiB <= {32 if n <= 1000 else 64} MiB"),
    ("resync writes", d[s3w] + d[iamw] == 0, f"{d[s3w] + d[iamw]:.0f} == 0"),
]
print(f"\n## {n} UploadBuckets at once (Ceph RGW as S3 and IAM, real kube-apiserver, one operator; 2 cores, everything on this machine)\n")
print("| figure | value |\n|---|---|")
print(f"| created (kubectl create) | {tc - t0:.0f} s |")
print(f"| all Ready after | {ready_s:.0f} s |")
print(f"| reconciles until Ready and settled | {a[rec]:.0f} ({a[rec] / n:.1f} per object) |")
print(f"| AWS requests per object until Ready and settled, all passes | S3 {a[s3r] / n:.1f} reads + {a[s3w] / n:.1f} writes, IAM {a[iamr] / n:.1f} reads + {a[iamw] / n:.1f} writes |")
print(f"| AWS requests per new object: passes of objects not Ready yet | S3 {s3_new:.1f}, IAM {iam_new:.1f} |")
print(f"| operator CPU until then | {a[cpu]:.1f} s |")
window = tr - t0
print(f"| CPU from create to all Ready ({window:.0f} s; the 2 cores give {2 * window:.0f} s) | operator {a[cpu]:.0f} s, RGW (radosgw, OSD, monitor) {store1 - store0:.0f} s, API server and etcd {api1 - api0:.0f} s |")
print(f"| operator RSS peak (VmHWM) | {b[hwm] / 1024:.1f} MiB |")
print(f"| operator RSS before any object | {idle[rss] / 1024:.1f} MiB |")
print(f"| operator RSS settled (after the resync) | {settled:.1f} MiB ({(b[rss] - idle[rss]) * 1024 / n:.0f} bytes per object over the idle figure) |")
print(f"| full resync: reconciles | {d[rec]:.0f}, spread over {last - first:.0f} s of the {resync} s period |")
print(f"| full resync: writes | S3 {d[s3w]:.0f}, IAM {d[iamw]:.0f} |")
print(f"| full resync: reads per object | S3 {d[s3r] / n:.1f}, IAM {d[iamr] / n:.1f} |")
print(f"| full resync: operator CPU | {d[cpu]:.1f} s ({d[cpu] * 1000 / n:.2f} ms per object) |")
print("\n| target | met |\n|---|---|")
for name, ok, what in targets:
    print(f"| {name}: {what} | {'yes' if ok else '**NO**'} |")
sys.exit(0 if all(ok for _, ok, _ in targets) else 1)
PY
  kill "$op"; wait "$op" 2>/dev/null || true
}

# Fairness: namespace A holds FAIRNESS_FAILING (500) failing objects (a third each hanging
# at the store, denied, and taken by another account, through the test proxy of
# tests/src/store_proxy.rs), namespace B creates FAIRNESS_TRIES (20) objects one after the
# other: B's p99 from creation to Ready (target 10 s) and A's request rate. The scenario is
# tests/src/bin/fairness.rs (the suite runs a small version of it in fleet_fairness.rs),
# against this run's API server and RGW, the operator's defaults.
bench_fairness() {
  [ -n "${provider:-}" ] || bench_objects_setup
  echo "== fairness: ${FAIRNESS_FAILING:-500} failing objects in one namespace, ${FAIRNESS_TRIES:-20} new in another" >&2
  cargo build -q -p uploadbucket-operator
  (
    # shellcheck disable=SC1091
    source "$work/kube/env"
    # shellcheck disable=SC1091
    source "$work/rgw/env"
    UPLOADBUCKET_REQUIRE_SERVERS=1 AWS_EC2_METADATA_DISABLED=true \
      cargo run -q -p uploadbucket-tests --bin fairness >"$work/fairness.log" 2>&1
  ) || { tail -40 "$work/fairness.log" >&2; missed=1; }
  echo; echo "## Fairness"; echo
  grep "^fairness:" "$work/fairness.log" || echo "(no figure: see the log above)"
}

bench_all_objects() {
  [ -n "${provider:-}" ] || bench_objects_setup
  # SCALE_OBJECTS: the counts to run, one after another in this run (e.g. "1000 10000").
  for n in ${SCALE_OBJECTS:-1000}; do bench_objects "$n"; done
}

case "${SCALE_ONLY:-all}" in
  webhook) bench_webhook ;;
  objects) bench_all_objects ;;
  fairness) bench_fairness ;;
  all) bench_webhook; bench_all_objects; bench_fairness ;;
  *) echo "SCALE_ONLY: webhook, objects, fairness or all" >&2; exit 2 ;;
esac
if [ "$missed" != 0 ]; then echo "scale.sh: a target was missed (see the tables)" >&2; exit 1; fi
