//! Architecture descriptions: one width-independent layer list per backbone, from which
//! the tch model, the ONNX exporter and the cost model are all derived, so the three can
//! never disagree about the shape of a network.

use serde::{Deserialize, Serialize};

use crate::width::{Width, scaled};

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
    /// False only for the stem: image channels are never sliced.
    pub slim_input: bool,
    pub activation: Activation,
}

impl ConvBn {
    /// (in, out) channels at width `w`.
    pub fn channels_at(&self, w: Width) -> (usize, usize) {
        let cin = if self.slim_input {
            scaled(self.in_channels, w)
        } else {
            self.in_channels
        };
        (cin, scaled(self.out_channels, w))
    }

    pub fn groups_at(&self, w: Width) -> usize {
        if self.depthwise {
            scaled(self.out_channels, w)
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
        scaled(self.features, w)
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
        slim_input: true,
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
        slim_input: false,
        ..conv("stem", in_channels, widths[0], 3, 1, Activation::Relu)
    })];
    let (body, features) = stages(widths[0], widths, blocks, |p, cin, stride, cout| {
        vec![
            conv(format!("{p}.conv1"), cin, cout, 3, stride, Activation::Relu),
            conv(format!("{p}.conv2"), cout, cout, 3, 1, Activation::None),
        ]
    });
    layers.extend(body);
    Network { layers, features }
}

/// ResNet-50 v1.5: bottleneck blocks (1x1, 3x3 with the stride, 1x1 to 4x the middle).
fn resnet50(in_channels: usize) -> Network {
    let mut layers = vec![
        Layer::ConvBn(ConvBn {
            slim_input: false,
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
    Network { layers, features }
}

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
    let mut layers = vec![Layer::ConvBn(ConvBn {
        slim_input: false,
        ..conv("stem", in_channels, 32, 3, 2, Activation::Relu6)
    })];
    let mut cin = 32;
    let mut index = 0;
    for (t, c, n, s) in SETTINGS {
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            let hidden = cin * t;
            let p = format!("blocks.{index}");
            let mut body = Vec::new();
            if t != 1 {
                body.push(conv(
                    format!("{p}.expand"),
                    cin,
                    hidden,
                    1,
                    1,
                    Activation::Relu6,
                ));
            }
            body.push(ConvBn {
                depthwise: true,
                ..conv(
                    format!("{p}.depthwise"),
                    hidden,
                    hidden,
                    3,
                    stride,
                    Activation::Relu6,
                )
            });
            body.push(conv(
                format!("{p}.project"),
                hidden,
                c,
                1,
                1,
                Activation::None,
            ));
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
    layers.push(Layer::ConvBn(conv(
        "head",
        cin,
        1280,
        1,
        1,
        Activation::Relu6,
    )));
    Network {
        layers,
        features: 1280,
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
