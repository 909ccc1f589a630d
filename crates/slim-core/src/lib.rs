//! `slim-core`: the slimmable-network vocabulary shared by training, export, runtime and
//! benchmark, with no native dependencies.
//!
//! - [`width`]: widths and the first-k channel rule;
//! - [`arch`]: width-independent architecture descriptions of every backbone;
//! - [`cascade`]: the width cascade's stages and thresholds;
//! - [`cost`](mod@cost): MACs and parameters per width;
//! - [`config`]: the model config stored in checkpoints;
//! - [`checkpoint`]: safetensors checkpoints, written atomically;
//! - [`manifest`]: the exported model folder's manifest;
//! - [`metadata`]: the metadata keys of every exported graph;
//! - [`precision`]: f32, f16 and int8 graphs, and how a derived one was made;
//! - [`progress`]: how long work reports its progress (libraries draw nothing);
//! - [`rng`]: a small seedable generator that is the same everywhere;
//! - [`stats`]: the one percentile of measured samples.

pub mod arch;
pub mod cascade;
pub mod checkpoint;
pub mod config;
pub mod cost;
mod error;
pub mod fsutil;
pub mod init;
pub mod manifest;
pub mod metadata;
pub mod precision;
pub mod progress;
pub mod rng;
pub mod stats;
pub mod width;

pub use arch::{Activation, Backbone, ConvBn, Layer, Network};
pub use checkpoint::{Checkpoint, Tensor};
pub use config::{ModelConfig, Preprocessing};
pub use cost::{Cost, cost};
pub use error::Error;
pub use manifest::{Manifest, WidthEntry};
pub use precision::{Precision, Variant};
pub use progress::{Progress, Silent};
pub use width::Width;
