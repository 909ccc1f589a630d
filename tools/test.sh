#!/usr/bin/env bash
# The test command (README, .ci/run): installs whatever is missing (tools/setup.sh), then
# formatting, lints and every test of every crate with every backend feature.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
# shellcheck source=/dev/null
source .deps/env.sh
export CARGO_TERM_COLOR=never
echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings
echo "== cargo test"
cargo test --workspace --all-features
