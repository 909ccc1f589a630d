//! Latency calibration on the real model: measured once, cached beside the model and
//! reused; stale keys ignored, a corrupt cache refused naming it, an unwritable cache an
//! error that says what to do, and `select` judging latency budgets by the calibration.

use slim_core::stats::LatencySummary;
use slim_runtime::calibrate::{self, Calibration, WidthLatency};
use slim_runtime::{Backend, Budget, SlimModel};

use slim_test_utils::model_copy as copy;

#[test]
fn a_calibration_is_measured_once_cached_and_reused() {
    let (_d, dir) = copy();
    let model = SlimModel::open(&dir, Backend::Tract).unwrap();
    let mut calls = Vec::new();
    let (cal, reused) = model
        .calibrate(1, 6, |done, total| calls.push((done, total)))
        .unwrap();
    assert!(!reused);
    assert_eq!(calls.last(), Some(&(24, 24)));
    assert_eq!(cal.key.provider, "tract");
    assert_eq!(cal.key.batch, 1);
    assert!(cal.key.device.contains("threads"), "{}", cal.key.device);
    assert_eq!(cal.widths.len(), 4);
    for w in &cal.widths {
        let l = &w.latency;
        assert!(
            l.p50_ms > 0.0 && l.p50_ms <= l.p90_ms && l.p90_ms <= l.p95_ms && l.p95_ms <= l.p99_ms,
            "{w:?}"
        );
        assert_eq!((l.runs, l.batch), (6, 1));
    }
    let path = dir.join(calibrate::FILE_NAME);
    let written = std::fs::read(&path).unwrap();
    // A later open reuses it without measuring.
    let again = SlimModel::open(&dir, Backend::Tract).unwrap();
    let (cached, reused) = again
        .calibrate(1, 6, |_, _| panic!("measured again"))
        .unwrap();
    assert!(reused);
    assert_eq!(cached.key, cal.key);
    for (a, b) in cached.widths.iter().zip(&cal.widths) {
        // JSON keeps the figures to within a rounding of the last bit.
        assert!(
            (a.latency.p50_ms - b.latency.p50_ms).abs() <= 1e-12 * b.latency.p50_ms,
            "{a:?} {b:?}"
        );
        assert!(
            (a.latency.p99_ms - b.latency.p99_ms).abs() <= 1e-12 * b.latency.p99_ms,
            "{a:?} {b:?}"
        );
    }
    assert_eq!(std::fs::read(&path).unwrap(), written);
    // Another batch size is another key: measured, and both are kept.
    let (_, reused) = again.calibrate(2, 3, |_, _| {}).unwrap();
    assert!(!reused);
    assert_eq!(calibrate::read_cache(&path).unwrap().len(), 2);
    assert!(again.cached_calibration(1).unwrap().is_some());
}

#[test]
fn stale_keys_are_ignored_and_kept() {
    let (_d, dir) = copy();
    let model = SlimModel::open(&dir, Backend::Tract).unwrap();
    let mut key = model.calibration_key(1).unwrap();
    key.checkpoint_sha256 = "another checkpoint".into();
    let stale = Calibration {
        key,
        widths: model
            .widths()
            .iter()
            .map(|&width| WidthLatency {
                width,
                precision: Default::default(),
                latency: LatencySummary::new(1, &[9.0]),
            })
            .collect(),
    };
    let path = model.calibration_path();
    calibrate::write_cache(&path, &stale).unwrap();
    assert_eq!(model.cached_calibration(1).unwrap(), None);
    let (cal, reused) = model.calibrate(1, 3, |_, _| {}).unwrap();
    assert!(!reused && cal.key != stale.key);
    let entries = calibrate::read_cache(&path).unwrap();
    assert_eq!(entries.len(), 2);
    assert!(entries.contains(&stale));
}

#[test]
fn a_corrupt_cache_is_an_error_naming_it() {
    let (_d, dir) = copy();
    let path = dir.join(calibrate::FILE_NAME);
    std::fs::write(&path, "{\"format\": \"slim-calibration/1\", \"entr").unwrap();
    let model = SlimModel::open(&dir, Backend::Tract).unwrap();
    let err = model.calibrate(1, 3, |_, _| {}).unwrap_err().to_string();
    assert!(
        err.contains("calibration.json") && err.contains("does not parse"),
        "{err}"
    );
    // A cache of an older format is stale, not wrong: measured again and replaced.
    let old = r#"{"format": "slim-calibration/1", "entries": [{"key": 1, "widths": []}]}"#;
    std::fs::write(&path, old).unwrap();
    let (_, reused) = model.calibrate(1, 2, |_, _| {}).unwrap();
    assert!(!reused);
    assert_eq!(calibrate::read_cache(&path).unwrap().len(), 1);
    std::fs::write(&path, "{\"format\": \"other/9\", \"entries\": []}").unwrap();
    let err = model.calibrate(1, 3, |_, _| {}).unwrap_err().to_string();
    assert!(
        err.contains("calibration.json") && err.contains("other/9"),
        "{err}"
    );
}

#[test]
fn an_unwritable_cache_is_an_error_and_another_path_can_be_given() {
    let (_d, dir) = copy();
    // A cache "inside" a regular file cannot be written, even by root.
    let bad = dir.join("manifest.json").join(calibrate::FILE_NAME);
    let model = SlimModel::open(&dir, Backend::Tract)
        .unwrap()
        .with_calibration_path(&bad);
    let err = model.calibrate(1, 2, |_, _| {}).unwrap_err().to_string();
    assert!(
        err.contains("manifest.json/calibration.json") && err.contains("writable"),
        "{err}"
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let ok = elsewhere.path().join("cal.json");
    let model = SlimModel::open(&dir, Backend::Tract)
        .unwrap()
        .with_calibration_path(&ok);
    model.calibrate(1, 2, |_, _| {}).unwrap();
    assert!(ok.is_file() && !dir.join(calibrate::FILE_NAME).exists());
}

#[test]
fn select_judges_latency_by_the_calibration() {
    let (_d, dir) = copy();
    let model = SlimModel::open(&dir, Backend::Tract).unwrap();
    let budget = Budget {
        max_latency_ms: Some(2.5),
        latency_batch: 1,
        ..Budget::default()
    };
    // The fixture's manifest holds no latencies: nothing can be judged yet.
    let err = model.select(&budget).unwrap_err().to_string();
    assert!(err.contains("no latency measured at batch 1"), "{err}");
    // Hand-made figures under this device's key: 4, 3, 2, 1 ms from widest to narrowest.
    let cal = Calibration {
        key: model.calibration_key(1).unwrap(),
        widths: model
            .widths()
            .iter()
            .zip([4.0, 3.0, 2.0, 1.0])
            .map(|(&width, ms)| WidthLatency {
                width,
                precision: Default::default(),
                latency: LatencySummary::new(1, &[ms]),
            })
            .collect(),
    };
    calibrate::write_cache(&model.calibration_path(), &cal).unwrap();
    let s = model.select(&budget).unwrap();
    assert_eq!(s.width, slim_test_utils::width(0.5));
    assert!(
        s.reason.contains("p50 2.000 ms") && s.reason.contains("calibrated"),
        "{}",
        s.reason
    );
    assert_eq!(
        s.rejected.last().unwrap().width,
        slim_test_utils::width(0.75)
    );
    assert!(
        s.rejected
            .last()
            .unwrap()
            .misses
            .contains("p50 latency 3.0000 ms"),
        "{:?}",
        s.rejected
    );
    let tight = Budget {
        max_latency_ms: Some(0.5),
        ..budget
    };
    let err = model.select(&tight).unwrap_err().to_string();
    assert!(
        err.contains("width 0.25") && err.contains("100.0%"),
        "{err}"
    );
}

#[test]
fn a_calibration_holds_for_the_threads_it_was_measured_with() {
    let (_d, dir) = copy();
    let one = SlimModel::open(&dir, Backend::Tract).unwrap();
    let (cal, _) = one.calibrate(1, 3, |_, _| {}).unwrap();
    assert_eq!(
        cal.key.threads,
        Some(1),
        "tract's default, as the engine reports it"
    );
    let two = SlimModel::open(&dir, Backend::Tract)
        .unwrap()
        .with_threads(std::num::NonZeroUsize::new(2));
    assert!(two.cached_calibration(1).unwrap().is_none());
    let (cal2, reused) = two.calibrate(1, 3, |_, _| {}).unwrap();
    assert!(
        !reused,
        "two threads are measured, not read from one thread's figures"
    );
    assert_eq!(cal2.key.threads, Some(2));
}
