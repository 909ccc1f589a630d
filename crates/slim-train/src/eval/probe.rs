//! SlimCLR's switchable linear probe: one linear layer per width trained on frozen
//! features, the full width on cross-entropy, each sub-width half on it and half toward
//! the full width's prediction. Training sees each feature standardized (the training
//! set's mean and standard deviation, folded into the probe afterwards), so one learning
//! rate suits features of any scale.

use slim_core::Width;
use std::f64::consts::PI;

use slim_core::Progress;
use slim_core::rng::SplitMix64;
use tch::{Kind, Tensor};

use super::FeatureSet;
use crate::loss::soft_cross_entropy;
use crate::{Error, SlimNet};

/// Rows per forward pass of [`probe_accuracy`].
const PROBE_EVAL_ROWS: usize = 4096;

/// A feature whose standard deviation over the training set is under this fraction of
/// the features' mean standard deviation is divided by that floor instead of its own:
/// dividing by a near-zero spread would blow up whatever the feature does at test time.
const MIN_RELATIVE_STD: f64 = 1e-2;

/// Per-feature mean and scale of `features` `[N, D]` (float32): each feature's standard
/// deviation, floored at [`MIN_RELATIVE_STD`] times their mean (and at 1 for a set of
/// constant features).
fn standardization(features: &Tensor) -> Result<(Tensor, Tensor), Error> {
    let mean = features.f_mean_dim([0i64].as_slice(), false, Kind::Float)?;
    let std = features.f_std_dim([0i64].as_slice(), false, false)?;
    let typical = std.f_mean(Kind::Float)?.double_value(&[]);
    let floor = match typical > 0.0 {
        true => MIN_RELATIVE_STD * typical,
        false => 1.0,
    };
    Ok((mean, std.f_clamp_min(floor)?))
}

/// Folds a standardization into a probe trained on standardized features:
/// `W (x - mean) / scale + b = (W / scale) x + (b - (W / scale) mean)`, in place.
fn fold_standardization(
    weight: &Tensor,
    bias: &Tensor,
    mean: &Tensor,
    scale: &Tensor,
) -> Result<(), Error> {
    tch::no_grad(|| -> Result<(), Error> {
        let kind = weight.kind();
        let w = weight
            .f_to_kind(Kind::Float)?
            .f_div(&scale.f_unsqueeze(0)?)?;
        let b = bias.f_to_kind(Kind::Float)?.f_sub(&w.f_matmul(mean)?)?;
        weight.shallow_clone().f_copy_(&w.f_to_kind(kind)?)?;
        bias.shallow_clone().f_copy_(&b.f_to_kind(kind)?)?;
        Ok(())
    })
}

/// Settings of the switchable linear probe ([`train_probe`]).
#[derive(Clone, Debug, PartialEq)]
pub struct LinearConfig {
    pub epochs: usize,
    pub batch_size: usize,
    /// Peak learning rate, decayed to 0 by a per-step cosine schedule.
    pub lr: f64,
    /// SGD momentum (PyTorch's form: `buf = m * buf + grad`, no dampening).
    pub momentum: f64,
    /// L2 penalty added to the gradient of every probe tensor (bias included), on the
    /// weights of the standardized features (before the fold).
    pub weight_decay: f64,
    /// Seeds the probes' re-initialisation and the sample order.
    pub seed: u64,
}

impl Default for LinearConfig {
    /// 30 epochs of batch 256, SGD with lr 0.1 (cosine to 0), momentum 0.9, no weight
    /// decay: cheap on precomputed features and enough for a linear layer to converge.
    fn default() -> LinearConfig {
        LinearConfig {
            epochs: 30,
            batch_size: 256,
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.0,
            seed: 0,
        }
    }
}

/// A sub-width probe's loss (SlimCLR's linear evaluation):
/// `0.5 * CE(sub_logits, labels) + 0.5 * soft_CE(sub_logits, softmax(full_logits))`, the
/// full width's prediction detached (no gradient reaches `full_logits`). Both logits are
/// `[N, C]` for the same batch, `labels` `[N]` int64.
pub fn probe_loss(full_logits: &Tensor, sub_logits: &Tensor, labels: &Tensor) -> Tensor {
    let teacher = full_logits.detach().softmax(-1, full_logits.kind());
    cross_entropy(sub_logits, labels) * 0.5 + soft_cross_entropy(sub_logits, &teacher) * 0.5
}

/// Mean cross-entropy of `logits` `[N, C]` against `labels` `[N]`, in the logits' own
/// precision (tch's `cross_entropy_for_logits` computes in float32).
fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Tensor {
    logits
        .log_softmax(-1, logits.kind())
        .nll_loss(&labels.to_kind(Kind::Int64))
}

/// The `probe.{tag}.weight` and `.bias` variables of width `w` (sharing storage and
/// autograd identity with the model's).
fn probe_tensors(net: &SlimNet, w: Width) -> (Tensor, Tensor) {
    let t = w.tag();
    let (wname, bname) = (format!("probe.{t}.weight"), format!("probe.{t}.bias"));
    let mut weight = None;
    let mut bias = None;
    for (name, tensor) in net.named_tensors() {
        if name == wname {
            weight = Some(tensor);
        } else if name == bname {
            bias = Some(tensor);
        }
    }
    match (weight, bias) {
        (Some(w), Some(b)) => (w, b),
        _ => panic!("the model has no probe for width {w}"),
    }
}

/// Checks that `set` fits `net`: model widths, `[N, features_at(w)]` features, `[N]`
/// labels within the model's classes.
fn check_features(net: &SlimNet, set: &FeatureSet) -> Result<(), Error> {
    if set.per_width.len() != set.widths.len() {
        return Err(Error::Eval(format!(
            "the feature set has {} feature tensors for {} widths",
            set.per_width.len(),
            set.widths.len()
        )));
    }
    let ls = set.labels.size();
    if ls.len() != 1 {
        return Err(Error::Eval(format!("labels {ls:?} must be [N]")));
    }
    let n = ls[0];
    for (&w, f) in set.widths.iter().zip(&set.per_width) {
        net.width_index(w)?;
        let d = net.network().features_at(w) as i64;
        if f.size() != [n, d] {
            return Err(Error::Eval(format!(
                "features at width {w} are {:?}, the model's embedding is [{n}, {d}]",
                f.size()
            )));
        }
    }
    if n > 0 {
        let classes = net.config().num_classes() as i64;
        let labels = set.labels.to_kind(Kind::Int64);
        let (lo, hi) = (labels.min().int64_value(&[]), labels.max().int64_value(&[]));
        if lo < 0 || hi >= classes {
            return Err(Error::Eval(format!(
                "labels range over {lo}..={hi}, the model has {classes} classes"
            )));
        }
    }
    Ok(())
}

/// One optimisation of every width's probe, shared by [`train_probe`] (precomputed
/// features) and [`super::train_probe_augmented`] (features of augmented images): the
/// probes re-initialised, features standardized, SGD with momentum and a per-step cosine,
/// and the standardization folded back by [`ProbeTrainer::finish`].
pub(super) struct ProbeTrainer<'a> {
    net: &'a SlimNet,
    widths: Vec<Width>,
    /// Index in `widths` of the widest: trained on cross-entropy, the others' teacher.
    teacher: usize,
    probes: Vec<(Tensor, Tensor)>,
    params: Vec<Tensor>,
    buffers: Vec<Tensor>,
    /// Per width: mean and scale, float32 on the device.
    standardizations: Vec<(Tensor, Tensor)>,
    config: LinearConfig,
    total_steps: usize,
    step: usize,
}

impl<'a> ProbeTrainer<'a> {
    /// Re-initialises the probes of `reference.widths` inside `net` (weight ~ N(0,
    /// 0.01²), bias 0, drawn from `rng`) and takes each width's standardization from
    /// `reference`'s features, for a run of `total_steps` steps.
    pub(super) fn new(
        net: &'a SlimNet,
        reference: &FeatureSet,
        config: &LinearConfig,
        total_steps: usize,
        rng: &mut SplitMix64,
    ) -> Result<ProbeTrainer<'a>, Error> {
        check_features(net, reference)?;
        if reference.is_empty() {
            return Err(Error::Eval(
                "no training samples for the linear probe".into(),
            ));
        }
        if config.batch_size == 0 {
            return Err(Error::Eval(
                "the probe's batch size must be positive".into(),
            ));
        }
        let widths = reference.widths.clone();
        let teacher = (0..widths.len())
            .max_by(|&a, &b| widths[a].cmp(&widths[b]))
            .expect("at least one width");
        let probes: Vec<(Tensor, Tensor)> = widths.iter().map(|&w| probe_tensors(net, w)).collect();
        let params: Vec<Tensor> = probes
            .iter()
            .flat_map(|(w, b)| [w.shallow_clone(), b.shallow_clone()])
            .collect();
        tch::no_grad(|| -> Result<(), Error> {
            for (w, b) in &probes {
                let values: Vec<f32> = (0..w.numel()).map(|_| 0.01 * rng.normal()).collect();
                let init = Tensor::f_from_slice(&values)?
                    .f_view(w.size().as_slice())?
                    .f_to_kind(w.kind())?;
                w.shallow_clone().f_copy_(&init)?;
                let _ = b.shallow_clone().f_zero_()?;
            }
            Ok(())
        })?;
        let device = net.device();
        let standardizations = reference
            .per_width
            .iter()
            .map(|f| standardization(&f.f_to_device(device)?.f_to_kind(Kind::Float)?))
            .collect::<Result<Vec<_>, _>>()?;
        let buffers = params.iter().map(Tensor::zeros_like).collect();
        Ok(ProbeTrainer {
            net,
            widths,
            teacher,
            probes,
            params,
            buffers,
            standardizations,
            config: config.clone(),
            total_steps,
            step: 0,
        })
    }

    /// `features[i]`, raw `[B, D]` of width `widths[i]`, standardized in the probes'
    /// precision on the device.
    pub(super) fn standardize(&self, features: &[Tensor]) -> Result<Vec<Tensor>, Error> {
        let kind = self.probes[0].0.kind();
        features
            .iter()
            .zip(&self.standardizations)
            .map(|(f, (mean, scale))| {
                Ok(f.f_to_device(self.net.device())?
                    .f_to_kind(Kind::Float)?
                    .f_sub(mean)?
                    .f_div(scale)?
                    .f_to_kind(kind)?)
            })
            .collect()
    }

    /// One SGD step on a batch of standardized features (one `[B, D]` per width, on
    /// the device) and its labels `[B]` (int64, on the device); returns each width's loss.
    pub(super) fn step(&mut self, features: &[Tensor], labels: &Tensor) -> Result<Vec<f64>, Error> {
        let net = self.net;
        let logits: Vec<Tensor> = self
            .widths
            .iter()
            .zip(features)
            .map(|(&w, f)| net.probe(f, w))
            .collect();
        let teacher = self.teacher;
        let losses: Vec<Tensor> = (0..self.widths.len())
            .map(|i| match i == teacher {
                true => cross_entropy(&logits[i], labels),
                false => probe_loss(&logits[teacher], &logits[i], labels),
            })
            .collect();
        let total = losses
            .iter()
            .skip(1)
            .fold(losses[0].shallow_clone(), |acc, l| acc + l);
        let grads = Tensor::f_run_backward(&[&total], &self.params, false, false)?;
        let c = &self.config;
        let progress = self.step as f64 / self.total_steps.max(1) as f64;
        let lr = c.lr * 0.5 * (1.0 + (PI * progress.min(1.0)).cos());
        tch::no_grad(|| {
            for ((p, g), buf) in self.params.iter().zip(&grads).zip(self.buffers.iter_mut()) {
                let g = match c.weight_decay != 0.0 {
                    true => g + p * c.weight_decay,
                    false => g.shallow_clone(),
                };
                *buf = &*buf * c.momentum + g;
                let _ = p.shallow_clone().g_sub_(&(&*buf * lr));
            }
        });
        self.step += 1;
        Ok(losses.iter().map(|l| l.double_value(&[])).collect())
    }

    /// Folds each width's standardization into its probe, which then takes raw features.
    pub(super) fn finish(self) -> Result<(), Error> {
        for ((w, b), (mean, scale)) in self.probes.iter().zip(&self.standardizations) {
            fold_standardization(w, b, mean, scale)?;
        }
        Ok(())
    }
}

/// Trains the switchable linear probe inside `net` (its `probe.{tag}.weight/bias` for
/// each of `train`'s widths) on the precomputed features `train`; nothing else in `net`
/// changes.
///
/// Each width's features are standardized with the training set's per-feature mean and
/// standard deviation (a deviation from SlimCLR's raw features, for the README's reason:
/// the same learning rate then converges whatever the backbone's feature scale, e.g.
/// after a short run whose BatchNorm statistics have not settled) and the standardization
/// is folded into the probe at the end, so `net.probe` takes raw features as before.
///
/// The probes are first re-initialised (weight ~ N(0, 0.01²), bias 0, as MoCo's linear
/// evaluation does), then trained for `config.epochs` epochs over a shuffled order with
/// SGD (momentum, optional weight decay, learning rate cosine-decayed per step from
/// `config.lr` to 0), every width's probe in one optimisation on the sum of:
/// - the widest width of the set (the full width 1.0 when extracted at all of the model's
///   widths): cross-entropy with the labels;
/// - every other width: [`probe_loss`], toward the widest width's prediction on the same
///   batch.
///
/// Re-initialisation and order come from a generator seeded by `config.seed` (libtorch's
/// global generator is left alone), so the result depends only on the features and the
/// config. Returns each width's loss (its own objective) averaged over the last epoch, in
/// the order of `train.widths`. `progress` counts the steps.
pub fn train_probe(
    net: &SlimNet,
    train: &FeatureSet,
    config: &LinearConfig,
    progress: &mut dyn Progress,
) -> Result<Vec<f64>, Error> {
    let n = train.len();
    let steps_per_epoch = n.div_ceil(config.batch_size.max(1));
    let total_steps = config.epochs * steps_per_epoch;
    let mut rng = SplitMix64(config.seed);
    let mut trainer = ProbeTrainer::new(net, train, config, total_steps, &mut rng)?;
    let device = net.device();
    let features = trainer.standardize(&train.per_width)?;
    let labels = train.labels.f_to_device(device)?.f_to_kind(Kind::Int64)?;
    progress.begin("linear probe", total_steps as u64, "steps", 0);
    let mut last = vec![0.0; features.len()];
    for _ in 0..config.epochs {
        let order: Vec<i64> = rng.permutation(n).into_iter().map(|i| i as i64).collect();
        let order = Tensor::f_from_slice(&order)?.f_to_device(device)?;
        let mut sums = vec![0.0; features.len()];
        let mut start = 0;
        while start < n {
            let len = config.batch_size.min(n - start);
            let index = order.narrow(0, start as i64, len as i64);
            let batch: Vec<Tensor> = features.iter().map(|f| f.index_select(0, &index)).collect();
            let losses = trainer.step(&batch, &labels.index_select(0, &index))?;
            for (sum, l) in sums.iter_mut().zip(losses) {
                *sum += l * len as f64;
            }
            start += len;
            progress.update(trainer.step as u64, "");
        }
        last = sums.into_iter().map(|s| s / n as f64).collect();
    }
    progress.end();
    trainer.finish()?;
    Ok(last)
}

/// Top-1 and top-5 accuracy (top-`min(5, C)`) of the probe of `test.widths[width_index]`
/// inside `net` (`net.probe(features, w)`) on `test`'s features; (0.0, 0.0) for an empty
/// set. Runs on `net.device()` under no-grad.
///
/// # Panics
/// If `width_index` is out of range or `test` does not fit `net` (widths, feature sizes,
/// labels within the classes).
pub fn probe_accuracy(net: &SlimNet, test: &FeatureSet, width_index: usize) -> (f64, f64) {
    if let Err(e) = check_features(net, test) {
        panic!("{e}");
    }
    let w = test.widths[width_index];
    let n = test.len() as i64;
    if n == 0 {
        return (0.0, 0.0);
    }
    let device = net.device();
    let kind = probe_tensors(net, w).0.kind();
    let k = (net.config().num_classes() as i64).min(5);
    let (mut top1, mut topk) = (0i64, 0i64);
    tch::no_grad(|| {
        let mut start = 0;
        while start < n {
            let len = (PROBE_EVAL_ROWS as i64).min(n - start);
            let f = test.per_width[width_index]
                .narrow(0, start, len)
                .to_device(device)
                .to_kind(kind);
            let y = test
                .labels
                .narrow(0, start, len)
                .to_device(device)
                .to_kind(Kind::Int64)
                .unsqueeze(1);
            let (_, top) = net.probe(&f, w).topk(k, 1, true, true);
            let hit = top.eq_tensor(&y);
            top1 += hit.narrow(1, 0, 1).sum(Kind::Int64).int64_value(&[]);
            topk += hit.sum(Kind::Int64).int64_value(&[]);
            start += len;
        }
    });
    (top1 as f64 / n as f64, topk as f64 / n as f64)
}
