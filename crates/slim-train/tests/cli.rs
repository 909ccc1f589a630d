//! The `slim-train` binary as a log sees it: progress lines when stderr is not a
//! terminal, and errors in the shared `slim-train: error: ...` form.

mod common;

use std::process::Command;

fn slim_train() -> Command {
    Command::new(env!("CARGO_BIN_EXE_slim-train"))
}

#[test]
fn pretraining_into_a_log_prints_progress_lines() {
    if common::data(1).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = slim_train()
        .args(["pretrain", "--data", common::FASHION, "--limit", "64"])
        .args(["--widths", "1.0,0.5", "--image-size", "16", "--epochs", "1"])
        .args([
            "--batch-size",
            "16",
            "--warmup-epochs",
            "0",
            "--max-steps",
            "3",
        ])
        .args(["--workers", "1", "--out"])
        .arg(dir.path())
        .env("SLIM_PROGRESS_SECS", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("pretrain:"))
        .collect();
    // 64 images in batches of 16: 4 steps, of which 3 are run.
    assert_eq!(lines.len(), 5, "{stderr}");
    assert_eq!(lines[0], "pretrain: 4 steps");
    for (i, line) in lines[1..4].iter().enumerate() {
        let step = i + 1;
        assert!(
            line.starts_with(&format!("pretrain: {step}/4 steps (")),
            "{line}"
        );
        assert!(
            line.contains(" elapsed, ") && line.contains(" left | "),
            "{line}"
        );
        assert!(
            line.contains(&format!("| step {step} epoch 0 loss ")) && line.ends_with(" img/s"),
            "{line}"
        );
    }
    assert!(
        lines[4].starts_with("pretrain: 3/4 steps in "),
        "{}",
        lines[4]
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "no terminal escapes in a log: {stderr:?}"
    );
}

#[test]
fn an_error_is_one_line_naming_the_command_and_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.safetensors");
    let out = slim_train()
        .args(["knn", "--checkpoint"])
        .arg(&missing)
        .args(["--data", common::FASHION])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("slim-train: error: "), "{stderr}");
    assert!(stderr.contains("missing.safetensors"), "{stderr}");
    // Each cause once: an error whose message holds its cause does not also chain it.
    assert_eq!(stderr.matches("No such file").count(), 1, "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Error {"),
        "{stderr}"
    );
}

#[test]
fn bad_argument_values_are_refused_by_name_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let pretrain = ["pretrain", "--data", common::FASHION, "--out", out];
    let knn = ["knn", "--checkpoint", out, "--data", common::FASHION];
    let cases: [(&[&str], &[&str], &str); 10] = [
        (&pretrain, &["--workers", "0"], "--workers"),
        (&pretrain, &["--batch-size", "0"], "--batch-size"),
        (&pretrain, &["--crop-min-scale", "1.5"], "--crop-min-scale"),
        (&pretrain, &["--crop-min-scale", "0"], "--crop-min-scale"),
        (&pretrain, &["--temperature", "0"], "--temperature"),
        (&pretrain, &["--framework", "byol"], "--framework"),
        (&pretrain, &["--smoothed-alpha", "1.5"], "--smoothed-alpha"),
        (
            &pretrain,
            &["--distill-temperature", "5", "0"],
            "--distill-temperature",
        ),
        (&knn, &["--k", "0"], "--k"),
        (&["bench-step"], &["--batch", "1"], "--batch"),
    ];
    for (command, extra, flag) in cases {
        let o = slim_train().args(command).args(extra).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(flag), "{extra:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{extra:?}: {stderr}");
    }
    // A slow start past the run would never train the sub-widths: refused by name.
    let o = slim_train()
        .args(pretrain)
        .args(["--epochs", "4", "--slow-start-epoch", "4"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && stderr.contains("--slow-start-epoch 4"),
        "{stderr}"
    );
    // A batch that does not split into MoCo v2's BatchNorm groups is refused by name.
    let o = slim_train()
        .args(pretrain)
        .args([
            "--framework",
            "moco-v2",
            "--batch-size",
            "12",
            "--bn-splits",
            "8",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && stderr.contains("--bn-splits") && stderr.contains("12"),
        "{stderr}"
    );
    // A width trained alone must be one of the model's, with SimCLR, and without the
    // slimmable settings.
    for (extra, want) in [
        (
            &["--train-alone", "0.3"][..],
            "--train-alone 0.3 is not one of the model's widths",
        ),
        (
            &["--train-alone", "0.5", "--framework", "moco-v2"],
            "--train-alone trains with SimCLR only",
        ),
        (&["--train-alone", "0.5", "--no-distill"], "--train-alone"),
    ] {
        let o = slim_train().args(pretrain).args(extra).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && stderr.contains(want),
            "{extra:?}: {stderr}"
        );
    }
    // Nothing was started: the output folder holds no run.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn strip_keeps_the_model_bit_for_bit_and_drops_the_training_state() {
    if common::data(1).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = slim_train()
        .args(["pretrain", "--data", common::FASHION, "--limit", "32"])
        .args(["--widths", "1.0,0.5", "--image-size", "16", "--epochs", "2"])
        .args([
            "--batch-size",
            "16",
            "--warmup-epochs",
            "0",
            "--workers",
            "1",
        ])
        .args(["--slow-start-epoch", "1", "--quiet", "--out"])
        .arg(&run)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let source = run.join("checkpoint.safetensors");
    let stripped = dir.path().join("ship/model.safetensors");
    let out = slim_train()
        .args(["strip", "--checkpoint"])
        .arg(&source)
        .arg("--out")
        .arg(&stripped)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("of training state dropped"), "{stdout}");

    let a = slim_core::checkpoint::load(&source).unwrap();
    let b = slim_core::checkpoint::load(&stripped).unwrap();
    let train = |c: &slim_core::Checkpoint| {
        (c.tensors.keys())
            .filter(|n| n.starts_with(slim_core::checkpoint::names::TRAIN))
            .count()
    };
    assert!(train(&a) > 0 && a.train_state.is_some());
    assert_eq!((train(&b), b.train_state.as_deref()), (0, None));
    assert_eq!(a.config, b.config);
    assert_eq!(b.tensors.len(), a.tensors.len() - train(&a));
    for (name, t) in &b.tensors {
        assert_eq!(t, &a.tensors[name], "{name}");
    }
    let size = |p: &std::path::Path| std::fs::metadata(p).unwrap().len();
    assert!(size(&stripped) < size(&source));

    // The input is never the output.
    let out = slim_train()
        .args(["strip", "--checkpoint"])
        .arg(&source)
        .arg("--out")
        .arg(&source)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("is the input --checkpoint"),
        "{stderr}"
    );
    assert_eq!(
        slim_core::checkpoint::load(&source).unwrap().tensors.len(),
        a.tensors.len()
    );
}
