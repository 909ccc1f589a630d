//! What the benchmarks of models of real size share: the models, their export from random
//! weights (latency does not depend on them), the timing of calls and a fixed input.

#![allow(dead_code)] // each benchmark uses its part

use std::path::{Path, PathBuf};
use std::time::Instant;

use slim_core::checkpoint;
use slim_core::stats::percentile;
use slim_core::{Backbone, ModelConfig, init};
use slim_runtime::Backend;

#[derive(Clone, Copy)]
pub struct Model {
    pub name: &'static str,
    pub backbone: Backbone,
    pub in_channels: usize,
    pub size: usize,
}

pub const MODELS: [Model; 3] = [
    Model {
        name: "ResNet-20, 1x28x28",
        backbone: Backbone::Resnet20,
        in_channels: 1,
        size: 28,
    },
    Model {
        name: "ResNet-18 (CIFAR stem), 3x32x32",
        backbone: Backbone::Resnet18Cifar,
        in_channels: 3,
        size: 32,
    },
    Model {
        name: "MobileNetV2, 3x224x224",
        backbone: Backbone::MobilenetV2,
        in_channels: 3,
        size: 224,
    },
];

/// `m` at every width from random weights, exported into `dir/<backbone>` with `options`.
pub fn export(m: Model, dir: &Path, options: &slim_onnx::ExportOptions) -> PathBuf {
    let config = ModelConfig::new(
        m.backbone,
        m.in_channels,
        m.size,
        (0..10).map(|i| format!("class-{i}")).collect(),
        vec![0.5; m.in_channels],
        vec![0.25; m.in_channels],
    );
    let ckpt = dir.join(format!("{}.safetensors", m.backbone.name()));
    checkpoint::save(&ckpt, &config, &init::random_tensors(&config, 1)).expect("checkpoint");
    let out = dir.join(m.backbone.name());
    slim_onnx::export_with(&ckpt, options, &out).expect("export");
    out
}

/// Timed calls of `run` for about `seconds`, after one untimed call: the median in ms and
/// how many calls (3 to `calls_max`) it took. A first call over 5 x `seconds` is the
/// figure itself (1 call): a configuration that slow is not worth more of the run.
pub fn time(seconds: f64, calls_max: usize, mut run: impl FnMut()) -> (f64, usize) {
    let t = Instant::now();
    run();
    let first = t.elapsed().as_secs_f64();
    if first > 5.0 * seconds {
        return (first * 1e3, 1);
    }
    let calls = ((seconds / first.max(1e-6)) as usize).clamp(3, calls_max);
    let ms: Vec<f64> = (0..calls)
        .map(|_| {
            let t = Instant::now();
            run();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    (percentile(&ms, 0.5).expect("at least 3 calls"), calls)
}

/// A fixed input of `len` values in [-1, 1].
pub fn input(len: usize) -> Vec<f32> {
    (0..len).map(|i| (i % 97) as f32 / 48.0 - 1.0).collect()
}

/// The value after `name` on the command line.
pub fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let i = args.iter().position(|a| a == name)?;
    Some(
        args.get(i + 1)
            .unwrap_or_else(|| panic!("a value after {name}")),
    )
}

/// The engines timed: tract, and ONNX Runtime's CPU provider when built with `ort`.
pub fn engines() -> Vec<(&'static str, Backend)> {
    vec![
        ("tract", Backend::Tract),
        #[cfg(feature = "ort")]
        (
            "ort",
            Backend::Ort {
                provider: slim_runtime::Provider::Cpu,
                fallback: false,
            },
        ),
    ]
}

/// A path given on the command line, taken from the workspace root when relative (cargo
/// runs a benchmark in its package's folder, not where `cargo bench` was typed).
pub fn workspace_path(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(p)
}
