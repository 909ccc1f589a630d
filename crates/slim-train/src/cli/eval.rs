//! `slim-train knn` and `slim-train linear`: each width's frozen features, scored by a
//! weighted kNN or by the switchable linear probe (which is then written into the
//! checkpoint for slim-export).

use slim_core::Width;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use slim_cli::Reporter;
use slim_data::{Dataset, Split};

use super::args::{DeviceArgs, EvalLimits, above_zero, positive};
use crate::eval::{self, FeatureSet, LinearConfig};
use crate::{SlimNet, checkpoint};

/// A checkpoint and the labelled data to evaluate it on (train split for the kNN memory
/// or the probe, test split to score).
#[derive(Debug, Args)]
pub struct EvalArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Same forms as `pretrain --data`.
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub limits: EvalLimits,
    /// Decoding threads.
    #[arg(long, default_value_t = 2, value_parser = positive)]
    pub workers: usize,
    #[arg(long, default_value_t = 256, value_parser = positive)]
    pub batch_size: usize,
    #[command(flatten)]
    pub device: DeviceArgs,
}

#[derive(Debug, Args)]
pub struct KnnArgs {
    #[command(flatten)]
    pub eval: EvalArgs,
    #[arg(long, default_value_t = crate::eval::DEFAULT_KNN_K, value_parser = positive)]
    pub k: usize,
    #[arg(long, default_value_t = crate::eval::DEFAULT_KNN_TEMPERATURE, value_parser = above_zero)]
    pub temperature: f64,
    /// Also score a randomly initialised network of the same architecture (the baseline
    /// pretraining must beat).
    #[arg(long)]
    pub compare_random: bool,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// How the linear probe sees the training images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// A random resized crop and flip of every image every epoch, through the frozen
    /// backbone (the protocol of published linear-evaluation numbers); 100 epochs.
    Augmented,
    /// Each image's features once, without augmentation, precomputed (smoke runs,
    /// monitors); 30 epochs.
    Fast,
}

#[derive(Debug, Args)]
pub struct LinearArgs {
    #[command(flatten)]
    pub eval: EvalArgs,
    #[arg(long, value_enum, default_value_t = Protocol::Augmented)]
    pub protocol: Protocol,
    /// Default: 100 with `--protocol augmented`, 30 with `fast`.
    #[arg(long, value_parser = positive)]
    pub epochs: Option<usize>,
    #[arg(long, default_value_t = 0.1, value_parser = above_zero)]
    pub lr: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// The labelled images an evaluation embeds: both splits of `data`, each limited.
pub(super) struct EvalImages<'a> {
    pub data: &'a Path,
    pub limit_train: Option<usize>,
    pub limit_test: Option<usize>,
    pub batch_size: usize,
    pub workers: usize,
}

impl EvalArgs {
    fn images(&self) -> EvalImages<'_> {
        EvalImages {
            data: &self.data,
            limit_train: self.limits.limit_train,
            limit_test: self.limits.limit_test,
            batch_size: self.batch_size,
            workers: self.workers,
        }
    }
}

/// Every width's features of both splits of an evaluation's data, and its opened
/// training split (for a probe that decodes it again).
pub(super) struct Embedded {
    pub train: FeatureSet,
    pub test: FeatureSet,
    pub train_images: Arc<dyn Dataset>,
}

/// Train and test features of every width of `net`.
pub(super) fn features(net: &SlimNet, a: &EvalImages) -> Result<Embedded> {
    let c = net.config();
    let normalize = slim_data::transform::Normalize::from(&c.input);
    let mut sets = Vec::new();
    let mut train_images = None;
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
        if split == Split::Train {
            train_images = Some(ds.clone());
        }
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
    Ok(Embedded {
        train: sets.pop().expect("two sets"),
        test,
        train_images: train_images.expect("the train split was opened"),
    })
}

#[derive(Debug, serde::Serialize)]
struct KnnRow {
    width: Width,
    knn_top1: f64,
    random_init_knn_top1: Option<f64>,
}

#[derive(Debug, serde::Serialize)]
struct ProbeRow {
    width: Width,
    train_loss: f64,
    top1: f64,
    top5: f64,
}

pub fn knn(a: &KnnArgs) -> Result<()> {
    let device = a.eval.device.device()?;
    let (net, _vs, _) = checkpoint::load(&a.eval.checkpoint, device)?;
    let classes = net.config().num_classes();
    let score = |net: &SlimNet| -> Result<Vec<f64>> {
        let Embedded { train, test, .. } = features(net, &a.eval.images())?;
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
        let bn_data = eval::BatchNormData {
            images: Some(5000),
            batch_size: a.eval.batch_size,
            workers: a.eval.workers,
            seed: 0,
            resize: true,
        };
        eval::recompute_batchnorm(&fresh, train, &bn_data, &mut Reporter::stderr())?;
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
    let Embedded {
        train,
        test,
        train_images,
    } = features(&net, &a.eval.images())?;
    let config = LinearConfig {
        epochs: a.epochs.unwrap_or(match a.protocol {
            Protocol::Augmented => 100,
            Protocol::Fast => 30,
        }),
        lr: a.lr,
        seed: a.seed,
        ..LinearConfig::default()
    };
    let losses = match a.protocol {
        Protocol::Fast => eval::train_probe(&net, &train, &config, &mut Reporter::stderr())?,
        Protocol::Augmented => {
            let images = eval::AugmentedImages {
                dataset: train_images,
                normalize: &slim_data::transform::Normalize::from(&net.config().input),
                limit: a.eval.limits.limit_train,
                workers: a.eval.workers,
            };
            eval::train_probe_augmented(&net, &train, &images, &config, &mut Reporter::stderr())?
        }
    };
    println!(
        "switchable linear probe ({}, {} epochs) on {} ({} train / {} test images)",
        a.protocol
            .to_possible_value()
            .expect("no skipped variants")
            .get_name(),
        config.epochs,
        a.eval.data.display(),
        train.len(),
        test.len()
    );
    println!(
        "{:>6} {:>11} {:>8} {:>8}",
        "width", "train loss", "top-1", "top-5"
    );
    let mut rows = Vec::new();
    for (i, &w) in net.widths().iter().enumerate() {
        let (top1, top5) = eval::probe_accuracy(&net, &test, i);
        println!(
            "{:>6} {:>11.4} {:>7.2}% {:>7.2}%",
            w,
            losses[i],
            top1 * 100.0,
            top5 * 100.0
        );
        rows.push(ProbeRow {
            width: w,
            train_loss: losses[i],
            top1,
            top5,
        });
    }
    if let Some(p) = &a.json {
        slim_core::fsutil::atomic_write(p, serde_json::to_string_pretty(&rows)?.as_bytes())?;
    }
    // Keep everything else the checkpoint held (training state, recalibration record).
    checkpoint::save_keeping(&a.eval.checkpoint, &net, &ckpt, None)?;
    println!("probe written into {}", a.eval.checkpoint.display());
    Ok(())
}
