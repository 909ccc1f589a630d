//! The `slim-train` command: `pretrain` (SlimCLR), `knn` and `linear` (evaluation per
//! width). Argument structs shared by the subcommands are defined once here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use slim_core::{Backbone, ModelConfig};
use slim_data::{Dataset, Split, Subset};
use tch::Device;

use slim_cli::Reporter;
use tch::Tensor;

use crate::eval::{self, FeatureSet, LinearConfig};
use crate::optim::{OptimizerConfig, OptimizerKind};
use crate::pretrain::{Framework, PretrainConfig, Trainer, TrajectoryConfig, TrajectoryUnit};
use crate::twa::{Grouping, TwaConfig};
use crate::{SlimNet, checkpoint};
use slim_core::checkpoint::Precision;

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
    /// Weighted cosine kNN accuracy of each width's frozen features.
    Knn(KnnArgs),
    /// Train the switchable linear probe on frozen features and write it into the
    /// checkpoint, so that slim-export puts it into each width's graph.
    Linear(LinearArgs),
    /// Trainable weight averaging: train in the span of trajectory checkpoints from
    /// their mean, recompute each width's BatchNorm, and (with --compare) evaluate the
    /// last checkpoint, SWA and TWA side by side.
    Twa(TwaArgs),
    /// Benchmark: images/s of one slimmable training step (every width) against one
    /// full-width-only step on the same random batch, with the ideal (MACs) ratio.
    BenchStep(crate::bench::BenchStepArgs),
}

/// A checkpoint and the labelled data to evaluate it on (train split for the kNN memory
/// or the probe, test split to score).
#[derive(Debug, Args)]
pub struct EvalArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Same forms as `pretrain --data`.
    #[arg(long)]
    pub data: PathBuf,
    /// At most this many training images (evenly spaced).
    #[arg(long)]
    pub limit_train: Option<usize>,
    /// At most this many test images (evenly spaced).
    #[arg(long)]
    pub limit_test: Option<usize>,
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    #[command(flatten)]
    pub device: DeviceArgs,
}

#[derive(Debug, Args)]
pub struct KnnArgs {
    #[command(flatten)]
    pub eval: EvalArgs,
    #[arg(long, default_value_t = crate::eval::DEFAULT_KNN_K)]
    pub k: usize,
    #[arg(long, default_value_t = crate::eval::DEFAULT_KNN_TEMPERATURE)]
    pub temperature: f64,
    /// Also score a randomly initialised network of the same architecture (the baseline
    /// pretraining must beat).
    #[arg(long)]
    pub compare_random: bool,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LinearArgs {
    #[command(flatten)]
    pub eval: EvalArgs,
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    #[arg(long, default_value_t = 0.1)]
    pub lr: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

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
    #[arg(long, default_value_t = 2)]
    pub epochs: usize,
    /// Learning rate per 256 images (scaled linearly with the batch size), cosine to 0.
    #[arg(long, default_value_t = 0.1)]
    pub lr: f64,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Weight decay on the coefficients (the weights' norm in the span).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// One coefficient per checkpoint for all weights, or one per layer block.
    #[arg(long, value_enum, default_value = "global")]
    pub grouping: Grouping,
    /// Default: the pretraining run's.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Training images used to recompute each width's BatchNorm statistics.
    #[arg(long, default_value_t = 5000)]
    pub bn_images: usize,
    /// Refuse a basis larger than this (checkpoints x parameters x 4 bytes).
    #[arg(long, default_value_t = 4096)]
    pub max_basis_mib: usize,
    /// Batches of the fixed objective reported for the SWA and TWA points.
    #[arg(long, default_value_t = 10)]
    pub objective_batches: usize,
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Also evaluate the last checkpoint, SWA and TWA per width (kNN and linear probe).
    #[arg(long)]
    pub compare: bool,
    /// Comparison: at most this many training / test images (evenly spaced).
    #[arg(long)]
    pub limit_train: Option<usize>,
    #[arg(long)]
    pub limit_test: Option<usize>,
    /// Comparison: linear probe epochs.
    #[arg(long, default_value_t = 30)]
    pub probe_epochs: usize,
    #[arg(long)]
    pub quiet: bool,
}

/// Where the images come from.
#[derive(Debug, Args)]
pub struct DataArgs {
    /// ImageFolder folder or .zip, CIFAR-10/100 binary archive, or a folder of IDX files
    /// (e.g. /usr/share/datasets/fashion-mnist).
    #[arg(long)]
    pub data: PathBuf,
    /// Use at most this many images (evenly spaced over the split).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Decoding and augmentation threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
}

impl DataArgs {
    pub fn open(&self, split: Split) -> Result<Arc<dyn Dataset>> {
        let ds = slim_data::open(&self.data, split)?;
        Ok(match self.limit {
            Some(n) => Arc::new(Subset::evenly(Arc::from(ds), n)),
            None => Arc::from(ds),
        })
    }
}

/// Which device runs the network.
#[derive(Debug, Args)]
pub struct DeviceArgs {
    /// cpu, cuda, or auto (CUDA when libtorch sees a GPU).
    #[arg(long, default_value = "auto")]
    pub device: String,
}

impl DeviceArgs {
    pub fn device(&self) -> Result<Device> {
        Ok(match self.device.as_str() {
            "cpu" => Device::Cpu,
            "cuda" if tch::Cuda::is_available() => Device::Cuda(0),
            "cuda" if cfg!(feature = "cuda") => bail!(
                "--device cuda: libtorch sees no CUDA device (is there a GPU and its driver, and is LD_LIBRARY_PATH on torch's CUDA libraries?)"
            ),
            "cuda" => bail!(
                "--device cuda: this binary was built without the `cuda` feature, so libtorch sees no GPU; build it with tools/build_cuda.sh"
            ),
            "auto" => Device::cuda_if_available(),
            other => bail!("--device {other:?}: use cpu, cuda or auto"),
        })
    }
}

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
    pub widths: Vec<f64>,
    /// Input side in pixels (default: the dataset's first image's shorter side).
    #[arg(long)]
    pub image_size: Option<usize>,
    #[arg(long, value_enum, default_value = "simclr")]
    pub framework: Framework,
    #[arg(long, default_value_t = 100)]
    pub epochs: usize,
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Learning rate per 256 images (scaled linearly with the batch size).
    #[arg(long, default_value_t = 0.5)]
    pub lr: f64,
    #[arg(long, value_enum, default_value = "sgd")]
    pub optimizer: OptimizerKind,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 10)]
    pub warmup_epochs: usize,
    /// Contrastive temperature (SimCLR 0.5 on CIFAR; MoCo v2 0.2; MoCo v3 1.0 for ResNets).
    #[arg(long, default_value_t = 0.5)]
    pub temperature: f64,
    /// Epoch at which the sub-widths join (default: half of training).
    #[arg(long, conflicts_with = "no_slow_start")]
    pub slow_start_epoch: Option<usize>,
    /// Train every width from the first step.
    #[arg(long)]
    pub no_slow_start: bool,
    /// Turn off online distillation from the full width.
    #[arg(long)]
    pub no_distill: bool,
    /// Turn off loss re-weighting by model size.
    #[arg(long)]
    pub no_reweight: bool,
    /// Distillation temperatures, student and teacher.
    #[arg(long, num_args = 2, value_names = ["STUDENT", "TEACHER"], default_values_t = [5.0, 5.0])]
    pub distill_temperature: Vec<f64>,
    /// Use smoothed InfoNCE with this final alpha (arXiv 2212.07158).
    #[arg(long)]
    pub smoothed_alpha: Option<f64>,
    /// Negatives that share the smoothed alpha.
    #[arg(long, default_value_t = 5)]
    pub smoothed_top_k: usize,
    /// Fraction of training over which alpha ramps up from 0.
    #[arg(long, default_value_t = 0.5)]
    pub smoothed_ramp: f64,
    /// Projection head output size.
    #[arg(long, default_value_t = 128)]
    pub head_dim: usize,
    /// MoCo v3's predictor hidden size at full width (default: twice --head-dim).
    #[arg(long)]
    pub predictor_hidden: Option<usize>,
    /// MoCo v2's queue of keys.
    #[arg(long, default_value_t = 4096)]
    pub moco_queue: usize,
    /// Key-encoder momentum (MoCo v3: the first step's, rising to 1 along a cosine).
    #[arg(long, default_value_t = 0.99)]
    pub moco_momentum: f64,
    /// Smallest random-resized-crop scale (SimCLR 0.08; 0.2 suits 28 px images).
    #[arg(long, default_value_t = 0.08)]
    pub crop_min_scale: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Steps between checkpoints.
    #[arg(long, default_value_t = 100)]
    pub checkpoint_every: usize,
    /// Stop after this many steps (a resumed run continues from there).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Keep a trajectory checkpoint (model + head) in OUT/trajectory every N steps or
    /// epochs, for `slim-train twa`.
    #[arg(long)]
    pub trajectory_every: Option<usize>,
    #[arg(long, value_enum, default_value = "steps")]
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
    /// Colour augmentations batched on the training device instead of the loader's CPU
    /// threads (geometry stays on the CPU); auto: on when training on a GPU.
    #[arg(long, value_enum, default_value = "auto")]
    pub augment_on_device: Toggle,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// A speed setting that is only worth it on some devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Toggle {
    Auto,
    On,
    Off,
}

impl Toggle {
    /// On, off, or (auto) on for CUDA devices.
    pub fn on(self, device: Device) -> bool {
        match self {
            Toggle::Auto => device.is_cuda(),
            Toggle::On => true,
            Toggle::Off => false,
        }
    }
}

/// The model config for `ds`: channels and size from its first decodable image, classes
/// from its folder names, mean/std measured on up to 2000 of its images.
pub fn model_config(
    ds: &dyn Dataset,
    backbone: &str,
    widths: &[f64],
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
    let device = args.device.device()?;
    let smoothed = args
        .smoothed_alpha
        .map(|a| (a, args.smoothed_top_k, args.smoothed_ramp));
    let config = PretrainConfig {
        framework: args.framework,
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr * args.batch_size as f64 / 256.0,
        warmup_epochs: args.warmup_epochs,
        optimizer: OptimizerConfig {
            kind: args.optimizer,
            momentum: args.momentum,
            weight_decay: args.weight_decay,
            eta: 0.001,
        },
        temperature: args.temperature,
        slow_start_epoch: if args.no_slow_start {
            0
        } else {
            args.slow_start_epoch.unwrap_or(args.epochs / 2)
        },
        distill: !args.no_distill,
        distill_t_student: args.distill_temperature[0],
        distill_t_teacher: args.distill_temperature[1],
        reweight: !args.no_reweight,
        smoothed,
        head_hidden: model.network().features,
        head_out: args.head_dim,
        predictor_hidden: args.predictor_hidden.unwrap_or(2 * args.head_dim),
        moco_queue: args.moco_queue,
        moco_momentum: args.moco_momentum,
        crop_scale: (args.crop_min_scale, 1.0),
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
    let mut trainer = Trainer::new(
        &model,
        config,
        ds,
        &args.out,
        args.resume,
        device,
        args.data.workers,
    )?;
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
        "{} {} widths {:?} on {:?}{}{}: {} epochs from step {} (epoch {}, batch {})",
        s.config.framework.name(),
        model.backbone.name(),
        model.widths,
        device,
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

/// The progress display of a training run: nothing but warnings with `--quiet`.
fn reporter(quiet: bool) -> Reporter {
    if quiet {
        Reporter::hidden()
    } else {
        Reporter::stderr()
    }
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// The labelled images an evaluation embeds: both splits of `data`, each limited.
struct EvalImages<'a> {
    data: &'a Path,
    limit_train: Option<usize>,
    limit_test: Option<usize>,
    batch_size: usize,
    workers: usize,
}

impl EvalArgs {
    fn images(&self) -> EvalImages<'_> {
        EvalImages {
            data: &self.data,
            limit_train: self.limit_train,
            limit_test: self.limit_test,
            batch_size: self.batch_size,
            workers: self.workers,
        }
    }
}

/// Train and test features of every width of `net`.
fn features(net: &SlimNet, a: &EvalImages) -> Result<(FeatureSet, FeatureSet)> {
    let c = net.config();
    let normalize = eval::normalize_of(c);
    let mut sets = Vec::new();
    for (split, limit) in [(Split::Train, a.limit_train), (Split::Test, a.limit_test)] {
        let ds: Arc<dyn Dataset> = Arc::from(slim_data::open(a.data, split)?);
        if ds.class_names() != c.class_names.as_slice() {
            bail!(
                "{}: its classes {:?} differ from the checkpoint's {:?}",
                a.data.display(),
                ds.class_names(),
                c.class_names
            );
        }
        eprintln!(
            "embedding the {} split of {}",
            split.name(),
            a.data.display()
        );
        let set = eval::extract_features(
            net,
            ds,
            &normalize,
            net.widths(),
            a.batch_size,
            limit,
            a.workers,
            &mut Reporter::stderr(),
        )?;
        for s in &set.skipped {
            eprintln!("warning: skipped {s}");
        }
        sets.push(set);
    }
    let test = sets.pop().expect("two sets");
    Ok((sets.pop().expect("two sets"), test))
}

#[derive(Debug, serde::Serialize)]
struct KnnRow {
    width: f64,
    knn_top1: f64,
    random_init_knn_top1: Option<f64>,
}

pub fn knn(a: &KnnArgs) -> Result<()> {
    let device = a.eval.device.device()?;
    let (net, _vs, _) = checkpoint::load(&a.eval.checkpoint, device)?;
    let classes = net.config().num_classes();
    let score = |net: &SlimNet| -> Result<Vec<f64>> {
        let (train, test) = features(net, &a.eval.images())?;
        Ok(eval::knn_per_width(
            &train,
            &test,
            classes,
            a.k,
            a.temperature,
        ))
    };
    let trained = score(&net)?;
    let random = if a.compare_random {
        tch::manual_seed(0);
        let vs = tch::nn::VarStore::new(device);
        let fresh = SlimNet::new(&vs.root(), net.config())?;
        // A random network's BatchNorm statistics are meaningless (mean 0, var 1): use
        // batch statistics of the training data, as the trained one was calibrated.
        let train = Arc::from(slim_data::open(&a.eval.data, Split::Train)?);
        eval::recompute_batchnorm(&fresh, train, 5000, a.eval.batch_size, a.eval.workers)?;
        Some(score(&fresh)?)
    } else {
        None
    };
    println!(
        "kNN (k={}, T={}) on {}",
        a.k,
        a.temperature,
        a.eval.data.display()
    );
    println!("{:>6} {:>10} {:>14}", "width", "pretrained", "random init");
    let mut rows = Vec::new();
    for (i, &w) in net.widths().iter().enumerate() {
        let r = random.as_ref().map(|r| r[i]);
        println!(
            "{:>6} {:>9.2}% {:>14}",
            w,
            trained[i] * 100.0,
            r.map_or("-".into(), |v| format!("{:.2}%", v * 100.0))
        );
        rows.push(KnnRow {
            width: w,
            knn_top1: trained[i],
            random_init_knn_top1: r,
        });
    }
    if let Some(p) = &a.json {
        slim_core::fsutil::atomic_write(p, serde_json::to_string_pretty(&rows)?.as_bytes())?;
    }
    Ok(())
}

pub fn linear(a: &LinearArgs) -> Result<()> {
    let device = a.eval.device.device()?;
    let (net, _vs, ckpt) = checkpoint::load(&a.eval.checkpoint, device)?;
    let (train, test) = features(&net, &a.eval.images())?;
    let config = LinearConfig {
        epochs: a.epochs,
        lr: a.lr,
        seed: a.seed,
        ..LinearConfig::default()
    };
    let losses = eval::train_probe(&net, &train, &config, &mut Reporter::stderr())?;
    println!(
        "switchable linear probe on {} ({} train / {} test images)",
        a.eval.data.display(),
        train.len(),
        test.len()
    );
    println!(
        "{:>6} {:>11} {:>8} {:>8}",
        "width", "train loss", "top-1", "top-5"
    );
    for (i, &w) in net.widths().iter().enumerate() {
        let (top1, top5) = eval::probe_accuracy(&net, &test, i);
        println!(
            "{:>6} {:>11.4} {:>7.2}% {:>7.2}%",
            w,
            losses[i],
            top1 * 100.0,
            top5 * 100.0
        );
    }
    // Keep everything else the checkpoint held (training state included).
    let kept: Vec<(String, Tensor)> = ckpt
        .tensors
        .iter()
        .filter_map(|(n, t)| n.strip_prefix("train.").map(|n| (n, t)))
        .map(|(n, t)| Ok((n.to_string(), checkpoint::from_core(t, device)?)))
        .collect::<Result<_, crate::Error>>()?;
    let refs: Vec<(&str, &Tensor)> = kept.iter().map(|(n, t)| (n.as_str(), t)).collect();
    checkpoint::save_with_state(&a.eval.checkpoint, &net, &refs, ckpt.train_state.as_deref())?;
    println!("probe written into {}", a.eval.checkpoint.display());
    Ok(())
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Pretrain(a) => pretrain(&a),
        Command::Knn(a) => knn(&a),
        Command::Linear(a) => linear(&a),
        Command::Twa(a) => twa(&a),
        Command::BenchStep(a) => crate::bench::run(&a),
    }
}

/// One model's row of the TWA comparison.
#[derive(Debug, serde::Serialize)]
struct Compared {
    model: String,
    /// The SlimCLR objective on fixed batches (SWA and TWA points; BatchNorm in train mode).
    objective: Option<f64>,
    widths: Vec<f64>,
    knn_top1: Vec<f64>,
    linear_top1: Vec<f64>,
}

pub fn twa(a: &TwaArgs) -> Result<()> {
    let files = crate::twa::list_checkpoints(&a.checkpoints)?;
    let last_path = files
        .last()
        .with_context(|| format!("no checkpoints in {:?}", a.checkpoints))?
        .clone();
    let last = slim_core::checkpoint::load(&last_path)?;
    let state: crate::pretrain::TrainState = last
        .train_state
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .with_context(|| {
            format!(
                "{}: holds no pretraining state: not a checkpoint of `slim-train pretrain`",
                last_path.display()
            )
        })?;
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
        optimizer: OptimizerConfig {
            kind: OptimizerKind::Sgd,
            momentum: a.momentum,
            weight_decay: a.weight_decay,
            eta: 0.001,
        },
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
    let swa_objective = (!a.resume).then(|| trainer.objective(a.objective_batches));
    trainer.run(a.max_steps, &mut reporter(a.quiet))?;
    if !trainer.finished() {
        println!(
            "stopped at step {}; continue with --resume (TWA and SWA are written at the end)",
            trainer.state().step
        );
        return Ok(());
    }
    let twa_objective = trainer.objective(a.objective_batches);
    let subspace = trainer.subspace().expect("a TWA run has a subspace");
    let off_span = subspace.off_span();
    let twa_net = trainer.net();
    eval::recompute_batchnorm(twa_net, ds.clone(), a.bn_images, batch_size, a.data.workers)?;
    let twa_path = a.out.join("twa.safetensors");
    checkpoint::save(&twa_path, twa_net, &[])?;
    // SWA: the checkpoints' mean, BatchNorm recomputed the same way.
    let (swa_net, _swa_vs, _) = checkpoint::load(&last_path, device)?;
    let model_names: std::collections::HashMap<String, Tensor> =
        swa_net.named_tensors().into_iter().collect();
    tch::no_grad(|| {
        for (name, w) in subspace.mean_weights() {
            if let Some(v) = model_names.get(&name) {
                v.shallow_clone().copy_(&w);
            }
        }
    });
    eval::recompute_batchnorm(&swa_net, ds, a.bn_images, batch_size, a.data.workers)?;
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
    let (last_net, _last_vs, _) = checkpoint::load(&last_path, device)?;
    let mut rows = Vec::new();
    for (label, net, objective, path) in [
        ("last checkpoint", &last_net, None, None),
        ("SWA", &swa_net, swa_objective, Some(&swa_path)),
        ("TWA", twa_net, Some(twa_objective), Some(&twa_path)),
    ] {
        let images = EvalImages {
            data: &a.data.data,
            limit_train: a.limit_train,
            limit_test: a.limit_test,
            batch_size: 256,
            workers: a.data.workers,
        };
        let (train, test) = features(net, &images)?;
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

/// The comparison as a Markdown table: kNN / linear top-1 per width, and the objective.
fn comparison_table(rows: &[Compared]) -> String {
    let widths = &rows[0].widths;
    let mut out = String::from("| model | objective |");
    for w in widths {
        out += &format!(" {w} kNN | {w} linear |");
    }
    out += "\n|---|---|";
    out += &"---|---|".repeat(widths.len());
    out += "\n";
    for r in rows {
        out += &format!(
            "| {} | {} |",
            r.model,
            r.objective.map_or("-".into(), |v| format!("{v:.4}"))
        );
        for (k, l) in r.knn_top1.iter().zip(&r.linear_top1) {
            out += &format!(" {:.2}% | {:.2}% |", k * 100.0, l * 100.0);
        }
        out += "\n";
    }
    out
}
