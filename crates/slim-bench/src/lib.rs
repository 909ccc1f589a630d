//! `slim-bench`: measure what each width of an exported model costs and how well it does.
//!
//! - [`evalset`]: a labelled evaluation set, preprocessed once from the model's manifest;
//! - [`measure`]: accuracy through the exported probe, and latency;
//! - [`cli`]: the `slim-bench` command.

pub mod cli;
pub mod evalset;
pub mod measure;
