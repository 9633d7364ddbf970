#!/usr/bin/env bash
# Put and get throughput of a 1 GiB random file on a local 3-node cluster
# (rf 3, all on this disk), next to a plain `cp` of the same file on the same
# disk measured in the same run, plus small-file puts from 16 parallel clients.
#
#   bench/throughput.sh [SIZE_MIB]      (default 1024)
#   TLS=1 bench/throughput.sh [SIZE_MIB]   (the same over TLS: cairn dev --tls)
#
# Data goes under $BENCH_DIR (default target/bench), removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
small_files=${SMALL_FILES:-800}

source bench/lib.sh
cargo build --release --quiet
cairn=$PWD/target/release/cairn
work=${BENCH_DIR:-$PWD/target/bench}/run-$$
mkdir -p "$work"
# cairn dev takes port..port+4: metadata, three chunk servers, the S3 gateway.
port=$(free_port_block 6)
meta=127.0.0.1:$port
dev_pid=
cleanup() {
  [ -n "$dev_pid" ] && kill "$dev_pid" 2>/dev/null && wait "$dev_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

rate() { per_second "$@"; }

echo "generating ${size_mib} MiB of random data..."
head -c $((size_mib << 20)) /dev/urandom > "$work/input"
sync

tls_flag=(); transport="plain HTTP"
if [ "${TLS:-0}" = 1 ]; then tls_flag=(--tls); transport="TLS"; fi
"$cairn" dev --dir "$work/cluster" --port "$port" "${tls_flag[@]}" > "$work/dev.out" 2>&1 &
dev_pid=$!
# cairn dev logs in as admin and keeps the session here.
export CAIRN_CONFIG=$work/cluster/client.json
for _ in $(seq 100); do "$cairn" --meta "$meta" status > /dev/null 2>&1 && break; sleep 0.2; done
"$cairn" --meta "$meta" status > /dev/null || { cat "$work/dev.out" "$work"/cluster/*.log; exit 1; }

t0=$(now); cp "$work/input" "$work/copy"; t1=$(now); sync; t2=$(now)
rm "$work/copy"; sync
cp_rate=$(rate "$size_mib" "$t0" "$t1")
cp_sync_rate=$(rate "$size_mib" "$t0" "$t2")

t0=$(now); "$cairn" --meta "$meta" put "$work/input" /big > /dev/null; t1=$(now)
put_rate=$(rate "$size_mib" "$t0" "$t1")
# Drop what the page cache can drop (works as root), so get reads the disk too.
sync; echo 1 > /proc/sys/vm/drop_caches 2>/dev/null || true
t0=$(now); "$cairn" --meta "$meta" get /big "$work/output"; t1=$(now)
get_rate=$(rate "$size_mib" "$t0" "$t1")
cmp -s "$work/input" "$work/output" || { echo "get returned different bytes!"; exit 1; }

head -c 4096 /dev/urandom > "$work/small"
"$cairn" --meta "$meta" mkdir /small
t0=$(now)
seq "$small_files" | xargs -P 16 -I{} "$cairn" --meta "$meta" put "$work/small" /small/{} > /dev/null
t1=$(now)
small_rate=$(python3 -c "print(f'{$small_files/($t1-$t0):8.1f}')")

# Metadata writes alone: one Raft commit each, no chunk traffic.
t0=$(now)
seq "$small_files" | xargs -P 16 -I{} "$cairn" --meta "$meta" mkdir /d{}
t1=$(now)
mkdir_rate=$(python3 -c "print(f'{$small_files/($t1-$t0):8.1f}')")

echo
echo "file size:               ${size_mib} MiB, rf 3, 3 chunk servers on this disk, ${transport}"
echo "cp (page cache):         ${cp_rate} MiB/s"
echo "cp + sync:               ${cp_sync_rate} MiB/s"
echo "cairn put:               ${put_rate} MiB/s   ($(python3 -c "print(f'{$put_rate/$cp_sync_rate:.2f}')")x cp+sync; each byte written 3 times)"
echo "cairn get:               ${get_rate} MiB/s   ($(python3 -c "print(f'{$get_rate/$cp_rate:.2f}')")x cp)"
echo "small puts (4 KiB, 16 clients, one process each): ${small_rate} files/s"
echo "mkdir (16 clients, one process each):              ${mkdir_rate} ops/s"
