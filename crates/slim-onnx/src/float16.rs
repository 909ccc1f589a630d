//! The f16 graph of a width, derived from its float graph: every float initializer stored
//! as float16 (round to nearest), the image cast to float16 on the way in and both outputs
//! cast back to float32 on the way out, so that it keeps the float graph's interface (and
//! its test-data layout) while every operator computes in half precision.

use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::{ModelProto, TensorProto};

use crate::graph::INPUT;
use crate::proto::{append_doc, float_values, int_attr, node};

/// The graph `model` (a float graph of [`crate::build_model`]) in float16, but for its
/// probe: `Gemm` nodes stay float32 and read the float32 embedding, because tract 0.23.9
/// cannot type an f16 `Gemm` and the probe is only classes x features MACs.
pub fn to_f16(model: &ModelProto) -> Result<ModelProto, String> {
    let mut model = model.clone();
    let graph = model.graph.as_mut().ok_or("the model holds no graph")?;
    let float_only: Vec<String> = graph
        .node
        .iter()
        .filter(|n| n.op_type == "Gemm")
        .flat_map(|n| n.input.iter().skip(1).cloned())
        .collect();
    for t in graph
        .initializer
        .iter_mut()
        .filter(|t| !float_only.contains(&t.name))
    {
        to_half(t)?;
    }
    let half = |name: &str| format!("{name}.f16");
    let outputs: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    let cast = |from: &str, to: &str, dt: DataType| {
        node("Cast", to, &[from], to, vec![int_attr("to", dt as i64)])
    };
    let mut nodes = vec![cast(INPUT, &half(INPUT), DataType::Float16)];
    for mut n in std::mem::take(&mut graph.node) {
        if n.op_type == "Gemm" {
            nodes.push(n);
            continue;
        }
        for name in n.input.iter_mut() {
            if name == INPUT || outputs.contains(name) {
                *name = half(name);
            }
        }
        let mut casts = Vec::new();
        for name in n.output.iter_mut() {
            if outputs.contains(name) {
                casts.push(cast(&half(name), name, DataType::Float));
                *name = half(name);
            }
        }
        nodes.push(n);
        nodes.extend(casts);
    }
    graph.node = nodes;
    append_doc(&mut model, "Computed in float16 but for the probe.");
    Ok(model)
}

/// Stores a float32 initializer as float16 (others are left as they are).
fn to_half(t: &mut TensorProto) -> Result<(), String> {
    if t.data_type != DataType::Float as i32 {
        return Ok(());
    }
    let values = float_values(t)?;
    t.float_data.clear();
    t.data_type = DataType::Float16 as i32;
    t.raw_data = values
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::float_tensor;

    #[test]
    fn initializers_round_to_the_nearest_half_and_keep_their_shape() {
        let mut t = float_tensor("w", &[3], &[1.0, 1.0e-3, 70000.0]);
        to_half(&mut t).unwrap();
        assert_eq!(t.data_type, DataType::Float16 as i32);
        assert_eq!(t.dims, [3]);
        let back: Vec<f32> = t
            .raw_data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect();
        assert_eq!(back[0], 1.0);
        assert!((back[1] - 1.0e-3).abs() < 1.0e-6, "{}", back[1]);
        // Beyond float16's range: infinite, as IEEE rounding says.
        assert!(back[2].is_infinite());
    }
}
