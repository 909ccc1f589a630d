//! `slim-serve serve`: calibrate the widths, then answer `POST /classify` until Ctrl-C.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use slim_runtime::adaptive::{Adaptive, Config};
use slim_runtime::preprocess::MAX_FILE_BYTES;
use slim_runtime::{Backend, SlimModel};

use crate::http::{Limits, Running};
use crate::metrics::Metrics;
use crate::service::{Service, Settings};

/// Serve a model folder over HTTP.
#[derive(Debug, Parser)]
pub struct Serve {
    /// Folder written by slim-export (holds manifest.json).
    #[arg(long)]
    pub model: PathBuf,
    /// Address to listen on (port 0 picks a free one, printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// End-to-end p95 target in ms: from a request's arrival to its answer, queue wait
    /// included.
    #[arg(long)]
    pub p95_ms: f64,
    /// tract, or ort (ONNX Runtime's CPU provider, with the `ort` feature).
    #[arg(long, default_value = "tract")]
    pub backend: String,
    /// Threads per graph run [default: one].
    #[arg(long, value_name = "N")]
    pub threads: Option<NonZeroUsize>,
    /// Model worker threads, each running one request at a time [default: one per core].
    #[arg(long)]
    pub workers: Option<NonZeroUsize>,
    /// Requests that may wait for a worker; one more is refused with 503 and Retry-After.
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// Threads of the HTTP layer.
    #[arg(long, default_value_t = NonZeroUsize::MIN)]
    pub io_threads: NonZeroUsize,
    /// Largest request body in bytes; a larger one is refused with 413.
    #[arg(long, default_value_t = MAX_FILE_BYTES as usize)]
    pub max_body_bytes: usize,
    /// Longest wait for a request's body, in ms; a slower one is refused with 408.
    #[arg(long, default_value_t = 10_000)]
    pub body_timeout_ms: u64,
    /// Longest wait for a request's head (and between requests on an idle connection), in
    /// ms; the connection is closed after it.
    #[arg(long, default_value_t = 10_000)]
    pub header_timeout_ms: u64,
    /// Connections served at once.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Classes in each answer.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Where the widths' measured latencies are cached [default: calibration.json in the
    /// system's temporary folder].
    #[arg(long)]
    pub calibration: Option<PathBuf>,
}

pub fn run(a: &Serve) -> Result<ExitCode> {
    if !(a.p95_ms > 0.0 && a.p95_ms.is_finite()) {
        bail!("--p95-ms: target {} ms must be a positive number", a.p95_ms);
    }
    let backend = Backend::from_flags(&a.backend, false).map_err(anyhow::Error::msg)?;
    let cache = a
        .calibration
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("slim-serve-calibration.json"));
    let model = SlimModel::open(&a.model, backend)?
        .with_threads(a.threads)
        .with_calibration_path(cache);
    model.load_all()?; // no request pays for loading
    // Calibrated costs predict the wider widths' latency for the controller's steps up.
    model.calibrate(1, 30, |_, _| {})?;
    let ctrl = Adaptive::for_model(&model, Config::p95(a.p95_ms), Default::default())?;
    let workers = a
        .workers
        .or_else(|| std::thread::available_parallelism().ok())
        .map_or(1, NonZeroUsize::get);
    let settings = Settings {
        workers,
        queue: a.queue,
        top_k: a.top_k,
    };
    let service = Service::start(model, ctrl, Metrics::new(a.p95_ms), settings);
    let limits = Limits {
        max_body: a.max_body_bytes,
        body_timeout: Duration::from_millis(a.body_timeout_ms),
        header_timeout: Duration::from_millis(a.header_timeout_ms),
        max_connections: a.max_connections,
    };
    let running = Running::start(&a.addr, service, limits, a.io_threads.get())
        .with_context(|| format!("cannot listen on {}", a.addr))?;
    println!(
        "listening on {}, p95 target {} ms, {workers} model workers, queue {}",
        running.addr, a.p95_ms, a.queue
    );
    wait_for_ctrl_c()?;
    eprintln!("slim-serve: stopping: finishing open connections and queued requests");
    running.stop()?;
    Ok(ExitCode::SUCCESS)
}

fn wait_for_ctrl_c() -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(tokio::signal::ctrl_c())
        .context("cannot wait for Ctrl-C")
}
