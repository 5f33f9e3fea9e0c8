#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 60 s each): fuzz/run.sh [SECONDS]
# Needs cargo-fuzz (installed here if missing). On a stable toolchain the sanitizer flags are
# enabled with RUSTC_BOOTSTRAP=1. Crashes land in fuzz/artifacts/<target>/; turn each into a
# named regression test in tests/regressions.rs.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
if ! rustc --version | grep -q nightly; then
  export RUSTC_BOOTSTRAP=1
fi
mkdir -p corpus/model_json corpus/partition corpus/npy
cp ../assets/networks/cnn_1x8x8.json corpus/model_json/ 2>/dev/null || true
cp ../assets/networks/cnn_1x8x8.json corpus/partition/ 2>/dev/null || true
cp ../assets/anchors/*.npy corpus/npy/ 2>/dev/null || true
for target in model_json npy partition; do
  echo "== $target ($seconds s)"
  cargo fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=20
done
