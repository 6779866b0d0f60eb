#!/usr/bin/env bash
# Install what the test suite needs and this machine lacks (Debian/Ubuntu, run as root or
# with sudo). Idempotent: installs nothing when everything is present.
#   Ceph RGW (S3 + IAM + STS) for the integration tests: radosgw ceph-mon ceph-osd
#   headless Chromium for the browser tests: chromium
set -euo pipefail

need=()
for pair in radosgw:radosgw ceph-mon:ceph-mon ceph-osd:ceph-osd uuidgen:uuid-runtime curl:curl chromium:chromium; do
  cmd=${pair%%:*} pkg=${pair##*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
