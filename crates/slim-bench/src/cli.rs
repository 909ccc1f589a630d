//! The `slim-bench` command: for each width of an exported model, load time, latency
//! percentiles per batch size and, given a labelled set, top-1/top-5 accuracy; printed as
//! a table and optionally written as JSON.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use slim_runtime::{Backend, SlimModel};

use crate::evalset::EvalSet;
use crate::measure::{self, Accuracy};

#[derive(Debug, Parser)]
#[command(
    name = "slim-bench",
    about = "Measure each width of an exported slimmable model"
)]
pub struct Args {
    /// Folder written by slim-export (holds manifest.json).
    #[arg(long)]
    pub model: PathBuf,
    /// Labelled evaluation set (its test split): ImageFolder folder or zip, CIFAR binary
    /// archive, or a folder of IDX files (Fashion-MNIST).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// At most this many evaluation images, spread evenly over the set.
    #[arg(long)]
    pub limit: Option<usize>,
    /// tract, ort, ort-cuda or ort-tensorrt.
    #[arg(long, default_value = "tract")]
    pub backend: String,
    /// Batch sizes to time, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub batch: Vec<usize>,
    /// Untimed calls before timing.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Timed calls per width and batch size.
    #[arg(long, default_value_t = 30)]
    pub runs: usize,
    /// Write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct WidthReport {
    pub width: f64,
    pub macs: u64,
    pub params: u64,
    pub provider: String,
    pub load_ms: f64,
    pub accuracy: Option<Accuracy>,
    pub latency: Vec<LatencyReport>,
}

#[derive(Debug, Serialize)]
pub struct LatencyReport {
    pub batch: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub images_per_s: f64,
}

pub fn run(args: &Args) -> Result<Vec<WidthReport>> {
    let backend = Backend::parse(&args.backend).with_context(|| {
        format!(
            "unknown backend {:?}: use tract, ort, ort-cuda or ort-tensorrt",
            args.backend
        )
    })?;
    if args.batch.contains(&0) || args.runs == 0 {
        bail!("--batch sizes and --runs must be positive");
    }
    let model = SlimModel::open(&args.model, backend)?;
    let set = match &args.data {
        Some(p) => {
            let set = EvalSet::load(p, model.manifest(), args.limit)?;
            for s in &set.skipped {
                eprintln!("warning: skipped {s}");
            }
            Some(set)
        }
        None => None,
    };
    let per_image: usize = model.input_chw().iter().product();
    let mut reports = Vec::new();
    for entry in model.manifest().widths.clone() {
        let w = entry.width;
        let t = Instant::now();
        let engine = model.engine(w)?;
        let load_ms = t.elapsed().as_secs_f64() * 1e3;
        let provider = engine.provider().to_string();
        let accuracy = match &set {
            Some(set) => {
                let bar = ProgressBar::new(set.len() as u64).with_style(
                    ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} images ({per_sec})")
                        .expect("static template")
                        .progress_chars("=> "),
                );
                bar.set_message(format!("width {w}: accuracy"));
                let acc = measure::accuracy(&model, w, set, 64, |n| bar.inc(n as u64))?;
                bar.finish_and_clear();
                Some(acc)
            }
            None => None,
        };
        let mut latency = Vec::new();
        for &b in &args.batch {
            // Real images when there are enough, else a fixed ramp: never zeros.
            let input: Vec<f32> = match &set {
                Some(s) if s.len() >= b => s.batch(0, b).to_vec(),
                _ => (0..b * per_image)
                    .map(|i| ((i % 251) as f32 / 125.0) - 1.0)
                    .collect(),
            };
            let samples = measure::latency_ms(&model, w, &input, b, args.warmup, args.runs)?;
            let p50 = measure::percentile(&samples, 0.5);
            latency.push(LatencyReport {
                batch: b,
                p50_ms: p50,
                p90_ms: measure::percentile(&samples, 0.9),
                p99_ms: measure::percentile(&samples, 0.99),
                min_ms: measure::percentile(&samples, 0.0),
                max_ms: measure::percentile(&samples, 1.0),
                images_per_s: b as f64 / (p50 / 1e3),
            });
        }
        reports.push(WidthReport {
            width: w,
            macs: entry.macs,
            params: entry.params,
            provider,
            load_ms,
            accuracy,
            latency,
        });
    }
    print_table(&reports, set.as_ref());
    if let Some(p) = &args.json {
        let text = serde_json::to_string_pretty(&reports)?;
        slim_core::fsutil::atomic_write(p, text.as_bytes())?;
        println!("wrote {}", p.display());
    }
    Ok(reports)
}

fn print_table(reports: &[WidthReport], set: Option<&EvalSet>) {
    if let Some(s) = set {
        println!(
            "evaluation set: {} ({} images used, {} skipped)",
            s.description,
            s.len(),
            s.skipped.len()
        );
    }
    println!(
        "{:>6} {:>10} {:>10} {:>7} {:>7} {:>6} {:>9} {:>9} {:>9} {:>9}  provider",
        "width",
        "MMACs",
        "params",
        "top-1",
        "top-5",
        "batch",
        "p50 ms",
        "p90 ms",
        "img/s",
        "load ms"
    );
    for r in reports {
        let pct = |a: Option<f64>| a.map_or("-".to_string(), |v| format!("{:.2}%", v * 100.0));
        for (i, l) in r.latency.iter().enumerate() {
            let first = i == 0;
            println!(
                "{:>6} {:>10} {:>10} {:>7} {:>7} {:>6} {:>9.3} {:>9.3} {:>9.1} {:>9}  {}",
                if first {
                    r.width.to_string()
                } else {
                    String::new()
                },
                if first {
                    format!("{:.2}", r.macs as f64 / 1e6)
                } else {
                    String::new()
                },
                if first {
                    r.params.to_string()
                } else {
                    String::new()
                },
                if first {
                    pct(r.accuracy.map(|a| a.top1))
                } else {
                    String::new()
                },
                if first {
                    pct(r.accuracy.map(|a| a.top5))
                } else {
                    String::new()
                },
                l.batch,
                l.p50_ms,
                l.p90_ms,
                l.images_per_s,
                if first {
                    format!("{:.1}", r.load_ms)
                } else {
                    String::new()
                },
                r.provider,
            );
        }
    }
}
