//! The command line of `slim-export`, kept in the library (as tract does) so that it can be
//! tested and reused; `main.rs` only parses, calls [`crate::export()`] and prints.

use slim_core::Width;
use std::path::PathBuf;

use clap::{ArgGroup, Parser};

use crate::export::{ExportReport, WidthSelection};

/// Export a slimmable checkpoint to one ONNX graph per width, with BatchNorm folded in,
/// ONNX test data and a manifest.json.
#[derive(Clone, Debug, Parser)]
#[command(name = "slim-export", version)]
#[command(group(ArgGroup::new("widths").required(true).args(["width", "all"])))]
pub struct Args {
    /// The checkpoint (.safetensors) to export.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// Export this width only (e.g. 0.25); merged into an existing manifest of the same
    /// checkpoint.
    #[arg(long, value_name = "W")]
    pub width: Option<Width>,
    /// Export every width of the checkpoint.
    #[arg(long)]
    pub all: bool,
    /// The model folder to write (created if needed).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

impl Args {
    pub fn selection(&self) -> WidthSelection {
        match self.width {
            Some(w) if !self.all => WidthSelection::One(w),
            _ => WidthSelection::All,
        }
    }
}

/// The summary `slim-export` prints: one row per exported width, then the manifest and
/// any notes.
pub fn table(report: &ExportReport) -> String {
    let mut rows = vec![[
        "width".to_string(),
        "MACs".to_string(),
        "params".to_string(),
        "file".to_string(),
    ]];
    for e in &report.exported {
        let test_data = if e.test_data.is_some() {
            " (+ test data)"
        } else {
            ""
        };
        rows.push([
            format!("{:?}", e.entry.width),
            e.entry.macs.to_string(),
            e.entry.params.to_string(),
            format!("{}{test_data}", e.model.display()),
        ]);
    }
    let mut widths = [0; 3];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for [width, macs, params, file] in &rows {
        out += &format!(
            "{width:<w0$}  {macs:>w1$}  {params:>w2$}  {file}\n",
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
    }
    out += &format!(
        "manifest: {} ({} widths)\n",
        report.manifest_path.display(),
        report.manifest.widths.len()
    );
    for note in &report.notes {
        out += &format!("note: {note}\n");
    }
    out
}
