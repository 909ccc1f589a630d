"""The Python package on a model exported in f32, f16 and int8 (widths 1.0 and 0.25, random
weights, int8 calibrated on Fashion-MNIST), built by the example
`crates/slim-py/examples/variant_model.rs` (cargo builds it here, with the workspace's
features as tools/python.sh builds slim-run): every graph's outputs against `slim-run`
(the Rust API) for that graph, selection among precisions and a budget kept to some,
the adaptive controller over every graph, and an unknown precision or a graph the model
lacks refused with a clear exception.

Run by tools/python.sh (which builds and installs the wheel first)."""

import json
import shutil
import subprocess

import numpy as np
import pytest

import slim_runtime

from support import MODEL, ROOT, WIDTHS, fashion_mnist_pngs, slim_run

GRAPHS = [(1.0, "f32"), (1.0, "f16"), (1.0, "int8"), (0.25, "f32"), (0.25, "f16"), (0.25, "int8")]
# The calibrated copy's p50 latencies at batch 1 (examples/variant_model.rs): int8 is no
# faster than f32 at least as wide (dominated), f16 of width 1.0 sits between the floats.
P50_MS = {(1.0, "f32"): 4.0, (1.0, "f16"): 3.0, (1.0, "int8"): 4.5,
          (0.25, "f32"): 1.0, (0.25, "f16"): 0.9, (0.25, "int8"): 1.2}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """`(model, calibrated)`: the export, and a copy with a calibration cached for this
    device."""
    out = tmp_path_factory.mktemp("variants")
    features = subprocess.run([str(ROOT / "tools" / "features.sh")], capture_output=True,
                              text=True, check=True).stdout.strip()
    # The test profile, as tools/test.sh's `cargo test`, which has built it already.
    subprocess.run(["cargo", "build", "--quiet", "--workspace", "--features", features,
                    "--profile", "test", "--example", "variant_model"], cwd=ROOT, check=True)
    subprocess.run([str(ROOT / "target" / "debug" / "examples" / "variant_model"), str(out)],
                   check=True, capture_output=True)
    return out / "model", out / "calibrated"


@pytest.fixture(scope="module")
def model(exported):
    return slim_runtime.Model(str(exported[0]))


@pytest.fixture(scope="module")
def calibrated(exported):
    return slim_runtime.Model(str(exported[1]))


@pytest.fixture(scope="module")
def pngs(tmp_path_factory):
    """Two Fashion-MNIST test images as PNG files (tract computes f16 slowly: 0.5 s an
    image at width 1.0)."""
    return fashion_mnist_pngs(tmp_path_factory.mktemp("variant-pngs"), 2)[0]


def shown(width, precision):
    """A graph as slim-run names it: `1` for width 1.0's float graph, `0.25/int8`."""
    w = f"{width:g}"
    return w if precision == "f32" else f"{w}/{precision}"


def test_variants_precisions_and_costs(model, exported):
    assert model.variants == GRAPHS
    assert model.precisions == ["f32", "f16", "int8"]
    manifest = json.loads((exported[0] / "manifest.json").read_text())
    entries = {}
    for e in manifest["widths"]:
        for v in [e] + e.get("variants", []):
            entries[(v["width"], v.get("precision", "f32"))] = v
    costs = model.costs(variants=True)
    assert [(c["width"], c["precision"]) for c in costs] == GRAPHS
    for c in costs:
        e = entries[(c["width"], c["precision"])]
        for key in ("macs", "params", "bytes", "embedding_dim"):
            assert c[key] == e[key], (c, key)
        assert c["top1"] is None
    # int8 weighs least at width 1.0; the same width costs the same MACs in any precision.
    assert costs[2]["bytes"] < costs[1]["bytes"] < costs[0]["bytes"]
    assert costs[0]["macs"] == costs[1]["macs"] == costs[2]["macs"]
    # Without variants=True: one float graph per width, as before.
    assert [(c["width"], c["precision"]) for c in model.costs()] == [(1.0, "f32"), (0.25, "f32")]
    # A model exported in f32 only lists its widths.
    committed = slim_runtime.Model(str(MODEL))
    assert committed.variants == [(w, "f32") for w in WIDTHS]
    assert committed.precisions == ["f32"]


@pytest.mark.parametrize("width,precision", GRAPHS)
def test_every_graph_answers_as_slim_run(model, exported, pngs, width, precision):
    x = model.preprocess(pngs)
    embedding, logits = model.run(x, width, precision)
    assert embedding.shape == (2, 64 if width == 1.0 else 16) and logits.shape == (2, 10)
    # slim-run runs the same graph: the most accurate in that precision, under a MAC
    # budget that leaves out width 1.0 for width 0.25.
    budget = [] if width == 1.0 else ["--budget-mmacs", "5"]
    rust = slim_run(exported[0], "--precision", precision, *budget, "--embed", *pngs)
    assert f"chosen width {shown(width, precision)}: " in rust, rust
    for path, row in zip(pngs, embedding):
        line = next(l for l in rust.splitlines() if l.startswith(f"{path}: embedding"))
        values = np.array([float(v) for v in line.split("[", 1)[1].rstrip("]").split(",")])
        np.testing.assert_allclose(row, values, rtol=0, atol=1e-5)

    classes = model.classify(pngs, top_k=3, width=width, precision=precision)
    rust = slim_run(exported[0], "--precision", precision, *budget, "--top-k", "3", *pngs)
    for path, top, row in zip(pngs, classes, logits):
        assert top[0][2] == int(np.argmax(row))
        block = rust.split(f"{path}:\n", 1)[1].splitlines()[:3]
        for rank, ((name, prob, _), line) in enumerate(zip(top, block), 1):
            assert line.strip() == f"{rank}. {name} {prob * 100:.2f}%"

    # The graphs of one width differ (so the comparison tells them apart), but not much.
    if precision != "f32":
        _, float_logits = model.run(x, width)
        assert not np.array_equal(logits, float_logits)
        rel = np.linalg.norm(logits - float_logits) / np.linalg.norm(float_logits)
        assert rel < 0.3, rel


def test_select_among_precisions_and_a_budget_kept_to_some(calibrated, exported, pngs):
    m = calibrated
    s = m.select(max_ms=3.5, precisions=m.precisions)
    assert isinstance(s, slim_runtime.Selection)
    assert (s.width, s.precision) == (1.0, "f16") and s.variant == (1.0, "f16")
    assert "f16 graph" in s.reason and "p50 3.000 ms" in s.reason
    rust = slim_run(exported[1], "--budget-ms", "3.5", "--precision", "f32,f16,int8", pngs[0])
    assert f"chosen width 1/f16: {s.reason}" in rust, rust
    # Unpacked as before: (width, reason).
    width, reason = s
    assert (width, reason) == (1.0, s.reason) and len(s) == 2 and s[0] == 1.0
    assert "precision='f16'" in repr(s)
    assert m.select(max_ms=0.95, precisions=["f32", "f16", "int8"]).variant == (0.25, "f16")
    # int8 measured no faster than f32 as wide: dominated, unless it is all that is allowed.
    assert m.select(max_ms=3.5, precisions=["f32", "int8"]).variant == (0.25, "f32")
    assert m.select(max_ms=10, precisions=["int8"]).variant == (1.0, "int8")
    # Without a list: the float graphs, which run(x, width) runs.
    assert m.select(max_ms=3.5).variant == (0.25, "f32")

    # A budget kept to f32 never chooses f16 or int8; the same budgets unrestricted do.
    kept, free = [], []
    for ms in np.arange(0.5, 5.51, 0.125):
        for precisions, out in ((["f32"], kept), (m.precisions, free)):
            try:
                out.append(m.select(max_ms=float(ms), precisions=precisions).precision)
            except slim_runtime.NoFitError:
                pass
    assert len(kept) == 37 and set(kept) == {"f32"}, kept
    assert "f16" in free, free
    for ms in (0.95, 0.5):
        with pytest.raises(slim_runtime.NoFitError, match="nearest"):
            m.select(max_ms=ms, precisions=["f32"])
    assert m.select(max_mmacs=40, precisions=["f32"]).variant == (1.0, "f32")

    with pytest.raises(ValueError, match='unknown precision "fp8": one of f32, f16, int8'):
        m.select(max_ms=3.5, precisions=["f32", "fp8"])
    with pytest.raises(ValueError, match="empty list"):
        m.select(max_ms=3.5, precisions=[])


def test_the_adaptive_controller_steps_through_every_graph(calibrated, model, pngs):
    x = calibrated.preprocess(pngs)
    a = calibrated.adaptive(10.0, min_samples=4, window=8, dwell_ms=0, variants=True)
    # The calibrated front: each step faster than the one before, int8 never.
    assert a.steps == [(1.0, "f32"), (1.0, "f16"), (0.25, "f32"), (0.25, "f16")]
    assert a.variant == (1.0, "f32")
    width, precision, embedding, logits = a.run_variant(x)
    assert (width, precision) == (1.0, "f32")
    np.testing.assert_array_equal(logits, model.run(x, 1.0)[1])
    # 50 ms against 10: no step is predicted to fit, so the cheapest.
    switch = None
    for _ in range(8):
        switch = a.observe(1.0, 50.0, precision="f32") or switch
        if switch:
            break
    assert switch is not None, "no switch after 8 observations of 50 ms"
    assert (switch["from"], switch["from_precision"]) == (1.0, "f32")
    assert (switch["to"], switch["to_precision"]) == (0.25, "f16")
    assert a.variant == (0.25, "f16") and a.width == 0.25 and a.switches == [switch]
    width, precision, embedding, logits = a.run_variant(x)
    assert (width, precision) == (0.25, "f16")
    want_embedding, want_logits = model.run(x, 0.25, "f16")
    np.testing.assert_array_equal(logits, want_logits)
    np.testing.assert_array_equal(embedding, want_embedding)
    width, _, logits = a.run(x)  # as before: the width alone
    assert width == 0.25
    with pytest.raises(ValueError, match="precision="):
        a.observe(0.25, 1.0)
    with pytest.raises(ValueError, match='unknown precision "fp8"'):
        a.observe(0.25, 1.0, precision="fp8")
    # Without variants=True: the float widths, as before.
    floats = calibrated.adaptive(10.0)
    assert floats.steps == [(1.0, "f32"), (0.25, "f32")]
    assert floats.observe(1.0, 1.0) is None


def test_an_unknown_precision_or_a_missing_graph_is_refused(model, exported, pngs, tmp_path):
    x = model.preprocess(pngs[:1])
    with pytest.raises(ValueError, match='unknown precision "fp8": one of f32, f16, int8'):
        model.run(x, 1.0, "fp8")
    with pytest.raises(ValueError, match='unknown precision "F16"'):
        model.classify(pngs[:1], width=1.0, precision="F16")
    with pytest.raises(slim_runtime.SlimError, match="no width 0.5"):
        model.run(x, 0.5, "int8")
    # The same model without width 0.25's f16 graph.
    partial = tmp_path / "partial"
    shutil.copytree(exported[0], partial)
    manifest = json.loads((partial / "manifest.json").read_text())
    narrow = next(e for e in manifest["widths"] if e["width"] == 0.25)
    narrow["variants"] = [v for v in narrow["variants"] if v["precision"] != "f16"]
    (partial / "manifest.json").write_text(json.dumps(manifest))
    m = slim_runtime.Model(str(partial))
    assert m.variants == [g for g in GRAPHS if g != (0.25, "f16")]
    lacks = r"holds no f16 graph of width 0.25; it has 1, 1/f16, 1/int8, 0.25, 0.25/int8"
    with pytest.raises(slim_runtime.SlimError, match=lacks):
        m.run(x, 0.25, "f16")
    with pytest.raises(slim_runtime.SlimError, match=lacks):
        m.classify(pngs[:1], width=0.25, precision="f16")
    np.testing.assert_array_equal(m.run(x, 0.25, "int8")[1], model.run(x, 0.25, "int8")[1])
