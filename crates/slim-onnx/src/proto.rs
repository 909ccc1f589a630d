//! Small constructors for the ONNX protobuf messages of [`tract_onnx::pb`], so that the
//! graph builder reads as a list of nodes rather than a wall of struct literals.

use tract_onnx::pb::{
    AttributeProto, ModelProto, NodeProto, StringStringEntryProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto, attribute_proto::AttributeType, tensor_proto::DataType,
    tensor_shape_proto, type_proto,
};

/// One dimension of a graph input or output.
#[derive(Clone, Copy, Debug)]
pub enum Dim {
    Fixed(usize),
    /// A symbolic dimension such as the batch size `N`.
    Param(&'static str),
}

/// A float32 tensor stored little-endian in `raw_data`, as ONNX writers usually do.
pub fn float_tensor(name: &str, dims: &[usize], data: &[f32]) -> TensorProto {
    debug_assert_eq!(dims.iter().product::<usize>(), data.len(), "{name}");
    TensorProto {
        name: name.to_string(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Float as i32,
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// The values of a float32 tensor, from `float_data` or little-endian `raw_data`.
pub fn float_values(t: &TensorProto) -> Result<Vec<f32>, String> {
    if t.data_type != DataType::Float as i32 {
        return Err(format!("initializer {:?} is not float32", t.name));
    }
    if !t.float_data.is_empty() {
        return Ok(t.float_data.clone());
    }
    if !t.raw_data.len().is_multiple_of(4) {
        return Err(format!(
            "initializer {:?} holds {} bytes, not whole float32 values",
            t.name,
            t.raw_data.len()
        ));
    }
    Ok(t.raw_data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Adds `text` to the doc strings of `model` and its graph (a derived graph says how).
pub fn append_doc(model: &mut ModelProto, text: &str) {
    if let Some(graph) = model.graph.as_mut() {
        graph.doc_string = format!("{} {text}", graph.doc_string);
        model.doc_string = graph.doc_string.clone();
    }
}

/// A float32 scalar (rank 0) tensor.
pub fn float_scalar(name: &str, value: f32) -> TensorProto {
    float_tensor(name, &[], &[value])
}

pub fn int_attr(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}

pub fn ints_attr(name: &str, values: &[usize]) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::Ints as i32,
        ints: values.iter().map(|&v| v as i64).collect(),
        ..Default::default()
    }
}

/// A node of the default (`ai.onnx`) domain.
pub fn node(
    op_type: &str,
    name: &str,
    inputs: &[&str],
    output: &str,
    attribute: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        op_type: op_type.to_string(),
        name: name.to_string(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.to_string()],
        attribute,
        ..Default::default()
    }
}

/// A float32 graph input or output with the given shape.
pub fn float_value_info(name: &str, dims: &[Dim], doc: &str) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match *d {
                Dim::Fixed(n) => tensor_shape_proto::dimension::Value::DimValue(n as i64),
                Dim::Param(p) => tensor_shape_proto::dimension::Value::DimParam(p.to_string()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        doc_string: doc.to_string(),
    }
}

pub fn entry(key: &str, value: impl Into<String>) -> StringStringEntryProto {
    StringStringEntryProto {
        key: key.to_string(),
        value: value.into(),
    }
}
