//! The `slim-train` command layer: one file per subcommand, the argument structs they
//! share in [`args`]. It parses and checks arguments (clap), draws progress
//! ([`slim_cli::Reporter`]) and prints; the library modules it calls do neither.
//!
//! - [`pretrain`]: SlimCLR pretraining;
//! - [`launch`]: the ranks of a data-parallel pretraining, one process each;
//! - [`eval`]: `knn` and `linear`, evaluation per width;
//! - [`twa`]: trainable weight averaging and its comparison with the last checkpoint and SWA;
//! - [`recalibrate`]: every width's BatchNorm statistics recomputed on a new domain;
//! - [`strip`]: a checkpoint without its training state, for shipping the model;
//! - [`bench_step`]: the speed of one training step, slimmable against full width only.

pub mod args;
pub mod bench_step;
pub mod eval;
pub mod launch;
pub mod pretrain;
pub mod recalibrate;
pub mod strip;
pub mod twa;

use anyhow::Result;
use clap::{Parser, Subcommand};
use slim_cli::Reporter;

pub use args::{DataArgs, DeviceArgs, Toggle};
pub use bench_step::BenchStepArgs;
pub use eval::{EvalArgs, KnnArgs, LinearArgs};
pub use launch::LaunchArgs;
pub use pretrain::PretrainArgs;
pub use recalibrate::RecalibrateArgs;
pub use strip::StripArgs;
pub use twa::TwaArgs;

#[derive(Debug, Parser)]
#[command(
    name = "slim-train",
    about = "Pretrain and evaluate slimmable networks (SlimCLR)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Contrastive self-supervised pretraining of every width at once.
    Pretrain(PretrainArgs),
    /// Start N ranks of a data-parallel pretraining on this machine, one process each,
    /// with the variables torchrun sets: `launch --nproc 2 -- pretrain --data D --out O`.
    Launch(LaunchArgs),
    /// Weighted cosine kNN accuracy of each width's frozen features.
    Knn(KnnArgs),
    /// Train the switchable linear probe on frozen features and write it into the
    /// checkpoint, so that slim-export puts it into each width's graph.
    Linear(LinearArgs),
    /// Trainable weight averaging: train in the span of trajectory checkpoints from
    /// their mean, recompute each width's BatchNorm, and (with --compare) evaluate the
    /// last checkpoint, SWA and TWA side by side.
    Twa(TwaArgs),
    /// Recompute every width's BatchNorm running statistics on other images (a new
    /// domain) and write them as a new checkpoint; no weight changes. Reads the train
    /// split of --data (an ImageFolder without train/ and test/ whole); labels are not
    /// used.
    Recalibrate(RecalibrateArgs),
    /// Write a checkpoint without its training state (heads, optimizer, MoCo keys, resume
    /// state): the weights that slim-export and the evaluations need, about half the size.
    Strip(StripArgs),
    /// Benchmark: images/s of one slimmable training step (every width) against one
    /// full-width-only step on the same random batch, with the ideal (MACs) ratio.
    BenchStep(BenchStepArgs),
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Pretrain(a) => pretrain::pretrain(&a),
        Command::Launch(a) => launch::launch(&a),
        Command::Knn(a) => eval::knn(&a),
        Command::Linear(a) => eval::linear(&a),
        Command::Twa(a) => twa::twa(&a),
        Command::Recalibrate(a) => recalibrate::recalibrate(&a),
        Command::Strip(a) => strip::strip(&a),
        Command::BenchStep(a) => bench_step::run(&a),
    }
}

/// The progress display of a training run: nothing but warnings with `--quiet`.
pub(crate) fn reporter(quiet: bool) -> Reporter {
    if quiet {
        Reporter::hidden()
    } else {
        Reporter::stderr()
    }
}
