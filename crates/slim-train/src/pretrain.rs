//! SlimCLR pretraining (arXiv 2209.15525): every width runs forward on the same batch,
//! the losses are summed, one backward pass updates the shared weights.
//!
//! Frameworks: SimCLR (NT-Xent over the batch), MoCo v2 (a full-width momentum key
//! encoder and a queue of its keys) and MoCo v3 (a predictor on every width's query, the
//! full-width momentum keys of both views, in-batch negatives, no queue). SlimCLR's three
//! techniques, each switchable:
//! - slow start: only the full width trains until `slow_start_epoch`, then the
//!   sub-widths join and the learning rate re-peaks ([`Schedule`]);
//! - online distillation: the full width's detached similarity logits over
//!   [positive, negatives] teach each sub-width ([`loss::distillation`]);
//! - loss re-weighting by model size ([`LossWeights`]).
//!
//! Smoothed InfoNCE (arXiv 2212.07158) can replace the contrastive term. A checkpoint is
//! written atomically every `checkpoint_every` steps with everything `--resume` needs to
//! continue exactly: weights, head, momentum buffers, key encoder, queue, and the data
//! position (the loader's order and augmentations are functions of seed, epoch, index).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use slim_data::Dataset;
use slim_data::augment::Augment;
use slim_data::loader::{Batch, Loader, LoaderConfig};
use tch::{Device, Kind, Tensor, nn};

use crate::head::SlimHead;
use crate::loss::{self, LossWeights};
use crate::model::channels_last;
use crate::optim::{Optimizer, OptimizerConfig, Schedule};
use crate::twa::{BasisReport, Subspace, TwaConfig, trajectory_dir};
use crate::{Error, SlimNet, checkpoint};
use slim_core::Progress;
use slim_core::checkpoint::Precision;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Framework {
    Simclr,
    MocoV2,
    MocoV3,
}

impl Framework {
    pub fn name(self) -> &'static str {
        match self {
            Framework::Simclr => "SimCLR",
            Framework::MocoV2 => "MoCo v2",
            Framework::MocoV3 => "MoCo v3",
        }
    }

    fn has_key_encoder(self) -> bool {
        self != Framework::Simclr
    }
}

/// Everything that defines a pretraining run; stored in every checkpoint it writes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PretrainConfig {
    pub framework: Framework,
    pub epochs: usize,
    pub batch_size: usize,
    /// Peak learning rate (already scaled for the batch size).
    pub lr: f64,
    pub warmup_epochs: usize,
    pub optimizer: OptimizerConfig,
    pub temperature: f64,
    /// Epoch at which the sub-widths join; 0 trains every width from the start.
    pub slow_start_epoch: usize,
    pub distill: bool,
    pub distill_t_student: f64,
    pub distill_t_teacher: f64,
    pub reweight: bool,
    /// Smoothed InfoNCE: (alpha_max, top_k, ramp_fraction); `None` for plain InfoNCE.
    pub smoothed: Option<(f64, usize, f64)>,
    pub head_hidden: usize,
    pub head_out: usize,
    /// Hidden size of MoCo v3's predictor (at full width).
    #[serde(default)]
    pub predictor_hidden: usize,
    pub moco_queue: usize,
    /// The key encoder's momentum (MoCo v3: its start, raised to 1 along a cosine).
    pub moco_momentum: f64,
    /// Random-resized-crop scale range.
    pub crop_scale: (f32, f32),
    pub seed: u64,
    pub checkpoint_every: usize,
    /// Keep trajectory checkpoints (for TWA / SWA) in `out/trajectory`.
    #[serde(default)]
    pub trajectory: Option<TrajectoryConfig>,
    /// Train in the span of these checkpoints instead of in weight space (TWA).
    #[serde(default)]
    pub twa: Option<TwaConfig>,
    /// Mixed precision: convolutions in bfloat16, the rest in float32.
    #[serde(default)]
    pub bf16: bool,
    /// Channels-last (NHWC) weights and inputs.
    #[serde(default)]
    pub channels_last: bool,
    /// Colour augmentations (jitter, grayscale, blur) batched on the training device
    /// instead of on the loader's CPU threads.
    #[serde(default)]
    pub augment_on_device: bool,
}

/// When trajectory checkpoints are kept, and at which precision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrajectoryConfig {
    pub every: usize,
    pub unit: TrajectoryUnit,
    pub precision: Precision,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TrajectoryUnit {
    Steps,
    Epochs,
}

/// The trajectory checkpoints a run will write, known before it starts.
#[derive(Clone, Debug)]
pub struct TrajectoryPlan {
    pub dir: PathBuf,
    /// Checkpoints still to be written by this run.
    pub count: usize,
    /// Bytes of tensor data per checkpoint (the header adds a few KiB).
    pub bytes_each: usize,
}

/// The weight update: SGD/LARS in weight space, or SGD on the coefficients of a
/// checkpoint subspace (TWA).
enum Update {
    Weights(Optimizer),
    Subspace(Subspace),
}

impl Update {
    fn zero_grad(&mut self) {
        match self {
            Update::Weights(o) => o.zero_grad(),
            Update::Subspace(s) => s.zero_grad(),
        }
    }

    fn step(&mut self, lr: f64) {
        match self {
            Update::Weights(o) => o.step(lr),
            Update::Subspace(s) => s.step(lr),
        }
    }

    fn state(&self) -> Vec<(String, &Tensor)> {
        match self {
            Update::Weights(o) => o.state(),
            Update::Subspace(s) => s.state(),
        }
    }

    fn restore(&mut self, get: impl FnMut(&str) -> Option<Tensor>) -> usize {
        match self {
            Update::Weights(o) => o.restore(get),
            Update::Subspace(s) => s.restore(get),
        }
    }
}

/// Where a run stands; saved as the checkpoint's train state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    pub config: PretrainConfig,
    /// Optimiser steps taken.
    pub step: usize,
    pub epoch: usize,
    /// Next batch position within `epoch`.
    pub position: usize,
    pub queue_ptr: usize,
    /// Corrupt images skipped so far.
    pub skipped: usize,
}

/// One logged step (a line of `metrics.jsonl`).
#[derive(Debug, Serialize)]
struct Metrics<'a> {
    step: usize,
    epoch: usize,
    lr: f64,
    loss: f64,
    /// Per width (widest first): contrastive term, and distillation term for sub-widths.
    contrastive: &'a [f64],
    distillation: &'a [f64],
    images_per_s: f64,
    sub_widths_active: bool,
}

/// The full-width momentum key encoder, and its queue for MoCo v2.
struct Moco {
    _vs: nn::VarStore,
    net: SlimNet,
    head: SlimHead,
    /// (name, key-encoder variable, the query variable it follows), sorted by name.
    pairs: Vec<(String, Tensor, Tensor)>,
    /// `[K, D]` L2-normalised keys (MoCo v2).
    queue: Option<Tensor>,
}

/// The key encoder's L2-normalised keys for one batch.
enum Keys {
    /// MoCo v2: view 2's keys, compared with view 1's queries and then queued.
    Queued(Tensor),
    /// MoCo v3: each view's keys, compared with the other view's queries.
    Batch([Tensor; 2]),
}

pub struct Trainer {
    vs: nn::VarStore,
    net: SlimNet,
    head: SlimHead,
    /// MoCo v3's predictor.
    predictor: Option<SlimHead>,
    moco: Option<Moco>,
    update: Update,
    /// What [`Subspace::build`] reported, for a TWA run.
    basis: Option<BasisReport>,
    schedule: Schedule,
    loader: Loader,
    state: TrainState,
    out: PathBuf,
    device: Device,
}

/// The checkpoint a run in `out` writes and resumes from.
pub fn checkpoint_path(out: &Path) -> PathBuf {
    out.join("checkpoint.safetensors")
}

/// Mixed precision and memory order as `config` asks.
fn tune(net: &mut SlimNet, config: &PretrainConfig) {
    if config.bf16 {
        net.set_compute_kind(Kind::BFloat16);
    }
    if config.channels_last {
        net.to_channels_last();
    }
}

fn head_of(net: &SlimNet, vs: &nn::Path, c: &PretrainConfig) -> SlimHead {
    let features = net.network().features;
    SlimHead::new(
        vs,
        features,
        c.head_hidden.max(1),
        c.head_out,
        net.widths(),
        net.config().bn_eps,
    )
}

impl Trainer {
    /// A new run, or (with `resume`) the run whose checkpoint is in `out`. A resumed run
    /// keeps its stored [`PretrainConfig`]; a checkpoint of another architecture is
    /// refused. Initialisation draws from libtorch's process-wide generator, seeded here
    /// with the config's seed: runs are reproducible when no other thread draws from it
    /// meanwhile.
    pub fn new(
        model: &slim_core::ModelConfig,
        config: PretrainConfig,
        dataset: Arc<dyn Dataset>,
        out: &Path,
        resume: bool,
        device: Device,
        workers: usize,
    ) -> Result<Trainer, Error> {
        std::fs::create_dir_all(out).map_err(|e| Error::Io {
            path: out.to_path_buf(),
            source: e,
        })?;
        let ckpt_path = checkpoint_path(out);
        let resumed = if resume {
            let c = slim_core::checkpoint::load(&ckpt_path)?;
            if &c.config != model {
                return Err(Error::Resume {
                    path: ckpt_path,
                    msg: format!(
                        "it holds {} at widths {:?} ({} channels, {} px, {} classes), not the requested {} at {:?} ({} channels, {} px, {} classes)",
                        c.config.backbone.name(),
                        c.config.widths,
                        c.config.in_channels,
                        c.config.image_size,
                        c.config.num_classes(),
                        model.backbone.name(),
                        model.widths,
                        model.in_channels,
                        model.image_size,
                        model.num_classes()
                    ),
                });
            }
            let state: TrainState = c
                .train_state
                .as_deref()
                .ok_or_else(|| Error::Resume {
                    path: ckpt_path.clone(),
                    msg: "it holds no training state (not written by slim-train pretrain)".into(),
                })
                .and_then(|s| {
                    serde_json::from_str(s).map_err(|e| Error::Resume {
                        path: ckpt_path.clone(),
                        msg: format!("its training state does not parse: {e}"),
                    })
                })?;
            Some((c, state))
        } else {
            if ckpt_path.exists() {
                return Err(Error::Resume {
                    path: ckpt_path,
                    msg: "a checkpoint is already there: pass --resume to continue it, or choose another --out".into(),
                });
            }
            None
        };
        let config = resumed.as_ref().map_or(config, |(_, s)| s.config.clone());
        tch::manual_seed(config.seed as i64);
        let vs = nn::VarStore::new(device);
        let mut net = SlimNet::new(&vs.root(), model)?;
        tune(&mut net, &config);
        let head = head_of(&net, &(vs.root() / "train" / "head"), &config);
        let predictor = (config.framework == Framework::MocoV3).then(|| {
            SlimHead::predictor(
                &(vs.root() / "train" / "predictor"),
                config.head_out,
                config.predictor_hidden.max(1),
                net.widths(),
                net.config().bn_eps,
            )
        });
        let params = crate::optim::trainable_named(&vs);
        let (mut update, basis) = match &config.twa {
            Some(twa) => {
                let (subspace, report) =
                    Subspace::build(params, model, twa, &config.optimizer, device)?;
                // Start at the checkpoints' mean (a resumed run restores its own point).
                subspace.apply();
                (Update::Subspace(subspace), Some(report))
            }
            None => (
                Update::Weights(Optimizer::new(config.optimizer.clone(), params)),
                None,
            ),
        };
        let moco = config.framework.has_key_encoder().then(|| {
            let kvs = nn::VarStore::new(device);
            let mut knet = SlimNet::new(&kvs.root(), model).expect("validated above");
            tune(&mut knet, &config);
            let khead = head_of(&knet, &(kvs.root() / "train" / "head"), &config);
            let (q, k) = (vs.variables(), kvs.variables());
            let mut pairs: Vec<(String, Tensor, Tensor)> = k
                .into_iter()
                .map(|(name, kv)| {
                    let qv = q[&name].shallow_clone();
                    (name, kv, qv)
                })
                .collect();
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            tch::no_grad(|| {
                pairs
                    .iter()
                    .for_each(|(_, k, q)| k.shallow_clone().copy_(q))
            });
            let queue = (config.framework == Framework::MocoV2).then(|| {
                loss::l2_normalize(&Tensor::randn(
                    [config.moco_queue as i64, config.head_out as i64],
                    (Kind::Float, device),
                ))
            });
            Moco {
                _vs: kvs,
                net: knet,
                head: khead,
                pairs,
                queue,
            }
        });
        let loader = Loader::new(
            dataset,
            LoaderConfig {
                batch_size: config.batch_size,
                views: 2,
                augment: Some(Augment {
                    scale: config.crop_scale,
                    ..if config.framework.has_key_encoder() {
                        Augment::moco_v2(model.image_size)
                    } else {
                        Augment::simclr(model.image_size)
                    }
                }),
                normalize: crate::eval::normalize_of(model),
                workers,
                seed: config.seed,
                shuffle: true,
                drop_last: true,
                prefetch: 2 * workers.max(1),
                colour_on_device: config.augment_on_device,
            },
        );
        let spe = loader.batches_per_epoch();
        if spe == 0 {
            return Err(Error::Data(slim_data::Error::at(
                out,
                format!(
                    "the dataset holds fewer images than one batch of {}",
                    config.batch_size
                ),
            )));
        }
        let schedule = Schedule {
            base_lr: config.lr,
            total_steps: config.epochs * spe,
            warmup_steps: config.warmup_epochs * spe,
            switch_step: (config.slow_start_epoch > 0 && config.slow_start_epoch < config.epochs)
                .then_some(config.slow_start_epoch * spe),
        };
        let mut state = TrainState {
            config: config.clone(),
            step: 0,
            epoch: 0,
            position: 0,
            queue_ptr: 0,
            skipped: 0,
        };
        let mut trainer_moco = moco;
        if let Some((c, s)) = resumed {
            tch::no_grad(|| -> Result<(), Error> {
                // Model tensors keep their names in the checkpoint; the head is under train.
                for (name, mut var) in vs.variables() {
                    let t = c.tensors.get(&name).ok_or_else(|| Error::Resume {
                        path: ckpt_path.clone(),
                        msg: format!("tensor {name} is missing"),
                    })?;
                    var.f_copy_(&checkpoint::from_core(t, device)?)?;
                }
                if let Some(m) = &mut trainer_moco {
                    for (name, k, _) in &m.pairs {
                        let t = c.tensors.get(&format!("train.key.{name}")).ok_or_else(|| {
                            Error::Resume {
                                path: ckpt_path.clone(),
                                msg: format!("key-encoder tensor train.key.{name} is missing"),
                            }
                        })?;
                        k.shallow_clone()
                            .f_copy_(&checkpoint::from_core(t, device)?)?;
                    }
                    if let (Some(queue), Some(q)) =
                        (&mut m.queue, checkpoint::train_tensor(&c, "queue", device)?)
                    {
                        *queue = q;
                    }
                }
                Ok(())
            })?;
            let restored = update.restore(|name| {
                checkpoint::train_tensor(&c, &format!("opt.{name}"), device)
                    .ok()
                    .flatten()
            });
            if restored == 0 && s.step > 0 {
                return Err(Error::Resume {
                    path: ckpt_path,
                    msg: "it holds no optimiser state".into(),
                });
            }
            state = s;
        }
        Ok(Trainer {
            vs,
            net,
            head,
            predictor,
            moco: trainer_moco,
            update,
            basis,
            schedule,
            loader,
            state,
            out: out.to_path_buf(),
            device,
        })
    }

    pub fn state(&self) -> &TrainState {
        &self.state
    }

    pub fn net(&self) -> &SlimNet {
        &self.net
    }

    /// Whether the run has taken all its steps.
    pub fn finished(&self) -> bool {
        self.state.step >= self.schedule.total_steps
    }

    /// The subspace of a TWA run.
    pub fn subspace(&self) -> Option<&Subspace> {
        match &self.update {
            Update::Subspace(s) => Some(s),
            Update::Weights(_) => None,
        }
    }

    /// What building a TWA run's basis found.
    pub fn basis_report(&self) -> Option<&BasisReport> {
        self.basis.as_ref()
    }

    /// The trajectory checkpoints this run has still to write and their size.
    pub fn trajectory_plan(&self) -> Option<TrajectoryPlan> {
        let t = self.state.config.trajectory.as_ref()?;
        let every = t.every.max(1);
        let count = match t.unit {
            TrajectoryUnit::Steps => self.schedule.total_steps / every - self.state.step / every,
            TrajectoryUnit::Epochs => self.state.config.epochs / every - self.state.epoch / every,
        };
        let numel: usize = self
            .trajectory_tensors()
            .iter()
            .map(|(_, t)| t.numel())
            .sum::<usize>()
            + self
                .net
                .named_tensors()
                .iter()
                .map(|(_, t)| t.numel())
                .sum::<usize>();
        Some(TrajectoryPlan {
            dir: trajectory_dir(&self.out),
            count,
            bytes_each: numel * t.precision.bytes(),
        })
    }

    /// The projection head's variables, named as in the checkpoint without `train.`.
    fn trajectory_tensors(&self) -> Vec<(String, Tensor)> {
        self.vs
            .variables()
            .into_iter()
            .filter_map(|(n, t)| n.strip_prefix("train.").map(|n| (n.to_string(), t)))
            .collect()
    }

    /// Writes a trajectory checkpoint of the model and head now, if one is due after
    /// `epoch_done` (an epoch just ended) or this step.
    fn keep_trajectory(&self, epoch_done: bool) -> Result<(), Error> {
        let Some(t) = &self.state.config.trajectory else {
            return Ok(());
        };
        let every = t.every.max(1);
        let due = match t.unit {
            TrajectoryUnit::Steps => !epoch_done && self.state.step.is_multiple_of(every),
            TrajectoryUnit::Epochs => epoch_done && self.state.epoch.is_multiple_of(every),
        };
        if !due {
            return Ok(());
        }
        let dir = trajectory_dir(&self.out);
        std::fs::create_dir_all(&dir).map_err(|e| Error::Io {
            path: dir.clone(),
            source: e,
        })?;
        let tensors = self.trajectory_tensors();
        let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let state = serde_json::to_string(&self.state).expect("plain data");
        checkpoint::save_snapshot(
            &dir.join(format!("step-{:08}.safetensors", self.state.step)),
            &self.net,
            &refs,
            &state,
            t.precision,
        )
    }

    fn sub_widths_active(&self) -> bool {
        self.state.epoch >= self.state.config.slow_start_epoch
    }

    /// View `v` of `batch` on the device, colour-augmented there if the loader left
    /// that to the device, in the model's memory order.
    fn view(&self, batch: &Batch, v: usize) -> Tensor {
        let m = self.net.config();
        let x = Tensor::from_slice(&batch.images[v])
            .view([
                batch.len() as i64,
                m.in_channels as i64,
                m.image_size as i64,
                m.image_size as i64,
            ])
            .to_device(self.device);
        let x = match self.state.config.augment_on_device {
            true => crate::colour::apply(&x, &batch.colour[v], &m.mean, &m.std),
            false => x,
        };
        match self.state.config.channels_last {
            true => channels_last(&x),
            false => x,
        }
    }

    fn contrastive(&self, logits: &Tensor) -> Tensor {
        let c = &self.state.config;
        let l = match c.smoothed {
            Some((alpha_max, top_k, ramp)) => {
                let alpha =
                    loss::alpha_at(self.state.step, self.schedule.total_steps, alpha_max, ramp);
                loss::smoothed_infonce(logits, alpha, top_k)
            }
            None => loss::infonce(logits),
        };
        match c.framework {
            // MoCo v3 sums both directions, each scaled by 2τ; `l` is their mean.
            Framework::MocoV3 => l * (4.0 * c.temperature),
            _ => l,
        }
    }

    /// The key encoder's momentum now: constant (MoCo v2), or MoCo v3's cosine rise.
    fn key_momentum(&self) -> f64 {
        let m = self.state.config.moco_momentum;
        match self.state.config.framework {
            Framework::MocoV3 => cosine_momentum(m, self.state.step, self.schedule.total_steps),
            _ => m,
        }
    }

    /// Similarity logits (positive in column 0) of width `w` for the two views.
    fn logits(&self, x1: &Tensor, x2: &Tensor, keys: Option<&Keys>, w: f64) -> Tensor {
        let t = self.state.config.temperature;
        let project = |x: &Tensor| self.head.forward(&self.net.forward(x, w, true), w, true);
        match (keys, self.moco.as_ref().and_then(|m| m.queue.as_ref())) {
            (Some(Keys::Queued(k)), Some(queue)) => loss::moco_logits(&project(x1), k, queue, t),
            (Some(Keys::Batch([k1, k2])), _) => {
                let p = self.predictor.as_ref().expect("MoCo v3 has a predictor");
                let q1 = p.forward(&project(x1), w, true);
                let q2 = p.forward(&project(x2), w, true);
                Tensor::cat(
                    &[
                        loss::in_batch_logits(&q1, k2, t),
                        loss::in_batch_logits(&q2, k1, t),
                    ],
                    0,
                )
            }
            _ => loss::nt_xent_logits(&project(x1), &project(x2), t).0,
        }
    }

    /// The slimmable objective on `batch`: (total, MoCo keys, per-width contrastive,
    /// per-width distillation).
    fn objective_of(&self, batch: &Batch) -> (Tensor, Option<Keys>, Vec<f64>, Vec<f64>) {
        let x1 = self.view(batch, 0);
        let x2 = self.view(batch, 1);
        let c = self.state.config.clone();
        let keys = self.moco.as_ref().map(|m| {
            let key = |x: &Tensor| {
                tch::no_grad(|| {
                    loss::l2_normalize(&m.head.forward(&m.net.forward(x, 1.0, true), 1.0, true))
                })
            };
            match m.queue {
                Some(_) => Keys::Queued(key(&x2)),
                None => Keys::Batch([key(&x1), key(&x2)]),
            }
        });
        let widths = self.net.widths().to_vec();
        let active = if self.sub_widths_active() {
            &widths[..]
        } else {
            &widths[..1]
        };
        let weights = if active.len() == 1 {
            LossWeights::uniform(false)
        } else if c.reweight {
            LossWeights::reweighted(&widths, c.distill)
        } else {
            LossWeights::uniform(c.distill)
        };
        let full = self.logits(&x1, &x2, keys.as_ref(), 1.0);
        let l_full = self.contrastive(&full);
        let mut total = &l_full * weights.full;
        let mut contrastive = vec![l_full.double_value(&[])];
        let mut distillation = vec![0.0];
        let teacher = full.detach();
        for &w in &active[1..] {
            let logits = self.logits(&x1, &x2, keys.as_ref(), w);
            let l_c = self.contrastive(&logits);
            total += &l_c * weights.sub_contrastive;
            contrastive.push(l_c.double_value(&[]));
            if c.distill {
                let l_d =
                    loss::distillation(&logits, &teacher, c.distill_t_student, c.distill_t_teacher);
                total += &l_d * weights.sub_distillation;
                distillation.push(l_d.double_value(&[]));
            } else {
                distillation.push(0.0);
            }
        }
        (total, keys, contrastive, distillation)
    }

    /// The mean objective over the first `batches` batches of epoch 0 (the same images
    /// and augmentations every call), without updating anything but BatchNorm's running
    /// statistics.
    pub fn objective(&self, batches: usize) -> f64 {
        let values: Vec<f64> = tch::no_grad(|| {
            self.loader
                .epoch(0)
                .take(batches)
                .map(|b| self.objective_of(&b).0.double_value(&[]))
                .collect()
        });
        values.iter().sum::<f64>() / values.len().max(1) as f64
    }

    /// One slimmable step; returns (total, per-width contrastive, per-width distillation).
    fn step(&mut self, batch: &Batch) -> Result<(f64, Vec<f64>, Vec<f64>), Error> {
        let (total, keys, contrastive, distillation) = self.objective_of(batch);
        let value = total.double_value(&[]);
        if !value.is_finite() {
            return Err(Error::NonFinite {
                step: self.state.step,
                checkpoint: checkpoint_path(&self.out),
            });
        }
        self.update.zero_grad();
        total.backward();
        self.update.step(self.schedule.lr(self.state.step));
        let momentum = self.key_momentum();
        if let Some(m) = &mut self.moco {
            tch::no_grad(|| {
                for (_, kv, qv) in &m.pairs {
                    let _ = kv
                        .shallow_clone()
                        .g_mul_scalar_(momentum)
                        .g_add_(&(qv * (1.0 - momentum)));
                }
                if let (Some(queue), Some(Keys::Queued(k))) = (&m.queue, keys) {
                    let len = queue.size()[0];
                    let ptr = self.state.queue_ptr as i64;
                    let take = (k.size()[0]).min(len - ptr);
                    queue.narrow(0, ptr, take).copy_(&k.narrow(0, 0, take));
                    self.state.queue_ptr = ((ptr + take) % len) as usize;
                }
            });
        }
        Ok((value, contrastive, distillation))
    }

    /// Writes the checkpoint atomically with everything needed to resume.
    pub fn save(&self) -> Result<PathBuf, Error> {
        let path = checkpoint_path(&self.out);
        let mut extra = self.trajectory_tensors();
        extra.extend(
            self.update
                .state()
                .into_iter()
                .map(|(n, t)| (format!("opt.{n}"), t.shallow_clone())),
        );
        if let Some(m) = &self.moco {
            extra.extend(
                m.pairs
                    .iter()
                    .map(|(n, k, _)| (format!("key.{n}"), k.shallow_clone())),
            );
            extra.extend(
                m.queue
                    .iter()
                    .map(|q| ("queue".to_string(), q.shallow_clone())),
            );
        }
        let refs: Vec<(&str, &Tensor)> = extra.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let state = serde_json::to_string(&self.state).expect("plain data");
        checkpoint::save_with_state(&path, &self.net, &refs, Some(&state))?;
        Ok(path)
    }

    /// Trains to the end (or to `max_steps` more steps), writing checkpoints and
    /// `metrics.jsonl`, reporting each step to `progress`.
    pub fn run(
        &mut self,
        max_steps: Option<usize>,
        progress: &mut dyn Progress,
    ) -> Result<PathBuf, Error> {
        let spe = self.loader.batches_per_epoch();
        let total = self.schedule.total_steps;
        progress.begin("pretrain", total as u64, "steps", self.state.step as u64);
        let metrics_path = self.out.join("metrics.jsonl");
        let mut metrics = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&metrics_path)
            .map_err(|e| Error::Io {
                path: metrics_path.clone(),
                source: e,
            })?;
        let stop_at = max_steps.map_or(total, |m| (self.state.step + m).min(total));
        let every = self.state.config.checkpoint_every.max(1);
        while self.state.step < stop_at {
            let epoch = self.state.epoch;
            let mut batches = self.loader.epoch_from(epoch as u64, self.state.position);
            let mut t = Instant::now();
            let mut exhausted = true;
            for batch in batches.by_ref() {
                for s in &batch.skipped {
                    progress.note(&format!("warning: skipped {s}"));
                }
                self.state.skipped += batch.skipped.len();
                let lr = self.schedule.lr(self.state.step);
                let (loss, contrastive, distillation) = self.step(&batch)?;
                let ips = (2 * batch.len()) as f64 / t.elapsed().as_secs_f64();
                t = Instant::now();
                self.state.step += 1;
                self.state.position = batch.position + 1;
                let line = Metrics {
                    step: self.state.step,
                    epoch,
                    lr,
                    loss,
                    contrastive: &contrastive,
                    distillation: &distillation,
                    images_per_s: ips,
                    sub_widths_active: self.sub_widths_active(),
                };
                writeln!(
                    metrics,
                    "{}",
                    serde_json::to_string(&line).expect("plain data")
                )
                .map_err(|e| Error::Io {
                    path: metrics_path.clone(),
                    source: e,
                })?;
                progress.update(
                    self.state.step as u64,
                    &format!(
                        "step {} epoch {epoch} loss {loss:.3} lr {lr:.4} {ips:.0} img/s",
                        self.state.step
                    ),
                );
                self.keep_trajectory(false)?;
                if self.state.step.is_multiple_of(every) {
                    self.save()?;
                }
                if self.state.step >= stop_at && self.state.position < spe {
                    exhausted = false;
                    break;
                }
            }
            if exhausted {
                self.state.epoch += 1;
                self.state.position = 0;
                self.keep_trajectory(true)?;
            }
        }
        progress.end();
        self.save()
    }
}

/// MoCo v3's (and BYOL's) momentum at `step` of `total`: `base` at the first step, rising
/// along a half cosine to 1 at the last.
fn cosine_momentum(base: f64, step: usize, total: usize) -> f64 {
    let progress = step as f64 / total.max(1) as f64;
    1.0 - (1.0 - base) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_momentum_rises_from_its_base_to_one() {
        let m = |step| super::cosine_momentum(0.99, step, 100);
        assert!((m(0) - 0.99).abs() < 1e-12);
        assert!((m(50) - 0.995).abs() < 1e-12);
        assert!((m(100) - 1.0).abs() < 1e-12);
        assert!(m(25) < m(50) && m(50) < m(75));
    }
}
