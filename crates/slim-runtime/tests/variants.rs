//! A model exported in f32, f16 and int8 (slim-onnx, random weights, int8 calibrated on
//! Fashion-MNIST): every graph opens and runs close to its float graph, calibration covers
//! every graph, a latency budget chooses among all of them, a variant no faster than a
//! float graph at least as wide is dominated and never chosen nor served, and a precision
//! the model lacks is refused by name.

use std::path::PathBuf;
use std::sync::OnceLock;

use slim_core::stats::LatencySummary;
use slim_core::{Precision, Variant};
use slim_runtime::adaptive::{Adaptive, Config, SystemClock};
use slim_runtime::calibrate::{self, WidthLatency};
use slim_runtime::{Backend, Budget, Calibration, Error, SlimModel};

/// The exported model, once per test binary; copies keep each test's cache apart.
fn model() -> Option<(tempfile::TempDir, PathBuf)> {
    static DIR: OnceLock<Option<(tempfile::TempDir, PathBuf)>> = OnceLock::new();
    let (_, src) = DIR
        .get_or_init(|| {
            let d = tempfile::tempdir().unwrap();
            let m = slim_test_utils::variant_model(d.path(), &Precision::ALL)?;
            Some((d, m))
        })
        .as_ref()?;
    let d = tempfile::tempdir().unwrap();
    let dst = d.path().join("model");
    slim_test_utils::copy_dir(src, &dst);
    Some((d, dst))
}

/// Fashion-MNIST test images 0..n, preprocessed for `m`.
fn images(m: &SlimModel, n: usize) -> Vec<f32> {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = slim_test_utils::fashion_mnist_pngs(dir.path(), n)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    m.preprocess_files(&files).unwrap()
}

fn v(w: f64, p: Precision) -> Variant {
    Variant::new(slim_test_utils::width(w), p)
}

#[test]
fn every_variant_opens_and_runs_close_to_its_float_graph() {
    let Some((_d, dir)) = model() else { return };
    let m = SlimModel::open(&dir, Backend::Tract).unwrap();
    let names: Vec<String> = m.variants().iter().map(|v| v.to_string()).collect();
    assert_eq!(
        names,
        ["1", "1/f16", "1/int8", "0.25", "0.25/f16", "0.25/int8"]
    );
    m.load_all().unwrap();
    let x = images(&m, 16);
    for &w in &m.widths() {
        let float = m.run(w, &x, 16).unwrap();
        for p in [Precision::F16, Precision::Int8] {
            let out = m.run(Variant::new(w, p), &x, 16).unwrap();
            let entry = m.entry(Variant::new(w, p)).unwrap();
            assert_eq!(entry.precision, p);
            let tolerance = entry.derived.as_ref().unwrap().agreement.tolerance;
            let (num, den) = (float.logits.iter().zip(&out.logits))
                .fold((0.0, 0.0), |(n, d), (a, b)| {
                    (n + f64::from(a - b).powi(2), d + f64::from(*a).powi(2))
                });
            let rel = (num / den).sqrt();
            assert!(
                rel < tolerance,
                "width {w} {p}: relative error {rel} over {tolerance}"
            );
        }
    }
}

#[test]
fn calibration_covers_every_variant_and_is_reused() {
    let Some((_d, dir)) = model() else { return };
    let m = SlimModel::open(&dir, Backend::Tract).unwrap();
    let (cal, reused) = m.calibrate(1, 3, |_, _| {}).unwrap();
    assert!(!reused);
    let measured: Vec<Variant> = cal.widths.iter().map(|w| w.variant()).collect();
    assert_eq!(measured, m.variants());
    let text = std::fs::read_to_string(m.calibration_path()).unwrap();
    assert!(text.contains("\"precision\": \"int8\""), "{text}");
    let (again, reused) = m.calibrate(1, 3, |_, _| {}).unwrap();
    assert!(reused);
    for (a, b) in again.widths.iter().zip(&cal.widths) {
        assert_eq!(a.variant(), b.variant());
        assert!((a.latency.p50_ms - b.latency.p50_ms).abs() < 1e-9 * b.latency.p50_ms);
    }
}

/// A calibration of `m` at batch 1 with the given p50 per graph, in ms, cached.
fn cache(m: &SlimModel, p50: &[(Variant, f64)]) {
    let cal = Calibration {
        key: m.calibration_key(1).unwrap(),
        widths: (p50.iter())
            .map(|&(v, ms)| WidthLatency {
                width: v.width,
                precision: v.precision,
                latency: LatencySummary::new(1, &[ms]),
            })
            .collect(),
    };
    calibrate::write_cache(&m.calibration_path(), &cal).unwrap();
}

#[test]
fn a_slow_variant_is_dominated_and_a_fast_one_chosen_and_served() {
    let Some((_d, dir)) = model() else { return };
    let m = SlimModel::open(&dir, Backend::Tract).unwrap();
    use Precision::{F16, F32, Int8};
    // As tract runs it: int8 no faster than float; f16 of width 1.0 faster than float 1.0
    // but slower than float 0.25.
    cache(
        &m,
        &[
            (v(1.0, F32), 4.0),
            (v(1.0, F16), 3.0),
            (v(1.0, Int8), 4.5),
            (v(0.25, F32), 1.0),
            (v(0.25, F16), 0.9),
            (v(0.25, Int8), 1.2),
        ],
    );
    let budget = |ms| Budget {
        max_latency_ms: Some(ms),
        latency_batch: 1,
        ..Budget::default()
    };
    let s = m.select(&budget(3.5)).unwrap();
    assert_eq!(s.variant(), v(1.0, F16));
    let dominated: Vec<Variant> = s.dominated.iter().map(|d| d.variant).collect();
    assert_eq!(dominated, [v(1.0, Int8), v(0.25, Int8)]);
    assert!(
        s.dominated[1]
            .to_string()
            .contains("no faster than width 0.25's 1.000 ms")
    );
    let s = m.select(&budget(0.95)).unwrap();
    assert_eq!(s.variant(), v(0.25, F16));

    // The adaptive controller steps through the front: 1.0, 1.0/f16, 0.25, 0.25/f16.
    let a = Adaptive::for_model(&m, Config::p95(10.0), SystemClock::default()).unwrap();
    assert_eq!(
        a.steps(),
        [v(1.0, F32), v(1.0, F16), v(0.25, F32), v(0.25, F16)]
    );
    let x = images(&m, 1);
    let (served, out) = a.run(&m, &x).unwrap();
    assert_eq!(served, v(1.0, F32));
    assert_eq!(out.logits.len(), 10);
    // Callers that name graphs by width alone get the float widths.
    let floats = Adaptive::for_model_widths(&m, Config::p95(10.0), SystemClock::default());
    assert_eq!(floats.unwrap().steps(), [v(1.0, F32), v(0.25, F32)]);
}

#[test]
fn a_precision_the_model_lacks_is_refused_by_name() {
    let d = tempfile::tempdir().unwrap();
    let Some(dir) = slim_test_utils::variant_model(d.path(), &[Precision::F32, Precision::Int8])
    else {
        return;
    };
    let m = SlimModel::open(&dir, Backend::Tract).unwrap();
    let x = vec![0.0; m.image_len()];
    let e = m.run(v(1.0, Precision::F16), &x, 1).unwrap_err();
    assert!(matches!(e, Error::NoSuchVariant { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("holds no f16 graph of width 1; it has 1, 1/int8, 0.25, 0.25/int8"),
        "{text}"
    );
    // A variant's graph that is missing is named when the model opens.
    std::fs::remove_file(dir.join(&m.entry(v(0.25, Precision::Int8)).unwrap().file)).unwrap();
    let e = SlimModel::open(&dir, Backend::Tract)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("width-w250-int8/model.onnx")
            && e.contains("for width 0.25/int8 but is missing"),
        "{e}"
    );
}
