#!/usr/bin/env bash
# The test command (README, .ci/run): installs whatever is missing (tools/setup.sh), then
# formatting, lints and every test of every crate with every feature except slim-train's
# `cuda` (it links libtorch_cuda, which needs CUDA's libraries: tools/build_cuda.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
# shellcheck source=/dev/null
source .deps/env.sh
export CARGO_TERM_COLOR=never
features=$(tools/features.sh)
echo "== features: $features"
echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --features "$features" -- -D warnings
echo "== cargo test"
cargo test --workspace --features "$features"
echo "== the Python package (tools/python.sh)"
tools/python.sh
