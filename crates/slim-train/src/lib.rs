//! `slim-train`: the libtorch side of the slimmable-network toolchain (SlimCLR, arXiv
//! 2209.15525).
//!
//! - [`model`]: [`SlimNet`], the slimmable network with switchable BatchNorm and probes,
//!   interpreted from slim-core's architecture description;
//! - [`checkpoint`]: saving a [`SlimNet`] as a slim-core checkpoint with reference
//!   outputs, and loading one back into a fresh var store;
//! - [`pretrain`]: SlimCLR pretraining ([`pretrain::Trainer`]), optionally keeping
//!   trajectory checkpoints;
//! - [`twa`]: trainable weight averaging in the span of trajectory checkpoints;
//! - [`eval`]: kNN and switchable linear evaluation per width, BatchNorm recomputation;
//! - [`recalibrate`]: a checkpoint's BatchNorm statistics recomputed on a new domain;
//! - [`color`]: the color augmentations batched on the training device.

pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod color;
mod error;
pub mod eval;
pub mod head;
pub mod loss;
pub mod model;
pub mod optim;
pub mod pretrain;
pub mod recalibrate;
pub mod twa;

pub use error::Error;
pub use model::SlimNet;
