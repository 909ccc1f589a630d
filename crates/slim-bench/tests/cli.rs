//! The `slim-bench` binary end to end: on the trained Fashion-MNIST model (report files,
//! plot images, manifest write-back read by the runtime's budget selection), and on a tiny
//! random model exported here, every bad input: unreadable images are counted skips;
//! mismatched classes, empty sets, missing models and bad arguments are clear errors; on
//! a model exported in f32, f16 and int8, every graph of the precisions asked for measured
//! and written into its own entry.

use slim_core::Width;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use slim_bench::report::{Report, Source};
use slim_core::{Backbone, ModelConfig, Precision, checkpoint, init};
use slim_runtime::{Backend, Budget, SlimModel};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slim-bench"))
        .args(args)
        .output()
        .expect("run slim-bench")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(args: &[&str]) -> (String, String) {
    let out = bench(args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{args:?} failed:\n{stdout}\n{stderr}");
    (stdout, stderr)
}

/// Runs a command that must fail cleanly; returns its stderr.
fn fails(args: &[&str]) -> String {
    let out = bench(args);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{args:?} succeeded:\n{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.starts_with("slim-bench: error: "), "{stderr}");
    stderr
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

use slim_test_utils::copy_dir;

/// Splits one CSV line, honouring quoted fields.
fn csv_row(line: &str) -> Vec<String> {
    let (mut fields, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

fn check_plot(dir: &Path) {
    let (w, h) = slim_bench::plot::SIZE;
    let png = image::open(dir.join("plot.png")).expect("plot.png decodes");
    assert_eq!((png.width(), png.height()), (w, h));
    let svg = std::fs::read_to_string(dir.join("plot.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("plot.svg is well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(root.attribute("width"), Some(w.to_string().as_str()));
    assert_eq!(root.attribute("height"), Some(h.to_string().as_str()));
    assert!(
        svg.contains("top-1 accuracy vs MACs"),
        "axis titles are in the SVG"
    );
}

#[test]
fn fashion_mnist_report_plot_and_manifest() {
    let Some(data) = std::env::var_os("FASHION_MNIST_DIR") else {
        eprintln!("skipped: FASHION_MNIST_DIR is not set (source .deps/env.sh)");
        return;
    };
    let data = PathBuf::from(data);
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/fashion-mnist-resnet20"),
        &model,
    );
    let out = tmp.path().join("out");
    let (stdout, _) = ok(&[
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--limit",
        "200",
        "--runs",
        "5",
        "--warmup",
        "1",
        "--batch",
        "1,8",
        "--out",
        s(&out),
        "--write-manifest",
    ]);
    assert!(stdout.contains("machine: "), "{stdout}");
    assert!(stdout.contains("intra-op threads: 1"), "{stdout}");
    assert!(stdout.contains("1 warmup calls excluded"), "{stdout}");

    let report = Report::load(&out.join("report.json")).unwrap();
    let h = &report.header;
    assert_eq!((h.provider.as_str(), h.warmup, h.runs), ("tract", 1, 5));
    assert_ne!(h.versions.tract_onnx, "unknown");
    assert!(!h.machine.cpu.is_empty() && h.machine.logical_cores > 0);
    assert_eq!(
        h.evalset.as_ref().map(|e| (e.images, e.skipped)),
        Some((200, 0))
    );
    let widths: Vec<Width> = report.widths.iter().map(|w| w.width).collect();
    assert_eq!(widths, slim_core::width::DEFAULT_WIDTHS);
    for w in &report.widths {
        let a = w.accuracy.as_ref().unwrap();
        assert_eq!((a.source, a.figures.samples), (Source::Measured, 200));
        assert!(
            a.figures.top1 <= a.figures.top5 && a.figures.top5 <= 1.0,
            "{a:?}"
        );
        assert_eq!(
            w.latency.iter().map(|l| l.batch).collect::<Vec<_>>(),
            [1, 8]
        );
        for l in &w.latency {
            assert_eq!(l.runs, 5);
            assert!(l.min_ms <= l.p25_ms && l.p25_ms <= l.p50_ms && l.p50_ms <= l.p75_ms);
            assert!(l.p75_ms <= l.p90_ms && l.p90_ms <= l.p99_ms && l.p99_ms <= l.max_ms);
            assert!(l.min_ms > 0.0 && l.images_per_s > 0.0);
        }
        assert!(w.load_ms > 0.0);
        if cfg!(target_os = "linux") {
            assert!(w.memory.is_some() || w.memory_note.is_some());
        }
    }
    // The model gets about 81% on the whole test set.
    assert!(report.widths[0].accuracy.as_ref().unwrap().figures.top1 > 0.5);

    let csv = std::fs::read_to_string(out.join("report.csv")).unwrap();
    let rows: Vec<Vec<String>> = csv.lines().map(csv_row).collect();
    assert_eq!(
        rows.len(),
        1 + 4 * 2,
        "a header and one row per width and batch"
    );
    let col = |name: &str| rows[0].iter().position(|c| c == name).unwrap();
    assert!(rows.iter().all(|r| r.len() == rows[0].len()));
    let (wc, bc, tc) = (col("width"), col("batch"), col("top1"));
    let keys: Vec<(String, String)> = rows[1..]
        .iter()
        .map(|r| (r[wc].clone(), r[bc].clone()))
        .collect();
    assert_eq!(keys[0], ("1".to_string(), "1".to_string()));
    assert_eq!(keys[7], ("0.25".to_string(), "8".to_string()));
    let top1: f64 = rows[1][tc].parse().unwrap();
    assert_eq!(
        top1,
        report.widths[0].accuracy.as_ref().unwrap().figures.top1
    );
    check_plot(&out);

    // The manifest now holds the figures, and budgets can use them.
    let opened = SlimModel::open(&model, Backend::Tract).unwrap();
    let m = opened.manifest();
    for (e, w) in m.widths.iter().zip(&report.widths) {
        assert_eq!(e.accuracy.as_ref().unwrap().samples, 200);
        assert_eq!(e.latency.len(), 2);
        assert!(e.latency.iter().all(|l| l.backend == "tract"));
        assert_eq!(e.latency[0].p50_ms, w.latency[0].p50_ms);
    }
    let p50 = |i: usize| m.widths[i].latency[0].p50_ms;
    let budget = |ms: f64| Budget {
        max_latency_ms: Some(ms),
        latency_batch: 1,
        ..Budget::default()
    };
    let limit = p50(2) * 1.0001;
    let chosen = slim_runtime::select(m, &budget(limit)).unwrap();
    let fits: Vec<&slim_core::WidthEntry> = m
        .widths
        .iter()
        .filter(|e| e.latency[0].p50_ms <= limit)
        .collect();
    let best = fits
        .iter()
        .max_by(|a, b| {
            let acc = |e: &slim_core::WidthEntry| e.accuracy.as_ref().unwrap().top1;
            acc(a).total_cmp(&acc(b)).then(a.width.cmp(&b.width))
        })
        .unwrap();
    assert_eq!(chosen.width, best.width, "{}", chosen.reason);
    let fastest = (0..4).map(p50).fold(f64::MAX, f64::min);
    assert!(slim_runtime::select(m, &budget(fastest * 0.5)).is_err());

    // Without --data the accuracy comes from the manifest; a compare series joins the plot.
    let out2 = tmp.path().join("out2");
    let compare = format!("{}:first run", s(&out.join("report.json")));
    let (stdout, _) = ok(&[
        "--model",
        s(&model),
        "--runs",
        "2",
        "--warmup",
        "0",
        "--out",
        s(&out2),
        "--compare",
        &compare,
        "--label",
        "second run",
    ]);
    assert!(stdout.contains("from the model's manifest"), "{stdout}");
    let again = Report::load(&out2.join("report.json")).unwrap();
    assert!(again.header.evalset.is_none());
    for (a, b) in again.widths.iter().zip(&report.widths) {
        let (x, y) = (a.accuracy.as_ref().unwrap(), b.accuracy.as_ref().unwrap());
        assert_eq!(
            (x.source, x.figures.top1),
            (Source::Manifest, y.figures.top1)
        );
    }
    check_plot(&out2);
    let svg = std::fs::read_to_string(out2.join("plot.svg")).unwrap();
    assert!(
        svg.contains("first run") && svg.contains("second run"),
        "legend"
    );
}

/// A random ResNet-20 at widths 1.0 and 0.5 on 8x8 RGB images of "cat" and "dog",
/// exported into `dir/model`.
fn tiny_model(dir: &Path) -> PathBuf {
    let mut config = ModelConfig::new(
        Backbone::Resnet20,
        3,
        8,
        vec!["cat".into(), "dog".into()],
        vec![0.5; 3],
        vec![0.25; 3],
    );
    config.widths = slim_test_utils::widths(&[1.0, 0.5]);
    let ckpt = dir.join("tiny.safetensors");
    checkpoint::save(&ckpt, &config, &init::random_tensors(&config, 7)).unwrap();
    let model = dir.join("model");
    slim_onnx::export(&ckpt, slim_onnx::WidthSelection::All, &model).unwrap();
    model
}

/// An ImageFolder below `dir/name` with the given `class/file` entries: `.png` files hold
/// an 8x8 image, `broken*` files hold no image at all.
fn image_folder(dir: &Path, name: &str, files: &[&str]) -> PathBuf {
    let root = dir.join(name);
    for f in files {
        let path = root.join(f);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        if f.contains("broken") {
            std::fs::write(&path, b"not a png").unwrap();
        } else {
            let shade = (f.len() * 37 % 256) as u8;
            image::RgbImage::from_pixel(8, 8, image::Rgb([shade, 64, 200]))
                .save(&path)
                .unwrap();
        }
    }
    std::fs::create_dir_all(&root).unwrap();
    root
}

#[test]
fn an_unreadable_image_is_a_counted_skip() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let data = image_folder(
        tmp.path(),
        "set",
        &["cat/a.png", "cat/b.png", "dog/c.png", "dog/broken.png"],
    );
    let out = tmp.path().join("out");
    let (stdout, stderr) = ok(&[
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--runs",
        "2",
        "--warmup",
        "0",
        "--out",
        s(&out),
    ]);
    assert!(
        stderr.contains("warning: skipped") && stderr.contains("broken.png"),
        "{stderr}"
    );
    assert!(stdout.contains("3 images used, 1 skipped"), "{stdout}");
    let report = Report::load(&out.join("report.json")).unwrap();
    assert_eq!(report.widths.len(), 2);
    for w in &report.widths {
        assert_eq!(w.accuracy.as_ref().unwrap().figures.samples, 3);
        assert_eq!(
            w.accuracy.as_ref().unwrap().figures.top5,
            1.0,
            "two classes"
        );
    }
    check_plot(&out);
}

#[test]
fn bad_evaluation_sets_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let run = |data: &Path| fails(&["--model", s(&model), "--data", s(data), "--runs", "1"]);

    let other = image_folder(tmp.path(), "other", &["bird/a.png", "fish/b.png"]);
    let err = run(&other);
    assert!(err.contains("do not match the model's"), "{err}");
    assert!(err.contains("bird") && err.contains(s(&other)), "{err}");

    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(empty.join("cat")).unwrap();
    std::fs::create_dir_all(empty.join("dog")).unwrap();
    let err = run(&empty);
    assert!(
        err.contains(s(&empty)) && err.contains("no images"),
        "{err}"
    );

    let broken = image_folder(
        tmp.path(),
        "broken",
        &["cat/broken1.png", "dog/broken2.png"],
    );
    let err = run(&broken);
    assert!(
        err.contains("every image failed to decode (2 skipped)"),
        "{err}"
    );

    let err = run(&tmp.path().join("nowhere"));
    assert!(
        err.contains("nowhere") && err.contains("does not exist"),
        "{err}"
    );
}

#[test]
fn bad_models_and_arguments_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-model");
    let err = fails(&["--model", s(&missing)]);
    assert!(err.contains(s(&missing.join("manifest.json"))), "{err}");

    let model = tiny_model(tmp.path());
    let m = s(&model);
    let err = fails(&["--model", m, "--backend", "gpu"]);
    assert!(err.contains("unknown backend \"gpu\""), "{err}");
    let err = fails(&["--model", m, "--batch", "1,0"]);
    assert!(err.contains("must be positive"), "{err}");

    let not_a_report = tmp.path().join("x.json");
    std::fs::write(&not_a_report, "{\"widths\": 3}").unwrap();
    let out = tmp.path().join("out");
    let err = fails(&[
        "--model",
        m,
        "--out",
        s(&out),
        "--compare",
        s(&not_a_report),
    ]);
    assert!(
        err.contains(s(&not_a_report)) && err.contains("not a slim-bench report.json"),
        "{err}"
    );

    // No accuracy anywhere: the report is written, the plot is skipped with a reason.
    let (stdout, _) = ok(&[
        "--model",
        m,
        "--runs",
        "1",
        "--warmup",
        "0",
        "--out",
        s(&out),
    ]);
    assert!(
        stdout.contains("no plot: no width has an accuracy"),
        "{stdout}"
    );
    assert!(out.join("report.json").is_file() && !out.join("plot.png").exists());
}

#[test]
fn a_killed_write_back_leaves_the_manifest_as_before_or_complete() {
    let _alone = slim_test_utils::alone();
    let (_tmp, model) = slim_test_utils::model_copy();
    let data = slim_test_utils::fashion_mnist();
    let manifest = model.join(slim_core::manifest::FILE_NAME);
    let before = std::fs::read(&manifest).unwrap();
    let mut complete = 0;
    let killed = slim_test_utils::kill_at_random_points(
        50,
        || {
            std::fs::write(&manifest, &before).unwrap();
            let mut c = Command::new(env!("CARGO_BIN_EXE_slim-bench"));
            c.arg("--model").arg(&model).arg("--data").arg(&data).args([
                "--limit",
                "20",
                "--runs",
                "2",
                "--warmup",
                "0",
                "--batch",
                "1",
                "--write-manifest",
            ]);
            c
        },
        |i| {
            let m = slim_core::Manifest::load(&model).unwrap_or_else(|e| panic!("run {i}: {e}"));
            if std::fs::read(&manifest).unwrap() == before {
                return;
            }
            // Complete: every width measured at batch 1, with its accuracy on 20 images.
            for e in &m.widths {
                assert!(
                    e.latency
                        .iter()
                        .any(|l| l.batch == 1 && l.backend == "tract")
                        && e.accuracy.as_ref().is_some_and(|a| a.samples == 20),
                    "run {i}: {e:?}"
                );
            }
            complete += 1;
        },
    );
    assert!(killed >= 25, "only {killed} of 50 runs were killed");
    assert!(complete > 0, "no run finished");
}

#[test]
fn threads_are_reported_as_used_and_a_profile_shows_the_operators() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let out = tmp.path().join("out");
    let (stdout, _) = ok(&[
        "--model",
        s(&model),
        "--threads",
        "2",
        "--profile",
        "--runs",
        "3",
        "--warmup",
        "1",
        "--out",
        s(&out),
    ]);
    assert!(
        stdout.contains("intra-op threads: 2 (tract: a batch's images spread over a pool"),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["header"]["intra_op_threads"], 2);
    for w in ["1", "0.5"] {
        assert!(
            stdout.contains(&format!(
                "width {w}: where the time goes at batch 1 (3 runs, tract)"
            )),
            "{stdout}"
        );
    }
    assert_eq!(stdout.matches("| total |").count(), 2, "{stdout}");
    let zero = bench(&["--model", s(&model), "--threads", "0"]);
    assert!(!zero.status.success());
    assert!(text(&zero).1.contains("--threads"), "{}", text(&zero).1);
    if cfg!(feature = "ort") {
        let e = fails(&["--model", s(&model), "--backend", "ort", "--profile"]);
        assert!(e.contains("--profile") && e.contains("tract"), "{e}");
    }
}

/// The first `n` Fashion-MNIST test images as an ImageFolder under `dir/set` whose classes
/// are named as the fixture's (`class-0` to `class-9`).
fn labelled_set(dir: &Path, n: usize) -> PathBuf {
    let names = slim_core::Manifest::load(&slim_test_utils::model())
        .unwrap()
        .class_names;
    let (pngs, root) = (dir.join("pngs"), dir.join("set"));
    std::fs::create_dir_all(&pngs).unwrap();
    for i in 0..names.len() {
        std::fs::create_dir_all(root.join(format!("class-{i}"))).unwrap();
    }
    for (png, class) in slim_test_utils::fashion_mnist_pngs(&pngs, n) {
        let label = names.iter().position(|c| *c == class).unwrap();
        let to = root
            .join(format!("class-{label}"))
            .join(png.file_name().unwrap());
        std::fs::rename(&png, to).unwrap();
    }
    root
}

#[test]
fn every_precision_asked_for_is_measured_and_written_into_its_own_entry() {
    let _alone = slim_test_utils::alone();
    let tmp = tempfile::tempdir().unwrap();
    let Some(model) = slim_test_utils::variant_model(&tmp.path().join("fixture"), &Precision::ALL)
    else {
        return;
    };
    let data = labelled_set(tmp.path(), 32);
    let out = tmp.path().join("out");
    let run = bench(&[
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--limit",
        "32",
        "--batch",
        "1",
        "--runs",
        "2",
        "--warmup",
        "1",
        "--out",
        s(&out),
        "--write-manifest",
        "--precision",
        "f32,int8",
    ]);
    let (stdout, stderr) = text(&run);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("width 0.25/int8: accuracy") && stderr.contains("width 1: latency"),
        "progress names each graph: {stderr}"
    );
    assert!(stdout.contains("4 graphs updated"), "{stdout}");

    // report.json: one row per width and precision asked for, none for f16.
    let report = Report::load(&out.join("report.json")).unwrap();
    let graphs: Vec<String> = report
        .widths
        .iter()
        .map(|w| w.variant().to_string())
        .collect();
    assert_eq!(graphs, ["1", "1/int8", "0.25", "0.25/int8"]);
    for w in &report.widths {
        let a = w.accuracy.as_ref().expect("an accuracy");
        assert_eq!(
            (a.source, a.figures.samples),
            (Source::Measured, 32),
            "{w:?}"
        );
        assert_eq!(w.latency.len(), 1, "{w:?}");
        assert_eq!((w.latency[0].batch, w.latency[0].runs), (1, 2));
        assert!(
            w.latency[0].p50_ms > 0.0 && w.bytes.is_some_and(|b| b > 0),
            "{w:?}"
        );
    }
    let bytes = |i: usize| report.widths[i].bytes.unwrap();
    assert!(
        bytes(1) < bytes(0) && bytes(3) < bytes(2),
        "int8 graphs are smaller"
    );
    let json = std::fs::read_to_string(out.join("report.json")).unwrap();
    assert_eq!(
        json.matches("\"precision\": \"int8\"").count(),
        2,
        "f32 rows omit it"
    );
    assert!(
        stdout.contains("int8"),
        "the table names the precision: {stdout}"
    );

    // report.csv: a precision column right after the width, and each graph's size.
    let csv = std::fs::read_to_string(out.join("report.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    let col = |name: &str| rows[0].iter().position(|c| *c == name).unwrap();
    assert_eq!(col("precision"), col("width") + 1);
    let keys: Vec<(&str, &str)> = rows[1..]
        .iter()
        .map(|r| (r[col("width")], r[col("precision")]))
        .collect();
    assert_eq!(
        keys,
        [
            ("1", "f32"),
            ("1", "int8"),
            ("0.25", "f32"),
            ("0.25", "int8")
        ]
    );
    assert!(
        rows[1..]
            .iter()
            .all(|r| r[col("size_kib")].parse::<f64>().unwrap() > 0.0)
    );

    // The plot draws the int8 graphs as a series of their own.
    let svg = std::fs::read_to_string(out.join("plot.svg")).unwrap();
    assert!(
        svg.contains("0.25/int8") && svg.contains(": int8"),
        "int8 points and legend"
    );

    // The manifest: figures on the float entries and the int8 variants, none on f16.
    let m = slim_core::Manifest::load(&model).unwrap();
    for e in &m.widths {
        for p in [Precision::F32, Precision::Int8] {
            let g = e.at(p).unwrap();
            assert_eq!(
                g.accuracy.as_ref().map(|a| a.samples),
                Some(32),
                "{p}: {g:?}"
            );
            assert_eq!(g.latency.len(), 1, "{p}: {g:?}");
            assert_eq!(g.latency[0].backend, "tract");
        }
        let f16 = e.at(Precision::F16).unwrap();
        assert!(f16.accuracy.is_none() && f16.latency.is_empty(), "{f16:?}");
    }
    let int8_p50 = m.widths[1].at(Precision::Int8).unwrap().latency[0].p50_ms;
    assert_eq!(int8_p50, report.widths[3].latency[0].p50_ms);

    // An unknown precision, and one this model lacks, are refused by name.
    let unknown = bench(&["--model", s(&model), "--precision", "f32,int4"]);
    let (_, err) = text(&unknown);
    assert!(!unknown.status.success() && err.contains("int4"), "{err}");
    assert!(err.contains("one of f32, f16, int8"), "{err}");
    let float_only = slim_test_utils::model();
    let lacking = bench(&["--model", s(&float_only), "--precision", "f32,int8"]);
    let (_, err) = text(&lacking);
    assert!(
        !lacking.status.success() && !err.contains("panicked"),
        "{err}"
    );
    assert!(
        err.starts_with("slim-bench: error: --precision int8: the model has no graph in that precision (it has f32"),
        "{err}"
    );
}
