//! Shared test helpers: random checkpoints, an independent naive f64 forward pass (explicit
//! eval-mode BatchNorm, no folding), and running exported graphs through tract.

use slim_core::Width;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use slim_core::checkpoint::{self, Tensor};
use slim_core::{Activation, Backbone, ConvBn, Layer, ModelConfig, init};
use slim_onnx::{ExportReport, WidthSelection};
use tract_onnx::prelude::*;

pub fn config(backbone: Backbone, in_channels: usize, image_size: usize) -> ModelConfig {
    ModelConfig::new(
        backbone,
        in_channels,
        image_size,
        (0..10).map(|i| format!("class-{i}")).collect(),
        vec![0.5; in_channels],
        vec![0.25; in_channels],
    )
}

/// A deterministic pseudo-random image batch `[n, c, s, s]` in roughly [-2, 2].
pub fn images(config: &ModelConfig, n: usize, seed: u64) -> Tensor {
    let (c, s) = (config.input.in_channels, config.input.image_size);
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let data = (0..n * c * s * s)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect();
    Tensor::new(vec![n, c, s, s], data)
}

/// Random weights for `config`; with reference widths also `reference.image` (a batch of
/// two) and, for those widths, `reference.{t}.{embedding,logits}` from [`naive_forward`].
pub fn tensors(
    config: &ModelConfig,
    seed: u64,
    reference_widths: &[Width],
) -> BTreeMap<String, Tensor> {
    let mut t = init::random_tensors(config, seed);
    if !reference_widths.is_empty() {
        let image = images(config, 2, seed + 1);
        for &w in reference_widths {
            let (emb, logits) = naive_forward(config, &t, w, &image);
            let tag = w.tag();
            t.insert(format!("reference.{tag}.embedding"), to_f32(emb));
            t.insert(format!("reference.{tag}.logits"), to_f32(logits));
        }
        t.insert("reference.image".into(), image);
    }
    t
}

/// Saves a checkpoint with [`tensors`] into `dir`.
pub fn checkpoint(
    dir: &Path,
    config: &ModelConfig,
    seed: u64,
    reference_widths: &[Width],
) -> PathBuf {
    let path = dir.join(format!("{}-{seed}.safetensors", config.backbone.name()));
    checkpoint::save(&path, config, &tensors(config, seed, reference_widths)).unwrap();
    path
}

/// One backbone exported at every width, shared by the tests that only read it.
pub struct Fixture {
    pub config: ModelConfig,
    pub checkpoint: PathBuf,
    pub out: PathBuf,
    pub report: ExportReport,
    /// The widths with reference outputs (and so test data).
    pub reference_widths: Vec<Width>,
}

/// The exported fixture of `backbone`, built once per test run under the target folder:
/// resnet20 28x28 grey, resnet18-cifar and mobilenet-v2 32x32 RGB, resnet50 64x64 RGB.
/// The naive reference is computed for every width of the small ones and for the narrow
/// widths of the big ones (keeping the test run short).
pub fn fixture(backbone: Backbone) -> &'static Fixture {
    static CELLS: [OnceLock<Fixture>; 4] = [const { OnceLock::new() }; 4];
    let i = Backbone::ALL.iter().position(|&b| b == backbone).unwrap();
    CELLS[i].get_or_init(|| {
        let (channels, size, reference_widths) = match backbone {
            Backbone::Resnet20 => (1, 28, slim_test_utils::widths(&[1.0, 0.75, 0.5, 0.25])),
            Backbone::MobilenetV2 => (3, 32, slim_test_utils::widths(&[1.0, 0.75, 0.5, 0.25])),
            Backbone::Resnet18Cifar => (3, 32, slim_test_utils::widths(&[0.25])),
            Backbone::Resnet50 => (3, 64, slim_test_utils::widths(&[0.5, 0.25])),
        };
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("slim-onnx-it")
            .join(backbone.name());
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = config(backbone, channels, size);
        let checkpoint = checkpoint(&dir, &config, 42, &reference_widths);
        let out = dir.join("export");
        let report = slim_onnx::export(&checkpoint, WidthSelection::All, &out).unwrap();
        Fixture {
            config,
            checkpoint,
            out,
            report,
            reference_widths,
        }
    })
}

/// A float64 tensor of any rank.
pub struct T64 {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

fn to_f32(t: T64) -> Tensor {
    Tensor::new(t.shape, t.data.into_iter().map(|v| v as f32).collect())
}

/// One image's activations, [c, h, w].
struct Act {
    c: usize,
    h: usize,
    w: usize,
    data: Vec<f64>,
}

fn activate(a: &mut Act, act: Activation) {
    for v in &mut a.data {
        *v = match act {
            Activation::None => *v,
            Activation::Relu => v.max(0.0),
            Activation::Relu6 => v.clamp(0.0, 6.0),
        };
    }
}

/// Conv (no bias) on the leading channels of the full weight, then BatchNorm in eval mode
/// with the width's statistics, then the activation.
fn conv_bn(x: &Act, c: &ConvBn, w: Width, t: &BTreeMap<String, Tensor>, eps: f64) -> Act {
    let (cin, cout) = c.channels_at(w);
    assert_eq!(x.c, cin, "{}", c.name);
    let groups = c.groups_at(w);
    let (cin_g, cout_g) = (cin / groups, cout / groups);
    let weight = &t[&format!("{}.weight", c.name)];
    let full_in = weight.shape[1];
    let (k, s, p) = (c.kernel, c.stride, c.padding as isize);
    let oh = (x.h + 2 * c.padding - k) / s + 1;
    let ow = (x.w + 2 * c.padding - k) / s + 1;
    let tag = w.tag();
    let bn = |q: &str| &t[&format!("{}.bn.{tag}.{q}", c.name)].data;
    let (gamma, beta, mean, var) = (
        bn("weight"),
        bn("bias"),
        bn("running_mean"),
        bn("running_var"),
    );
    let mut out = vec![0.0; cout * oh * ow];
    for o in 0..cout {
        let g = o / cout_g;
        for oy in 0..oh {
            for ox in 0..ow {
                let mut sum = 0.0f64;
                for i in 0..cin_g {
                    let ic = g * cin_g + i;
                    for ky in 0..k {
                        let iy = (oy * s + ky) as isize - p;
                        if iy < 0 || iy >= x.h as isize {
                            continue;
                        }
                        for kx in 0..k {
                            let ix = (ox * s + kx) as isize - p;
                            if ix < 0 || ix >= x.w as isize {
                                continue;
                            }
                            let xv = x.data[(ic * x.h + iy as usize) * x.w + ix as usize];
                            let wv = weight.data[((o * full_in + i) * k + ky) * k + kx];
                            sum += xv * f64::from(wv);
                        }
                    }
                }
                let normed = (sum - f64::from(mean[o])) / (f64::from(var[o]) + eps).sqrt();
                out[(o * oh + oy) * ow + ox] = normed * f64::from(gamma[o]) + f64::from(beta[o]);
            }
        }
    }
    let mut a = Act {
        c: cout,
        h: oh,
        w: ow,
        data: out,
    };
    activate(&mut a, c.activation);
    a
}

fn max_pool(x: &Act, k: usize, s: usize, p: usize) -> Act {
    let oh = (x.h + 2 * p - k) / s + 1;
    let ow = (x.w + 2 * p - k) / s + 1;
    let mut out = vec![f64::NEG_INFINITY; x.c * oh * ow];
    for c in 0..x.c {
        for oy in 0..oh {
            for ox in 0..ow {
                let m = &mut out[(c * oh + oy) * ow + ox];
                for ky in 0..k {
                    for kx in 0..k {
                        let (iy, ix) = (
                            (oy * s + ky) as isize - p as isize,
                            (ox * s + kx) as isize - p as isize,
                        );
                        if iy >= 0 && ix >= 0 && (iy as usize) < x.h && (ix as usize) < x.w {
                            *m = m.max(x.data[(c * x.h + iy as usize) * x.w + ix as usize]);
                        }
                    }
                }
            }
        }
    }
    Act {
        c: x.c,
        h: oh,
        w: ow,
        data: out,
    }
}

/// Eval-mode forward pass of width `w` on `images` `[n, c, s, s]`: (embedding `[n, f]`,
/// logits `[n, classes]`), all in f64, straight from the unfolded checkpoint tensors.
pub fn naive_forward(
    config: &ModelConfig,
    t: &BTreeMap<String, Tensor>,
    w: Width,
    images: &Tensor,
) -> (T64, T64) {
    let net = config.network();
    let (n, c, h, wd) = (
        images.shape[0],
        images.shape[1],
        images.shape[2],
        images.shape[3],
    );
    let tag = w.tag();
    let probe_w = &t[&format!("probe.{tag}.weight")];
    let probe_b = &t[&format!("probe.{tag}.bias")];
    let classes = probe_b.data.len();
    let (mut emb, mut logits) = (Vec::new(), Vec::new());
    for b in 0..n {
        let size = c * h * wd;
        let mut x = Act {
            c,
            h,
            w: wd,
            data: images.data[b * size..(b + 1) * size]
                .iter()
                .map(|&v| f64::from(v))
                .collect(),
        };
        for layer in &net.layers {
            x = match layer {
                Layer::ConvBn(cb) => conv_bn(&x, cb, w, t, config.bn_eps),
                Layer::MaxPool {
                    kernel,
                    stride,
                    padding,
                } => max_pool(&x, *kernel, *stride, *padding),
                Layer::Residual {
                    body,
                    shortcut,
                    activation,
                } => {
                    let mut y = conv_bn(&x, &body[0], w, t, config.bn_eps);
                    for cb in &body[1..] {
                        y = conv_bn(&y, cb, w, t, config.bn_eps);
                    }
                    let skip = match shortcut {
                        Some(cb) => conv_bn(&x, cb, w, t, config.bn_eps),
                        None => x,
                    };
                    for (a, s) in y.data.iter_mut().zip(&skip.data) {
                        *a += s;
                    }
                    activate(&mut y, *activation);
                    y
                }
            };
        }
        let hw = (x.h * x.w) as f64;
        let e: Vec<f64> = x
            .data
            .chunks(x.h * x.w)
            .map(|ch| ch.iter().sum::<f64>() / hw)
            .collect();
        for j in 0..classes {
            let row = &probe_w.data[j * e.len()..(j + 1) * e.len()];
            let dot: f64 = row.iter().zip(&e).map(|(&a, &b)| f64::from(a) * b).sum();
            logits.push(dot + f64::from(probe_b.data[j]));
        }
        emb.extend(e);
    }
    let f = emb.len() / n;
    (
        T64 {
            shape: vec![n, f],
            data: emb,
        },
        T64 {
            shape: vec![n, classes],
            data: logits,
        },
    )
}

/// Runs an exported graph in tract on `images`; returns (embedding, logits) with shapes.
pub fn run_tract(model: &Path, images: &Tensor) -> (Tensor, Tensor) {
    let fact = f32::fact(images.shape.clone());
    let plan = tract_onnx::onnx()
        .model_for_path(model)
        .unwrap()
        .with_input_fact(0, fact.into())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let input = tract_onnx::prelude::Tensor::from_shape(&images.shape, &images.data).unwrap();
    let out = plan.run(tvec!(input.into())).unwrap();
    assert_eq!(out.len(), 2, "{}", model.display());
    let get = |v: &TValue| {
        let view = v.to_plain_array_view::<f32>().unwrap();
        Tensor::new(v.shape().to_vec(), view.iter().copied().collect())
    };
    (get(&out[0]), get(&out[1]))
}

/// Largest |a - b| over two equally shaped tensors.
pub fn max_abs_diff(a: &Tensor, b: &T64) -> f64 {
    assert_eq!(a.shape, b.shape);
    a.data
        .iter()
        .zip(&b.data)
        .map(|(&x, &y)| (f64::from(x) - y).abs())
        .fold(0.0, f64::max)
}

/// Every file below `dir`, relative, sorted.
pub fn files_below(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}
