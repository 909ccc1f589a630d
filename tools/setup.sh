#!/usr/bin/env bash
# One-command setup: installs everything the workspace needs into the ignored folder
# `.deps/` (libtorch for tch, libonnxruntime for ort, the `onnx` checker) plus the Debian
# package `dataset-fashion-mnist`, then writes `.deps/env.sh`, which every other command
# sources. Idempotent: a second run only checks what is already there.
#
#   tools/setup.sh            # install, then nothing else
#   source .deps/env.sh       # LIBTORCH, ORT_DYLIB_PATH, LD_LIBRARY_PATH, ...
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
deps="$root/.deps"
venv="$deps/venv"
TORCH_VERSION=2.11.0          # tch 0.24.0 is built against exactly this libtorch
ORT_VERSION=1.31.1            # ort 2.0.0-rc.15 (load-dynamic) loads this libonnxruntime
ONNX_VERSION=1.20.1           # only for onnx.checker in the conformance check

say() { printf '\033[1msetup:\033[0m %s\n' "$*"; }

mkdir -p "$deps"

# 1. Fashion-MNIST (IDX files under /usr/share/datasets/fashion-mnist/).
if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] &&
   [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte ]; then
  say "installing dataset-fashion-mnist (Debian)"
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

# 2. A project-local Python venv holding the torch wheel (libtorch) and onnxruntime.
if [ ! -x "$venv/bin/python" ]; then
  say "creating $venv"
  python3 -m venv "$venv"
fi
py="$venv/bin/python"
have() { "$py" -m pip show "$1" 2>/dev/null | grep -q "^Version: $2\$"; }
pipi() { "$py" -m pip install -q --disable-pip-version-check "$@"; }
if ! have torch "$TORCH_VERSION"; then
  say "installing torch $TORCH_VERSION (libtorch, CPU use; about 540 MB)"
  # --no-deps: the CUDA wheels are only needed by libtorch_cuda, which CPU builds do
  # not link; libtorch_cpu still needs the CUDA runtime and CUPTI libraries.
  pipi --no-deps "torch==$TORCH_VERSION" nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
fi
if ! have onnxruntime "$ORT_VERSION"; then
  say "installing onnxruntime $ORT_VERSION"
  pipi --no-deps "onnxruntime==$ORT_VERSION"
fi
if ! have onnx "$ONNX_VERSION"; then
  say "installing onnx $ONNX_VERSION (checker) and numpy"
  pipi "onnx==$ONNX_VERSION" numpy
fi

site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
libtorch="$site/torch"
ort_lib="$site/onnxruntime/capi/libonnxruntime.so.$ORT_VERSION"
[ -f "$libtorch/lib/libtorch_cpu.so" ] || { echo "setup: $libtorch/lib/libtorch_cpu.so missing" >&2; exit 1; }
[ -f "$ort_lib" ] || { echo "setup: $ort_lib missing" >&2; exit 1; }

# 3. The env file every other command sources.
cat >"$deps/env.sh" <<ENV
# Written by tools/setup.sh; source it before cargo.
export LIBTORCH="$libtorch"
export ORT_DYLIB_PATH="$ort_lib"
export ORT_DISABLE_TELEMETRY=1
export LD_LIBRARY_PATH="$libtorch/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export SLIM_PYTHON="$py"
export FASHION_MNIST_DIR=/usr/share/datasets/fashion-mnist
ENV
say "ready: source $deps/env.sh"
