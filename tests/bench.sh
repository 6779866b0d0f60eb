#!/usr/bin/env bash
# Signer benchmarks, all figures from one run on this machine:
#  1. criterion: the fast presigner vs the cached-key ceiling vs aws-sdk-s3's presigner, and
#     the presigner and the credentials read on two threads at once (as the two workers),
#     and the router called in-process (no sockets): POST /uploads vs the unsigned exchange;
#  2. wrk: POST /uploads req/s at concurrency 1, 16, 64, fast signer vs `--signer sdk` vs the
#     fast signer requiring an end user's JWT (RS256, the key cached; `jwt`), and
#     the HTTP ceilings on the fast sidecar at the same concurrencies: the unsigned exchange
#     (POST /bench/ceiling: the same request body in, an answer of the same size out, nothing
#     signed) and GET /healthz (no body in, 2 bytes out);
#  3. resident memory of the sidecar idle (with keys in the environment, and as in a pod with
#     IRSA: a web identity exchanged at an STS stand-in over HTTP and over TLS) and under load;
#  4. user and system CPU time per request of the three routes with the sidecar alone on one
#     core (informative: where a gap comes from).
# Prints a markdown table (medians, with the spread of the rounds) and checks the targets
# (signer >= 0.7x the cached-key ceiling, /uploads >= 3x the SDK build at concurrency 16 and
# 64, and at 1, where the round trip both pay caps the ratio, 3x on the time each adds to the
# unsigned exchange; also with a JWT checked; /uploads >= 0.8x
# the unsigned exchange at concurrency 16 and 64, the median of 50 short pairs of runs back
# to back; RSS idle <= 6 MiB); exits 1 if missed.
#   tests/bench.sh            (about 10 minutes after the release build)
#   BENCH_SECONDS=10 BENCH_ROUNDS=5 tests/bench.sh   (seconds per wrk run, runs per figure)
#   BENCH_PAIRS=60 BENCH_PAIR_SECONDS=1 tests/bench.sh   (the pairs judged against the exchange)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${BENCH_SECONDS:-5}
rounds=${BENCH_ROUNDS:-3}
pairs=${BENCH_PAIRS:-50}
pair_secs=${BENCH_PAIR_SECONDS:-1}

if ! command -v wrk >/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq && $sudo apt-get install -y -qq wrk >/dev/null
fi

work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT

echo "== building (release, the pod build: no dev store)" >&2
cargo build --release -q -p uploadbucket-sidecar --no-default-features --features server
target=${CARGO_TARGET_DIR:-target}
# A copy: `cargo bench` below builds the package's binary too, with its default features (the
# dev store), into the same path; the figures are the pod build's.
bin=$work/uploadbucket-sidecar
cp "$target/release/uploadbucket-sidecar" "$bin"

echo "== criterion: presign, handler" >&2
cargo bench -q -p uploadbucket-sidecar --bench presign --bench handler -- --noplot >/dev/null 2>&1
est() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['mean']['point_estimate'])" "$target/criterion/$1/new/estimates.json"; }
fast_ns=$(est presign/fast); limit_ns=$(est presign/cached_key_limit); sdk_ns=$(est presign/sdk)
# Two threads at once, as the sidecar's two workers: time per call on each, against alone.
shared="$(est presign/fast_two_threads) $(est presign/credentials) $(est presign/credentials_two_threads)"
# The router called in-process, no sockets: what the handler adds to the exchange on its own.
in_process="$(est handler/uploads) $(est handler/exchange)"

body='{"filename":"cat.jpg","contentType":"image/jpeg","size":1048576}'
cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
LUA
echo "wrk.body = '$body'" >>"$work/post.lua"
: >"$work/get.lua"

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# Starts one sidecar in signer mode $1 on a free port, with further env from the other
# arguments; sets port[$1] and pid[$1] and waits until it answers.
start_sidecar() {
  local mode=$1 signer=$1 pin=() keys=(AWS_ACCESS_KEY_ID=AKIABENCHEXAMPLE0000
    AWS_SECRET_ACCESS_KEY=benchsecretbenchsecretbenchsecret00000000); shift
  if [ "$mode" = pinned ]; then signer=fast pin=(taskset -c 1); fi
  if [ "$mode" = jwt ]; then signer=fast; fi
  # As in a pod with IRSA: no keys, the caller passes the web identity's.
  case $mode in irsa*) signer=fast keys=() ;; esac
  port[$mode]=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  env -i PATH="$PATH" UPLOADBUCKET_BUCKET=bench-bucket UPLOADBUCKET_REGION=eu-west-1 \
    UPLOADBUCKET_LISTEN=127.0.0.1:${port[$mode]} UPLOADBUCKET_SIGNER="$signer" "$@" "${keys[@]}" \
    AWS_EC2_METADATA_DISABLED=true RUST_LOG=warn "${pin[@]}" "$bin" >"$work/$mode.log" 2>&1 &
  pid[$mode]=$!
  pids+=("${pid[$mode]}")
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:${port[$mode]}/healthz" >/dev/null && break; sleep 0.05; done
}
# POSTs the benchmark's body to sidecar $1's path $2; prints the answer's size in bytes.
post() { curl -sf -o /dev/null -w '%{size_download}' -X POST -H 'content-type: application/json' -d "$body" "http://127.0.0.1:${port[$1]}$2"; }

# One sidecar per signer mode, side by side, each warmed with one signed URL. The fast one
# also serves the unsigned exchange, `POST /bench/ceiling` (hidden flag `--bench-ceiling`):
# the same request body read the same way, an answer of the same size as its `/uploads`
# answer, through the same middleware, nothing parsed or signed. It is the HTTP ceiling of
# this exchange, which `GET /healthz` (no body in, 2 bytes out) is not.
# An OpenID Connect issuer for the `jwt` sidecar: discovery and a JWKS served from files,
# an RS256 key from openssl, and one token good for a day that every request sends.
issuer_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
token=$(python3 - "$work/issuer" "http://127.0.0.1:$issuer_port/" <<'PY'
import base64, json, os, subprocess, sys, time
root, iss = sys.argv[1], sys.argv[2]
os.makedirs(f"{root}/.well-known")
key = f"{root}/key.pem"
subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key], check=True, capture_output=True)
modulus = subprocess.run(["openssl", "rsa", "-in", key, "-noout", "-modulus"], check=True, capture_output=True, text=True).stdout.strip().split("=")[1]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
n = b64(bytes.fromhex(modulus))
json.dump({"issuer": iss, "jwks_uri": f"{iss}keys"}, open(f"{root}/.well-known/openid-configuration", "w"))
json.dump({"keys": [{"kty": "RSA", "kid": "bench", "alg": "RS256", "use": "sig", "n": n, "e": "AQAB"}]}, open(f"{root}/keys", "w"))
head = b64(json.dumps({"alg": "RS256", "kid": "bench", "typ": "JWT"}).encode())
def token(jti):
    body = b64(json.dumps({"iss": iss, "sub": "bench-user", "aud": "api://bench", "exp": int(time.time()) + 86400, "jti": jti}).encode())
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=f"{head}.{body}".encode(), check=True, capture_output=True).stdout
    return f"{head}.{body}.{b64(sig)}"
# 2,000 distinct tokens, more than the signer remembers (1,024): each is checked in full.
with open(f"{root}/tokens.txt", "w") as f:
    for i in range(2000):
        print(token(f"t{i}"), file=f)
print(token("one"))
PY
)
python3 -m http.server --bind 127.0.0.1 --directory "$work/issuer" "$issuer_port" >/dev/null 2>&1 &
pids+=($!)
{ cat "$work/post.lua"; echo "wrk.headers[\"authorization\"] = \"Bearer $token\""; } >"$work/post-jwt.lua"
cat >"$work/post-jwt-new.lua" <<LUA
local tokens = {}
for line in io.lines("$work/issuer/tokens.txt") do tokens[#tokens + 1] = line end
local i = math.random(#tokens)
request = function()
  i = i % #tokens + 1
  return wrk.format("POST", nil, {["content-type"] = "application/json", ["authorization"] = "Bearer " .. tokens[i]}, '$body')
end
LUA

declare -A port pid idle peak
start_sidecar fast
answer_bytes=$(post fast /uploads)
kill "${pid[fast]}"; wait "${pid[fast]}" 2>/dev/null || true
start_sidecar fast UPLOADBUCKET_BENCH_CEILING="$answer_bytes"
start_sidecar sdk
start_sidecar jwt UPLOADBUCKET_JWT_ISSUER="http://127.0.0.1:$issuer_port/" UPLOADBUCKET_JWT_AUDIENCES=api://bench
for mode in fast sdk; do post "$mode" /uploads >/dev/null; done
# The jwt sidecar signs for the token's user (its key fetched and cached by now).
jwt_key=$(curl -sf -X POST -H 'content-type: application/json' -H "authorization: Bearer $token" -d "$body" "http://127.0.0.1:${port[jwt]}/uploads" | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
case $jwt_key in uploads/bench-user/*) ;; *) echo "bench.sh: the jwt sidecar answered key $jwt_key" >&2; exit 1 ;; esac
ceiling_bytes=$(post fast /bench/ceiling)
[ "$ceiling_bytes" = "$answer_bytes" ] || { echo "bench.sh: /bench/ceiling answered $ceiling_bytes bytes, /uploads $answer_bytes" >&2; exit 1; }
# Two more, as in a pod with IRSA: a web identity token exchanged at an STS stand-in
# (tests/scripts/sts_stand_in.py) over plain HTTP, and over TLS with a chain to verify as at
# AWS's STS; each warmed with one signed URL, measured idle, then stopped.
sts=tests/scripts/sts_stand_in.py
python3 $sts pki "$work/pki"
echo "bench.token.from-kubelet" >"$work/token"
for kind in irsa irsa-tls; do
  sts_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  if [ $kind = irsa ]; then
    python3 $sts serve "$sts_port" & sts_url=http://127.0.0.1:$sts_port
  else
    python3 $sts serve "$sts_port" "$work/pki" & sts_url=https://localhost:$sts_port
  fi
  pids+=($!)
  sleep 0.5
  start_sidecar $kind AWS_ROLE_ARN=arn:aws:iam::000000000000:role/upload \
    AWS_WEB_IDENTITY_TOKEN_FILE="$work/token" AWS_ENDPOINT_URL_STS="$sts_url" SSL_CERT_FILE="$work/pki/roots.pem"
  post $kind /uploads >/dev/null || { cat "$work/$kind.log" >&2; echo "bench.sh: the $kind sidecar signed nothing" >&2; exit 1; }
done
sleep 1
for mode in fast sdk irsa irsa-tls; do idle[$mode]=$(rss_kib "${pid[$mode]}"); done
for mode in irsa irsa-tls; do kill "${pid[$mode]}"; done

# One wrk run against one mode; prints req/s. RSS is sampled meanwhile into rss-<mode>.
wrk_run() {
  local mode=$1 c=$2 d=${3:-$secs} rps out sampler script=post.lua path=/uploads
  case $mode in
    healthz) mode=fast script=get.lua path=/healthz ;;
    ceiling) mode=fast path=/bench/ceiling ;;
    jwt) script=post-jwt.lua ;;
    jwt-new) mode=jwt script=post-jwt-new.lua ;;
  esac
  ( while kill -0 "${pid[$mode]}" 2>/dev/null; do rss_kib "${pid[$mode]}"; sleep 0.2; done ) >>"$work/rss-$mode" &
  sampler=$!
  out=$(wrk -t "$(( c < 2 ? 1 : 2 ))" -c "$c" -d "${d}s" -s "$work/$script" "http://127.0.0.1:${port[$mode]}$path")
  # A run with any answer that is not 2xx measured something else: stop.
  if grep -q "Non-2xx" <<<"$out"; then echo "bench.sh: $mode at concurrency $c: $(grep Non-2xx <<<"$out")" >&2; kill $$; exit 1; fi
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  echo "$rps"
}

# The two modes, /healthz and the unsigned exchange take turns, $rounds times per
# concurrency, the order rotating, and each figure is the median: a shared machine drifts by
# tens of percent within a minute, and turns spread the drift over both sides of a ratio.
# `/uploads` and the exchange always run back to back (which goes first alternates), so each
# round's ratio of the two compares runs seconds apart: on this VM a run lands at one of two
# speeds for its whole length, and a ratio of runs far apart can compare the two speeds.
kinds=(fast sdk jwt jwt-new healthz ceiling)
slots=(pair sdk jwt jwt-new healthz)
declare -A runs
for c in 1 16 64; do
  echo "== wrk: concurrency $c, $rounds rounds of ${kinds[*]}, the order rotating" >&2
  for round in $(seq 1 "$rounds"); do
    for i in 0 1 2 3 4; do
      slot=${slots[$(((i + round) % 5))]}
      if [ "$slot" != pair ]; then order=("$slot")
      elif [ $((round % 2)) = 1 ]; then order=(fast ceiling)
      else order=(ceiling fast); fi
      for k in "${order[@]}"; do runs[$k,$c]="${runs[$k,$c]:-} $(wrk_run "$k" "$c")"; done
    done
  done
  for k in "${kinds[@]}"; do echo "   $k:${runs[$k,$c]}" >&2; done
done

# The target on the unsigned exchange is judged on many short pairs: `/uploads` and the
# exchange back to back for ${pair_secs}s each, $pairs times per concurrency, which goes first
# alternating. The VM's speed moves in steps, so any pair can compare two speeds; many
# pairs put those at either end of the sorted ratios, and the median of 50 sits where most
# pairs agree. The 5 s rounds alone gave 8-10 ratios a run, whose median moved by 0.04-0.08
# between runs of one build (see docs/development/performance.md, 2026-12-07).
for c in 16 64; do
  echo "== pairs: concurrency $c, $pairs pairs of ${pair_secs}s runs of /uploads and the unsigned exchange" >&2
  for i in $(seq 1 "$pairs"); do
    if [ $((i % 2)) = 1 ]; then u=$(wrk_run fast "$c" "$pair_secs"); e=$(wrk_run ceiling "$c" "$pair_secs")
    else e=$(wrk_run ceiling "$c" "$pair_secs"); u=$(wrk_run fast "$c" "$pair_secs"); fi
    echo "pair $c $u $e"
  done >>"$work/pairs"
done
for mode in fast sdk; do peak[$mode]=$(sort -n "$work/rss-$mode" | tail -1); done
{
  echo "idle ${idle[fast]} ${idle[sdk]}"
  echo "idle-irsa ${idle[irsa]} ${idle[irsa-tls]}"
  echo "peak ${peak[fast]} ${peak[sdk]}"
  for c in 1 16 64; do for k in "${kinds[@]}"; do echo "$k $c${runs[$k,$c]}"; done; done
  cat "$work/pairs"
} >"$work/figures"

# Where a POST /uploads' time goes, without wrk competing for the same core: a third sidecar
# with one worker pinned to core 1, wrk -t1 pinned to core 0, concurrency 16; the sidecar's
# user and system CPU time per request from /proc/<pid>/stat, /uploads, the unsigned exchange
# and /healthz taking turns. Informative (no target): it says whether a gap is the signer's
# own work (user) or the kernel's (system).
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  echo "== pinned: one worker on core 1, wrk -t1 on core 0, concurrency 16, $rounds rounds" >&2
  start_sidecar pinned UPLOADBUCKET_WORKER_THREADS=1 UPLOADBUCKET_BENCH_CEILING="$answer_bytes"
  post pinned /uploads >/dev/null
  tck=$(getconf CLK_TCK)
  # One pinned wrk run; prints "req/s user-µs system-µs" per request.
  pinned_run() {
    local script=$1 path=$2 before after out
    read -r -a before < <(awk '{print $14, $15}' "/proc/${pid[pinned]}/stat")
    out=$(taskset -c 0 wrk -t1 -c16 -d"${secs}s" -s "$work/$script" "http://127.0.0.1:${port[pinned]}$path")
    read -r -a after < <(awk '{print $14, $15}' "/proc/${pid[pinned]}/stat")
    if grep -q "Non-2xx" <<<"$out"; then echo "bench.sh: pinned $path: $(grep Non-2xx <<<"$out")" >&2; kill $$; exit 1; fi
    echo "$out" | awk -v u=$((after[0] - before[0])) -v s=$((after[1] - before[1])) -v t="$tck" \
      '/requests in/ {n=$1} /Requests\/sec/ {r=$2} END {printf "%s %.2f %.2f\n", r, u/t/n*1e6, s/t/n*1e6}'
  }
  for _ in $(seq 1 "$rounds"); do
    echo "pinned $(pinned_run post.lua /uploads) $(pinned_run post.lua /bench/ceiling) $(pinned_run get.lua /healthz)"
  done >>"$work/figures"
fi

python3 - "$work/figures" "$fast_ns" "$limit_ns" "$sdk_ns" "$secs" "$rounds" "$answer_bytes" "$pair_secs" $shared $in_process <<'PY'
import statistics as st, sys
path, fast, limit, sdk = sys.argv[1], *map(float, sys.argv[2:5])
secs, rounds, answer, pair_secs = sys.argv[5:9]
fast2, creds, creds2, h_uploads, h_exchange = map(float, sys.argv[9:14])
runs, pinned, pairs = {}, [], {}
for line in open(path):
    w = line.split()
    if w[0] in ("idle", "idle-irsa", "peak"):
        runs[w[0]] = [float(x) / 1024 for x in w[1:]]
    elif w[0] == "pinned":
        pinned.append(list(map(float, w[1:])))
    elif w[0] == "pair":
        pairs.setdefault(int(w[1]), []).append(float(w[2]) / float(w[3]))
    else:
        runs[w[0], int(w[1])] = list(map(float, w[2:]))
med = lambda k, c: st.median(runs[k, c])
fig = lambda k, c: f"{med(k, c):,.0f} [{min(runs[k, c]):.0f}-{max(runs[k, c]):.0f}]"
# Each round's own ratio of `a` to `b`.
own = lambda a, b, c: [x / y for x, y in zip(runs[a, c], runs[b, c])]
def ratio(a, b, c):
    # Median over median, and the range of the rounds' own ratios: the runs of one round
    # are seconds apart, so a round's ratio drifts less than its figures.
    per = own(a, b, c)
    return med(a, c) / med(b, c), f"[{min(per):.2f}-{max(per):.2f}]"
def overhead_target(kind, c):
    """What `kind` and the SDK build each add to the unsigned exchange's time per request
    (µs, medians): the SDK's added time must be at least 3x `kind`'s."""
    exchange = 1e6 / med("ceiling", c)
    mine, sdk = 1e6 / med(kind, c) - exchange, 1e6 / med("sdk", c) - exchange
    # Within the noise of the exchange itself (or faster): nothing added to divide by.
    met = sdk > 0 and (mine <= 0 or sdk / mine >= 3)
    return (f">= 3x on the time added to the exchange ({exchange:.1f} µs): "
            f"{max(mine, 0):.1f} µs vs the SDK's {sdk:.1f} µs"), check(met)
ok = True
def check(cond):
    global ok
    ok = ok and cond
    return "yes" if cond else "**no**"
print(f"\n## Signer benchmark (req/s: median of {rounds} {secs}s wrk runs per figure in rotating order, the rounds' range in brackets; ratios: median over median, the range of the rounds' own ratios in brackets; 2 cores, load generator on the same machine)\n")
print("| measure | fast signer | aws-sdk-s3 | ratio | target | met |")
print("|---|---|---|---|---|---|")
print(f"| presigns/s, one thread (criterion) | {1e9/fast:,.0f} | {1e9/sdk:,.0f} | {sdk/fast:.1f}x | - | - |")
r = limit / fast
print(f"| fast signer vs cached-key ceiling ({1e9/limit:,.0f}/s) | | | {r:.2f}x | >= 0.7x | {check(r >= 0.7)} |")
print(f"| fast signer on two threads at once, ns per URL on each (criterion; alone: {fast:,.0f} ns) | {fast2:,.0f} | | {fast2/fast:.2f}x of alone | - | - |")
print(f"| credentials read (the cache's `ready`) on two threads at once, ns per call on each (alone: {creds:.1f} ns) | {creds2:.1f} | | {creds2/creds:.2f}x of alone | - | - |")
print(f"| the router called in-process (criterion, no sockets), µs per request: POST /uploads vs the unsigned exchange ({h_exchange/1e3:.2f} µs) | {h_uploads/1e3:.2f} | | {h_exchange/h_uploads:.2f}x: the handler adds {(h_uploads-h_exchange)/1e3:.2f} µs | - | - |")
# At concurrency 1 the loopback round trip, which both builds pay, caps the ratio (the SDK
# build at half the exchange's speed allows 2x at most): judged instead on what each adds to
# the unsigned exchange's time per request, the fast build's added time at most a third of
# the SDK build's.
for kind, label in (("fast", "POST /uploads req/s"),
                    ("jwt", "POST /uploads with a JWT, one token (checked once, then remembered) req/s")):
    for c in (1, 16, 64):
        r, per = ratio(kind, "sdk", c)
        target, met = overhead_target(kind, c) if c == 1 else (">= 3x", check(r >= 3))
        cost = "" if kind == "fast" else ": {:.2f}x {} of without".format(*ratio(kind, "fast", c))
        print(f"| {label}, concurrency {c}{cost} | {fig(kind, c)} | {fig('sdk', c)} | {r:.2f}x {per} | {target} | {met} |")
for c in (1, 16, 64):
    r, per = ratio("jwt-new", "sdk", c)
    cost, cper = ratio("jwt-new", "fast", c)
    print(f"| POST /uploads with a JWT, 2,000 tokens in turn (each signature checked, RS256, the key cached) req/s, concurrency {c}: {cost:.2f}x {cper} of without | {fig('jwt-new', c)} | {fig('sdk', c)} | {r:.2f}x {per} | - | - |")
# Judged at 16 and 64 on the median of the short pairs' own ratios (see the pairs above): a
# median over medians can set a run at one of the VM's two speeds against one at the other.
for c in (1, 16, 64):
    r, per = ratio("fast", "ceiling", c)
    paired = st.median(own("fast", "ceiling", c))
    target, met = "-", "-"
    if c in pairs:
        ps = sorted(pairs[c])
        q = st.quantiles(ps, n=4)
        m = st.median(ps)
        share = sum(x >= 0.8 for x in ps) / len(ps)
        target, met = f">= 0.8x: {len(ps)} pairs of {pair_secs}s runs back to back, median {m:.3f}x (quartiles {q[0]:.3f}x and {q[2]:.3f}x; {share:.0%} of pairs at 0.8x or more)", check(m >= 0.8)
    print(f"| POST /uploads vs the unsigned exchange (POST /bench/ceiling, {fig('ceiling', c)} req/s), concurrency {c}; the rounds' own ratios, median {paired:.3f}x | | | {r:.2f}x {per} | {target} | {met} |")
for c in (1, 16, 64):
    r, per = ratio("fast", "healthz", c)
    e, eper = ratio("ceiling", "healthz", c)
    print(f"| POST /uploads vs GET /healthz ({fig('healthz', c)} req/s; the unsigned exchange: {e:.2f}x {eper}), concurrency {c} | | | {r:.2f}x {per} | - | - |")
f_idle, s_idle = runs["idle"]
print(f"| RSS idle (keys in the environment) | {f_idle:.2f} MiB | {s_idle:.2f} MiB | | <= 6 MiB | {check(f_idle <= 6)} |")
i_http, i_tls = runs["idle-irsa"]
print(f"| RSS idle, web identity (IRSA) exchanged at an STS over plain HTTP | {i_http:.2f} MiB | | | <= 6 MiB | {check(i_http <= 6)} |")
print(f"| RSS idle, web identity (IRSA) exchanged at an STS over TLS, a chain verified (as at AWS) | {i_tls:.2f} MiB | | | <= 6 MiB | {check(i_tls <= 6)} |")
f_peak, s_peak = runs["peak"]
print(f"| RSS peak under load | {f_peak:.1f} MiB | {s_peak:.1f} MiB | | - | - |")
print(f"\nThe unsigned exchange reads the same request body and answers {answer} bytes, the size of the /uploads answer.")
print("\nall targets met" if ok else "\nSOME TARGETS MISSED")

if pinned:
    col = lambda k: [r[k] for r in pinned]
    cpu = lambda xs: f"{st.median(xs):.2f} [{min(xs):.2f}-{max(xs):.2f}]"
    print("\n## Per request, the sidecar alone on one core (one worker; wrk -t1 on the other core; concurrency 16; medians of the rounds, range in brackets)\n")
    print("| route | req/s | user µs | system µs |")
    print("|---|---|---|---|")
    for i, route in enumerate(("POST /uploads", "POST /bench/ceiling (the unsigned exchange)", "GET /healthz")):
        print(f"| {route} | {st.median(col(3 * i)):,.0f} | {cpu(col(3 * i + 1))} | {cpu(col(3 * i + 2))} |")
    for i, other in ((1, "the unsigned exchange"), (2, "GET /healthz")):
        per = [r[0] / r[3 * i] for r in pinned]
        print(f"\nPOST /uploads vs {other} with the load generator off the sidecar's core: {st.median(per):.2f}x [{min(per):.2f}-{max(per):.2f}]")
sys.exit(0 if ok else 1)
PY
