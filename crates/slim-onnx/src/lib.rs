//! `slim-onnx`: exports slimmable-network checkpoints to ONNX without libtorch.
//!
//! Each width becomes its own graph ([`build_model`]): the width's channels sliced out of
//! the shared weights with its BatchNorm folded in, pooled `embedding` and probe `logits`
//! outputs, a dynamic batch dimension, and [`metadata`] describing cost and preprocessing.
//! [`export()`] writes a model folder (graphs, ONNX test data from the checkpoint's reference
//! outputs, `manifest.json`); the `slim-export` binary is its command line ([`cli`]).
//!
//! - [`graph`]: the graph of one width, derived from [`slim_core::Network`];
//! - [`float16`] and [`quantize`]: its f16 and int8 (QDQ) graphs, derived from it;
//! - [`calibration`]: the images int8 ranges are measured on, and the ranges;
//! - [`agreement`]: how close a derived graph stays to the float one;
//! - [`export`](mod@export): the model folder, atomic and all-or-nothing;
//! - [`metadata`]: the `metadata_props` every graph carries (slim-core's, re-exported);
//! - [`error`]: what can go wrong, as [`ExportError`];
//! - [`cli`]: the `slim-export` arguments and summary table.

pub mod agreement;
pub mod calibration;
pub mod cli;
pub mod error;
pub mod export;
pub mod float16;
pub mod graph;
mod proto;
pub mod quantize;
mod run;

pub use error::ExportError;
pub use export::{ExportOptions, ExportReport, ExportedWidth, WidthSelection, export, export_with};
pub use graph::build_model;
pub use slim_core::metadata;

/// Producer string written into every graph's metadata.
pub const PRODUCER: &str = concat!("slim-onnx ", env!("CARGO_PKG_VERSION"));
