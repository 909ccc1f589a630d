# Sourced (not run): makes the full torch 2.11.0 install available next to the project
# venv's libtorch-only wheel, for what needs CUDA's libraries: `import torch` (the PyTorch
# reference of tools/bench_step.sh) and linking libtorch_cuda (tools/build_cuda.sh).
# torch's own pinned requirements (Linux, no extras; the nvidia-* wheels, about 2.5 GB),
# less triton, are installed once with pip into the ignored folder .deps/torch-full.
# Defines FULL_TORCH_PYTHONPATH and FULL_TORCH_LIBS (the nvidia-* lib folders, ':'-joined),
# and full_torch_headers, which adds the CUDA headers that compiling against c10d's NCCL
# backend needs and the wheels above leave out (the toolkit's `crt` and `cccl` parts, at
# the versions its cuda_toolkit metadata pins) and defines FULL_TORCH_INCLUDES (the
# nvidia-* include folders, ':'-joined).
# Needs .deps/env.sh sourced first (SLIM_PYTHON).

FULL_TORCH_PYTHONPATH="$PWD/.deps/torch-full"
full_torch_libs() {
  FULL_TORCH_LIBS=$(find "$FULL_TORCH_PYTHONPATH/nvidia" -mindepth 2 -maxdepth 2 -type d -name lib 2>/dev/null | sort | paste -sd: - || true)
}
full_torch_imports() {
  PYTHONPATH="$FULL_TORCH_PYTHONPATH" LD_LIBRARY_PATH="$FULL_TORCH_LIBS:$LD_LIBRARY_PATH" "$SLIM_PYTHON" -c 'import torch' 2>/dev/null
}
full_torch_libs
if ! full_torch_imports; then
  echo "== installing torch's CUDA libraries into .deps/torch-full (once, about 2.5 GB)" >&2
  mapfile -t full_torch_reqs < <("$SLIM_PYTHON" - <<'PY'
import importlib.metadata as md
for r in md.requires("torch") or []:
    spec, _, marker = r.partition(";")
    name = spec.split("[")[0].split("=")[0].split("<")[0].split(">")[0].strip().lower()
    if "extra ==" in marker or name in ("triton", "setuptools", "typing-extensions", "cuda-bindings"):
        continue
    print(spec.strip().replace(" ", ""))
PY
)
  # (pip's complaints that torch's other requirements are not in --target are noise.)
  "$SLIM_PYTHON" -m pip install --quiet --disable-pip-version-check --target "$FULL_TORCH_PYTHONPATH" \
    "${full_torch_reqs[@]}" 2>&1 | grep -v "requires\|dependency" >&2 || true
  full_torch_libs
  full_torch_imports || { echo "full_torch.sh: torch still does not import" >&2; return 1; }
fi

full_torch_headers() {
  local inc="$FULL_TORCH_PYTHONPATH/nvidia/cu13/include"
  if [ ! -e "$inc/crt/host_config.h" ] || [ ! -e "$inc/nv/target" ]; then
    local meta pins tmp
    meta=$(ls -d "$FULL_TORCH_PYTHONPATH"/cuda_toolkit-*.dist-info | head -1)/METADATA
    mapfile -t pins < <(grep -oE 'nvidia-cuda-(crt|cccl)==[0-9.*]+' "$meta" | sort -u)
    echo "== installing CUDA's crt and cccl headers into .deps/torch-full (${pins[*]})" >&2
    # Into a folder of their own, then merged: pip --target would replace the whole
    # nvidia/ folder the other wheels share.
    tmp=$(mktemp -d)
    "$SLIM_PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps \
      --target "$tmp" "${pins[@]}"
    cp -a "$tmp/nvidia/." "$FULL_TORCH_PYTHONPATH/nvidia/"
    cp -a "$tmp"/*.dist-info "$FULL_TORCH_PYTHONPATH/"
    rm -rf "$tmp"
  fi
  FULL_TORCH_INCLUDES=$(find "$FULL_TORCH_PYTHONPATH/nvidia" -mindepth 2 -maxdepth 3 -type d -name include 2>/dev/null | sort | paste -sd: - || true)
}
