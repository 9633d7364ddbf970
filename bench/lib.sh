# Shared by the bench scripts: log in as the first admin of a fresh
# metadata service, whose password it writes to DATA_DIR/admin.password,
# and keep the session in CONFIG (pass it to cairn as CAIRN_CONFIG).
#
#   login_admin CAIRN_BIN META_ADDRS META_DATA_DIR CONFIG
login_admin() {
  local bin=$1 meta=$2 data_dir=$3 config=$4
  for _ in $(seq 150); do
    if [ -s "$data_dir/admin.password" ] &&
      "$bin" --meta "$meta" --config "$config" --failover-timeout 2s \
        login --user admin --password-stdin < "$data_dir/admin.password" >/dev/null 2>&1; then
      return
    fi
    sleep 0.2
  done
  echo "cannot log in to the metadata service at $meta; logs beside $data_dir" >&2
  exit 1
}

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The session token kept in a client config (for the Rust examples, which
# take it in CAIRN_TOKEN).
token() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$1"; }

# Kills the processes in the caller's `pids` array and removes DIR, as in
# `pids=(); trap 'stop_and_remove "$d"' EXIT`. (No state here: scripts
# source this file at various points.)
stop_and_remove() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$1"
}

# A free TCP port on 127.0.0.1 whose next COUNT-1 ports are free too (for
# `cairn dev`, which takes port, port+1, ...).
#
#   free_port_block COUNT
free_port_block() {
  python3 - "$1" <<'PY'
import socket, sys
count = int(sys.argv[1])
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    try:
        for p in range(port, port + count):
            t = socket.socket(); t.bind(("127.0.0.1", p)); t.close()
        print(port); break
    except OSError:
        pass
PY
}

# Seconds since the epoch, with nanoseconds; and AMOUNT per second between
# two of them, printed with DIGITS decimals.
#
#   per_second AMOUNT T0 T1 [DIGITS]
now() { date +%s.%N; }
per_second() { python3 -c "print(f'{$1/($3-$2):8.${4:-1}f}')"; }

# A `cairn dev` cluster in WORK/cluster and `cairn mount` of it on
# WORK/mnt, for the mount benches. dev_start sets `meta`, `dev_pid` and
# CAIRN_CONFIG; mount_start (ARGS as for `cairn mount`) sets `mount_pid`;
# mount_and_dev_stop undoes both and removes WORK (use it in a trap).
#
#   dev_start CAIRN_BIN WORK; mount_start CAIRN_BIN WORK [ARGS...]
dev_pid=; mount_pid=
dev_start() {
  local bin=$1 work=$2 port
  port=$(free_port_block 6)
  meta=127.0.0.1:$port
  "$bin" dev --dir "$work/cluster" --port "$port" > "$work/dev.out" 2>&1 &
  dev_pid=$!
  export CAIRN_CONFIG=$work/cluster/client.json
  for _ in $(seq 100); do "$bin" --meta "$meta" status > /dev/null 2>&1 && return; sleep 0.2; done
  echo "cairn dev did not start; see $work/dev.out" >&2
  exit 1
}
mount_start() {
  local bin=$1 work=$2
  shift 2
  mkdir -p "$work/mnt"
  "$bin" --meta "$meta" mount "$work/mnt" "$@" > "$work/mount.log" 2>&1 &
  mount_pid=$!
  for _ in $(seq 100); do mountpoint -q "$work/mnt" && return; sleep 0.1; done
  cat "$work/mount.log" >&2
  exit 1
}
mount_and_dev_stop() {
  local work=$1
  # Each step runs whatever the one before answered (set -e would stop
  # at a failed wait and leave the cluster running).
  if [ -n "$mount_pid" ]; then kill "$mount_pid" 2>/dev/null; wait "$mount_pid" 2>/dev/null || true; fi
  if mountpoint -q "$work/mnt" 2>/dev/null; then umount -l "$work/mnt" || true; fi
  if [ -n "$dev_pid" ]; then kill "$dev_pid" 2>/dev/null; wait "$dev_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
