//! Bad inputs: each fails with a message naming the file and the problem, and leaves no
//! file behind in the output folder.

use std::path::Path;
use std::process::Command;

use slim_core::{Backbone, checkpoint};
use slim_onnx::{ExportError, WidthSelection};

use crate::common::{self, files_below};

/// A small valid checkpoint in `dir`.
fn good_checkpoint(dir: &Path) -> std::path::PathBuf {
    common::checkpoint(dir, &common::config(Backbone::Resnet20, 1, 16), 5, &[])
}

/// Exports and expects an error whose message contains every one of `needles`; checks that
/// `out` holds exactly the files it held before.
fn expect_error(ckpt: &Path, sel: WidthSelection, out: &Path, needles: &[&str]) -> ExportError {
    let before = files_below(out);
    let existed = out.exists();
    let err = slim_onnx::export(ckpt, sel, out).unwrap_err();
    let msg = err.to_string();
    for n in needles {
        assert!(msg.contains(n), "{msg:?} should mention {n:?}");
    }
    assert_eq!(files_below(out), before, "stray files after: {msg}");
    assert_eq!(out.exists(), existed, "{msg}");
    err
}

#[test]
fn missing_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("nope.safetensors");
    let err = expect_error(
        &ckpt,
        WidthSelection::All,
        &dir.path().join("out"),
        &["nope.safetensors", "No such file"],
    );
    assert!(matches!(err, ExportError::ReadCheckpoint { .. }), "{err:?}");
}

#[test]
fn truncated_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = good_checkpoint(dir.path());
    let bytes = std::fs::read(&ckpt).unwrap();
    std::fs::write(&ckpt, &bytes[..bytes.len() / 2]).unwrap();
    expect_error(
        &ckpt,
        WidthSelection::All,
        &dir.path().join("out"),
        &[&ckpt.display().to_string(), "truncated"],
    );
}

#[test]
fn width_not_in_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = good_checkpoint(dir.path());
    expect_error(
        &ckpt,
        WidthSelection::One(slim_test_utils::width(0.3)),
        &dir.path().join("out"),
        &[&ckpt.display().to_string(), "no width 0.3", "0.25"],
    );
}

#[test]
fn config_that_does_not_match_the_weights() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(Backbone::Resnet20, 1, 16);
    let tensors = common::tensors(&config, 5, &[]);
    let out = dir.path().join("out");

    // A tensor dropped.
    let mut dropped = tensors.clone();
    dropped.remove("layer2.0.conv1.bn.w500.running_var");
    let ckpt = dir.path().join("dropped.safetensors");
    std::fs::write(
        &ckpt,
        checkpoint::to_bytes(&config, &dropped, None).unwrap(),
    )
    .unwrap();
    expect_error(
        &ckpt,
        WidthSelection::All,
        &out,
        &[
            "dropped.safetensors",
            "layer2.0.conv1.bn.w500.running_var is missing",
        ],
    );

    // The metadata edited to another backbone.
    let other = common::config(Backbone::Resnet18Cifar, 1, 16);
    let ckpt = dir.path().join("edited.safetensors");
    std::fs::write(&ckpt, checkpoint::to_bytes(&other, &tensors, None).unwrap()).unwrap();
    expect_error(
        &ckpt,
        WidthSelection::One(slim_test_utils::width(0.5)),
        &out,
        &["edited.safetensors", "resnet18-cifar"],
    );

    // Reference outputs of the wrong shape.
    let mut bad = common::tensors(&config, 5, &slim_test_utils::widths(&[0.5]));
    bad.insert(
        "reference.w500.logits".into(),
        slim_core::Tensor::new(vec![2, 3], vec![0.0; 6]),
    );
    let ckpt = dir.path().join("reference.safetensors");
    checkpoint::save(&ckpt, &config, &bad).unwrap();
    expect_error(
        &ckpt,
        WidthSelection::All,
        &out,
        &[
            "reference.safetensors",
            "reference.w500.logits has shape [2, 3]",
        ],
    );
}

#[test]
fn output_folder_below_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = good_checkpoint(dir.path());
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let out = file.join("models");
    let err = expect_error(
        &ckpt,
        WidthSelection::All,
        &out,
        &[&out.display().to_string()],
    );
    assert!(matches!(err, ExportError::OutputDir { .. }), "{err:?}");
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

#[test]
fn a_failure_half_way_removes_what_the_export_created() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = good_checkpoint(dir.path());
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // Widths 1.0 and 0.75 are written before width 0.5's folder cannot be created.
    std::fs::write(out.join("width-w500"), b"in the way").unwrap();
    expect_error(&ckpt, WidthSelection::All, &out, &["width-w500"]);
    assert_eq!(files_below(&out), ["width-w500"]);
}

#[test]
fn binary_reports_errors_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = good_checkpoint(dir.path());
    let out = dir.path().join("out");
    let cases: [(&[&str], &str); 3] = [
        (&["--width", "0.3"], "no width 0.3"),
        (&["--all"], "No such file"),
        (&["--width", "abc"], "invalid value"),
    ];
    for (i, (args, needle)) in cases.into_iter().enumerate() {
        let checkpoint = if i == 1 {
            dir.path().join("missing.safetensors")
        } else {
            ckpt.clone()
        };
        let run = Command::new(env!("CARGO_BIN_EXE_slim-export"))
            .arg("--checkpoint")
            .arg(&checkpoint)
            .args(args)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{args:?}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        if i < 2 {
            assert!(
                stderr.contains(&checkpoint.display().to_string()),
                "{stderr}"
            );
        }
        assert!(!out.exists());
    }
}
