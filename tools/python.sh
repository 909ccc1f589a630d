#!/usr/bin/env bash
# The Python package: builds crates/slim-py into a wheel with maturin, installs it into the
# project's venv (.deps/venv, from tools/setup.sh) and runs its pytest tests against
# onnxruntime, the exported test data and the `slim-run` binary (built here too).
#
#   tools/python.sh                 # build (dev profile), install, test
#   PY_PROFILE=release tools/python.sh
#   tools/python.sh -k gil          # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=/dev/null
source .deps/env.sh
profile=${PY_PROFILE:-dev}
all_features=$(tools/features.sh)
features=$(tr ',' '\n' <<<"$all_features" | sed -n 's#^slim-py/##p' | paste -sd, -)
wheels=target/wheels
rm -f "$wheels"/slim_runtime-*.whl
echo "== maturin build (profile $profile, features: ${features:-none})"
"$(dirname "$SLIM_PYTHON")/maturin" build --quiet --manifest-path crates/slim-py/Cargo.toml \
  --profile "$profile" ${features:+--features "$features"} --interpreter "$SLIM_PYTHON" -o "$wheels"
"$SLIM_PYTHON" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps \
  "$wheels"/slim_runtime-*.whl
# With the workspace's features and the test profile, as tools/test.sh's `cargo test`: its
# slim-run is reused instead of compiling the workspace's crates again at opt-level 0.
echo "== cargo build slim-run (the Rust API the tests compare with)"
cargo build --quiet --workspace --features "$all_features" --profile test --bin slim-run
echo "== pytest"
SLIM_RUN="$PWD/target/debug/slim-run" "$SLIM_PYTHON" -m pytest -q crates/slim-py/tests "$@"
