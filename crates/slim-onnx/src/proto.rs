//! Small constructors for the ONNX protobuf messages of [`tract_onnx::pb`], so that the
//! graph builder reads as a list of nodes rather than a wall of struct literals.

use tract_onnx::pb::{
    AttributeProto, NodeProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto, attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto,
    type_proto,
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
