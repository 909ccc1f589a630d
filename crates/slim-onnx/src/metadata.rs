//! The `metadata_props` keys every exported graph carries, so that a graph on its own (without
//! its manifest) says what it is, what it costs and how to feed it.
//!
//! Values are strings as ONNX requires; lists are JSON arrays, numbers are decimal.

use slim_core::{Checkpoint, Cost, width};
use tract_onnx::pb::StringStringEntryProto;

use crate::proto::entry;

/// The width, e.g. `0.25`.
pub const WIDTH: &str = "width";
/// The width's tag, e.g. `w250` (see [`slim_core::width::tag`]).
pub const WIDTH_TAG: &str = "width_tag";
/// Multiply-accumulates per image, from [`slim_core::cost()`].
pub const MACS: &str = "macs";
/// Parameters, from [`slim_core::cost()`] (BatchNorm counted before folding).
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

/// The metadata of the graph of width `w` exported from `ckpt`.
pub(crate) fn props(ckpt: &Checkpoint, w: f64, cost: Cost) -> Vec<StringStringEntryProto> {
    let c = &ckpt.config;
    // Serialising plain lists of numbers and strings cannot fail.
    let json = |r: serde_json::Result<String>| r.unwrap_or_default();
    vec![
        entry(WIDTH, format!("{w:?}")),
        entry(WIDTH_TAG, width::tag(w)),
        entry(MACS, cost.macs.to_string()),
        entry(PARAMS, cost.params.to_string()),
        entry(EMBEDDING_DIM, c.network().features_at(w).to_string()),
        entry(IMAGE_SIZE, c.image_size.to_string()),
        entry(IN_CHANNELS, c.in_channels.to_string()),
        entry(MEAN, json(serde_json::to_string(&c.mean))),
        entry(STD, json(serde_json::to_string(&c.std))),
        entry(CLASS_NAMES, json(serde_json::to_string(&c.class_names))),
        entry(CHECKPOINT_SHA256, ckpt.sha256.clone()),
        entry(BACKBONE, c.backbone.name()),
        entry(PRODUCER, crate::PRODUCER),
    ]
}
