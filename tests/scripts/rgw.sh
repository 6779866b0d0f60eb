#!/usr/bin/env bash
# Start a throwaway single-node Ceph on loopback: one monitor, one in-memory OSD (memstore)
# and a RADOS Gateway with S3, IAM and STS enabled. Used by the test suite as a real S3/IAM/STS.
#
#   tests/scripts/rgw.sh start DIR [RGW_PORT] [MON_PORT]   -> prints the endpoint, writes DIR/env
#   tests/scripts/rgw.sh stop DIR
#
# Credentials of the admin user are fixed (test-only) and written to DIR/env.
# RGW_ALSO_ON=ADDRESS makes it listen on that local address too (node.sh's node IP, which
# pods reach), on the same port.
set -euo pipefail

cmd=${1:?usage: rgw.sh start|stop DIR [RGW_PORT] [MON_PORT]}
dir=${2:?usage: rgw.sh start|stop DIR [RGW_PORT] [MON_PORT]}
rgw_port=${3:-7480}
mon_port=${4:-6789}
access_key=UBTESTADMIN000000000
secret_key=ubtestadminsecret000000000000000000000000
other_access_key=UBTESTOTHER000000000
other_secret_key=ubtestothersecret000000000000000000000000

stop() {
  local d=$1
  [ -d "$d" ] || return 0
  for f in "$d"/rgw.pid "$d"/run/osd.0.pid "$d"/run/mon.a.pid; do
    [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
  sleep 0.5
  for f in "$d"/rgw.pid "$d"/run/osd.0.pid "$d"/run/mon.a.pid; do
    [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true
  done
  return 0
}

if [ "$cmd" = stop ]; then stop "$dir"; exit 0; fi
[ "$cmd" = start ] || { echo "unknown command $cmd" >&2; exit 2; }

for b in ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph-authtool uuidgen; do
  command -v "$b" >/dev/null || { echo "rgw.sh: $b not found; run tests/scripts/install-deps.sh" >&2; exit 1; }
done

stop "$dir"
rm -rf "$dir"
mkdir -p "$dir"/{mon/mon.a,osd/osd.0,run,log,rgw}
dir=$(cd "$dir" && pwd)
fsid=$(uuidgen)
conf=$dir/ceph.conf

cat >"$conf" <<CONF
[global]
fsid = $fsid
mon_host = v2:127.0.0.1:$mon_port
public_addr = 127.0.0.1
ms_bind_msgr1 = false
# Without crc modes radosgw cannot talk to the monitor under 'auth none' (error -13).
ms_mon_client_mode = crc
ms_client_mode = crc
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
mon_max_pg_per_osd = 1000
osd_crush_chooseleaf_type = 0
mon_warn_on_pool_no_redundancy = false
run_dir = $dir/run
log_file = $dir/log/\$name.log
admin_socket = $dir/run/\$name.asok
pid_file = $dir/run/\$name.pid
keyring = $dir/keyring
[mon]
mon_data = $dir/mon/\$name
[osd]
osd_data = $dir/osd/\$name
osd_objectstore = memstore
memstore_device_bytes = 2147483648
[client.rgw.test]
rgw_frontends = beast endpoint=127.0.0.1:$rgw_port${RGW_ALSO_ON:+ endpoint=$RGW_ALSO_ON:$rgw_port}
rgw_data = $dir/rgw
# STS (AssumeRoleWithWebIdentity) and IAM (roles, OIDC providers) for the IRSA tests.
rgw_sts_key = uploadbucket1234
rgw_s3_auth_use_sts = true
rgw_enable_apis = s3, s3website, admin, sts, iam, notifications
# Lifecycle runs only when a test asks (radosgw-admin lc process): radosgw's own pass (in
# rgw_lifecycle_work_time, 00:00-06:00 by default) would mark buckets done for the day
# before a test's objects are old enough, and the test's pass would then skip them.
rgw_enable_lc_threads = false
CONF

cd "$dir"
ceph-authtool --create-keyring keyring --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool keyring --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
ceph-authtool keyring --gen-key -n client.rgw.test --cap mon 'allow rw' --cap osd 'allow rwx' >/dev/null
monmaptool --create --addv a "[v2:127.0.0.1:$mon_port]" --fsid "$fsid" monmap >/dev/null
ceph-mon -c "$conf" --mkfs -i a --monmap monmap --keyring keyring
ceph-mon -c "$conf" -i a
osd_uuid=$(uuidgen)
ceph -c "$conf" osd new "$osd_uuid" >/dev/null
ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$osd_uuid" 2>/dev/null
ceph-osd -c "$conf" -i 0 2>/dev/null
nohup radosgw -c "$conf" -n client.rgw.test -f >"$dir/rgw.out" 2>&1 &
echo $! >"$dir/rgw.pid"

up=
for _ in $(seq 1 600); do
  if curl -s -o /dev/null "http://127.0.0.1:$rgw_port/"; then up=1; break; fi
  kill -0 "$(cat "$dir/rgw.pid")" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$up" ]; then
  echo "rgw.sh: radosgw did not come up; last lines of $dir/rgw.out:" >&2
  tail -20 "$dir/rgw.out" >&2
  exit 1
fi
radosgw-admin -c "$conf" user create --uid=uploadbucket-test --display-name="uploadbucket tests" \
  --access-key=$access_key --secret-key=$secret_key >/dev/null
radosgw-admin -c "$conf" caps add --uid=uploadbucket-test \
  --caps="roles=*;oidc-provider=*;user-policy=*;users=*" >/dev/null
# A second account, to own buckets "someone else" has taken.
radosgw-admin -c "$conf" user create --uid=uploadbucket-other --display-name="another account" \
  --access-key=$other_access_key --secret-key=$other_secret_key >/dev/null
# One lifecycle pass on the empty cluster: on a fresh RGW the first passes after a bucket got
# its rules did not act on it (seen: 12 passes in a minute, none expiring an expired object),
# while every pass on a cluster that had run one did.
radosgw-admin -c "$conf" lc process >/dev/null 2>&1 || true
cat >"$dir/env" <<ENV
export UPLOADBUCKET_TEST_S3_ENDPOINT=http://127.0.0.1:$rgw_port
export UPLOADBUCKET_TEST_S3_BACKEND=rgw
export UPLOADBUCKET_TEST_RGW_CONF=$conf
export UPLOADBUCKET_TEST_ACCESS_KEY_ID=$access_key
export UPLOADBUCKET_TEST_SECRET_ACCESS_KEY=$secret_key
export UPLOADBUCKET_TEST_OTHER_ACCESS_KEY_ID=$other_access_key
export UPLOADBUCKET_TEST_OTHER_SECRET_ACCESS_KEY=$other_secret_key
ENV
echo "http://127.0.0.1:$rgw_port"
