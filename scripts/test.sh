#!/usr/bin/env bash
# The whole test suite: installs what the tests need (once per machine), then runs every
# test of every crate with every feature (the Kafka channel included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-deps.sh
# The CESQL TCK, shared beside the checkout (CI sets this too).
if [ -z "${CESQL_TCK_DIR:-}" ] && [ -d ../shared/cesql-tck ]; then
  export CESQL_TCK_DIR="$(cd ../shared/cesql-tck && pwd)"
fi
export TANSU_BIN="${TANSU_BIN:-$HOME/.cargo/bin/tansu}"
cargo test --workspace --locked --all-features
