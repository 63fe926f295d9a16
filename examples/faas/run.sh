#!/usr/bin/env bash
# The FaaS example: a function (herald display acting as one: it replies to orders and fails on
# broken ones) on the `requests` Channel, replies on `responses`, failures dead-lettered into
# `errors`, an event-display on each. Sends two requests and keeps running (Ctrl-C stops).
# With --check it exits once both displays have shown their event (used by the tests).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=../setup.sh
source examples/setup.sh "$@"

"$HERALD_BIN" display --port 9011 --reply-type com.example.order.processed \
  --fail-type com.example.order.broken > "$logs/function.log" 2>&1 & pids+=($!)
"$HERALD_BIN" display --port 9012 > "$logs/responses.log" 2>&1 & pids+=($!)
"$HERALD_BIN" display --port 9013 > "$logs/errors.log" 2>&1 & pids+=($!)
# The Channels are in memory (their template is InMemoryChannel): nothing is written to disk.
"$HERALD_BIN" serve --config examples/faas --listen "127.0.0.1:$port" --admin-addr "127.0.0.1:$admin_port" \
  --data-dir "$logs/data" \
  2> "$logs/herald.log" & pids+=($!)
if ! $check; then
  tail -n +1 -F "$logs/responses.log" 2>/dev/null | sed -u 's/^/[responses display] /' &
  tail -n +1 -F "$logs/errors.log" 2>/dev/null | sed -u 's/^/[errors display]    /' &
fi

requests="http://127.0.0.1:$port/channels/default/requests"
for _ in $(seq 100); do
  "$HERALD_BIN" send --to "$requests" --type dev.herald.ping --source /faas >/dev/null 2>&1 && break
  sleep 0.1
done
"$HERALD_BIN" send --to "$requests" --type com.example.order.created --source /shop \
  --id order-1 --data '{"order": 1}'
"$HERALD_BIN" send --to "$requests" --type com.example.order.broken --source /shop \
  --id order-2 --data '{"order": 2}'

if $check; then
  for _ in $(seq 150); do
    if grep -q "id: order-1-reply" "$logs/responses.log" && grep -q "id: order-2" "$logs/errors.log"; then
      sed 's/^/[responses display] /' "$logs/responses.log"
      sed 's/^/[errors display]    /' "$logs/errors.log"
      echo "faas check passed: the reply reached responses, the failure reached errors"; exit 0
    fi
    sleep 0.1
  done
  echo "faas check FAILED; herald log:" >&2
  cat "$logs/herald.log" >&2
  exit 1
fi

echo
echo "Send more requests from another terminal, e.g.:"
echo "  $HERALD_BIN send --to $requests --type com.example.order.created --data '{\"order\": 3}'"
echo "Ctrl-C stops Herald and the displays."
wait "${pids[3]}"
