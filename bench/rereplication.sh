#!/usr/bin/env bash
# Time to full re-replication after losing one of four chunk servers, next
# to a plain copy of the same bytes on this disk measured in the same run.
#
#   bench/rereplication.sh [DATA_MIB]      (default 1400: the victim holds ~1 GiB)
#
# A 4-node cluster (rf 3) on 127.0.0.1 gets DATA_MIB of random files; one
# chunk server is killed with SIGKILL. Reported: time from the kill until
# every surviving node has checked the new map and reports nothing
# under-replicated (and from the moment the node was marked down), the
# bytes the repair loops moved and their rate, and `cp -r` + sync of the
# victim's chunk directory. Data goes under $BENCH_DIR (default target/bench).
set -euo pipefail
cd "$(dirname "$0")/.."
data_mib=${1:-1400}
file_mib=200

source bench/lib.sh
cargo build --release --quiet
cairn=$PWD/target/release/cairn
work=${BENCH_DIR:-$PWD/target/bench}/rerep-$$
mkdir -p "$work"
port=$(free_port_block 5)
meta=127.0.0.1:$port
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
status_field() { "$cairn" --meta "$meta" status --json | python3 -c "import json,sys; s=json.load(sys.stdin); print($1)"; }
# Waits (at most 10 minutes) until the Python expression over status is true.
wait_until() {
  for _ in $(seq 3000); do
    [ "$(status_field "$1" 2>/dev/null)" = True ] && return 0
    sleep 0.2
  done
  echo "timed out waiting for: $1"; exit 1
}

# Servers started one by one (not `cairn dev`, which stops everything when
# a child dies).
head -c 32 /dev/urandom | base64 > "$work/cluster.secret"; chmod 600 "$work/cluster.secret"
"$cairn" meta --data-dir "$work/meta" --listen "$meta" --down-after 5s \
  --cluster-secret-file "$work/cluster.secret" > "$work/meta.log" 2>&1 &
pids+=($!)
login_admin "$cairn" "$meta" "$work/meta" "$work/client.json"
export CAIRN_CONFIG=$work/client.json
for i in 1 2 3 4; do
  "$cairn" chunk --meta "$meta" --data-dir "$work/chunk-$i" --listen "127.0.0.1:$((port + i))" \
    --reserve 256MiB --cluster-secret-file "$work/cluster.secret" > "$work/chunk-$i.log" 2>&1 &
  pids+=($!)
done
wait_until 's["nodes_up"] == 4'

echo "storing ${data_mib} MiB in ${file_mib} MiB files..."
stored=0; i=0
while [ "$stored" -lt "$data_mib" ]; do
  head -c $((file_mib << 20)) /dev/urandom | "$cairn" --meta "$meta" put - "/f$i" > /dev/null
  stored=$((stored + file_mib)); i=$((i + 1))
done
wait_until 's["repair_settled"] and s["under_replicated_chunks"] == 0'

victim_dir="$work/chunk-1"
victim_id=$(cat "$victim_dir/node_id")
victim_bytes=$(du -sb "$victim_dir/chunks" | cut -f1)
moved_before=$(status_field 's["moved_bytes_total"]')
t_kill=$(now)
{ kill -9 "${pids[1]}"; wait "${pids[1]}"; } 2>/dev/null || true
wait_until "[n['state'] for n in s['nodes'] if n['id'] == '$victim_id'] == ['down']"
t_down=$(now)
wait_until 's["repair_settled"] and s["under_replicated_chunks"] == 0'
t_done=$(now)
moved_bytes=$(( $(status_field 's["moved_bytes_total"]') - moved_before ))
"$cairn" --meta "$meta" fsck --no-verify > "$work/fsck.out" || { cat "$work/fsck.out"; echo "fsck found missing data!"; exit 1; }

sync
t0=$(now); cp -r "$victim_dir/chunks" "$work/copy"; sync; t1=$(now)

python3 - "$victim_bytes" "$moved_bytes" "$t_kill" "$t_down" "$t_done" "$t0" "$t1" <<'PY'
import sys
victim, moved, t_kill, t_down, t_done, c0, c1 = map(float, sys.argv[1:])
mib = 1 << 20
print()
print(f"victim held:                 {victim / mib:8.1f} MiB (one of 4 chunk servers, rf 3)")
print(f"marked down after:           {t_down - t_kill:8.1f} s (--down-after 5s)")
print(f"fully re-replicated after:   {t_done - t_kill:8.1f} s from the kill, {t_done - t_down:.1f} s from marking down")
print(f"moved by repair:             {moved / mib:8.1f} MiB at {moved / mib / (t_done - t_down):8.1f} MiB/s (3 nodes, each limited to 100 MiB/s by --repair-rate)")
print(f"cp -r + sync of its chunks:  {victim / mib / (c1 - c0):8.1f} MiB/s on this disk")
PY
