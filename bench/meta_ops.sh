#!/usr/bin/env bash
# Metadata operations per second (mkdir, create empty file, stat, rename,
# delete) with 1 and 16 concurrent clients, p50 and p99 latency, against a
# one-member metadata service and against a three-member group, all on this
# machine (so the three members share its disk and cores).
#
#   bench/meta_ops.sh [OPS_PER_CLIENT]    (default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
ops=${1:-200}
cargo build --release --quiet
cargo build --release --quiet -p cairn-client --example meta_ops
bin=$PWD/target/release/cairn
bench=$PWD/target/release/examples/meta_ops
d=$(mktemp -d)
source bench/lib.sh
pids=()
trap 'stop_and_remove "$d"' EXIT


run() { # label addrs config
  for clients in 1 16; do CAIRN_TOKEN=$(token "$3") "$bench" "$2" "$clients" "$ops" "$1"; done
}

# One member.
port=$(free_port)
"$bin" meta --data-dir "$d/one" --listen "127.0.0.1:$port" 2>"$d/one.log" &
pids+=($!)
login_admin "$bin" "127.0.0.1:$port" "$d/one" "$d/one.json"
run "1 member" "127.0.0.1:$port" "$d/one.json"
kill "${pids[@]}"; wait 2>/dev/null || true; pids=()

# Three members.
addrs=(); peers=()
for i in 1 2 3; do p=$(free_port); addrs+=("127.0.0.1:$p"); peers+=("$i=127.0.0.1:$p"); done
peer_list=$(IFS=,; echo "${peers[*]}")
head -c 32 /dev/urandom | base64 > "$d/cluster.secret"; chmod 600 "$d/cluster.secret"
addr_list=$(IFS=,; echo "${addrs[*]}")
for i in 1 2 3; do
  "$bin" meta --data-dir "$d/m$i" --listen "${addrs[$((i-1))]}" --id "$i" --peers "$peer_list" \
    --cluster-secret-file "$d/cluster.secret" --admin-password-file "$d/admin.password" 2>"$d/m$i.log" &
  pids+=($!)
done
login_admin "$bin" "$addr_list" "$d" "$d/three.json"
run "3 members" "$addr_list" "$d/three.json"
