//! `slim-serve load`: closed-loop clients against a running service for a set time; a line
//! per second, a summary, and optionally the whole report as JSON. Exits non-zero when any
//! request failed (a 503 from admission control is counted apart, as refused).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;

use crate::load::{Report, Second, Settings, run as run_load};

/// Load a running service with image requests.
#[derive(Debug, Parser)]
pub struct Load {
    /// The service's `host:port`.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Image files, or folders whose files are all sent (not recursively).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Client threads, each with its own connection, each sending its next request when
    /// the last is answered.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Longest wait for one answer, in ms, before the request counts as failed.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Writes the report, every second included, as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draws the run over time (p95 against the target, width, resident memory) as
    /// STEM.png and STEM.svg.
    #[arg(long, value_name = "STEM")]
    pub plot: Option<PathBuf>,
}

fn read_images(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut inner: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("{}: cannot be listed", p.display()))?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<_, _>>()
                .with_context(|| format!("{}: cannot be listed", p.display()))?;
            inner.retain(|f| f.is_file());
            inner.sort();
            files.extend(inner);
        } else {
            files.push(p.clone());
        }
    }
    let read = |f: &PathBuf| slim_data::decode::read_file(f);
    Ok(files.iter().map(read).collect::<Result<Vec<_>, _>>()?)
}

fn line(s: &Second) -> String {
    let widths: Vec<String> = s.widths.iter().map(|(w, n)| format!("{w}x{n}")).collect();
    format!(
        "{:>6}  {:>6}  {:>7}  {:>6}  {:>7}  {:>8}  {}",
        s.second,
        s.ok,
        s.refused,
        s.failed,
        s.p95_ms.map_or("-".into(), |p| format!("{p:.2}")),
        s.resident_mib.map_or("-".into(), |m| format!("{m:.1}")),
        widths.join(" ")
    )
}

fn summary(r: &Report) -> String {
    let widths: Vec<String> = r
        .widths
        .iter()
        .map(|(w, n)| format!("{w}: {:.1}%", 100.0 * *n as f64 / r.ok.max(1) as f64))
        .collect();
    let mut s = format!(
        "{} clients, {} s: {} answered, {} refused (503), {} failed\n\
         round trip p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms against a p95 target of {} ms; \
         {:.2}% of answers over it, {} of {} seconds with their p95 over it\n\
         widths served: {}; {} switches\n\
         server resident memory: start {:.1} MiB, peak {:.1} MiB, end {:.1} MiB",
        r.clients,
        r.seconds.len(),
        r.ok,
        r.refused,
        r.failed,
        r.p50_ms,
        r.p95_ms,
        r.p99_ms,
        r.target_ms,
        100.0 * r.over_target,
        r.seconds_over_target,
        r.seconds.len(),
        widths.join(", "),
        r.switches,
        r.resident_start_mib,
        r.resident_peak_mib,
        r.resident_end_mib,
    );
    for f in &r.failures {
        s.push_str(&format!("\nfailure: {f}"));
    }
    s
}

pub fn run(a: &Load) -> Result<ExitCode> {
    let settings = Settings {
        addr: a.addr.clone(),
        images: read_images(&a.images)?,
        seconds: a.seconds,
        clients: a.clients,
        timeout: Duration::from_millis(a.timeout_ms),
    };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "second      ok  refused  failed  p95 ms  RSS MiB  widths"
    )?;
    let report = run_load(&settings, |s| {
        let _ = writeln!(out, "{}", line(s));
        let _ = out.flush();
    })?;
    writeln!(out, "{}", summary(&report))?;
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&report.to_json())?;
        slim_core::fsutil::atomic_write(path, text.as_bytes())?;
    }
    if let Some(stem) = &a.plot {
        crate::plot::write(&report, stem)?;
    }
    Ok(if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
