//! MACs and parameter counts per width, computed from the architecture description.
//!
//! Counted as is usual for CNNs: a convolution costs `out_c * out_h * out_w * (in_c /
//! groups) * k * k` multiply-accumulates, a Linear `in * out`; BatchNorm, activations,
//! additions and pooling cost nothing. Parameters are the conv weights, the BatchNorm
//! affine pair of the width in use, and the probe's weight and bias; BatchNorm running
//! statistics are buffers, not parameters.

use serde::{Deserialize, Serialize};

use crate::arch::{Layer, Network};
use crate::width::Width;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cost {
    pub macs: u64,
    pub params: u64,
}

impl std::ops::AddAssign for Cost {
    fn add_assign(&mut self, o: Cost) {
        self.macs += o.macs;
        self.params += o.params;
    }
}

/// Cost of the backbone plus a `num_classes`-way probe at width `w`, for square inputs
/// of side `image_size`.
pub fn cost(net: &Network, w: Width, image_size: usize, num_classes: usize) -> Cost {
    let mut total = Cost::default();
    let mut hw = image_size;
    for layer in &net.layers {
        match layer {
            Layer::ConvBn(c) => {
                let (cost, out) = conv_cost(c, w, hw);
                total += cost;
                hw = out;
            }
            Layer::MaxPool {
                kernel,
                stride,
                padding,
            } => hw = (hw + 2 * padding - kernel) / stride + 1,
            Layer::Residual { body, shortcut, .. } => {
                let input = hw;
                for c in body {
                    let (cost, out) = conv_cost(c, w, hw);
                    total += cost;
                    hw = out;
                }
                if let Some(c) = shortcut {
                    total += conv_cost(c, w, input).0;
                }
            }
        }
    }
    let features = net.features_at(w) as u64;
    let classes = num_classes as u64;
    total += Cost {
        macs: features * classes,
        params: features * classes + classes,
    };
    total
}

fn conv_cost(c: &crate::arch::ConvBn, w: Width, hw: usize) -> (Cost, usize) {
    let (cin, cout) = c.channels_at(w);
    let per_group = (cin / c.groups_at(w)) as u64;
    let out = c.out_size(hw);
    let k2 = (c.kernel * c.kernel) as u64;
    let cout = cout as u64;
    let weights = cout * per_group * k2;
    let cost = Cost {
        macs: weights * (out * out) as u64,
        params: weights + 2 * cout,
    };
    (cost, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Backbone;

    fn assert_within(got: u64, want: f64, what: &str) {
        let rel = (got as f64 - want).abs() / want;
        assert!(
            rel < 0.01,
            "{what}: got {got}, want {want} (off by {:.2}%)",
            rel * 100.0
        );
    }

    /// SlimCLR (arXiv 2209.15525), Table 1: slimmable ResNet-50, 1000 classes, 224x224.
    #[test]
    fn slimmable_resnet50_matches_slimclr() {
        let net = Backbone::Resnet50.network(3);
        let want = [
            (1.0, 25.56e6, 4.09e9),
            (0.75, 14.77e6, 2.32e9),
            (0.5, 6.92e6, 1.05e9),
            (0.25, 1.99e6, 0.28e9),
        ];
        for (w, params, macs) in want {
            let c = cost(&net, Width::new(w).unwrap(), 224, 1000);
            assert_within(c.params, params, &format!("params at {w}"));
            assert_within(c.macs, macs, &format!("MACs at {w}"));
        }
    }

    #[test]
    fn mobilenet_v2_and_resnet18_match_known_full_width_figures() {
        // torchvision: MobileNetV2 3.50M params, 300M MACs; ResNet-18 11.69M at 224.
        let c = cost(&Backbone::MobilenetV2.network(3), Width::FULL, 224, 1000);
        assert_within(c.params, 3.505e6, "MobileNetV2 params");
        assert_within(c.macs, 300.8e6, "MobileNetV2 MACs");
        // CIFAR ResNet-18 (10 classes): 11.17M params, 0.556G MACs at 32x32.
        let c = cost(&Backbone::Resnet18Cifar.network(3), Width::FULL, 32, 10);
        assert_within(c.params, 11.17e6, "ResNet-18 CIFAR params");
        assert_within(c.macs, 0.556e9, "ResNet-18 CIFAR MACs");
    }

    #[test]
    fn cost_shrinks_with_width() {
        let net = Backbone::Resnet20.network(1);
        let costs: Vec<_> = crate::width::DEFAULT_WIDTHS
            .iter()
            .map(|&w| cost(&net, w, 28, 10))
            .collect();
        assert!(
            costs
                .windows(2)
                .all(|p| p[0].macs > p[1].macs && p[0].params > p[1].params)
        );
    }
}
