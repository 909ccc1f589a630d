//! Export conformance: for every width of every backbone, the tch eval-mode forward pass,
//! tract and ONNX Runtime (through slim-runtime) give the same embedding and logits on the
//! same inputs, within 1e-4 absolute.
//!
//! The reference is the tch forward pass in float64 (the same weights, upcast after the
//! float32 checkpoint is written), so what is measured is the engines' own error. Why
//! 1e-4: the engines compute in float32 in another order (BatchNorm folded into the
//! convolutions, other convolution algorithms), so they carry float32 rounding accumulated
//! over up to 53 layers. Measured here (2026-11-24, 2-core x86-64): at most 8.1e-5 (tract)
//! and 4.5e-5 (ONNX Runtime) on ResNet-50's full-width embedding, whose values reach 2.8;
//! under 6e-6 for the other backbones. The BatchNorm statistics are first calibrated on
//! data, as after training, so activations stay O(1) and 1e-4 absolute is a tight bound:
//! a wrong slice or fold gives errors of order 1.

use std::path::Path;

use slim_core::{Backbone, ModelConfig};
use std::num::NonZeroUsize;

use slim_runtime::{Backend, Outputs, Provider, SlimModel};
use slim_train::SlimNet;
use tch::{Device, Kind, Tensor, nn};

const TOLERANCE: f32 = 1e-4;
const BATCH: usize = 3;

/// (backbone, input channels, image size): small images keep the CPU time low.
const CASES: [(Backbone, usize, usize); 4] = [
    (Backbone::Resnet20, 1, 28),
    (Backbone::Resnet18Cifar, 3, 32),
    (Backbone::MobilenetV2, 3, 64),
    (Backbone::Resnet50, 3, 64),
];

fn config(backbone: Backbone, channels: usize, size: usize) -> ModelConfig {
    ModelConfig::new(
        backbone,
        channels,
        size,
        (0..10).map(|i| format!("class{i}")).collect(),
        vec![0.5; channels],
        vec![0.25; channels],
    )
}

/// Runs train-mode forwards at every width so each width's BatchNorm holds statistics
/// of real activations, as after training.
fn calibrate(net: &SlimNet, channels: usize, size: usize) {
    tch::manual_seed(7);
    tch::no_grad(|| {
        for _ in 0..30 {
            let x = Tensor::randn(
                [8, channels as i64, size as i64, size as i64],
                (Kind::Float, Device::Cpu),
            );
            for &w in net.widths() {
                let _ = net.forward(&x, w, true);
            }
        }
    });
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "output sizes differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_kind(Kind::Float).flatten(0, -1)).expect("float tensor")
}

#[test]
fn tch_tract_and_onnx_runtime_agree_at_every_width_of_every_backbone() {
    let dir = tempfile::tempdir().unwrap();
    let mut report = Vec::new();
    for (backbone, channels, size) in CASES {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = SlimNet::new(&vs.root(), &config(backbone, channels, size)).unwrap();
        calibrate(&net, channels, size);
        let ckpt = dir.path().join(format!("{}.safetensors", backbone.name()));
        slim_train::checkpoint::save(&ckpt, &net, &[]).unwrap();
        let out = dir.path().join(backbone.name());
        slim_onnx::export(&ckpt, slim_onnx::WidthSelection::All, &out).unwrap();

        let mut vs = vs;
        vs.double();
        let ort = Backend::Ort {
            provider: Provider::Cpu,
            fallback: false,
        };
        let open = |backend: &Backend, threads| {
            SlimModel::open(&out, backend.clone())
                .unwrap()
                .with_threads(NonZeroUsize::new(threads))
        };
        let [tract, tract2] = [1, 2].map(|n| open(&Backend::Tract, n));
        let [ort, ort2] = [1, 2].map(|n| open(&ort, n));
        // Fresh inputs, not the checkpoint's reference image.
        let x = Tensor::randn(
            [BATCH as i64, channels as i64, size as i64, size as i64],
            (Kind::Float, Device::Cpu),
        );
        let input = to_vec(&x);
        for &w in net.widths() {
            let (emb, logits) = tch::no_grad(|| net.forward_t(&x.to_kind(Kind::Double), w, false));
            let reference = Outputs {
                batch: BATCH,
                embedding: to_vec(&emb),
                logits: to_vec(&logits),
            };
            let scale = reference.logits.iter().fold(0f32, |m, v| m.max(v.abs()));
            let emb_scale = reference.embedding.iter().fold(0f32, |m, v| m.max(v.abs()));
            let engines = [
                ("tract", &tract),
                ("onnxruntime", &ort),
                ("tract 2T", &tract2),
                ("ort 2T", &ort2),
            ];
            let mut got = Vec::new();
            for (name, model) in engines {
                let o = model.run(w, &input, BATCH).unwrap();
                let (de, dl) = (
                    max_abs_diff(&o.embedding, &reference.embedding),
                    max_abs_diff(&o.logits, &reference.logits),
                );
                report.push(format!(
                    "{:<15} w={w:<5} {name:<12} embedding {de:.2e} logits {dl:.2e} (|embedding| <= {emb_scale:.1}, |logits| <= {scale:.2})",
                    backbone.name()
                ));
                assert!(
                    de <= TOLERANCE && dl <= TOLERANCE,
                    "{} width {w}: {name} differs from tch by {de:e} (embedding) / {dl:e} (logits)",
                    backbone.name()
                );
                got.push(o);
            }
            for (i, o) in got.iter().enumerate().skip(1) {
                let cross = max_abs_diff(&got[0].logits, &o.logits);
                assert!(cross <= TOLERANCE, "tract vs {}: {cross:e}", engines[i].0);
            }
            assert!(
                scale > 1e-3,
                "logits are all ~0: the check would be vacuous"
            );
        }
    }
    println!("{}", report.join("\n"));
}

#[test]
fn exported_test_data_is_the_tch_forward_of_the_reference_image() {
    let dir = tempfile::tempdir().unwrap();
    tch::manual_seed(3);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = SlimNet::new(&vs.root(), &config(Backbone::Resnet20, 1, 28)).unwrap();
    calibrate(&net, 1, 28);
    let ckpt = dir.path().join("m.safetensors");
    slim_train::checkpoint::save(&ckpt, &net, &[]).unwrap();
    let report = slim_onnx::export(
        &ckpt,
        slim_onnx::WidthSelection::All,
        &dir.path().join("out"),
    )
    .unwrap();
    let tract = SlimModel::open(&dir.path().join("out"), Backend::Tract).unwrap();
    let reference = slim_train::checkpoint::reference_image(net.config());
    for e in &report.exported {
        let test_data = e
            .test_data
            .as_deref()
            .expect("reference outputs were saved");
        assert!(Path::new(test_data).join("input_0.pb").is_file());
        let o = tract
            .run(e.entry.width, &reference.data, reference.shape[0])
            .unwrap();
        let x = Tensor::from_slice(&reference.data).reshape(
            reference
                .shape
                .iter()
                .map(|&d| d as i64)
                .collect::<Vec<_>>(),
        );
        let (_, logits) = tch::no_grad(|| net.forward_t(&x, e.entry.width, false));
        assert!(max_abs_diff(&o.logits, &to_vec(&logits)) <= TOLERANCE);
    }
}
