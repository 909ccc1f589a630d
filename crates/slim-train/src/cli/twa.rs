//! `slim-train twa`: trainable weight averaging over trajectory checkpoints, then (with
//! `--compare`) the last checkpoint, SWA and TWA evaluated side by side.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use slim_cli::Reporter;
use slim_data::Split;

use super::args::{DataArgs, DeviceArgs, EvalLimits, above_zero, by_name, positive};
use super::eval::{Embedded, EvalImages, features};
use super::pretrain::mib;
use super::reporter;
use crate::checkpoint;
use crate::eval::{self, BatchNormData, LinearConfig};
use crate::optim::{Decay, OptimizerConfig, OptimizerKind};
use crate::pretrain::{PretrainConfig, TrainState, Trainer};
use crate::twa::{Compared, Grouping, TwaConfig, comparison_table, swa_network};

#[derive(Debug, Args)]
pub struct TwaArgs {
    /// Trajectory checkpoints: files, or folders of them (e.g. RUN/trajectory, written by
    /// `pretrain --trajectory-every`). The last one (in the order given, folders sorted by
    /// name) is the "last checkpoint" of the comparison and supplies the objective's
    /// settings.
    #[arg(long, num_args = 1.., required = true)]
    pub checkpoints: Vec<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Output folder: twa.safetensors, swa.safetensors, checkpoint.safetensors (to
    /// resume), metrics.jsonl, comparison.{json,md}.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub resume: bool,
    #[arg(long, default_value_t = 2, value_parser = positive)]
    pub epochs: usize,
    /// Learning rate per 256 images (scaled linearly with the batch size); nblt/TWA's
    /// CIFAR runs use 2 at batch 128.
    #[arg(long, default_value_t = 4.0, value_parser = above_zero)]
    pub lr: f64,
    /// How the rate falls: step (nblt/TWA's: tenfold at half and at three quarters of the
    /// epochs) or cosine (to 0).
    #[arg(long, default_value = "step", value_parser = by_name::<Decay>)]
    pub schedule: Decay,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Weight decay on the coefficients (the weights' norm in the span); nblt/TWA's 1e-5.
    #[arg(long, default_value_t = 1e-5)]
    pub weight_decay: f64,
    /// Build the basis only from the trajectory checkpoints taken at or after this step
    /// [default: from the slow start's switch on, where every width trains; all of them
    /// for a run without a slow start].
    #[arg(long)]
    pub from_step: Option<usize>,
    /// One coefficient per checkpoint for all weights, or one per layer block.
    #[arg(long, default_value = "global", value_parser = by_name::<Grouping>)]
    pub grouping: Grouping,
    /// Default: the pretraining run's.
    #[arg(long, value_parser = positive)]
    pub batch_size: Option<usize>,
    /// Training images used to recompute each width's BatchNorm statistics.
    #[arg(long, default_value_t = 5000, value_parser = positive)]
    pub bn_images: usize,
    /// Refuse a basis larger than this (checkpoints x parameters x 4 bytes).
    #[arg(long, default_value_t = 4096, value_parser = positive)]
    pub max_basis_mib: usize,
    /// Batches of the fixed objective reported for the SWA and TWA points.
    #[arg(long, default_value_t = 10, value_parser = positive)]
    pub objective_batches: usize,
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Also evaluate the last checkpoint, SWA and TWA per width (kNN and linear probe).
    #[arg(long)]
    pub compare: bool,
    /// The comparison's evaluation images.
    #[command(flatten)]
    pub limits: EvalLimits,
    /// Comparison: linear probe epochs.
    #[arg(long, default_value_t = 30, value_parser = positive)]
    pub probe_epochs: usize,
    #[arg(long)]
    pub quiet: bool,
}

pub fn twa(a: &TwaArgs) -> Result<()> {
    let files = crate::twa::list_checkpoints(&a.checkpoints)?;
    let last_path = files
        .last()
        .with_context(|| format!("no checkpoints in {:?}", a.checkpoints))?
        .clone();
    let last = slim_core::checkpoint::load(&last_path)?;
    let text = last.train_state.as_deref().with_context(|| {
        format!(
            "{}: holds no pretraining state: not a checkpoint of `slim-train pretrain`",
            last_path.display()
        )
    })?;
    let state =
        TrainState::parse(text).map_err(|msg| anyhow::anyhow!("{}: {msg}", last_path.display()))?;
    let files = crate::twa::basis_checkpoints(&files, a.from_step, state.config.slow_start_epoch)?;
    eprintln!(
        "TWA basis: {} of the trajectory's checkpoints ({})",
        files.len(),
        match a.from_step {
            Some(n) => format!("from step {n}"),
            None => format!(
                "from the slow start's switch, epoch {}",
                state.config.slow_start_epoch
            ),
        }
    );
    let model = last.config.clone();
    let ds = a.data.open(Split::Train)?;
    if ds.class_names() != model.class_names.as_slice() {
        bail!(
            "{}: its classes differ from the checkpoints' {:?}",
            a.data.data.display(),
            model.class_names
        );
    }
    let batch_size = a.batch_size.unwrap_or(state.config.batch_size);
    let config = PretrainConfig {
        epochs: a.epochs,
        batch_size,
        lr: a.lr * batch_size as f64 / 256.0,
        warmup_epochs: 0,
        optimizer: OptimizerConfig::new(OptimizerKind::Sgd, a.momentum, a.weight_decay),
        decay: a.schedule,
        slow_start_epoch: 0,
        trajectory: None,
        twa: Some(TwaConfig {
            checkpoints: files.clone(),
            grouping: a.grouping,
            max_basis_bytes: a.max_basis_mib << 20,
        }),
        ..state.config
    };
    let device = a.device.device()?;
    eprintln!("TWA: building the basis of {} checkpoints", files.len());
    let mut trainer = Trainer::new(
        &model,
        config,
        ds.clone(),
        &a.out,
        a.resume,
        device,
        a.data.workers,
    )?;
    let report = trainer
        .basis_report()
        .expect("a TWA run has a basis")
        .clone();
    eprintln!(
        "TWA over {} checkpoints ({} parameters): basis {:.1} MiB, rank {}{}",
        report.checkpoints,
        report.parameters,
        mib(report.basis_bytes),
        report
            .ranks
            .iter()
            .map(|(b, r)| format!("{b} {r}"))
            .collect::<Vec<_>>()
            .join(", "),
        match report.dependent.len() {
            0 => String::new(),
            n => format!("; {n} (checkpoint, block) pairs were linearly dependent and dropped"),
        }
    );
    let swa_objective = (!a.resume)
        .then(|| trainer.objective(a.objective_batches))
        .transpose()?;
    trainer.run(a.max_steps, &mut reporter(a.quiet))?;
    if !trainer.finished() {
        println!(
            "stopped at step {}; continue with --resume (TWA and SWA are written at the end)",
            trainer.state().step
        );
        return Ok(());
    }
    let twa_objective = trainer.objective(a.objective_batches)?;
    let subspace = trainer.subspace().expect("a TWA run has a subspace");
    let off_span = subspace.off_span();
    let twa_net = trainer.net();
    let bn_data = BatchNormData {
        images: Some(a.bn_images),
        batch_size,
        workers: a.data.workers,
        seed: 0,
        // The training images, preprocessed as pretraining read them.
        resize: true,
    };
    let mut progress = reporter(a.quiet);
    eval::recompute_batchnorm(twa_net, ds.clone(), &bn_data, &mut progress)?;
    let twa_path = a.out.join("twa.safetensors");
    checkpoint::save(&twa_path, twa_net, &[])?;
    // SWA: the checkpoints' mean, BatchNorm recomputed the same way.
    let (swa_net, _swa_vs) = swa_network(subspace, &last_path, device)?;
    eval::recompute_batchnorm(&swa_net, ds.clone(), &bn_data, &mut progress)?;
    let swa_path = a.out.join("swa.safetensors");
    checkpoint::save(&swa_path, &swa_net, &[])?;
    println!(
        "objective on {} fixed batches: SWA point {}, TWA {:.4}; TWA weights off the span by {:.1e} (relative)",
        a.objective_batches,
        swa_objective.map_or("-".into(), |v| format!("{v:.4}")),
        twa_objective,
        off_span
    );
    println!("wrote {} and {}", twa_path.display(), swa_path.display());
    if !a.compare {
        return Ok(());
    }
    // The last checkpoint's BatchNorm recomputed the same way, so that the three differ
    // in their weights only.
    let (last_net, _last_vs, _) = checkpoint::load(&last_path, device)?;
    eval::recompute_batchnorm(&last_net, ds, &bn_data, &mut progress)?;
    let mut rows = Vec::new();
    for (label, net, objective, path) in [
        ("last checkpoint", &last_net, None, None),
        ("SWA", &swa_net, swa_objective, Some(&swa_path)),
        ("TWA", twa_net, Some(twa_objective), Some(&twa_path)),
    ] {
        let images = EvalImages {
            data: &a.data.data,
            limit_train: a.limits.limit_train,
            limit_test: a.limits.limit_test,
            batch_size: 256,
            workers: a.data.workers,
        };
        let Embedded { train, test, .. } = features(net, &images)?;
        let knn_top1 = eval::knn_per_width(
            &train,
            &test,
            net.config().num_classes(),
            eval::DEFAULT_KNN_K,
            eval::DEFAULT_KNN_TEMPERATURE,
        );
        let linear = LinearConfig {
            epochs: a.probe_epochs,
            ..LinearConfig::default()
        };
        eval::train_probe(net, &train, &linear, &mut Reporter::stderr())?;
        let linear_top1 = (0..net.widths().len())
            .map(|i| eval::probe_accuracy(net, &test, i).0)
            .collect();
        if let Some(p) = path {
            // The probe goes with the weights, so slim-export can ship them.
            checkpoint::save(p, net, &[])?;
        }
        rows.push(Compared {
            model: label.to_string(),
            objective,
            widths: net.widths().to_vec(),
            knn_top1,
            linear_top1,
        });
    }
    let table = comparison_table(&rows);
    println!("{table}");
    slim_core::fsutil::atomic_write(&a.out.join("comparison.md"), table.as_bytes())?;
    slim_core::fsutil::atomic_write(
        &a.out.join("comparison.json"),
        serde_json::to_string_pretty(&rows)?.as_bytes(),
    )?;
    Ok(())
}
