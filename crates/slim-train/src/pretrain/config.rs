//! What defines a pretraining run and where it stands: both are stored in every
//! checkpoint it writes (the config decides what a resumed run is).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use slim_core::Width;
use slim_core::checkpoint::Precision;
use slim_data::augment::Augment;

use crate::optim::{Decay, OptimizerConfig};
use crate::twa::TwaConfig;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Framework {
    Simclr,
    MocoV2,
    MocoV3,
}

impl Framework {
    pub fn name(self) -> &'static str {
        match self {
            Framework::Simclr => "SimCLR",
            Framework::MocoV2 => "MoCo v2",
            Framework::MocoV3 => "MoCo v3",
        }
    }

    /// The contrastive temperature τ: MoCo v2's 0.2 and MoCo v3's 1.0 from SlimCLR's
    /// scripts; SimCLR 0.5, the SimCLR paper's CIFAR value, where SlimCLR's ImageNet code
    /// has 0.1 (our runs are CIFAR-sized).
    pub fn default_temperature(self) -> f64 {
        match self {
            Framework::Simclr => 0.5,
            Framework::MocoV2 => 0.2,
            Framework::MocoV3 => 1.0,
        }
    }

    /// The smallest random-resized-crop scale of SlimCLR's augmentations
    /// (`dataset/dataloader.py`): SimCLR 0.08, MoCo v2 0.2, MoCo v3 its `--crop-min`
    /// default 0.2.
    pub fn default_crop_min_scale(self) -> f64 {
        match self {
            Framework::Simclr => 0.08,
            Framework::MocoV2 | Framework::MocoV3 => 0.2,
        }
    }

    /// SlimCLR's distillation temperatures (student, teacher) for the framework, from its
    /// reference scripts: 5 and 5 on the raw cosines of SimCLR and MoCo v2, 1 and 1 on
    /// MoCo v3's logits.
    pub fn distill_temperatures(self) -> (f64, f64) {
        match self {
            Framework::Simclr | Framework::MocoV2 => (5.0, 5.0),
            Framework::MocoV3 => (1.0, 1.0),
        }
    }

    /// The views' augmentations of SlimCLR's `dataset/dataloader.py`: SimCLR's, MoCo v2's,
    /// and MoCo v3's asymmetric pair.
    pub fn default_augmentation(self) -> Augmentation {
        match self {
            Framework::Simclr => Augmentation::Simclr,
            Framework::MocoV2 => Augmentation::MocoV2,
            Framework::MocoV3 => Augmentation::MocoV3,
        }
    }

    pub(super) fn has_key_encoder(self) -> bool {
        self != Framework::Simclr
    }
}

/// The augmentations a run draws its two views from (before `crop_scale` sets the crop).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Augmentation {
    /// [`Augment::simclr`] for both views.
    Simclr,
    /// [`Augment::moco_v2`] for both views.
    MocoV2,
    /// [`Augment::moco_v3`]: blur on the first view, solarization on some second views.
    MocoV3,
}

impl Augmentation {
    /// One augmentation per view, at `size` pixels.
    pub fn views(self, size: usize) -> Vec<Augment> {
        match self {
            Augmentation::Simclr => vec![Augment::simclr(size)],
            Augmentation::MocoV2 => vec![Augment::moco_v2(size)],
            Augmentation::MocoV3 => Augment::moco_v3(size).to_vec(),
        }
    }
}

/// Smoothed InfoNCE (arXiv 2212.07158): the final α, the negatives that share it, and
/// when it applies.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Smoothing {
    pub alpha: f64,
    pub top_k: usize,
    pub schedule: crate::loss::AlphaSchedule,
}

fn one() -> usize {
    1
}

/// The generation of the heads' layout: 1 since each framework has the reference's head
/// ([`crate::head::HeadLayout`]).
pub const HEAD_LAYOUT: u32 = 1;

/// Everything that defines a pretraining run; stored in every checkpoint it writes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PretrainConfig {
    pub framework: Framework,
    pub epochs: usize,
    pub batch_size: usize,
    /// Peak learning rate (already scaled for the batch size).
    pub lr: f64,
    pub warmup_epochs: usize,
    pub optimizer: OptimizerConfig,
    pub temperature: f64,
    /// Epoch at which the sub-widths join; 0 trains every width from the start.
    pub slow_start_epoch: usize,
    /// Peak learning rate of the cosine from the slow start's switch on (already scaled
    /// for the batch size); `None`: [`PretrainConfig::lr`], the cosine simply continues.
    #[serde(default)]
    pub slim_start_lr: Option<f64>,
    pub distill: bool,
    pub distill_t_student: f64,
    pub distill_t_teacher: f64,
    pub reweight: bool,
    /// How the learning rate falls after the warmup (pretraining: the cosine; TWA: steps).
    #[serde(default)]
    pub decay: Decay,
    /// Train this width's sub-network by itself (no other width, no distillation): the
    /// network of that size pretrained alone, the baseline SlimCLR's claim is measured
    /// against. SimCLR only (MoCo's key encoder is the full width).
    #[serde(default)]
    pub alone: Option<Width>,
    /// Smoothed InfoNCE; `None` for plain InfoNCE.
    pub smoothed: Option<Smoothing>,
    /// Hidden size of the projection head at full width (SlimCLR: the backbone's features
    /// for SimCLR and MoCo v2, twice that for MoCo v3).
    pub head_hidden: usize,
    pub head_out: usize,
    /// The heads' layout generation ([`HEAD_LAYOUT`] for runs of this version; 0 for
    /// checkpoints written before the heads followed the reference per framework).
    #[serde(default)]
    pub head_layout: u32,
    /// Hidden size of MoCo v3's predictor (at full width).
    #[serde(default)]
    pub predictor_hidden: usize,
    pub moco_queue: usize,
    /// The groups of each batch that BatchNorm's training statistics are computed over
    /// (see [`crate::SlimNet::set_bn_splits`]): what as many devices with per-device
    /// BatchNorm compute. MoCo v2 also shuffles its key batch across them (its one-device
    /// shuffling BN). 1 turns that off. (Named `moco_bn_splits` in checkpoints of earlier
    /// versions, where only MoCo v2 used it.)
    #[serde(default = "one", alias = "moco_bn_splits")]
    pub bn_splits: usize,
    /// Data-parallel ranks the run trains on, each with `batch_size` images of every
    /// global batch (1: one process).
    #[serde(default = "one")]
    pub ranks: usize,
    /// Data-parallel: BatchNorm's training statistics over every rank's batch (PyTorch's
    /// SyncBatchNorm) instead of each rank's own.
    #[serde(default)]
    pub sync_bn: bool,
    /// The key encoder's momentum (MoCo v3: its start, raised to 1 along a cosine).
    pub moco_momentum: f64,
    /// The views' augmentations; `None` in checkpoints of versions before MoCo v3 had its
    /// own, whose runs go on as they started ([`PretrainConfig::augmentation`]).
    #[serde(default)]
    pub augmentation: Option<Augmentation>,
    /// Random-resized-crop scale range.
    pub crop_scale: (f32, f32),
    pub seed: u64,
    pub checkpoint_every: usize,
    /// Keep trajectory checkpoints (for TWA / SWA) in `out/trajectory`.
    #[serde(default)]
    pub trajectory: Option<TrajectoryConfig>,
    /// Train in the span of these checkpoints instead of in weight space (TWA).
    #[serde(default)]
    pub twa: Option<TwaConfig>,
    /// Mixed precision: convolutions in bfloat16, the rest in float32.
    #[serde(default)]
    pub bf16: bool,
    /// Channels-last (NHWC) weights and inputs.
    #[serde(default)]
    pub channels_last: bool,
    /// Color augmentations (jitter, grayscale, blur, solarization) batched on the training device
    /// instead of on the loader's CPU threads.
    #[serde(default)]
    pub augment_on_device: bool,
}

impl PretrainConfig {
    /// The views' augmentations: as set, or for a checkpoint that predates the field what
    /// its run started with (SimCLR's for SimCLR, MoCo v2's for both MoCo).
    pub fn augmentation(&self) -> Augmentation {
        self.augmentation.unwrap_or(match self.framework {
            Framework::Simclr => Augmentation::Simclr,
            Framework::MocoV2 | Framework::MocoV3 => Augmentation::MocoV2,
        })
    }
}

/// When trajectory checkpoints are kept, and at which precision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrajectoryConfig {
    pub every: usize,
    pub unit: TrajectoryUnit,
    pub precision: Precision,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrajectoryUnit {
    Steps,
    Epochs,
}

/// The trajectory checkpoints a run will write, known before it starts.
#[derive(Clone, Debug)]
pub struct TrajectoryPlan {
    pub dir: PathBuf,
    /// Checkpoints still to be written by this run.
    pub count: usize,
    /// Bytes of tensor data per checkpoint (the header adds a few KiB).
    pub bytes_each: usize,
}

/// Where a run stands; saved as the checkpoint's train state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    pub config: PretrainConfig,
    /// Optimiser steps taken.
    pub step: usize,
    pub epoch: usize,
    /// Next batch position within `epoch`.
    pub position: usize,
    pub queue_ptr: usize,
    /// Corrupt images skipped so far.
    pub skipped: usize,
}

impl TrainState {
    /// Reads a checkpoint's train state (JSON). The heads' layout generation is read
    /// first, so that a run of an older slim-train is named as such even when its state
    /// no longer parses; the error says what is wrong, for the caller to prefix.
    pub fn parse(text: &str) -> Result<TrainState, String> {
        let value = serde_json::from_str::<serde_json::Value>(text).ok();
        let layout = value
            .as_ref()
            .and_then(|v| v["config"]["head_layout"].as_u64())
            .unwrap_or(0);
        if layout != u64::from(HEAD_LAYOUT) {
            return Err(format!(
                "its heads have layout generation {layout} (an older slim-train: one Linear-BN-ReLU-Linear head for every framework); this version builds each framework's reference head (generation {HEAD_LAYOUT}) and cannot train them on. Its model weights still export and evaluate; pretrain again to train on"
            ));
        }
        let mut state: TrainState = serde_json::from_str(text)
            .map_err(|e| format!("its training state does not parse: {e}"))?;
        // Earlier versions stored MoCo v2's split (default 8) for every framework and
        // applied it to MoCo v2 only.
        let old_name = value.is_some_and(|v| v["config"].get("moco_bn_splits").is_some());
        if old_name && state.config.framework != Framework::MocoV2 {
            state.config.bn_splits = 1;
        }
        Ok(state)
    }
}
