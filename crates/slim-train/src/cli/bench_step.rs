//! `slim-train bench-step`: images/s of one slimmable training step against one
//! full-width-only step (see [`crate::bench`]).

use slim_core::Width;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use slim_core::Backbone;

use super::args::{DeviceArgs, Toggle, positive};
use crate::bench::{BenchStepConfig, bench_step, format_report};

/// A batch of at least 2 images.
fn at_least_two(s: &str) -> Result<usize, String> {
    match positive(s)? {
        1 => Err("must be at least 2 (the contrastive loss needs negatives)".into()),
        n => Ok(n),
    }
}

#[derive(Debug, Args)]
pub struct BenchStepArgs {
    /// resnet20, resnet18-cifar, resnet50 or mobilenet-v2.
    #[arg(long, default_value = "resnet20")]
    pub backbone: String,
    /// Input side in pixels.
    #[arg(long, default_value_t = 32)]
    pub image_size: usize,
    /// Image channels.
    #[arg(long, default_value_t = 3)]
    pub channels: usize,
    /// Images per view (the step sees 2 views of this many); at least 2, so that every
    /// image has a negative.
    #[arg(long, default_value_t = 64, value_parser = at_least_two)]
    pub batch: usize,
    /// Widths of the slimmable step, comma-separated; must include 1.0.
    #[arg(long, value_delimiter = ',', default_value = "1.0,0.75,0.5,0.25")]
    pub widths: Vec<Width>,
    /// Untimed steps of each kind first.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Timed steps of each kind.
    #[arg(long, default_value_t = 5, value_parser = positive)]
    pub steps: usize,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// libtorch's intra-op threads (default: libtorch's own choice).
    #[arg(long, value_parser = positive)]
    pub threads: Option<usize>,
    /// Seed of the weights and of the random inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Convolutions in bfloat16, as pretraining's --bf16; auto: on for a GPU.
    #[arg(long, value_enum, default_value = "auto")]
    pub bf16: Toggle,
    /// Channels-last weights and inputs, as pretraining's --channels-last; auto: on for
    /// a GPU.
    #[arg(long, value_enum, default_value = "auto")]
    pub channels_last: Toggle,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// `slim-train bench-step`.
pub fn run(a: &BenchStepArgs) -> Result<()> {
    let backbone = Backbone::parse(&a.backbone).with_context(|| {
        let names: Vec<_> = Backbone::ALL.iter().map(|b| b.name()).collect();
        format!("unknown backbone {:?}; known: {names:?}", a.backbone)
    })?;
    if let Some(n) = a.threads {
        tch::set_num_threads(n as i32);
    }
    let device = a.device.device()?;
    let report = bench_step(&BenchStepConfig {
        backbone,
        image_size: a.image_size,
        channels: a.channels,
        batch: a.batch,
        widths: a.widths.clone(),
        warmup: a.warmup,
        steps: a.steps,
        device,
        seed: a.seed,
        bf16: a.bf16.on(device),
        channels_last: a.channels_last.on(device),
    })?;
    print!("{}", format_report(&report));
    if let Some(p) = &a.json {
        slim_core::fsutil::atomic_write(p, serde_json::to_string_pretty(&report)?.as_bytes())?;
    }
    Ok(())
}
