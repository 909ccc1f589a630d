//! `slim-train strip`: a checkpoint without its training state (projection heads,
//! optimizer, MoCo key encoder and queue, the resume state): the model's weights, its
//! reference outputs and its recalibration record, bit for bit, as `slim-export` and the
//! evaluations read them. About half the size of a pretraining checkpoint; it no longer
//! resumes training.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use slim_core::checkpoint::names;

use super::args::{make_parent, new_checkpoint_path};

#[derive(Debug, Args)]
pub struct StripArgs {
    /// The checkpoint to read (never overwritten).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Where to write the stripped checkpoint (a file other than --checkpoint).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn strip(a: &StripArgs) -> Result<()> {
    new_checkpoint_path(&a.checkpoint, &a.out)?;
    let c = slim_core::checkpoint::load(&a.checkpoint)?;
    let all = c.tensors.len();
    let kept: BTreeMap<_, _> = (c.tensors.into_iter())
        .filter(|(name, _)| !name.starts_with(names::TRAIN))
        .collect();
    make_parent(&a.out)?;
    slim_core::checkpoint::save_recalibrated(
        &a.out,
        &c.config,
        &kept,
        None,
        c.recalibration.as_ref(),
    )?;
    let mib =
        |p: &std::path::Path| std::fs::metadata(p).map_or(0.0, |m| m.len() as f64 / 1048576.0);
    println!(
        "{} tensors kept, {} of training state dropped: {} ({:.1} MiB) -> {} ({:.1} MiB)",
        kept.len(),
        all - kept.len(),
        a.checkpoint.display(),
        mib(&a.checkpoint),
        a.out.display(),
        mib(&a.out)
    );
    Ok(())
}
