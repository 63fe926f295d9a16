#!/usr/bin/env bash
# Runs each cargo-fuzz target of fuzz/ (ingress, loader, codecs) for a bounded time; not part
# of CI. Needs cargo-fuzz (`cargo install cargo-fuzz --locked`); without a nightly toolchain,
# RUSTC_BOOTSTRAP=1 on stable enables the sanitizer flags cargo-fuzz passes.
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
# Inputs that add coverage go to fuzz/corpus/TARGET/ (kept out of git; fuzz/seeds/TARGET/ are
# the committed starting points). Findings land in fuzz/artifacts/TARGET/; reproduce one with
#   cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET artifacts/TARGET/crash-...
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
# The fuzz crate is its own workspace; start from the workspace's lock so it fuzzes the same
# dependency versions the tests run (cargo only adds libfuzzer-sys and drops what is unused).
cp ../Cargo.lock Cargo.lock
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "== $t: ${seconds}s"
  cargo "${toolchain[@]}" fuzz run "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$seconds" -max_len=65536
done
