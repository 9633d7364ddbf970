#!/usr/bin/env bash
# The namespace at scale: ENTRIES empty files in one directory (and a tenth
# as many in a tree), then listing pages/s, walk pages/s, and rm -r of
# everything (to leave the namespace; to be deleted behind, entries/s).
# The same directory listed and removed on the local disk is printed for
# scale (ls -f and rm -rf of ENTRIES empty files).
#
#   bench/namespace.sh [ENTRIES]    (default 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
entries=${1:-100000}
cargo build --release --quiet
cargo build --release --quiet -p cairn-client --example namespace_scale
bin=$PWD/target/release/cairn
bench=$PWD/target/release/examples/namespace_scale
d=$(mktemp -d)
source bench/lib.sh
pids=()
trap 'stop_and_remove "$d"' EXIT

echo "== $entries entries, one metadata member (release build, this machine's disk)"
port=$(free_port)
"$bin" meta --data-dir "$d/meta" --listen "127.0.0.1:$port" 2>"$d/meta.log" &
pids+=($!)
login_admin "$bin" "127.0.0.1:$port" "$d/meta" "$d/client.json"
CAIRN_TOKEN=$(token "$d/client.json") "$bench" "127.0.0.1:$port" "$entries"

echo "== the same on the local disk, for scale"
mkdir "$d/local"
python3 - "$d/local" "$entries" <<'PY'
import os, sys, time
d, n = sys.argv[1], int(sys.argv[2])
t = time.time()
for i in range(n):
    open(os.path.join(d, f"f{i:07}"), "w").close()
print(f"{'create (one process)':<28} {n / (time.time() - t):>10.0f} entries/s")
PY
start=$(date +%s.%N); ls -f "$d/local" | wc -l >/dev/null; end=$(date +%s.%N)
python3 -c "print(f\"{'ls -f':<28} {$entries / ($end - $start):>10.0f} entries/s\")"
start=$(date +%s.%N); rm -rf "$d/local"; end=$(date +%s.%N)
python3 -c "print(f\"{'rm -rf':<28} {$entries / ($end - $start):>10.0f} entries/s\")"
