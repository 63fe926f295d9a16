#!/usr/bin/env bash
# Herald quickstart: builds Herald, starts two event-display subscribers and `herald serve` on
# examples/quickstart, sends a few events, and keeps running (Ctrl-C stops everything).
# With --check it exits once both displays have shown their events (used by the tests).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=../setup.sh
source examples/setup.sh "$@"

"$HERALD_BIN" display --port 9001 > "$logs/orders.log" 2>&1 & pids+=($!)
"$HERALD_BIN" display --port 9002 > "$logs/payments.log" 2>&1 & pids+=($!)
# Events are kept in ./herald-data (the embedded sled store); --check keeps it temporary.
data_dir="herald-data"
$check && data_dir="$logs/data"
"$HERALD_BIN" serve --config examples/quickstart --listen "127.0.0.1:$port" --admin-addr "127.0.0.1:$admin_port" \
  --data-dir "$data_dir" \
  2> "$logs/herald.log" & pids+=($!)
if ! $check; then
  # Show each subscriber's output as it arrives, labelled.
  tail -n +1 -F "$logs/orders.log" 2>/dev/null | sed -u 's/^/[orders display]   /' &
  tail -n +1 -F "$logs/payments.log" 2>/dev/null | sed -u 's/^/[payments display] /' &
fi

broker="http://127.0.0.1:$port/default/default"
for _ in $(seq 100); do
  "$HERALD_BIN" send --to "$broker" --type dev.herald.ping --source /quickstart >/dev/null 2>&1 && break
  sleep 0.1
done

"$HERALD_BIN" send --to "$broker" --type com.example.order.created --source /shop \
  --id order-1 --data '{"order": 1, "amount": 42}'
"$HERALD_BIN" send --to "$broker" --type com.example.payment.received --source /bank \
  --id payment-1 --data '{"order": 1, "paid": true}'
"$HERALD_BIN" send --to "$broker" --type com.example.payment.received --source /test \
  --id payment-test --data '{"ignored": true}'

if $check; then
  for _ in $(seq 100); do
    if grep -q "id: order-1" "$logs/orders.log" && grep -q "id: payment-1" "$logs/payments.log"; then
      if grep -q "payment-test" "$logs/payments.log" "$logs/orders.log"; then
        echo "quickstart check FAILED: a filtered-out event was delivered" >&2; exit 1
      fi
      sed 's/^/[orders display]   /' "$logs/orders.log"
      sed 's/^/[payments display] /' "$logs/payments.log"
      echo "quickstart check passed: both triggers delivered their event"; exit 0
    fi
    sleep 0.1
  done
  echo "quickstart check FAILED: events did not reach the displays; herald log:" >&2
  cat "$logs/herald.log" >&2
  exit 1
fi

echo
echo "Herald is serving $broker. Send more events from another terminal, e.g.:"
echo "  $HERALD_BIN send --to $broker --type com.example.order.created --data '{\"order\": 2}'"
echo "Ctrl-C stops Herald and the displays."
wait "${pids[2]}"
