#!/usr/bin/env bash
# Profiles `herald serve` under wrk load (1 KiB binary-mode events, as scripts/bench.sh sends)
# and writes where the time goes to OUT/report.txt (the raw perf.data or callgrind.out beside it).
#
#   --tool perf       samples with perf (cpu-clock: VMs without hardware counters have no
#                     cycles event) and DWARF call graphs; OUT/herald.svg too when
#                     inferno-collapse-perf and inferno-flamegraph (cargo install inferno)
#                     are on the PATH.
#   --tool callgrind  runs Herald under valgrind --tool=callgrind, which counts instructions:
#                     slow (~50x), but the counts do not depend on what else the machine runs,
#                     so before/after comparisons hold on a noisy machine. OUT/report.txt holds
#                     the instructions per function (inclusive) and per accepted event.
#   --tool syscalls   counts Herald's system calls and context switches with perf stat
#                     (syscall tracepoints: needs root or perf_event_paranoid <= -1) and
#                     reports each per accepted event. On a VM whose loopback TCP stack
#                     takes most of the CPU, these counts say more than user-space samples.
#
# Usage: scripts/profile.sh [--tool perf|callgrind|syscalls] [--duration 20s] [--connections 8]
#                           [--channel memory] [--triggers 0] [--herald PATH] [--out DIR]
#                           [--log LEVEL]
# --triggers N adds N non-matching Triggers (as bench.sh's case g). --herald defaults to the
# dist-profile build, as images ship it (built here). --log sets Herald's RUST_LOG (default:
# $RUST_LOG, else info, the level `herald serve` logs at). Needs wrk, nginx and perf or valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."

tool=perf
duration=20s
connections=8
channel=memory
triggers=0
herald=""
out=profile-out
log="${RUST_LOG:-info}"
while [ $# -gt 0 ]; do
  case "$1" in
    --tool) tool="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --channel) channel="$2"; shift 2 ;;
    --triggers) triggers="$2"; shift 2 ;;
    --herald) herald="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --log) log="$2"; shift 2 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$tool" in
  perf) command -v perf >/dev/null || { echo "profile.sh: perf is missing (Debian: linux-perf)" >&2; exit 1; } ;;
  callgrind) command -v valgrind >/dev/null || { echo "profile.sh: valgrind is missing" >&2; exit 1; } ;;
  syscalls)
    command -v perf >/dev/null || { echo "profile.sh: perf is missing (Debian: linux-perf)" >&2; exit 1; }
    [ -n "$(perf list 2>/dev/null | grep 'syscalls:sys_enter_write ')" ] \
      || { echo "profile.sh: perf sees no syscall tracepoints (run as root)" >&2; exit 1; } ;;
  *) echo "--tool is perf, callgrind or syscalls, not $tool" >&2; exit 2 ;;
esac
command -v wrk >/dev/null || { echo "profile.sh: wrk is missing" >&2; exit 1; }
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
[ -x "$nginx_bin" ] || { echo "profile.sh: nginx is missing" >&2; exit 1; }
if [ -z "$herald" ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/herald/target}"
  cargo build --profile dist --quiet -p herald-broker --bin herald
  herald="$CARGO_TARGET_DIR/dist/herald"
fi
mkdir -p "$out"
out="$(cd "$out" && pwd)"
tmp="$(mktemp -d -t herald-profile.XXXXXX)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# Waits (deadline SECONDS) until URL answers 2xx to the request CURL_ARGS describe.
wait_for() {
  local limit="$1" deadline; shift
  deadline=$((SECONDS + limit))
  until curl -fsS -o /dev/null "$@" 2>/dev/null; do
    [ $SECONDS -lt "$deadline" ] || { echo "profile.sh: no answer from $* within ${limit}s" >&2; cat "$tmp"/*.log >&2 || true; exit 1; }
    sleep 0.1
  done
}

# The subscriber: nginx answering 202.
sink_port="$(free_port)"
mkdir -p "$tmp/sink/logs"
cat >"$tmp/sink/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $tmp/sink/nginx.pid;
error_log $tmp/sink/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $tmp/sink/body;
  server { listen 127.0.0.1:$sink_port; location / { return 202; } }
}
EOF
"$nginx_bin" -p "$tmp/sink" -c "$tmp/sink/nginx.conf" >"$tmp/sink.log" 2>&1 &
pids+=($!)
wait_for 10 "http://127.0.0.1:$sink_port/"

# One Broker, one matching Trigger and TRIGGERS that never match.
mkdir -p "$tmp/config"
{
  printf 'apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b, namespace: profile}\n'
  printf -- '---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: matching, namespace: profile}\n'
  printf 'spec: {broker: b, filter: {attributes: {type: bench.event}}, subscriber: {uri: "http://127.0.0.1:%s/"}}\n' "$sink_port"
  for ((i = 0; i < triggers; i++)); do
    printf -- '---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: other-%s, namespace: profile}\n' "$i"
    printf 'spec: {broker: b, filters: [{prefix: {type: bench.other.%s.}}], subscriber: {uri: "http://127.0.0.1:%s/"}}\n' "$i" "$sink_port"
  done
} >"$tmp/config/config.yaml"

port="$(free_port)"
serve=("$herald" serve --config "$tmp/config" --listen "127.0.0.1:$port" --admin-addr 127.0.0.1:0
  --channel "$channel" --data-dir "$tmp/data")
case "$tool" in
  perf) RUST_LOG="$log" perf record -e cpu-clock -F 999 -g --call-graph dwarf,16384 -o "$tmp/perf.data" \
          -- "${serve[@]}" >"$tmp/herald.log" 2>&1 & ;;
  callgrind) RUST_LOG="$log" valgrind --tool=callgrind --callgrind-out-file="$tmp/callgrind.out" \
          -- "${serve[@]}" >"$tmp/herald.log" 2>&1 & ;;
  # Counted from start to shutdown: start-up and the ready probe add a few hundred calls.
  syscalls) RUST_LOG="$log" perf stat -x, -o "$tmp/stat.csv" -e 'syscalls:sys_enter_*' \
          -e context-switches,cpu-migrations -- "${serve[@]}" >"$tmp/herald.log" 2>&1 & ;;
esac
recorder=$!
pids+=("$recorder")
ready=(-X POST "http://127.0.0.1:$port/profile/b" -H 'ce-specversion: 1.0' -H 'ce-id: ready'
  -H 'ce-source: /profile' -H 'ce-type: bench.event' --data-binary ready)
wait_for 120 "${ready[@]}"

cat >"$tmp/post.lua" <<'EOF'
local body = string.rep("x", 1024)
local n = 0
function request()
  n = n + 1
  return wrk.format("POST", nil, {
    ["ce-specversion"] = "1.0", ["ce-id"] = "p-" .. n, ["ce-source"] = "/profile",
    ["ce-type"] = "bench.event", ["content-type"] = "application/octet-stream",
  }, body)
end
EOF
wrk -t1 -c"$connections" -d"$duration" --timeout 30s -s "$tmp/post.lua" "http://127.0.0.1:$port/profile/b" \
  >"$tmp/wrk.out" 2>&1
requests="$(awk '/requests in/ {print $1}' "$tmp/wrk.out")"
# Deliveries still queued finish before the profile ends (SIGINT: graceful shutdown).
sleep 1
# perf stat does not pass the signal on: Herald is its child.
[ "$tool" != syscalls ] || pkill -INT -P "$recorder" herald || true
kill -INT "$recorder"
wait "$recorder" || true
pids=("${pids[@]/$recorder}")
# The reports below are cut short with head: a reader stopping early is not a failure.
set +o pipefail

{
  echo "# herald serve --channel $channel, $((triggers + 1)) Trigger(s); wrk -c$connections -d$duration: ${requests:-0} requests"
  echo "# $(uptime)"
  case "$tool" in
    perf)
      # --no-inline and -g none: resolving inlined frames runs addr2line per sample, which
      # takes minutes on a debug build. First the split between Herald, the kernel and libc.
      echo "# by binary:"
      perf report -i "$tmp/perf.data" --stdio --no-children --no-inline -g none --sort comm,dso \
        --percent-limit 0.5 2>/dev/null | grep -v '^#' | grep -v '^$' | head -20
      echo "# by function, own samples:"
      perf report -i "$tmp/perf.data" --stdio --no-children --no-inline -g none --sort dso,symbol \
        --percent-limit 0.5 2>/dev/null \
        | grep -v '^$' | head -80 ;;
    callgrind)
      total="$(callgrind_annotate "$tmp/callgrind.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')"
      echo "# instructions in all: ${total:-?}; per request: $(awk -v t="${total:-0}" -v n="${requests:-0}" 'BEGIN { if (n > 0) printf "%.0f", t / n; else print "?" }')"
      echo "# by function, own instructions:"
      callgrind_annotate "$tmp/callgrind.out" 2>/dev/null | sed -n '/file:function/,$p' | sed -n '3,42p'
      echo "# Herald's own functions, inclusive:"
      callgrind_annotate --inclusive=yes "$tmp/callgrind.out" 2>/dev/null | grep 'herald_' | head -40 ;;
    syscalls)
      echo "# per accepted event (count / requests), most frequent first:"
      awk -F, -v n="${requests:-0}" '$1 ~ /^[0-9]+$/ && $1 > 0 && n > 0 {
          name = $3; sub(/^syscalls:sys_enter_/, "", name); total += ($3 ~ /^syscalls:/) ? $1 : 0
          printf "%10.3f  %s\n", $1 / n, name }
        END { if (n > 0) printf "%10.3f  (all system calls)\n", total / n }' "$tmp/stat.csv" \
        | sort -rn | head -30 ;;
  esac
} >"$out/report.txt"
cp "$tmp"/perf.data "$tmp"/callgrind.out "$tmp"/stat.csv "$out"/ 2>/dev/null || true
if [ "$tool" = perf ] && command -v inferno-collapse-perf >/dev/null && command -v inferno-flamegraph >/dev/null; then
  perf script -i "$tmp/perf.data" 2>/dev/null | inferno-collapse-perf | inferno-flamegraph >"$out/herald.svg"
fi
echo "profile: $out/report.txt (${requests:-0} requests)"
