//! `slim-train pretrain`: SlimCLR pretraining of every width at once.

use slim_core::Width;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use slim_core::checkpoint::Precision;
use slim_core::{Backbone, ModelConfig};
use slim_data::{Dataset, Split};
use slim_dist::{Backend, Group, Rendezvous};
use tch::Device;

use super::args::{DataArgs, DeviceArgs, Toggle, above_zero, by_name, positive, unit_fraction};
use super::reporter;
use crate::loss::AlphaSchedule;
use crate::optim::{OptimizerConfig, OptimizerKind};
use crate::pretrain::config::Smoothing;
use crate::pretrain::{
    Augmentation, Framework, Placement, PretrainConfig, Trainer, TrajectoryConfig, TrajectoryUnit,
};

#[derive(Debug, Args)]
pub struct PretrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Output folder: checkpoint.safetensors, metrics.jsonl.
    #[arg(long)]
    pub out: PathBuf,
    /// Continue the run in --out exactly where its last checkpoint stopped.
    #[arg(long)]
    pub resume: bool,
    /// resnet20, resnet18-cifar, resnet50 or mobilenet-v2.
    #[arg(long, default_value = "resnet20")]
    pub backbone: String,
    /// Widths, comma-separated; must include 1.0.
    #[arg(long, value_delimiter = ',', default_value = "1.0,0.75,0.5,0.25")]
    pub widths: Vec<Width>,
    /// Input side in pixels (default: the dataset's first image's shorter side).
    #[arg(long)]
    pub image_size: Option<usize>,
    /// simclr, moco-v2 or moco-v3.
    #[arg(long, default_value = "simclr", value_parser = by_name::<Framework>)]
    pub framework: Framework,
    #[arg(long, default_value_t = 100, value_parser = positive)]
    pub epochs: usize,
    #[arg(long, default_value_t = 256, value_parser = positive)]
    pub batch_size: usize,
    /// Learning rate per 256 images (scaled linearly with the batch size).
    #[arg(long, default_value_t = 0.5, value_parser = above_zero)]
    pub lr: f64,
    /// sgd or lars.
    #[arg(long, default_value = "sgd", value_parser = by_name::<OptimizerKind>)]
    pub optimizer: OptimizerKind,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 10)]
    pub warmup_epochs: usize,
    /// Contrastive temperature (default per framework: SimCLR 0.5, MoCo v2 0.2, MoCo v3
    /// 1.0; see the README's table of defaults).
    #[arg(long, value_parser = above_zero)]
    pub temperature: Option<f64>,
    /// Epoch at which the sub-widths join (default: half of training).
    #[arg(long, conflicts_with = "no_slow_start")]
    pub slow_start_epoch: Option<usize>,
    /// Peak learning rate of the one cosine from the slow start's switch on, per 256
    /// images as --lr (default: --lr, so the cosine simply continues; SlimCLR's MoCo v3
    /// script raises it, 1.2 to 3.2).
    #[arg(long, conflicts_with = "no_slow_start", value_parser = above_zero)]
    pub slim_start_lr: Option<f64>,
    /// Train every width from the first step.
    #[arg(long)]
    pub no_slow_start: bool,
    /// Turn off online distillation from the full width.
    #[arg(long)]
    pub no_distill: bool,
    /// Turn off loss re-weighting by model size.
    #[arg(long)]
    pub no_reweight: bool,
    /// Train only this width's sub-network, by itself: no other width, no distillation,
    /// its own BatchNorm and head slice (the same network pretrained alone, SlimCLR's
    /// baseline). One of --widths; SimCLR only.
    #[arg(long, value_name = "WIDTH", conflicts_with_all = ["slow_start_epoch", "slim_start_lr", "no_slow_start", "no_distill", "no_reweight", "distill_temperature"])]
    pub train_alone: Option<Width>,
    /// Distillation temperatures, student and teacher (default: SlimCLR's, 5 5 for SimCLR
    /// and MoCo v2, 1 1 for MoCo v3).
    #[arg(long, num_args = 2, value_names = ["STUDENT", "TEACHER"], value_parser = above_zero)]
    pub distill_temperature: Option<Vec<f64>>,
    /// Use smoothed InfoNCE with this final alpha (arXiv 2212.07158).
    #[arg(long, value_parser = unit_fraction)]
    pub smoothed_alpha: Option<f64>,
    /// Negatives that share the smoothed alpha.
    #[arg(long, default_value_t = 5, value_parser = positive)]
    pub smoothed_top_k: usize,
    /// Alpha is 0 before this epoch, then the full alpha (light-moco's --warm).
    #[arg(long, default_value_t = 0, conflicts_with = "smoothed_cosine")]
    pub smoothed_warm_epochs: usize,
    /// Alpha rises from 0 along a cosine over the run instead (light-moco's --smooth_cos).
    #[arg(long)]
    pub smoothed_cosine: bool,
    /// Projection head output size.
    #[arg(long, default_value_t = 128, value_parser = positive)]
    pub head_dim: usize,
    /// MoCo v3's predictor hidden size at full width (default: SlimCLR's ratio, 16 x
    /// --head-dim; smaller suits small backbones).
    #[arg(long, value_parser = positive)]
    pub predictor_hidden: Option<usize>,
    /// MoCo v2's queue of keys.
    #[arg(long, default_value_t = 4096, value_parser = positive)]
    pub moco_queue: usize,
    /// BatchNorm's training statistics over this many groups of the batch (sample i in
    /// group i mod N), as N devices with per-device BatchNorm compute them; MoCo v2 also
    /// shuffles its key batch across them (MoCo's shuffling BN). Default: MoCo v2 in one
    /// process 8 (its one-GPU demo), otherwise 1 (off). The batch must split into groups
    /// of two or more.
    #[arg(long, alias = "moco-bn-splits", value_parser = positive)]
    pub bn_splits: Option<usize>,
    /// Key-encoder momentum (MoCo v3: the first step's, rising to 1 along a cosine).
    #[arg(long, default_value_t = 0.99)]
    pub moco_momentum: f64,
    /// The views' augmentations: simclr, moco-v2 (both views alike) or moco-v3 (blur on
    /// the first view, solarization on a fifth of the second; blur only from 64 px).
    /// Default: the framework's.
    #[arg(long, value_parser = by_name::<Augmentation>)]
    pub augmentation: Option<Augmentation>,
    /// Smallest random-resized-crop scale (default per framework: SimCLR 0.08, MoCo v2 and
    /// v3 0.2; 0.2 also suits 28 px images).
    #[arg(long, value_parser = unit_fraction)]
    pub crop_min_scale: Option<f64>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Steps between checkpoints.
    #[arg(long, default_value_t = 100, value_parser = positive)]
    pub checkpoint_every: usize,
    /// Stop after this many steps (a resumed run continues from there).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Keep a trajectory checkpoint (model + head) in OUT/trajectory every N steps or
    /// epochs, for `slim-train twa`.
    #[arg(long, value_parser = positive)]
    pub trajectory_every: Option<usize>,
    /// steps or epochs.
    #[arg(long, default_value = "steps", value_parser = by_name::<TrajectoryUnit>)]
    pub trajectory_unit: TrajectoryUnit,
    /// f32, f16 or bf16 (half the size).
    #[arg(long, default_value = "f32")]
    pub trajectory_precision: Precision,
    /// Mixed precision (convolutions in bfloat16); auto: on when training on a GPU.
    #[arg(long, value_enum, default_value = "auto")]
    pub bf16: Toggle,
    /// Channels-last (NHWC) weights and inputs; auto: on when training on a GPU.
    #[arg(long, value_enum, default_value = "auto")]
    pub channels_last: Toggle,
    /// Color augmentations batched on the training device instead of the loader's CPU
    /// threads (geometry stays on the CPU); auto: on when training on a GPU.
    #[arg(long, value_enum, default_value = "auto")]
    pub augment_on_device: Toggle,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Data-parallel runs: BatchNorm's training statistics over every rank's batch
    /// (PyTorch's SyncBatchNorm; SlimCLR's --sync_bn), instead of each rank's own. No
    /// effect in one process.
    #[arg(long)]
    pub sync_bn: bool,
    /// Data-parallel runs (launched by `slim-train launch` or torchrun, which set RANK,
    /// WORLD_SIZE, MASTER_ADDR, MASTER_PORT): seconds a rank waits for the others, to
    /// join and in each collective, before it stops with an error.
    #[arg(long, default_value_t = 1800, value_parser = positive)]
    pub dist_timeout: usize,
}

/// The model config for `ds`: channels and size from its first decodable image, classes
/// from its folder names, mean/std measured on up to 2000 of its images.
impl PretrainArgs {
    /// `--bn-splits`, or the framework's default on `ranks` ranks: 8 for MoCo v2 on one
    /// (its one-GPU demo), else 1 (several ranks shuffle MoCo v2's keys across them).
    pub fn bn_splits(&self, ranks: usize) -> usize {
        self.bn_splits.unwrap_or(match self.framework {
            Framework::MocoV2 if ranks == 1 => 8,
            _ => 1,
        })
    }

    /// `--temperature`, or the framework's default.
    pub fn temperature(&self) -> f64 {
        self.temperature
            .unwrap_or(self.framework.default_temperature())
    }

    /// `--augmentation`, or the framework's default.
    pub fn augmentation(&self) -> Augmentation {
        self.augmentation
            .unwrap_or(self.framework.default_augmentation())
    }

    /// `--crop-min-scale`, or the framework's default.
    pub fn crop_min_scale(&self) -> f64 {
        self.crop_min_scale
            .unwrap_or(self.framework.default_crop_min_scale())
    }
}

pub fn model_config(
    ds: &dyn Dataset,
    backbone: &str,
    widths: &[Width],
    image_size: Option<usize>,
) -> Result<ModelConfig> {
    let backbone = Backbone::parse(backbone).with_context(|| {
        let names: Vec<_> = Backbone::ALL.iter().map(|b| b.name()).collect();
        format!("unknown backbone {backbone:?}; known: {names:?}")
    })?;
    let first = (0..ds.len().min(50))
        .find_map(|i| ds.image(i).ok())
        .with_context(|| format!("{}: none of the first images decodes", ds.describe()))?;
    let size = image_size.unwrap_or(first.height.min(first.width));
    let channels = first.channels;
    let (mean, std) = slim_data::transform::channel_stats(ds, channels, size, 2000);
    let mut config = ModelConfig::new(
        backbone,
        channels,
        size,
        ds.class_names().to_vec(),
        mean,
        std,
    );
    config.widths = widths.to_vec();
    Ok(config.validated()?)
}

pub fn pretrain(args: &PretrainArgs) -> Result<()> {
    let ds = args.data.open(Split::Train)?;
    eprintln!("data: {}", ds.describe());
    let model = match args.resume {
        // The stored config decides what a resumed run is.
        true => slim_core::checkpoint::load(&crate::pretrain::checkpoint_path(&args.out))?.config,
        false => model_config(ds.as_ref(), &args.backbone, &args.widths, args.image_size)?,
    };
    if args.resume && model.backbone.name() != args.backbone {
        bail!(
            "cannot resume from {}: it holds {}, not the requested {}",
            crate::pretrain::checkpoint_path(&args.out).display(),
            model.backbone.name(),
            args.backbone
        );
    }
    if ds.class_names() != model.class_names.as_slice() {
        bail!(
            "{}: its classes differ from the checkpoint's",
            args.data.data.display()
        );
    }
    if let Some(e) = args
        .slow_start_epoch
        .filter(|&e| e >= args.epochs && !args.resume)
    {
        bail!(
            "--slow-start-epoch {e} is not before the last of --epochs {}: the sub-widths would never train (use --no-slow-start to train them from the start)",
            args.epochs
        );
    }
    if let Some(w) = args.train_alone {
        if !model.widths.contains(&w) {
            bail!(
                "--train-alone {w} is not one of the model's widths {:?}",
                model.widths
            );
        }
        if args.framework != Framework::Simclr {
            bail!(
                "--train-alone trains with SimCLR only: MoCo's key encoder is the full width, so a width trained with it is not alone"
            );
        }
    }
    let rendezvous = Rendezvous::from_vars(
        |name| std::env::var(name).ok(),
        Duration::from_secs(args.dist_timeout as u64),
    )?;
    let ranks = rendezvous.as_ref().map_or(1, |r| r.world);
    let lead = rendezvous.as_ref().is_none_or(|r| r.rank == 0);
    let splits = args.bn_splits(ranks);
    if splits > 1 && (!args.batch_size.is_multiple_of(splits) || args.batch_size / splits < 2) {
        bail!(
            "--batch-size {} does not split into {splits} BatchNorm groups of two or more images (--bn-splits): choose a batch size divisible by it, or fewer splits",
            args.batch_size
        );
    }
    let device = match (args.device.device()?, &rendezvous) {
        // One GPU per process, as torchrun places them.
        (Device::Cuda(_), Some(r)) => Device::Cuda(r.local_rank),
        (d, _) => d,
    };
    // The learning rate follows the global batch.
    let global_batch = (args.batch_size * ranks) as f64;
    let smoothed = args.smoothed_alpha.map(|alpha| Smoothing {
        alpha,
        top_k: args.smoothed_top_k,
        schedule: match args.smoothed_cosine {
            true => AlphaSchedule::Cosine,
            false => AlphaSchedule::Warm(args.smoothed_warm_epochs),
        },
    });
    let (distill_t_student, distill_t_teacher) = match args.distill_temperature.as_deref() {
        Some(&[s, t]) => (s, t),
        _ => args.framework.distill_temperatures(),
    };
    let config = PretrainConfig {
        framework: args.framework,
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr * global_batch / 256.0,
        warmup_epochs: args.warmup_epochs,
        optimizer: OptimizerConfig::new(args.optimizer, args.momentum, args.weight_decay),
        temperature: args.temperature(),
        slow_start_epoch: if args.no_slow_start {
            0
        } else {
            args.slow_start_epoch.unwrap_or(args.epochs / 2)
        },
        slim_start_lr: args.slim_start_lr.map(|lr| lr * global_batch / 256.0),
        distill: !args.no_distill,
        distill_t_student,
        distill_t_teacher,
        reweight: !args.no_reweight,
        alone: args.train_alone,
        decay: Default::default(),
        smoothed,
        // SlimCLR's hidden sizes: the features (simclr_mlp_dim 2048 on ResNet-50) for
        // SimCLR and MoCo v2, twice them for MoCo v3's projector (moco_mlp_dim 4096), and
        // 16 x the output for its predictor (4096 for 256).
        head_hidden: match args.framework {
            Framework::MocoV3 => 2 * model.network().features,
            _ => model.network().features,
        },
        head_out: args.head_dim,
        head_layout: crate::pretrain::config::HEAD_LAYOUT,
        predictor_hidden: args.predictor_hidden.unwrap_or(16 * args.head_dim),
        moco_queue: args.moco_queue,
        bn_splits: splits,
        ranks,
        sync_bn: args.sync_bn,
        moco_momentum: args.moco_momentum,
        augmentation: Some(args.augmentation()),
        crop_scale: (args.crop_min_scale() as f32, 1.0),
        seed: args.seed,
        checkpoint_every: args.checkpoint_every,
        trajectory: args.trajectory_every.map(|every| TrajectoryConfig {
            every,
            unit: args.trajectory_unit,
            precision: args.trajectory_precision,
        }),
        twa: None,
        bf16: args.bf16.on(device),
        channels_last: args.channels_last.on(device),
        augment_on_device: args.augment_on_device.on(device),
    };
    let group = match rendezvous {
        Some(mut r) => {
            // GPU ranks talk through NCCL where this build has it, as DDP's do.
            if matches!(device, Device::Cuda(_)) && Backend::NCCL_BUILT {
                r.backend = Backend::Nccl;
            }
            Some(Group::join(&r)?)
        }
        None => None,
    };
    let placement = Placement {
        device,
        workers: args.data.workers,
        group,
    };
    let mut trainer = Trainer::placed(&model, config, ds, &args.out, args.resume, placement)?;
    if !lead {
        trainer.run(args.max_steps, &mut reporter(true))?;
        return Ok(());
    }
    if let Some(plan) = trainer.trajectory_plan() {
        eprintln!(
            "trajectory: {} more checkpoints of {:.2} MiB each, {:.1} MiB in all, in {}",
            plan.count,
            mib(plan.bytes_each),
            mib(plan.count * plan.bytes_each),
            plan.dir.display()
        );
    }
    let s = trainer.state();
    eprintln!(
        "{} {} widths {:?} on {:?}{}{}{}: {} epochs from step {} (epoch {}, batch {})",
        s.config.framework.name(),
        model.backbone.name(),
        model.widths,
        device,
        match ranks {
            1 => String::new(),
            n => format!(" x {n} ranks"),
        },
        if s.config.bf16 { ", bf16 convs" } else { "" },
        if s.config.channels_last {
            ", channels-last"
        } else {
            ""
        },
        s.config.epochs,
        s.step,
        s.epoch,
        s.position
    );
    let path = trainer.run(args.max_steps, &mut reporter(args.quiet))?;
    let s = trainer.state();
    println!(
        "step {} (epoch {}): checkpoint {}",
        s.step,
        s.epoch,
        path.display()
    );
    if s.skipped > 0 {
        println!("{} corrupt images were skipped", s.skipped);
    }
    Ok(())
}

pub(super) fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::{Cli, Command};

    fn parsed(extra: &[&str]) -> super::PretrainArgs {
        let args = ["slim-train", "pretrain", "--data", "d", "--out", "o"];
        match Cli::try_parse_from(args.iter().chain(extra))
            .unwrap()
            .command
        {
            Command::Pretrain(a) => a,
            _ => unreachable!("a pretrain command"),
        }
    }

    #[test]
    fn each_framework_has_its_defaults_and_a_flag_overrides_only_its_own() {
        let simclr = parsed(&[]);
        assert_eq!((simclr.temperature(), simclr.crop_min_scale()), (0.5, 0.08));
        let v2 = parsed(&["--framework", "moco-v2"]);
        assert_eq!((v2.temperature(), v2.crop_min_scale()), (0.2, 0.2));
        let v3 = parsed(&["--framework", "moco-v3", "--crop-min-scale", "0.5"]);
        assert_eq!((v3.temperature(), v3.crop_min_scale()), (1.0, 0.5));
        use crate::pretrain::Augmentation;
        assert_eq!(
            [&simclr, &v2, &v3].map(|a| a.augmentation()),
            [
                Augmentation::Simclr,
                Augmentation::MocoV2,
                Augmentation::MocoV3
            ]
        );
        let v3 = parsed(&["--framework", "moco-v3", "--augmentation", "moco-v2"]);
        assert_eq!(
            (v3.augmentation(), v3.temperature()),
            (Augmentation::MocoV2, 1.0)
        );
        let err = super::super::Cli::try_parse_from([
            "slim-train",
            "pretrain",
            "--data",
            "d",
            "--out",
            "o",
            "--augmentation",
            "byol",
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("--augmentation") && err.contains("byol"),
            "{err}"
        );
    }
}
