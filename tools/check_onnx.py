#!/usr/bin/env python3
"""Checks exported ONNX graphs.

Usage: check_onnx.py DIR...

For every model.onnx below each DIR: runs onnx.checker.check_model(full_check=True) and,
when onnxruntime is installed and the graph has a test_data_set_0 folder beside it, runs
the graph on input_*.pb and compares with output_*.pb: every element must be within
ATOL = 1e-4 of the stored value. Prints one line per graph ("ok ..." or "FAIL ...");
exits 1 on any failure or when no graph is found.
"""

import pathlib
import sys

import numpy as np
import onnx
from onnx import numpy_helper

try:
    import onnxruntime as ort
except ImportError:  # the checker alone still runs
    ort = None

ATOL = 1e-4


def load_tensors(folder, prefix):
    paths = sorted(folder.glob(f"{prefix}_*.pb"), key=lambda p: int(p.stem.split("_")[1]))
    tensors = []
    for p in paths:
        t = onnx.TensorProto()
        t.ParseFromString(p.read_bytes())
        tensors.append(t)
    return tensors


def check(model_path):
    """Returns a one-line verdict; raises on failure."""
    onnx.checker.check_model(str(model_path), full_check=True)
    data = model_path.parent / "test_data_set_0"
    if ort is None:
        return "checker (onnxruntime not installed)"
    if not data.is_dir():
        return "checker (no test data)"
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    inputs = load_tensors(data, "input")
    expected = load_tensors(data, "output")
    names = [i.name for i in session.get_inputs()]
    feed = {(t.name or names[k]): numpy_helper.to_array(t) for k, t in enumerate(inputs)}
    outputs = session.run(None, feed)
    if len(outputs) != len(expected):
        raise AssertionError(f"{len(outputs)} outputs, test data has {len(expected)}")
    worst = 0.0
    for got, want_proto, meta in zip(outputs, expected, session.get_outputs()):
        want = numpy_helper.to_array(want_proto)
        if got.shape != want.shape:
            raise AssertionError(f"{meta.name}: shape {got.shape}, expected {want.shape}")
        got, want = got.astype(np.float64), want.astype(np.float64)
        diff = np.abs(got - want)
        if not np.all(diff <= ATOL):  # also catches NaN
            i = tuple(int(k) for k in np.unravel_index(np.nanargmax(diff), diff.shape))
            raise AssertionError(
                f"{meta.name}{list(i)}: got {got[i]:.6g}, expected {want[i]:.6g} (atol {ATOL})"
            )
        worst = max(worst, float(np.max(diff, initial=0.0)))
    return f"checker, onnxruntime max |diff| {worst:.2e}"


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    failed = 0
    found = 0
    for d in argv:
        root = pathlib.Path(d)
        if not root.is_dir():
            print(f"FAIL {root}: not a folder")
            failed += 1
            continue
        for model in sorted(root.rglob("model.onnx")):
            found += 1
            try:
                print(f"ok   {model}: {check(model)}")
            except Exception as e:  # report every graph, then fail
                print(f"FAIL {model}: {type(e).__name__}: {e}")
                failed += 1
    if found == 0:
        print("FAIL: no model.onnx found")
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
