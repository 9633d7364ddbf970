#!/usr/bin/env bash
# The POSIX conformance suite pjdfstest (https://github.com/pjd/pjdfstest)
# against `cairn mount`: a `cairn dev` cluster mounted by its admin with
# --allow-other, so that the suite's other users act as themselves. Prints
# prove's summary and the share of assertions that pass.
# Needs root, /dev/fuse, git, gcc, autoconf, automake and prove (perl).
#
#   bench/pjdfstest.sh                  (every test; ~5 min on 2 cores)
#   bench/pjdfstest.sh chmod rename     (some directories of tests/)
#
# The suite is fetched once into target/pjdfstest at a fixed commit, from
# GitHub or from PJDFSTEST_REPO (a local clone or mirror, for machines
# without GitHub).
set -euo pipefail
cd "$(dirname "$0")/.."
commit=85a8aea9e685999ef0540392fd80535f873d7ff7
for tool in git gcc autoreconf prove; do
  command -v "$tool" >/dev/null || { echo "bench/pjdfstest.sh needs $tool (apt install git gcc autoconf automake perl)" >&2; exit 1; }
done
suite=$PWD/target/pjdfstest
if [ ! -x "$suite/pjdfstest" ]; then
  rm -rf "$suite"
  git clone -q "${PJDFSTEST_REPO:-https://github.com/pjd/pjdfstest}" "$suite"
  git -C "$suite" checkout -q "$commit"
  (cd "$suite" && autoreconf -ifs >/dev/null 2>&1 && ./configure >/dev/null && make -s pjdfstest >/dev/null)
fi

source bench/lib.sh
cargo build --release --quiet
cairn=$PWD/target/release/cairn
work=${BENCH_DIR:-$PWD/target/bench}/pjdfstest-$$
mkdir -p "$work"
# Other users reach the mount point through here.
chmod 755 "$work"
trap 'mount_and_dev_stop "$work"' EXIT
dev_start "$cairn" "$work"
mount_start "$cairn" "$work" --allow-other

# At the mount's root, so that the suite's longest paths are the
# namespace's longest too.
tests=()
if [ $# -eq 0 ]; then tests=("$suite/tests"); else for t in "$@"; do tests+=("$suite/tests/$t"); done; fi
# In a subshell: this shell must not keep the mount busy when it unmounts.
(cd "$work/mnt" && prove -r "${tests[@]}") > "$work/prove.out" 2>&1 || true
grep -E "Tests: .* Failed|TODO passed|Parse errors|^Files=|^Result" "$work/prove.out" || true
python3 - "$work/prove.out" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
total = int(re.search(r"Tests=(\d+)", text).group(1))
failed = sum(int(n) for n in re.findall(r"Tests: \d+ Failed: (\d+)", text))
print(f"pjdfstest: {total - failed} of {total} assertions pass ({100 * (total - failed) / total:.1f}%)")
PY
