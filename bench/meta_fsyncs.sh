#!/usr/bin/env bash
# fsync-family syscalls the metadata server makes per metadata write
# (N mkdirs, default 200), counted with strace: a figure that does not depend
# on how busy the machine is. Needs strace (apt-get install strace).
#
#   bench/meta_fsyncs.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200}
command -v strace >/dev/null || { echo "strace is missing: apt-get install strace" >&2; exit 1; }
cargo build --release --quiet
bin=$PWD/target/release/cairn
d=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
strace -f -qq -e trace=fsync,fdatasync -o "$d/trace" "$bin" meta --data-dir "$d/meta" --listen "127.0.0.1:$port" 2>/dev/null &
cleanup() { pkill -f "meta --data-dir $d/meta" || true; wait 2>/dev/null || true; rm -rf "$d"; }
trap cleanup EXIT
source bench/lib.sh
login_admin "$bin" "127.0.0.1:$port" "$d/meta" "$d/client.json"
before=$(grep -cE 'fsync|fdatasync' "$d/trace")
for i in $(seq "$n"); do "$bin" --meta "127.0.0.1:$port" --config "$d/client.json" mkdir "/d$i"; done
after=$(grep -cE 'fsync|fdatasync' "$d/trace")
python3 -c "print(f'metadata writes: $n, fsyncs per write: {($after-$before)/$n:.2f}')"
