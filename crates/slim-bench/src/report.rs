//! A benchmark report: the header that says how and where it was measured, and per graph
//! (a width in a precision) its cost, size, accuracy, load time, peak memory and latency per
//! batch size. Written as JSON (read back by `--compare`), as CSV (one row per graph and
//! batch size) and printed as a table.

use slim_core::{Precision, Variant, Width};
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::machine::Machine;
use crate::memory::PeakMemory;
use slim_core::stats::LatencySummary;

/// How a report was measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// `slim-bench <version>`.
    pub tool: String,
    pub date_utc: String,
    /// The model folder.
    pub model: String,
    pub machine: Machine,
    /// The backend asked for: `tract`, `ort-cpu`, `ort-cuda` or `ort-tensorrt`.
    pub backend: String,
    /// What actually ran the graphs (the first graph measured's engine, the widest width's
    /// when its float graph is measured), e.g. `ort/CPU`.
    pub provider: String,
    /// Threads one graph runs on (intra-op), where known, and where the figure comes from.
    pub intra_op_threads: Option<usize>,
    pub threads_note: String,
    /// Threads of the process after the last measurement.
    pub process_threads: Option<usize>,
    pub versions: Versions,
    /// Untimed calls before the timed ones, per graph and batch size.
    pub warmup: usize,
    /// Timed calls per graph and batch size.
    pub runs: usize,
    /// The labelled set accuracy was measured on, if any.
    pub evalset: Option<EvalInfo>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Versions {
    pub slim_bench: String,
    pub tract_onnx: String,
    /// The `ort` crate and the ONNX Runtime library, when ONNX Runtime ran.
    pub ort: Option<String>,
    pub onnxruntime: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalInfo {
    pub description: String,
    pub images: usize,
    pub skipped: usize,
}

/// Where an accuracy figure comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Measured by this run.
    Measured,
    /// Read from the model's manifest (measured earlier).
    Manifest,
}

/// A width's accuracy as the manifest stores it, and where this report got it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    #[serde(flatten)]
    pub figures: slim_core::manifest::Accuracy,
    pub source: Source,
}

/// One graph's figures: a width's float graph, or one of its f16/int8 variants.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WidthReport {
    pub width: Width,
    /// The graph's precision (reports written before precisions were measured: `f32`).
    #[serde(default, skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
    pub macs: u64,
    pub params: u64,
    /// Size of the graph's file in bytes, from its manifest entry (when recorded there).
    #[serde(default)]
    pub bytes: Option<u64>,
    /// What ran this graph.
    pub provider: String,
    /// Time of the first use of the graph: reading, checking and loading it.
    pub load_ms: f64,
    pub memory: Option<PeakMemory>,
    /// Why `memory` is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_note: Option<String>,
    pub accuracy: Option<Accuracy>,
    pub latency: Vec<LatencySummary>,
}

impl WidthReport {
    /// The graph measured: this width in this precision.
    pub fn variant(&self) -> Variant {
        Variant::new(self.width, self.precision)
    }

    /// Latency at `batch`, if measured.
    pub fn at_batch(&self, batch: usize) -> Option<&LatencySummary> {
        self.latency.iter().find(|l| l.batch == batch)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub header: Header,
    pub widths: Vec<WidthReport>,
    /// With `--cascade`: the calibrated width cascade against each fixed width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cascade: Option<crate::cascade::CascadeReport>,
}

impl Report {
    /// Reads a `report.json` written by slim-bench.
    pub fn load(path: &Path) -> Result<Report, Error> {
        let fail = |msg: String| Error::Report {
            path: path.to_path_buf(),
            msg,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
        let report: Report = serde_json::from_str(&text)
            .map_err(|e| fail(format!("is not a slim-bench report.json: {e}")))?;
        if report.widths.is_empty() {
            return Err(fail("lists no widths".into()));
        }
        Ok(report)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serialises")
    }

    /// One row per graph and batch size; the header's fields repeat on every row so that
    /// each row stands alone.
    pub fn to_csv(&self) -> String {
        let h = &self.header;
        let mut out = String::from(
            "width,precision,macs,params,size_kib,top1,top5,accuracy_source,accuracy_samples,batch,runs,\
             p50_ms,p90_ms,p99_ms,min_ms,p25_ms,p75_ms,max_ms,mean_ms,images_per_s,\
             load_ms,peak_delta_bytes,peak_rss_bytes,provider,backend,intra_op_threads,\
             warmup,cpu,logical_cores,os,slim_bench,tract_onnx,onnxruntime,date_utc\n",
        );
        let opt = |v: Option<String>| v.unwrap_or_default();
        for w in &self.widths {
            let acc = w.accuracy.as_ref();
            for l in &w.latency {
                let fields = [
                    w.width.to_string(),
                    w.precision.to_string(),
                    w.macs.to_string(),
                    w.params.to_string(),
                    opt(w.bytes.map(|b| format!("{:.1}", kib(b)))),
                    opt(acc.map(|a| a.figures.top1.to_string())),
                    opt(acc.map(|a| a.figures.top5.to_string())),
                    opt(acc.map(|a| format!("{:?}", a.source).to_lowercase())),
                    opt(acc.map(|a| a.figures.samples.to_string())),
                    l.batch.to_string(),
                    l.runs.to_string(),
                    l.p50_ms.to_string(),
                    l.p90_ms.to_string(),
                    l.p99_ms.to_string(),
                    l.min_ms.to_string(),
                    l.p25_ms.to_string(),
                    l.p75_ms.to_string(),
                    l.max_ms.to_string(),
                    l.mean_ms.to_string(),
                    l.images_per_s.to_string(),
                    w.load_ms.to_string(),
                    opt(w.memory.map(|m| m.peak_delta_bytes.to_string())),
                    opt(w.memory.map(|m| m.peak_rss_bytes.to_string())),
                    w.provider.clone(),
                    h.backend.clone(),
                    opt(h.intra_op_threads.map(|t| t.to_string())),
                    h.warmup.to_string(),
                    h.machine.cpu.clone(),
                    h.machine.logical_cores.to_string(),
                    h.machine.os.clone(),
                    h.versions.slim_bench.clone(),
                    h.versions.tract_onnx.clone(),
                    opt(h.versions.onnxruntime.clone()),
                    h.date_utc.clone(),
                ];
                let row: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
                out.push_str(&row.join(","));
                out.push('\n');
            }
        }
        out
    }

    /// The header lines and the table, as printed in the terminal.
    pub fn to_table(&self) -> String {
        let h = &self.header;
        let m = &h.machine;
        let mut s = String::new();
        let cores = match m.physical_cores {
            Some(p) => format!("{} logical / {p} physical cores", m.logical_cores),
            None => format!("{} logical cores", m.logical_cores),
        };
        let _ = writeln!(s, "{}, {}, model {}", h.tool, h.date_utc, h.model);
        let _ = writeln!(s, "machine: {} ({cores}), {}", m.cpu, m.os);
        if !m.gpus.is_empty() {
            let _ = writeln!(s, "GPUs: {}", m.gpus.join(", "));
        }
        let threads = h
            .intra_op_threads
            .map_or("unknown".to_string(), |t| t.to_string());
        let _ = writeln!(
            s,
            "backend: {}, provider: {}, intra-op threads: {threads} ({}), process threads: {}",
            h.backend,
            h.provider,
            h.threads_note,
            h.process_threads
                .map_or("unknown".to_string(), |t| t.to_string())
        );
        let v = &h.versions;
        let mut versions = format!("tract-onnx {}", v.tract_onnx);
        if let Some(o) = &v.ort {
            let _ = write!(versions, ", ort {o}");
        }
        if let Some(o) = &v.onnxruntime {
            let _ = write!(versions, ", onnxruntime {o}");
        }
        let _ = writeln!(s, "versions: {versions}");
        let _ = writeln!(
            s,
            "timing: {} warmup calls excluded, {} timed calls per graph and batch; \
             noise: p25-p75 and min-max",
            h.warmup, h.runs
        );
        if let Some(e) = &h.evalset {
            let _ = writeln!(
                s,
                "evaluation set: {} ({} images used, {} skipped)",
                e.description, e.images, e.skipped
            );
        }
        let _ = writeln!(
            s,
            "{:>5} {:>4} {:>7} {:>8} {:>7} {:>7} {:>5} {:>8} {:>17} {:>17} {:>9} {:>8} {:>8}  provider",
            "width",
            "prec",
            "MMACs",
            "KiB",
            "top-1",
            "top-5",
            "batch",
            "p50 ms",
            "p25-p75 ms",
            "min-max ms",
            "img/s",
            "load ms",
            "peak MiB"
        );
        let pct = |a: Option<f64>| a.map_or("-".to_string(), |v| format!("{:.2}%", v * 100.0));
        for w in &self.widths {
            for (i, l) in w.latency.iter().enumerate() {
                let first = |text: String| if i == 0 { text } else { String::new() };
                let acc = w.accuracy.as_ref();
                let _ = writeln!(
                    s,
                    "{:>5} {:>4} {:>7} {:>8} {:>7} {:>7} {:>5} {:>8.3} {:>17} {:>17} {:>9.1} {:>8} {:>8}  {}",
                    first(w.width.to_string()),
                    first(w.precision.to_string()),
                    first(format!("{:.2}", w.macs as f64 / 1e6)),
                    first(
                        w.bytes
                            .map_or("-".to_string(), |b| format!("{:.1}", kib(b)))
                    ),
                    first(pct(acc.map(|a| a.figures.top1))),
                    first(pct(acc.map(|a| a.figures.top5))),
                    l.batch,
                    l.p50_ms,
                    format!("{:.3}-{:.3}", l.p25_ms, l.p75_ms),
                    format!("{:.3}-{:.3}", l.min_ms, l.max_ms),
                    l.images_per_s,
                    first(format!("{:.1}", w.load_ms)),
                    first(w.memory.map_or("-".to_string(), |m| {
                        format!("{:.1}", m.peak_delta_bytes as f64 / (1 << 20) as f64)
                    })),
                    first(w.provider.clone()),
                );
            }
        }
        if self.widths.iter().any(|w| {
            w.accuracy
                .as_ref()
                .is_some_and(|a| a.source == Source::Manifest)
        }) {
            let _ = writeln!(s, "accuracy: from the model's manifest (no --data given)");
        }
        if let Some(note) = self.widths.iter().find_map(|w| w.memory_note.as_ref()) {
            let _ = writeln!(s, "peak memory: not measured: {note}");
        }
        s
    }
}

/// `bytes` in KiB.
fn kib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0
}

/// A CSV field, quoted when it holds a comma, quote or line break.
fn csv_field(f: &str) -> String {
    if f.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("AMD EPYC"), "AMD EPYC");
        assert_eq!(csv_field("Intel, Inc"), "\"Intel, Inc\"");
        assert_eq!(csv_field("a \"b\""), "\"a \"\"b\"\"\"");
    }

    #[test]
    fn a_float_graph_omits_its_precision_and_old_rows_load_as_float() {
        let row = serde_json::json!({
            "width": 0.5, "macs": 1000, "params": 10, "provider": "tract", "load_ms": 1.0,
            "memory": null, "accuracy": null, "latency": [],
        });
        let old: WidthReport = serde_json::from_value(row.clone()).unwrap();
        assert_eq!((old.precision, old.bytes), (Precision::F32, None));
        assert_eq!(old.variant().to_string(), "0.5");
        let written = serde_json::to_value(&old).unwrap();
        assert!(written.get("precision").is_none(), "{written}");
        let int8 = WidthReport {
            precision: Precision::Int8,
            bytes: Some(2048),
            ..old
        };
        let written = serde_json::to_value(&int8).unwrap();
        assert_eq!(
            (written["precision"].as_str(), written["bytes"].as_u64()),
            (Some("int8"), Some(2048))
        );
        let back: WidthReport = serde_json::from_value(written).unwrap();
        assert_eq!(back.variant().to_string(), "0.5/int8");
    }
}
