//! `slim-train bench-step`: the speed of one SlimCLR training step, slimmable against
//! full-width only (a benchmark, not a test: nothing here asserts a time).
//!
//! Two independent copies of the same randomly initialised network (same seed), each
//! with its projection head ([`SlimHead`]) and SGD optimiser ([`Optimizer`]), train on
//! the same random two-view batch:
//!
//! - **slimmable**: the SlimCLR SimCLR step of [`crate::pretrain`] with every width
//!   active: each width runs both views forward, NT-Xent per width, distillation of every
//!   sub-width toward the full width's detached logits, SlimCLR's re-weighting
//!   ([`LossWeights::reweighted`]), one backward, one optimiser step;
//! - **full**: the same step with width 1.0 only (what pretraining does before the slow
//!   start lets the sub-widths join).
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

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use slim_core::{Backbone, ModelConfig};
use tch::{Device, Kind, Tensor, nn};

use crate::SlimNet;
use crate::cli::DeviceArgs;
use crate::head::SlimHead;
use crate::loss::{self, LossWeights};
use crate::optim::{Optimizer, OptimizerConfig, OptimizerKind};

/// SimCLR's contrastive temperature on CIFAR (the `pretrain` default).
const TEMPERATURE: f64 = 0.5;
/// SlimCLR's distillation temperatures (student, teacher).
const DISTILL_T: (f64, f64) = (5.0, 5.0);
/// The projection head's output size (the `pretrain` default).
const HEAD_OUT: usize = 128;
/// A fixed learning rate, small enough that random data does not blow up the weights.
const LR: f64 = 0.05;

#[derive(Debug, clap::Args)]
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
    /// Images per view (the step sees 2 views of this many).
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Widths of the slimmable step, comma-separated; must include 1.0.
    #[arg(long, value_delimiter = ',', default_value = "1.0,0.75,0.5,0.25")]
    pub widths: Vec<f64>,
    /// Untimed steps of each kind first.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Timed steps of each kind.
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// libtorch's intra-op threads (default: libtorch's own choice).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Seed of the weights and of the random inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
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
        let mut sorted = times.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
        };
        StepStats {
            median_s: median,
            min_s: sorted[0],
            max_s: sorted[n - 1],
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
    pub widths: Vec<f64>,
    pub device: String,
    pub threads: i32,
    pub warmup: usize,
    pub steps: usize,
    pub slimmable: StepStats,
    pub full: StepStats,
    /// `slimmable.median_s / full.median_s`.
    pub ratio: f64,
    /// Backbone MACs per image at each width, in the order of `widths`.
    pub macs: Vec<u64>,
    /// `Σ macs / macs(1.0)`: the ideal `ratio`.
    pub macs_ratio: f64,
}

/// One copy of the network, head and optimiser, training some of the widths.
struct Stepper {
    _vs: nn::VarStore,
    net: SlimNet,
    head: SlimHead,
    optimizer: Optimizer,
    /// Widest first; `[1.0]` for the full-width-only step.
    active: Vec<f64>,
    weights: LossWeights,
    device: Device,
}

impl Stepper {
    fn new(model: &ModelConfig, active: Vec<f64>, seed: u64, device: Device) -> Result<Stepper> {
        tch::manual_seed(seed as i64);
        let vs = nn::VarStore::new(device);
        let net = SlimNet::new(&vs.root(), model)?;
        let features = net.network().features;
        let head = SlimHead::new(
            &(vs.root() / "train" / "head"),
            features,
            features,
            HEAD_OUT,
            net.widths(),
            model.bn_eps,
        );
        let params = crate::optim::trainable_named(&vs);
        let optimizer = Optimizer::new(
            OptimizerConfig {
                kind: OptimizerKind::Sgd,
                momentum: 0.9,
                weight_decay: 1e-4,
                eta: 0.001,
            },
            params,
        );
        // As in pretraining: re-weighted with distillation once the sub-widths are in,
        // uniform without distillation for the full width alone.
        let weights = if active.len() > 1 {
            LossWeights::reweighted(model.widths.as_slice(), true)
        } else {
            LossWeights::uniform(false)
        };
        Ok(Stepper {
            _vs: vs,
            net,
            head,
            optimizer,
            active,
            weights,
            device,
        })
    }

    /// NT-Xent logits (positive in column 0) of width `w` for the two views.
    fn logits(&self, x1: &Tensor, x2: &Tensor, w: f64) -> Tensor {
        let z1 = self.head.forward(&self.net.forward(x1, w, true), w, true);
        let z2 = self.head.forward(&self.net.forward(x2, w, true), w, true);
        loss::nt_xent_logits(&z1, &z2, TEMPERATURE).0
    }

    /// One training step; returns the loss.
    fn step(&mut self, x1: &Tensor, x2: &Tensor) -> f64 {
        let full = self.logits(x1, x2, 1.0);
        let mut total = loss::infonce(&full) * self.weights.full;
        let teacher = full.detach();
        for &w in &self.active[1..] {
            let logits = self.logits(x1, x2, w);
            total += loss::infonce(&logits) * self.weights.sub_contrastive;
            total += loss::distillation(&logits, &teacher, DISTILL_T.0, DISTILL_T.1)
                * self.weights.sub_distillation;
        }
        let value = total.double_value(&[]);
        self.optimizer.zero_grad();
        total.backward();
        self.optimizer.step(LR);
        if let Device::Cuda(i) = self.device {
            tch::Cuda::synchronize(i as i64);
        }
        value
    }

    /// One step, timed.
    fn timed(&mut self, x1: &Tensor, x2: &Tensor) -> (f64, f64) {
        let t = Instant::now();
        let loss = self.step(x1, x2);
        (t.elapsed().as_secs_f64(), loss)
    }
}

/// Runs the benchmark (prints nothing).
pub fn bench_step(a: &BenchStepArgs) -> Result<BenchReport> {
    if a.steps == 0 || a.batch < 2 {
        bail!("bench-step needs --steps >= 1 and --batch >= 2");
    }
    let backbone = Backbone::parse(&a.backbone).with_context(|| {
        let names: Vec<_> = Backbone::ALL.iter().map(|b| b.name()).collect();
        format!("unknown backbone {:?}; known: {names:?}", a.backbone)
    })?;
    if let Some(n) = a.threads {
        tch::set_num_threads(n as i32);
    }
    let device = a.device.device()?;
    let mut model = ModelConfig::new(
        backbone,
        a.channels,
        a.image_size,
        vec!["unused".into()],
        vec![0.0; a.channels],
        vec![1.0; a.channels],
    );
    model.widths = a.widths.clone();
    let model = model.validated()?;
    let widths = model.widths.clone();

    let mut slim = Stepper::new(&model, widths.clone(), a.seed, device)?;
    let mut full = Stepper::new(&model, vec![1.0], a.seed, device)?;
    tch::manual_seed(a.seed as i64 + 1);
    let shape = [
        a.batch as i64,
        a.channels as i64,
        a.image_size as i64,
        a.image_size as i64,
    ];
    let x1 = Tensor::randn(shape, (Kind::Float, device));
    let x2 = Tensor::randn(shape, (Kind::Float, device));

    for _ in 0..a.warmup {
        slim.step(&x1, &x2);
        full.step(&x1, &x2);
    }
    let (mut t_slim, mut t_full) = (Vec::new(), Vec::new());
    let (mut l_slim, mut l_full) = (0.0, 0.0);
    for _ in 0..a.steps {
        let (t, l) = slim.timed(&x1, &x2);
        t_slim.push(t);
        l_slim = l;
        let (t, l) = full.timed(&x1, &x2);
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
        backbone: backbone.name().into(),
        image_size: a.image_size,
        channels: a.channels,
        batch: a.batch,
        widths,
        device: format!("{device:?}").to_lowercase(),
        threads: tch::get_num_threads(),
        warmup: a.warmup,
        steps: a.steps,
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
        "bench-step ({}): {} {}x{}x{}, batch {} x 2 views, widths {:?}, {} with {} threads, {} warmup + {} timed steps each\n",
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
        r.steps
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

/// `slim-train bench-step`.
pub fn run(a: &BenchStepArgs) -> Result<()> {
    let report = bench_step(a)?;
    print!("{}", format_report(&report));
    if let Some(p) = &a.json {
        slim_core::fsutil::atomic_write(p, serde_json::to_string_pretty(&report)?.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: BenchStepArgs,
    }

    #[test]
    fn a_tiny_bench_runs_and_reports_a_ratio() {
        let w = Wrap::parse_from([
            "x",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--batch",
            "4",
            "--image-size",
            "16",
            "--device",
            "cpu",
        ]);
        let r = bench_step(&w.args).unwrap();
        assert!(r.ratio.is_finite() && r.ratio > 0.0, "{r:?}");
        assert!(r.slimmable.last_loss.is_finite() && r.full.last_loss.is_finite());
        // ResNet-20: the unsliced stem input puts the MACs ratio just over 1.875.
        assert!(
            r.macs_ratio > 1.875 && r.macs_ratio < 1.9,
            "{}",
            r.macs_ratio
        );
        assert!(format_report(&r).contains("ratio slimmable/full"));
    }
}
