#!/usr/bin/env bash
# Herald against nginx, measured with independent tools (issue "Performance", item 1).
#
# wrk posts 1 KiB binary-mode CloudEvents (unique ce-id per request) over 32 connections to:
#   (a) nginx answering 202 itself               (the ceiling of this machine's HTTP stack)
#   (b) nginx proxy_pass to an nginx sink (202)  (the baseline: one hop in, one hop out = 100%)
#   (c) Herald, memory channel, 1 Trigger        (subscriber = the same nginx sink)
#   (d) Herald, durable default (sled), 1 Trigger; again with wrk paced to half (d)'s req/s
#   (e) Herald on NATS JetStream                 (if a nats-server listens on 127.0.0.1:4222)
#   (f) Herald on Kafka                          (with --kafka HOST:PORT; builds --features kafka)
#   (g) Herald, memory, 1,000 non-matching Triggers (half prefix, half CESQL) + 1 matching
#   (h) Herald, memory, fan-out: 100 Triggers of which 10 match (10 deliveries per event)
#   (i) Herald, memory, 10x overload: the subscriber (nginx limit_req in front of the sink)
#       takes 2,000 events/s while wrk sends as fast as Herald answers; the channel's default
#       bound must refuse the excess with 429/503 and keep RSS bounded, and every accepted
#       event must reach the sink afterwards
# and prints req/s, the ratio to (b) from the same run, latency p50/p99/p99.9 (wrk's own
# histogram), and for Herald the idle and peak RSS (VmRSS once ready, VmHWM) and the rate at
# which the sink actually received the deliveries (an accepted event may still be queued on
# the channel when wrk stops), with (g) and (h) also as a share of (c)'s delivery rate, and the
# CPU time Herald (and nats-server or tansu) spent per 1,000 events.
#
# Usage: scripts/bench.sh [--duration 10s] [--warmup 2s] [--connections 32] [--threads 2]
#                         [--kafka HOST:PORT] [--nats-url nats://127.0.0.1:4222]
#                         [--herald PATH] [--only c,g,...] [--rounds 1]
# --herald runs that binary instead of building one (e.g. an older build, for a before/after
# in the same conditions); --only runs the named Herald cases (a and b always run); --rounds N
# runs everything N times, each round with its own baseline, and ends with the median of each
# case's figures over the rounds (a 2-core VM varies by 10% from run to run; the overload
# case's line there is the last round's). Herald
# logs at its default level (info), as `herald serve` runs, unless RUST_LOG says otherwise.
# Installs wrk and nginx-light with apt-get when missing (needs root). Everything listens on
# 127.0.0.1; configs, data and logs live in a temporary directory removed on exit (kept with
# HERALD_BENCH_KEEP=1).
set -euo pipefail
cd "$(dirname "$0")/.."

duration=10s
warmup=2s
connections=32
threads=2
kafka=""
nats_url="nats://127.0.0.1:4222"
herald=""
only=",c,d,e,f,g,h,i,"
rounds=1
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --kafka) kafka="$2"; shift 2 ;;
    --nats-url) nats_url="$2"; shift 2 ;;
    --herald) herald="$2"; shift 2 ;;
    --only) only=",$2,"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    -h|--help) sed -n '2,34p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "--rounds takes a whole number from 1, got $rounds" >&2; exit 2; }

# --- tools -----------------------------------------------------------------------------------
missing=()
command -v wrk >/dev/null || missing+=(wrk)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || missing+=(nginx-light)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bench.sh needs ${missing[*]}: run as root, or apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "== installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  # The package starts a system nginx on port 80; this script runs its own.
  if command -v systemctl >/dev/null && systemctl is-active -q nginx 2>/dev/null; then
    systemctl stop nginx || true
  fi
fi
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/herald/target}"
features=()
[ -n "$kafka" ] && features=(--features kafka)
if [ -z "$herald" ]; then
  # The dist profile, as images ship it (whole-program optimised: the first build is long).
  echo "== building herald (dist profile${kafka:+, kafka})"
  cargo build --profile dist --quiet -p herald-broker --bin herald "${features[@]}"
  herald="$CARGO_TARGET_DIR/dist/herald"
fi

# --- processes and clean-up --------------------------------------------------------------------
tmp="$(mktemp -d -t herald-bench.XXXXXX)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "${HERALD_BENCH_KEEP:-}" ]; then echo "kept $tmp (configs, logs)" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Stops one process this script started and forgets it.
stop() {
  local pid="$1" keep=() p
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for p in "${pids[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  pids=("${keep[@]}")
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits until 127.0.0.1:PORT accepts connections; fails if process PID (named WHAT, logging to
# LOG) exits first or after SECONDS.   wait_port PORT PID WHAT LOG [SECONDS]
wait_port() {
  local port="$1" pid="$2" what="$3" log="$4" limit="${5:-30}"
  local deadline=$((SECONDS + limit))
  until listening "$port"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$what exited before listening on $port; its log:" >&2
      cat "$log" >&2 || true
      exit 1
    fi
    [ $SECONDS -lt "$deadline" ] || { echo "$what: nothing listens on $port after ${limit}s" >&2; exit 1; }
    sleep 0.05
  done
}

# --- nginx ---------------------------------------------------------------------------------------
# One nginx per role, each in its own prefix directory: `sink` answers 202 to everything (and
# counts requests on /nginx-status), `forwarder` proxies to the sink with pooled upstream
# connections, as Herald's dispatcher pools its own.
start_nginx() {
  local name="$1" port="$2" location="$3" upstream="${4:-}"
  mkdir -p "$tmp/$name/logs"
  cat >"$tmp/$name/nginx.conf" <<EOF
worker_processes 2;
daemon off;
pid $tmp/$name/nginx.pid;
error_log $tmp/$name/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $tmp/$name/body;
  proxy_temp_path $tmp/$name/proxy;
  fastcgi_temp_path $tmp/$name/fastcgi;
  uwsgi_temp_path $tmp/$name/uwsgi;
  scgi_temp_path $tmp/$name/scgi;
  $upstream
  server {
    listen 127.0.0.1:$port reuseport backlog=4096;
    location = /nginx-status { stub_status; }
    location / { $location }
  }
}
EOF
  "$nginx_bin" -p "$tmp/$name" -c "$tmp/$name/nginx.conf" >"$tmp/$name.log" 2>&1 &
  pids+=($!)
  wait_port "$port" $! "$name" "$tmp/$name.log"
}

sink_port="$(free_port)"
start_nginx sink "$sink_port" "return 202;"
sink="http://127.0.0.1:$sink_port/"

# Requests the sink has answered, not counting the status requests themselves (counted in a
# file: callers run this in command substitutions, i.e. subshells).
echo 0 >"$tmp/status-polls"
sink_count() {
  local polls total
  polls=$(($(cat "$tmp/status-polls") + 1))
  echo "$polls" >"$tmp/status-polls"
  total="$(curl -fsS "http://127.0.0.1:$sink_port/nginx-status" | awk 'NR == 3 {print $3}')"
  echo $((total - polls))
}

# --- load --------------------------------------------------------------------------------------
cat >"$tmp/post.lua" <<'EOF'
-- 1 KiB binary-mode CloudEvents, a unique ce-id per request (thread number + counter; each wrk
-- thread has its own Lua state).
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
local body = string.rep("x", 1024)
local n = 0
function request()
  n = n + 1
  return wrk.format("POST", nil, {
    ["ce-specversion"] = "1.0",
    ["ce-id"] = "wrk-" .. tid .. "-" .. n,
    ["ce-source"] = "/bench/wrk",
    ["ce-type"] = "bench.event",
    ["content-type"] = "application/octet-stream",
  }, body)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d seconds=%.3f p50=%d p99=%d p999=%d non2xx=%d socket_errors=%d\n",
    summary.requests, summary.duration / 1e6,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    e.status, e.connect + e.read + e.write + e.timeout))
end
EOF

# The same requests paced: each wrk thread hands out send times RATE / THREADS per second
# apart, and a connection whose response came back waits for its slot, so together they
# send RATE req/s while enough connections are free. wrk starts a request's latency when it
# writes it: the wait is not counted (nor, unlike wrk2, queueing a stall would cause).
{
  cat "$tmp/post.lua"
  cat <<'EOF'
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_usec; } herald_timeval;
int gettimeofday(herald_timeval *tv, void *tz);
]]
local tv = ffi.new("herald_timeval")
local function now_ms()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000 + tonumber(tv.tv_usec) / 1000
end
local slot = 0
function delay()
  local now = now_ms()
  slot = math.max(slot + interval, now)
  return math.floor(slot - now)
end
EOF
} >"$tmp/paced.lua"

# The same requests, tallying the answers by status (for the overload case).
{
  cat "$tmp/post.lua"
  cat <<'EOF'
ok, r429, r503, other = 0, 0, 0, 0
function response(status, headers, body)
  if status < 300 then ok = ok + 1
  elseif status == 429 then r429 = r429 + 1
  elseif status == 503 then r503 = r503 + 1
  else other = other + 1 end
end
function done(summary, latency, requests)
  local t = { ok = 0, r429 = 0, r503 = 0, other = 0 }
  for _, thread in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + thread:get(k) end
  end
  local e = summary.errors
  io.write(string.format(
    "STATUSES seconds=%.3f ok=%d r429=%d r503=%d other=%d socket_errors=%d\n",
    summary.duration / 1e6, t.ok, t.r429, t.r503, t.other,
    e.connect + e.read + e.write + e.timeout))
end
EOF
} >"$tmp/overload.lua"

# Runs wrk against URL for DURATION (at RATE req/s in all when given); prints its RESULT line.
#   run_wrk URL DURATION [RATE]
run_wrk() {
  local url="$1" d="$2" rate="${3:-}" script="$tmp/post.lua"
  if [ -n "$rate" ]; then
    script="$tmp/paced-$rate.lua"
    { echo "interval = $(awk -v t="$threads" -v r="$rate" 'BEGIN { printf "%.4f", t * 1000 / r }')"
      cat "$tmp/paced.lua"; } >"$script"
  fi
  wrk -t"$threads" -c"$connections" -d"$d" --latency --timeout 10s -s "$script" "$url" \
    >"$tmp/wrk.out" 2>&1 || { cat "$tmp/wrk.out" >&2; return 1; }
  grep '^RESULT ' "$tmp/wrk.out" || { cat "$tmp/wrk.out" >&2; return 1; }
}

# CPU time (user + system, ms) process PID has used so far; 0 when it is gone.
cpu_ms() {
  local tick
  tick="$(getconf CLK_TCK)"
  # The fields after the command name (which may hold spaces): utime, stime are the 12th, 13th.
  { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null || echo; } \
    | awk -v t="$tick" '{ printf "%.0f", ($12 + $13) * 1000 / t }'
}

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }

# Waits until the sink has received BASE + N requests (deadline 120 s); prints seconds waited.
wait_delivered() {
  local base="$1" n="$2" start end
  start="$(date +%s.%N)"
  local deadline=$((SECONDS + 120)) got
  while got=$(( $(sink_count) - base )); [ "$got" -lt "$n" ]; do
    [ $SECONDS -lt "$deadline" ] || { echo "only $got of $n events reached the sink within 120 s" >&2; return 1; }
    sleep 0.05
  done
  end="$(date +%s.%N)"
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }'
}

results=""
baseline_rps=""

# Measures one case: warm-up, then DURATION; records a results row. FANOUT: deliveries per
# accepted event; IDLE: the Herald process's resident MiB once ready; SERVER_PID: the backend
# server (nats-server, tansu) whose CPU is counted too; RATE: wrk paced to that many req/s.
#   measure NAME URL [HERALD_PID FANOUT IDLE SERVER_PID RATE]
measure() {
  local name="$1" url="$2" herald_pid="${3:-}" fanout="${4:-1}" idle="${5:--}" server_pid="${6:-}"
  local rate="${7:-}" r base rps accepted drain delivered rss cpu0 srv0 cpu="-" srv="-" events
  [ -n "$rate" ] || run_wrk "$url" "$warmup" >/dev/null
  if [ -n "$herald_pid" ]; then
    # Start from an empty channel: everything the warm-up got accepted reaches the sink first.
    local settled="" deadline=$((SECONDS + 120))
    base="$(sink_count)"
    until [ "$settled" = "$base" ]; do
      [ $SECONDS -lt "$deadline" ] || { echo "$name: the warm-up never drained" >&2; exit 1; }
      settled="$base"
      sleep 0.3
      base="$(sink_count)"
    done
    cpu0="$(cpu_ms "$herald_pid")"
    [ -z "$server_pid" ] || srv0="$(cpu_ms "$server_pid")"
  fi
  r="$(run_wrk "$url" "$duration" "$rate")"
  rps="$(awk -v n="$(field requests "$r")" -v s="$(field seconds "$r")" 'BEGIN { printf "%.0f", n / s }')"
  last_rps="$rps"
  delivered="-" drain="-" rss="-"
  if [ -n "$herald_pid" ]; then
    events=$(( $(field requests "$r") - $(field non2xx "$r") ))
    accepted=$(( events * fanout ))
    drain="$(wait_delivered "$base" "$accepted")"
    delivered="$(awk -v n="$accepted" -v s="$(field seconds "$r")" -v d="$drain" \
      'BEGIN { printf "%.0f", n / (s + d) }')"
    rss="$(awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$herald_pid/status")"
    # CPU ms per 1,000 accepted events, from the measured run's start to the last delivery.
    cpu="$(per_kev "$cpu0" "$(cpu_ms "$herald_pid")" "$events")"
    [ -z "$server_pid" ] || srv="$(per_kev "$srv0" "$(cpu_ms "$server_pid")" "$events")"
  fi
  [ -n "$baseline_rps" ] || [ "$name" != "(b) nginx forwarder" ] || baseline_rps="$rps"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$rps" \
    "$(field p50 "$r")" "$(field p99 "$r")" "$(field p999 "$r")" "$(field non2xx "$r")" \
    "$(field socket_errors "$r")" "$delivered" "$drain" "$idle" "$rss" "$cpu" "$srv" >>"$results"
  echo "   $name: $rps req/s" >&2
}

# CPU ms per 1,000 events: per_kev MS_BEFORE MS_AFTER EVENTS
per_kev() {
  awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { if (n > 0) printf "%.0f", (b - a) * 1000 / n; else print "-" }'
}

# --- Herald --------------------------------------------------------------------------------------
# A namespace per round (set below), so NATS streams and Kafka topics (named after the Broker)
# start empty.
ns=""

# Writes DIR/config.yaml: Broker NS/b, NONMATCHING Triggers that never match (half prefix, half
# CESQL), and MATCHING (default 1) Triggers on type bench.event, all subscribed to the sink.
herald_config() {
  local dir="$1" nonmatching="$2" matching="${3:-1}" i
  mkdir -p "$dir"
  {
    cat <<EOF
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: b
  namespace: $ns
spec:
  delivery:
    retry: 3
    backoffPolicy: exponential
    backoffDelay: PT0.1S
EOF
    for ((i = 0; i < matching; i++)); do
      cat <<EOF
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: matching-$i
  namespace: $ns
spec:
  broker: b
  filter:
    attributes:
      type: bench.event
  subscriber:
    uri: $sink
EOF
    done
    for ((i = 0; i < nonmatching; i++)); do
      if ((i % 2 == 0)); then
        filter="    - prefix:
        type: bench.other.$i."
      else
        # Only attributes every event has: a missing one would make each evaluation an error.
        filter="    - cesql: \"type = 'bench.other.$i' OR (source LIKE '/other/%' AND id = 'x$i')\""
      fi
      cat <<EOF
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: other-$i
  namespace: $ns
spec:
  broker: b
  filters:
$filter
  subscriber:
    uri: $sink
EOF
    done
  } >"$dir/config.yaml"
}

# Runs one Herald case: herald_case NAME CHANNEL NONMATCHING MATCHING [extra serve flags...]
# The durable case is measured again at half its rate (the p99 target is at half the maximum).
herald_case() {
  local name="$1" channel="$2" nonmatching="$3" matching="$4" port pid dir idle server_pid=""
  shift 4
  case "$only" in *",${name:1:1},"*) ;; *) return 0 ;; esac
  dir="$tmp/$ns/herald-$channel-$nonmatching-$matching"
  herald_config "$dir/config" "$nonmatching" "$matching"
  port="$(free_port)"
  "$herald" serve --config "$dir/config" --listen "127.0.0.1:$port" \
    --admin-addr 127.0.0.1:0 --channel "$channel" --data-dir "$dir/data" "$@" >"$dir/herald.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  wait_port "$port" "$pid" herald "$dir/herald.log" 60
  # Ready once one event goes through to the sink.
  local base deadline=$((SECONDS + 60))
  base="$(sink_count)"
  until curl -fsS -o /dev/null -X POST "http://127.0.0.1:$port/$ns/b" \
    -H 'ce-specversion: 1.0' -H 'ce-id: ready' -H 'ce-source: /bench/ready' \
    -H 'ce-type: bench.event' -H 'content-type: text/plain' --data-binary ready 2>/dev/null; do
    [ $SECONDS -lt "$deadline" ] || { echo "$name: Herald never accepted an event" >&2; cat "$dir/herald.log" >&2; exit 1; }
    sleep 0.1
  done
  wait_delivered "$base" "$matching" >/dev/null
  idle="$(awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$pid/status")"
  case "$channel" in
    nats) server_pid="$(pgrep -x nats-server | head -1 || true)" ;;
    kafka) server_pid="$(pgrep -x tansu | head -1 || true)" ;;
  esac
  measure "$name" "http://127.0.0.1:$port/$ns/b" "$pid" "$matching" "$idle" "$server_pid"
  if [ "$channel" = sled ] && [ "$nonmatching" = 0 ]; then
    measure "$name at half rate" "http://127.0.0.1:$port/$ns/b" "$pid" "$matching" "$idle" "" \
      "$((last_rps / 2))"
  fi
  stop "$pid"
}

# (i): Herald on memory (default bound: 10,000 events) with a subscriber that takes RATE events/s
# (nginx limit_req, delaying the excess, in front of the counting sink), under wrk at full
# speed for DURATION. Records offered and accepted req/s, the refusals by status, idle and
# peak RSS, and how long the accepted events took to reach the sink afterwards.
overload_case() {
  local name="$1" rate="$2" slow_port dir port pid idle base r secs ok drain rss
  case "$only" in *",${name:1:1},"*) ;; *) return 0 ;; esac
  # Started by the first round, kept for the others.
  if [ -z "${slow_sink:-}" ]; then
    slow_port="$(free_port)"
    start_nginx slow "$slow_port" \
      "limit_req zone=slow burst=1000000; proxy_pass http://fast; proxy_http_version 1.1; proxy_set_header Connection \"\";" \
      "limit_req_zone \$server_addr zone=slow:1m rate=${rate}r/s; upstream fast { server 127.0.0.1:$sink_port; keepalive 64; }"
    slow_sink="http://127.0.0.1:$slow_port/"
  fi
  dir="$tmp/$ns/herald-overload"
  sink="$slow_sink" herald_config "$dir/config" 0 1
  port="$(free_port)"
  "$herald" serve --config "$dir/config" --listen "127.0.0.1:$port" \
    --admin-addr 127.0.0.1:0 --channel memory --data-dir "$dir/data" >"$dir/herald.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  wait_port "$port" "$pid" herald "$dir/herald.log" 60
  idle="$(awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$pid/status")"
  base="$(sink_count)"
  wrk -t"$threads" -c"$connections" -d"$duration" --timeout 10s -s "$tmp/overload.lua" \
    "http://127.0.0.1:$port/$ns/b" >"$tmp/wrk.out" 2>&1 || { cat "$tmp/wrk.out" >&2; exit 1; }
  r="$(grep '^STATUSES ' "$tmp/wrk.out")" || { cat "$tmp/wrk.out" >&2; exit 1; }
  rss="$(awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$pid/status")"
  secs="$(field seconds "$r")" ok="$(field ok "$r")"
  drain="$(wait_delivered "$base" "$ok")" || exit 1
  printf '%s\t%s\n' "$name" "$(awk -v s="$secs" -v ok="$ok" -v a="$(field r429 "$r")" \
    -v b="$(field r503 "$r")" -v o="$(field other "$r")" -v e="$(field socket_errors "$r")" \
    -v rate="$rate" -v idle="$idle" -v rss="$rss" -v d="$drain" 'BEGIN {
      all = ok + a + b + o
      printf "offered %.0f req/s (%.0fx the subscriber), accepted %.0f/s; refused %.1f%% (429: %d, 503: %d), other %d, socket errors %d; RSS idle %s MiB, peak %s MiB; all %d accepted at the sink %.1f s after",
        all / s, all / s / rate, ok / s, (all > 0 ? (a + b) * 100 / all : 0), a, b, o, e, idle, rss, ok, d
    }')" >>"$results"
  echo "   $name: $(tail -1 "$results" | cut -f2)" >&2
  stop "$pid"
}

for ((round = 1; round <= rounds; round++)); do
  [ "$rounds" = 1 ] || echo "== round $round of $rounds"
  results="$tmp/results-$round"
  : >"$results"
  baseline_rps=""
  ns="bench$(date +%s)r$round"
  echo "== $(nproc) cores; wrk -t$threads -c$connections, ${warmup} warm-up + $duration per case; 1 KiB binary-mode events"
  direct_port="$(free_port)"
  start_nginx direct "$direct_port" "return 202;"
  measure "(a) nginx 202" "http://127.0.0.1:$direct_port/"

  fwd_port="$(free_port)"
  start_nginx forwarder "$fwd_port" "proxy_pass http://sink; proxy_http_version 1.1; proxy_set_header Connection \"\";" \
    "upstream sink { server 127.0.0.1:$sink_port; keepalive 64; }"
  measure "(b) nginx forwarder" "http://127.0.0.1:$fwd_port/"

  herald_case "(c) herald memory" memory 0 1
  herald_case "(d) herald sled (durable)" sled 0 1
  nats_host_port="${nats_url#nats://}"
  if listening "${nats_host_port##*:}"; then
    herald_case "(e) herald nats" nats 0 1 --nats-url "$nats_url"
  else
    printf '%s\tskipped: no nats-server on %s\n' "(e) herald nats" "$nats_url" >>"$results"
  fi
  if [ -n "$kafka" ]; then
    herald_case "(f) herald kafka" kafka 0 1 --kafka-bootstrap-servers "$kafka"
  else
    printf '%s\tskipped: no --kafka HOST:PORT\n' "(f) herald kafka" >>"$results"
  fi
  herald_case "(g) herald memory 1000+1 triggers" memory 1000 1
  herald_case "(h) herald memory fan-out 10 of 100" memory 90 10
  overload_case "(i) herald memory 10x overload" 2000
  echo "$baseline_rps" >"$tmp/baseline-$round"
done

# --- report ------------------------------------------------------------------------------------
header() {
  printf "%-40s %8s %6s %7s %7s %8s %6s %11s %6s %7s %6s %6s %7s %7s\n" "case" "req/s" "ratio" \
    "p50 ms" "p99 ms" "p99.9ms" "errors" "delivered/s" "of (c)" "drain s" "idleMB" "peakMB" \
    "cpu/kev" "srv/kev"
}
# One round's rows with their ratios: req/s to (b)'s, (g) and (h)'s delivered/s to (c)'s.
#   rows ROUND   (tab-separated: the results columns, then ratio, of_c as numbers or -)
rows() {
  awk -F'\t' -v OFS='\t' -v base="$(cat "$tmp/baseline-$1")" '
    NF == 2 { print; next }
    {
      if ($1 ~ /^\(c\)/) c_delivered = $8
      ratio = base > 0 ? $2 / base * 100 : "-"
      of_c = ($1 ~ /^\([gh]\)/ && c_delivered > 0) ? $8 / c_delivered * 100 : "-"
      print $0, ratio, of_c
    }' "$tmp/results-$1"
}
# Prints rows as the table.
table() {
  awk -F'\t' '
    function ms(us) { return us == "-" ? "-" : sprintf("%.2f", us / 1000) }
    function pct(x) { return x == "-" ? "-" : sprintf("%.0f%%", x) }
    NF == 2 { printf "%-40s %s\n", $1, $2; next }
    {
      printf "%-40s %8s %6s %7s %7s %8s %6s %11s %6s %7s %6s %6s %7s %7s\n", $1, $2, pct($14),
        ms($3), ms($4), ms($5), $6 + $7, $8, pct($15), $9, $10, $11, $12, $13
    }'
}
echo
for ((round = 1; round <= rounds; round++)); do
  [ "$rounds" = 1 ] || echo "round $round:"
  header
  rows "$round" | table
  echo
done
if [ "$rounds" -gt 1 ]; then
  # Each column's median over the rounds, case by case (in the order they ran).
  echo "median of $rounds rounds:"
  header
  for ((round = 1; round <= rounds; round++)); do rows "$round"; done | awk -F'\t' -v OFS='\t' '
    function median(list,   a, n, i, j, t) {
      n = split(list, a, " ")
      for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
      if (n == 0 || a[1] == "-") return "-"
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    !($1 in seen) { seen[$1] = 1; order[++cases] = $1 }
    NF == 2 { skipped[$1] = $2; next }
    { for (i = 2; i <= 15; i++) col[$1, i] = col[$1, i] " " $i }
    END {
      for (c = 1; c <= cases; c++) {
        name = order[c]
        if (name in skipped) { print name, skipped[name]; continue }
        line = name
        for (i = 2; i <= 15; i++) {
          m = median(col[name, i])
          fmt = i == 9 ? "%.2f" : i == 10 ? "%.1f" : "%.0f"
          line = line OFS (m == "-" || i >= 14 ? m : sprintf(fmt, m))
        }
        print line
      }
    }' | table
  echo
fi
echo "ratio: req/s as a share of (b). delivered/s: deliveries of accepted events / (run + time"
echo "until the sink had them all); of (c): that as a share of (c)'s. idleMB: resident set of the"
echo "Herald process once ready (VmRSS); peakMB: its peak (VmHWM). errors: non-2xx + socket errors."
echo "cpu/kev: CPU ms Herald used per 1,000 accepted events (run + drain); srv/kev: the same for"
echo "the backend server (nats-server, tansu), on the same $(nproc) cores. at half rate: wrk paced"
echo "to half the case's req/s (latency from each request's write, without wrk2's correction for"
echo "coordinated omission)."
