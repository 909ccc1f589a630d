"""onnxruntime's own static quantiser as the independent reference for slim-export's int8
graphs (issue 15), run by the slim-onnx integration test `ort_reference`.

For each `--pair FLOAT OURS` (a width's float graph and the int8 QDQ graph slim-export
derived from it), this quantises FLOAT with `onnxruntime.quantization.quantize_static`
(QDQ, activations QUInt8 asymmetric, weights QInt8 symmetric per channel, min-max or
percentile calibration) on exactly the calibration images slim-export used (`--calibration`,
a float32 .npy of shape [N, C, H, W], fed one image at a time as slim-export does), then
compares the two int8 graphs and writes what it found to `--report` (JSON). The test holds
the figures to its tolerances; this script only measures, and fails only when it cannot.

Compared:
- activations: the scale and zero point of every tensor a `QuantizeLinear` reads (not an
  initializer), matched by that tensor's name, and the names only one graph quantises;
- weights and biases of every `Conv`/`Gemm` (matched by node name): dtype, axis, per-channel
  scales, zero points, the stored integers, and the dequantised biases;
- outputs: both int8 graphs and the float graph run with onnxruntime (CPU, default graph
  optimisations, so the QDQ groups run as integer kernels) on the calibration images; and
  onnxruntime's graph with slim-export's numbers put in, against slim-export's graph (equal
  logits: the graphs differ in their numbers only), with the kernels each fuses into;
- with `--also-ort-defaults`, what onnxruntime quantises with its default output
  quantisation (the logits too) that slim-export does not.
"""

import argparse
import json
import logging
import os
import sys
import tempfile

try:
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
except ImportError as e:  # the test turns this exit status into its message
    print(f"missing Python module: {e.name} ({e}); run tools/setup.sh", file=sys.stderr)
    sys.exit(3)


class Images(CalibrationDataReader):
    """The calibration images, one [1, C, H, W] batch at a time, under the graph's input name."""

    def __init__(self, images, input_name):
        self.images = images
        self.input_name = input_name
        self.i = 0

    def get_next(self):
        if self.i >= len(self.images):
            return None
        x = self.images[self.i : self.i + 1]
        self.i += 1
        return {self.input_name: x}

    def __len__(self):
        return len(self.images)


def quantize_with_ort(float_path, out_path, images, method, percentile, float_logits=True):
    """onnxruntime's int8 QDQ graph of `float_path`, with the options slim-export documents
    (with `float_logits=False`, onnxruntime's default of quantising the logits too)."""
    extra = {
        # Stated although they are the defaults for these types: slim-export's choices.
        "ActivationSymmetric": False,  # uint8 with a zero point
        "WeightSymmetric": True,  # int8 in -127..=127, zero point 0
        # slim-export leaves the logits (the graph output `Gemm` makes) in float: nothing
        # quantised reads them. onnxruntime quantises every Conv/Gemm output by default;
        # excluding Gemm's output matches the documented choice (README, "f16 and int8
        # graphs per width"). Conv outputs stay quantised here as in slim-export, where
        # the ReLU after them or the Add that reads them gets the QDQ pair.
        "OpTypesToExcludeOutputQuantization": ["Gemm"] if float_logits else [],
    }
    if method == "percentile":
        calibrate_method = CalibrationMethod.Percentile
        extra["CalibPercentile"] = percentile
        # quantize_static's percentile calibrator is symmetric (a histogram of |x|) unless
        # told otherwise; slim-export cuts both tails of the values themselves. Its 2048
        # bins are create_calibrator's default (quantize_static passes no bin count).
        extra["CalibTensorRangeSymmetric"] = False
    else:
        calibrate_method = CalibrationMethod.MinMax
    input_name = onnx.load(float_path, load_external_data=False).graph.input[0].name
    quantize_static(
        float_path,
        out_path,
        Images(images, input_name),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        reduce_range=False,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=calibrate_method,
        calibration_providers=["CPUExecutionProvider"],
        extra_options=extra,
    )


def initializers(model):
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def activation_params(model):
    """{tensor: (scale, zero point, their initializers)} of every QuantizeLinear of an
    activation, keyed by the float graph's name of the tensor: onnxruntime renames a graph
    output X it quantises to `X_QuantizeLinear_Input` and gives X to the DequantizeLinear
    after it."""
    inits = initializers(model)
    outputs = {o.name for o in model.graph.output}
    consumers = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    out = {}
    for n in model.graph.node:
        if n.op_type != "QuantizeLinear" or n.input[0] in inits:
            continue
        name = n.input[0]
        for dq in consumers.get(n.output[0], []):
            if dq.op_type == "DequantizeLinear" and dq.output[0] in outputs:
                name = dq.output[0]
        scale = float(inits[n.input[1]].reshape(-1)[0])
        zp = inits[n.input[2]] if len(n.input) > 2 and n.input[2] else np.array(0, np.uint8)
        out[name] = {
            "scale": scale,
            "zero_point": int(zp.reshape(-1)[0]),
            "zero_point_type": str(zp.dtype),
            "initializers": [n.input[1], n.input[2] if len(n.input) > 2 else None],
        }
    return out


def dequantized_initializer(tensor, inits, producers):
    """(stored integers, scales, zero points, axis, initializer names) of the
    DequantizeLinear making `tensor` from an initializer; None when none does."""
    dq = producers.get(tensor)
    if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
        return None
    axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
    zp = inits[dq.input[2]] if len(dq.input) > 2 and dq.input[2] else None
    return inits[dq.input[0]], inits[dq.input[1]].reshape(-1), zp, axis, list(dq.input)


def weights(model):
    """{Conv/Gemm node name: (op, weight, bias)}, each a dequantized_initializer or None."""
    inits = initializers(model)
    producers = {o: n for n in model.graph.node for o in n.output}
    out = {}
    for n in model.graph.node:
        if n.op_type not in ("Conv", "Gemm"):
            continue
        w = dequantized_initializer(n.input[1], inits, producers)
        b = dequantized_initializer(n.input[2], inits, producers) if len(n.input) > 2 else None
        out[n.name] = (n.op_type, w, b)
    return out


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-30)))


def compare_weights(ours, theirs):
    rows = []
    for name in sorted(set(ours) & set(theirs)):
        op, w_ours, b_ours = ours[name]
        _, w_ort, b_ort = theirs[name]
        row = {"node": name, "op": op}
        if w_ours is None or w_ort is None:
            row["weight"] = {"quantised_ours": w_ours is not None, "quantised_ort": w_ort is not None}
            rows.append(row)
            continue
        (q1, s1, z1, a1, _), (q2, s2, z2, a2, _) = w_ours, w_ort
        same_shape = q1.shape == q2.shape and s1.shape == s2.shape
        d = np.abs(q1.astype(np.int64) - q2.astype(np.int64)) if same_shape else None
        row["weight"] = {
            "dtype_ours": str(q1.dtype),
            "dtype_ort": str(q2.dtype),
            "axis_ours": int(a1),
            "axis_ort": int(a2),
            "same_shape": bool(same_shape),
            "channels": int(s1.size),
            "scale_max_rel": rel(s1, s2) if same_shape else None,
            "zero_points_zero": bool(z1 is not None and z2 is not None and not z1.any() and not z2.any()),
            "values": int(q1.size),
            "values_differ": int(np.count_nonzero(d)) if same_shape else None,
            "values_max_abs_diff": int(d.max()) if same_shape and d.size else None,
            "range_ours": [int(q1.min()), int(q1.max())],
            "range_ort": [int(q2.min()), int(q2.max())],
        }
        if b_ours is not None or b_ort is not None:
            if b_ours is None or b_ort is None:
                row["bias"] = {"quantised_ours": b_ours is not None, "quantised_ort": b_ort is not None}
            else:
                (q1, s1, _, _, _), (q2, s2, _, _, _) = b_ours, b_ort
                deq1 = q1.astype(np.float64) * s1.astype(np.float64)
                deq2 = q2.astype(np.float64) * s2.astype(np.float64)
                step = np.maximum(s1, s2).astype(np.float64)
                row["bias"] = {
                    "dtype_ours": str(q1.dtype),
                    "dtype_ort": str(q2.dtype),
                    "scale_max_rel": rel(s1, s2),
                    "values_max_abs_diff": int(np.max(np.abs(q1.astype(np.int64) - q2.astype(np.int64)))),
                    # How far apart the two dequantised biases are, in bias steps.
                    "dequantized_max_steps": float(np.max(np.abs(deq1 - deq2) / step)),
                }
        rows.append(row)
    return rows


def run(model, images, level=None):
    """`model` (a path or a ModelProto) run with onnxruntime on `images`: {output: values}."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if level is not None:
        so.graph_optimization_level = level
    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    names = [o.name for o in s.get_outputs()]
    out = s.run(None, {s.get_inputs()[0].name: images})
    return dict(zip(names, out))


def with_our_numbers(theirs, ours):
    """onnxruntime's int8 graph `theirs` with every number slim-export chose instead of its
    own: the scale and zero point of each activation both quantise, and each Conv/Gemm's
    stored weight, bias and their scales. Equal outputs then mean that the two graphs differ
    in their numbers only, not in where they quantise or how they compute."""
    model = onnx.ModelProto()
    model.CopyFrom(theirs)
    by_name = {t.name: t for t in model.graph.initializer}
    assigned = {}

    def put(name, value):
        old = numpy_helper.to_array(by_name[name])
        value = np.asarray(value).astype(old.dtype).reshape(old.shape)
        if name in assigned and not np.array_equal(assigned[name], value):
            raise ValueError(f"initializer {name} would take two values")
        assigned[name] = value
        by_name[name].CopyFrom(numpy_helper.from_array(value, name))

    ours_inits = initializers(ours)
    a_ours, a_ort = activation_params(ours), activation_params(model)
    for t in set(a_ours) & set(a_ort):
        for mine, theirs_name in zip(a_ours[t]["initializers"], a_ort[t]["initializers"]):
            if mine and theirs_name:
                put(theirs_name, ours_inits[mine])
    w_ours, w_ort = weights(ours), weights(model)
    for node in set(w_ours) & set(w_ort):
        for mine, theirs_q in zip(w_ours[node][1:], w_ort[node][1:]):
            if mine is not None and theirs_q is not None:
                # DequantizeLinear's inputs: integers, scales, zero points.
                for m, t in zip(mine[4], theirs_q[4]):
                    if m and t:
                        put(t, ours_inits[m])
    return model


def rel_l2(a, reference):
    a, reference = a.astype(np.float64), reference.astype(np.float64)
    return float(np.linalg.norm(a - reference) / np.linalg.norm(reference))


def compare_outputs(float_path, ours_path, ort_path, images):
    f, o, r = run(float_path, images), run(ours_path, images), run(ort_path, images)
    top1 = lambda x: np.argmax(x["logits"], axis=1)  # noqa: E731
    swapped = with_our_numbers(onnx.load(ort_path), onnx.load(ours_path))
    plain = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    o_plain, s_plain, s_fused = run(ours_path, images, plain), run(swapped, images, plain), run(swapped, images)
    return {
        "images": int(len(images)),
        "logits_rel_l2": rel_l2(o["logits"], r["logits"]),
        "embedding_rel_l2": rel_l2(o["embedding"], r["embedding"]),
        "top1_agreement": float(np.mean(top1(o) == top1(r))),
        "ours_vs_float_logits_rel_l2": rel_l2(o["logits"], f["logits"]),
        "ort_vs_float_logits_rel_l2": rel_l2(r["logits"], f["logits"]),
        # onnxruntime's graph with slim-export's numbers against slim-export's graph:
        # unoptimised (QDQ run as float: the same arithmetic if the graphs are equivalent)
        # and with onnxruntime's default optimisations (integer kernels, which fuse the
        # two graphs' QDQ groups alike or not).
        "same_numbers_logits_rel_l2_unoptimised": rel_l2(o_plain["logits"], s_plain["logits"]),
        "same_numbers_logits_rel_l2": rel_l2(o["logits"], s_fused["logits"]),
        "fused_ours": fused_ops(ours_path),
        "fused_ort": fused_ops(ort_path),
    }


def fused_ops(path):
    """The operators of `path` after onnxruntime's default optimisations, counted."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    with tempfile.TemporaryDirectory() as d:
        so.optimized_model_filepath = os.path.join(d, "optimised.onnx")
        ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        counts = {}
        for n in onnx.load(so.optimized_model_filepath).graph.node:
            counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return counts


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calibration", required=True, help="float32 .npy [N, C, H, W]")
    p.add_argument("--method", choices=["minmax", "percentile"], required=True)
    p.add_argument("--percentile", type=float, default=99.999)
    p.add_argument("--pair", nargs=2, action="append", required=True, metavar=("FLOAT", "OURS"))
    p.add_argument(
        "--also-ort-defaults",
        action="store_true",
        help="also quantise with onnxruntime's default output quantisation (logits included) and report what it adds",
    )
    p.add_argument("--work", required=True, help="folder for onnxruntime's int8 graphs")
    p.add_argument("--report", required=True)
    args = p.parse_args()
    logging.getLogger().setLevel(logging.ERROR)

    images = np.load(args.calibration)
    assert images.dtype == np.float32 and images.ndim == 4, (images.dtype, images.shape)
    report = {
        "onnxruntime": ort.__version__,
        "onnx": onnx.__version__,
        "method": args.method,
        "percentile": args.percentile if args.method == "percentile" else None,
        "images": int(len(images)),
        "pairs": [],
    }
    os.makedirs(args.work, exist_ok=True)
    for i, (float_path, ours_path) in enumerate(args.pair):
        ort_path = os.path.join(args.work, f"ort-int8-{i}.onnx")
        quantize_with_ort(float_path, ort_path, images, args.method, args.percentile)
        ours, theirs = onnx.load(ours_path), onnx.load(ort_path)
        a_ours, a_ort = activation_params(ours), activation_params(theirs)
        w_ours, w_ort = weights(ours), weights(theirs)
        defaults = None
        if args.also_ort_defaults:
            path = os.path.join(args.work, f"ort-int8-defaults-{i}.onnx")
            quantize_with_ort(float_path, path, images, args.method, args.percentile, float_logits=False)
            a_default = activation_params(onnx.load(path))
            defaults = {
                "activations_only_ort": sorted(set(a_default) - set(a_ours)),
                "activations_only_ours": sorted(set(a_ours) - set(a_default)),
                "ort_vs_float_logits_rel_l2": rel_l2(run(path, images)["logits"], run(float_path, images)["logits"]),
            }
        report["pairs"].append(
            {
                "float": float_path,
                "ours": ours_path,
                "ort": ort_path,
                "activations": [
                    {"tensor": t, "ours": a_ours[t], "ort": a_ort[t]} for t in sorted(set(a_ours) & set(a_ort))
                ],
                "activations_only_ours": sorted(set(a_ours) - set(a_ort)),
                "activations_only_ort": sorted(set(a_ort) - set(a_ours)),
                "weights": compare_weights(w_ours, w_ort),
                "weights_only_ours": sorted(set(w_ours) - set(w_ort)),
                "weights_only_ort": sorted(set(w_ort) - set(w_ours)),
                "outputs": compare_outputs(float_path, ours_path, ort_path, images),
                "ort_defaults": defaults,
            }
        )
    with open(args.report, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
