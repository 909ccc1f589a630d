//! The `slim-run` binary on the trained model with real Fashion-MNIST test images written
//! as PNG: the chosen width and why, the top-5 with class names, calibration, embeddings,
//! and every bad input a non-zero exit with a message naming the file, never a panic.

use std::path::Path;
use std::process::{Command, Output};

use slim_test_utils::model as fixture;

fn slim_run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slim-run"))
        .args(args)
        .output()
        .expect("slim-run starts")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The first `n` Fashion-MNIST test images as PNG files in `dir`, with their class names.
fn pngs(dir: &Path, n: usize) -> Vec<(String, String)> {
    slim_test_utils::fashion_mnist_pngs(dir, n)
        .into_iter()
        .map(|(p, class)| (p.to_string_lossy().into_owned(), class))
        .collect()
}

#[test]
fn prints_the_chosen_width_why_and_the_top5_of_each_image() {
    let dir = tempfile::tempdir().unwrap();
    let images = pngs(dir.path(), 3);
    let model = fixture();
    let mut args = vec!["--model", model.to_str().unwrap(), "--budget-mmacs", "10"];
    args.extend(images.iter().map(|(p, _)| p.as_str()));
    let out = slim_run(&args);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("budget: MACs <= 10.00 M"), "{stdout}");
    assert!(stdout.contains("chosen width 0.5: 7.78 MMACs"), "{stdout}");
    assert!(
        stdout.contains(
            "next more accurate width 0.75 rejected: MACs 17.4711M over the limit 10.0000M by 74.7%"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("running on tract, 1 thread(s)"), "{stdout}");
    for (path, _) in &images {
        let block: Vec<&str> = stdout
            .split(&format!("{path}:\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("no block for {path}: {stdout}"))
            .lines()
            .take(5)
            .collect();
        for (rank, line) in block.iter().enumerate() {
            assert!(
                line.starts_with(&format!("  {}. ", rank + 1)) && line.ends_with('%'),
                "{line}"
            );
        }
    }
    // At least two of the first three test images are right at width 0.5 (78.9% top-1).
    let right = images
        .iter()
        .filter(|(path, truth)| stdout.contains(&format!("{path}:\n  1. {truth} ")))
        .count();
    assert!(right >= 2, "{right} of 3 right: {stdout}");
}

#[test]
fn no_fitting_width_is_a_failure_naming_the_nearest() {
    let dir = tempfile::tempdir().unwrap();
    let images = pngs(dir.path(), 1);
    let model = fixture();
    let out = slim_run(&[
        "--model",
        model.to_str().unwrap(),
        "--budget-mmacs",
        "1",
        &images[0].0,
    ]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("nearest, width 0.25")
            && stderr.contains("MACs 1.9602M over the limit 1.0000M"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_latency_budget_is_judged_by_a_calibration_that_is_cached() {
    let dir = tempfile::tempdir().unwrap();
    let images = pngs(dir.path(), 1);
    let cache = dir.path().join("cal.json");
    let model = fixture();
    let args = [
        "--model",
        model.to_str().unwrap(),
        "--budget-ms",
        "1000",
        "--calibrate",
        "--calibration-runs",
        "3",
        "--calibration-cache",
        cache.to_str().unwrap(),
        &images[0].0,
    ];
    let first = slim_run(&args);
    let stdout = text(&first.stdout);
    assert!(first.status.success(), "{stdout}\n{}", text(&first.stderr));
    assert!(
        stdout.contains("measured now") && cache.is_file(),
        "{stdout}"
    );
    assert!(
        stdout.contains("chosen width 1: ") && stdout.contains("calibrated"),
        "{stdout}"
    );
    let again = text(&slim_run(&args).stdout);
    assert!(again.contains("reused from the cache"), "{again}");
    // Without a calibration, nothing says how fast the widths are.
    let none = slim_run(&[
        "--model",
        model.to_str().unwrap(),
        "--budget-ms",
        "1000",
        "--calibration-cache",
        dir.path().join("none.json").to_str().unwrap(),
        &images[0].0,
    ]);
    let stderr = text(&none.stderr);
    assert!(
        !none.status.success() && stderr.contains("no latency measured at batch 1"),
        "{stderr}"
    );
}

#[test]
fn embeddings_have_the_width_s_dimension() {
    let dir = tempfile::tempdir().unwrap();
    let images = pngs(dir.path(), 2);
    let model = fixture();
    let out = slim_run(&[
        "--model",
        model.to_str().unwrap(),
        "--budget-mparams",
        "0.1",
        "--embed",
        &images[0].0,
        &images[1].0,
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("chosen width 0.5"), "{stdout}");
    assert_eq!(stdout.matches(": embedding (32) [").count(), 2, "{stdout}");
}

#[test]
fn bad_input_is_a_failure_naming_the_file_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let images = pngs(dir.path(), 1);
    let good = images[0].0.as_str();
    let bytes = std::fs::read(good).unwrap();
    let cut = dir.path().join("cut.png");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let text_file = dir.path().join("notes.txt");
    std::fs::write(&text_file, "not an image").unwrap();
    let model = fixture();
    let m = model.to_str().unwrap();
    let no_model = dir.path().join("no-model");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--model", no_model.to_str().unwrap(), good],
            "no-model/manifest.json",
        ),
        (vec!["--model", m, cut.to_str().unwrap(), good], "cut.png"),
        (vec!["--model", m, text_file.to_str().unwrap()], "notes.txt"),
        (
            vec!["--model", m, "/nonexistent/x.jpg"],
            "/nonexistent/x.jpg",
        ),
        (
            vec!["--model", m, "--fallback", good],
            "--fallback applies to --backend ort-cuda or ort-tensorrt",
        ),
        (
            vec!["--model", m, "--budget-mmacs", "0", good],
            "--budget-mmacs must be positive",
        ),
        (vec!["--model", m, "--min-top1", "150", good], "percentage"),
        (vec!["--model", m], "IMAGES"),
    ];
    for (args, names) in cases {
        let out = slim_run(&args);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(names), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    // A model whose weights are NaN says so rather than printing NaN% answers.
    let (_copy, broken) = slim_test_utils::model_copy();
    let graph = broken.join("width-w1000/model.onnx");
    let mut proto = <tract_onnx::pb::ModelProto as prost::Message>::decode(
        std::fs::read(&graph).unwrap().as_slice(),
    )
    .unwrap();
    for t in &mut proto.graph.as_mut().unwrap().initializer {
        for v in t.raw_data.chunks_exact_mut(4) {
            v.copy_from_slice(&f32::NAN.to_le_bytes());
        }
    }
    std::fs::write(&graph, prost::Message::encode_to_vec(&proto)).unwrap();
    let out = slim_run(&["--model", broken.to_str().unwrap(), good]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("width-w1000/model.onnx") && stderr.contains("non-finite"),
        "{stderr}"
    );
    assert!(!text(&out.stdout).contains("NaN"));
    // The good image of a mixed list is still classified.
    let out = slim_run(&["--model", m, cut.to_str().unwrap(), good]);
    assert!(text(&out.stdout).contains(&format!("{good}:\n  1. ")));
}

#[test]
fn a_killed_calibration_leaves_its_cache_as_before_or_complete() {
    let _alone = slim_test_utils::alone();
    let dir = tempfile::tempdir().unwrap();
    let images = pngs(dir.path(), 1);
    let cache = dir.path().join("cal.json");
    let model = fixture();
    let run = |batch: &str| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_slim-run"));
        c.args(["--model", model.to_str().unwrap(), "--budget-ms", "1000"])
            .args(["--batch", batch, "--calibrate", "--calibration-runs", "20"])
            .arg("--calibration-cache")
            .arg(&cache)
            .arg(&images[0].0);
        c
    };
    // Before: the cache holds batch 2's calibration.
    assert!(run("2").output().unwrap().status.success());
    let before = std::fs::read(&cache).unwrap();
    let mut complete = 0;
    let killed = slim_test_utils::kill_at_random_points(
        50,
        || {
            std::fs::write(&cache, &before).unwrap();
            run("1")
        },
        |i| {
            let entries = slim_runtime::calibrate::read_cache(&cache)
                .unwrap_or_else(|e| panic!("run {i}: {e}"));
            assert!(
                entries.iter().any(|c| c.key.batch == 2),
                "run {i} lost batch 2"
            );
            assert!(entries.iter().all(|c| c.widths.len() == 4), "run {i}");
            match entries.len() {
                1 => assert_eq!(std::fs::read(&cache).unwrap(), before, "run {i}"),
                2 => complete += 1,
                n => panic!("run {i}: {n} entries"),
            }
        },
    );
    assert!(killed >= 25, "only {killed} of 50 runs were killed");
    assert!(complete > 0, "no run finished");
}

#[test]
fn two_threads_classify_as_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let images = pngs(dir.path(), 2);
    let model = fixture();
    let run = |threads: &str| {
        let mut args = vec!["--model", model.to_str().unwrap(), "--threads", threads];
        args.extend(images.iter().map(|(p, _)| p.as_str()));
        args.extend(["--batch", "2"]);
        let out = slim_run(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let (one, two) = (run("1"), run("2"));
    assert!(two.contains("running on tract, 2 thread(s)"), "{two}");
    assert_eq!(
        one.replace("1 thread(s)", "N"),
        two.replace("2 thread(s)", "N"),
        "the same classes and probabilities"
    );
    let zero = slim_run(&[
        "--model",
        model.to_str().unwrap(),
        "--threads",
        "0",
        "x.png",
    ]);
    assert!(!zero.status.success());
    assert!(
        text(&zero.stderr).contains("--threads"),
        "{}",
        text(&zero.stderr)
    );
}

#[test]
fn a_cascade_answers_each_image_at_the_width_the_runtime_cascade_does() {
    use slim_core::cascade::{Cascade, Confidence, Stage};
    use slim_runtime::{Backend, SlimModel};
    let dir = tempfile::tempdir().unwrap();
    let images = pngs(dir.path(), 6);
    let paths: Vec<&str> = images.iter().map(|(p, _)| p.as_str()).collect();
    let (_copy, model) = slim_test_utils::model_copy();
    let stage = |w, threshold| Stage {
        width: slim_test_utils::width(w),
        threshold,
    };
    let cascade =
        Cascade::new(Confidence::MaxProb, vec![stage(0.25, 0.9), stage(1.0, 0.0)]).unwrap();
    let mut manifest = slim_core::Manifest::load(&model).unwrap();
    manifest.cascade = Some(slim_core::manifest::CalibratedCascade {
        cascade: cascade.clone(),
        target_top1: 0.8,
        top1: 0.8,
        mean_macs: 1e7,
        dataset: "test".into(),
        samples: 10,
    });
    manifest.save(&model).unwrap();

    let m = model.to_str().unwrap();
    let mut args = vec!["--model", m, "--cascade", "--top-k", "2"];
    args.extend(&paths);
    let out = slim_run(&args);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("cascade max-prob: 0.25>=0.9, 1 (calibrated into the manifest)"),
        "{stdout}"
    );
    let runtime = SlimModel::open(&model, Backend::Tract).unwrap();
    let answers = runtime
        .cascade(&cascade, &runtime.preprocess_files(&paths).unwrap())
        .unwrap();
    for (path, a) in paths.iter().zip(&answers) {
        let line = format!(
            "{path}: answered by width {} (stage {}, confidence {:.4})\n  1. ",
            a.width,
            a.stage + 1,
            a.confidence
        );
        assert!(stdout.contains(&line), "{line} not in {stdout}");
    }

    // Every width at an explicit threshold; threshold 0 stops every image at the first.
    let fixture = fixture();
    let f = fixture.to_str().unwrap();
    let out = slim_run(&[
        "--model",
        f,
        "--cascade",
        "--cascade-threshold",
        "0",
        paths[0],
    ]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("cascade max-prob: 0.25>=0, 0.5>=0, 0.75>=0, 1 (every width"),
        "{stdout}"
    );
    assert!(
        stdout.contains("answered by width 0.25 (stage 1,"),
        "{stdout}"
    );

    let cases: [(&[&str], &str); 4] = [
        (
            &["--model", f, "--cascade", paths[0]],
            "no calibrated cascade",
        ),
        (
            &[
                "--model",
                f,
                "--cascade",
                "--cascade-threshold",
                "1.5",
                paths[0],
            ],
            "--cascade-threshold must be in [0, 1], not 1.5",
        ),
        (
            &["--model", f, "--cascade", "--budget-mmacs", "10", paths[0]],
            "cannot be used with",
        ),
        (
            &["--model", f, "--cascade-threshold", "0.5", paths[0]],
            "--cascade",
        ),
    ];
    for (args, want) in cases {
        let out = slim_run(args);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn variants_are_calibrated_a_dominated_one_said_and_a_precision_can_be_asked_for() {
    let _alone = slim_test_utils::alone();
    let dir = tempfile::tempdir().unwrap();
    let Some(model) =
        slim_test_utils::variant_model(&dir.path().join("m"), &slim_core::Precision::ALL)
    else {
        return;
    };
    let images = pngs(dir.path(), 1);
    let cache = dir.path().join("calibration.json");
    let (model, cache) = (model.to_str().unwrap(), cache.to_str().unwrap());
    let base = [
        "--model",
        model,
        "--calibration-cache",
        cache,
        "--budget-ms",
        "200",
    ];
    let mut args = base.to_vec();
    args.extend(["--calibrate", "--calibration-runs", "3", &images[0].0]);
    let out = slim_run(&args);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("graphs: 1, 1/f16, 1/int8, 0.25, 0.25/f16, 0.25/int8"),
        "{stdout}"
    );
    assert!(stdout.contains("  width 0.25/int8: p50 "), "{stdout}");
    // tract runs f16 convolutions far slower than float ones: dominated, said, not chosen.
    assert!(
        stdout.contains("not chosen: width 1/f16 is dominated: its p50 ")
            && stdout.contains("is no faster than width 1's "),
        "{stdout}"
    );
    assert!(stdout.contains("chosen width 1: "), "{stdout}");

    let mut args = base.to_vec();
    args.extend(["--precision", "int8", &images[0].0]);
    let out = slim_run(&args);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("precision int8"), "{stdout}");
    assert!(
        stdout.contains("chosen width 1/int8: int8 graph, "),
        "{stdout}"
    );
    assert!(stdout.contains("  1. "), "{stdout}");
    let out = slim_run(&["--model", model, "--precision", "int4", &images[0].0]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unknown precision \"int4\""),
        "{}",
        text(&out.stderr)
    );
}
