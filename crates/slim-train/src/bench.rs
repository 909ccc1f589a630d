//! `slim-train bench-step`: the speed of one SlimCLR training step, slimmable against
//! full-width only (a benchmark, not a test: nothing here asserts a time).
//!
//! Two pretraining [`Trainer`]s of the same randomly initialised network (same seed),
//! SimCLR with the `pretrain` defaults (temperature 0.5, distillation at 5/5, re-weighting,
//! a 128-d head, SGD), take [`Trainer::train_step`], the step pretraining itself runs, on
//! the same random two-view batch:
//!
//! - **slimmable**: every width active (the slow start is over);
//! - **full**: width 1.0 only (what pretraining does before the slow start lets the
//!   sub-widths join).
//!
//! After `warmup` untimed steps of each, the two kinds alternate step by step (so that a
//! change of machine load hits both alike), each timed with [`Instant`]. Reported per
//! kind: median, min and max seconds per step and images/s (`2 views × batch / median`);
//! then the time ratio slimmable / full, whose ideal is the MACs ratio
//! `Σ_w cost(w) / cost(1.0)` of the backbone ([`slim_core::cost()`]): 1.875 for convs
//! whose cost scales with `w²`, a little more for ResNet-20 (1.882 at 32 px), whose stem
//! costs `w` times its full cost since the image channels are never sliced.
//!
//! `tools/bench_step.sh` runs this against a PyTorch eager reference of the same step
//! (`tools/bench_step_torch.py`).

use slim_core::Width;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use slim_core::stats::percentile;
use slim_core::{Backbone, ModelConfig};
use slim_data::{Dataset, Image};
use tch::{Device, Kind, Tensor};

use crate::Error;
use crate::optim::{OptimizerConfig, OptimizerKind};
use crate::pretrain::{Framework, PretrainConfig, Trainer};

/// A fixed learning rate, small enough that random data does not blow up the weights.
const LR: f64 = 0.05;

/// What `bench-step` measures.
#[derive(Clone, Debug)]
pub struct BenchStepConfig {
    pub backbone: Backbone,
    /// Input side in pixels.
    pub image_size: usize,
    /// Image channels.
    pub channels: usize,
    /// Images per view (the step sees 2 views of this many).
    pub batch: usize,
    /// Widths of the slimmable step; must include 1.0.
    pub widths: Vec<Width>,
    /// Untimed steps of each kind first.
    pub warmup: usize,
    /// Timed steps of each kind.
    pub steps: usize,
    pub device: Device,
    /// Seed of the weights and of the random inputs.
    pub seed: u64,
    /// Convolutions in bfloat16 (pretraining's `--bf16`).
    pub bf16: bool,
    /// Channels-last weights and inputs (pretraining's `--channels-last`).
    pub channels_last: bool,
}

/// Timings of one kind of step.
#[derive(Clone, Debug, Serialize)]
pub struct StepStats {
    pub median_s: f64,
    pub min_s: f64,
    pub max_s: f64,
    /// `2 × batch / median_s`.
    pub images_per_s: f64,
    /// Every timed step, in order.
    pub times_s: Vec<f64>,
    /// The loss of the last step (a sanity check: finite).
    pub last_loss: f64,
}

impl StepStats {
    fn new(times: Vec<f64>, images: usize, last_loss: f64) -> StepStats {
        let p = |q| percentile(&times, q).expect("at least one timed step");
        let median = p(0.5);
        StepStats {
            median_s: median,
            min_s: p(0.0),
            max_s: p(1.0),
            images_per_s: images as f64 / median,
            times_s: times,
            last_loss,
        }
    }
}

/// Everything `bench-step` measured (its `--json`).
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub implementation: &'static str,
    pub backbone: String,
    pub image_size: usize,
    pub channels: usize,
    pub batch: usize,
    pub widths: Vec<Width>,
    pub device: String,
    pub threads: i32,
    pub warmup: usize,
    pub steps: usize,
    pub bf16: bool,
    pub channels_last: bool,
    pub slimmable: StepStats,
    pub full: StepStats,
    /// `slimmable.median_s / full.median_s`.
    pub ratio: f64,
    /// Backbone MACs per image at each width, in the order of `widths`.
    pub macs: Vec<u64>,
    /// `Σ macs / macs(1.0)`: the ideal `ratio`.
    pub macs_ratio: f64,
}

/// Stands in for a dataset: a trainer needs one to build its loader, but here it is
/// only ever given tensors.
struct Unused {
    batch: usize,
    channels: usize,
    side: usize,
    classes: Vec<String>,
}

impl Dataset for Unused {
    fn len(&self) -> usize {
        self.batch
    }
    fn class_names(&self) -> &[String] {
        &self.classes
    }
    fn label(&self, _: usize) -> usize {
        0
    }
    fn image(&self, _: usize) -> Result<Image, slim_data::Error> {
        let n = self.side * self.side * self.channels;
        Ok(Image::new(
            self.side,
            self.side,
            self.channels,
            vec![128; n],
        ))
    }
    fn describe(&self) -> String {
        "no images (bench-step feeds the trainer random tensors)".into()
    }
}

/// A trainer of `model` with every width active (`slimmable`) or the full width only.
fn trainer(
    model: &ModelConfig,
    c: &BenchStepConfig,
    slimmable: bool,
    dir: &std::path::Path,
) -> Result<Trainer, Error> {
    let features = model.network().features;
    let config = PretrainConfig {
        framework: Framework::Simclr,
        epochs: 1,
        batch_size: c.batch,
        lr: LR,
        warmup_epochs: 0,
        optimizer: OptimizerConfig::new(OptimizerKind::Sgd, 0.9, 1e-4),
        temperature: 0.5,
        // Epoch 0 of 1: past the slow start at 0, before it at 1.
        slow_start_epoch: if slimmable { 0 } else { 1 },
        slim_start_lr: None,
        distill: true,
        distill_t_student: 5.0,
        distill_t_teacher: 5.0,
        reweight: true,
        alone: None,
        decay: Default::default(),
        smoothed: None,
        head_hidden: features,
        head_out: 128,
        head_layout: crate::pretrain::config::HEAD_LAYOUT,
        predictor_hidden: 256,
        moco_queue: 4096,
        bn_splits: 1,
        ranks: 1,
        sync_bn: false,
        moco_momentum: 0.99,
        augmentation: Some(crate::pretrain::Augmentation::Simclr),
        crop_scale: (0.08, 1.0),
        seed: c.seed,
        checkpoint_every: usize::MAX,
        trajectory: None,
        twa: None,
        bf16: c.bf16,
        channels_last: c.channels_last,
        augment_on_device: false,
    };
    let data = Arc::new(Unused {
        batch: c.batch,
        channels: c.channels,
        side: c.image_size,
        classes: model.class_names.clone(),
    });
    Trainer::new(model, config, data, dir, false, c.device, 1)
}

/// One step, timed to the end of its work on the device.
fn timed(t: &mut Trainer, x1: &Tensor, x2: &Tensor, device: Device) -> Result<(f64, f64), Error> {
    let start = Instant::now();
    let loss = t.train_step(x1, x2)?;
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
    Ok((start.elapsed().as_secs_f64(), loss))
}

/// Runs the benchmark (prints nothing).
pub fn bench_step(a: &BenchStepConfig) -> Result<BenchReport, Error> {
    if a.steps == 0 || a.batch < 2 {
        return Err(Error::Eval(
            "bench-step needs --steps >= 1 and --batch >= 2".into(),
        ));
    }
    let mut model = ModelConfig::new(
        a.backbone,
        a.channels,
        a.image_size,
        vec!["unused".into()],
        vec![0.0; a.channels],
        vec![1.0; a.channels],
    );
    model.widths = a.widths.clone();
    let model = model.validated()?;
    let widths = model.widths.clone();

    let dir = std::env::temp_dir().join(format!("slim-bench-step-{}", std::process::id()));
    let trainers = trainer(&model, a, true, &dir).and_then(|slim| {
        let full = trainer(&model, a, false, &dir)?;
        Ok((slim, full))
    });
    // The trainers write nothing: only the folder they were given.
    let _ = std::fs::remove_dir_all(&dir);
    let (mut slim, mut full) = trainers?;
    tch::manual_seed(a.seed as i64 + 1);
    let shape = [
        a.batch as i64,
        a.channels as i64,
        a.image_size as i64,
        a.image_size as i64,
    ];
    let input = || {
        let x = Tensor::randn(shape, (Kind::Float, a.device));
        match a.channels_last {
            true => crate::model::channels_last(&x),
            false => x,
        }
    };
    let (x1, x2) = (input(), input());

    for _ in 0..a.warmup {
        slim.train_step(&x1, &x2)?;
        full.train_step(&x1, &x2)?;
    }
    let (mut t_slim, mut t_full) = (Vec::new(), Vec::new());
    let (mut l_slim, mut l_full) = (0.0, 0.0);
    for _ in 0..a.steps {
        let (t, l) = timed(&mut slim, &x1, &x2, a.device)?;
        t_slim.push(t);
        l_slim = l;
        let (t, l) = timed(&mut full, &x1, &x2, a.device)?;
        t_full.push(t);
        l_full = l;
    }
    let images = 2 * a.batch;
    let slimmable = StepStats::new(t_slim, images, l_slim);
    let full = StepStats::new(t_full, images, l_full);

    let network = model.network();
    let macs: Vec<u64> = widths
        .iter()
        .map(|&w| slim_core::cost(&network, w, a.image_size, 0).macs)
        .collect();
    let macs_ratio = macs.iter().sum::<u64>() as f64 / macs[0] as f64;
    Ok(BenchReport {
        implementation: "slim-train (tch)",
        backbone: a.backbone.name().into(),
        image_size: a.image_size,
        channels: a.channels,
        batch: a.batch,
        widths,
        device: format!("{:?}", a.device).to_lowercase(),
        threads: tch::get_num_threads(),
        warmup: a.warmup,
        steps: a.steps,
        bf16: a.bf16,
        channels_last: a.channels_last,
        ratio: slimmable.median_s / full.median_s,
        slimmable,
        full,
        macs,
        macs_ratio,
    })
}

/// The report as a table.
pub fn format_report(r: &BenchReport) -> String {
    let mut s = format!(
        "bench-step ({}): {} {}x{}x{}, batch {} x 2 views, widths {:?}, {} with {} threads, {} warmup + {} timed steps each{}{}\n",
        r.implementation,
        r.backbone,
        r.channels,
        r.image_size,
        r.image_size,
        r.batch,
        r.widths,
        r.device,
        r.threads,
        r.warmup,
        r.steps,
        if r.bf16 { ", bf16 convs" } else { "" },
        if r.channels_last {
            ", channels-last"
        } else {
            ""
        },
    );
    s += &format!(
        "{:<12} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
        "step", "median s", "min s", "max s", "img/s", "loss"
    );
    for (name, t) in [("slimmable", &r.slimmable), ("full (1.0)", &r.full)] {
        s += &format!(
            "{:<12} {:>10.4} {:>10.4} {:>10.4} {:>10.1} {:>10.4}\n",
            name, t.median_s, t.min_s, t.max_s, t.images_per_s, t.last_loss
        );
    }
    s += &format!(
        "ratio slimmable/full (time per step): {:.3}   ideal (MACs ratio): {:.3}   efficiency: {:.2}\n",
        r.ratio,
        r.macs_ratio,
        r.macs_ratio / r.ratio
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(bf16: bool, channels_last: bool) -> BenchReport {
        bench_step(&BenchStepConfig {
            backbone: Backbone::Resnet20,
            image_size: 16,
            channels: 3,
            batch: 4,
            widths: slim_core::width::DEFAULT_WIDTHS.to_vec(),
            warmup: 0,
            steps: 1,
            device: Device::Cpu,
            seed: 0,
            bf16,
            channels_last,
        })
        .unwrap()
    }

    #[test]
    fn a_tiny_bench_runs_and_reports_a_ratio() {
        let r = tiny(false, false);
        assert!(r.ratio.is_finite() && r.ratio > 0.0, "{r:?}");
        assert!(r.slimmable.last_loss.is_finite() && r.full.last_loss.is_finite());
        // Every width's loss (re-weighted, with distillation) against the full width's.
        assert!(r.slimmable.last_loss > r.full.last_loss, "{r:?}");
        // ResNet-20: the unsliced stem input puts the MACs ratio just over 1.875.
        assert!(
            r.macs_ratio > 1.875 && r.macs_ratio < 1.9,
            "{}",
            r.macs_ratio
        );
        assert!(format_report(&r).contains("ratio slimmable/full"));
    }

    #[test]
    fn bf16_and_channels_last_reach_the_timed_trainers() {
        // The numerics of both settings are pretraining's own, tested there; here the
        // bench's settings must reach its trainers and its report. (Comparing losses with
        // the plain run would need libtorch's one process-wide generator to itself.)
        let r = tiny(true, true);
        assert!(r.bf16 && r.channels_last);
        assert!(r.slimmable.last_loss.is_finite() && r.full.last_loss.is_finite());
        assert!(r.slimmable.last_loss > r.full.last_loss, "{r:?}");
        assert!(format_report(&r).contains("bf16 convs, channels-last"));
    }
}
