//! The fixture the Python tests (`tests/test_variants.py`) build and run with cargo: a
//! ResNet-20 for Fashion-MNIST exported in f32, f16 and int8 at widths 1.0 and 0.25
//! (random weights, int8 calibrated on 32 Fashion-MNIST images:
//! `slim_test_utils::variant_model`) into `OUT/model`, and a copy of it in
//! `OUT/calibrated` with a latency calibration cached for this device, tract and the
//! engine's default threads (as `slim_runtime.Model(path)` opens it): the figures are set,
//! not measured, as tract measures them in kind (int8 no faster than f32, f16 of width 1.0
//! between f32 1.0 and f32 0.25), so that a latency budget chooses an f16 graph.
//!
//!   cargo run -p slim-py --example variant_model -- OUT

use std::path::PathBuf;

use slim_core::stats::LatencySummary;
use slim_core::{Precision, Variant, Width};
use slim_runtime::calibrate::{self, WidthLatency};
use slim_runtime::{Backend, Calibration, SlimModel};

/// The p50 latencies (ms) at batch 1 the calibrated copy caches.
const P50_MS: [(f64, Precision, f64); 6] = [
    (1.0, Precision::F32, 4.0),
    (1.0, Precision::F16, 3.0),
    (1.0, Precision::Int8, 4.5),
    (0.25, Precision::F32, 1.0),
    (0.25, Precision::F16, 0.9),
    (0.25, Precision::Int8, 1.2),
];

fn main() {
    let out = PathBuf::from(std::env::args().nth(1).expect("usage: variant_model OUT"));
    let model = slim_test_utils::variant_model(&out, &Precision::ALL)
        .expect("Fashion-MNIST is installed (tools/setup.sh)");
    let calibrated = out.join("calibrated");
    slim_test_utils::copy_dir(&model, &calibrated);
    let m = SlimModel::open(&calibrated, Backend::Tract).expect("the exported model opens");
    let cal = Calibration {
        key: m.calibration_key(1).expect("the widest graph loads"),
        widths: (P50_MS.iter())
            .map(|&(w, p, ms)| {
                let v = Variant::new(Width::new(w).expect("a width"), p);
                WidthLatency {
                    width: v.width,
                    precision: v.precision,
                    latency: LatencySummary::new(1, &[ms]),
                }
            })
            .collect(),
    };
    calibrate::write_cache(&m.calibration_path(), &cal).expect("the calibration cache");
    println!("{}", model.display());
}
