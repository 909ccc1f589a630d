//! The pieces [`super::SlimNet`] is made of: a slimmable conv with one BatchNorm per
//! width, the layers built from them, the probe, and what a forward pass carries.

use std::cell::RefCell;
use std::collections::BTreeMap;

use slim_core::Width;
use slim_core::{Activation, ConvBn};
use tch::nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use super::SyncBatchNorm;

/// torchvision's conv initialisation: `kaiming_normal_(mode="fan_out", nonlinearity="relu")`.
pub(super) const CONV_INIT: Init = Init::Kaiming {
    dist: NormalOrUniform::Normal,
    fan: FanInOut::FanOut,
    non_linearity: NonLinearity::ReLU,
};

/// The var-store path of a dotted tensor-name prefix: tch paths cannot contain '.', so
/// `layer1.0.conv1` becomes the nested path `layer1` / `0` / `conv1`, whose variables tch
/// names `layer1.0.conv1.{var}` again.
pub(super) fn sub_path<'a>(root: &nn::Path<'a>, dotted: &str) -> nn::Path<'a> {
    dotted.split('.').fold(root.clone(), |p, part| p.sub(part))
}

pub(super) fn activate(x: Tensor, activation: Activation) -> Tensor {
    match activation {
        Activation::None => x,
        Activation::Relu => x.relu(),
        Activation::Relu6 => x.clamp(0.0, 6.0),
    }
}

/// One width's BatchNorm.
pub(super) struct BatchNorm {
    pub(super) weight: Tensor,
    pub(super) bias: Tensor,
    pub(super) running_mean: Tensor,
    pub(super) running_var: Tensor,
}

/// A conv with its full-width weight and one BatchNorm per width.
pub(super) struct SlimConv {
    pub(super) spec: ConvBn,
    pub(super) weight: Tensor,
    /// In the order of the config's widths.
    pub(super) bn: Vec<BatchNorm>,
}

impl SlimConv {
    pub(super) fn new(root: &nn::Path, spec: &ConvBn, widths: &[Width]) -> SlimConv {
        let p = sub_path(root, &spec.name);
        let shape = spec.weight_shape().map(|d| d as i64);
        let weight = p.var("weight", &shape, CONV_INIT);
        let bn = widths
            .iter()
            .map(|&w| {
                let c = spec.channels_at(w).1 as i64;
                let q = p.sub("bn").sub(w.tag());
                BatchNorm {
                    weight: q.ones("weight", &[c]),
                    bias: q.zeros("bias", &[c]),
                    running_mean: q.zeros_no_train("running_mean", &[c]),
                    running_var: q.ones_no_train("running_var", &[c]),
                }
            })
            .collect();
        SlimConv {
            spec: spec.clone(),
            weight,
            bn,
        }
    }

    /// The leading block of the weight that width `w` uses (depthwise: output channels
    /// only, the input dimension is 1 per group).
    pub(super) fn weight_at(&self, w: Width) -> Tensor {
        let (cin, cout) = self.spec.channels_at(w);
        let out = self.weight.narrow(0, 0, cout as i64);
        if self.spec.depthwise {
            out
        } else {
            out.narrow(1, 0, cin as i64)
        }
    }

    pub(super) fn forward(&self, x: &Tensor, p: &Pass<'_>) -> Tensor {
        let (s, at) = (&self.spec, p.at);
        let conv = |x: &Tensor, w: &Tensor| {
            x.conv2d(
                w,
                None::<Tensor>,
                [s.stride as i64; 2],
                [s.padding as i64; 2],
                [1, 1],
                s.groups_at(at.width) as i64,
            )
        };
        let w = self.weight_at(at.width);
        // Mixed precision as autocast does it for convolutions: the conv in the compute
        // kind, BatchNorm (and everything after) in float32 on float32 master weights.
        let y = match p.compute {
            Kind::Float => conv(x, &w),
            k => conv(&x.to_kind(k), &w.to_kind(k)).to_kind(Kind::Float),
        };
        let bn = &self.bn[at.index];
        let y = match p.bn {
            BnMode::Batch { momentum, .. } if p.sync.is_some() => {
                let sync = p.sync.expect("checked");
                let affine = (Some(&bn.weight), Some(&bn.bias));
                let running = (&bn.running_mean, &bn.running_var);
                sync.normalize(&y, affine, running, (momentum, p.eps))
            }
            BnMode::Batch { momentum, splits } if splits_into_groups(&y, splits) => {
                let affine = (Some(&bn.weight), Some(&bn.bias));
                let running = (&bn.running_mean, &bn.running_var);
                split_batch_norm(&y, affine, running, (momentum, p.eps), splits)
            }
            BnMode::Measure => {
                if let Some(moments) = p.moments {
                    moments
                        .borrow_mut()
                        .entry(self.spec.name.clone())
                        .or_default()
                        .add(&y);
                }
                y.batch_norm(
                    Some(&bn.weight),
                    Some(&bn.bias),
                    None,
                    None,
                    true,
                    0.0,
                    p.eps,
                    true,
                )
            }
            mode => y.batch_norm(
                Some(&bn.weight),
                Some(&bn.bias),
                Some(&bn.running_mean),
                Some(&bn.running_var),
                matches!(mode, BnMode::Batch { .. }),
                match mode {
                    BnMode::Batch { momentum, .. } => momentum,
                    BnMode::Running | BnMode::Measure => 0.0,
                },
                p.eps,
                true,
            ),
        };
        activate(y, s.activation)
    }

    /// (name, tensor) of the weight and every width's BatchNorm tensors.
    pub(super) fn named_tensors(&self, widths: &[Width], out: &mut Vec<(String, Tensor)>) {
        let name = &self.spec.name;
        out.push((format!("{name}.weight"), self.weight.shallow_clone()));
        for (&w, bn) in widths.iter().zip(&self.bn) {
            let t = w.tag();
            for (field, tensor) in [
                ("weight", &bn.weight),
                ("bias", &bn.bias),
                ("running_mean", &bn.running_mean),
                ("running_var", &bn.running_var),
            ] {
                out.push((format!("{name}.bn.{t}.{field}"), tensor.shallow_clone()));
            }
        }
    }

    pub(super) fn parameters_at(&self, at: At, out: &mut Vec<Tensor>) {
        let bn = &self.bn[at.index];
        out.extend([
            self.weight_at(at.width),
            bn.weight.shallow_clone(),
            bn.bias.shallow_clone(),
        ]);
    }
}

pub(super) enum SlimLayer {
    Conv(SlimConv),
    MaxPool {
        kernel: i64,
        stride: i64,
        padding: i64,
    },
    Residual {
        body: Vec<SlimConv>,
        shortcut: Option<SlimConv>,
        activation: Activation,
    },
}

impl SlimLayer {
    pub(super) fn convs(&self) -> Vec<&SlimConv> {
        match self {
            SlimLayer::Conv(c) => vec![c],
            SlimLayer::MaxPool { .. } => vec![],
            SlimLayer::Residual { body, shortcut, .. } => body.iter().chain(shortcut).collect(),
        }
    }

    pub(super) fn forward(&self, x: &Tensor, p: &Pass<'_>) -> Tensor {
        match self {
            SlimLayer::Conv(c) => c.forward(x, p),
            SlimLayer::MaxPool {
                kernel,
                stride,
                padding,
            } => x.max_pool2d([*kernel; 2], [*stride; 2], [*padding; 2], [1, 1], false),
            SlimLayer::Residual {
                body,
                shortcut,
                activation,
            } => {
                let mut y = x.shallow_clone();
                for c in body {
                    y = c.forward(&y, p);
                }
                let s = match shortcut {
                    Some(c) => c.forward(x, p),
                    None => x.shallow_clone(),
                };
                activate(y + s, *activation)
            }
        }
    }
}

/// One width's linear probe.
pub(super) struct Probe {
    pub(super) weight: Tensor,
    pub(super) bias: Tensor,
}

/// Whether the batch of `y` splits into `splits > 1` groups of two or more samples; a
/// batch that does not is normalized whole.
pub(crate) fn splits_into_groups(y: &Tensor, splits: usize) -> bool {
    let n = y.size()[0] as usize;
    splits > 1 && n.is_multiple_of(splits) && n / splits >= 2
}

/// Training BatchNorm of `y` `[N, C, ...]` with statistics per group of samples
/// (`i % splits`): the batch seen as `[N / splits, splits * C, ...]`, so each (group,
/// channel) pair is one channel; the running statistics take the groups' mean. `affine`
/// is (weight, bias), `running` (mean, var), `(momentum, eps)` as in `batch_norm`.
pub(crate) fn split_batch_norm(
    y: &Tensor,
    (weight, bias): (Option<&Tensor>, Option<&Tensor>),
    (running_mean, running_var): (&Tensor, &Tensor),
    (momentum, eps): (f64, f64),
    splits: usize,
) -> Tensor {
    let size = y.size();
    let (n, c) = (size[0], size[1]);
    let g = splits as i64;
    let grouped_size: Vec<i64> = [n / g, g * c]
        .into_iter()
        .chain(size[2..].iter().copied())
        .collect();
    let grouped = y.contiguous().reshape(grouped_size);
    let (mean, var) = (running_mean.repeat([g]), running_var.repeat([g]));
    let out = grouped.batch_norm(
        weight.map(|w| w.repeat([g])).as_ref(),
        bias.map(|b| b.repeat([g])).as_ref(),
        Some(&mean),
        Some(&var),
        true,
        momentum,
        eps,
        true,
    );
    tch::no_grad(|| {
        running_mean
            .shallow_clone()
            .copy_(&mean.view([g, c]).mean_dim(0, false, None));
        running_var
            .shallow_clone()
            .copy_(&var.view([g, c]).mean_dim(0, false, None));
    });
    out.reshape(size)
}

/// `x` `[N, C, H, W]` with channels-last (NHWC) strides; same shape and values.
pub fn channels_last(x: &Tensor) -> Tensor {
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// How a forward pass uses BatchNorm: the running statistics (eval), or the batch's,
/// folded into the running statistics with `momentum` (train), computed over `splits`
/// groups of the batch (see [`super::SlimNet::set_bn_splits`]); or (measure) the batch's,
/// running statistics untouched, each BatchNorm's input added to [`Pass::moments`].
#[derive(Clone, Copy)]
pub(super) enum BnMode {
    Running,
    Batch { momentum: f64, splits: usize },
    Measure,
}

/// What one forward pass needs besides its input.
pub(super) struct Pass<'a> {
    pub(super) at: At,
    pub(super) bn: BnMode,
    pub(super) eps: f64,
    /// The convolutions' compute kind (float32, or bfloat16 for mixed precision).
    pub(super) compute: Kind,
    /// With [`BnMode::Measure`]: the moments of each BatchNorm's input, by conv name.
    pub(super) moments: Option<&'a RefCell<BTreeMap<String, Moments>>>,
    /// With [`BnMode::Batch`]: statistics over every rank's batch instead.
    pub(super) sync: Option<&'a SyncBatchNorm>,
}

/// Per-channel moments of the values a BatchNorm has seen, in float64: their count, mean
/// and sum of squared deviations from it, merged batch by batch with Chan et al.'s
/// pairwise update, so the result is the mean and variance of all the values at once.
#[derive(Default)]
pub(super) struct Moments {
    pub(super) count: f64,
    pub(super) mean: Option<Tensor>,
    pub(super) m2: Option<Tensor>,
}

impl Moments {
    /// Adds every value of `y` `[N, C, H, W]`, per channel.
    fn add(&mut self, y: &Tensor) {
        let y = y.detach().to_kind(Kind::Double);
        let size = y.size();
        let n = (size[0] * size[2] * size[3]) as f64;
        let dims = [0i64, 2, 3];
        let mean = y.mean_dim(dims.as_slice(), false, None);
        let m2 =
            (&y - mean.view([1, -1, 1, 1]))
                .square()
                .sum_dim_intlist(dims.as_slice(), false, None);
        match (self.mean.take(), self.m2.take()) {
            (Some(old_mean), Some(old_m2)) => {
                let total = self.count + n;
                let delta = &mean - &old_mean;
                self.mean = Some(&old_mean + &delta * (n / total));
                self.m2 = Some(old_m2 + m2 + delta.square() * (self.count * n / total));
                self.count = total;
            }
            _ => {
                self.mean = Some(mean);
                self.m2 = Some(m2);
                self.count = n;
            }
        }
    }
}

/// A width and its position in the config's width list (which selects BatchNorm and probe).
#[derive(Clone, Copy)]
pub(super) struct At {
    pub(super) width: Width,
    pub(super) index: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn split_batch_norm_is_batch_norm_of_each_group_with_its_gradients() {
        tch::manual_seed(1);
        let opts = (Kind::Double, Device::Cpu);
        let x = Tensor::randn([8, 3, 2, 2], opts).set_requires_grad(true);
        let gamma = (Tensor::rand([3], opts) + 0.5).set_requires_grad(true);
        let beta = Tensor::randn([3], opts).set_requires_grad(true);
        let upstream = Tensor::randn([8, 3, 2, 2], opts);
        let (m, v) = (Tensor::zeros([3], opts), Tensor::ones([3], opts));
        let split = split_batch_norm(&x, (Some(&gamma), Some(&beta)), (&m, &v), (0.1, 1e-5), 2);
        let grads = |y: &Tensor| {
            Tensor::run_backward(
                &[(y * &upstream).sum(Kind::Double)],
                &[&x, &gamma, &beta],
                false,
                false,
            )
        };
        let got = grads(&split);
        // Group g: samples g, g + 2, ...; each normalized as a batch of its own.
        let mut want_y = Tensor::zeros([8, 3, 2, 2], opts);
        for g in 0..2 {
            let idx = Tensor::arange_start_step(g, 8, 2, (Kind::Int64, Device::Cpu));
            let y = x.index_select(0, &idx).batch_norm(
                Some(&gamma),
                Some(&beta),
                None,
                None,
                true,
                0.1,
                1e-5,
                false,
            );
            want_y = want_y.index_add(0, &idx, &y);
        }
        let want = grads(&want_y);
        assert!(split.allclose(&want_y, 1e-9, 1e-9, false));
        for (a, b) in got.iter().zip(&want) {
            assert!(a.allclose(b, 1e-9, 1e-9, false), "{a} {b}");
        }
    }
}
