//! Architecture descriptions: one width-independent layer list per backbone, from which
//! the tch model, the ONNX exporter and the cost model are all derived, so the three can
//! never disagree about the shape of a network.

use serde::{Deserialize, Serialize};

use crate::width::{Width, make_divisible, scaled};

/// The backbones the toolchain knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backbone {
    /// CIFAR ResNet-20 (He et al. 2016): 3x3 stem, 3 stages of 3 basic blocks, 16/32/64
    /// channels. Small enough for CPU training, tests and the quickstart.
    Resnet20,
    /// ResNet-18 with the CIFAR stem (3x3 conv, stride 1, no max-pool) for 32x32 inputs.
    Resnet18Cifar,
    /// ResNet-50 (v1.5: stride in the 3x3 conv) with the ImageNet stem.
    Resnet50,
    /// MobileNetV2 (inverted residuals, depthwise convolutions, ReLU6): the edge backbone.
    MobilenetV2,
}

impl Backbone {
    pub const ALL: [Backbone; 4] = [
        Backbone::Resnet20,
        Backbone::Resnet18Cifar,
        Backbone::Resnet50,
        Backbone::MobilenetV2,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Backbone::Resnet20 => "resnet20",
            Backbone::Resnet18Cifar => "resnet18-cifar",
            Backbone::Resnet50 => "resnet50",
            Backbone::MobilenetV2 => "mobilenet-v2",
        }
    }

    pub fn parse(s: &str) -> Option<Backbone> {
        Backbone::ALL.into_iter().find(|b| b.name() == s)
    }

    /// The layer list for images with `in_channels` channels.
    pub fn network(self, in_channels: usize) -> Network {
        match self {
            Backbone::Resnet20 => resnet_cifar_basic(in_channels, &[16, 32, 64], &[3, 3, 3]),
            Backbone::Resnet18Cifar => {
                resnet_cifar_basic(in_channels, &[64, 128, 256, 512], &[2, 2, 2, 2])
            }
            Backbone::Resnet50 => resnet50(in_channels),
            Backbone::MobilenetV2 => mobilenet_v2(in_channels),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    None,
    Relu,
    /// min(max(x, 0), 6), as in MobileNetV2.
    Relu6,
}

/// How a layer's channels shrink with the width, as its backbone's reference does it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelRule {
    /// `max(1, floor(c * w))`: SlimCLR's `int(c * w)`, the ResNets.
    Floor,
    /// `times * make_divisible(c / times * w, 8)`: a base of `c / times` channels rounded
    /// to a multiple of 8, then expanded `times` (slimmable_networks' MobileNetV2, whose
    /// hidden layers have `t * inp` channels of an already rounded `inp`).
    Divisible8 { times: usize },
    /// All `c` at every width: the image channels, MobileNetV2's 1280-channel head.
    Fixed,
}

impl ChannelRule {
    /// Channels kept at width `w` out of `c` at full width.
    pub fn at(self, c: usize, w: Width) -> usize {
        match self {
            ChannelRule::Floor => scaled(c, w),
            ChannelRule::Divisible8 { times } => {
                times * make_divisible((c / times) as f64 * w.get(), 8)
            }
            ChannelRule::Fixed => c,
        }
    }
}

/// A convolution without bias followed by a switchable BatchNorm and an activation.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvBn {
    /// Weight-name prefix: the conv weight is `{name}.weight`, the BatchNorm of width tag
    /// `t` is `{name}.bn.{t}.{weight,bias,running_mean,running_var}`.
    pub name: String,
    /// Input channels at full width.
    pub in_channels: usize,
    /// Output channels at full width.
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    /// Depthwise (groups = channels, in = out); otherwise groups = 1.
    pub depthwise: bool,
    /// How the input and output channels shrink (the stem's input: [`ChannelRule::Fixed`]).
    pub in_rule: ChannelRule,
    pub out_rule: ChannelRule,
    pub activation: Activation,
}

impl ConvBn {
    /// (in, out) channels at width `w`.
    pub fn channels_at(&self, w: Width) -> (usize, usize) {
        (
            self.in_rule.at(self.in_channels, w),
            self.out_rule.at(self.out_channels, w),
        )
    }

    pub fn groups_at(&self, w: Width) -> usize {
        if self.depthwise {
            self.out_rule.at(self.out_channels, w)
        } else {
            1
        }
    }

    /// Shape of the full-width weight: [out, in / groups, k, k].
    pub fn weight_shape(&self) -> [usize; 4] {
        let per_group = if self.depthwise { 1 } else { self.in_channels };
        [self.out_channels, per_group, self.kernel, self.kernel]
    }

    /// Output spatial size for input size `hw`.
    pub fn out_size(&self, hw: usize) -> usize {
        (hw + 2 * self.padding - self.kernel) / self.stride + 1
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    ConvBn(ConvBn),
    MaxPool {
        kernel: usize,
        stride: usize,
        padding: usize,
    },
    /// `act(body(x) + shortcut(x))`; the shortcut is the identity when absent.
    Residual {
        body: Vec<ConvBn>,
        shortcut: Option<ConvBn>,
        activation: Activation,
    },
}

/// A backbone: its layers, then global average pooling to `features` channels (at full
/// width) which is the embedding; the probe (one Linear per width) maps it to logits.
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    pub layers: Vec<Layer>,
    pub features: usize,
    /// How the embedding shrinks: the last layer's output rule.
    pub features_rule: ChannelRule,
}

impl Network {
    /// Every ConvBn in forward order.
    pub fn convs(&self) -> Vec<&ConvBn> {
        let mut out = Vec::new();
        for layer in &self.layers {
            match layer {
                Layer::ConvBn(c) => out.push(c),
                Layer::MaxPool { .. } => {}
                Layer::Residual { body, shortcut, .. } => {
                    out.extend(body.iter());
                    out.extend(shortcut.iter());
                }
            }
        }
        out
    }

    /// Embedding size at width `w`.
    pub fn features_at(&self, w: Width) -> usize {
        self.features_rule.at(self.features, w)
    }
}

fn conv(
    name: impl Into<String>,
    cin: usize,
    cout: usize,
    kernel: usize,
    stride: usize,
    activation: Activation,
) -> ConvBn {
    ConvBn {
        name: name.into(),
        in_channels: cin,
        out_channels: cout,
        kernel,
        stride,
        padding: kernel / 2,
        depthwise: false,
        in_rule: ChannelRule::Floor,
        out_rule: ChannelRule::Floor,
        activation,
    }
}

fn shortcut_if_needed(prefix: &str, cin: usize, cout: usize, stride: usize) -> Option<ConvBn> {
    (stride != 1 || cin != cout).then(|| {
        conv(
            format!("{prefix}.downsample"),
            cin,
            cout,
            1,
            stride,
            Activation::None,
        )
    })
}

/// Residual stages after a stem of `cin` channels: stage `s` holds `blocks[s]` blocks of
/// `out[s]` output channels named `layer{s+1}.{b}`, the first block of every stage but
/// the first striding by 2; `body(prefix, cin, stride, out)` gives a block's convs.
/// Returns the layers and the last stage's channels.
fn stages(
    mut cin: usize,
    out: &[usize],
    blocks: &[usize],
    body: impl Fn(&str, usize, usize, usize) -> Vec<ConvBn>,
) -> (Vec<Layer>, usize) {
    let mut layers = Vec::new();
    for (s, (&cout, &n)) in out.iter().zip(blocks).enumerate() {
        for b in 0..n {
            let stride = if s > 0 && b == 0 { 2 } else { 1 };
            let p = format!("layer{}.{b}", s + 1);
            layers.push(Layer::Residual {
                body: body(&p, cin, stride, cout),
                shortcut: shortcut_if_needed(&p, cin, cout, stride),
                activation: Activation::Relu,
            });
            cin = cout;
        }
    }
    (layers, cin)
}

/// CIFAR-style ResNet of basic blocks: 3x3 stem at the first stage's width, stride 1.
fn resnet_cifar_basic(in_channels: usize, widths: &[usize], blocks: &[usize]) -> Network {
    let mut layers = vec![Layer::ConvBn(ConvBn {
        in_rule: ChannelRule::Fixed,
        ..conv("stem", in_channels, widths[0], 3, 1, Activation::Relu)
    })];
    let (body, features) = stages(widths[0], widths, blocks, |p, cin, stride, cout| {
        vec![
            conv(format!("{p}.conv1"), cin, cout, 3, stride, Activation::Relu),
            conv(format!("{p}.conv2"), cout, cout, 3, 1, Activation::None),
        ]
    });
    layers.extend(body);
    Network {
        layers,
        features,
        features_rule: ChannelRule::Floor,
    }
}

/// ResNet-50 v1.5: bottleneck blocks (1x1, 3x3 with the stride, 1x1 to 4x the middle).
fn resnet50(in_channels: usize) -> Network {
    let mut layers = vec![
        Layer::ConvBn(ConvBn {
            in_rule: ChannelRule::Fixed,
            ..conv("stem", in_channels, 64, 7, 2, Activation::Relu)
        }),
        Layer::MaxPool {
            kernel: 3,
            stride: 2,
            padding: 1,
        },
    ];
    let (body, features) = stages(
        64,
        &[256, 512, 1024, 2048],
        &[3, 4, 6, 3],
        |p, cin, stride, cout| {
            let mid = cout / 4;
            vec![
                conv(format!("{p}.conv1"), cin, mid, 1, 1, Activation::Relu),
                conv(format!("{p}.conv2"), mid, mid, 3, stride, Activation::Relu),
                conv(format!("{p}.conv3"), mid, cout, 1, 1, Activation::None),
            ]
        },
    );
    layers.extend(body);
    Network {
        layers,
        features,
        features_rule: ChannelRule::Floor,
    }
}

/// MobileNetV2 with slimmable_networks' channel rules (`models/s_mobilenet_v2.py`): every
/// width rounds the stem's and each block's channels to multiples of 8, a block's hidden
/// layers have `t` times its rounded input, and the 1280-channel head is whole at every
/// width (its input is sliced).
fn mobilenet_v2(in_channels: usize) -> Network {
    // (expansion t, output channels c, repeats n, first stride s), Sandler et al. 2018.
    const SETTINGS: [(usize, usize, usize, usize); 7] = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ];
    const HEAD: usize = 1280;
    let by8 = |times| ChannelRule::Divisible8 { times };
    let rules = |c: ConvBn, i, o| ConvBn {
        in_rule: i,
        out_rule: o,
        ..c
    };
    let mut layers = vec![Layer::ConvBn(rules(
        conv("stem", in_channels, 32, 3, 2, Activation::Relu6),
        ChannelRule::Fixed,
        by8(1),
    ))];
    let mut cin = 32;
    let mut index = 0;
    for (t, c, n, s) in SETTINGS {
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            let hidden = cin * t;
            let p = format!("blocks.{index}");
            let mut body = Vec::new();
            if t != 1 {
                let expand = conv(format!("{p}.expand"), cin, hidden, 1, 1, Activation::Relu6);
                body.push(rules(expand, by8(1), by8(t)));
            }
            let depthwise = ConvBn {
                depthwise: true,
                ..conv(
                    format!("{p}.depthwise"),
                    hidden,
                    hidden,
                    3,
                    stride,
                    Activation::Relu6,
                )
            };
            body.push(rules(depthwise, by8(t), by8(t)));
            let project = conv(format!("{p}.project"), hidden, c, 1, 1, Activation::None);
            body.push(rules(project, by8(t), by8(1)));
            if stride == 1 && cin == c {
                layers.push(Layer::Residual {
                    body,
                    shortcut: None,
                    activation: Activation::None,
                });
            } else {
                layers.extend(body.into_iter().map(Layer::ConvBn));
            }
            cin = c;
            index += 1;
        }
    }
    layers.push(Layer::ConvBn(rules(
        conv("head", cin, HEAD, 1, 1, Activation::Relu6),
        by8(1),
        ChannelRule::Fixed,
    )));
    Network {
        layers,
        features: HEAD,
        features_rule: ChannelRule::Fixed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_parse_back() {
        for b in Backbone::ALL {
            let net = b.network(3);
            let mut names: Vec<_> = net.convs().iter().map(|c| c.name.clone()).collect();
            let n = names.len();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), n, "{}", b.name());
            assert_eq!(Backbone::parse(b.name()), Some(b));
        }
    }

    /// slimmable_networks' `_make_divisible` on values worked by hand.
    #[test]
    fn channels_round_as_tf_slim_does() {
        use crate::width::make_divisible;
        assert_eq!(make_divisible(8.0, 8), 8, "32 x 0.25");
        assert_eq!(
            make_divisible(4.0, 8),
            8,
            "16 x 0.25: half a multiple rounds up"
        );
        assert_eq!(make_divisible(6.0, 8), 8, "24 x 0.25");
        assert_eq!(
            make_divisible(18.0, 8),
            24,
            "24 x 0.75: nearest is 16, 11% short"
        );
        assert_eq!(make_divisible(12.0, 8), 16, "24 x 0.5");
        assert_eq!(make_divisible(72.0, 8), 72, "96 x 0.75");
        assert_eq!(make_divisible(40.0, 8), 40, "160 x 0.25");
        assert_eq!(make_divisible(0.5, 8), 1, "at least 1");
    }

    #[test]
    fn mobilenet_v2_keeps_multiples_of_8_and_its_whole_head() {
        let net = Backbone::MobilenetV2.network(3);
        let w = |x| Width::new(x).unwrap();
        for x in [1.0, 0.75, 0.5, 0.25] {
            for c in net.convs() {
                let (cin, cout) = c.channels_at(w(x));
                if c.name != "head" {
                    assert_eq!(cout % 8, 0, "{} at {x}: {cout}", c.name);
                }
                if c.name != "stem" {
                    assert_eq!(cin % 8, 0, "{} at {x}: {cin}", c.name);
                }
            }
            assert_eq!(net.features_at(w(x)), 1280);
        }
        let at = |name: &str, x| {
            let c = net.convs().into_iter().find(|c| c.name == name).unwrap();
            c.channels_at(w(x))
        };
        // Width 1.0 is the paper's network; at 0.25 the reference's rounding.
        assert_eq!(at("stem", 1.0), (3, 32));
        assert_eq!(at("stem", 0.25), (3, 8));
        assert_eq!(
            at("blocks.1.expand", 0.25),
            (8, 48),
            "t 6 x make_divisible(16 x 0.25)"
        );
        assert_eq!(
            at("blocks.1.project", 0.25),
            (48, 8),
            "make_divisible(24 x 0.25)"
        );
        assert_eq!(
            at("blocks.2.expand", 0.75),
            (24, 144),
            "6 x make_divisible(18)"
        );
        assert_eq!(at("head", 0.25), (80, 1280));
        // ResNets keep floor(c * w).
        let r = Backbone::Resnet20.network(1);
        assert_eq!(r.convs()[0].channels_at(w(0.75)), (1, 12));
        assert_eq!(r.features_at(w(0.25)), 16);
    }

    #[test]
    fn layer_counts_match_the_papers() {
        // ResNet-20: stem + 9 blocks x 2 convs + 2 downsample shortcuts.
        assert_eq!(Backbone::Resnet20.network(3).convs().len(), 1 + 18 + 2);
        // ResNet-50: stem + 16 blocks x 3 convs + 4 downsample shortcuts.
        assert_eq!(Backbone::Resnet50.network(3).convs().len(), 1 + 48 + 4);
        // MobileNetV2: 17 inverted residual blocks, 16 of them with an expansion conv.
        assert_eq!(
            Backbone::MobilenetV2.network(3).convs().len(),
            1 + 17 * 2 + 16 + 1
        );
    }
}
