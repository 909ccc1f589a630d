//! Exported graphs, run in tract, against the naive f64 forward pass of `common` (which
//! applies BatchNorm explicitly and never looks at the exported graph).

use slim_core::{Backbone, checkpoint};
use slim_onnx::WidthSelection;
use slim_onnx::export::{MODEL_FILE, width_dir};
use tract_onnx::prelude::*;

use crate::common::{self, fixture, max_abs_diff, naive_forward, run_tract};

#[test]
fn resnet20_matches_the_naive_reference_at_every_width() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(Backbone::Resnet20, 1, 16);
    // A large epsilon, so that forgetting it in the folding would show.
    config.bn_eps = 0.05;
    let tensors = common::tensors(&config, 7, &[]);
    let ckpt = dir.path().join("resnet20.safetensors");
    checkpoint::save(&ckpt, &config, &tensors).unwrap();
    let out = dir.path().join("out");
    slim_onnx::export(&ckpt, WidthSelection::All, &out).unwrap();

    let images = common::images(&config, 2, 3);
    for &w in &config.widths {
        let (emb, logits) = naive_forward(&config, &tensors, w, &images);
        let (got_emb, got_logits) = run_tract(&out.join(width_dir(w)).join(MODEL_FILE), &images);
        let (de, dl) = (
            max_abs_diff(&got_emb, &emb),
            max_abs_diff(&got_logits, &logits),
        );
        eprintln!("resnet20 16x16 width {w}: max |diff| embedding {de:.2e}, logits {dl:.2e}");
        assert!(
            de <= 1e-4 && dl <= 1e-4,
            "width {w}: embedding {de}, logits {dl}"
        );
    }
}

/// Compares tract's outputs on the reference image with the stored naive outputs where
/// there are some, and checks the shapes at every width.
fn check_fixture(backbone: Backbone) {
    let f = fixture(backbone);
    let ckpt = checkpoint::load(&f.checkpoint).unwrap();
    let images = ckpt.tensor("reference.image");
    let net = f.config.network();
    for &w in &f.config.widths {
        let (emb, logits) = run_tract(&f.out.join(width_dir(w)).join(MODEL_FILE), images);
        assert_eq!(
            emb.shape,
            [2, net.features_at(w)],
            "{} width {w}",
            backbone.name()
        );
        assert_eq!(
            logits.shape,
            [2, f.config.num_classes()],
            "{} width {w}",
            backbone.name()
        );
        if f.reference_widths.iter().position(|&x| x == w).is_some() {
            let tag = w.tag();
            for (got, name) in [(&emb, "embedding"), (&logits, "logits")] {
                let want = ckpt.tensor(&format!("reference.{tag}.{name}"));
                let d = got
                    .data
                    .iter()
                    .zip(&want.data)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                let scale = want.data.iter().fold(1.0f32, |m, v| m.max(v.abs()));
                eprintln!(
                    "{} width {w} {name}: max |diff| {d:.2e} (max |value| {scale:.1})",
                    backbone.name()
                );
                assert!(
                    d <= 1e-4 * scale,
                    "{} width {w} {name}: {d}",
                    backbone.name()
                );
            }
        }
    }
}

#[test]
fn mobilenet_v2_runs_with_the_right_shapes_and_values() {
    check_fixture(Backbone::MobilenetV2);
}

#[test]
fn resnet50_runs_with_the_right_shapes_and_values() {
    check_fixture(Backbone::Resnet50);
}

#[test]
fn the_batch_dimension_is_dynamic() {
    let f = fixture(Backbone::Resnet20);
    let path = f
        .out
        .join(width_dir(slim_test_utils::width(0.5)))
        .join(MODEL_FILE);
    // No input fact given: tract must run the graph with its symbolic batch as exported.
    let plan = tract_onnx::onnx()
        .model_for_path(&path)
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    for n in [1, 3] {
        let images = common::images(&f.config, n, 11);
        let input = Tensor::from_shape(&images.shape, &images.data).unwrap();
        let out = plan.run(tvec!(input.into())).unwrap();
        assert_eq!(
            out[0].shape(),
            [
                n,
                f.config.network().features_at(slim_test_utils::width(0.5))
            ]
        );
        assert_eq!(out[1].shape(), [n, 10]);
    }
}
