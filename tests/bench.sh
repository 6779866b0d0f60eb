#!/usr/bin/env bash
# Signer benchmarks, all figures from one run on this machine:
#  1. criterion: the fast presigner vs the cached-key ceiling vs aws-sdk-s3's presigner;
#  2. wrk: POST /uploads req/s at concurrency 1, 16, 64, fast signer vs `--signer sdk`, and
#     the HTTP ceiling both pay: GET /healthz on the fast sidecar at the same concurrencies;
#  3. resident memory of the sidecar idle and under load;
#  4. user and system CPU time per POST /uploads and GET /healthz with the sidecar alone on
#     one core (informative: where a gap to /healthz comes from).
# Prints a markdown table (medians, with the spread of the rounds) and checks the targets
# (signer >= 0.7x the ceiling, /uploads >= 3x the SDK build at concurrency 16 and 64 and at 1
# unless the HTTP round trip caps it, /uploads >= 0.8x /healthz at concurrency 16 and 64,
# RSS idle <= 10 MiB); exits 1 if missed.
#   tests/bench.sh            (about 5 minutes after the release build)
#   BENCH_SECONDS=10 BENCH_ROUNDS=5 tests/bench.sh   (seconds per wrk run, runs per figure)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${BENCH_SECONDS:-5}
rounds=${BENCH_ROUNDS:-3}

if ! command -v wrk >/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq && $sudo apt-get install -y -qq wrk >/dev/null
fi

echo "== building (release, the pod build: no dev store)" >&2
cargo build --release -q -p uploadbucket-sidecar --no-default-features --features server
target=${CARGO_TARGET_DIR:-target}
bin=$target/release/uploadbucket-sidecar

echo "== criterion: presign" >&2
cargo bench -q -p uploadbucket-sidecar --bench presign -- --noplot >/dev/null 2>&1
est() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['mean']['point_estimate'])" "$target/criterion/presign/$1/new/estimates.json"; }
fast_ns=$(est fast); limit_ns=$(est cached_key_limit); sdk_ns=$(est sdk)

work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = '{"filename":"cat.jpg","contentType":"image/jpeg","size":1048576}'
LUA
: >"$work/get.lua"

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# Starts one sidecar per signer mode, side by side; each is warmed with one signed URL.
declare -A port pid idle peak
for mode in fast sdk; do
  port[$mode]=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  env -i PATH="$PATH" UPLOADBUCKET_BUCKET=bench-bucket UPLOADBUCKET_REGION=eu-west-1 \
    UPLOADBUCKET_LISTEN=127.0.0.1:${port[$mode]} UPLOADBUCKET_SIGNER="$mode" \
    AWS_ACCESS_KEY_ID=AKIABENCHEXAMPLE0000 AWS_SECRET_ACCESS_KEY=benchsecretbenchsecretbenchsecret00000000 \
    AWS_EC2_METADATA_DISABLED=true RUST_LOG=warn "$bin" >"$work/$mode.log" 2>&1 &
  pid[$mode]=$!
  pids+=("${pid[$mode]}")
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:${port[$mode]}/healthz" >/dev/null && break; sleep 0.05; done
  curl -sf -X POST -H 'content-type: application/json' -d '{"contentType":"image/jpeg"}' "http://127.0.0.1:${port[$mode]}/uploads" >/dev/null
done
sleep 1
for mode in fast sdk; do idle[$mode]=$(rss_kib "${pid[$mode]}"); done

# One wrk run against one mode; prints req/s. RSS is sampled meanwhile into rss-<mode>.
wrk_run() {
  local mode=$1 c=$2 rps sampler script=post.lua path=/uploads
  if [ "$mode" = healthz ]; then mode=fast script=get.lua path=/healthz; fi
  ( while kill -0 "${pid[$mode]}" 2>/dev/null; do rss_kib "${pid[$mode]}"; sleep 0.2; done ) >>"$work/rss-$mode" &
  sampler=$!
  rps=$(wrk -t "$(( c < 2 ? 1 : 2 ))" -c "$c" -d "${secs}s" -s "$work/$script" "http://127.0.0.1:${port[$mode]}$path" | awk '/Requests\/sec/ {print $2}')
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  echo "$rps"
}

# The two modes take turns, $rounds times per concurrency, and each figure is the median:
# a shared machine drifts by tens of percent within a minute, and turns spread the drift
# over both sides of the ratio instead of one.
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
spread() { printf '%s\n' "$@" | sort -g | awk 'NR==1 {lo=$1} {hi=$1} END {printf "%.0f-%.0f", lo, hi}'; }
declare -A rps span
for c in 1 16 64; do
  echo "== wrk: concurrency $c, $rounds rounds of both modes and /healthz, the order rotating" >&2
  f=(); s=(); h=()
  for round in $(seq 1 "$rounds"); do
    case $((round % 3)) in
      1) f+=("$(wrk_run fast "$c")"); s+=("$(wrk_run sdk "$c")"); h+=("$(wrk_run healthz "$c")") ;;
      2) s+=("$(wrk_run sdk "$c")"); h+=("$(wrk_run healthz "$c")"); f+=("$(wrk_run fast "$c")") ;;
      0) h+=("$(wrk_run healthz "$c")"); f+=("$(wrk_run fast "$c")"); s+=("$(wrk_run sdk "$c")") ;;
    esac
  done
  rps[fast,$c]=$(median "${f[@]}"); rps[sdk,$c]=$(median "${s[@]}"); rps[healthz,$c]=$(median "${h[@]}")
  span[fast,$c]=$(spread "${f[@]}"); span[sdk,$c]=$(spread "${s[@]}"); span[healthz,$c]=$(spread "${h[@]}")
  echo "   fast ${f[*]} | sdk ${s[*]} | healthz ${h[*]}" >&2
done
for mode in fast sdk; do peak[$mode]=$(sort -n "$work/rss-$mode" | tail -1); done
f_idle=${idle[fast]} s_idle=${idle[sdk]} f_peak=${peak[fast]} s_peak=${peak[sdk]}
f1=${rps[fast,1]} f16=${rps[fast,16]} f64=${rps[fast,64]}
s1=${rps[sdk,1]} s16=${rps[sdk,16]} s64=${rps[sdk,64]}
h1=${rps[healthz,1]} h16=${rps[healthz,16]} h64=${rps[healthz,64]}
spans="${span[fast,1]} ${span[fast,16]} ${span[fast,64]} ${span[sdk,1]} ${span[sdk,16]} ${span[sdk,64]} ${span[healthz,1]} ${span[healthz,16]} ${span[healthz,64]}"

# Where a POST /uploads' time goes, without wrk competing for the same core: a third sidecar
# with one worker pinned to core 1, wrk -t1 pinned to core 0, concurrency 16; the sidecar's
# user and system CPU time per request from /proc/<pid>/stat, /uploads and /healthz taking
# turns. Informative (no target): it says whether a gap is the signer's own work (user) or
# the kernel's (system).
pinned=""
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  echo "== pinned: one worker on core 1, wrk -t1 on core 0, concurrency 16, $rounds rounds" >&2
  pport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  env -i PATH="$PATH" UPLOADBUCKET_BUCKET=bench-bucket UPLOADBUCKET_REGION=eu-west-1 \
    UPLOADBUCKET_LISTEN=127.0.0.1:$pport \
    AWS_ACCESS_KEY_ID=AKIABENCHEXAMPLE0000 AWS_SECRET_ACCESS_KEY=benchsecretbenchsecretbenchsecret00000000 \
    AWS_EC2_METADATA_DISABLED=true RUST_LOG=warn taskset -c 1 "$bin" serve --worker-threads 1 >"$work/pinned.log" 2>&1 &
  ppid=$!
  pids+=("$ppid")
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$pport/healthz" >/dev/null && break; sleep 0.05; done
  curl -sf -X POST -H 'content-type: application/json' -d '{"contentType":"image/jpeg","size":1}' "http://127.0.0.1:$pport/uploads" >/dev/null
  tck=$(getconf CLK_TCK)
  # One pinned wrk run; prints "req/s user-µs system-µs" per request.
  pinned_run() {
    local script=$1 path=$2 before after out
    read -r -a before < <(awk '{print $14, $15}' "/proc/$ppid/stat")
    out=$(taskset -c 0 wrk -t1 -c16 -d"${secs}s" -s "$work/$script" "http://127.0.0.1:$pport$path")
    read -r -a after < <(awk '{print $14, $15}' "/proc/$ppid/stat")
    echo "$out" | awk -v u=$((after[0] - before[0])) -v s=$((after[1] - before[1])) -v t="$tck" \
      '/requests in/ {n=$1} /Requests\/sec/ {r=$2} END {printf "%s %.2f %.2f\n", r, u/t/n*1e6, s/t/n*1e6}'
  }
  for _ in $(seq 1 "$rounds"); do
    pinned="$pinned $(pinned_run post.lua /uploads) $(pinned_run get.lua /healthz)"
  done
fi

status=0
python3 - "$fast_ns" "$limit_ns" "$sdk_ns" "$f_idle" "$f1" "$f16" "$f64" "$f_peak" "$s_idle" "$s1" "$s16" "$s64" "$s_peak" "$secs" "$rounds" "$h1" "$h16" "$h64" $spans <<'PY' || status=$?
import sys
a = sys.argv[1:]
fast, limit, sdk = map(float, a[0:3])
f_idle, f1, f16, f64, f_peak = float(a[3]), float(a[4]), float(a[5]), float(a[6]), float(a[7])
s_idle, s1, s16, s64, s_peak = float(a[8]), float(a[9]), float(a[10]), float(a[11]), float(a[12])
secs, rounds = a[13], a[14]
h1, h16, h64 = float(a[15]), float(a[16]), float(a[17])
sp = dict(zip(["f1", "f16", "f64", "s1", "s16", "s64", "h1", "h16", "h64"], a[18:27]))
ok = True
def check(cond):
    global ok
    ok = ok and cond
    return "yes" if cond else "NO"
print(f"\n## Signer benchmark (req/s: median of {rounds} {secs}s wrk runs per mode in rotating order, the rounds' range in brackets; 2 cores, load generator on the same machine)\n")
print("| measure | fast signer | aws-sdk-s3 | ratio | target | met |")
print("|---|---|---|---|---|---|")
print(f"| presigns/s, one thread (criterion) | {1e9/fast:,.0f} | {1e9/sdk:,.0f} | {sdk/fast:.1f}x | - | - |")
r = limit / fast
print(f"| fast signer vs cached-key ceiling ({1e9/limit:,.0f}/s) | | | {r:.2f}x | >= 0.7x | {check(r >= 0.7)} |")
for c, f, s, h in ((1, f1, s1, h1), (16, f16, s16, h16), (64, f64, s64, h64)):
    # At concurrency 1 the loopback round trip, which both builds pay, caps the ratio (the
    # SDK build at half the ceiling allows 2x at most): there the target is the ceiling.
    if c == 1:
        target, met = ">= 3x, or >= 0.8x of /healthz", check(f / s >= 3 or f / h >= 0.8)
    else:
        target, met = ">= 3x", check(f / s >= 3)
    print(f"| POST /uploads req/s, concurrency {c} | {f:,.0f} [{sp['f%d' % c]}] | {s:,.0f} [{sp['s%d' % c]}] | {f/s:.2f}x | {target} | {met} |")
for c, f, h in ((1, f1, h1), (16, f16, h16), (64, f64, h64)):
    target = "-" if c == 1 else ">= 0.8x"
    met = "-" if c == 1 else check(f / h >= 0.8)
    print(f"| POST /uploads vs GET /healthz {h:,.0f} [{sp['h%d' % c]}] req/s (HTTP ceiling), concurrency {c} | | | {f/h:.2f}x | {target} | {met} |")
print(f"| RSS idle | {f_idle/1024:.2f} MiB | {s_idle/1024:.2f} MiB | | <= 10 MiB | {check(f_idle/1024 <= 10)} |")
print(f"| RSS peak under load | {f_peak/1024:.1f} MiB | {s_peak/1024:.1f} MiB | | - | - |")
print("\nall targets met" if ok else "\nSOME TARGETS MISSED")
sys.exit(0 if ok else 1)
PY

if [ -n "$pinned" ]; then
  # shellcheck disable=SC2086
  python3 - $pinned <<'PY'
import statistics as st, sys
v = list(map(float, sys.argv[1:]))
rounds = [v[i:i + 6] for i in range(0, len(v), 6)]
col = lambda k: [r[k] for r in rounds]
med = lambda xs: f"{st.median(xs):.2f} [{min(xs):.2f}-{max(xs):.2f}]"
print("\n## Per request, the sidecar alone on one core (one worker; wrk -t1 on the other core; concurrency 16; medians of the rounds, range in brackets)\n")
print("| route | req/s | user µs | system µs |")
print("|---|---|---|---|")
print(f"| POST /uploads | {st.median(col(0)):,.0f} | {med(col(1))} | {med(col(2))} |")
print(f"| GET /healthz | {st.median(col(3)):,.0f} | {med(col(4))} | {med(col(5))} |")
ratios = [a / b for a, b in zip(col(0), col(3))]
print(f"\nPOST /uploads vs GET /healthz with the load generator off the sidecar's core: {st.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]")
PY
fi
exit $status
