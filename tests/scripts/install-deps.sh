#!/usr/bin/env bash
# Install what the test suite needs and this machine lacks (Debian/Ubuntu, run as root or
# with sudo). Idempotent: installs nothing when everything is present.
#   Ceph RGW (S3 + IAM + STS) for the integration tests: radosgw ceph-mon ceph-osd
#   headless Chromium for the browser tests: chromium
#   helm for the chart tests: built from its Go module into ~/.cache/uploadbucket/bin
#   promtool for the chart's alert-rule tests: likewise
#   the Prometheus operator's CRDs (from its Go module) into ~/.cache/uploadbucket/monitoring-crds
#   @uppy/core + @uppy/aws-s3 + esbuild for the Uppy browser test: npm ci in tests/web/uppy
#   @uppy/dashboard + @uppy/core + @uppy/aws-s3 + esbuild for the dev page's bundle check:
#     npm ci in sidecar/web/dashboard
#   express for the example app (the journey test's pod): npm ci in examples/web
#   containerd runc containernetworking-plugins iptables gcc for the one-node cluster
#   LocalStack (PyPI localstack-core, pinned) in its own virtualenv, the AWS stand-in
#   openapi-spec-validator (PyPI, pinned) in its own virtualenv, linking into ~/.cache/uploadbucket/bin:
#     the linter of the signer's OpenAPI document (docs/reference/signer.openapi.yaml)
#
#   install-deps.sh           everything
#   install-deps.sh --no-go   all but the two Go builds (tests/run.sh builds those beside cargo,
#                             with `install-deps.sh helm` and `install-deps.sh promtool`)
set -euo pipefail

# helm: no distribution package; `go install` from the Go module proxy (a few minutes, once).
HELM_VERSION=v3.22.0
# promtool: Prometheus' module (Prometheus 3.6's tag scheme); about 2 minutes, once. Built
# without service discovery (`remove_all_sd`): rule checks and rule tests use none, and the
# build takes 3.2 CPU minutes instead of 5.1 (measured here on empty Go caches).
PROMTOOL_VERSION=v0.316.0
bin="${UPLOADBUCKET_BIN_DIR:-$HOME/.cache/uploadbucket/bin}"

install_promtool() {
  [ "$(cat "$bin/promtool.version" 2>/dev/null)" = "$PROMTOOL_VERSION" ] && "$bin/promtool" --version >/dev/null 2>&1 && return 0
  command -v go >/dev/null || { echo "install-deps: Go is needed to build promtool (https://go.dev/dl)" >&2; exit 1; }
  echo "install-deps: building promtool $PROMTOOL_VERSION into $bin (once)" >&2
  mkdir -p "$bin"
  local log; log=$(mktemp)
  GOBIN="$bin" go install -tags remove_all_sd "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION" >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
  echo "$PROMTOOL_VERSION" >"$bin/promtool.version"
  rm -f "$log"
}

install_helm() {
  "$bin/helm" version >/dev/null 2>&1 && return 0
  command -v go >/dev/null || { echo "install-deps: Go is needed to build helm (https://go.dev/dl)" >&2; exit 1; }
  echo "install-deps: building helm $HELM_VERSION into $bin (once)" >&2
  mkdir -p "$bin"
  local log; log=$(mktemp)
  GOBIN="$bin" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
  rm -f "$log"
}

# The Prometheus operator's CRDs (ServiceMonitor, PodMonitor, PrometheusRule), for the API
# server to validate the chart's monitoring objects: from its Go module, which carries them.
PROMETHEUS_OPERATOR_VERSION=v0.85.0
install_monitoring_crds() {
  local dest="$bin/../monitoring-crds" tmp dir kind
  [ "$(cat "$dest/version" 2>/dev/null)" = "$PROMETHEUS_OPERATOR_VERSION" ] && return 0
  command -v go >/dev/null || { echo "install-deps: Go is needed to fetch the Prometheus operator's CRDs" >&2; exit 1; }
  tmp=$(mktemp -d)
  dir=$(cd "$tmp" && go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  rm -rf "$tmp" "$dest"
  mkdir -p "$dest"
  for kind in podmonitors prometheusrules servicemonitors; do
    cp "$dir/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$dest/"
  done
  chmod u+w "$dest"/*.yaml
  echo "$PROMETHEUS_OPERATOR_VERSION" >"$dest/version"
}

# The OpenAPI linter: validates docs/reference/signer.openapi.yaml against the official
# OpenAPI 3.1 schema (tests/tests/docs.rs runs it). Every package pinned
# (openapi-constraints.txt); ~10 s once.
OPENAPI_SPEC_VALIDATOR_VERSION=0.9.0
install_openapi_spec_validator() {
  local venv="$bin/../openapi-spec-validator-$OPENAPI_SPEC_VALIDATOR_VERSION"
  if [ "$("$bin/openapi-spec-validator" --version 2>/dev/null)" = "openapi-spec-validator $OPENAPI_SPEC_VALIDATOR_VERSION" ]; then
    return 0
  fi
  command -v python3 >/dev/null || { echo "install-deps: Python 3 is needed for openapi-spec-validator" >&2; exit 1; }
  echo "install-deps: openapi-spec-validator $OPENAPI_SPEC_VALIDATOR_VERSION into $venv" >&2
  rm -rf "$venv"
  mkdir -p "$bin"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    -c "$(dirname "$0")/openapi-constraints.txt" "openapi-spec-validator==$OPENAPI_SPEC_VALIDATOR_VERSION"
  ln -sfn "$(cd "$venv" && pwd)/bin/openapi-spec-validator" "$bin/openapi-spec-validator"
  "$bin/openapi-spec-validator" --version >/dev/null
}

go_builds=1
case "${1:-}" in
  promtool) install_promtool; exit 0 ;;
  helm) install_helm; exit 0 ;;
  --no-go) go_builds=0 ;;
  "") ;;
  *) echo "usage: install-deps.sh [--no-go | helm | promtool]" >&2; exit 2 ;;
esac
if [ $go_builds = 1 ]; then
  install_helm
  install_promtool
fi
install_monitoring_crds

# The real Uppy client for the browser tests: exactly the locked npm packages.
uppy="$(cd "$(dirname "$0")/../web/uppy" && pwd)"
if [ ! -x "$uppy/node_modules/.bin/esbuild" ] || [ "$uppy/package-lock.json" -nt "$uppy/node_modules/.package-lock.json" ]; then
  command -v npm >/dev/null || { echo "install-deps: npm is needed for the Uppy browser test (Node.js 20+)" >&2; exit 1; }
  echo "install-deps: npm ci in tests/web/uppy (@uppy/core, @uppy/aws-s3, esbuild)" >&2
  (cd "$uppy" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi

# The dev page's Uppy Dashboard, to check that its committed bundle is what its locked
# packages make (tests/tests/web_bundle.rs): exactly the locked npm packages.
dashboard="$(cd "$(dirname "$0")/../../sidecar/web/dashboard" && pwd)"
if [ ! -x "$dashboard/node_modules/.bin/esbuild" ] || [ "$dashboard/package-lock.json" -nt "$dashboard/node_modules/.package-lock.json" ]; then
  command -v npm >/dev/null || { echo "install-deps: npm is needed for the dev page's bundle check (Node.js 20+)" >&2; exit 1; }
  echo "install-deps: npm ci in sidecar/web/dashboard (@uppy/dashboard, @uppy/core, @uppy/aws-s3, esbuild)" >&2
  (cd "$dashboard" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi

# The example app the journey test runs in a pod: Express, exactly as locked.
web="$(cd "$(dirname "$0")/../../examples/web" && pwd)"
if [ ! -d "$web/node_modules/express" ] || [ "$web/package-lock.json" -nt "$web/node_modules/.package-lock.json" ]; then
  echo "install-deps: npm ci in examples/web (express)" >&2
  (cd "$web" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi

# The AWS stand-in: LocalStack in a virtualenv of its own (Python 3.12+).
"$(dirname "$0")/localstack.sh" install

install_openapi_spec_validator

need=()
# The node (tests/scripts/node.sh): containerd, runc, CNI plugins, iptables (for kube-proxy);
# gcc builds the static pause binary. valgrind (callgrind) and nm list the functions the signer
# runs up to its first URL (tests/scripts/startup-order.sh), openssl the certificates of its TLS run.
for pair in radosgw:radosgw ceph-mon:ceph-mon ceph-osd:ceph-osd uuidgen:uuid-runtime curl:curl chromium:chromium \
  containerd:containerd runc:runc /usr/lib/cni/bridge:containernetworking-plugins iptables:iptables gcc:gcc \
  valgrind:valgrind nm:binutils openssl:openssl; do
  cmd=${pair%%:*} pkg=${pair##*:}
  if [ "${cmd#/}" != "$cmd" ]; then [ -x "$cmd" ] || need+=("$pkg"); continue; fi
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
