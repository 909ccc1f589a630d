#!/usr/bin/env bash
# Prints the cargo feature list that tools/test.sh builds and tests with: every feature of
# every workspace crate except slim-train's `cuda` and slim-dist's `nccl` (they link
# libtorch_cuda and compile against CUDA's headers: tools/build_cuda.sh). The CI quickstart builds with the same list, so
# it reuses the test build instead of compiling again. Needs .deps/env.sh sourced.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo metadata --no-deps --format-version 1 | "$SLIM_PYTHON" -c '
import json, sys
m = json.load(sys.stdin)
print(",".join(p["name"] + "/" + f for p in m["packages"] for f in p["features"]
               if f != "default" and (p["name"], f) not in {("slim-train", "cuda"), ("slim-dist", "nccl")}))'
