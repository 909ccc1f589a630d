"""The Python binding's per-call cost: `Model.run` on NumPy arrays against the C API's
`slim_model_run` called through ctypes in the same process, per width at batch 1 and 32,
on the Fashion-MNIST model, in interleaved rounds (each round: CALLS calls of each, in
alternating order); a figure is the median over rounds of the mean time per call.

    cargo build --release -p slim-capi        # target/release/libslim.so
    PY_PROFILE=release tools/python.sh        # the wheel, release build
    .deps/venv/bin/python crates/slim-py/bench/overhead.py [LIBSLIM] [ROUNDS]

The C API itself costs what calling slim-runtime from Rust costs, within 1%
(`cargo bench -p slim-capi --bench overhead`, interleaved in one process), so the ratio
here is the binding's cost over Rust's, plus ctypes' own microsecond or so per call."""

import ctypes
import sys
import time
from pathlib import Path

import numpy as np

import slim_runtime

ROOT = Path(__file__).resolve().parents[3]
MODEL = ROOT / "models" / "fashion-mnist-resnet20"
CALLS = 20


def c_api(path):
    lib = ctypes.CDLL(str(path))
    lib.slim_last_error.restype = ctypes.c_char_p
    handle = ctypes.c_void_p()
    status = lib.slim_model_open(str(MODEL).encode(), None, ctypes.c_bool(False), 0,
                                 ctypes.byref(handle))
    assert status == 0, lib.slim_last_error()
    return lib, handle


def mean_ms(f):
    t = time.perf_counter()
    for _ in range(CALLS):
        f()
    return (time.perf_counter() - t) * 1e3 / CALLS


def main():
    lib_path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "target/release/libslim.so"
    if not lib_path.exists():
        lib_path = lib_path.parent / "deps" / lib_path.name
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    lib, handle = c_api(lib_path)
    model = slim_runtime.Model(str(MODEL))
    c, h, w = model.input_shape
    costs = model.costs()
    print("| width | batch | C API ms/call | Python ms/call | Python / C API |")
    print("|---|---|---|---|---|")
    for cost in (costs[0], costs[-1]):
        width = cost["width"]
        for batch in (1, 32):
            n = batch * c * h * w
            x = ((np.arange(n) % 97) / 48.0 - 1.0).astype(np.float32).reshape(batch, c, h, w)
            emb = np.empty((batch, cost["embedding_dim"]), np.float32)
            logits = np.empty((batch, len(model.class_names)), np.float32)
            ptr = lambda a: a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            args = (handle, ctypes.c_double(width), ptr(x), ctypes.c_size_t(batch),
                    ptr(emb), ctypes.c_size_t(emb.size), ptr(logits), ctypes.c_size_t(logits.size))

            def via_c():
                assert lib.slim_model_run(*args) == 0

            def via_python():
                model.run(x, width)

            mean_ms(via_c)  # warm up, and load the width
            mean_ms(via_python)
            times = {via_c: [], via_python: []}
            for r in range(rounds):
                for f in (via_c, via_python) if r % 2 == 0 else (via_python, via_c):
                    times[f].append(mean_ms(f))
            capi, py = (float(np.median(times[f])) for f in (via_c, via_python))
            print(f"| {width} | {batch} | {capi:.4f} | {py:.4f} | {py / capi:.4f} |")
    lib.slim_model_free(handle)


if __name__ == "__main__":
    main()
