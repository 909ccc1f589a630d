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
ONNX_VERSION=1.20.1           # onnx.checker in the conformance check; test data in pytest
MATURIN_VERSION=1.16.0        # builds the Python package (crates/slim-py)
PYTEST_VERSION=9.2.0

if [ -t 1 ]; then
  say() { printf '\033[1msetup:\033[0m %s\n' "$*"; }
else
  say() { printf 'setup: %s\n' "$*"; }
fi

mkdir -p "$deps"

# 1. Debian packages: Fashion-MNIST (IDX files under /usr/share/datasets/fashion-mnist/),
#    a C compiler, make and valgrind for the C API's tests (crates/slim-capi), and Gloo's
#    headers for slim-dist (the torch wheel ships Gloo's symbols but not its headers).
debs=()
if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] &&
   [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte ]; then
  debs+=(dataset-fashion-mnist)
fi
command -v cc >/dev/null || debs+=(gcc libc6-dev)
command -v valgrind >/dev/null || debs+=(valgrind)
command -v make >/dev/null || debs+=(make)
[ -e /usr/include/gloo/algorithm.h ] || debs+=(libgloo-dev)
if [ ${#debs[@]} -gt 0 ]; then
  say "installing ${debs[*]} (Debian)"
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${debs[@]}" >/dev/null
fi

# 2. A project-local Python venv holding the torch wheel (libtorch) and onnxruntime.
if [ ! -x "$venv/bin/python" ]; then
  say "creating $venv"
  python3 -m venv "$venv"
fi
py="$venv/bin/python"
# (sed reads all of pip's output: `grep -q` would stop early, pip would die of a broken pipe
# and, under pipefail, every run would reinstall everything.)
have() { [ "$("$py" -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p')" = "$2" ]; }
# pip, quietly. torch and onnxruntime are installed without their dependencies on purpose
# (below), so every later install makes pip's resolver list those as "not installed"
# (nvidia-*, triton, sympy, flatbuffers, ...). Those lines are expected and summed up in
# one; anything else pip says is shown, and a failed install shows everything.
pipi() {
  local log
  log=$(mktemp)
  if ! PIP_ROOT_USER_ACTION=ignore "$py" -m pip install -q --disable-pip-version-check "$@" \
      >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    return 1
  fi
  local missing
  local expected='^(torch|onnxruntime) [^ ]+ requires .*, which is not installed\.$'
  missing=$(grep -cE "$expected" "$log" || true)
  grep -vE "^ERROR: pip's dependency resolver does not currently take into account" "$log" |
    grep -vE "$expected" || true
  if [ "$missing" -gt 0 ]; then
    say "(pip notes $missing dependencies of torch and onnxruntime as not installed:" \
        "on purpose, only their libraries are used)"
  fi
  rm -f "$log"
}
if ! have torch "$TORCH_VERSION"; then
  say "installing torch $TORCH_VERSION for libtorch, CPU use, about 540 MB"
  say "  without its dependencies on purpose: the CUDA wheels (about 2.5 GB) are needed only"
  say "  by libtorch_cuda, which CPU builds do not link (GPU builds: tools/build_cuda.sh);"
  say "  libtorch_cpu still needs the CUDA runtime and CUPTI libraries, installed here"
  pipi --no-deps "torch==$TORCH_VERSION" nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
fi
if ! have onnxruntime "$ORT_VERSION"; then
  say "installing onnxruntime $ORT_VERSION for libonnxruntime (the ort crate loads it), without"
  say "  its Python dependencies on purpose"
  pipi --no-deps "onnxruntime==$ORT_VERSION"
fi
if ! have onnx "$ONNX_VERSION"; then
  say "installing onnx $ONNX_VERSION (checker) and numpy"
  pipi "onnx==$ONNX_VERSION" numpy
fi
if ! have maturin "$MATURIN_VERSION" || ! have pytest "$PYTEST_VERSION"; then
  say "installing maturin $MATURIN_VERSION and pytest $PYTEST_VERSION (the Python package)"
  pipi "maturin==$MATURIN_VERSION" "pytest==$PYTEST_VERSION"
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
export PYO3_PYTHON="$py"
export FASHION_MNIST_DIR=/usr/share/datasets/fashion-mnist
ENV
say "ready: source $deps/env.sh"
