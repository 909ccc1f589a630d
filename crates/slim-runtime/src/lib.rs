//! `slim-runtime`: run an exported slimmable model at the width you can afford.
//!
//! - [`model`]: open a folder that `slim-export` wrote, load widths lazily, run them;
//! - [`engine`]: the engine trait, the tract engine and, with the `ort` feature, ONNX
//!   Runtime ([`engine::ort`]) with CPU, CUDA or TensorRT execution providers;
//! - [`preprocess`]: image files to inputs, outputs to top-k classes and embeddings;
//! - [`graph`]: reading a graph safely and checking its metadata against the manifest;
//! - [`select`](mod@select): the most accurate width within a compute budget;
//! - [`adaptive`]: switching width while serving to hold a latency target;
//! - [`cascade`]: the width cascade, narrowest first, wider only while unsure;
//! - [`calibrate`]: each width's latency measured on this device, cached beside the model.

pub mod adaptive;
pub mod calibrate;
pub mod cascade;
pub mod engine;
mod error;
pub mod graph;
pub mod model;
pub mod preprocess;
pub mod select;

pub use adaptive::Adaptive;
pub use calibrate::Calibration;
pub use engine::{Backend, Engine, Outputs, Placement, Provider, Threads};
pub use error::Error;
pub use model::SlimModel;
pub use preprocess::{Class, top_k};
pub use select::{
    Budget, Candidate, Dominated, NoFit, Rejected, Selection, choose, dominated, select,
};
