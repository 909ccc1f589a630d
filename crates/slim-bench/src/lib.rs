//! `slim-bench`: measure what each width of an exported model costs and how well it does.
//!
//! - [`evalset`]: a labelled evaluation set, preprocessed once from the model's manifest;
//! - [`measure`]: accuracy through the exported probe, and latency samples;
//! - [`memory`]: peak resident memory per width (Linux);
//! - [`machine`]: the machine, date and versions every report states;
//! - [`report`]: the report as JSON, CSV and a terminal table;
//! - [`plot`]: accuracy against MACs and latency, with the Pareto front, as PNG and SVG;
//! - [`cascade`](mod@cascade): the width cascade calibrated on one half of the set and
//!   measured on the other against each fixed width, and its plot ([`cascade_plot`]);
//! - [`writeback`]: measured figures back into the model's manifest;
//! - [`cli`]: the `slim-bench` command.

pub mod cascade;
pub mod cascade_plot;
pub mod cli;
mod error;
pub mod evalset;
pub mod machine;
pub mod measure;
pub mod memory;
pub mod plot;
pub mod report;
pub mod writeback;

pub use error::Error;
