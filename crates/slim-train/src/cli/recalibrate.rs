//! `slim-train recalibrate`: every width's BatchNorm statistics recomputed on the user's
//! own images (a new domain), written as a new checkpoint that slim-export takes as it is.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use slim_data::Split;

use super::args::{DataArgs, DeviceArgs, make_parent, new_checkpoint_path, positive};
use super::reporter;
use crate::eval::BatchNormData;
use crate::recalibrate::recalibrate as run;

#[derive(Debug, Args)]
pub struct RecalibrateArgs {
    /// The checkpoint to recalibrate (read only, never overwritten).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The new domain's images (`--data`, `--limit`, `--workers`).
    #[command(flatten)]
    pub data: DataArgs,
    /// Where to write the recalibrated checkpoint (a file other than --checkpoint).
    #[arg(long)]
    pub out: PathBuf,
    /// Images per forward pass; every BatchNorm normalizes each batch by its own
    /// statistics while the statistics are measured.
    #[arg(long, default_value_t = 256, value_parser = positive)]
    pub batch_size: usize,
    /// Seed of the order the images are batched in.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Accept images of another size or channel count than the checkpoint's input,
    /// converted as slim-runtime converts them (channels, shorter side resized, centre
    /// crop); without it they are refused.
    #[arg(long)]
    pub resize: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[arg(long)]
    pub quiet: bool,
}

pub fn recalibrate(a: &RecalibrateArgs) -> Result<()> {
    new_checkpoint_path(&a.checkpoint, &a.out)?;
    let model = slim_core::checkpoint::load(&a.checkpoint)?.config;
    let ds = a.data.open(Split::Train)?;
    if ds.len() < a.batch_size.max(2) {
        bail!(
            "--data {}: {} images{}, fewer than one batch (--batch-size {}): give more images or a smaller --batch-size",
            a.data.data.display(),
            ds.len(),
            match a.data.limit {
                Some(n) => format!(" with --limit {n}"),
                None => String::new(),
            },
            a.batch_size
        );
    }
    let device = a.device.device()?;
    make_parent(&a.out)?;
    eprintln!(
        "recalibrating {} ({}, widths {:?}) on {}",
        a.checkpoint.display(),
        model.backbone.name(),
        model.widths,
        ds.describe()
    );
    let bn = BatchNormData {
        images: None,
        batch_size: a.batch_size,
        workers: a.data.workers,
        seed: a.seed,
        resize: a.resize,
    };
    let done = run(
        &a.checkpoint,
        &a.out,
        &a.data.data,
        Split::Train,
        ds,
        &bn,
        device,
        &mut reporter(a.quiet),
    )?;
    for s in &done.report.skipped {
        eprintln!("warning: skipped {s}");
    }
    println!(
        "BatchNorm statistics of {} width(s) recomputed on {} images ({} batches); wrote {}",
        model.widths.len(),
        done.report.images,
        done.report.batches,
        a.out.display()
    );
    Ok(())
}
