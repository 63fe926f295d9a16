# Shared set-up of the example scripts, sourced from the repository root: parses --check,
# picks the ports (HERALD_PORT, default 8080, for ingress; HERALD_ADMIN_PORT, default 8081, for
# the admin API), builds Herald unless HERALD_BIN names one, and
# makes a log directory that is removed, with every process started into `pids`, on exit.
check=false
[ "${1:-}" = "--check" ] && check=true
port="${HERALD_PORT:-8080}"
admin_port="${HERALD_ADMIN_PORT:-8081}"

if [ -z "${HERALD_BIN:-}" ]; then
  bash scripts/build-deps.sh
  cargo build --release --locked -q -p herald-broker --bin herald
  HERALD_BIN="${CARGO_TARGET_DIR:-target}/release/herald"
fi
logs="$(mktemp -d)"
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  # One signal each, then the rest: a second SIGTERM makes herald exit without its graceful
  # shutdown, which is what stops a ContainerSource's program.
  wait "${pids[@]}" 2>/dev/null || true
  pkill -P $$ 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$logs"
}
trap cleanup EXIT INT TERM
