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
