#!/usr/bin/env bash
# `cairn mount` next to a local directory on the same disk, measured in the
# same run: fio sequential 1 MiB write and read, 4 KiB random reads,
# creating and stat-ing small files, untar of a source tree, and `git clone`
# of a local repository. Cairn: `cairn dev` (3 chunk servers, rf 3, one disk).
# Needs root (or fusermount3), /dev/fuse, fio and git.
#
#   bench/mount.sh                 (SEQ_MIB=1024 FILES=10000 by default)
#
# Data goes under $BENCH_DIR (default target/bench), removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
seq_mib=${SEQ_MIB:-1024}
files=${FILES:-10000}
for tool in fio git tar; do
  command -v "$tool" >/dev/null || { echo "bench/mount.sh needs $tool (apt install $tool)" >&2; exit 1; }
done

source bench/lib.sh
cargo build --release --quiet
cairn=$PWD/target/release/cairn
work=${BENCH_DIR:-$PWD/target/bench}/mount-$$
mkdir -p "$work/local"
trap 'mount_and_dev_stop "$work"' EXIT
dev_start "$cairn" "$work"
"$cairn" --meta "$meta" mkdir /bench
mount_start "$cairn" "$work"

# A source tree to untar and a repository to clone: this project's own.
git ls-files -z | tar --null -T - -cf "$work/tree.tar"
git clone -q --bare . "$work/repo.git"

fio_mbs() { # DIR NAME RW SIZE_MIB: MB/s of 1 MiB blocks
  local dir=$1 name=$2 rw=$3 size=$4
  fio --name="$name" --directory="$dir" --rw="$rw" --bs=1M --size="${size}M" \
    --ioengine=psync --numjobs=1 --end_fsync=1 --output-format=json 2>/dev/null |
    python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; rw="write" if j["write"]["bw_bytes"] else "read"; print("%8.1f" % (j[rw]["bw_bytes"]/1e6))'
}
fio_iops() {
  local dir=$1 name=$2; shift 2
  fio --name="$name" --directory="$dir" --filename=rand --rw=randread --bs=4k --size=256M --runtime=20 --time_based \
    --ioengine=psync --numjobs=4 --group_reporting --output-format=json "$@" 2>/dev/null |
    python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; print("%8.0f" % j["read"]["iops"])'
}
creates() { # DIR: files per second for creating FILES 4 KiB files, then stat-ing them
  local dir=$1 t0 t1 t2
  mkdir -p "$dir/small"
  t0=$(now)
  python3 - "$dir/small" "$files" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
block = os.urandom(4096)
for i in range(n):
    with open(f"{d}/f{i:06d}", "wb") as f:
        f.write(block)
PY
  t1=$(now)
  find "$dir/small" -type f -printf '%s\n' > /dev/null
  ls -l "$dir/small" > /dev/null
  t2=$(now)
  echo "$(per_second "$files" "$t0" "$t1" 0) $(per_second "$files" "$t1" "$t2" 0)"
}
timed() { local t0 t1; t0=$(now); "$@" > /dev/null 2>&1; t1=$(now); python3 -c "print(f'{$t1-$t0:8.2f}')"; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }

run_all() { # DIR LABEL
  local dir=$1
  local w r rr c
  w=$(fio_mbs "$dir" seq write "$seq_mib")
  drop_caches
  r=$(fio_mbs "$dir" seq read "$seq_mib")
  rr=$(fio_iops "$dir" rand)
  c=$(creates "$dir")
  local untar clone
  untar=$(timed tar -xf "$work/tree.tar" -C "$(mkdir -p "$dir/tree" && echo "$dir/tree")")
  clone=$(timed git clone -q --no-hardlinks "$work/repo.git" "$dir/clone")
  echo "$w|$r|$rr|$c|$untar|$clone"
}

echo "running on the local directory..."
local_row=$(run_all "$work/local")
echo "running on the mount..."
mount_row=$(run_all "$work/mnt/bench")

row() {
  IFS='|' read -r w r rr c untar clone <<< "$2"
  read -r cr st <<< "$c"
  printf '%-16s %10s %10s %12s %12s %12s %10s %10s\n' "$1" "$w" "$r" "$rr" "$cr" "$st" "$untar" "$clone"
}
echo
echo "fio ${seq_mib} MiB sequential (1 MiB blocks, write ends with fsync), 4 KiB random reads (4 jobs, one 256 MiB file, 20 s),"
echo "${files} x 4 KiB files created, then stat-ed (find + ls -l), untar of this repository, git clone of it"
printf '%-16s %10s %10s %12s %12s %12s %10s %10s\n' "" "write MB/s" "read MB/s" "4k read IOPS" "creates/s" "stats/s" "untar s" "clone s"
row "local directory" "$local_row"
row "cairn mount" "$mount_row"
echo "(targets: sequential write >= 150 MB/s, read >= 400 MB/s; JuiceFS reports ~5,000 creates/s per client)"
