"""The Python package against its references: onnxruntime (Python) on the same graphs and
inputs, the exported test data (PyTorch at export time), and the Rust API through the
`slim-run` binary; the GIL released while a graph runs; each bad input a clear exception.

Run by tools/python.sh (which builds and installs the wheel first)."""

import json
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime
import pytest

import slim_runtime

from support import (MODEL, ROOT, WIDTHS, fashion_mnist_images, fashion_mnist_pngs, slim_run,
                     write_png)


@pytest.fixture(scope="module")
def model():
    return slim_runtime.Model(str(MODEL))


@pytest.fixture(scope="module")
def pngs(tmp_path_factory):
    return fashion_mnist_pngs(tmp_path_factory.mktemp("pngs"), 8)


def exported_test_data(width):
    """The input and outputs PyTorch computed at export time for `width`'s graph."""
    folder = MODEL / f"width-w{round(width * 1000)}" / "test_data_set_0"
    load = lambda name: onnx.numpy_helper.to_array(onnx.load_tensor(str(folder / name)))
    return load("input_0.pb"), load("output_0.pb"), load("output_1.pb")


def test_widths_costs_and_classes(model):
    assert model.widths == WIDTHS
    costs = model.costs()
    assert [c["width"] for c in costs] == WIDTHS
    macs = [c["macs"] for c in costs]
    assert macs == sorted(macs, reverse=True) and macs[-1] > 0
    assert [c["embedding_dim"] for c in costs] == [64, 48, 32, 16]
    assert model.input_shape == (1, 28, 28)
    assert len(model.class_names) == 10 and model.class_names[0] == "T-shirt/top"


@pytest.mark.parametrize("width", WIDTHS)
def test_run_matches_onnxruntime_and_the_export(model, width):
    x, embedding_ref, logits_ref = exported_test_data(width)
    embedding, logits = model.run(x, width)
    assert embedding.shape == embedding_ref.shape and logits.shape == logits_ref.shape
    assert embedding.dtype == np.float32 and logits.dtype == np.float32

    graph = MODEL / f"width-w{round(width * 1000)}" / "model.onnx"
    session = onnxruntime.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    ort_embedding, ort_logits = session.run(["embedding", "logits"], {"image": x})
    np.testing.assert_allclose(embedding, ort_embedding, rtol=0, atol=1e-5)
    np.testing.assert_allclose(logits, ort_logits, rtol=0, atol=1e-5)
    # PyTorch at export time: another engine, so a looser bound.
    np.testing.assert_allclose(logits, logits_ref, rtol=0, atol=1e-4)


def test_the_ort_backend_answers_as_tract(model):
    """tools/python.sh builds the wheel with the `ort` feature (ONNX Runtime from
    ORT_DYLIB_PATH, which .deps/env.sh sets)."""
    ort_model = slim_runtime.Model(str(MODEL), backend="ort", threads=1)
    assert "ort-cpu" in repr(ort_model)
    x, _, _ = exported_test_data(0.5)
    for width in (1.0, 0.5):
        np.testing.assert_allclose(ort_model.run(x, width)[1], model.run(x, width)[1],
                                   rtol=0, atol=1e-5)


def test_input_is_read_in_place_and_outputs_own_their_buffers(model):
    x, _, _ = exported_test_data(1.0)
    assert x.flags["C_CONTIGUOUS"] and x.dtype == np.float32
    before = x.copy()
    embedding, logits = model.run(x, 1.0)
    np.testing.assert_array_equal(x, before)  # read, not written
    assert embedding.flags["WRITEABLE"] and embedding.flags["C_CONTIGUOUS"]
    # A float64 or strided batch is converted once and answers the same.
    _, logits64 = model.run(x.astype(np.float64), 1.0)
    np.testing.assert_array_equal(logits64, logits)
    strided_x = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    assert not strided_x.flags["C_CONTIGUOUS"]
    _, strided = model.run(strided_x, 1.0)
    np.testing.assert_array_equal(strided, logits)
    # One [C, H, W] image is a batch of one.
    _, single = model.run(x[0], 1.0)
    np.testing.assert_allclose(single, logits[:1], rtol=0, atol=1e-5)


def test_select_classify_and_embeddings_match_the_rust_api(model, pngs):
    paths, labels = pngs
    width, reason = model.select(max_mmacs=10)
    assert width == 0.5 and "MMACs" in reason
    rust = slim_run(MODEL, "--budget-mmacs", "10", "--embed", *paths)
    assert f"chosen width {width}: {reason}" in rust

    batch = model.preprocess(paths)
    assert batch.shape == (len(paths), 1, 28, 28) and batch.dtype == np.float32
    embedding, logits = model.run(batch, width)
    for path, row in zip(paths, embedding):
        line = next(l for l in rust.splitlines() if l.startswith(f"{path}: embedding"))
        values = np.array([float(v) for v in line.split("[", 1)[1].rstrip("]").split(",")])
        np.testing.assert_allclose(row, values, rtol=0, atol=1e-5)

    classes = model.classify(paths, top_k=3, width=width)
    rust = slim_run(MODEL, "--budget-mmacs", "10", "--top-k", "3", *paths)
    for path, top, row in zip(paths, classes, logits):
        assert len(top) == 3 and top[0][2] == int(np.argmax(row))
        probs = [p for _, p, _ in top]
        assert probs == sorted(probs, reverse=True)
        block = rust.split(f"{path}:\n", 1)[1].splitlines()[:3]
        for rank, ((name, prob, _), line) in enumerate(zip(top, block), 1):
            assert line.strip() == f"{rank}. {name} {prob * 100:.2f}%"
    # The trained model gets most of these right.
    right = sum(top[0][2] == label for top, label in zip(classes, labels))
    assert right >= 6, f"{right} of 8 right"


def test_the_gil_is_released_while_a_graph_runs(model):
    """While one thread is inside `run`, another still runs Python code: its timestamps
    fall inside the middle of that call. Were the GIL held, none could."""
    x = np.repeat(exported_test_data(1.0)[0], 256, axis=0)
    model.run(x[:1], 1.0)  # load the graph first
    inside, ticks, done = [], [], threading.Event()

    def worker():
        for _ in range(3):
            start = time.perf_counter()
            model.run(x, 1.0)
            inside.append((start, time.perf_counter()))
        done.set()

    t = threading.Thread(target=worker)
    t.start()
    while not done.is_set():
        ticks.append(time.perf_counter())
    t.join()
    during = 0
    for start, end in inside:
        quarter = (end - start) / 4
        during += sum(start + quarter < tick < end - quarter for tick in ticks)
    assert during > 0, "no Python ran while the graph did: the GIL was held"


def test_two_threads_answer_as_one(model):
    x, _, _ = exported_test_data(0.25)
    x = np.repeat(x, 16, axis=0)
    want = model.run(x, 0.25)[1]
    got = [None, None]

    def work(i):
        got[i] = model.run(x, 0.25)[1]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g in got:
        np.testing.assert_array_equal(g, want)


def test_adaptive_starts_widest_runs_and_steps_down(model):
    x, _, _ = exported_test_data(1.0)
    a = model.adaptive(5.0, min_samples=4, window=8, dwell_ms=0)
    assert a.width == 1.0
    width, embedding, logits = a.run(x)
    assert width == 1.0 and logits.shape == (len(x), 10) and embedding.shape == (len(x), 64)
    # Latencies far over the target: the controller steps down.
    switch = None
    for _ in range(4):
        switch = a.observe(1.0, 50.0) or switch
    assert switch is not None and switch["from"] == 1.0 and switch["to"] < 1.0
    assert a.width == switch["to"] and a.switches == [switch]


def softmax(logits):
    e = np.exp(logits.astype(np.float64) - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_the_cascade_stops_each_image_at_the_first_width_sure_enough(model, pngs, tmp_path):
    x = model.preprocess(pngs[0])
    narrow = sorted(WIDTHS)
    alone = {w: model.run(x, w)[1] for w in narrow}
    widths, conf, logits = model.cascade(x, threshold=0.0)
    assert widths.dtype == np.float64 and conf.dtype == np.float32 and logits.shape == (8, 10)
    assert (widths == 0.25).all()
    np.testing.assert_allclose(logits, alone[0.25], rtol=0, atol=1e-5)
    for kind in ("max-prob", "margin"):
        widths, conf, logits = model.cascade(x, threshold=0.8, confidence=kind)
        for i in range(len(x)):
            # numpy's own softmax as the reference for the confidence
            sure = []
            for w in narrow:
                p = np.sort(softmax(alone[w][i:i + 1])[0])[::-1]
                sure.append(p[0] if kind == "max-prob" else p[0] - p[1])
            stop = next(s for s in range(4) if s == 3 or sure[s] >= 0.8)
            assert widths[i] == narrow[stop], (kind, i, sure)
            assert abs(conf[i] - sure[stop]) < 1e-5
            np.testing.assert_allclose(logits[i], alone[narrow[stop]][i], rtol=0, atol=1e-5)

    # A cascade calibrated into the manifest is the default.
    assert model.calibrated_cascade is None
    copy = tmp_path / "model"
    shutil.copytree(MODEL, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["cascade"] = {
        "confidence": "margin",
        "stages": [{"width": 0.25, "threshold": 0.6}, {"width": 1.0, "threshold": 0.0}],
        "target_top1": 0.8, "top1": 0.81, "mean_macs": 1.2e7, "dataset": "d", "samples": 50,
    }
    (copy / "manifest.json").write_text(json.dumps(manifest))
    stored = slim_runtime.Model(str(copy))
    assert stored.calibrated_cascade["stages"] == [(0.25, 0.6), (1.0, 0.0)]
    assert stored.calibrated_cascade["confidence"] == "margin"
    widths, conf, _ = stored.cascade(x)
    p = np.sort(softmax(alone[0.25]), axis=1)
    margin = p[:, -1] - p[:, -2]
    np.testing.assert_array_equal(widths, np.where(margin >= 0.6, 0.25, 1.0))

    with pytest.raises(slim_runtime.SlimError, match="no calibrated cascade"):
        model.cascade(x)
    with pytest.raises(slim_runtime.SlimError, match=r"outside \[0, 1\]"):
        model.cascade(x, threshold=1.5)
    with pytest.raises(ValueError, match="max-prob or margin"):
        model.cascade(x, threshold=0.5, confidence="entropy")


def test_bad_inputs_raise_clear_exceptions(model, tmp_path):
    with pytest.raises(slim_runtime.SlimError, match="/nonexistent/model"):
        slim_runtime.Model("/nonexistent/model")
    with pytest.raises(ValueError, match="unknown backend"):
        slim_runtime.Model(str(MODEL), backend="onnx-magic")
    x, _, _ = exported_test_data(1.0)
    with pytest.raises(slim_runtime.SlimError, match="no width 0.3"):
        model.run(x, 0.3)
    with pytest.raises(ValueError, match="outside"):
        model.run(x, 2.0)
    with pytest.raises(ValueError, match=r"shape \[1, 3, 28, 28\]"):
        model.run(np.zeros((1, 3, 28, 28), np.float32))
    with pytest.raises(ValueError, match=r"shape \[0, 1, 28, 28\]"):
        model.run(np.zeros((0, 1, 28, 28), np.float32))
    with pytest.raises(ValueError, match="not a float array"):
        model.run("not an array")
    with pytest.raises(slim_runtime.NoFitError, match="nearest"):
        model.select(max_mmacs=0.001)
    with pytest.raises(ValueError, match="min_top1"):
        model.select(min_top1=2)
    with pytest.raises(ValueError, match="max_ms"):
        model.select(max_ms=-1)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(slim_runtime.SlimError, match="junk.png"):
        model.classify([str(junk)])
    with pytest.raises(slim_runtime.SlimError, match="missing.png"):
        model.preprocess([str(tmp_path / "missing.png")])
    with pytest.raises(slim_runtime.SlimError, match="quantile"):
        model.adaptive(5.0, quantile=2.0)
    assert issubclass(slim_runtime.NoFitError, slim_runtime.SlimError)


def test_the_readme_python_snippet_runs(tmp_path, monkeypatch, capsys):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Embedding", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("\n```", 1)[0]
    pixels, labels = fashion_mnist_images(1)
    write_png(tmp_path / "boot.png", pixels[0])
    assert labels[0] == 9  # an ankle boot
    monkeypatch.chdir(tmp_path)
    exec(snippet.replace('"models/fashion-mnist-resnet20"', repr(str(MODEL))), {})
    out = capsys.readouterr().out
    name, prob, _ = slim_runtime.Model(str(MODEL)).classify(["boot.png"], 1, 0.5)[0][0]
    assert out.startswith("0.5 ") and f"\n{name}: {prob:.2f}\n" in out, out


def test_the_overhead_benchmark_runs():
    """One round of crates/slim-py/bench/overhead.py against the C API cargo built for the
    tests (the README's figures come from release builds and 15 rounds)."""
    deps = ROOT / "target" / "debug" / "deps" / "libslim.so"
    assert deps.exists(), f"{deps}: run cargo test -p slim-capi first (tools/test.sh does)"
    out = subprocess.run([sys.executable, str(ROOT / "crates/slim-py/bench/overhead.py"),
                          str(deps), "1"], capture_output=True, text=True, check=True).stdout
    rows = [l for l in out.splitlines() if l.startswith("| 1.0 |") or l.startswith("| 0.25 |")]
    assert len(rows) == 4, out
    for row in rows:
        ratio = float(row.rstrip(" |").rsplit("|", 1)[1])
        assert ratio > 0, row
