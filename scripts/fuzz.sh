#!/usr/bin/env bash
# Runs each cargo-fuzz target of fuzz/ (ingress, loader, codecs) for a bounded time; not part
# of CI. Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`); without nightly,
# RUSTC_BOOTSTRAP=1 on stable enables the sanitizer flags cargo-fuzz passes.
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
# Findings land in fuzz/artifacts/TARGET/; reproduce one with
#   cd fuzz && cargo +nightly fuzz run TARGET artifacts/TARGET/crash-...
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-120}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(ingress loader codecs)
toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
else
  export RUSTC_BOOTSTRAP=1
fi
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "== $t: ${seconds}s"
  cargo "${toolchain[@]}" fuzz run "$t" "corpus/$t" -- -max_total_time="$seconds" -max_len=65536
done
