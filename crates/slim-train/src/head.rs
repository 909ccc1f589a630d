//! The slimmable heads used only during pretraining, built per framework as SlimCLR's
//! reference builds them (`s_resnet.py`'s `simclr_slim`, `mocov2_slim` and `mocov3_slim`,
//! `s_mocov3.py`'s predictor): a Linear from the width's input to the width's share of
//! the hidden size (first-k slices of one shared weight, like every backbone layer),
//! optionally that width's own BatchNorm, ReLU, and a Linear to a fixed output size
//! shared by all widths (so their similarities are comparable), optionally followed by a
//! per-width BatchNorm of the output.
//!
//! | layout | fc1 bias | hidden BN | fc2 bias | output BN |
//! |---|---|---|---|---|
//! | SimCLR | yes | yes | no | yes |
//! | MoCo v2 | yes | no | yes | no |
//! | MoCo v3 projector | no | yes | no | yes, without affine |
//! | MoCo v3 predictor | no | yes | no | no |
//!
//! The predictor's input is the projection, whole at every width; its hidden layer is
//! sliced.

use serde::{Deserialize, Serialize};
use slim_core::Width;
use slim_core::width::scaled;
use tch::Tensor;

use std::sync::Arc;

use crate::model::{SyncBatchNorm, split_batch_norm, splits_into_groups};
use tch::nn::{self, Init};

/// Which of the reference's heads (see the module table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HeadLayout {
    Simclr,
    MocoV2,
    MocoV3Projector,
    MocoV3Predictor,
}

impl HeadLayout {
    fn fc1_bias(self) -> bool {
        matches!(self, HeadLayout::Simclr | HeadLayout::MocoV2)
    }
    fn hidden_bn(self) -> bool {
        self != HeadLayout::MocoV2
    }
    fn fc2_bias(self) -> bool {
        self == HeadLayout::MocoV2
    }
    /// `Some(affine)` when the output has its per-width BatchNorm.
    fn output_bn(self) -> Option<bool> {
        match self {
            HeadLayout::Simclr => Some(true),
            HeadLayout::MocoV3Projector => Some(false),
            _ => None,
        }
    }
}

/// One width's BatchNorm: (weight, bias) when affine, running mean and variance.
struct Norm {
    affine: Option<(Tensor, Tensor)>,
    mean: Tensor,
    var: Tensor,
}

impl Norm {
    fn new(p: &nn::Path, c: usize, affine: bool) -> Norm {
        let c = c as i64;
        Norm {
            affine: affine.then(|| {
                (
                    p.var("weight", &[c], Init::Const(1.0)),
                    p.var("bias", &[c], Init::Const(0.0)),
                )
            }),
            mean: p.zeros_no_train("running_mean", &[c]),
            var: p.ones_no_train("running_var", &[c]),
        }
    }

    fn apply(&self, x: &Tensor, train: bool, eps: f64, stats: &BatchStats) -> Tensor {
        let (g, b) = match &self.affine {
            Some((g, b)) => (Some(g), Some(b)),
            None => (None, None),
        };
        if let (true, Some(sync)) = (train, &stats.sync) {
            return sync.normalize(x, (g, b), (&self.mean, &self.var), (0.1, eps));
        }
        let splits = stats.splits;
        if train && splits_into_groups(x, splits) {
            let running = (&self.mean, &self.var);
            return split_batch_norm(x, (g, b), running, (0.1, eps), splits);
        }
        x.batch_norm(
            g,
            b,
            Some(&self.mean),
            Some(&self.var),
            train,
            0.1,
            eps,
            false,
        )
    }
}

pub struct SlimHead {
    fc1: Tensor,
    bias1: Option<Tensor>,
    /// Per width, when the layout has a hidden BatchNorm.
    bn: Vec<Norm>,
    fc2: Tensor,
    bias2: Option<Tensor>,
    /// Per width, when the layout has an output BatchNorm.
    out_bn: Vec<Norm>,
    widths: Vec<Width>,
    features: usize,
    /// Whether the input is a width's embedding (its first `features * w` entries) or
    /// the same size at every width.
    slim_input: bool,
    hidden: usize,
    eps: f64,
    /// Where its BatchNorms' training statistics come from.
    stats: BatchStats,
}

/// Where a head's BatchNorms take their training statistics: `splits` groups of the batch
/// (see [`crate::SlimNet::set_bn_splits`]), or every rank's batch.
struct BatchStats {
    splits: usize,
    sync: Option<Arc<SyncBatchNorm>>,
}

impl SlimHead {
    /// A projection head, its variables under `vs` (named `fc1.weight`, `fc1.bias`,
    /// `bn.{tag}.*`, `fc2.weight`, `fc2.bias`, `out_bn.{tag}.*` as the layout has them).
    pub fn new(
        vs: &nn::Path,
        layout: HeadLayout,
        (features, hidden, out): (usize, usize, usize),
        widths: &[Width],
        eps: f64,
    ) -> SlimHead {
        let slim_input = layout != HeadLayout::MocoV3Predictor;
        let uniform = |fan_in: usize| {
            let b = 1.0 / (fan_in as f64).sqrt();
            Init::Uniform { lo: -b, up: b }
        };
        // One BatchNorm per width of `channels(w)` channels, when the layout has it.
        let per_width = |name: &str, channels: &dyn Fn(Width) -> usize, affine: Option<bool>| {
            let path = vs / name;
            let norms = affine.map(|affine| {
                (widths.iter())
                    .map(|&w| Norm::new(&(&path / w.tag()), channels(w), affine))
                    .collect()
            });
            norms.unwrap_or_default()
        };
        let (fc1_path, fc2_path) = (vs / "fc1", vs / "fc2");
        SlimHead {
            fc1: fc1_path.var(
                "weight",
                &[hidden as i64, features as i64],
                uniform(features),
            ),
            bias1: layout
                .fc1_bias()
                .then(|| fc1_path.var("bias", &[hidden as i64], uniform(features))),
            bn: per_width(
                "bn",
                &|w| scaled(hidden, w),
                layout.hidden_bn().then_some(true),
            ),
            fc2: fc2_path.var("weight", &[out as i64, hidden as i64], uniform(hidden)),
            bias2: layout
                .fc2_bias()
                .then(|| fc2_path.var("bias", &[out as i64], uniform(hidden))),
            // The output is whole at every width: its BatchNorm has `out` channels.
            out_bn: per_width("out_bn", &|_| out, layout.output_bn()),
            widths: widths.to_vec(),
            features,
            slim_input,
            hidden,
            eps,
            stats: BatchStats {
                splits: 1,
                sync: None,
            },
        }
    }

    /// As [`crate::SlimNet::set_bn_splits`], for the head's BatchNorms.
    pub fn set_bn_splits(&mut self, splits: usize) {
        self.stats.splits = splits.max(1);
    }

    /// As [`crate::SlimNet::set_bn_sync`], for the head's BatchNorms.
    pub fn set_bn_sync(&mut self, sync: Option<Arc<SyncBatchNorm>>) {
        self.stats.sync = sync;
    }

    /// Projects `[N, features_at(w)]` embeddings of width `w` (`[N, dim]` for a
    /// predictor), in train or eval mode.
    pub fn forward(&self, embedding: &Tensor, w: Width, train: bool) -> Tensor {
        let i = self
            .widths
            .iter()
            .position(|&x| x == w)
            .expect("a width of the model");
        let f = match self.slim_input {
            true => scaled(self.features, w),
            false => self.features,
        } as i64;
        let h = scaled(self.hidden, w) as i64;
        let mut x = embedding.matmul(&self.fc1.narrow(0, 0, h).narrow(1, 0, f).transpose(0, 1));
        if let Some(b) = &self.bias1 {
            x += b.narrow(0, 0, h);
        }
        if let Some(bn) = self.bn.get(i) {
            x = bn.apply(&x, train, self.eps, &self.stats);
        }
        let mut y = x.relu().matmul(&self.fc2.narrow(1, 0, h).transpose(0, 1));
        if let Some(b) = &self.bias2 {
            y += b;
        }
        match self.out_bn.get(i) {
            Some(bn) => bn.apply(&y, train, self.eps, &self.stats),
            None => y,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn every_width_projects_to_the_shared_output_size_through_leading_slices() {
        let vs = nn::VarStore::new(Device::Cpu);
        let head = SlimHead::new(
            &vs.root(),
            HeadLayout::Simclr,
            (8, 8, 4),
            &slim_test_utils::widths(&[1.0, 0.5]),
            1e-5,
        );
        let e = Tensor::randn([5, 4], (Kind::Float, Device::Cpu));
        let out = head.forward(&e, slim_test_utils::width(0.5), true);
        assert_eq!(out.size(), [5, 4]);
        // Changing fc1 outside the leading 4 x 4 block leaves width 0.5 unchanged.
        tch::no_grad(|| {
            let _ = head.fc1.narrow(0, 4, 4).fill_(9.0);
        });
        let again = head.forward(&e, slim_test_utils::width(0.5), true);
        assert!(out.allclose(&again, 1e-6, 1e-6, false));
    }

    #[test]
    fn the_predictor_reads_the_whole_projection_at_every_width() {
        let vs = nn::VarStore::new(Device::Cpu);
        let pred = SlimHead::new(
            &vs.root(),
            HeadLayout::MocoV3Predictor,
            (4, 8, 4),
            &slim_test_utils::widths(&[1.0, 0.5]),
            1e-5,
        );
        let z = Tensor::randn([5, 4], (Kind::Float, Device::Cpu));
        let out = pred.forward(&z, slim_test_utils::width(0.5), true);
        assert_eq!(out.size(), [5, 4]);
        // Width 0.5 uses hidden units 0..4 only, but every input column.
        tch::no_grad(|| {
            let _ = pred.fc1.narrow(0, 4, 4).fill_(9.0);
        });
        assert!(out.allclose(
            &pred.forward(&z, slim_test_utils::width(0.5), true),
            1e-6,
            1e-6,
            false
        ));
        tch::no_grad(|| {
            let _ = pred.fc1.narrow(0, 0, 4).narrow(1, 3, 1).fill_(9.0);
        });
        assert!(!out.allclose(
            &pred.forward(&z, slim_test_utils::width(0.5), true),
            1e-3,
            1e-3,
            false
        ));
    }

    #[test]
    fn each_layout_has_the_reference_s_layers() {
        let widths = slim_test_utils::widths(&[1.0, 0.5]);
        let names = |layout| {
            let vs = nn::VarStore::new(Device::Cpu);
            let _head = SlimHead::new(&vs.root(), layout, (8, 16, 4), &widths, 1e-5);
            let mut n: Vec<String> = vs.variables().into_keys().collect();
            n.sort();
            n.retain(|n| !n.contains("w500"));
            n
        };
        assert_eq!(
            names(HeadLayout::Simclr),
            [
                "bn.w1000.bias",
                "bn.w1000.running_mean",
                "bn.w1000.running_var",
                "bn.w1000.weight",
                "fc1.bias",
                "fc1.weight",
                "fc2.weight",
                "out_bn.w1000.bias",
                "out_bn.w1000.running_mean",
                "out_bn.w1000.running_var",
                "out_bn.w1000.weight",
            ]
        );
        assert_eq!(
            names(HeadLayout::MocoV2),
            ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"]
        );
        assert_eq!(
            names(HeadLayout::MocoV3Projector),
            [
                "bn.w1000.bias",
                "bn.w1000.running_mean",
                "bn.w1000.running_var",
                "bn.w1000.weight",
                "fc1.weight",
                "fc2.weight",
                "out_bn.w1000.running_mean",
                "out_bn.w1000.running_var",
            ]
        );
        // The MoCo v3 projection is normalized per feature without affine: in train mode
        // every output column has mean 0 and (biased) variance 1 over the batch.
        let vs = nn::VarStore::new(Device::Cpu);
        let head = SlimHead::new(
            &vs.root(),
            HeadLayout::MocoV3Projector,
            (8, 16, 4),
            &widths,
            1e-5,
        );
        // A fixed input (no draw from libtorch's shared generator): 32 varied rows.
        let e = (Tensor::arange(128, (Kind::Float, Device::Cpu)).view([32, 4]) * 0.37).sin() * 3.0;
        let z = head.forward(&e, slim_test_utils::width(0.5), true);
        let mean = z.mean_dim(0, false, None).abs().max().double_value(&[]);
        let var = (z.var_dim(0, false, false) - 1.0)
            .abs()
            .max()
            .double_value(&[]);
        assert!(mean < 1e-4, "{mean}");
        assert!(var < 1e-2, "{var}");
    }
}
