#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 60 s each): fuzz/run.sh [SECONDS] [TARGETS...]
# With RUNS=N in the environment, each target runs N executions instead (no time bound).
# Needs cargo-fuzz (installed here if missing). On a stable toolchain the sanitizer flags are
# enabled with RUSTC_BOOTSTRAP=1. Crashes land in fuzz/artifacts/<target>/; turn each into a
# named regression test in tests/regressions.rs.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
shift || true
targets="${*:-model_json npy onnx partition}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
if ! rustc --version | grep -q nightly; then
  export RUSTC_BOOTSTRAP=1
fi
mkdir -p corpus/model_json corpus/partition corpus/npy corpus/onnx
cp ../assets/onnx/*_ts.onnx ../assets/onnx/ops/*_ts*.onnx corpus/onnx/ 2>/dev/null || true
cp ../assets/networks/cnn_1x8x8.json corpus/model_json/ 2>/dev/null || true
# Small seeds for the partition target: each run partitions and self-checks.
echo '{"format":"tessera-model/1","input_shape":[2],"layers":[{"op":"linear","weight":[[1,0.5],[-0.3,1],[0.7,-0.2]],"bias":[0.1,-0.2,0.3]},{"op":"relu"},{"op":"linear","weight":[[1,-1,0.5],[0.2,0.4,-1]]},{"op":"maxout","pool_size":2}]}' > corpus/partition/mlp.json
echo '{"format":"tessera-model/1","input_shape":[1,3,3],"layers":[{"op":"conv2d","weight":[[[[1,-1],[0.5,0.2]]]],"bias":[0.1]},{"op":"abs"},{"op":"max_pool2d","kernel_size":2},{"op":"flatten"}]}' > corpus/partition/cnn.json
cp ../assets/anchors/*.npy corpus/npy/ 2>/dev/null || true
for target in $targets; do
  if [ -n "${RUNS:-}" ]; then
    echo "== $target ($RUNS runs)"
    cargo fuzz run "$target" "corpus/$target" -- -runs="$RUNS" -rss_limit_mb=4096 -timeout=20
  else
    echo "== $target ($seconds s)"
    cargo fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=20
  fi
done
