//! The `metadata_props` keys every exported graph carries, so that a graph on its own (without
//! its manifest) says what it is, what it costs and how to feed it.
//!
//! Values are strings as ONNX requires; lists are JSON arrays, numbers are decimal.

use slim_core::{Checkpoint, Cost, width};
use tract_onnx::pb::StringStringEntryProto;

use crate::proto::entry;

pub use slim_core::metadata::*;

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
