//! Evaluation of a slimmable backbone at each of its widths.
//!
//! - [`extract_features`]: one eval-mode pass over a dataset (no augmentation, the shared
//!   [`Normalize`] preprocessing) computing every requested width's embedding from the
//!   same batch, into a [`FeatureSet`] on the CPU;
//! - [`knn_accuracy`]: the weighted cosine kNN monitor of Wu et al. 2018 ("Unsupervised
//!   Feature Learning via Non-Parametric Instance Discrimination"), as SimCLR / MoCo
//!   reproductions report it (`k` = [`DEFAULT_KNN_K`], `T` = [`DEFAULT_KNN_TEMPERATURE`]);
//! - [`train_probe`] / [`probe_accuracy`]: SlimCLR's switchable linear evaluation. The
//!   `probe.{tag}.*` tensors inside the [`SlimNet`] are trained on precomputed features
//!   (so the backbone is frozen and BatchNorm is in eval mode by construction), all widths
//!   in one optimisation: the full width on cross-entropy, every sub-width on
//!   [`probe_loss`] (half cross-entropy, half soft cross-entropy toward the full width's
//!   prediction);
//! - [`train_probe_augmented`]: the same probe trained on the frozen backbone's features
//!   of freshly augmented images every epoch (random resized crop and flip), the
//!   protocol of published linear-evaluation numbers;
//! - [`recompute_batchnorm`]: every width's BatchNorm statistics from a dataset's clean
//!   images (for a random network, weights that were averaged: SWA, TWA, or a new
//!   domain: `slim-train recalibrate`).
//!
//! The parts: `features`, `knn`, `probe`, `probe_augmented`, `batchnorm`.

mod batchnorm;
mod features;
mod knn;
mod probe;
mod probe_augmented;

pub use batchnorm::{BatchNormData, BatchNormReport, recompute_batchnorm};
pub use features::{FeatureSet, extract_features};
pub use knn::{DEFAULT_KNN_K, DEFAULT_KNN_TEMPERATURE, knn_accuracy, knn_per_width, knn_predict};
pub use probe::{LinearConfig, probe_accuracy, probe_loss, train_probe};
pub use probe_augmented::{AugmentedImages, train_probe_augmented};
