//! Classify a folder of photos with the most accurate width of an exported model whose
//! latency on this machine fits a budget: calibrate (once; cached), select, classify.
//!
//! ```sh
//! cargo run --release -p slim-examples --example classify -- \
//!     models/fashion-mnist-resnet20 2.0 photos/
//! ```
//! Arguments: the model folder (written by slim-export), the budget in ms per image (p50
//! at batch 1), then image files or folders of them (JPEG, PNG, WebP, BMP). The
//! calibration is cached in the temporary folder, keyed by this machine and backend.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use slim_core::stats::percentile;
use slim_runtime::{Backend, Budget, SlimModel};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model_dir, budget_ms, inputs @ ..] = args.as_slice() else {
        bail!("usage: classify MODEL_DIR BUDGET_MS IMAGE_OR_FOLDER...");
    };
    let budget_ms: f64 = budget_ms.parse().context("BUDGET_MS must be a number")?;
    let cache = std::env::temp_dir().join("slim-classify-calibration.json");
    let model = SlimModel::open(Path::new(model_dir), Backend::Tract)?.with_calibration_path(cache);
    let (cal, reused) = model.calibrate(1, 30, |_, _| {})?;
    println!(
        "latency on {} with {} ({}):",
        cal.key.device,
        cal.key.provider,
        if reused { "cached" } else { "measured now" }
    );
    for w in &cal.widths {
        println!("  width {}: p50 {:.3} ms", w.width, w.latency.p50_ms);
    }
    let budget = Budget {
        max_latency_ms: Some(budget_ms),
        latency_batch: 1,
        ..Budget::default()
    };
    let chosen = model.select(&budget)?;
    println!("width {}: {}", chosen.width, chosen.reason);

    let mut files: Vec<PathBuf> = Vec::new();
    for input in inputs {
        let p = Path::new(input);
        if p.is_dir() {
            let mut in_dir: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("{input}: cannot be listed"))?
                .filter_map(|e| Some(e.ok()?.path()))
                .filter(|f| {
                    let ext = f.extension().map(|e| e.to_string_lossy().to_lowercase());
                    matches!(
                        ext.as_deref(),
                        Some("jpg" | "jpeg" | "png" | "webp" | "bmp")
                    )
                })
                .collect();
            in_dir.sort();
            files.extend(in_dir);
        } else {
            files.push(p.to_path_buf());
        }
    }
    let mut ms = Vec::new();
    for f in &files {
        let input = match model.preprocess_files(std::slice::from_ref(f)) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("skipped: {e}");
                continue;
            }
        };
        let t = Instant::now();
        let top = model.classify(chosen.width, &input, 3)?.remove(0);
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        let answers: Vec<String> = top
            .iter()
            .map(|c| format!("{} {:.1}%", c.name, c.prob * 100.0))
            .collect();
        println!("{}: {}", f.display(), answers.join(", "));
    }
    if let (Some(p50), Some(p95)) = (percentile(&ms, 0.5), percentile(&ms, 0.95)) {
        println!(
            "{} images: p50 {p50:.3} ms, p95 {p95:.3} ms per image (budget: p50 {budget_ms} ms)",
            ms.len()
        );
    }
    Ok(())
}
