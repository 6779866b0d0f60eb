#!/usr/bin/env bash
# LocalStack (PyPI localstack-core) on the host, without Docker: the suite's stand-in for AWS
# (S3 with strict SigV4, IAM, STS, SQS, KMS). An emulator: it checks request shapes and what
# S3 itself enforces, never tokens, trust policies or IAM permissions.
#
#   tests/scripts/localstack.sh install            the virtualenv (idempotent; ~1 minute once)
#   tests/scripts/localstack.sh start DIR [PORT]   -> prints the endpoint, writes DIR/env
#   tests/scripts/localstack.sh stop DIR
#
# Versions are pinned; found when it was tried here (2026-12-06): it needs Python >= 3.12 (3.11
# fails to import it), cbor2 < 6, pyOpenSSL < 25 with cryptography < 45, and service-identity,
# which it does not declare.
set -euo pipefail

VERSION=2026.3.0
venv="${UPLOADBUCKET_BIN_DIR:-$HOME/.cache/uploadbucket/bin}/../localstack-$VERSION"
python_for_venv() {
  local p
  for p in python3.13 python3.12 "$HOME/.pyenv/versions/3.13.0/bin/python3" "$HOME/.pyenv/versions/3.12.1/bin/python3"; do
    command -v "$p" >/dev/null 2>&1 && "$p" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { command -v "$p"; return 0; }
  done
  echo "localstack.sh: LocalStack needs Python 3.12 or newer (python3.12 / python3.13 not found)" >&2
  return 1
}

install() {
  [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import localstack.runtime.main' 2>/dev/null && return 0
  local py; py=$(python_for_venv)
  rm -rf "$venv"
  "$py" -m venv "$venv"
  # Every package pinned (localstack-constraints.txt: the versions of a working install).
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    -c "$(dirname "$0")/localstack-constraints.txt" \
    "localstack-core[runtime]==$VERSION" cbor2 pyopenssl cryptography service-identity
  "$venv/bin/python" -c 'import localstack.runtime.main'
}

stop() {
  local d=$1
  [ -f "$d/localstack.pid" ] || return 0
  local pid; pid=$(cat "$d/localstack.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

cmd=${1:?usage: localstack.sh install|start DIR [PORT]|stop DIR}
case "$cmd" in
  install) install; exit 0 ;;
  stop) stop "${2:?usage: localstack.sh stop DIR}"; exit 0 ;;
  start) ;;
  *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
dir=${2:?usage: localstack.sh start DIR [PORT]}
port=${3:-4566}
[ -x "$venv/bin/python" ] || { echo "localstack.sh: not installed; run tests/scripts/localstack.sh install" >&2; exit 1; }
stop "$dir"
rm -rf "$dir"
mkdir -p "$dir/root"
dir=$(cd "$dir" && pwd)
# Its own filesystem root and data folder: it believes it runs in a container here (a
# /.dockerenv exists) and would write to /var/lib/localstack otherwise.
(
  cd "$dir"
  exec env -i PATH="$venv/bin:/usr/bin:/bin" HOME="$dir" \
    GATEWAY_LISTEN="127.0.0.1:$port" DNS_ADDRESS=0 SERVICES=s3,iam,sts,sqs,kms \
    FILESYSTEM_ROOT="$dir/root" LOCALSTACK_VOLUME_DIR="$dir/root/var/lib/localstack" \
    LOCALSTACK_TELEMETRY_DISABLED=1 DISABLE_EVENTS=1 SKIP_INFRA_DOWNLOADS=1 \
    S3_SKIP_SIGNATURE_VALIDATION=0 S3_SKIP_KMS_KEY_VALIDATION=0 \
    "$venv/bin/python" -m localstack.runtime.main
) >"$dir/localstack.log" 2>&1 &
echo $! >"$dir/localstack.pid"
for _ in $(seq 300); do
  grep -q '^Ready\.' "$dir/localstack.log" 2>/dev/null && break
  kill -0 "$(cat "$dir/localstack.pid")" 2>/dev/null || { cat "$dir/localstack.log" >&2; echo "localstack.sh: LocalStack exited" >&2; exit 1; }
  sleep 0.1
done
grep -q '^Ready\.' "$dir/localstack.log" || { tail -20 "$dir/localstack.log" >&2; echo "localstack.sh: not ready after 30 s" >&2; stop "$dir"; exit 1; }
cat >"$dir/env" <<ENV
export UPLOADBUCKET_TEST_AWS_ENDPOINT=http://127.0.0.1:$port
export UPLOADBUCKET_TEST_AWS_LOG=$dir/localstack.log
ENV
echo "http://127.0.0.1:$port"
