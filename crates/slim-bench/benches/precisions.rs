//! Width and precision together, on models of real size: every width of ResNet-18 (CIFAR
//! stem, 3x32x32) and MobileNetV2 (3x224x224) in f32 and int8 as slim-export writes them
//! (random weights: latency and size do not depend on them; int8 calibrated on 16 real
//! images), on tract and ONNX Runtime at 2 threads, batch 1 and 32: p50 latency, the graph's
//! size, each against the same width's f32 graph, beside the MACs ratio to width 1.0.
//! `--f16` adds the f16 graphs; not by default, because slim-export checks each f16 graph
//! against the float one by running it with tract, which computes f16 convolutions at
//! tens of seconds per 32x32 ResNet-18 image (hours for the export at 224x224).
//!
//! ```sh
//! cargo bench -p slim-bench --bench precisions --features ort -- [--quick] [--out DIR] [--only NAME] [--f16]
//! ```
//! Writes `precisions.json` and `precisions.md` (the README's table) into `--out` (default
//! `target/precisions-bench`; relative to the workspace root). `--quick`: ResNet-18 at batch 1 only, a few calls (a smoke
//! run). A graph whose batch-1 call takes over 20 times its f32 graph's is not timed at
//! batch 32 (tract's f16 convolutions: minutes per call), and the table says so.

mod common;

use std::fmt::Write as _;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use common::{MODELS, input};
use serde::Serialize;
use slim_core::precision::RangeMethod;
use slim_core::{Precision, Variant, Width};
use slim_runtime::SlimModel;

const SECONDS_PER_CONFIG: f64 = 2.0;
const THREADS: usize = 2;
/// Slower than this many times the f32 graph at batch 1: not timed at larger batches.
const TOO_SLOW: f64 = 20.0;

#[derive(Serialize)]
struct Row {
    model: &'static str,
    width: Width,
    precision: Precision,
    macs: u64,
    bytes: u64,
    batch: usize,
    /// `tract` or `ort`.
    engine: &'static str,
    /// `None`: not timed (too slow, see [`TOO_SLOW`]).
    p50_ms: Option<f64>,
    calls: usize,
}

/// Real images to calibrate int8 on: the CIFAR-10 copy beside the checkout, else
/// Fashion-MNIST (either resized to the model's input).
fn calibration_data() -> PathBuf {
    let cifar = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/cifar10-jpeg/cifar10-jpeg.zip");
    match cifar.exists() {
        true => cifar,
        false => slim_test_utils::fashion_mnist(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let out =
        common::workspace_path(common::flag(&args, "--out").unwrap_or("target/precisions-bench"));
    let (batches, calls_max) = if quick {
        (&[1][..], 5)
    } else {
        (&[1, 32][..], 30)
    };
    let only = common::flag(&args, "--only");
    let precisions = match args.iter().any(|a| a == "--f16") {
        true => Precision::ALL.to_vec(),
        false => vec![Precision::F32, Precision::Int8],
    };
    let models: Vec<_> = (MODELS[1..].iter().copied())
        .filter(|m| only.is_none_or(|o| m.backbone.name() == o))
        .take(if quick && only.is_none() { 1 } else { 2 })
        .collect();
    assert!(
        !models.is_empty(),
        "--only {only:?}: resnet18-cifar or mobilenet-v2"
    );
    let options = slim_onnx::ExportOptions {
        precisions,
        calibration: Some(slim_onnx::calibration::CalibrationOptions {
            data: calibration_data(),
            images: 16,
            method: RangeMethod::MinMax,
            resize: true,
        }),
        ..slim_onnx::ExportOptions::float(slim_onnx::WidthSelection::All)
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut rows = Vec::new();
    for &m in &models {
        let dir = common::export(m, tmp.path(), &options);
        eprintln!("{}: exported to {}", m.name, dir.display());
        for (engine, backend) in &common::engines() {
            let model = SlimModel::open(&dir, backend.clone())
                .expect("open")
                .with_threads(NonZeroUsize::new(THREADS));
            for &v in model.variants() {
                let entry = model.entry(v).expect("a graph").clone();
                model.engine(v).expect("load");
                for &batch in batches {
                    let f32_b1 = (rows.iter()).find_map(|r: &Row| {
                        let same = r.model == m.name && r.engine == *engine && r.batch == 1;
                        (same && r.width == v.width && r.precision == Precision::F32)
                            .then_some(r.p50_ms)
                            .flatten()
                    });
                    let mine_b1 = (rows.iter()).find_map(|r: &Row| {
                        let same = r.model == m.name && r.engine == *engine && r.batch == 1;
                        (same && r.variant() == v).then_some(r.p50_ms).flatten()
                    });
                    let skip = batch > 1
                        && matches!((mine_b1, f32_b1), (Some(a), Some(b)) if a > TOO_SLOW * b);
                    let (p50_ms, calls) = match skip {
                        true => (None, 0),
                        false => {
                            let x = input(batch * model.image_len());
                            let (ms, calls) = common::time(SECONDS_PER_CONFIG, calls_max, || {
                                model.run(v, &x, batch).expect("runs");
                            });
                            (Some(ms), calls)
                        }
                    };
                    eprintln!("  {engine} width {v} batch {batch}: {p50_ms:?} ms ({calls} calls)");
                    rows.push(Row {
                        model: m.name,
                        width: v.width,
                        precision: v.precision,
                        macs: entry.macs,
                        bytes: entry.bytes.expect("the export records sizes"),
                        batch,
                        engine,
                        p50_ms,
                        calls,
                    });
                }
            }
        }
    }
    std::fs::create_dir_all(&out).expect("out folder");
    let json = serde_json::to_string_pretty(&rows).expect("rows serialise");
    std::fs::write(out.join("precisions.json"), json).expect("write precisions.json");
    let md = table(&rows, batches);
    std::fs::write(out.join("precisions.md"), &md).expect("write precisions.md");
    print!("{md}");
    eprintln!("wrote {}", out.join("precisions.{json,md}").display());
}

impl Row {
    fn variant(&self) -> Variant {
        Variant::new(self.width, self.precision)
    }
}

/// The row of `v` of `model` on `engine` at `batch`.
fn find<'a>(
    rows: &'a [Row],
    model: &str,
    v: Variant,
    engine: &str,
    batch: usize,
) -> Option<&'a Row> {
    (rows.iter())
        .find(|r| r.model == model && r.variant() == v && r.engine == engine && r.batch == batch)
}

/// `p50 (x f32)`: the latency and its ratio to the same width's f32 graph.
fn cell(rows: &[Row], r: &Row, engine: &str, batch: usize) -> String {
    let mine = find(rows, r.model, r.variant(), engine, batch);
    let float = find(rows, r.model, Variant::f32(r.width), engine, batch);
    match (mine.and_then(|m| m.p50_ms), float.and_then(|f| f.p50_ms)) {
        (Some(a), Some(b)) if r.precision != Precision::F32 => format!("{a:.3} ({:.2}x)", a / b),
        (Some(a), _) => format!("{a:.3}"),
        (None, _) if mine.is_some() => format!("not run (over {TOO_SLOW}x f32 at batch 1)"),
        _ => "-".into(),
    }
}

/// One row per model, width and precision: size, MACs ratio, and p50 per engine and batch.
fn table(rows: &[Row], batches: &[usize]) -> String {
    let mut s = String::from("| model | width | precision | KiB | MACs vs 1.0 |");
    let mut rule = String::from("|---|---|---|---|---|");
    for engine in ["tract", "ORT"] {
        for b in batches {
            let _ = write!(s, " {engine} b{b} ms (vs f32) |");
            rule += "---|";
        }
    }
    s = format!("{s}\n{rule}\n");
    let keys = rows.iter().filter(|r| r.engine == "tract" && r.batch == 1);
    for r in keys {
        let full = (rows.iter()).find(|o| o.model == r.model && o.width == Width::FULL);
        let macs = r.macs as f64 / full.map_or(f64::NAN, |f| f.macs as f64);
        let _ = write!(
            s,
            "| {} | {} | {} | {:.0} | {macs:.3} |",
            r.model,
            r.width,
            r.precision,
            r.bytes as f64 / 1024.0
        );
        for engine in ["tract", "ort"] {
            for &b in batches {
                let _ = write!(s, " {} |", cell(rows, r, engine, b));
            }
        }
        s.push('\n');
    }
    s
}
