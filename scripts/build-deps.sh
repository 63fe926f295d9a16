#!/usr/bin/env bash
# Installs what building the `herald` binary needs, once per machine; quick when all is there.
# The Kafka channel is compiled in by default: rdkafka builds librdkafka with cmake and needs
# the curl headers (rust-rdkafka#829).
set -euo pipefail
missing=()
command -v cmake >/dev/null || missing+=(cmake)
dpkg -s libcurl4-openssl-dev >/dev/null 2>&1 || missing+=(libcurl4-openssl-dev)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} (to build librdkafka for the Kafka channel)"
  sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}"
fi
