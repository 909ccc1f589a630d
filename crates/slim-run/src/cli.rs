//! The `slim-run` command: open an exported model, choose the most accurate width within
//! the budget (saying why, and why the next more accurate width was rejected), then print
//! the top-k classes (or embeddings) of each image; with `--cascade`, each image at the
//! narrowest width sure enough of it instead. An image that cannot be read or
//! decoded is reported on stderr, the others are still classified, and the exit status is
//! non-zero.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Parser;
use slim_cli::Reporter;
use slim_core::cascade::Confidence;
use slim_core::{Precision, Progress, Variant};
use slim_runtime::cascade::Cascade;
use slim_runtime::select::describe;
use slim_runtime::{Backend, Budget, SlimModel, top_k};

#[derive(Debug, Parser)]
#[command(
    name = "slim-run",
    about = "Classify images at the most accurate width of an exported model within a budget"
)]
pub struct Args {
    /// Folder written by slim-export (holds manifest.json).
    #[arg(long)]
    pub model: PathBuf,
    /// tract, ort (ONNX Runtime's CPU provider), ort-cuda or ort-tensorrt.
    #[arg(long, default_value = "tract")]
    pub backend: String,
    /// With ort-cuda or ort-tensorrt: run on ONNX Runtime's CPU provider when the requested
    /// one fails to register (reported, never silent).
    #[arg(long)]
    pub fallback: bool,
    /// Threads per graph run: tract's multithreaded kernels, ONNX Runtime's intra-op pool
    /// [default: tract the calling thread alone, ONNX Runtime one per physical core].
    #[arg(long, value_name = "N")]
    pub threads: Option<std::num::NonZeroUsize>,
    /// Most multiply-accumulates per image, in millions.
    #[arg(long)]
    pub budget_mmacs: Option<f64>,
    /// Most parameters, in millions.
    #[arg(long)]
    pub budget_mparams: Option<f64>,
    /// Most p50 latency per call at --batch, in ms, measured on this device (see
    /// --calibrate) or taken from the manifest.
    #[arg(long)]
    pub budget_ms: Option<f64>,
    /// Images per call, for the latency budget and for classifying.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Least top-1 accuracy in percent, as measured in the manifest.
    #[arg(long)]
    pub min_top1: Option<f64>,
    /// Choose only among graphs in these precisions, e.g. `f32` or `f32,int8` [default:
    /// every precision the model was exported in].
    #[arg(long, value_delimiter = ',')]
    pub precision: Option<Vec<Precision>>,
    /// Measure each graph's latency (every width, and its f16 and int8 variants) at
    /// --batch on this device first (or reuse the cached measurement).
    #[arg(long)]
    pub calibrate: bool,
    /// Timed calls per graph when calibrating.
    #[arg(long, default_value_t = 30)]
    pub calibration_runs: usize,
    /// Where to cache calibrations (default: calibration.json in the model folder).
    #[arg(long)]
    pub calibration_cache: Option<PathBuf>,
    /// Classes printed per image.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Print each image's embedding instead of its classes.
    #[arg(long)]
    pub embed: bool,
    /// Run the width cascade instead of one width: each image at the narrowest width
    /// first, at the next wider one only while its confidence is under the threshold; the
    /// cascade calibrated into the manifest (slim-bench --cascade --write-manifest), or
    /// every width at --cascade-threshold.
    #[arg(long, conflicts_with_all = ["budget_mmacs", "budget_mparams", "budget_ms", "min_top1", "calibrate", "embed"])]
    pub cascade: bool,
    /// The threshold in [0, 1] every stage of the cascade uses, instead of the manifest's.
    #[arg(long, requires = "cascade")]
    pub cascade_threshold: Option<f64>,
    /// With --cascade-threshold: max-prob (top softmax probability) or margin (top two's
    /// difference).
    #[arg(long, default_value = "max-prob", value_parser = Confidence::parse, requires = "cascade_threshold")]
    pub cascade_confidence: Confidence,
    /// Image files (JPEG, PNG, WebP, BMP).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

impl Args {
    pub fn backend(&self) -> Result<Backend> {
        Backend::from_flags(&self.backend, self.fallback).map_err(anyhow::Error::msg)
    }

    pub fn budget(&self) -> Result<Budget> {
        let positive = |v: Option<f64>, flag: &str| -> Result<Option<f64>> {
            match v {
                Some(x) if !(x > 0.0 && x.is_finite()) => bail!("{flag} must be positive, not {x}"),
                _ => Ok(v),
            }
        };
        if let Some(t) = self.min_top1.filter(|t| !(0.0..=100.0).contains(t)) {
            bail!("--min-top1 is a percentage in [0, 100], not {t}");
        }
        if self.batch == 0 {
            bail!("--batch must be at least 1");
        }
        Ok(Budget {
            max_macs: positive(self.budget_mmacs, "--budget-mmacs")?.map(|m| (m * 1e6) as u64),
            max_params: positive(self.budget_mparams, "--budget-mparams")?
                .map(|p| (p * 1e6) as u64),
            max_latency_ms: positive(self.budget_ms, "--budget-ms")?,
            latency_batch: self.batch,
            min_top1: self.min_top1.map(|t| t / 100.0),
            precisions: self.precision.clone(),
        })
    }
}

/// Runs the command, printing to `out`; the exit status is a failure when an image could
/// not be read.
pub fn run(args: &Args, out: &mut impl Write) -> Result<ExitCode> {
    let budget = args.budget()?;
    if let Some(t) = args.cascade_threshold.filter(|t| !(0.0..=1.0).contains(t)) {
        bail!("--cascade-threshold must be in [0, 1], not {t}");
    }
    let mut model = SlimModel::open(&args.model, args.backend()?)?.with_threads(args.threads);
    if let Some(p) = &args.calibration_cache {
        model = model.with_calibration_path(p);
    }
    let m = model.manifest();
    writeln!(
        out,
        "model {} ({}, widths {:?}, {} classes)",
        args.model.display(),
        m.backbone,
        model.widths(),
        m.class_names.len()
    )?;
    if model.variants().len() > model.widths().len() {
        let graphs: Vec<String> = model.variants().iter().map(|v| v.to_string()).collect();
        writeln!(out, "graphs: {}", graphs.join(", "))?;
    }
    if args.calibrate {
        let mut reporter = Reporter::stderr();
        let mut begun = false;
        let (cal, reused) = model.calibrate(args.batch, args.calibration_runs, |done, total| {
            if !begun {
                reporter.begin("calibrating", total as u64, "calls", 0);
                begun = true;
            }
            reporter.update(done as u64, "");
        })?;
        reporter.end();
        writeln!(
            out,
            "calibration at batch {} on {} with {}: {} ({})",
            cal.key.batch,
            cal.key.device,
            cal.key.provider,
            if reused {
                "reused from the cache"
            } else {
                "measured now"
            },
            model.calibration_path().display()
        )?;
        for w in &cal.widths {
            writeln!(
                out,
                "  width {}: p50 {:.3} ms, p95 {:.3} ms over {} calls",
                w.variant(),
                w.latency.p50_ms,
                w.latency.p95_ms,
                w.latency.runs
            )?;
        }
    }
    let how = if args.cascade {
        let over = args.cascade_threshold.map(|t| (args.cascade_confidence, t));
        let cascade = model.cascade_with(over)?;
        let from = match over {
            Some(_) => "every width at --cascade-threshold",
            None => "calibrated into the manifest",
        };
        writeln!(out, "cascade {} ({from})", cascade.describe())?;
        How::Cascade(cascade)
    } else {
        How::Width(choose_width(&model, &budget, out)?)
    };

    let mut failed = 0;
    let mut good = Vec::new();
    let mut inputs = Vec::new();
    for path in &args.images {
        match model.preprocess_files(std::slice::from_ref(path)) {
            Ok(x) => {
                good.push(path);
                inputs.extend(x);
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
            }
        }
    }
    let per_image = model.image_len();
    for (chunk, paths) in inputs
        .chunks(per_image * args.batch)
        .zip(good.chunks(args.batch))
    {
        let width = match &how {
            How::Width(w) => *w,
            How::Cascade(c) => {
                for (a, path) in model.cascade(c, chunk)?.iter().zip(paths) {
                    writeln!(
                        out,
                        "{}: answered by width {} (stage {}, confidence {:.4})",
                        path.display(),
                        a.width,
                        a.stage + 1,
                        a.confidence
                    )?;
                    let names = &model.manifest().class_names;
                    print_classes(out, &top_k(&a.logits, args.top_k, names))?;
                }
                continue;
            }
        };
        if args.embed {
            for (e, path) in model.embed(width, chunk)?.iter().zip(paths) {
                let values: Vec<String> = e.iter().map(|v| format!("{v:.6}")).collect();
                writeln!(
                    out,
                    "{}: embedding ({}) [{}]",
                    path.display(),
                    e.len(),
                    values.join(", ")
                )?;
            }
            continue;
        }
        for (classes, path) in model.classify(width, chunk, args.top_k)?.iter().zip(paths) {
            writeln!(out, "{}:", path.display())?;
            print_classes(out, classes)?;
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} images could not be read", args.images.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// One graph for every image, or the cascade.
enum How {
    Width(Variant),
    Cascade(Cascade),
}

/// The most accurate graph within `budget`, printed with why, why the next more accurate
/// one was rejected, which graphs were left out as dominated, and what it runs on.
fn choose_width(model: &SlimModel, budget: &Budget, out: &mut impl Write) -> Result<Variant> {
    let chosen = model
        .select(budget)
        .with_context(|| format!("budget: {}", describe(budget)))?;
    writeln!(out, "budget: {}", describe(budget))?;
    for d in &chosen.dominated {
        writeln!(out, "not chosen: {d}")?;
    }
    writeln!(out, "chosen width {}: {}", chosen.variant(), chosen.reason)?;
    match chosen.rejected.last() {
        Some(r) => writeln!(
            out,
            "next more accurate width {} rejected: {}",
            r.variant(),
            r.misses
        )?,
        None => writeln!(out, "no more accurate width")?,
    }
    let engine = model.engine(chosen.variant())?;
    match engine.threads() {
        Some(n) => writeln!(out, "running on {}, {n} thread(s)", engine.placement())?,
        None => writeln!(
            out,
            "running on {}, the engine's default threads",
            engine.placement()
        )?,
    }

    Ok(chosen.variant())
}

fn print_classes(out: &mut impl Write, classes: &[slim_runtime::Class]) -> Result<()> {
    for (rank, c) in classes.iter().enumerate() {
        writeln!(out, "  {}. {} {:.2}%", rank + 1, c.name, c.prob * 100.0)?;
    }
    Ok(())
}
