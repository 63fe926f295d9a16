#!/usr/bin/env bash
# The sources example: `herald serve` on examples/sources runs a PingSource (every 5 s), a
# GitHubSource (this script delivers one signed push webhook to it) and a ContainerSource
# (a shell loop calling `herald send`), all into the Broker `default`; a Trigger per source
# sends its events to an event-display. Keeps running (Ctrl-C stops everything).
# With --check it exits once every display has shown its source's event (used by the tests).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=../setup.sh
source examples/setup.sh "$@"
# The ContainerSource's command runs `herald` through this (an absolute path: it is started
# by `herald serve`, which passes its environment on).
HERALD_BIN="$(cd "$(dirname "$HERALD_BIN")" && pwd)/$(basename "$HERALD_BIN")"
export HERALD_BIN

"$HERALD_BIN" display --port 9021 > "$logs/ping.log" 2>&1 & pids+=($!)
"$HERALD_BIN" display --port 9022 > "$logs/github.log" 2>&1 & pids+=($!)
"$HERALD_BIN" display --port 9023 > "$logs/container.log" 2>&1 & pids+=($!)
"$HERALD_BIN" serve --config examples/sources --listen "127.0.0.1:$port" --admin-addr "127.0.0.1:$admin_port" \
  --data-dir "$logs/data" \
  2> "$logs/herald.log" & pids+=($!)
serve_pid="${pids[3]}"
if ! $check; then
  tail -n +1 -F "$logs/ping.log" 2>/dev/null | sed -u 's/^/[ping display]      /' &
  tail -n +1 -F "$logs/github.log" 2>/dev/null | sed -u 's/^/[github display]    /' &
  tail -n +1 -F "$logs/container.log" 2>/dev/null | sed -u 's/^/[container display] /' &
fi

# GitHub's push webhook, signed the way GitHub signs it (HMAC-SHA256 under the secretToken).
hook="http://127.0.0.1:$port/sources/github/default/repo"
body='{"ref":"refs/heads/main","before":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","after":"0000000000000000000000000000000000000000","compare":"https://github.com/Codertocat/Hello-World/compare/6113728f27ae...000000000000","repository":{"name":"Hello-World","full_name":"Codertocat/Hello-World","owner":{"login":"Codertocat"}},"sender":{"login":"Codertocat"}}'
signature="sha256=$(printf '%s' "$body" | openssl dgst -sha256 -hmac example-secret | sed 's/^.* //')"
for _ in $(seq 150); do
  code="$(curl -s -o /dev/null -w '%{http_code}' -X POST "$hook" -H 'content-type: application/json' \
    -H 'x-github-event: push' -H 'x-github-delivery: push-1' -H "x-hub-signature-256: $signature" \
    --data "$body" || true)"
  [ "$code" = 202 ] && break
  sleep 0.2
done

if $check; then
  for _ in $(seq 300); do
    if grep -q "type: dev.knative.sources.ping" "$logs/ping.log" \
      && grep -q "id: push-1" "$logs/github.log" \
      && grep -q "origin: container" "$logs/container.log"; then
      sed 's/^/[ping display]      /' "$logs/ping.log"
      sed 's/^/[github display]    /' "$logs/github.log"
      sed 's/^/[container display] /' "$logs/container.log"
      echo "sources check passed: every source's events reached its display"; exit 0
    fi
    kill -0 "$serve_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "sources check FAILED; herald log:" >&2
  cat "$logs/herald.log" >&2
  exit 1
fi

echo
echo "Herald runs the sources into http://127.0.0.1:$port/default/default. Ticks every 5 s;"
echo "deliver another webhook with: curl -X POST $hook -H 'x-github-event: push' -H 'x-github-delivery: push-2' \\"
echo "  -H \"x-hub-signature-256: $signature\" -H 'content-type: application/json' --data '$body'"
echo "Ctrl-C stops Herald and the displays."
wait "$serve_pid"
