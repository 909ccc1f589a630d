//! The `slim-bench` command: for each graph of an exported model (each width, and each of
//! its f16/int8 variants; `--precision` keeps some), load time, peak memory, latency per
//! batch size and, given a labelled set, top-1/top-5 accuracy. Printed as a
//! table under a header that says how and where it was measured; with `--out`, also
//! written as report.json, report.csv and the trade-off plot; with `--write-manifest`,
//! stored in the model's manifest.

use slim_core::cascade::Confidence;
use slim_core::{Precision, Variant};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;
use slim_cli::Reporter;
use slim_core::Progress;
use slim_runtime::engine::Profile;
use slim_runtime::{Backend, Engine, Placement, SlimModel};

use crate::evalset::EvalSet;
use crate::machine::{self, Machine};
use crate::memory::PeakTracker;
use crate::plot::{self, Series};
use crate::report::{self, EvalInfo, Header, Report, Source, Versions, WidthReport};
use crate::{measure, writeback};
use slim_core::stats::LatencySummary;

#[derive(Debug, Parser)]
#[command(
    name = "slim-bench",
    about = "Measure each graph (width and precision) of an exported slimmable model",
    version
)]
pub struct Args {
    /// Folder written by slim-export (holds manifest.json).
    #[arg(long)]
    pub model: PathBuf,
    /// Labelled evaluation set (its test split): ImageFolder folder or zip, CIFAR binary
    /// archive, or a folder of IDX files (Fashion-MNIST). Without it, accuracy comes from
    /// the manifest when it has one.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// At most this many evaluation images, spread evenly over the set.
    #[arg(long)]
    pub limit: Option<usize>,
    /// tract, ort, ort-cuda or ort-tensorrt.
    #[arg(long, default_value = "tract")]
    pub backend: String,
    /// With ort-cuda or ort-tensorrt: run on ONNX Runtime's CPU provider when the requested
    /// one fails to register (the report names the provider used) instead of stopping.
    #[arg(long, alias = "allow-fallback")]
    pub fallback: bool,
    /// Threads per graph run: tract's multithreaded kernels, ONNX Runtime's intra-op pool
    /// [default: tract the calling thread alone, ONNX Runtime one per physical core].
    #[arg(long, value_name = "N")]
    pub threads: Option<std::num::NonZeroUsize>,
    /// Batch sizes to time, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub batch: Vec<usize>,
    /// Untimed calls before timing, per graph and batch size.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Timed calls per graph and batch size.
    #[arg(long, default_value_t = 30)]
    pub runs: usize,
    /// Write report.json, report.csv, plot.png and plot.svg into this folder.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Another report.json to draw beside this run (e.g. networks trained alone at each
    /// width, or another backend), as FILE or FILE:LABEL; repeatable.
    #[arg(long, value_name = "FILE[:LABEL]")]
    pub compare: Vec<String>,
    /// Legend label of this run in the plot [default: model folder and provider].
    #[arg(long)]
    pub label: Option<String>,
    /// Also time every node of each graph at the first --batch size (tract only)
    /// and print where the time goes, by operator.
    #[arg(long)]
    pub profile: bool,
    /// Also calibrate a width cascade (narrowest width first, wider only while unsure) on
    /// every other image of --data and measure it on the rest next to each fixed width,
    /// one image per call; with --out also cascade.png/svg, with --write-manifest stored
    /// for slim-run --cascade.
    #[arg(long, requires = "data")]
    pub cascade: bool,
    /// The cascade's confidence: max-prob (top softmax probability) or margin (top two's
    /// difference).
    #[arg(long, default_value = "max-prob", value_parser = Confidence::parse, requires = "cascade")]
    pub cascade_confidence: Confidence,
    /// Top-1 in percent the cascade must reach on the calibration half [default: the
    /// widest width's there, less 0.5 points].
    #[arg(long, value_name = "PERCENT", requires = "cascade")]
    pub cascade_target_top1: Option<f64>,
    /// Measure only the graphs in these precisions, e.g. `f32,int8` [default: every graph
    /// the model has: each width's float graph and its f16/int8 variants].
    #[arg(long, value_delimiter = ',')]
    pub precision: Option<Vec<Precision>>,
    /// Store the measured accuracy and latencies in the model's manifest.json (each graph's
    /// in its own entry).
    #[arg(long, alias = "update-manifest")]
    pub write_manifest: bool,
}

/// The graphs of `model` to measure, most accurate first: all of them, or those in
/// `precisions`, each of which the model must have for at least one width.
fn graphs(model: &SlimModel, precisions: Option<&[Precision]>) -> Result<Vec<Variant>> {
    let all = model.variants();
    let Some(wanted) = precisions else {
        return Ok(all.to_vec());
    };
    let mut has: Vec<Precision> = all.iter().map(|v| v.precision).collect();
    has.sort();
    has.dedup();
    let mut missing: Vec<Precision> = wanted
        .iter()
        .copied()
        .filter(|p| !has.contains(p))
        .collect();
    missing.sort();
    missing.dedup();
    if !missing.is_empty() {
        let names = |l: &[Precision]| l.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ");
        bail!(
            "--precision {}: the model has no graph in {} (it has {}; export others with slim-export --precision)",
            names(&missing),
            if missing.len() == 1 {
                "that precision"
            } else {
                "those precisions"
            },
            names(&has)
        );
    }
    Ok(all
        .iter()
        .copied()
        .filter(|v| wanted.contains(&v.precision))
        .collect())
}

/// `FILE` or `FILE:LABEL`: a path that exists is taken whole; otherwise the part after
/// the last colon is the label. The default label is the report's model and provider.
fn parse_compare(arg: &str) -> Result<(Report, String)> {
    let (path, label) = match arg.rsplit_once(':') {
        Some((p, l)) if !Path::new(arg).exists() && !l.is_empty() => (p, Some(l.to_string())),
        _ => (arg, None),
    };
    let report = Report::load(Path::new(path))?;
    let label = label.unwrap_or_else(|| default_label(&report));
    Ok((report, label))
}

fn default_label(r: &Report) -> String {
    let model = Path::new(&r.header.model)
        .file_name()
        .map_or(r.header.model.clone(), |n| n.to_string_lossy().into_owned());
    format!("{model} ({})", r.header.provider)
}

/// Intra-op threads of one graph, and where that figure comes from: the engine's own
/// answer when it has one, else ONNX Runtime's documented default.
fn intra_op_threads(engine: &dyn Engine, m: &Machine) -> (Option<usize>, String) {
    let how = match (engine.placement(), engine.threads()) {
        (Placement::Tract, Some(1)) => "tract runs each graph on the calling thread".into(),
        (Placement::Tract, _) => "tract: a batch's images spread over a pool, one image's \
                                  kernels on it at batch 1 (--threads)"
            .into(),
        (Placement::Ort { .. }, Some(_)) => "ONNX Runtime's intra-op pool (--threads)".into(),
        (Placement::Ort { .. }, None) => {
            let n = m.physical_cores.unwrap_or(m.logical_cores);
            return (
                Some(n),
                "ONNX Runtime's default: one intra-op thread per physical core".into(),
            );
        }
    };
    (engine.threads(), how)
}

#[cfg(feature = "ort")]
fn onnxruntime_versions(backend_used: &str) -> (Option<String>, Option<String>) {
    if backend_used.starts_with("ort") {
        (
            Some(env!("SLIM_BENCH_VERSION_ORT").to_string()),
            Some(machine::onnxruntime_version(
                ort::info(),
                Path::new(&std::env::var_os("ORT_DYLIB_PATH").unwrap_or_default()),
            )),
        )
    } else {
        (None, None)
    }
}

#[cfg(not(feature = "ort"))]
fn onnxruntime_versions(_backend_used: &str) -> (Option<String>, Option<String>) {
    (None, None)
}

/// A batch to time: real images when there are enough, else a fixed ramp (never zeros).
fn timing_input(set: Option<&EvalSet>, batch: usize, per_image: usize) -> Vec<f32> {
    match set {
        Some(s) if s.len() >= batch => s.batch(0, batch).to_vec(),
        _ => (0..batch * per_image)
            .map(|i| ((i % 251) as f32 / 125.0) - 1.0)
            .collect(),
    }
}

/// Measures one graph: load, accuracy on `set`, latency at every batch size, and with
/// `--profile` its per-node profile.
fn measure_width(
    model: &SlimModel,
    w: Variant,
    set: Option<&EvalSet>,
    args: &Args,
    progress: &mut dyn Progress,
) -> Result<(WidthReport, Option<Profile>)> {
    let entry = model.entry(w)?.clone();
    let tracker = PeakTracker::start();
    let t = Instant::now();
    let engine = model.engine(w)?;
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let provider = engine.placement().to_string();
    let accuracy = match set {
        Some(set) => {
            let mut done = 0;
            progress.begin(
                &format!("width {w}: accuracy"),
                set.len() as u64,
                "images",
                0,
            );
            let acc = measure::accuracy(model, w, set, 64, |n| {
                done += n as u64;
                progress.update(done, "");
            })?;
            progress.end();
            Some(report::Accuracy {
                figures: slim_core::manifest::Accuracy {
                    top1: acc.top1,
                    top5: acc.top5,
                    dataset: set.description.clone(),
                    samples: set.len(),
                },
                source: Source::Measured,
            })
        }
        None => entry.accuracy.clone().map(|figures| report::Accuracy {
            figures,
            source: Source::Manifest,
        }),
    };
    let per_image: usize = model.input_chw().iter().product();
    let mut calls = 0;
    progress.begin(
        &format!("width {w}: latency"),
        (args.batch.len() * (args.warmup + args.runs)) as u64,
        "calls",
        0,
    );
    let mut latency = Vec::new();
    for &batch in &args.batch {
        let input = timing_input(set, batch, per_image);
        let samples = slim_runtime::calibrate::latency_samples(
            model,
            w,
            &input,
            batch,
            (args.warmup, args.runs),
            || {
                calls += 1;
                progress.update(calls, "");
            },
        )?;
        latency.push(LatencySummary::new(batch, &samples));
    }
    progress.end();
    let (memory, memory_note) = match tracker.and_then(|t| t.finish()) {
        Ok(m) => (Some(m), None),
        Err(why) => (None, Some(why)),
    };
    let profile = if args.profile {
        let batch = args.batch[0];
        let input = timing_input(set, batch, per_image);
        Some(engine.profile(&input, batch, args.runs)?)
    } else {
        None
    };
    let report = WidthReport {
        width: w.width,
        precision: w.precision,
        macs: entry.macs,
        params: entry.params,
        bytes: entry.bytes,
        provider,
        load_ms,
        memory,
        memory_note,
        accuracy,
        latency,
    };
    Ok((report, profile))
}

pub fn run(args: &Args) -> Result<Report> {
    let backend = Backend::from_flags(&args.backend, args.fallback).map_err(anyhow::Error::msg)?;
    if args.batch.is_empty() || args.batch.contains(&0) || args.runs == 0 {
        bail!("--batch sizes and --runs must be positive");
    }
    if args.limit == Some(0) {
        bail!("--limit must be positive");
    }
    if let Some(t) = args
        .cascade_target_top1
        .filter(|t| !(0.0..=100.0).contains(t))
    {
        bail!("--cascade-target-top1 is a percentage in [0, 100], not {t}");
    }
    if args.profile && backend != Backend::Tract {
        bail!("--profile times tract's nodes: use it with --backend tract");
    }
    let compare = args
        .compare
        .iter()
        .map(|c| parse_compare(c))
        .collect::<Result<Vec<_>>>()?;
    if !compare.is_empty() && args.out.is_none() {
        bail!("--compare draws into the plot: give --out too");
    }
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out)
            .with_context(|| format!("{}: cannot create the output folder", out.display()))?;
    }
    let model = SlimModel::open(&args.model, backend.clone())?.with_threads(args.threads);
    let graphs = graphs(&model, args.precision.as_deref())?;
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

    let mut reporter = Reporter::stderr();
    let (widths, profiles): (Vec<_>, Vec<_>) = graphs
        .into_iter()
        .map(|v| measure_width(&model, v, set.as_ref(), args, &mut reporter))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .unzip();

    let cascade = match (&set, args.cascade) {
        (Some(set), true) => Some(measure_cascade(&model, set, args, &mut reporter)?),
        _ => None,
    };

    let machine = Machine::detect();
    let provider = widths[0].provider.clone();
    let engine = model.engine(widths[0].variant())?;
    let used = engine.placement().backend_name();
    let (intra_op_threads, threads_note) = intra_op_threads(engine, &machine);
    let (ort, onnxruntime) = onnxruntime_versions(&used);
    let report = Report {
        header: Header {
            tool: format!("slim-bench {}", env!("CARGO_PKG_VERSION")),
            date_utc: machine::now_utc(),
            model: args.model.display().to_string(),
            machine,
            backend: backend.name(),
            provider,
            intra_op_threads,
            threads_note,
            process_threads: machine::process_threads(),
            versions: Versions {
                slim_bench: env!("CARGO_PKG_VERSION").into(),
                tract_onnx: env!("SLIM_BENCH_VERSION_TRACT_ONNX").into(),
                ort,
                onnxruntime,
            },
            warmup: args.warmup,
            runs: args.runs,
            evalset: set.as_ref().map(|s| EvalInfo {
                description: s.description.clone(),
                images: s.len(),
                skipped: s.skipped.len(),
            }),
        },
        widths,
        cascade,
    };
    print!("{}", report.to_table());
    if let Some(c) = &report.cascade {
        print!("\n{}", c.to_table());
    }
    for (w, p) in report.widths.iter().zip(profiles.iter().flatten()) {
        println!(
            "\nwidth {}: where the time goes at batch {} ({} runs, {})\n\n{}",
            w.variant(),
            p.batch,
            p.runs,
            report.header.provider,
            p.table()
        );
    }

    if let Some(out) = &args.out {
        write_outputs(out, &report, &compare, args)?;
    }
    if args.write_manifest {
        // Read again under the folder's lock: an export may have added widths meanwhile.
        let _lock = slim_core::fsutil::lock_dir(&args.model)?;
        let mut manifest = slim_core::Manifest::load(&args.model)?;
        if manifest.checkpoint_sha256 != model.manifest().checkpoint_sha256 {
            return Err(crate::Error::Report {
                path: args.model.join(slim_core::manifest::FILE_NAME),
                msg: "now describes another checkpoint than the one measured (exported while measuring?): figures not written".into(),
            }
            .into());
        }
        let device = report.header.machine.device(engine.placement().on_gpu());
        let changed = writeback::apply(&mut manifest, &report, &used, &device);
        if let Some(c) = &report.cascade {
            manifest.cascade = Some(c.calibrated.clone());
        }
        let path = manifest.save(&args.model)?;
        println!(
            "wrote {} ({changed} graphs updated: backend {used}, device {device}{})",
            path.display(),
            match &report.cascade {
                Some(c) => format!("; cascade {}", c.calibrated.cascade.describe()),
                None => String::new(),
            }
        );
    }
    Ok(report)
}

/// The cascade calibrated and measured on `set` (`--cascade`), with progress.
fn measure_cascade(
    model: &SlimModel,
    set: &EvalSet,
    args: &Args,
    progress: &mut dyn Progress,
) -> Result<crate::cascade::CascadeReport> {
    let mut begun = false;
    let report = crate::cascade::measure(
        model,
        set,
        args.cascade_confidence,
        args.cascade_target_top1.map(|t| t / 100.0),
        args.warmup,
        |done, total| {
            if !begun {
                progress.begin(
                    "cascade: each image, every width and the cascade",
                    total as u64,
                    "images",
                    0,
                );
                begun = true;
            }
            progress.update(done as u64, "");
        },
    )?;
    progress.end();
    Ok(report)
}

fn write_outputs(
    out: &Path,
    report: &Report,
    compare: &[(Report, String)],
    args: &Args,
) -> Result<()> {
    let json = out.join("report.json");
    slim_core::fsutil::atomic_write(&json, report.to_json().as_bytes())?;
    let csv = out.join("report.csv");
    slim_core::fsutil::atomic_write(&csv, report.to_csv().as_bytes())?;
    println!("wrote {} and {}", json.display(), csv.display());
    if let Some(c) = &report.cascade {
        for f in crate::cascade_plot::write(out, c)? {
            println!("wrote {}", f.display());
        }
    }
    let batch = *args.batch.iter().min().expect("batch sizes checked");
    let label = args.label.clone().unwrap_or_else(|| default_label(report));
    let Some(main) = Series::from_report(report, label, batch) else {
        println!(
            "no plot: no width has an accuracy (give --data, or store one in the manifest \
             with --data ... --write-manifest)"
        );
        return Ok(());
    };
    let mut series = vec![main];
    for (r, label) in compare {
        match Series::from_report(r, label.clone(), batch) {
            Some(s) => series.push(s),
            None => println!("--compare {label}: no width has an accuracy; not drawn"),
        }
        if r.widths.iter().all(|w| w.at_batch(batch).is_none()) {
            println!(
                "--compare {label}: no latency at batch {batch}; left out of the latency panel"
            );
        }
    }
    let files = plot::write(out, &series, batch)?;
    for f in files {
        println!("wrote {}", f.display());
    }
    Ok(())
}
