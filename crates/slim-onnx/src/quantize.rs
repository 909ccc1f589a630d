//! The int8 graph of a width, derived from its float graph in the QDQ form that ONNX
//! Runtime fuses into integer kernels (and that tract runs as float):
//!
//! - every activation a `Conv`, `Gemm`, `Add`, `MaxPool` or `GlobalAveragePool` reads
//!   (the image included) passes through `QuantizeLinear` → `DequantizeLinear` right after
//!   the node that makes it: uint8 with a zero point, scale `(max - min) / 255` over its
//!   calibrated range widened to hold 0 (so that ReLU's zero is exact and onnxruntime can
//!   fold a ReLU into the quantisation before it);
//! - the weights of `Conv` and `Gemm` are int8, symmetric per output channel (axis 0,
//!   scale `max |w| / 127`, values in -127..=127), read through `DequantizeLinear`;
//! - their biases are int32 with scale `input scale * weight scale` per channel, as
//!   integer kernels accumulate them.
//!
//! These are onnxruntime's `quantize_static` defaults for QDQ (activations QUInt8,
//! weights QInt8 per channel); the integration test `ort_reference` holds these graphs to
//! its output on the same calibration images. Unlike its graphs, the logits and the
//! `embedding` output stay float, and `GlobalAveragePool` pools in float, its output
//! quantised after `Flatten` over the same range (the same values).

use std::collections::HashMap;

use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::{ModelProto, NodeProto, TensorProto};

use crate::graph::INPUT;
use crate::proto::{append_doc, float_tensor, float_values, int_attr, node};

/// The operators whose activation inputs are quantised, and which inputs those are.
fn quantized_inputs(op: &str) -> &'static [usize] {
    match op {
        "Conv" | "Gemm" | "MaxPool" | "GlobalAveragePool" => &[0],
        "Add" => &[0, 1],
        _ => &[],
    }
}

/// The activations of `model` that the int8 graph quantises, in the order they are made:
/// the tensors whose ranges calibration measures.
pub fn activation_points(model: &ModelProto) -> Vec<String> {
    let Some(graph) = &model.graph else {
        return Vec::new();
    };
    let read: std::collections::HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| {
            quantized_inputs(&n.op_type)
                .iter()
                .filter_map(|&i| n.input.get(i).map(String::as_str))
        })
        .collect();
    std::iter::once(INPUT)
        .chain(
            graph
                .node
                .iter()
                .flat_map(|n| n.output.iter().map(String::as_str)),
        )
        .filter(|t| read.contains(t))
        .map(str::to_string)
        .collect()
}

/// Scale and zero point of uint8 values for the range `[lo, hi]`, widened to hold 0.
pub fn uint8_params(lo: f32, hi: f32) -> (f32, u8) {
    let (lo, hi) = (f64::from(lo.min(0.0)), f64::from(hi.max(0.0)));
    if hi - lo <= f64::from(f32::MIN_POSITIVE) {
        return (1.0, 0);
    }
    let scale = (hi - lo) / 255.0;
    let zero = (-lo / scale).round_ties_even().clamp(0.0, 255.0);
    (scale as f32, zero as u8)
}

/// Symmetric int8 values and one scale per output channel (the first dimension, `rows`
/// of them) of `values`.
pub fn int8_per_channel(values: &[f32], rows: usize) -> (Vec<i8>, Vec<f32>) {
    let per_row = values.len() / rows.max(1);
    let mut q = Vec::with_capacity(values.len());
    let mut scales = Vec::with_capacity(rows);
    for row in values.chunks(per_row.max(1)) {
        let max = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        q.extend(
            row.iter()
                .map(|&v| (v / scale).round_ties_even().clamp(-127.0, 127.0) as i8),
        );
        scales.push(scale);
    }
    (q, scales)
}

/// The int8 QDQ graph of the float graph `model`, with the calibrated `ranges` (min, max)
/// of each of its [`activation_points`].
pub fn to_int8(
    model: &ModelProto,
    ranges: &HashMap<String, (f32, f32)>,
) -> Result<ModelProto, String> {
    let points = activation_points(model);
    let mut model = model.clone();
    let graph = model.graph.as_mut().ok_or("the model holds no graph")?;
    let mut params: HashMap<String, (f32, u8)> = HashMap::new();
    for p in &points {
        let &(lo, hi) = ranges
            .get(p)
            .ok_or_else(|| format!("no calibrated range for activation {p:?}"))?;
        if !(lo.is_finite() && hi.is_finite()) {
            return Err(format!(
                "activation {p:?} has the range [{lo}, {hi}], which is not finite"
            ));
        }
        params.insert(p.clone(), uint8_params(lo, hi));
    }
    let mut initializers: HashMap<String, TensorProto> = graph
        .initializer
        .drain(..)
        .map(|t| (t.name.clone(), t))
        .collect();
    let mut added: Vec<TensorProto> = Vec::new();
    let mut nodes: Vec<NodeProto> = Vec::new();
    let qdq = |tensor: &str, nodes: &mut Vec<NodeProto>, added: &mut Vec<TensorProto>| {
        let (scale, zero) = params[tensor];
        let (s, z) = (format!("{tensor}.scale"), format!("{tensor}.zero_point"));
        added.push(float_tensor(&s, &[], &[scale]));
        added.push(typed(&z, &[], DataType::Uint8, vec![zero]));
        let (q, dq) = (format!("{tensor}.q"), format!("{tensor}.dq"));
        nodes.push(node("QuantizeLinear", &q, &[tensor, &s, &z], &q, vec![]));
        nodes.push(node("DequantizeLinear", &dq, &[&q, &s, &z], &dq, vec![]));
    };
    if params.contains_key(INPUT) {
        qdq(INPUT, &mut nodes, &mut added);
    }
    for mut n in std::mem::take(&mut graph.node) {
        let reads = quantized_inputs(&n.op_type);
        for &i in reads {
            if let Some(input) = n.input.get_mut(i) {
                *input = format!("{input}.dq");
            }
        }
        if matches!(n.op_type.as_str(), "Conv" | "Gemm") {
            let x = n.input[0].trim_end_matches(".dq").to_string();
            let x_scale = params[&x].0;
            let weight = n
                .input
                .get(1)
                .cloned()
                .ok_or("a Conv/Gemm without weight")?;
            let w = initializers.remove(&weight).ok_or_else(|| {
                format!(
                    "{} {:?}: weight {weight:?} is not an initializer",
                    n.op_type, n.name
                )
            })?;
            let rows = *w.dims.first().ok_or("a weight of rank 0")? as usize;
            let (wq, w_scales) = int8_per_channel(&float_values(&w)?, rows);
            let dq_w = dequantized(&weight, &w.dims, Stored::Weight(wq), &w_scales, &mut added);
            nodes.push(dq_w.1);
            n.input[1] = dq_w.0;
            if let Some(bias) = n.input.get(2).cloned() {
                let b = initializers.remove(&bias).ok_or_else(|| {
                    format!(
                        "{} {:?}: bias {bias:?} is not an initializer",
                        n.op_type, n.name
                    )
                })?;
                let scales: Vec<f32> = w_scales
                    .iter()
                    .map(|&s| (f64::from(s) * f64::from(x_scale)) as f32)
                    .collect();
                let values = float_values(&b)?;
                let dq_b = dequantized(&bias, &b.dims, Stored::Bias(&values), &scales, &mut added);
                nodes.push(dq_b.1);
                n.input[2] = dq_b.0;
            }
        }
        let outputs = n.output.clone();
        nodes.push(n);
        for o in outputs {
            if params.contains_key(&o) {
                qdq(&o, &mut nodes, &mut added);
            }
        }
    }
    let mut kept: Vec<TensorProto> = initializers.into_values().collect();
    kept.sort_by(|a, b| a.name.cmp(&b.name));
    graph.initializer = kept.into_iter().chain(added).collect();
    graph.node = nodes;
    append_doc(
        &mut model,
        "Quantised to int8 (QDQ: uint8 activations, int8 weights per channel).",
    );
    Ok(model)
}

/// Quantised per channel: the int8 weight, or the int32 bias, of a `Conv`/`Gemm`.
enum Stored<'v> {
    Weight(Vec<i8>),
    Bias(&'v [f32]),
}

/// `DequantizeLinear` (axis 0, zero points 0) of the tensor `name` of shape `dims`, stored
/// as `stored` with one scale per channel; adds its initializers and returns its output
/// and the node.
fn dequantized(
    name: &str,
    dims: &[i64],
    stored: Stored<'_>,
    scales: &[f32],
    added: &mut Vec<TensorProto>,
) -> (String, NodeProto) {
    let (suffix, data_type, raw, zero_bytes) = match stored {
        Stored::Weight(q) => (
            "int8",
            DataType::Int8,
            q.iter().map(|&v| v as u8).collect(),
            1,
        ),
        Stored::Bias(values) => {
            let raw: Vec<u8> = values
                .iter()
                .zip(scales)
                .flat_map(|(&v, &s)| {
                    let q = (f64::from(v) / f64::from(s))
                        .round_ties_even()
                        .clamp(f64::from(i32::MIN), f64::from(i32::MAX))
                        as i32;
                    q.to_le_bytes()
                })
                .collect();
            ("int32", DataType::Int32, raw, 4)
        }
    };
    let (qn, s, z, out) = (
        format!("{name}.{suffix}"),
        format!("{name}.scale"),
        format!("{name}.zero_point"),
        format!("{name}.dq"),
    );
    let dims: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
    let rows = scales.len();
    added.push(typed(&qn, &dims, data_type, raw));
    added.push(float_tensor(&s, &[rows], scales));
    added.push(typed(&z, &[rows], data_type, vec![0; zero_bytes * rows]));
    let axis = vec![int_attr("axis", 0)];
    let dq = node("DequantizeLinear", &out, &[&qn, &s, &z], &out, axis);
    (out, dq)
}

/// A tensor of `data_type` holding `raw` little-endian bytes.
fn typed(name: &str, dims: &[usize], data_type: DataType, raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name: name.to_string(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: data_type as i32,
        raw_data: raw,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_ranges_hold_zero_exactly_and_weights_use_their_channels_range() {
        // onnxruntime's formulas: scale (max - min) / 255 with 0 in the range, zero point
        // round(-min / scale); weights max|w| / 127 per row.
        assert_eq!(uint8_params(0.0, 2.55), (0.01, 0));
        let (s, z) = uint8_params(-1.0, 3.0);
        assert!((s - 4.0 / 255.0).abs() < 1e-7);
        assert_eq!(z, 64);
        // A range above 0 is widened down to it.
        assert_eq!(uint8_params(1.0, 2.55).1, 0);
        assert_eq!(uint8_params(0.0, 0.0), (1.0, 0));
        let (q, scales) = int8_per_channel(&[0.5, -1.27, 0.01, 0.0, 0.0, 0.0], 2);
        assert_eq!(scales, [0.01, 1.0]);
        assert_eq!(q, [50, -127, 1, 0, 0, 0]);
    }
}
