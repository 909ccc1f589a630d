//! tract against ONNX Runtime at equal threads, on models of real size: every width of
//! ResNet-20 (1x28x28), ResNet-18 with the CIFAR stem (3x32x32) and MobileNetV2
//! (3x224x224), random weights (latency does not depend on them), batch 1 and 32, each
//! engine at 1 and 2 threads; beside them tract as the runtime ran it before (one plan
//! with a symbolic batch, the whole batch at once, one thread) and each width's first-use
//! load time.
//!
//! ```sh
//! cargo bench -p slim-bench --bench engines --features ort -- [--quick] [--out DIR] [--keep DIR]
//! ```
//! Writes `engines.json` and `engines.md` (the README's tables) into `--out` (default
//! `target/engines-bench`; relative paths from the workspace root); `--keep` keeps the
//! exported models there (e.g. for
//! `slim-bench --profile`); `--only NAME` runs one backbone (`resnet20`, `resnet18-cifar`,
//! `mobilenet-v2`). `--quick`: batch 1, a few calls, ResNet-20 unless `--only` (a smoke run).
//! A figure is the median of timed calls after one untimed call; each configuration runs
//! for about `SECONDS_PER_CONFIG` seconds (3 to 30 calls).

mod common;

use std::fmt::Write as _;
use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Instant;

use common::{MODELS, Model, input};
use serde::Serialize;
use slim_core::{Width, WidthEntry};
use slim_runtime::SlimModel;
use tract_onnx::prelude::*;

const SECONDS_PER_CONFIG: f64 = 2.0;

/// One measured configuration.
#[derive(Serialize)]
struct Row {
    model: &'static str,
    width: Width,
    macs: u64,
    batch: usize,
    /// `tract`, `tract-symbolic` or `ort`.
    engine: &'static str,
    threads: usize,
    p50_ms: f64,
    calls: usize,
    /// First use of the width: reading, checking and optimising its graph (batch 1).
    load_ms: f64,
}

/// What one width is measured with.
struct At<'a> {
    model: &'static str,
    width: &'a WidthEntry,
    engine: &'static str,
    threads: usize,
    load_ms: f64,
}

impl Row {
    /// Times `run` at `batch` (see [`time`]), prints the figure and keeps it.
    fn measured(at: &At, batch: usize, calls_max: usize, run: impl FnMut()) -> Row {
        let (p50_ms, calls) = common::time(SECONDS_PER_CONFIG, calls_max, run);
        eprintln!(
            "  {} x{} width {} batch {batch}: {p50_ms:.3} ms ({calls} calls)",
            at.engine, at.threads, at.width.width
        );
        Row {
            model: at.model,
            width: at.width.width,
            macs: at.width.macs,
            batch,
            engine: at.engine,
            threads: at.threads,
            p50_ms,
            calls,
            load_ms: at.load_ms,
        }
    }
}

/// The graph as the runtime ran it before: one plan, batch symbolic, one thread.
fn symbolic_plan(path: &Path) -> TractResult<Arc<TypedSimplePlan>> {
    tract_onnx::onnx()
        .model_for_path(path)?
        .into_optimized()?
        .into_runnable()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let flag = |name: &str| common::flag(&args, name).map(common::workspace_path);
    let out = flag("--out").unwrap_or_else(|| common::workspace_path("target/engines-bench"));
    let (batches, calls_max) = if quick {
        (&[1][..], 5)
    } else {
        (&[1, 32][..], 30)
    };
    let only = common::flag(&args, "--only");
    let models: Vec<Model> = match only {
        Some(name) => MODELS
            .into_iter()
            .filter(|m| m.backbone.name() == name)
            .collect(),
        None if quick => MODELS[..1].to_vec(),
        None => MODELS.to_vec(),
    };
    assert!(!models.is_empty(), "--only {only:?}: no such backbone");
    let tmp = tempfile::tempdir().expect("tempdir");
    let models_dir = flag("--keep").unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&models_dir).expect("models folder");
    let mut rows = Vec::new();
    for &m in &models {
        let float = slim_onnx::ExportOptions::float(slim_onnx::WidthSelection::All);
        let dir = common::export(m, &models_dir, &float);
        let manifest = slim_core::Manifest::load(&dir).expect("manifest");
        eprintln!("{}: exported to {}", m.name, dir.display());
        for threads in [1, 2] {
            let n = NonZeroUsize::new(threads);
            for (engine, backend) in &common::engines() {
                let model = SlimModel::open(&dir, backend.clone())
                    .expect("open")
                    .with_threads(n);
                for e in &manifest.widths {
                    let t = Instant::now();
                    model.engine(e.width).expect("load");
                    let at = At {
                        model: m.name,
                        width: e,
                        engine,
                        threads,
                        load_ms: t.elapsed().as_secs_f64() * 1e3,
                    };
                    for &batch in batches {
                        let x = input(batch * model.image_len());
                        rows.push(Row::measured(&at, batch, calls_max, || {
                            model.run(e.width, &x, batch).expect("runs");
                        }));
                    }
                }
            }
        }
        for e in &manifest.widths {
            let t = Instant::now();
            let plan = symbolic_plan(&dir.join(&e.file)).expect("tract loads");
            let at = At {
                model: m.name,
                width: e,
                engine: "tract-symbolic",
                threads: 1,
                load_ms: t.elapsed().as_secs_f64() * 1e3,
            };
            let [c, s] = [m.in_channels, m.size];
            for &batch in batches {
                let x = input(batch * c * s * s);
                rows.push(Row::measured(&at, batch, calls_max, || {
                    let t = Tensor::from_shape(&[batch, c, s, s], &x).expect("shape");
                    std::hint::black_box(plan.run(tvec![t.into()]).expect("runs"));
                }));
            }
        }
    }
    std::fs::create_dir_all(&out).expect("out folder");
    let json = serde_json::to_string_pretty(&rows).expect("rows serialise");
    std::fs::write(out.join("engines.json"), json).expect("write engines.json");
    let md = tables(&rows);
    std::fs::write(out.join("engines.md"), &md).expect("write engines.md");
    print!("{md}");
    eprintln!("wrote {}", out.join("engines.{json,md}").display());
}

fn find<'a>(rows: &'a [Row], r: &Row, engine: &str, threads: usize) -> Option<&'a Row> {
    rows.iter().find(|o| {
        o.model == r.model
            && o.width == r.width
            && o.batch == r.batch
            && o.engine == engine
            && o.threads == threads
    })
}

fn ratio(a: Option<&Row>, b: Option<&Row>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}", a.p50_ms / b.p50_ms),
        _ => "-".into(),
    }
}

fn ms(r: Option<&Row>) -> String {
    r.map_or("-".into(), |r| format!("{:.3}", r.p50_ms))
}

/// The README's tables: engines at equal threads; width against MACs; symbolic against
/// concrete plans and load times.
fn tables(rows: &[Row]) -> String {
    let mut s = String::new();
    let keys: Vec<&Row> = rows
        .iter()
        .filter(|r| r.engine == "tract" && r.threads == 1)
        .collect();
    s += "| model | width | batch | tract 1T ms | ORT 1T ms | tract/ORT 1T | tract 2T ms | ORT 2T ms | tract/ORT 2T |\n";
    s += "|---|---|---|---|---|---|---|---|---|\n";
    for r in &keys {
        let [t1, o1, t2, o2] =
            [("tract", 1), ("ort", 1), ("tract", 2), ("ort", 2)].map(|(e, n)| find(rows, r, e, n));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.model,
            r.width,
            r.batch,
            ms(t1),
            ms(o1),
            ratio(t1, o1),
            ms(t2),
            ms(o2),
            ratio(t2, o2)
        );
    }
    s += "\nLatency of each width against width 1.0, beside the MACs ratio (1 thread):\n\n";
    s += "| model | width | batch | MACs ratio | tract | ORT |\n|---|---|---|---|---|---|\n";
    for r in &keys {
        let full = |e: &str| {
            rows.iter().find(|o| {
                o.model == r.model
                    && o.width == Width::FULL
                    && o.batch == r.batch
                    && o.engine == e
                    && o.threads == 1
            })
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.3} | {} | {} |",
            r.model,
            r.width,
            r.batch,
            r.macs as f64 / full("tract").map_or(f64::NAN, |f| f.macs as f64),
            ratio(Some(r), full("tract")),
            ratio(find(rows, r, "ort", 1), full("ort")),
        );
    }
    s += "\ntract now (a plan for one image, a batch image by image) against before (one plan \
          with a symbolic batch, run on the whole batch), 1 thread, and first-use load time:\n\n";
    s += "| model | width | batch | before ms | now ms | now/before | load before ms | load now ms |\n";
    s += "|---|---|---|---|---|---|---|---|\n";
    for r in &keys {
        let sym = find(rows, r, "tract-symbolic", 1);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.3} | {} | {} | {:.1} |",
            r.model,
            r.width,
            r.batch,
            ms(sym),
            r.p50_ms,
            ratio(Some(r), sym),
            sym.map_or("-".into(), |x| format!("{:.1}", x.load_ms)),
            r.load_ms
        );
    }
    s
}
