//! Shared by the test binaries that train: a few real Fashion-MNIST images (tests skip
//! when the Debian package is absent), a small model and a fast pretraining config.
#![allow(dead_code)] // each test binary uses its own part

use std::path::Path;
use std::sync::Arc;

use slim_core::{Backbone, ModelConfig};
use slim_data::{Dataset, Split, Subset};
use slim_train::optim::{OptimizerConfig, OptimizerKind};
use slim_train::pretrain::{Framework, PretrainConfig};

pub const FASHION: &str = "/usr/share/datasets/fashion-mnist";

/// The trainer seeds libtorch's process-wide generator (model initialisation, MoCo's
/// queue), so tests in this binary run one at a time to stay reproducible.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn data(n: usize) -> Option<Arc<dyn Dataset>> {
    if !Path::new(FASHION).exists() {
        eprintln!("skipped: {FASHION} is not installed (tools/setup.sh installs it)");
        return None;
    }
    Some(Arc::new(Subset::evenly(
        Arc::from(slim_data::open(Path::new(FASHION), Split::Train).unwrap()),
        n,
    )))
}

pub fn model(ds: &dyn Dataset, backbone: Backbone) -> ModelConfig {
    let mut m = ModelConfig::new(
        backbone,
        1,
        16,
        ds.class_names().to_vec(),
        vec![0.29],
        vec![0.35],
    );
    m.widths = slim_test_utils::widths(&[1.0, 0.5]);
    m
}

pub fn config(framework: Framework) -> PretrainConfig {
    PretrainConfig {
        framework,
        epochs: 4,
        batch_size: 8,
        lr: 0.05,
        warmup_epochs: 1,
        optimizer: OptimizerConfig::new(OptimizerKind::Sgd, 0.9, 1e-4),
        temperature: 0.5,
        slow_start_epoch: 2,
        slim_start_lr: None,
        distill: true,
        distill_t_student: 5.0,
        distill_t_teacher: 5.0,
        reweight: true,
        alone: None,
        decay: Default::default(),
        smoothed: None,
        head_hidden: 64,
        head_out: 16,
        head_layout: slim_train::pretrain::config::HEAD_LAYOUT,
        predictor_hidden: 32,
        moco_queue: 32,
        bn_splits: if framework == Framework::MocoV2 { 2 } else { 1 },
        ranks: 1,
        sync_bn: false,
        moco_momentum: 0.9,
        augmentation: Some(framework.default_augmentation()),
        crop_scale: (0.2, 1.0),
        seed: 5,
        checkpoint_every: 3,
        trajectory: None,
        twa: None,
        bf16: false,
        channels_last: false,
        augment_on_device: false,
    }
}
