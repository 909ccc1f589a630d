//! `slim-bench` on a model exported in f32, f16 and int8: every graph of the precisions
//! asked for is measured and reported (JSON, CSV, plot) as its own row, and written back
//! into its own manifest entry; precisions that are unknown or that the model lacks are
//! clear errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use slim_bench::report::{Report, Source};
use slim_core::{Manifest, Precision};

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

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// The first `n` Fashion-MNIST test images as an ImageFolder under `dir/set` whose classes
/// are named as the fixture's (`class-0` to `class-9`).
fn labelled_set(dir: &Path, n: usize) -> PathBuf {
    let names = Manifest::load(&slim_test_utils::model())
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
    let m = Manifest::load(&model).unwrap();
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
