//! `slim-bench --cascade` on the trained Fashion-MNIST model and real test images: the
//! calibration reaches its target on the calibration half; on the measured half the
//! cascade as run agrees exactly with the cascade judged from each width run alone; the
//! report, plot and manifest hold it; bad flags are refused by name.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use slim_bench::cascade;
use slim_bench::evalset::EvalSet;
use slim_bench::report::Report;
use slim_core::cascade::Confidence;
use slim_runtime::cascade::{Held, Sweep};
use slim_runtime::{Backend, SlimModel, top_k};
use slim_test_utils::{model, model_copy};

fn data() -> Option<PathBuf> {
    let d = std::env::var_os("FASHION_MNIST_DIR").map(PathBuf::from);
    if d.is_none() {
        eprintln!("skipped: FASHION_MNIST_DIR is not set (source .deps/env.sh)");
    }
    d
}

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slim-bench"))
        .args(args)
        .output()
        .expect("run slim-bench")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// Each width's logits on `set`, narrowest first, one image per call.
fn held_alone(m: &SlimModel, set: &EvalSet) -> Vec<Held> {
    let mut widths = m.widths();
    widths.sort();
    widths
        .into_iter()
        .map(|w| Held {
            width: w,
            macs: m.entry(w).unwrap().macs,
            logits: (0..set.len())
                .map(|i| m.run(w, set.batch(i, 1), 1).unwrap().logits_row(0).to_vec())
                .collect(),
        })
        .collect()
}

/// The share of `set` whose top class at `h` is the label.
fn top1(h: &Held, set: &EvalSet) -> f64 {
    let hits = h
        .logits
        .iter()
        .zip(&set.labels)
        .filter(|(l, y)| top_k(l, 1, &[])[0].index == **y)
        .count();
    hits as f64 / set.len() as f64
}

#[test]
fn the_cascade_as_run_is_the_cascade_judged_from_each_width_alone() {
    let Some(data) = data() else { return };
    let m = SlimModel::open(&model(), Backend::Tract).unwrap();
    let set = EvalSet::load(&data, m.manifest(), Some(300)).unwrap();
    let r = cascade::measure(&m, &set, Confidence::MaxProb, None, 2, |_, _| {}).unwrap();
    let (calibration, measured) = set.halves();
    assert_eq!(
        (calibration.len(), measured.len(), r.images),
        (150, 150, 150)
    );

    // The default target: the widest width's top-1 on the calibration half less 0.5 pt.
    let held_cal = held_alone(&m, &calibration);
    let widest = held_cal.last().unwrap();
    let c = &r.calibrated;
    assert!((c.target_top1 - (top1(widest, &calibration) - 0.005)).abs() < 1e-12);
    assert!(c.top1 >= c.target_top1, "{c:?}");
    assert_eq!(c.samples, 150);
    let reached = Sweep::new(&held_cal, &calibration.labels, Confidence::MaxProb)
        .unwrap()
        .judge(&c.cascade)
        .unwrap();
    assert_eq!((reached.top1, reached.mean_macs), (c.top1, c.mean_macs));

    // Rows: every width narrowest first, then the cascade; on the measured half the
    // cascade as run equals the cascade judged from each width's own outputs.
    let widths: Vec<Option<f64>> = r.rows.iter().map(|r| r.width.map(|w| w.get())).collect();
    assert_eq!(widths, [Some(0.25), Some(0.5), Some(0.75), Some(1.0), None]);
    let held = held_alone(&m, &measured);
    let sweep = Sweep::new(&held, &measured.labels, Confidence::MaxProb).unwrap();
    let judged = sweep.judge(&c.cascade).unwrap();
    let run = r.rows.last().unwrap();
    assert_eq!(run.answered, judged.answered);
    assert_eq!((run.top1, run.mean_macs), (judged.top1, judged.mean_macs));
    assert_eq!(run.answered.iter().sum::<usize>(), 150);
    assert_eq!(run.latency.runs, 150);
    for (row, h) in r.rows.iter().zip(&held) {
        assert_eq!(row.top1, top1(h, &measured));
        assert_eq!(row.mean_macs, h.macs as f64);
    }
    // Threshold 0 is the cascade's first width alone; the sweep is the same judge.
    assert_eq!(r.sweep.len(), cascade::SWEEP_STEPS + 1);
    let first = c.cascade.stages()[0].width;
    let row = r.rows.iter().find(|r| r.width == Some(first)).unwrap();
    assert_eq!(
        (r.sweep[0].top1, r.sweep[0].mean_macs),
        (row.top1, row.mean_macs)
    );
    let table = r.to_table();
    assert!(table.contains("| cascade | "), "{table}");
    assert!(table.contains("calibrated on 150 images"), "{table}");
}

#[test]
fn the_command_writes_the_cascade_into_the_report_plot_and_manifest() {
    let Some(data) = data() else { return };
    let (_tmp, model) = model_copy();
    let out = model.parent().unwrap().join("out");
    let args = [
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--limit",
        "120",
        "--runs",
        "2",
        "--warmup",
        "1",
        "--cascade",
        "--cascade-confidence",
        "margin",
        "--cascade-target-top1",
        "70",
        "--out",
        s(&out),
        "--write-manifest",
    ];
    let o = bench(&args);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("cascade margin: 0.25>="), "{stdout}");
    assert!(stdout.contains("for top-1 >= 70.00%"), "{stdout}");
    assert!(stdout.contains("; cascade margin: "), "{stdout}");
    let report = Report::load(&out.join("report.json")).unwrap();
    let c = report.cascade.expect("the report holds the cascade");
    assert_eq!(c.calibrated.target_top1, 0.7);
    for f in ["cascade.png", "cascade.svg"] {
        assert!(std::fs::metadata(out.join(f)).unwrap().len() > 1000, "{f}");
    }
    let stored = slim_core::Manifest::load(&model).unwrap().cascade.unwrap();
    assert_eq!(stored, c.calibrated);
    // The runtime takes it as the cascade to run.
    let m = SlimModel::open(&model, Backend::Tract).unwrap();
    assert_eq!(m.cascade_with(None).unwrap(), c.calibrated.cascade);
}

#[test]
fn bad_cascade_flags_are_refused_by_name() {
    let Some(data) = data() else { return };
    let m = model();
    let (m, d) = (s(&m), s(&data));
    let cases: [(&[&str], &str); 4] = [
        (&["--model", m, "--cascade"], "--data"),
        (
            &[
                "--model",
                m,
                "--data",
                d,
                "--cascade",
                "--cascade-confidence",
                "entropy",
            ],
            "max-prob or margin",
        ),
        (
            &[
                "--model",
                m,
                "--data",
                d,
                "--cascade",
                "--cascade-target-top1",
                "150",
            ],
            "--cascade-target-top1 is a percentage",
        ),
        (
            &[
                "--model",
                m,
                "--data",
                d,
                "--limit",
                "200",
                "--runs",
                "1",
                "--cascade",
                "--cascade-target-top1",
                "100",
            ],
            "no cascade reaches top-1 100.00%; the best is",
        ),
    ];
    for (args, want) in cases {
        let o = bench(args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
