#!/usr/bin/env bash
# Builds slim-train for a CUDA machine: the `cuda` feature links libtorch_cuda, with
# torch's nvidia-* libraries (installed once by tools/full_torch.sh) resolved at link
# time, and compiles slim-dist's NCCL backend against their headers. The binary goes to target/cuda/release/slim-train (a separate target folder, so
# the CPU build stays warm). On the GPU machine run it with LD_LIBRARY_PATH on that
# machine's torch 2.11.0 lib folder (and its nvidia-* libraries).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .deps/env.sh ] || tools/setup.sh
# shellcheck source=/dev/null
source .deps/env.sh
# shellcheck source=tools/full_torch.sh
source tools/full_torch.sh
full_torch_headers
SLIM_CUDA_LIBS="$FULL_TORCH_LIBS" SLIM_CUDA_INCLUDE="$FULL_TORCH_INCLUDES" \
  cargo build --release -p slim-train --features cuda --target-dir target/cuda "$@"
bin=target/cuda/release/slim-train
if readelf -d "$bin" | grep -q 'NEEDED.*libtorch_cuda.so'; then
  echo "built $bin (links libtorch_cuda.so)"
else
  echo "build_cuda.sh: $bin does not link libtorch_cuda.so" >&2
  exit 1
fi
