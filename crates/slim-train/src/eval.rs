//! Evaluation of a slimmable backbone at each of its widths.
//!
//! - [`extract_features`]: one eval-mode pass over a dataset (no augmentation, the shared
//!   [`Normalize`] preprocessing) computing every requested width's embedding from the
//!   same batch, into a [`FeatureSet`] on the CPU;
//! - [`knn_accuracy`]: the weighted cosine kNN monitor of Wu et al. 2018 ("Unsupervised
//!   Feature Learning via Non-Parametric Instance Discrimination"), as SimCLR / MoCo
//!   reproductions report it (`k` = [`DEFAULT_KNN_K`], `T` = [`DEFAULT_KNN_TEMPERATURE`]);
//! - [`train_probe`] / [`probe_accuracy`]: SlimCLR's switchable linear evaluation. The
//!   `probe.{tag}.*` tensors inside the [`SlimNet`] are trained on precomputed features
//!   (so the backbone is frozen and BatchNorm is in eval mode by construction), all widths
//!   in one optimisation: the full width on cross-entropy, every sub-width on
//!   [`probe_loss`] (half cross-entropy, half soft cross-entropy toward the full width's
//!   prediction);
//! - [`recompute_batchnorm`]: every width's BatchNorm statistics from clean training
//!   images (for a random network, or weights that were averaged: SWA, TWA).

use std::f64::consts::PI;
use std::sync::Arc;

use slim_core::Progress;
use slim_core::width;
use slim_data::loader::{Loader, LoaderConfig};
use slim_data::transform::Normalize;
use slim_data::{Dataset, Subset};
use tch::{Device, Kind, Tensor};

use crate::loss::{l2_normalize, soft_cross_entropy};
use crate::{Error, SlimNet};
use slim_core::rng::SplitMix64;

/// The kNN monitor's neighbour count (Wu et al. 2018; MoCo / SimCLR reproductions).
pub const DEFAULT_KNN_K: usize = 200;
/// The kNN monitor's temperature: neighbour `j` votes with weight `exp(cos_j / T)`.
pub const DEFAULT_KNN_TEMPERATURE: f64 = 0.07;

/// Upper bound on the elements of one `[test rows, train rows]` similarity block of the
/// kNN (64 MiB of float32).
const KNN_BLOCK_ELEMENTS: usize = 1 << 24;
/// Rows per forward pass of [`probe_accuracy`].
const PROBE_EVAL_ROWS: usize = 4096;

/// Recomputes every width's BatchNorm running statistics of `net` from up to `images`
/// training images of `dataset` (shuffled with a fixed seed, not augmented, normalised
/// as for evaluation), each width at its own width ([`SlimNet::recompute_batchnorm`]).
/// Returns the number of images used.
pub fn recompute_batchnorm(
    net: &SlimNet,
    dataset: Arc<dyn Dataset>,
    images: usize,
    batch_size: usize,
    workers: usize,
) -> Result<usize, Error> {
    let c = net.config();
    let loader = Loader::new(
        dataset,
        LoaderConfig {
            batch_size: batch_size.max(2),
            views: 1,
            augment: None,
            normalize: normalize_of(c),
            workers: workers.max(1),
            seed: 0,
            shuffle: true,
            drop_last: true,
            prefetch: 2,
            colour_on_device: false,
        },
    );
    let batches: Vec<Tensor> = loader
        .epoch(0)
        .take(images.div_ceil(batch_size.max(2)))
        .map(|b| {
            Tensor::from_slice(&b.images[0])
                .view([
                    b.len() as i64,
                    c.in_channels as i64,
                    c.image_size as i64,
                    c.image_size as i64,
                ])
                .to_device(net.device())
        })
        .collect();
    if batches.is_empty() {
        return Err(Error::Eval(format!(
            "no full batch of {batch_size} images to recompute BatchNorm statistics from"
        )));
    }
    for &w in net.widths() {
        net.recompute_batchnorm(w, &batches);
    }
    Ok(batches.iter().map(|b| b.size()[0] as usize).sum())
}

/// Embeddings of a dataset at several widths.
#[derive(Debug)]
pub struct FeatureSet {
    /// The width of each entry of `per_width`, in the order they were asked for.
    pub widths: Vec<f64>,
    /// `[N, features_at(w)]` float32 on the CPU, one per width; row `i` of every entry is
    /// the same image.
    pub per_width: Vec<Tensor>,
    /// `[N]` int64 on the CPU.
    pub labels: Tensor,
    /// Samples that failed to decode and were left out, each message naming its file.
    pub skipped: Vec<String>,
}

impl FeatureSet {
    /// Number of samples (rows).
    pub fn len(&self) -> usize {
        self.labels.size()[0] as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The features of width `w` (to a thousandth), if the set has them.
    pub fn features(&self, w: f64) -> Option<&Tensor> {
        width::find(&self.widths, w).map(|i| &self.per_width[i])
    }
}

/// The evaluation preprocessing a model was trained with: its input size, channels and
/// per-channel mean/std.
pub fn normalize_of(config: &slim_core::ModelConfig) -> Normalize {
    Normalize {
        size: config.image_size,
        channels: config.in_channels,
        mean: config.mean.clone(),
        std: config.std.clone(),
    }
}

/// Embeds `dataset` at each of `widths` (model widths, in any order) in one eval-mode
/// pass: every batch is decoded once ([`Normalize::apply`]: resize, centre crop,
/// normalise; no augmentation, in dataset order) on `workers` threads, moved to
/// `net.device()`, and run through `net.forward(x, w, false)` under no-grad for every
/// width.
///
/// `limit = Some(n)` embeds only [`slim_data::evenly_spaced`]`(len, n)` samples. Samples that fail
/// to decode are left out and listed in [`FeatureSet::skipped`], not fatal. `progress`
/// counts the samples, per batch.
#[allow(clippy::too_many_arguments)]
pub fn extract_features(
    net: &SlimNet,
    dataset: Arc<dyn Dataset>,
    normalize: &Normalize,
    widths: &[f64],
    batch: usize,
    limit: Option<usize>,
    workers: usize,
    progress: &mut dyn Progress,
) -> Result<FeatureSet, Error> {
    if widths.is_empty() {
        return Err(Error::Eval("no widths to extract features at".into()));
    }
    for &w in widths {
        net.width_index(w)?;
    }
    let channels = net.config().in_channels;
    if normalize.channels != channels {
        return Err(Error::Eval(format!(
            "the preprocessing makes {}-channel images, the model takes {channels}",
            normalize.channels
        )));
    }
    if batch == 0 || normalize.size == 0 {
        return Err(Error::Eval(format!(
            "batch size {batch} and image side {} must be positive",
            normalize.size
        )));
    }
    let dataset: Arc<dyn Dataset> = match limit {
        Some(n) if n < dataset.len() => Arc::new(Subset::evenly(dataset, n)),
        _ => dataset,
    };
    let total = dataset.len();
    progress.begin("features", total as u64, "images", 0);
    let workers = workers.max(1);
    let loader = Loader::new(
        dataset,
        LoaderConfig {
            batch_size: batch,
            views: 1,
            augment: None,
            normalize: normalize.clone(),
            workers,
            seed: 0,
            shuffle: false,
            drop_last: false,
            prefetch: 2 * workers,
            colour_on_device: false,
        },
    );
    let device = net.device();
    let side = normalize.size as i64;
    let mut chunks: Vec<Vec<Tensor>> = widths.iter().map(|_| Vec::new()).collect();
    let mut labels: Vec<i64> = Vec::with_capacity(total);
    let mut done = 0;
    let mut epoch = loader.epoch(0);
    for b in epoch.by_ref() {
        let n = b.len() as i64;
        let x = Tensor::f_from_slice(&b.images[0])?
            .f_view([n, channels as i64, side, side])?
            .f_to_device(device)?;
        tch::no_grad(|| -> Result<(), Error> {
            for (out, &w) in chunks.iter_mut().zip(widths) {
                let e = net.forward(&x, w, false);
                out.push(e.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?);
            }
            Ok(())
        })?;
        labels.extend(b.labels.iter().map(|&l| l as i64));
        done += b.len() + b.skipped.len();
        progress.update(done as u64, "");
    }
    let skipped = epoch.skipped().to_vec();
    drop(epoch);
    progress.update(total as u64, "");
    progress.end();
    let per_width = chunks
        .into_iter()
        .zip(widths)
        .map(|(parts, &w)| {
            if parts.is_empty() {
                let d = net.network().features_at(w) as i64;
                Ok(Tensor::zeros([0, d], (Kind::Float, Device::Cpu)))
            } else {
                Ok(Tensor::f_cat(&parts, 0)?)
            }
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(FeatureSet {
        widths: widths.to_vec(),
        per_width,
        labels: Tensor::from_slice(&labels),
        skipped,
    })
}

/// The weighted cosine kNN prediction of Wu et al. 2018 for each row of `test` `[M, D]`
/// against `train` `[N, D]` with labels `train_labels` `[N]` (int, in `0..num_classes`):
/// rows are L2-normalised, each test row takes its `min(k, N)` most cosine-similar
/// training rows, neighbour `j` votes for its class with weight `exp(cos_j / T)`, and the
/// prediction is the class with the largest summed weight (ties broken by libtorch's
/// argmax). The weights are computed as `exp((cos_j - cos_max) / T)`, the same up to a
/// per-row factor, so that small temperatures do not overflow.
///
/// Computed on `train`'s device in blocks of test rows (at most 2^24 similarities at a
/// time). Returns `[M]` int64 on the CPU.
///
/// # Panics
/// If `train` is empty, the shapes disagree, `k` is 0 or `temperature` is not positive.
pub fn knn_predict(
    train: &Tensor,
    train_labels: &Tensor,
    test: &Tensor,
    num_classes: usize,
    k: usize,
    temperature: f64,
) -> Tensor {
    let rows = (KNN_BLOCK_ELEMENTS / (train.size()[0].max(1) as usize)).max(1);
    knn_predict_blocked(train, train_labels, test, num_classes, k, temperature, rows)
}

fn knn_predict_blocked(
    train: &Tensor,
    train_labels: &Tensor,
    test: &Tensor,
    num_classes: usize,
    k: usize,
    temperature: f64,
    block_rows: usize,
) -> Tensor {
    let (ts, qs) = (train.size(), test.size());
    assert!(
        ts.len() == 2 && qs.len() == 2 && ts[1] == qs[1],
        "knn: train {ts:?} and test {qs:?} must be [N, D] and [M, D]"
    );
    assert!(ts[0] > 0, "knn: the training set is empty");
    assert_eq!(
        train_labels.size(),
        [ts[0]],
        "knn: one label per training row"
    );
    assert!(k > 0, "knn: k must be positive");
    assert!(temperature > 0.0, "knn: the temperature must be positive");
    let device = train.device();
    let k = (k as i64).min(ts[0]);
    let classes = num_classes as i64;
    tch::no_grad(|| {
        let bank = l2_normalize(&train.to_kind(Kind::Float)).tr();
        let labels = train_labels.to_device(device).to_kind(Kind::Int64);
        let mut preds = Vec::new();
        let mut start = 0;
        while start < qs[0] {
            let len = (block_rows as i64).min(qs[0] - start);
            let q = test
                .narrow(0, start, len)
                .to_device(device)
                .to_kind(Kind::Float);
            let sim = l2_normalize(&q).matmul(&bank);
            let (values, index) = sim.topk(k, 1, true, true);
            let neighbour = labels.take(&index);
            let weights = ((&values - values.narrow(1, 0, 1)) / temperature).exp();
            let votes = Tensor::zeros([len, classes], (Kind::Float, device))
                .scatter_add(1, &neighbour, &weights);
            preds.push(votes.argmax(1, false).to_device(Device::Cpu));
            start += len;
        }
        if preds.is_empty() {
            Tensor::zeros([0], (Kind::Int64, Device::Cpu))
        } else {
            Tensor::cat(&preds, 0)
        }
    })
}

/// [`knn_accuracy`] of every width of two feature sets of the same widths, in order.
pub fn knn_per_width(
    train: &FeatureSet,
    test: &FeatureSet,
    num_classes: usize,
    k: usize,
    temperature: f64,
) -> Vec<f64> {
    train
        .per_width
        .iter()
        .zip(&test.per_width)
        .map(|(tr, te)| {
            knn_accuracy(
                tr,
                &train.labels,
                te,
                &test.labels,
                num_classes,
                k,
                temperature,
            )
        })
        .collect()
}

/// The fraction of `test` rows whose [`knn_predict`] class equals `test_labels` (0.0 for
/// an empty test set). `k` = [`DEFAULT_KNN_K`] and `temperature` =
/// [`DEFAULT_KNN_TEMPERATURE`] are the usual monitor settings.
///
/// # Panics
/// As [`knn_predict`], or if `test_labels` is not `[M]`.
pub fn knn_accuracy(
    train: &Tensor,
    train_labels: &Tensor,
    test: &Tensor,
    test_labels: &Tensor,
    num_classes: usize,
    k: usize,
    temperature: f64,
) -> f64 {
    let m = test.size()[0];
    assert_eq!(test_labels.size(), [m], "knn: one label per test row");
    if m == 0 {
        return 0.0;
    }
    let pred = knn_predict(train, train_labels, test, num_classes, k, temperature);
    let correct = pred
        .eq_tensor(&test_labels.to_device(Device::Cpu).to_kind(Kind::Int64))
        .sum(Kind::Int64)
        .int64_value(&[]);
    correct as f64 / m as f64
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
    /// L2 penalty added to the gradient of every probe tensor (bias included).
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
fn probe_tensors(net: &SlimNet, w: f64) -> (Tensor, Tensor) {
    let t = width::tag(w);
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

/// Trains the switchable linear probe inside `net` (its `probe.{tag}.weight/bias` for
/// each of `train`'s widths) on the precomputed features `train`; nothing else in `net`
/// changes.
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
    check_features(net, train)?;
    let n = train.len();
    if n == 0 {
        return Err(Error::Eval(
            "no training samples for the linear probe".into(),
        ));
    }
    if config.batch_size == 0 {
        return Err(Error::Eval(
            "the probe's batch size must be positive".into(),
        ));
    }
    let device = net.device();
    let nw = train.widths.len();
    let teacher = (0..nw)
        .max_by(|&a, &b| train.widths[a].total_cmp(&train.widths[b]))
        .expect("at least one width");
    let probes: Vec<(Tensor, Tensor)> = train
        .widths
        .iter()
        .map(|&w| probe_tensors(net, w))
        .collect();
    let params: Vec<Tensor> = probes
        .iter()
        .flat_map(|(w, b)| [w.shallow_clone(), b.shallow_clone()])
        .collect();
    let mut rng = SplitMix64(config.seed);
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
    let kind = probes[0].0.kind();
    let features = train
        .per_width
        .iter()
        .map(|f| f.f_to_device(device)?.f_to_kind(kind))
        .collect::<Result<Vec<_>, _>>()?;
    let labels = train.labels.f_to_device(device)?.f_to_kind(Kind::Int64)?;
    let mut buffers: Vec<Tensor> = params.iter().map(Tensor::zeros_like).collect();
    let steps_per_epoch = n.div_ceil(config.batch_size);
    let total_steps = config.epochs * steps_per_epoch;
    progress.begin("linear probe", total_steps as u64, "steps", 0);
    let mut last = vec![0.0; nw];
    let mut step = 0;
    for _ in 0..config.epochs {
        let order: Vec<i64> = rng.permutation(n).into_iter().map(|i| i as i64).collect();
        let order = Tensor::f_from_slice(&order)?.f_to_device(device)?;
        let mut sums = vec![0.0; nw];
        let mut start = 0;
        while start < n {
            let len = config.batch_size.min(n - start);
            let index = order.narrow(0, start as i64, len as i64);
            let y = labels.index_select(0, &index);
            let logits: Vec<Tensor> = train
                .widths
                .iter()
                .zip(&features)
                .map(|(&w, f)| net.probe(&f.index_select(0, &index), w))
                .collect();
            let losses: Vec<Tensor> = (0..nw)
                .map(|i| {
                    if i == teacher {
                        cross_entropy(&logits[i], &y)
                    } else {
                        probe_loss(&logits[teacher], &logits[i], &y)
                    }
                })
                .collect();
            let total = losses
                .iter()
                .skip(1)
                .fold(losses[0].shallow_clone(), |acc, l| acc + l);
            let grads = Tensor::f_run_backward(&[&total], &params, false, false)?;
            let lr = config.lr * 0.5 * (1.0 + (PI * step as f64 / total_steps as f64).cos());
            tch::no_grad(|| {
                for ((p, g), buf) in params.iter().zip(&grads).zip(buffers.iter_mut()) {
                    let g = if config.weight_decay != 0.0 {
                        g + p * config.weight_decay
                    } else {
                        g.shallow_clone()
                    };
                    *buf = &*buf * config.momentum + g;
                    let _ = p.shallow_clone().g_sub_(&(&*buf * lr));
                }
            });
            for (sum, l) in sums.iter_mut().zip(&losses) {
                *sum += l.double_value(&[]) * len as f64;
            }
            start += len;
            step += 1;
            progress.update(step as u64, "");
        }
        last = sums.into_iter().map(|s| s / n as f64).collect();
    }
    progress.end();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knn_blocks_do_not_change_the_predictions() {
        let train = Tensor::randn([57, 5], (Kind::Float, Device::Cpu));
        let labels = Tensor::randint(3, [57], (Kind::Int64, Device::Cpu));
        let test = Tensor::randn([23, 5], (Kind::Float, Device::Cpu));
        let all = knn_predict_blocked(&train, &labels, &test, 3, 7, 0.1, 1000);
        for rows in [1, 4, 22] {
            let blocked = knn_predict_blocked(&train, &labels, &test, 3, 7, 0.1, rows);
            assert!(all.equal(&blocked), "{rows} rows per block");
        }
        assert_eq!(all.size(), [23]);
    }
}
