//! The `metadata_props` keys of every exported ONNX graph, shared by the writer
//! (slim-onnx) and the readers (slim-runtime), so that a graph on its own says what it is,
//! what it costs and how to feed it. Values are strings as ONNX requires; lists are JSON
//! arrays, numbers are decimal.

/// Name of the graph input: normalised images `[N, C, S, S]`, float32.
pub const INPUT: &str = "image";
/// Name of the first output: the backbone's pooled features `[N, features_at(w)]`.
pub const EMBEDDING: &str = "embedding";
/// Name of the second output: the probe's logits `[N, classes]`.
pub const LOGITS: &str = "logits";
/// The symbolic batch dimension of the input and outputs.
pub const BATCH: &str = "N";

/// The width, e.g. `0.25`.
pub const WIDTH: &str = "width";
/// The width's tag, e.g. `w250` (see [`crate::width::tag`]).
pub const WIDTH_TAG: &str = "width_tag";
/// Multiply-accumulates per image, from [`crate::cost()`].
pub const MACS: &str = "macs";
/// Parameters, from [`crate::cost()`] (BatchNorm counted before folding).
pub const PARAMS: &str = "params";
/// Length of the `embedding` output.
pub const EMBEDDING_DIM: &str = "embedding_dim";
/// Side of the square input, in pixels.
pub const IMAGE_SIZE: &str = "image_size";
pub const IN_CHANNELS: &str = "in_channels";
/// Per-channel normalisation `(x - mean) / std` of pixels in [0, 1], JSON arrays. The graph
/// expects normalised input.
pub const MEAN: &str = "mean";
pub const STD: &str = "std";
/// JSON array of class names, in `logits` order.
pub const CLASS_NAMES: &str = "class_names";
/// Hex SHA-256 of the checkpoint file the graph was exported from.
pub const CHECKPOINT_SHA256: &str = "checkpoint_sha256";
/// Backbone name, e.g. `resnet20`.
pub const BACKBONE: &str = "backbone";
/// `slim-onnx <version>`.
pub const PRODUCER: &str = "producer";
