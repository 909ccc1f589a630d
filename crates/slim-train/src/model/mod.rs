//! [`SlimNet`]: the slimmable network, built by interpreting slim-core's width-independent
//! architecture description ([`slim_core::Network`]), so that training, the ONNX exporter
//! and the cost model all read the same layer list.
//!
//! Every conv keeps one full-width weight; a forward pass at width `w` uses its leading
//! block `W[..out(w), ..in(w)]` (a `narrow` view, so gradients reach the shared weight).
//! BatchNorms and probes are switchable: one per width, each with its own affine
//! parameters and running statistics. Variables are named exactly as in slim-core's
//! checkpoint format (`{conv}.weight`, `{conv}.bn.{tag}.*`, `probe.{tag}.*`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use slim_core::Width;
use slim_core::{Layer, ModelConfig, Network};
use tch::nn::{self, Init};
use tch::{Device, Kind, Tensor};

use crate::Error;

mod layers;
mod sync_bn;

pub use layers::channels_last;
use layers::{At, BnMode, Moments, Pass, Probe, SlimConv, SlimLayer};
pub(crate) use layers::{split_batch_norm, splits_into_groups};
pub use sync_bn::SyncBatchNorm;

/// PyTorch's BatchNorm momentum (weight of the new batch statistic).
pub const BN_MOMENTUM: f64 = 0.1;

/// The moments of every BatchNorm input of one width, measured batch by batch
/// ([`SlimNet::measure_batchnorm`]) in float64.
pub struct BatchNormMoments {
    width: Width,
    index: usize,
    layers: RefCell<BTreeMap<String, Moments>>,
    images: usize,
}

impl BatchNormMoments {
    pub fn width(&self) -> Width {
        self.width
    }

    /// Images measured so far.
    pub fn images(&self) -> usize {
        self.images
    }
}

/// A slimmable network with switchable BatchNorm and a switchable linear probe.
pub struct SlimNet {
    config: ModelConfig,
    network: Network,
    layers: Vec<SlimLayer>,
    /// In the order of the config's widths.
    probes: Vec<Probe>,
    compute: Kind,
    /// Groups a training batch's BatchNorm statistics are computed over (1: the batch).
    bn_splits: usize,
    /// Statistics over every rank's batch instead (data-parallel training).
    bn_sync: Option<Arc<SyncBatchNorm>>,
}

impl SlimNet {
    /// Creates the variables of `config`'s network under `vs`, initialised as torchvision
    /// does: Kaiming-normal (fan-out, ReLU) convs, BatchNorm weight 1 and bias 0, and
    /// PyTorch's default Linear initialisation (uniform in ±1/sqrt(in)) for the probes.
    pub fn new(vs: &nn::Path, config: &ModelConfig) -> Result<SlimNet, Error> {
        let config = config.clone().validated()?;
        let network = config.network();
        let widths = &config.widths;
        let layers = network
            .layers
            .iter()
            .map(|layer| match layer {
                Layer::ConvBn(c) => SlimLayer::Conv(SlimConv::new(vs, c, widths)),
                Layer::MaxPool {
                    kernel,
                    stride,
                    padding,
                } => SlimLayer::MaxPool {
                    kernel: *kernel as i64,
                    stride: *stride as i64,
                    padding: *padding as i64,
                },
                Layer::Residual {
                    body,
                    shortcut,
                    activation,
                } => SlimLayer::Residual {
                    body: body.iter().map(|c| SlimConv::new(vs, c, widths)).collect(),
                    shortcut: shortcut.as_ref().map(|c| SlimConv::new(vs, c, widths)),
                    activation: *activation,
                },
            })
            .collect();
        let classes = config.num_classes() as i64;
        let probes = widths
            .iter()
            .map(|&w| {
                let features = network.features_at(w) as i64;
                let bound = 1.0 / (features as f64).sqrt();
                let init = Init::Uniform {
                    lo: -bound,
                    up: bound,
                };
                let p = vs.sub("probe").sub(w.tag());
                Probe {
                    weight: p.var("weight", &[classes, features], init),
                    bias: p.var("bias", &[classes], init),
                }
            })
            .collect();
        Ok(SlimNet {
            config,
            network,
            layers,
            probes,
            compute: Kind::Float,
            bn_splits: 1,
            bn_sync: None,
        })
    }

    /// Runs the convolutions in `kind` (e.g. [`Kind::BFloat16`] for mixed precision on a
    /// GPU), keeping the weights, BatchNorm, the probes and every gradient update in
    /// float32.
    pub fn set_compute_kind(&mut self, kind: Kind) {
        self.compute = kind;
    }

    /// Computes BatchNorm's training statistics over `splits` groups of each batch (sample
    /// `i` in group `i % splits`), each normalized by its own, as the split BatchNorm of
    /// MoCo's one-device demo does: a stand-in for the statistics of several devices, so
    /// that a MoCo key encoder fed a shuffled batch sees other groups than the query. A
    /// batch that does not divide into groups of two or more uses its whole statistics.
    pub fn set_bn_splits(&mut self, splits: usize) {
        self.bn_splits = splits.max(1);
    }

    /// Computes BatchNorm's training statistics over every rank's batch (`Some`), or
    /// this process's (`None`, the default).
    pub fn set_bn_sync(&mut self, sync: Option<Arc<SyncBatchNorm>>) {
        self.bn_sync = sync;
    }

    /// Stores every conv weight in channels-last (NHWC) memory order, in place: the
    /// values and names stay, convolutions on channels-last inputs ([`channels_last`])
    /// then use NHWC kernels (faster on tensor-core GPUs).
    pub fn to_channels_last(&self) {
        tch::no_grad(|| {
            for layer in &self.layers {
                for c in layer.convs() {
                    c.weight.shallow_clone().set_data(&channels_last(&c.weight));
                }
            }
        });
    }

    /// The validated config (widths sorted widest first).
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn widths(&self) -> &[Width] {
        &self.config.widths
    }

    pub fn network(&self) -> &Network {
        &self.network
    }

    /// The device the variables live on.
    pub fn device(&self) -> Device {
        self.probes[0].weight.device()
    }

    /// The position of `w` in [`SlimNet::widths`], or an error naming the widths there are.
    pub fn width_index(&self, w: Width) -> Result<usize, Error> {
        self.config
            .widths
            .iter()
            .position(|&x| x == w)
            .ok_or_else(|| Error::Width {
                width: w,
                widths: self.config.widths.clone(),
            })
    }

    fn at(&self, w: Width) -> At {
        match self.width_index(w) {
            Ok(index) => At { width: w, index },
            Err(e) => panic!("{e}"),
        }
    }

    /// The embedding `[N, features_at(w)]` of images `x` `[N, C, H, W]` at width `w`:
    /// the layers, then global average pooling. `train` selects BatchNorm's mode: batch
    /// statistics (updating that width's running statistics) or running statistics.
    ///
    /// # Panics
    /// If `w` is not one of the model's widths (check with [`SlimNet::width_index`]), or
    /// on the shape errors libtorch reports for a wrong input.
    pub fn forward(&self, x: &Tensor, w: Width, train: bool) -> Tensor {
        let bn = match train {
            true => BnMode::Batch {
                momentum: BN_MOMENTUM,
                splits: self.bn_splits,
            },
            false => BnMode::Running,
        };
        self.forward_bn(x, self.at(w), bn, None)
    }

    fn forward_bn(
        &self,
        x: &Tensor,
        at: At,
        bn: BnMode,
        moments: Option<&RefCell<BTreeMap<String, Moments>>>,
    ) -> Tensor {
        let pass = Pass {
            at,
            bn,
            eps: self.config.bn_eps,
            compute: self.compute,
            moments,
            sync: self.bn_sync.as_deref(),
        };
        let mut h = x.shallow_clone();
        for layer in &self.layers {
            h = layer.forward(&h, &pass);
        }
        h.mean_dim([2i64, 3].as_slice(), false, None)
    }

    /// An empty [`BatchNormMoments`] of width `w`, to measure batches into
    /// ([`SlimNet::measure_batchnorm`]) and then set as the running statistics
    /// ([`SlimNet::set_batchnorm`]).
    pub fn batchnorm_moments(&self, w: Width) -> Result<BatchNormMoments, Error> {
        Ok(BatchNormMoments {
            width: w,
            index: self.width_index(w)?,
            layers: RefCell::new(BTreeMap::new()),
            images: 0,
        })
    }

    /// Runs images `x` `[N, C, H, W]` through the network at the width of `moments`,
    /// adding the input of each of that width's BatchNorms to `moments`: every BatchNorm
    /// normalizes with the batch's own statistics (as in training) and no running
    /// statistic changes. No gradient.
    pub fn measure_batchnorm(&self, x: &Tensor, moments: &mut BatchNormMoments) {
        let at = At {
            width: moments.width,
            index: moments.index,
        };
        tch::no_grad(|| {
            let _ = self.forward_bn(x, at, BnMode::Measure, Some(&moments.layers));
        });
        moments.images += x.size()[0] as usize;
    }

    /// Sets the running statistics of every BatchNorm of the width of `moments` to the
    /// mean and variance (unbiased, as BatchNorm stores it) of all the values it was
    /// measured on. No other width's statistics, and nothing else, change.
    pub fn set_batchnorm(&self, moments: &BatchNormMoments) -> Result<(), Error> {
        let layers = moments.layers.borrow();
        let mut updates = Vec::new();
        for layer in &self.layers {
            for c in layer.convs() {
                let m = layers.get(&c.spec.name);
                let (Some(mean), Some(m2), Some(count)) = (
                    m.and_then(|m| m.mean.as_ref()),
                    m.and_then(|m| m.m2.as_ref()),
                    m.map(|m| m.count).filter(|&n| n > 1.0),
                ) else {
                    return Err(Error::BatchNorm(format!(
                        "BatchNorm {}.bn.{} was measured on fewer than 2 values: no statistics to set",
                        c.spec.name,
                        moments.width.tag()
                    )));
                };
                let bn = &c.bn[moments.index];
                updates.push((bn, mean, m2 / (count - 1.0)));
            }
        }
        tch::no_grad(|| {
            for (bn, mean, var) in updates {
                bn.running_mean
                    .shallow_clone()
                    .copy_(&mean.to_kind(Kind::Float));
                bn.running_var
                    .shallow_clone()
                    .copy_(&var.to_kind(Kind::Float));
            }
        });
        Ok(())
    }

    /// Recomputes width `w`'s BatchNorm running statistics from `batches` (images
    /// `[N, C, H, W]`, any sizes): [`SlimNet::measure_batchnorm`] on each, then
    /// [`SlimNet::set_batchnorm`]. Each BatchNorm gets the exact mean and variance of its
    /// input over all the images, its upstream BatchNorms normalizing each batch by its
    /// own statistics (as PyTorch's cumulative `momentum=None` update, SWA's `bn_update`
    /// and Once-for-All's `set_running_statistics` run the network; unlike them the
    /// variance includes the spread between batch means, and batches weigh by their size).
    /// No gradient; no other width's statistics change.
    pub fn recompute_batchnorm(&self, w: Width, batches: &[Tensor]) -> Result<(), Error> {
        let mut moments = self.batchnorm_moments(w)?;
        for x in batches {
            self.measure_batchnorm(x, &mut moments);
        }
        self.set_batchnorm(&moments)
    }

    /// The logits `[N, classes]` of width `w`'s probe for an embedding at width `w`.
    ///
    /// # Panics
    /// If `w` is not one of the model's widths.
    pub fn probe(&self, embedding: &Tensor, w: Width) -> Tensor {
        let p = &self.probes[self.at(w).index];
        embedding.linear(&p.weight, Some(&p.bias))
    }

    /// (embedding, logits) at width `w`; see [`SlimNet::forward`].
    pub fn forward_t(&self, x: &Tensor, w: Width, train: bool) -> (Tensor, Tensor) {
        let embedding = self.forward(x, w, train);
        let logits = self.probe(&embedding, w);
        (embedding, logits)
    }

    /// Every model tensor (conv weights, every width's BatchNorm parameters and running
    /// statistics, every probe) under its checkpoint name, sharing storage with the
    /// model's variables.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let widths = &self.config.widths;
        let mut out = Vec::new();
        for layer in &self.layers {
            for c in layer.convs() {
                c.named_tensors(widths, &mut out);
            }
        }
        for (&w, p) in widths.iter().zip(&self.probes) {
            let t = w.tag();
            out.push((format!("probe.{t}.weight"), p.weight.shallow_clone()));
            out.push((format!("probe.{t}.bias"), p.bias.shallow_clone()));
        }
        out
    }

    /// The parameters a forward pass at width `w` reads, as used: the leading blocks of
    /// the conv weights (views), that width's BatchNorm affine pairs and its probe.
    ///
    /// # Panics
    /// If `w` is not one of the model's widths.
    pub fn parameters_at(&self, w: Width) -> Vec<Tensor> {
        let at = self.at(w);
        let mut out = Vec::new();
        for layer in &self.layers {
            for c in layer.convs() {
                c.parameters_at(at, &mut out);
            }
        }
        let p = &self.probes[at.index];
        out.extend([p.weight.shallow_clone(), p.bias.shallow_clone()]);
        out
    }
}
