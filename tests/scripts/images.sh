#!/usr/bin/env bash
# The container images, built on this machine with no Docker and no registry: the release
# binaries (the same cargo commands as Dockerfile.operator and Dockerfile.sidecar), each with
# only the shared libraries it links, CA certificates, a passwd with nonroot (65532) and no
# shell, written as OCI image archives by tests/scripts/oci_image.py.
#
#   tests/scripts/images.sh OUT [--example | --example-only]
#
# OUT/operator.tar  docker.io/uploadbucket/operator:<appVersion>
# OUT/sidecar.tar   docker.io/uploadbucket/sidecar:<appVersion>
# OUT/example-web.tar (--example, --example-only) docker.io/uploadbucket/example-web:test, the examples/web app
#                   (Node.js + Express + the page) the journey test runs as a pod
#
# Load them with `ctr -n k8s.io images import`, `kind load image-archive`, or
# `skopeo copy oci-archive:OUT/sidecar.tar docker://$REGISTRY/uploadbucket/sidecar:<appVersion>`.
# Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/../.."
usage="usage: tests/scripts/images.sh OUT [--example | --example-only]"
out=${1:?$usage}
example=${2:-}
case "$example" in ""|--example|--example-only) ;; *) echo "$usage" >&2; exit 2 ;; esac
mkdir -p "$out"
target=${CARGO_TARGET_DIR:-target}
version=$(awk '$1 == "appVersion:" {gsub(/"/, "", $2); print $2}' charts/uploadbucket-operator/Chart.yaml)

mk=tests/scripts/oci_image.py
if [ "$example" != --example-only ]; then
  cargo build --release --locked --quiet -p uploadbucket-sidecar --no-default-features --features server
  cargo build --release --locked --quiet -p uploadbucket-operator
  python3 $mk --out "$out/sidecar.tar" --name "docker.io/uploadbucket/sidecar:$version" --ca-certificates \
    --binary "$target/release/uploadbucket-sidecar=/uploadbucket-sidecar" --entrypoint /uploadbucket-sidecar --cmd serve
  python3 $mk --out "$out/operator.tar" --name "docker.io/uploadbucket/operator:$version" --ca-certificates \
    --binary "$target/release/uploadbucket-operator=/uploadbucket-operator" --env MALLOC_ARENA_MAX=1 \
    --entrypoint /uploadbucket-operator --cmd run
fi

if [ -n "$example" ]; then
  [ -d examples/web/node_modules/express ] || (cd examples/web && npm ci --no-audit --no-fund --loglevel=error >&2)
  node=$(readlink -f "$(command -v node)")
  python3 $mk --out "$out/example-web.tar" --name docker.io/uploadbucket/example-web:test \
    --binary "$node=/usr/local/bin/node" \
    --file examples/web/server.js=/app/server.js --tree examples/web/node_modules=/app/node_modules \
    --file examples/web/index.html=/app/public/index.html --file examples/web/upload.js=/app/public/upload.js \
    --file tests/web/harness.html=/app/public/harness.html \
    --env WEB_ROOT=/app/public --workdir /app --entrypoint /usr/local/bin/node --cmd /app/server.js
fi
