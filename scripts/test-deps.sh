#!/usr/bin/env bash
# Installs and starts what the test suite needs, once per machine; quick when all is there.
# - cmake and curl headers: rdkafka builds librdkafka with cmake and needs the curl headers
#   (rust-rdkafka#829);
# - nats-server with JetStream on 127.0.0.1:4222, for the NATS channel tests;
# - kubectl (Debian's kubernetes-client), for the `kubectl kustomize deploy/` test;
# - tansu, a Kafka-API broker the Kafka tests start privately (cargo install, ~12 minutes);
# - chromium and chromedriver (Debian's chromium-driver), for the web UI's browser test.
set -euo pipefail

bash "$(dirname "$0")/build-deps.sh"
if ! command -v nats-server >/dev/null; then
  echo "== installing nats-server"
  apt-get update -qq
  apt-get install -y -qq nats-server
fi

if ! command -v kubectl >/dev/null; then
  echo "== installing kubectl (kubernetes-client)"
  apt-get update -qq
  apt-get install -y -qq kubernetes-client
fi

if [ ! -x "$HOME/.cargo/bin/tansu" ]; then
  echo "== installing tansu (once)"
  CARGO_TARGET_DIR="$HOME/.cache/herald/tansu-build" \
    cargo install tansu --locked --features dynostore,libsql
fi

nats_up() { (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; }
if ! nats_up; then
  echo "== starting nats-server -js"
  mkdir -p "$HOME/.cache/herald/nats"
  nats-server -js -a 127.0.0.1 -p 4222 -sd "$HOME/.cache/herald/nats" \
    >"$HOME/.cache/herald/nats.log" 2>&1 &
  for _ in $(seq 50); do nats_up && break; sleep 0.2; done
  nats_up || { echo "nats-server did not start; see $HOME/.cache/herald/nats.log" >&2; exit 1; }
fi

# The web UI's browser test drives Debian's chromium through chromedriver.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "== installing chromium and chromium-driver"
  apt-get update -qq
  apt-get install -y -qq chromium chromium-driver
fi
