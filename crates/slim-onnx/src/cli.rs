//! The command line of `slim-export`, kept in the library (as tract does) so that it can be
//! tested and reused; `main.rs` only parses, calls [`crate::export()`] and prints.

use slim_core::Width;
use slim_core::precision::{Precision, RangeMethod};
use std::path::PathBuf;

use clap::{ArgGroup, Parser, ValueEnum};

use crate::calibration::CalibrationOptions;
use crate::export::{ExportOptions, ExportReport, INT8_TOLERANCE, WidthSelection};

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
    /// The precisions to write each width in, e.g. `f32,f16,int8`: f16 and int8 graphs
    /// are derived from the float graph (always written) and checked against it on the
    /// calibration images.
    #[arg(long, value_name = "LIST", default_value = "f32", value_parser = Precision::parse_list)]
    pub precision: PrecisionList,
    /// Images to calibrate int8 activation ranges on and to check derived graphs with:
    /// the training split of a dataset (ImageFolder folder or zip, CIFAR archive, IDX
    /// folder). Needed for f16 and int8.
    #[arg(long, value_name = "PATH")]
    pub calibration_data: Option<PathBuf>,
    /// Calibration images to use, evenly spaced over the data (all, when it holds fewer).
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = positive)]
    pub calibration_images: usize,
    /// How activation ranges are taken from the calibration images' values.
    #[arg(long, value_enum, default_value_t = Method::MinMax)]
    pub calibration_method: Method,
    /// The percentile method's share of values kept, in percent (the rest cut evenly
    /// from both tails).
    #[arg(long, value_name = "P", default_value_t = 99.999, value_parser = percent)]
    pub percentile: f64,
    /// Convert calibration images of another size or channel count to the model's input
    /// (as slim-runtime does) instead of refusing them.
    #[arg(long)]
    pub calibration_resize: bool,
    /// The most an int8 graph's logits may differ from the float graph's on the
    /// calibration images (relative L2 error) before the export is refused.
    #[arg(long, value_name = "E", default_value_t = INT8_TOLERANCE)]
    pub int8_tolerance: f64,
}

/// One `--precision` value holding the whole list (an alias, so that clap does not read it
/// as a repeated option).
pub type PrecisionList = Vec<Precision>;

/// `--calibration-method`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Method {
    MinMax,
    Percentile,
}

fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} is not a positive whole number")),
    }
}

fn percent(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p),
        _ => Err(format!("{s:?} is not a percentage in (0, 100]")),
    }
}

impl Args {
    pub fn selection(&self) -> WidthSelection {
        match self.width {
            Some(w) if !self.all => WidthSelection::One(w),
            _ => WidthSelection::All,
        }
    }

    /// What to export, as [`crate::export_with`] takes it.
    pub fn options(&self) -> ExportOptions {
        ExportOptions {
            widths: self.selection(),
            precisions: self.precision.clone(),
            calibration: self
                .calibration_data
                .as_ref()
                .map(|data| CalibrationOptions {
                    data: data.clone(),
                    images: self.calibration_images,
                    method: match self.calibration_method {
                        Method::MinMax => RangeMethod::MinMax,
                        Method::Percentile => RangeMethod::Percentile {
                            percentile: self.percentile,
                        },
                    },
                    resize: self.calibration_resize,
                }),
            int8_tolerance: self.int8_tolerance,
        }
    }
}

/// The summary `slim-export` prints: one row per graph written, then the manifest and
/// any notes.
pub fn table(report: &ExportReport) -> String {
    let mut rows = vec![
        [
            "width",
            "precision",
            "MACs",
            "params",
            "KiB",
            "vs f32 logits",
            "file",
        ]
        .map(String::from),
    ];
    for e in &report.exported {
        let test_data = if e.test_data.is_some() {
            " (+ test data)"
        } else {
            ""
        };
        let agreement = e.entry.derived.as_ref().map_or("-".to_string(), |d| {
            format!(
                "{:.4} (top-1 {:.1}%)",
                d.agreement.logits_rel_error,
                100.0 * d.agreement.top1_agreement
            )
        });
        rows.push([
            format!("{:?}", e.entry.width),
            e.entry.precision.to_string(),
            e.entry.macs.to_string(),
            e.entry.params.to_string(),
            e.entry
                .bytes
                .map_or("-".into(), |b| format!("{:.1}", b as f64 / 1024.0)),
            agreement,
            format!("{}{test_data}", e.model.display()),
        ]);
    }
    let mut widths = [0; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row[..6]
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, w))| match i {
                0 | 1 => format!("{cell:<w$}"),
                _ => format!("{cell:>w$}"),
            })
            .collect();
        out += &format!("{}  {}\n", cells.join("  "), row[6]);
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
